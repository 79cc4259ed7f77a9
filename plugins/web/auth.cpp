// Auth: credentials to an Identity, an Identity and an action to a
// verdict, and the login endpoints. Sessions are stateless: the cookie is
// "base64(user).expiry.HMAC(secret, user + expiry)", so nothing is stored
// and a restart with a configured session_secret keeps people logged in;
// the CSRF token is an HMAC of the cookie, so it is tied to that session.

#include "auth.h"

#include "rest.h"

#include <kiln/sdk/base64.hpp>

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <utility>

namespace kiln::web {
namespace {

using nlohmann::json;
using sdk::invalid_config;

constexpr const char* kCookie = "kiln_session";
// A successful Basic check is remembered this long, so an API client does
// not pay a bcrypt round (~50 ms) per request.
constexpr auto kRememberChecked = std::chrono::minutes(5);
constexpr size_t kMaxRemembered = 1000;

constexpr std::pair<Action, const char*> kActionKeys[kActionCount] = {
    {Action::kForceBuild, "force_build"},
    {Action::kForceAllBuilds, "force_all_builds"},
    {Action::kPingWorker, "ping_worker"},
    {Action::kGracefulShutdown, "graceful_shutdown"},
    {Action::kStopBuild, "stop_build"},
    {Action::kStopAllBuilds, "stop_all_builds"},
    {Action::kCancelPendingBuild, "cancel_pending_build"},
    {Action::kStopChange, "stop_change"},
    {Action::kCleanShutdown, "clean_shutdown"},
    {Action::kShowUsersPage, "show_users_page"},
};

bool is_crypt_hash(std::string_view text) {
  for (std::string_view prefix : {"$2y$", "$2b$", "$2a$", "$5$", "$6$", "$y$", "$gy$", "$7$"}) {
    if (text.starts_with(prefix)) return true;
  }
  return false;
}

sdk::Result<Rule> parse_rule(const json& value, const std::string& key, bool any_source) {
  Rule rule;
  const std::string where = "authz." + key;
  auto needs_source = [&](const std::string& what) -> sdk::Status {
    if (any_source) return {};
    return invalid_config(where + ": " + what +
                   " needs an auth section (users, htpasswd or kiln_users) to log in with");
  };
  if (value.is_boolean()) {
    rule.kind = value.get<bool>() ? Rule::Kind::kAlways : Rule::Kind::kNever;
    return rule;
  }
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "never") {
      rule.kind = Rule::Kind::kNever;
    } else if (text == "always") {
      rule.kind = Rule::Kind::kAlways;
    } else if (text == "authenticated" || text == "auth") {
      rule.kind = Rule::Kind::kAuthenticated;
      if (auto s = needs_source("'" + text + "'"); !s) return s;
    } else {
      return invalid_config(where + ": '" + text +
                            "' is not never, always, authenticated, {policy: NAME} or a list of "
                            "users and group:NAME");
    }
    return rule;
  }
  if (value.is_object()) {
    if (value.size() != 1 || !value.value("policy", json()).is_string() ||
        value["policy"].get<std::string>().empty()) {
      return invalid_config(where + ": a mapping names one authz_check policy: {policy: NAME}");
    }
    rule.kind = Rule::Kind::kPolicy;
    rule.policy = value["policy"].get<std::string>();
    return rule;
  }
  if (!value.is_array() || value.empty()) {
    return invalid_config(where + ": must be never, always, authenticated, {policy: NAME} or a "
                                  "non-empty list of users and group:NAME entries");
  }
  rule.kind = Rule::Kind::kListed;
  for (const auto& entry : value) {
    if (!entry.is_string() || entry.get<std::string>().empty()) {
      return invalid_config(where + ": every entry is a user name or group:NAME, not " + entry.dump());
    }
    const std::string name = entry.get<std::string>();
    if (name.starts_with("group:")) {
      rule.groups.push_back(name.substr(6));
    } else {
      rule.users.push_back(name);
    }
  }
  if (auto s = needs_source("a list of users"); !s) return s;
  return rule;
}

std::string hex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

std::string random_secret() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return {};
  return hex(bytes, sizeof bytes);
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The value of cookie `name` in a Cookie header, or empty.
std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    const size_t semi = header.find(';');
    std::string_view item = header.substr(0, semi);
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == name) return item.substr(eq + 1);
  }
  return {};
}

Response json_answer(unsigned status, const json& body) { return json_response(status, body); }

