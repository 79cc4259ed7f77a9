// Authentication and authorization of the web plugin over real HTTP: a
// config user list (plain and crypt-hashed passwords), an htpasswd file
// with hashes written by Apache's htpasswd (bcrypt and sha-crypt), the
// users of `kiln user` checked by the core, HTTP Basic, the login form's
// session cookie and its CSRF token, and the rules of each action.

#include "store/temp_dir.h"
#include "web/web_master.h"

#include <kiln/sdk/base64.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <string>

using kiln::testing::HttpReply;
using kiln::testing::TempDir;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

// Written by `htpasswd -nbB -C 5 carol 'bcrypt pass'`, `htpasswd -nb -5
// dave 'sha512 pass'` and `htpasswd -nb -2 erin 'sha256 pass'`.
constexpr const char* kHtpasswd =
    "# web users\n"
    "carol:$2y$05$YLA3jweMap7O9JBBacqECuBkh66dALHgzb2Lo4L0eDteGQq2SA5ia\n"
    "dave:$6$w06.f1ix0uSRgWZB$OOEKSXt6dbn8qZD..8C6bTS98niBfTQiYTloFMC5hRvFMUBvj3mrqiwUw6ISJbmxdPZOOaTh38OULOLmxf7nz0\n"
    "erin:$5$uOX/Z5eLkdtapczL$xyGzB8o3wB5JVe9HP.AOOnIs3wFsTtY8yr.JExuc1MD\n";

// bob's password "pw" as sha512-crypt (Python's crypt.crypt('pw', '$6$saltsalt')).
constexpr const char* kBobHash =
    "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";

std::string auth_options(const std::filesystem::path& htpasswd) {
  return "auth:\n"
         "  users:\n"
         "    - {username: ann, password: \"ann pass\", groups: [admins]}\n"
         "    - {username: bob, password: \"" + std::string(kBobHash) + "\"}\n"
         "  htpasswd: " + htpasswd.string() + "\n"
         "  kiln_users: true\n"
         "  groups: {admins: [carol]}\n"
         "authz:\n"
         "  stop_build: [ann, group:admins]\n"
         "  cancel_pending_build: never\n"
         "  show_users_page: [ann]\n";
}

struct AuthMaster {
  TempDir dir{"kiln-web-auth"};
  std::filesystem::path htpasswd = [this] {
    std::ofstream(dir / "htpasswd") << kHtpasswd;
    return dir / "htpasswd";
  }();
  WebMaster web{auth_options(htpasswd)};
};

std::map<std::string, std::string> basic(const std::string& user, const std::string& password) {
  return {{"Authorization", "Basic " + kiln::sdk::base64_encode(user + ":" + password)}};
}

HttpReply force(WebMaster& web, const std::map<std::string, std::string>& headers = {}) {
  return web.rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"lint"}}}, headers);
}

size_t buildsets(WebMaster& web) { return web.get("/api/v2/buildsets").json()["buildsets"].size(); }

void require_status(const HttpReply& reply, unsigned status) {
  INFO(reply.body);
  REQUIRE(reply.status == status);
}

}  // namespace

TEST_CASE("an anonymous force is refused with 401 and Basic's challenge and starts nothing") {
  AuthMaster m;
  HttpReply refused = force(m.web);
  require_status(refused, 401);
  REQUIRE_THAT(refused.headers["www-authenticate"], Catch::Contains("Basic realm="));
  REQUIRE(refused.json()["error"]["code"] == -32600);
  REQUIRE_THAT(refused.json()["error"]["message"].get<std::string>(), Catch::Contains("force_build"));
  REQUIRE(buildsets(m.web) == 0);
  // Reads stay open.
  require_status(m.web.get("/api/v2/builders"), 200);
}

TEST_CASE("HTTP Basic lets an allowed user act and answers 403 to a user the rule does not list") {
  AuthMaster m;
  // force_build is not configured: with an auth section it needs a login.
  require_status(force(m.web, basic("ann", "ann pass")), 200);
  require_status(force(m.web, basic("bob", "pw")), 200);  // a sha512-crypt hash in the config
  REQUIRE(buildsets(m.web) == 2);

  // stop_build lists ann and the admins group: bob is known but not listed.
  HttpReply stop = m.web.rpc("/api/v2/builds/1", "stop", json::object(), basic("bob", "pw"));
  require_status(stop, 403);
  REQUIRE_THAT(stop.json()["error"]["message"].get<std::string>(), Catch::Contains("bob"));
  // cancel_pending_build is never allowed, even to ann.
  require_status(m.web.rpc("/api/v2/buildrequests/1", "cancel", json::object(), basic("ann", "ann pass")), 403);

  // A wrong password is 401 whatever the request.
  require_status(force(m.web, basic("ann", "wrong")), 401);
  require_status(m.web.request("GET", "/api/v2/builders", "", basic("nobody", "x")), 401);
  REQUIRE(buildsets(m.web) == 2);

  // Credentials sent by a cross-site form come without a JSON content type.
  auto headers = basic("ann", "ann pass");
  headers["Content-Type"] = "text/plain";
  const std::string body = R"({"jsonrpc": "2.0", "method": "force", "params": {"builderNames": ["lint"]}, "id": 1})";
  require_status(m.web.request("POST", "/api/v2/forceschedulers/force", body, headers), 400);
  REQUIRE(buildsets(m.web) == 2);
}

