// Users in the store: adding, updating, removing, listing users and their
// attributes, uniqueness of identifiers / usernames / attribute values, and
// the hashed login password.

#include "store/fixtures.h"
#include "store/store.h"

#include <catch2/catch.hpp>

using namespace kiln::store;
using kiln::testing::ok;

namespace {

UserChanges alice() {
  UserChanges u;
  u.identifier = "alice";
  u.attributes = {{"git", "Alice Liddell <alice@example.org>"}, {"email", "alice@example.org"}};
  return u;
}

UserRef by_id(int64_t uid) { return UserRef{uid, {}}; }
UserRef by_identifier(std::string identifier) { return UserRef{0, std::move(identifier)}; }

}  // namespace

TEST_CASE("an added user reads back with its attributes, by id and by identifier") {
  auto store = kiln::testing::open_memory_store();
  const int64_t uid = ok(store->add_user_sync(alice()));
  CHECK(uid > 0);

  for (const UserRef& ref : {by_id(uid), by_identifier("alice")}) {
    UserRecord u = ok(store->get_user_sync(ref));
    CHECK(u.uid == uid);
    CHECK(u.identifier == "alice");
    CHECK_FALSE(u.bb_username);
    CHECK_FALSE(u.has_password);
    CHECK(u.attributes == std::map<std::string, std::string>{
                              {"email", "alice@example.org"},
                              {"git", "Alice Liddell <alice@example.org>"}});
  }
}

TEST_CASE("a change's author and a hand-made user with the same attribute are one user") {
  auto store = kiln::testing::open_memory_store();
  UserChanges u;
  u.identifier = "bob";
  u.attributes = {{"author", "Bob <bob@example.org>"}};
  const int64_t uid = ok(store->add_user_sync(u));
  CHECK(ok(store->find_or_create_user_sync("Bob <bob@example.org>", "author",
                                           "Bob <bob@example.org>")) == uid);
}

TEST_CASE("a duplicate identifier, username or attribute value is refused naming its owner") {
  auto store = kiln::testing::open_memory_store();
  UserChanges first = alice();
  first.bb_username = "alice";
  first.bb_password_hash = ok(hash_password("wonderland"));
  const int64_t uid = ok(store->add_user_sync(first));

  UserChanges same_identifier;
  same_identifier.identifier = "alice";
  auto r1 = store->add_user_sync(same_identifier);
  CHECK(r1.status.code == StatusCode::kInvalidArgument);
  CHECK_THAT(r1.status.message, Catch::Contains("identifier 'alice' already belongs to user " +
                                                std::to_string(uid)));

  UserChanges same_git;
  same_git.identifier = "other";
  same_git.attributes = {{"git", "Alice Liddell <alice@example.org>"}};
  auto r2 = store->add_user_sync(same_git);
  CHECK(r2.status.code == StatusCode::kInvalidArgument);
  CHECK_THAT(r2.status.message, Catch::Contains("git 'Alice Liddell <alice@example.org>'"));
  CHECK_THAT(r2.status.message, Catch::Contains("('alice')"));

  UserChanges same_login;
  same_login.identifier = "other";
  same_login.bb_username = "alice";
  auto r3 = store->add_user_sync(same_login);
  CHECK(r3.status.code == StatusCode::kInvalidArgument);
  CHECK_THAT(r3.status.message, Catch::Contains("username 'alice'"));

  // Nothing of the refused calls was kept.
  CHECK(ok(store->list_users_sync()).size() == 1);
}

TEST_CASE("update renames, sets and removes attributes, and refuses another user's values") {
  auto store = kiln::testing::open_memory_store();
  const int64_t a = ok(store->add_user_sync(alice()));
  UserChanges b;
  b.identifier = "bob";
  b.attributes = {{"irc", "bobby"}};
  const int64_t bob = ok(store->add_user_sync(b));

  UserChanges c;
  c.identifier = "alice2";
  c.attributes = {{"email", ""}, {"irc", "alice_"}, {"git", "Alice <a@new.org>"}};
  ok(store->update_user_sync(by_identifier("alice"), c));
  UserRecord u = ok(store->get_user_sync(by_id(a)));
  CHECK(u.identifier == "alice2");
  CHECK(u.attributes ==
        std::map<std::string, std::string>{{"git", "Alice <a@new.org>"}, {"irc", "alice_"}});

  UserChanges steal;
  steal.attributes = {{"irc", "bobby"}, {"email", "x@y"}};
  auto s = store->update_user_sync(by_id(a), steal);
  CHECK(s.code == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message, Catch::Contains("irc 'bobby' already belongs to user " +
                                        std::to_string(bob) + " ('bob')"));
  // The refused update is undone as a whole: email was not set either.
  CHECK(ok(store->get_user_sync(by_id(a))).attributes.count("email") == 0);

  UserChanges rename_to_bob;
  rename_to_bob.identifier = "bob";
  CHECK(store->update_user_sync(by_id(a), rename_to_bob).code == StatusCode::kInvalidArgument);
}

TEST_CASE("updating or removing a user that does not exist is kNotFound") {
  auto store = kiln::testing::open_memory_store();
  UserChanges c;
  c.attributes = {{"irc", "nobody"}};
  auto s = store->update_user_sync(by_identifier("ghost"), c);
  CHECK(s.code == StatusCode::kNotFound);
  CHECK_THAT(s.message, Catch::Contains("ghost"));
  CHECK(store->remove_user_sync(by_id(42)).code == StatusCode::kNotFound);
  CHECK(store->get_user_sync(by_id(42)).status.code == StatusCode::kNotFound);
}