std::string cookie_header(const std::string& value, int64_t max_age, bool secure) {
  return std::string(kCookie) + "=" + value + "; Path=/; HttpOnly; SameSite=Strict; " +
         (secure ? "Secure; " : "") + "Max-Age=" +
         std::to_string(max_age);
}

constexpr std::string_view kLoginHead = R"html(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Kiln: log in</title>
<style>body { font-family: sans-serif; margin: 1.5em; } label { display: block; margin: 0.4em 0; }</style>
</head><body><h1>Log in</h1>
)html";
constexpr std::string_view kLoginForm = R"html(<form method="post" action="/auth/login">
<label>User <input name="username" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Log in</button>
</form><p><a href="/">builders</a></p></body></html>
)html";

// The login form, after `notice` (HTML, may be empty).
Response login_page(std::string_view notice) {
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::string(kLoginHead) + std::string(notice) + std::string(kLoginForm);
  return r;
}

}  // namespace

const char* action_key(Action action) { return kActionKeys[static_cast<size_t>(action)].second; }

sdk::Result<AuthSettings> parse_auth_settings(const json& config,
                                              const std::filesystem::path& master_dir) {
  AuthSettings s;
  const json auth = config.value("auth", json::object());
  if (!auth.is_object()) return invalid_config("auth: must be a mapping");
  for (const auto& [key, value] : auth.items()) {
    if (key == "users") {
      if (!value.is_array()) return invalid_config("auth.users: must be a list of {username, password}");
      for (size_t i = 0; i < value.size(); ++i) {
        const json& u = value[i];
        const std::string where = "auth.users[" + std::to_string(i) + "]";
        if (!u.is_object() || !u.value("username", json()).is_string() ||
            !u.value("password", json()).is_string()) {
          return invalid_config(where + ": needs username and password (plain or a crypt hash)");
        }
        const std::string name = u["username"].get<std::string>();
        AuthSettings::ConfigUser user{u["password"].get<std::string>(), {}};
        if (name.empty() || name.find(':') != std::string::npos) {
          return invalid_config(where + ": a username is not empty and has no ':'");
        }
        if (user.password.empty()) return invalid_config(where + ": the password is empty");
        for (const auto& g : u.value("groups", json::array())) {
          if (!g.is_string()) return invalid_config(where + ".groups: a list of group names");
          user.groups.push_back(g.get<std::string>());
        }
        if (!s.users.emplace(name, std::move(user)).second) {
          return invalid_config(where + ": user '" + name + "' is listed twice");
        }
      }
    } else if (key == "htpasswd") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return invalid_config("auth.htpasswd: the path of an htpasswd file");
      }
      s.htpasswd = value.get<std::string>();
      if (s.htpasswd.is_relative() && !master_dir.empty()) s.htpasswd = master_dir / s.htpasswd;
    } else if (key == "kiln_users") {
      if (!value.is_boolean()) return invalid_config("auth.kiln_users: true or false");
      s.kiln_users = value.get<bool>();
    } else if (key == "groups") {
      if (!value.is_object()) return invalid_config("auth.groups: a mapping of group: [users]");
      for (const auto& [group, members] : value.items()) {
        if (!members.is_array()) return invalid_config("auth.groups." + group + ": a list of users");
        for (const auto& m : members) {
          if (!m.is_string()) return invalid_config("auth.groups." + group + ": a list of users");
          s.groups[group].push_back(m.get<std::string>());
        }
      }
    } else if (key == "session_secret") {
      if (!value.is_string() || value.get<std::string>().size() < 16) {
        return invalid_config("auth.session_secret: a string of at least 16 characters");
      }
      s.session_secret = value.get<std::string>();
    } else if (key == "session_lifetime") {
      if (!value.is_number_integer() || value.get<int64_t>() <= 0) {
        return invalid_config("auth.session_lifetime: seconds, a positive integer");
      }
      s.session_lifetime = std::chrono::seconds(value.get<int64_t>());
    } else {
      return invalid_config("auth: unknown key '" + key +
                     "' (users, htpasswd, kiln_users, groups, session_secret, session_lifetime)");
    }
  }
  if (!auth.empty() && !s.any_source()) {
    return invalid_config("auth: names no source of users (users, htpasswd or kiln_users)");
  }
  // Buildbot 3's default: with nobody to log in, everyone may act (the
  // port is on loopback unless configured otherwise); once people can log
  // in, acting needs a login.
  const Rule fallback{s.any_source() ? Rule::Kind::kAuthenticated : Rule::Kind::kAlways, {}, {}, {}};
  s.rules.fill(fallback);
  const json authz = config.value("authz", json::object());
  if (!authz.is_object()) return invalid_config("authz: must be a mapping of action: rule");
  for (const auto& [key, value] : authz.items()) {
    const auto* found = std::find_if(std::begin(kActionKeys), std::end(kActionKeys),
                                     [&](const auto& a) { return key == a.second; });
    if (found == std::end(kActionKeys)) {
      std::string known;
      for (const auto& a : kActionKeys) known += std::string(known.empty() ? "" : ", ") + a.second;
      return invalid_config("authz: unknown action '" + key + "' (" + known + ")");
    }
    auto rule = parse_rule(value, key, s.any_source());
    if (!rule) return rule.status();
    s.rules[static_cast<size_t>(found->first)] = std::move(*rule);
  }
  return s;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool password_matches(std::string_view password, std::string_view stored) {
  if (password.find('\0') != std::string_view::npos) return false;
  if (!is_crypt_hash(stored)) return constant_time_equal(password, stored);
  // crypt_r's work area is ~32 KiB: not for the HTTP thread's stack.
  auto data = std::make_unique<crypt_data>();
  const std::string text(password), setting(stored);
  const char* computed = crypt_r(text.c_str(), setting.c_str(), data.get());
  return computed != nullptr && computed[0] == '$' && constant_time_equal(computed, stored);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &size);
  return hex(mac, size);
}