TEST_CASE("htpasswd users log in with bcrypt and sha-crypt hashes and get the groups of the config") {
  AuthMaster m;
  require_status(force(m.web, basic("carol", "bcrypt pass")), 200);
  require_status(force(m.web, basic("dave", "sha512 pass")), 200);
  require_status(force(m.web, basic("erin", "sha256 pass")), 200);
  require_status(force(m.web, basic("carol", "sha512 pass")), 401);
  REQUIRE(buildsets(m.web) == 3);

  json carol = m.web.request("GET", "/auth/me", "", basic("carol", "bcrypt pass")).json();
  REQUIRE(carol["user"] == "carol");
  REQUIRE(carol["groups"] == json::array({"admins"}));
  REQUIRE(carol["actions"]["stop_build"] == true);
  json dave = m.web.request("GET", "/auth/me", "", basic("dave", "sha512 pass")).json();
  REQUIRE(dave["actions"]["stop_build"] == false);
  REQUIRE(dave["actions"]["force_build"] == true);

  // The file is read again when it changes.
  std::ofstream(m.htpasswd, std::ios::app) << "gina:$6$w06.f1ix0uSRgWZB$OOEKSXt6dbn8qZD..8C6bTS98niBfTQiYTloFMC5hRvFMUBvj3mrqiwUw6ISJbmxdPZOOaTh38OULOLmxf7nz0\n";
  std::filesystem::last_write_time(m.htpasswd, std::filesystem::last_write_time(m.htpasswd) +
                                                   std::chrono::seconds(2));
  require_status(force(m.web, basic("gina", "sha512 pass")), 200);
}

TEST_CASE("an htpasswd line with a hash crypt cannot check stops the start naming file and line") {
  TempDir dir("kiln-web-htpasswd");
  std::ofstream(dir / "htpasswd") << "carol:$2y$05$YLA3jweMap7O9JBBacqECuBkh66dALHgzb2Lo4L0eDteGQq2SA5ia\n"
                                     "frank:$apr1$iPYh.NJt$2yOBMthmpdKm6OtTPweKr/\n";
  kiln::testing::SchedulerMaster master(
      kiln::testing::web_master_yaml(kiln::testing::free_port(),
                                     "auth:\n  htpasswd: " + (dir / "htpasswd").string()));
  const std::string error = master.engine().start();
  REQUIRE_THAT(error, Catch::Contains((dir / "htpasswd").string() + ":2:1"));
  REQUIRE_THAT(error, Catch::Contains("$apr1$"));
}

TEST_CASE("the users of kiln user log in through the core's password check") {
  AuthMaster m;
  kiln::store::UserChanges gus;
  gus.identifier = "gus@example.org";
  gus.bb_username = "gus";
  auto hash = kiln::store::hash_password("gus pass");
  REQUIRE(hash.ok());
  gus.bb_password_hash = hash.value;
  REQUIRE(m.web.master().store().add_user_sync(gus).ok());

  require_status(force(m.web, basic("gus", "gus pass")), 200);
  require_status(force(m.web, basic("gus", "gus pas")), 401);
  REQUIRE(buildsets(m.web) == 1);
  // A second request is served from the remembered check, and still right.
  require_status(force(m.web, basic("gus", "gus pass")), 200);
  require_status(force(m.web, basic("gus", "other")), 401);

  // The check is no control call the web API forwards.
  HttpReply probe = m.web.rpc("/api/v2/users/1", "check_password",
                              {{"username", "gus"}, {"password", "gus pass"}}, basic("ann", "ann pass"));
  require_status(probe, 501);
}