TEST_CASE("removing a user removes its attributes and change links but keeps its changes") {
  auto store = kiln::testing::open_memory_store();
  const int64_t uid = ok(store->add_user_sync(alice()));
  ChangeRecord change;
  change.author = "alice";
  change.when_timestamp = 100;
  change.uids = {uid};
  const int64_t changeid = ok(store->add_change_sync(change));

  ok(store->remove_user_sync(by_identifier("alice")));
  CHECK(ok(store->list_users_sync()).empty());
  // The attribute is free again for a new user.
  UserChanges again;
  again.identifier = "alice-again";
  again.attributes = {{"email", "alice@example.org"}};
  CHECK(ok(store->add_user_sync(again)) != 0);

  ResultSpec spec;
  spec.filters.push_back({"changeid", FilterOp::kEq, {changeid}});
  CHECK(ok(store->query_sync(Resource::kChanges, spec)).size() == 1);
}

TEST_CASE("list_users with a match finds users by identifier, username or attribute value") {
  auto store = kiln::testing::open_memory_store();
  UserChanges a = alice();
  a.bb_username = "al";
  a.bb_password_hash = ok(hash_password("pw-1"));
  const int64_t ida = ok(store->add_user_sync(a));
  UserChanges b;
  b.identifier = "bob";
  b.attributes = {{"irc", "bobby"}};
  const int64_t idb = ok(store->add_user_sync(b));

  auto ids = [&](const std::string& match) {
    std::vector<int64_t> out;
    for (const auto& u : ok(store->list_users_sync(match))) out.push_back(u.uid);
    return out;
  };
  CHECK(ids("") == std::vector<int64_t>{ida, idb});
  CHECK(ids("bob") == std::vector<int64_t>{idb});
  CHECK(ids("bobby") == std::vector<int64_t>{idb});
  CHECK(ids("al") == std::vector<int64_t>{ida});
  CHECK(ids("alice@example.org") == std::vector<int64_t>{ida});
  CHECK(ids("nobody").empty());
  CHECK(ok(store->list_users_sync("al")).at(0).has_password);
}

TEST_CASE("the login password is stored as a salted hash that verifies only the right password") {
  auto store = kiln::testing::open_memory_store();
  UserChanges a = alice();
  a.bb_username = "alice";
  a.bb_password_hash = ok(hash_password("rabbit hole"));
  ok(store->add_user_sync(a));

  UserLogin login = ok(store->user_login_sync("alice"));
  CHECK(login.identifier == "alice");
  CHECK(login.bb_password_hash.find("rabbit") == std::string::npos);
  CHECK(is_password_hash(login.bb_password_hash));
  CHECK(verify_password("rabbit hole", login.bb_password_hash));
  CHECK_FALSE(verify_password("rabbit hol", login.bb_password_hash));
  CHECK_FALSE(verify_password("", login.bb_password_hash));

  // Same password, fresh salt: a different hash that verifies all the same.
  const std::string again = ok(hash_password("rabbit hole"));
  CHECK(again != login.bb_password_hash);
  CHECK(verify_password("rabbit hole", again));

  CHECK(store->user_login_sync("bob").status.code == StatusCode::kNotFound);
}

TEST_CASE("a password is refused in plain text, without a username, and removed with the login") {
  auto store = kiln::testing::open_memory_store();
  UserChanges plain = alice();
  plain.bb_username = "alice";
  plain.bb_password_hash = "wonderland";
  CHECK(store->add_user_sync(plain).status.code == StatusCode::kInvalidArgument);

  const int64_t uid = ok(store->add_user_sync(alice()));
  UserChanges pw_only;
  pw_only.bb_password_hash = ok(hash_password("x"));
  auto s = store->update_user_sync(by_id(uid), pw_only);
  CHECK(s.code == StatusCode::kInvalidArgument);
  CHECK_THAT(s.message, Catch::Contains("needs one"));

  UserChanges login;
  login.bb_username = "alice";
  login.bb_password_hash = ok(hash_password("x"));
  ok(store->update_user_sync(by_id(uid), login));
  CHECK(ok(store->get_user_sync(by_id(uid))).has_password);

  UserChanges logout;
  logout.bb_username = "";
  ok(store->update_user_sync(by_id(uid), logout));
  UserRecord u = ok(store->get_user_sync(by_id(uid)));
  CHECK_FALSE(u.bb_username);
  CHECK_FALSE(u.has_password);
  CHECK(store->user_login_sync("alice").status.code == StatusCode::kNotFound);
}

TEST_CASE("hash_password refuses empty passwords and NUL bytes; malformed hashes never verify") {
  CHECK(hash_password("").status.code == StatusCode::kInvalidArgument);
  CHECK(hash_password(std::string("a\0b", 3)).status.code == StatusCode::kInvalidArgument);
  CHECK_FALSE(verify_password("x", ""));
  CHECK_FALSE(verify_password("x", "x"));
  CHECK_FALSE(verify_password("x", "$y$garbage"));
  CHECK_FALSE(is_password_hash("hunter2"));
}