Auth::Auth(AuthSettings settings, Backend& backend)
    : settings_(std::move(settings)), backend_(backend) {
  secret_ = settings_.session_secret.empty() ? random_secret() : settings_.session_secret;
}

sdk::Status Auth::load() {
  if (secret_.empty()) return sdk::Status(KILN_ERR_INTERNAL, "no random bytes for the session key");
  if (settings_.htpasswd.empty()) return {};
  return read_htpasswd();
}

sdk::Status Auth::read_htpasswd() {
  const std::string file = settings_.htpasswd.string();
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(settings_.htpasswd, ec);
  std::ifstream in(settings_.htpasswd);
  if (ec || !in) return invalid_config("auth.htpasswd: cannot read " + file);
  std::map<std::string, std::string> table;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.front() == '#') continue;
    const std::string where = file + ":" + std::to_string(number) + ":1: ";
    const size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) return invalid_config(where + "not user:hash");
    const std::string user = line.substr(0, colon), hash = line.substr(colon + 1);
    if (!is_crypt_hash(hash)) {
      return invalid_config(where + "user '" + user + "': '" + hash.substr(0, hash.find('$', 1) + 1) +
                     "' hashes are not supported; use bcrypt (htpasswd -B) or sha-crypt "
                     "(htpasswd -5 or -2)");
    }
    table[user] = hash;
  }
  htpasswd_ = std::move(table);
  htpasswd_mtime_ = mtime;
  return {};
}

void Auth::reload_htpasswd_if_changed() {
  if (settings_.htpasswd.empty()) return;
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(settings_.htpasswd, ec);
  // A file being rewritten or broken keeps the last good table.
  if (!ec && mtime != htpasswd_mtime_) (void)read_htpasswd();
}

bool Auth::verify_locally(const std::string& user, const std::string& password, bool& known) {
  if (auto it = settings_.users.find(user); it != settings_.users.end()) {
    known = true;
    return password_matches(password, it->second.password);
  }
  reload_htpasswd_if_changed();
  if (auto it = htpasswd_.find(user); it != htpasswd_.end()) {
    known = true;
    return password_matches(password, it->second);
  }
  known = false;
  return false;
}

void Auth::verify(const std::string& user, const std::string& password,
                  std::function<void(bool)> done) {
  const std::string mac = hmac_sha256_hex(secret_, user + '\0' + password);
  const auto now = std::chrono::steady_clock::now();
  if (auto it = recently_checked_.find(user);
      it != recently_checked_.end() && it->second.until > now && constant_time_equal(it->second.mac, mac)) {
    return done(true);
  }
  auto remember = [this, user, mac] {
    if (recently_checked_.size() >= kMaxRemembered) recently_checked_.clear();
    recently_checked_[user] = {user, mac, std::chrono::steady_clock::now() + kRememberChecked};
  };
  bool known = false;
  if (verify_locally(user, password, known)) {
    remember();
    return done(true);
  }
  if (known || !settings_.kiln_users) return done(false);
  backend_.control("users", "check_password", json{{"username", user}, {"password", password}},
                   [remember, done](Answer a) {
                     if (a.ok()) remember();
                     done(a.ok());
                   });
}