TEST_CASE("a login sets an HttpOnly SameSite=Strict session cookie and a POST with it needs its CSRF token") {
  AuthMaster m;
  auto login = [&](const std::string& user, const std::string& password) {
    return m.web.request("POST", "/auth/login", json{{"username", user}, {"password", password}}.dump(),
                         {{"Content-Type", "application/json"}});
  };
  require_status(login("ann", "wrong"), 401);
  HttpReply ann = login("ann", "ann pass");
  require_status(ann, 200);
  const std::string set_cookie = ann.headers["set-cookie"];
  REQUIRE_THAT(set_cookie, Catch::Contains("HttpOnly"));
  REQUIRE_THAT(set_cookie, Catch::Contains("SameSite=Strict"));
  REQUIRE_THAT(set_cookie, Catch::StartsWith("kiln_session="));
  const std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  const std::string token = ann.json()["csrf_token"];

  // The cookie alone, as a forged cross-site POST would carry it: refused.
  require_status(force(m.web, {{"Cookie", cookie}}), 403);
  require_status(force(m.web, {{"Cookie", cookie}, {"X-CSRF-Token", "0123"}}), 403);
  // Another session's token does not fit this one.
  const std::string bob_token = login("bob", "pw").json()["csrf_token"];
  require_status(force(m.web, {{"Cookie", cookie}, {"X-CSRF-Token", bob_token}}), 403);
  REQUIRE(buildsets(m.web) == 0);
  require_status(force(m.web, {{"Cookie", cookie}, {"X-CSRF-Token", token}}), 200);
  REQUIRE(buildsets(m.web) == 1);

  json me = m.web.request("GET", "/auth/me", "", {{"Cookie", cookie}}).json();
  REQUIRE(me["user"] == "ann");
  REQUIRE(me["csrf_token"] == token);

  // A cookie whose user was changed no longer matches its signature: anonymous.
  std::string forged = cookie;
  forged.replace(forged.find('=') + 1, 4, kiln::sdk::base64_encode("bob").substr(0, 4));
  REQUIRE(m.web.request("GET", "/auth/me", "", {{"Cookie", forged}}).json()["user"].is_null());

  // The login form: 303 to the builders with the cookie.
  HttpReply form = m.web.request("POST", "/auth/login", "username=ann&password=ann+pass",
                                 {{"Content-Type", "application/x-www-form-urlencoded"}});
  require_status(form, 303);
  REQUIRE(form.headers["location"] == "/");
  REQUIRE_THAT(form.headers["set-cookie"], Catch::StartsWith("kiln_session="));
  REQUIRE_THAT(m.web.get("/auth/login").body, Catch::Contains("<form method=\"post\" action=\"/auth/login\">"));
  HttpReply wrong = m.web.request("POST", "/auth/login", "username=ann&password=guess",
                                  {{"Content-Type", "application/x-www-form-urlencoded"}});
  require_status(wrong, 401);
  REQUIRE_THAT(wrong.body, Catch::Contains("Wrong username or password"));
  REQUIRE(wrong.headers.count("set-cookie") == 0);

  // Logging out needs the token too, and clears the cookie.
  require_status(m.web.request("POST", "/auth/logout", "", {{"Cookie", cookie}}), 403);
  HttpReply out = m.web.request("POST", "/auth/logout", "", {{"Cookie", cookie}, {"X-CSRF-Token", token}});
  require_status(out, 200);
  REQUIRE_THAT(out.headers["set-cookie"], Catch::Contains("Max-Age=0"));
}

TEST_CASE("show_users_page guards the users resource wherever it is nested") {
  AuthMaster m;
  require_status(m.web.get("/api/v2/users"), 401);
  require_status(m.web.get("/api/v2/changes/1/users"), 401);
  require_status(m.web.request("GET", "/api/v2/users", "", basic("bob", "pw")), 403);
  HttpReply ann = m.web.request("GET", "/api/v2/users", "", basic("ann", "ann pass"));
  require_status(ann, 200);
  REQUIRE(ann.json().contains("users"));
}

TEST_CASE("without an auth section every action stays open and no login exists") {
  WebMaster web;
  require_status(force(web), 200);
  json me = web.get("/auth/me").json();
  REQUIRE(me["auth"] == false);
  REQUIRE(me["actions"]["force_build"] == true);
  require_status(web.get("/auth/login"), 404);
}

TEST_CASE("an authz_check policy function decides an action's rule") {
  WebMaster web("auth: {users: [{username: ops, password: ops-pw}, {username: dev, password: dev-pw}]}\n"
                "authz: {force_build: {policy: gate}}",
                kiln::testing::free_port(), "policies: [{name: gate, type: test-ops-only}]\n",
                {std::string(KILN_TEST_PLUGIN_DIR) + "/mail_policies"});
  require_status(force(web), 401);
  require_status(force(web, basic("dev", "dev-pw")), 403);
  require_status(force(web, basic("ops", "ops-pw")), 200);
  REQUIRE(buildsets(web) == 1);
}

TEST_CASE("an authz rule naming a policy that is not configured stops the start") {
  kiln::testing::SchedulerMaster master(
      kiln::testing::web_master_yaml(kiln::testing::free_port(), "authz: {stop_build: {policy: nosuch}}"));
  const std::string error = master.engine().start();
  REQUIRE_THAT(error, Catch::Contains("authz.stop_build"));
  REQUIRE_THAT(error, Catch::Contains("no policy named 'nosuch'"));
}
