// Buildbot's user objects in the SQLite store (tables users, users_info;
// Buildbot's master/buildbot/db/users.py), their blocking wrappers, and
// the crypt(3) password hashing the login checks use. Kept apart from
// sqlite_engine.cpp: users are managed by hand (`kiln user`), not by the
// engine's hot paths.

#include "store/sqlite_helpers.h"
#include "store/sqlite_store.h"

#include <kiln/sdk/password.hpp>

#include <crypt.h>
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>

namespace kiln::store {

using namespace sqlite_helpers;

std::string UserRef::describe() const {
  if (uid != 0) return "user " + std::to_string(uid);
  return "user '" + identifier + "'";
}

namespace {

Status invalid(std::string message) {
  return Status::error(StatusCode::kInvalidArgument, std::move(message));
}

// The rules that need no SQL, checked before the call is queued so the
// caller's mistakes never take a store transaction.
Status check_changes(const UserChanges& c, bool adding) {
  if (adding && !c.identifier) return invalid("a new user needs an identifier");
  if (c.identifier && c.identifier->empty()) return invalid("a user's identifier must not be empty");
  for (const auto& [type, data] : c.attributes) {
    if (type.empty()) return invalid("an attribute needs a type");
    if (adding && data.empty()) return invalid("attribute '" + type + "' needs a value");
  }
  if (adding && c.bb_username && c.bb_username->empty()) {
    return invalid("a username must not be empty");
  }
  if (c.bb_password_hash) {
    if (!is_password_hash(*c.bb_password_hash)) {
      return invalid("bb_password must be a password hash (hash_password), not a password");
    }
    if (adding && !c.bb_username) return invalid("a password needs a username");
    if (c.bb_username && c.bb_username->empty()) {
      return invalid("a password cannot be set while the username is removed");
    }
  }
  return {};
}

// The uid owning the row `sql` finds with one text parameter, if any.
Result<std::optional<int64_t>> owner(SqliteDb& db, const std::string& sql,
                                     std::string_view value, std::string_view what) {
  auto q = db.query(sql);
  q.bind(1, value);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {{}, q.int64(0)};
  if (rc == SQLITE_DONE) return {{}, std::nullopt};
  return {db.error(what), std::nullopt};
}

Result<std::string> identifier_of(SqliteDb& db, int64_t uid) {
  auto q = db.query("SELECT identifier FROM users WHERE uid = ?");
  q.bind(1, uid);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {{}, q.text(0)};
  if (rc == SQLITE_DONE) return {not_found("user", uid), {}};
  return {db.error("reading user"), {}};
}

// kInvalidArgument naming the other user when `found` is a user other than
// `self` (0 while adding).
Status conflict(SqliteDb& db, const Result<std::optional<int64_t>>& found, int64_t self,
                const std::string& what) {
  if (!found.ok()) return found.status;
  if (!found.value || *found.value == self) return {};
  auto other = identifier_of(db, *found.value);
  return invalid(what + " already belongs to user " + std::to_string(*found.value) +
                 (other.ok() ? " ('" + other.value + "')" : std::string()));
}

Status check_identifier_free(SqliteDb& db, const std::string& identifier, int64_t self) {
  return conflict(db,
                  owner(db, "SELECT uid FROM users WHERE identifier = ?", identifier,
                        "finding user"),
                  self, "identifier '" + identifier + "'");
}

Status check_username_free(SqliteDb& db, const std::string& username, int64_t self) {
  return conflict(db,
                  owner(db, "SELECT uid FROM users WHERE bb_username = ?", username,
                        "finding user"),
                  self, "username '" + username + "'");
}

Status check_attribute_free(SqliteDb& db, const std::string& type, const std::string& data,
                            int64_t self) {
  auto q = db.query("SELECT uid FROM users_info WHERE attr_type = ? AND attr_data = ?");
  q.bind(1, type).bind(2, data);
  int rc = q.step();
  Result<std::optional<int64_t>> found;
  if (rc == SQLITE_ROW) {
    found.value = q.int64(0);
  } else if (rc != SQLITE_DONE) {
    found.status = db.error("finding user");
  }
  return conflict(db, found, self, type + " '" + data + "'");
}

Status set_attributes(SqliteDb& db, int64_t uid,
                      const std::map<std::string, std::string>& attributes) {
  for (const auto& [type, data] : attributes) {
    if (data.empty()) {
      auto d = db.query("DELETE FROM users_info WHERE uid = ? AND attr_type = ?");
      d.bind(1, uid).bind(2, type);
      if (auto s = d.run("removing user attribute"); !s.ok()) return s;
      continue;
    }
    if (auto s = check_attribute_free(db, type, data, uid); !s.ok()) return s;
    auto i = db.query(
        "INSERT INTO users_info(uid, attr_type, attr_data) VALUES (?, ?, ?) "
        "ON CONFLICT(uid, attr_type) DO UPDATE SET attr_data = excluded.attr_data");
    i.bind(1, uid).bind(2, type).bind(3, data);
    if (auto s = i.run("setting user attribute"); !s.ok()) return s;
  }
  return {};
}

Result<int64_t> resolve(SqliteDb& db, const UserRef& ref) {
  if (ref.uid != 0) {
    if (auto s = require_row(db, "SELECT 1 FROM users WHERE uid = ?", ref.uid, "user");
        !s.ok()) {
      return {s, 0};
    }
    return {{}, ref.uid};
  }
  if (ref.identifier.empty()) return {invalid("name a user by id or identifier"), 0};
  auto found = owner(db, "SELECT uid FROM users WHERE identifier = ?", ref.identifier,
                     "finding user");
  if (!found.ok()) return {found.status, 0};
  if (!found.value) {
    return {Status::error(StatusCode::kNotFound,
                          "no user with identifier '" + ref.identifier + "'"),
            0};
  }
  return {{}, *found.value};
}

// The row of `q` (uid, identifier, bb_username, has password), attributes
// read separately.
Result<UserRecord> user_row(SqliteDb& db, const Query& q) {
  UserRecord u;
  u.uid = q.int64(0);
  u.identifier = q.text(1);
  if (!q.is_null(2)) u.bb_username = q.text(2);
  u.has_password = q.int64(3) != 0;
  auto a = db.query("SELECT attr_type, attr_data FROM users_info WHERE uid = ?");
  a.bind(1, u.uid);
  int rc;
  while ((rc = a.step()) == SQLITE_ROW) u.attributes[a.text(0)] = a.text(1);
  if (rc != SQLITE_DONE) return {db.error("reading user attributes"), {}};
  return {{}, std::move(u)};
}

constexpr const char* kUserColumns =
    "SELECT uid, identifier, bb_username, bb_password IS NOT NULL FROM users ";

}  // namespace

void SqliteStore::add_user(UserChanges user, Completion<int64_t> done) {
  if (auto s = check_changes(user, true); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<int64_t>(
      true,
      [u = std::move(user)](SqliteDb& db) -> Result<int64_t> {
        if (auto s = check_identifier_free(db, *u.identifier, 0); !s.ok()) return {s, 0};
        if (u.bb_username) {
          if (auto s = check_username_free(db, *u.bb_username, 0); !s.ok()) return {s, 0};
        }
        auto q = db.query(
            "INSERT INTO users(identifier, bb_username, bb_password) VALUES (?, ?, ?) "
            "RETURNING uid");
        q.bind(1, *u.identifier);
        bind_optional(q, 2, u.bb_username);
        bind_optional(q, 3, u.bb_password_hash);
        auto uid = single_int(db, q, "adding user");
        if (!uid.ok()) return uid;
        if (auto s = set_attributes(db, uid.value, u.attributes); !s.ok()) return {s, 0};
        return uid;
      },
      std::move(done));
}

void SqliteStore::update_user(UserRef user, UserChanges changes, Completion<void> done) {
  if (auto s = check_changes(changes, false); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<void>(
      true,
      [ref = std::move(user), c = std::move(changes)](SqliteDb& db) -> Status {
        auto uid = resolve(db, ref);
        if (!uid.ok()) return uid.status;
        if (c.identifier) {
          if (auto s = check_identifier_free(db, *c.identifier, uid.value); !s.ok()) return s;
          auto q = db.query("UPDATE users SET identifier = ? WHERE uid = ?");
          q.bind(1, *c.identifier).bind(2, uid.value);
          if (auto s = q.run("renaming user"); !s.ok()) return s;
        }
        if (c.bb_username && c.bb_username->empty()) {
          auto q = db.query("UPDATE users SET bb_username = NULL, bb_password = NULL WHERE uid = ?");
          q.bind(1, uid.value);
          if (auto s = q.run("removing login"); !s.ok()) return s;
        } else if (c.bb_username) {
          if (auto s = check_username_free(db, *c.bb_username, uid.value); !s.ok()) return s;
          auto q = db.query("UPDATE users SET bb_username = ? WHERE uid = ?");
          q.bind(1, *c.bb_username).bind(2, uid.value);
          if (auto s = q.run("setting username"); !s.ok()) return s;
        }
        if (c.bb_password_hash) {
          auto q = db.query(
              "UPDATE users SET bb_password = ? WHERE uid = ? AND bb_username IS NOT NULL");
          q.bind(1, *c.bb_password_hash).bind(2, uid.value);
          if (auto s = q.run("setting password"); !s.ok()) return s;
          if (db.changes() == 0) {
            return invalid(ref.describe() + " has no username; a password needs one");
          }
        }
        return set_attributes(db, uid.value, c.attributes);
      },
      std::move(done));
}

void SqliteStore::remove_user(UserRef user, Completion<void> done) {
  submit<void>(
      true,
      [ref = std::move(user)](SqliteDb& db) -> Status {
        auto uid = resolve(db, ref);
        if (!uid.ok()) return uid.status;
        // users_info and change_users rows go by ON DELETE CASCADE.
        auto q = db.query("DELETE FROM users WHERE uid = ?");
        q.bind(1, uid.value);
        return q.run("removing user");
      },
      std::move(done));
}

void SqliteStore::get_user(UserRef user, Completion<UserRecord> done) {
  submit<UserRecord>(
      false,
      [ref = std::move(user)](SqliteDb& db) -> Result<UserRecord> {
        auto uid = resolve(db, ref);
        if (!uid.ok()) return {uid.status, {}};
        auto q = db.query(std::string(kUserColumns) + "WHERE uid = ?");
        q.bind(1, uid.value);
        int rc = q.step();
        if (rc != SQLITE_ROW) return {db.error("reading user"), {}};
        return user_row(db, q);
      },
      std::move(done));
}

void SqliteStore::list_users(std::string match, Completion<std::vector<UserRecord>> done) {
  submit<std::vector<UserRecord>>(
      false,
      [match = std::move(match)](SqliteDb& db) -> Result<std::vector<UserRecord>> {
        auto q = db.query(std::string(kUserColumns) +
                          "WHERE ?1 = '' OR identifier = ?1 OR bb_username = ?1 OR uid IN "
                          "(SELECT uid FROM users_info WHERE attr_data = ?1) ORDER BY uid");
        q.bind(1, match);
        std::vector<UserRecord> out;
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          auto u = user_row(db, q);
          if (!u.ok()) return {u.status, {}};
          out.push_back(std::move(u.value));
        }
        if (rc != SQLITE_DONE) return {db.error("listing users"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

void SqliteStore::user_login(std::string bb_username, Completion<UserLogin> done) {
  submit<UserLogin>(
      false,
      [name = std::move(bb_username)](SqliteDb& db) -> Result<UserLogin> {
        auto q = db.query(
            "SELECT uid, identifier, bb_password FROM users WHERE bb_username = ? AND "
            "bb_password IS NOT NULL");
        q.bind(1, name);
        int rc = q.step();
        if (rc == SQLITE_ROW) return {{}, {q.int64(0), q.text(1), q.text(2)}};
        if (rc == SQLITE_DONE) {
          return {Status::error(StatusCode::kNotFound,
                                "no user with username '" + name + "' and a password"),
                  {}};
        }
        return {db.error("reading login"), {}};
      },
      std::move(done));
}

// ---- blocking wrappers ----------------------------------------------------

Result<int64_t> Store::add_user_sync(UserChanges user) {
  return wait_for<int64_t>(
      [&](Completion<int64_t> done) { add_user(std::move(user), std::move(done)); });
}

Status Store::update_user_sync(UserRef user, UserChanges changes) {
  return wait_for<void>([&](Completion<void> done) {
    update_user(std::move(user), std::move(changes), std::move(done));
  });
}

Status Store::remove_user_sync(UserRef user) {
  return wait_for<void>(
      [&](Completion<void> done) { remove_user(std::move(user), std::move(done)); });
}

Result<UserRecord> Store::get_user_sync(UserRef user) {
  return wait_for<UserRecord>(
      [&](Completion<UserRecord> done) { get_user(std::move(user), std::move(done)); });
}

Result<std::vector<UserRecord>> Store::list_users_sync(std::string match) {
  return wait_for<std::vector<UserRecord>>([&](Completion<std::vector<UserRecord>> done) {
    list_users(std::move(match), std::move(done));
  });
}

Result<UserLogin> Store::user_login_sync(std::string bb_username) {
  return wait_for<UserLogin>(
      [&](Completion<UserLogin> done) { user_login(std::move(bb_username), std::move(done)); });
}

// ---- passwords --------------------------------------------------------------

namespace {

bool read_urandom(unsigned char* out, size_t n) {
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, out + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return got == n;
}

// crypt_r's work area is ~32 KiB: too big for the stack of every caller.
// Value-initialised, as crypt_r requires of a fresh one.
std::unique_ptr<crypt_data> work_area() { return std::make_unique<crypt_data>(); }

}  // namespace

Result<std::string> hash_password(std::string_view password) {
  if (password.empty()) return {invalid("a password must not be empty"), {}};
  if (password.find('\0') != std::string_view::npos) {
    return {invalid("a password must not contain a NUL byte"), {}};
  }
  std::array<unsigned char, 16> random{};
  if (!read_urandom(random.data(), random.size())) {
    return {Status::error(StatusCode::kIo, "cannot read random bytes from /dev/urandom"), {}};
  }
  std::array<char, CRYPT_GENSALT_OUTPUT_SIZE> setting{};
  // yescrypt is Debian's default for /etc/shadow; sha512-crypt where a
  // libcrypt lacks it.
  const char* salt = nullptr;
  for (const char* prefix : {"$y$", "$6$"}) {
    salt = crypt_gensalt_rn(prefix, 0, reinterpret_cast<const char*>(random.data()),
                            static_cast<int>(random.size()), setting.data(),
                            static_cast<int>(setting.size()));
    if (salt != nullptr) break;
  }
  if (salt == nullptr) {
    return {Status::error(StatusCode::kIo, "libcrypt offers neither yescrypt nor sha512-crypt"),
            {}};
  }
  auto data = work_area();
  const std::string text(password);
  const char* hash = crypt_r(text.c_str(), salt, data.get());
  if (hash == nullptr || hash[0] != '$') {
    return {Status::error(StatusCode::kIo, "crypt_r failed to hash the password"), {}};
  }
  return {{}, std::string(hash)};
}

bool verify_password(std::string_view password, std::string_view hash) {
  return sdk::verify_password_hash(password, hash);
}

bool is_password_hash(std::string_view text) { return sdk::is_password_hash(text); }

}  // namespace kiln::store
