// `kiln user DIR add|update|remove|show`, run as a user would: against the
// store directly when no master runs, and through a running master's
// control socket.

#include "kiln_process.h"

#include "store/store.h"

#include <catch2/catch.hpp>

namespace kiln::integration {
namespace {

using nlohmann::json;

RunResult user(const MasterDir& m, std::vector<std::string> args) {
  args.insert(args.begin(), {"user", m.str()});
  return run_kiln(args);
}

// The store of a stopped master, as `kiln user` leaves it.
std::unique_ptr<store::Store> open_store_of(const MasterDir& m) {
  store::OpenOptions o;
  o.url = "sqlite:state.sqlite";
  o.base_dir = m.path();
  auto opened = store::open_store(std::move(o));
  INFO(opened.status.message);
  REQUIRE(opened.ok());
  return std::move(opened.value);
}

TEST_CASE("without a running master, kiln user adds, shows, updates and removes users") {
  MasterDir m;
  REQUIRE(run_kiln({"create-master", m.str()}).exit_code == 0);

  RunResult added = user(m, {"add", "--info", "git=Ann Lee <ann@example.org>", "--info",
                             "email=ann@example.org", "--username", "ann", "--password",
                             "correct horse"});
  INFO(added.describe());
  REQUIRE(added.exit_code == 0);
  CHECK(added.out == "user 1 added: Ann Lee <ann@example.org>\n");
  REQUIRE(user(m, {"add", "--identifier", "bob", "--info", "irc=bobby"}).exit_code == 0);

  RunResult shown = user(m, {"show"});
  INFO(shown.describe());
  REQUIRE(shown.exit_code == 0);
  CHECK(shown.out ==
        "UID  IDENTIFIER                 USERNAME  PASSWORD  INFO\n"
        "1    Ann Lee <ann@example.org>  ann       set       email=ann@example.org, git=Ann Lee "
        "<ann@example.org>\n"
        "2    bob                        -         -         irc=bobby\n");
  CHECK(shown.out.find("horse") == std::string::npos);
  CHECK(shown.out.find("$y$") == std::string::npos);

  RunResult updated = user(m, {"update", "--identifier", "Ann Lee <ann@example.org>",
                               "--set-identifier", "ann", "--info", "irc=annie", "--info",
                               "email="});
  INFO(updated.describe());
  REQUIRE(updated.exit_code == 0);
  RunResult one = user(m, {"show", "annie"});
  INFO(one.describe());
  REQUIRE(one.exit_code == 0);
  CHECK_THAT(one.out, Catch::Contains("1    ann         ann       set       git=Ann Lee "
                                      "<ann@example.org>, irc=annie"));
  CHECK(one.out.find("bob") == std::string::npos);

  {
    // The password is stored hashed and verifies.
    auto store = open_store_of(m);
    auto login = store->user_login_sync("ann");
    REQUIRE(login.ok());
    CHECK(store::verify_password("correct horse", login.value.bb_password_hash));
    CHECK_FALSE(store::verify_password("wrong horse", login.value.bb_password_hash));
  }

  RunResult removed = user(m, {"remove", "--id", "2"});
  INFO(removed.describe());
  REQUIRE(removed.exit_code == 0);
  CHECK(removed.out == "user 2 removed\n");
  REQUIRE(user(m, {"remove", "ann"}).exit_code == 0);
  CHECK(user(m, {"show"}).out == "no users\n");
}

TEST_CASE("bad input to kiln user exits 2 with a message saying what is wrong") {
  MasterDir m;
  REQUIRE(run_kiln({"create-master", m.str()}).exit_code == 0);
  REQUIRE(user(m, {"add", "--info", "email=ann@example.org"}).exit_code == 0);

  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"add", "--info", "email"}, "--info takes TYPE=VALUE"},
      {{"add", "--info", "shoe=42"}, "unknown attribute type 'shoe'"},
      {{"add", "--info", "email=ann@example.org"}, "identifier 'ann@example.org' already belongs to user 1"},
      {{"add", "--identifier", "x", "--info", "email=ann@example.org"},
       "email 'ann@example.org' already belongs to user 1"},
      {{"update", "--identifier", "ghost", "--info", "irc=g"}, "no user with identifier 'ghost'"},
      {{"update", "--id", "1"}, "nothing to update"},
      {{"remove", "--id", "9"}, "no user with id 9"},
      {{"show", "nobody"}, "no user matches 'nobody'"},
      {{"frobnicate"}, "unknown action 'frobnicate'"},
      {{"add", "--username", "u", "--password", ""}, "password must not be empty"},
  };
  for (const auto& c : cases) {
    RunResult r = user(m, c.args);
    INFO(r.describe());
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains(c.message));
  }
  // Nothing of the refused calls was kept.
  RunResult shown = user(m, {"show"});
  CHECK(std::count(shown.out.begin(), shown.out.end(), '\n') == 2);
}

TEST_CASE("with a master running, kiln user goes through its control socket") {
  MasterDir m;
  m.write_config(one_builder_config("quick", "[echo, done]"));
  RunResult started = m.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);
  // Without master.yaml the CLI could not open the store itself: only the
  // running master can answer now.
  fs::rename(m.file("master.yaml"), m.file("master.yaml.away"));

  RunResult added = user(m, {"add", "--info", "author=Ann <ann@example.org>", "--username",
                             "ann", "--password", "pw"});
  INFO(added.describe());
  REQUIRE(added.exit_code == 0);
  RunResult dup = user(m, {"add", "--info", "author=Ann <ann@example.org>"});
  INFO(dup.describe());
  CHECK(dup.exit_code == 2);
  CHECK_THAT(dup.err, Catch::Contains("already belongs to user 1"));

  // A change by the same author is linked to that user, not a new one.
  RunResult sent = run_kiln({"sendchange", m.str(), "--who", "Ann <ann@example.org>", "a.c"});
  INFO(sent.describe());
  REQUIRE(sent.exit_code == 0);
  RunResult shown = user(m, {"show"});
  INFO(shown.describe());
  REQUIRE(shown.exit_code == 0);
  CHECK(std::count(shown.out.begin(), shown.out.end(), '\n') == 2);
  CHECK_THAT(shown.out, Catch::Contains("Ann <ann@example.org>  ann       set"));

  fs::rename(m.file("master.yaml.away"), m.file("master.yaml"));
}

}  // namespace
}  // namespace kiln::integration