std::vector<std::string> Auth::groups_of(const std::string& user) const {
  std::vector<std::string> out;
  if (auto it = settings_.users.find(user); it != settings_.users.end()) out = it->second.groups;
  for (const auto& [group, members] : settings_.groups) {
    if (std::find(members.begin(), members.end(), user) != members.end()) out.push_back(group);
  }
  return out;
}

std::string Auth::make_session(const std::string& user) const {
  const std::string payload =
      sdk::base64_encode(user) + "." + std::to_string(unix_now() + settings_.session_lifetime.count());
  return payload + "." + hmac_sha256_hex(secret_, "session\n" + payload);
}

std::optional<std::string> Auth::session_user(std::string_view value) const {
  const size_t last = value.rfind('.');
  if (last == std::string_view::npos) return std::nullopt;
  const std::string_view payload = value.substr(0, last);
  if (!constant_time_equal(value.substr(last + 1),
                           hmac_sha256_hex(secret_, "session\n" + std::string(payload)))) {
    return std::nullopt;
  }
  const size_t dot = payload.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view expiry_text = payload.substr(dot + 1);
  int64_t expiry = 0;
  auto [end, ec] = std::from_chars(expiry_text.data(), expiry_text.data() + expiry_text.size(), expiry);
  if (ec != std::errc() || end != expiry_text.data() + expiry_text.size() || expiry < unix_now()) {
    return std::nullopt;
  }
  auto user = sdk::base64_decode(payload.substr(0, dot));
  if (!user || user->empty()) return std::nullopt;
  return user;
}

std::string Auth::csrf_token(std::string_view session) const {
  return hmac_sha256_hex(secret_, "csrf\n" + std::string(session));
}

void Auth::identify(const Request& request, std::function<void(Identity, std::string)> done) {
  if (!enabled()) return done(Identity{}, {});
  const std::string_view authorization = request.header("authorization");
  if (authorization.starts_with("Basic ")) {
    auto decoded = sdk::base64_decode(authorization.substr(6));
    const size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos || colon == 0) {
      return done(Identity{}, "malformed Basic credentials (base64 of user:password)");
    }
    std::string user = decoded->substr(0, colon), password = decoded->substr(colon + 1);
    return verify(user, password, [this, user, done](bool ok) {
      if (!ok) return done(Identity{}, "wrong username or password");
      Identity who;
      who.user = user;
      who.groups = groups_of(user);
      who.by_basic = true;
      done(std::move(who), {});
    });
  }
  const std::string_view value = cookie_value(request.header("cookie"), kCookie);
  if (auto user = session_user(value)) {
    Identity who;
    who.user = *user;
    who.groups = groups_of(*user);
    who.by_session = true;
    who.session = std::string(value);
    return done(std::move(who), {});
  }
  done(Identity{}, {});
}

Verdict Auth::check(Action action, const Identity& who) const {
  const Rule& rule = settings_.rules[static_cast<size_t>(action)];
  switch (rule.kind) {
    case Rule::Kind::kNever:
      return Verdict::kForbidden;
    case Rule::Kind::kAlways:
      return Verdict::kAllowed;
    case Rule::Kind::kAuthenticated:
      return who.authenticated() ? Verdict::kAllowed : Verdict::kUnauthenticated;
    case Rule::Kind::kPolicy:
      // Only authorize() asks the policy; a caller that cannot wait
      // (/auth/me) learns nothing is promised.
      return who.authenticated() ? Verdict::kForbidden : Verdict::kUnauthenticated;
    case Rule::Kind::kListed:
      break;
  }
  if (!who.authenticated()) return Verdict::kUnauthenticated;
  if (std::find(rule.users.begin(), rule.users.end(), who.user) != rule.users.end()) {
    return Verdict::kAllowed;
  }
  for (const auto& g : who.groups) {
    if (std::find(rule.groups.begin(), rule.groups.end(), g) != rule.groups.end()) {
      return Verdict::kAllowed;
    }
  }
  return Verdict::kForbidden;
}

