#pragma once
// Who is asking and what they may do: the web status target's
// authentication (a user list in the config, an htpasswd file, the users
// of `kiln user` checked by the core) and Buildbot's authorization actions
// (forceBuild, stopBuild, ... as force_build, stop_build, ...), plus the
// signed session cookie and its CSRF token. Everything here runs on the
// HTTP thread; only a check against `kiln user`'s users goes to the master
// (the Backend's check_password), and the password hash never leaves it.

#include "backend.h"
#include "http_types.h"

#include <kiln/sdk/status.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::web {

// The seeds' actions, in their order.
enum class Action {
  kForceBuild,
  kForceAllBuilds,
  kPingWorker,
  kGracefulShutdown,
  kStopBuild,
  kStopAllBuilds,
  kCancelPendingBuild,
  kStopChange,
  kCleanShutdown,
  kShowUsersPage,
};
inline constexpr size_t kActionCount = 10;
// "force_build": the configuration key of an action.
const char* action_key(Action action);

struct Identity {
  std::string user;                 // empty: anonymous
  std::vector<std::string> groups;  // from the auth section's groups
  bool by_session = false;          // proven by the session cookie (needs CSRF)
  bool by_basic = false;            // proven by HTTP Basic
  std::string session;              // the cookie's value, when by_session
  bool authenticated() const { return !user.empty(); }
};

// never | always | authenticated | a list of users and group:NAME entries
// | {policy: NAME}, an authz_check policy function that decides.
struct Rule {
  enum class Kind { kNever, kAlways, kAuthenticated, kListed, kPolicy };
  Kind kind = Kind::kAlways;
  std::vector<std::string> users;
  std::vector<std::string> groups;
  std::string policy;
};

enum class Verdict {
  kAllowed,
  kUnauthenticated,  // 401: logging in could allow it
  kForbidden,        // 403: this identity may not, or nobody may
};

// The `auth` and `authz` sections of the web reporter's configuration.
struct AuthSettings {
  struct ConfigUser {
    std::string password;  // plain text, or a crypt(3) hash ("$2y$...", "$6$...")
    std::vector<std::string> groups;
  };
  std::map<std::string, ConfigUser> users;
  std::filesystem::path htpasswd;  // empty: none
  bool kiln_users = false;
  std::map<std::string, std::vector<std::string>> groups;  // group -> users
  std::string session_secret;                                // empty: random per start
  std::chrono::seconds session_lifetime{7 * 24 * 3600};
  // The cookie only goes back over HTTPS (set when the server has tls).
  bool secure_cookie = false;
  std::array<Rule, kActionCount> rules{};

  bool any_source() const { return !users.empty() || !htpasswd.empty() || kiln_users; }
};

// Reads `auth` and `authz` from the reporter's config; `master_dir`
// resolves a relative htpasswd path. Errors name the key.
sdk::Result<AuthSettings> parse_auth_settings(const nlohmann::json& config,
                                              const std::filesystem::path& master_dir);

// Whether `password` matches `stored`: a crypt(3) hash (bcrypt $2y$/$2b$,
// sha-crypt $5$/$6$, yescrypt $y$) or, for config users, plain text. In
// constant time over the compared bytes.
bool password_matches(std::string_view password, std::string_view stored);

// HMAC-SHA256 of `data`, as lower-case hex.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);
bool constant_time_equal(std::string_view a, std::string_view b);

class Auth {
 public:
  // `backend` checks `kiln user`'s users; it outlives this object.
  Auth(AuthSettings settings, Backend& backend);

  // Reads the htpasswd file once, so a start fails on a missing or
  // malformed file (naming file:line); later changes are re-read.
  sdk::Status load();

  bool enabled() const { return settings_.any_source(); }

  // Who sent `request`: its Basic credentials, or its session cookie, or
  // nobody. `done(identity, problem)`: a non-empty problem means the
  // credentials were wrong (answer 401). May answer later (a check of
  // `kiln user`'s users goes to the master), on the HTTP thread.
  void identify(const Request& request, std::function<void(Identity, std::string)> done);

  // The verdict of a rule the plugin decides alone (not a policy's).
  Verdict check(Action action, const Identity& who) const;
  // Any rule's verdict: a policy rule asks the named authz_check function
  // on the master's loop with {user, action, path}; later, on the HTTP
  // thread.
  void authorize(Action action, const Identity& who, std::string path,
                 std::function<void(Verdict)> done);
  // The answer to a refused action: 401 (with Basic's challenge) or 403,
  // Buildbot's {"error"} or, for JSON-RPC, a JSON-RPC error.
  Response refusal(Verdict verdict, Action action, const Identity& who,
                   const nlohmann::json* rpc_id = nullptr) const;

  // The CSRF token tied to a session cookie's value.
  std::string csrf_token(std::string_view session) const;

  // /auth/login (GET: the form; POST: form or JSON username and password),
  // /auth/logout (POST) and /auth/me (GET: who, their groups, the CSRF
  // token and what they may do).
  void handle(const Request& request, const Identity& who, Respond respond);

 private:
  struct Checked {
    std::string user;
    std::string mac;  // of the password, so the cache keeps no password
    std::chrono::steady_clock::time_point until;
  };

  void verify(const std::string& user, const std::string& password,
              std::function<void(bool)> done);
  bool verify_locally(const std::string& user, const std::string& password, bool& known);
  void reload_htpasswd_if_changed();
  sdk::Status read_htpasswd();
  std::vector<std::string> groups_of(const std::string& user) const;
  std::string make_session(const std::string& user) const;
  std::optional<std::string> session_user(std::string_view value) const;
  nlohmann::json me(const Identity& who) const;

  AuthSettings settings_;
  Backend& backend_;
  std::string secret_;
  std::map<std::string, std::string> htpasswd_;  // user -> hash
  std::filesystem::file_time_type htpasswd_mtime_{};
  std::map<std::string, Checked> recently_checked_;  // user -> a recent success
};

}  // namespace kiln::web