void Auth::authorize(Action action, const Identity& who, std::string path,
                     std::function<void(Verdict)> done) {
  const Rule& rule = settings_.rules[static_cast<size_t>(action)];
  if (rule.kind != Rule::Kind::kPolicy) return done(check(action, who));
  json args = {{"user", {{"username", who.authenticated() ? json(who.user) : json()},
                         {"email", ""},
                         {"groups", who.groups}}},
               {"action", action_key(action)},
               {"path", std::move(path)}};
  backend_.policy(rule.policy, std::move(args), [authenticated = who.authenticated(), done](Answer a) {
    // A policy that fails or answers anything but true refuses.
    if (a.ok() && a.value == true) return done(Verdict::kAllowed);
    done(authenticated ? Verdict::kForbidden : Verdict::kUnauthenticated);
  });
}

Response Auth::refusal(Verdict verdict, Action action, const Identity& who,
                       const json* rpc_id) const {
  const bool login = verdict == Verdict::kUnauthenticated;
  const std::string message =
      login ? std::string(action_key(action)) + " needs a login (HTTP Basic, or /auth/login)"
            : (who.authenticated() ? "user '" + who.user + "' may not " : std::string("nobody may ")) +
                  action_key(action);
  const unsigned status = login ? 401 : 403;
  Response r = rpc_id ? json_answer(status, json{{"jsonrpc", "2.0"},
                                                 {"error", {{"code", -32600}, {"message", message}}},
                                                 {"id", *rpc_id}})
                      : error_response(status, message);
  if (login) r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"kiln\", charset=\"UTF-8\"");
  return r;
}

json Auth::me(const Identity& who) const {
  json actions = json::object();
  for (const auto& [action, key] : kActionKeys) actions[key] = check(action, who) == Verdict::kAllowed;
  json out = {{"user", who.authenticated() ? json(who.user) : json()},
              {"groups", who.groups},
              {"auth", enabled()},
              {"actions", std::move(actions)}};
  if (who.by_session) out["csrf_token"] = csrf_token(who.session);
  return out;
}

void Auth::handle(const Request& request, const Identity& who, Respond respond) {
  const std::string_view path = request.path;
  if (path == "/auth/me") {
    if (request.method != "GET") return respond(error_response(405, "/auth/me is read with GET"));
    return respond(json_answer(200, me(who)));
  }
  if (path == "/auth/logout") {
    if (request.method != "POST") return respond(error_response(405, "log out with a POST"));
    Response r = json_answer(200, json{{"user", nullptr}});
    r.headers.emplace_back("Set-Cookie", cookie_header("", 0, settings_.secure_cookie));
    return respond(std::move(r));
  }
  if (path != "/auth/login") return respond(error_response(404, "no page at '" + request.path + "'"));
  if (!enabled()) return respond(error_response(404, "this server has no logins (no auth section)"));
  if (request.method == "GET") return respond(login_page(""));
  if (request.method != "POST") return respond(error_response(405, "log in with a POST"));
  // A form posts username=..&password=..; a script may post JSON.
  const bool form = !request.header("content-type").starts_with("application/json");
  std::string user, password;
  if (form) {
    for (auto& [name, value] : form_fields(request.body)) {
      if (name == "username") user = std::move(value);
      if (name == "password") password = std::move(value);
    }
  } else {
    const json body = json::parse(request.body, nullptr, false);
    if (body.is_object() && body.value("username", json()).is_string() &&
        body.value("password", json()).is_string()) {
      user = body["username"].get<std::string>();
      password = body["password"].get<std::string>();
    }
  }
  if (user.empty() || password.empty()) {
    return respond(error_response(400, "a login needs a username and a password"));
  }
  verify(user, password, [this, user, form, respond](bool ok) {
    if (!ok && form) {
      // The form again, saying why, rather than a JSON error in a browser.
      Response r = login_page("<p><strong>Wrong username or password.</strong></p>\n");
      r.status = 401;
      return respond(std::move(r));
    }
    if (!ok) return respond(error_response(401, "wrong username or password"));
    const std::string session = make_session(user);
    Response r;
    if (form) {
      r.status = 303;
      r.headers.emplace_back("Location", "/");
      r.content_type = "text/plain; charset=utf-8";
      r.body = "logged in as " + user + "\n";
    } else {
      r = json_answer(200, json{{"user", user}, {"csrf_token", csrf_token(session)}});
    }
    r.headers.emplace_back("Set-Cookie", cookie_header(session, settings_.session_lifetime.count(), settings_.secure_cookie));
    respond(std::move(r));
  });
}

}  // namespace kiln::web
