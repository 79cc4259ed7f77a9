// The web reporter's `port` key as master.yaml gives it, checked by the
// real plugin through the core's config checking.

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <string>

namespace {

// Every diagnostic of a master whose only reporter is `{type: web, port:
// PORT, OPTIONS}` (OPTIONS: more keys in flow style).
std::string problems_with(const std::string& port, const std::string& options = "") {
  kiln::testing::TempDir dir("kiln-web-config");
  std::ofstream(dir / "master.yaml") << "reporters:\n  - {type: web, port: " << port
                                     << (options.empty() ? "" : ", " + options) << "}\n";
  kiln::plugin::Registry registry;
  kiln::master::register_builtins(registry);
  for (const auto& e : registry.load_directories({KILN_BUILD_PLUGIN_DIR})) FAIL(e.to_string());
  auto read = kiln::config::read_config_document(dir / "master.yaml");
  for (const auto& d : read.errors) FAIL(d.to_string());
  auto checked = kiln::config::check_master_config(*read.document, registry);
  std::string out;
  for (const auto& d : checked.errors) out += d.to_string() + "\n";
  return out;
}

std::string problems_with_port(const std::string& port) { return problems_with(port); }

}  // namespace

TEST_CASE("port takes a number, HOST:PORT, an IPv6 HOST in brackets or Buildbot's tcp:PORT:interface=ADDR") {
  for (const char* good : {"8010", "0", "\"127.0.0.1:8010\"", "\"0.0.0.0:0\"", "\"[::1]:8010\"",
                           "\"tcp:8010\"", "\"tcp:8010:interface=127.0.0.1\""}) {
    INFO(good);
    REQUIRE(problems_with_port(good).empty());
  }
}

TEST_CASE("a port that is no address is refused naming the reporter and the value") {
  const std::string too_big = problems_with_port("70000");
  REQUIRE_THAT(too_big, Catch::Contains("reporters"));
  REQUIRE_THAT(too_big, Catch::Contains("70000"));
  REQUIRE_THAT(problems_with_port("\"localhost:http\""), Catch::Contains("'http' is not a port number"));
  REQUIRE_THAT(problems_with_port("\":8010\""), Catch::Contains("names no host"));
  REQUIRE_THAT(problems_with_port("\"tcp:8010:backlog=5\""), Catch::Contains("interface="));
  REQUIRE_THAT(problems_with_port("true"), Catch::Contains("port"));
}

TEST_CASE("auth and authz are checked with the config naming the key") {
  const std::string users = "auth: {users: [{username: ann, password: pw}]}";
  REQUIRE(problems_with("0", users + ", authz: {force_build: [ann, group:admins], stop_build: never}").empty());
  REQUIRE(problems_with("0", "authz: {force_build: always, show_users_page: false}").empty());
  REQUIRE_THAT(problems_with("0", "authz: {force_build: authenticated}"), Catch::Contains("needs an auth section"));
  REQUIRE_THAT(problems_with("0", users + ", authz: {force_bild: always}"), Catch::Contains("unknown action 'force_bild'"));
  REQUIRE_THAT(problems_with("0", users + ", authz: {stop_build: sometimes}"), Catch::Contains("authz.stop_build"));
  REQUIRE_THAT(problems_with("0", users + ", authz: {stop_build: []}"), Catch::Contains("authz.stop_build"));
  REQUIRE_THAT(problems_with("0", "auth: {users: [{username: ann}]}"), Catch::Contains("auth.users[0]"));
  REQUIRE_THAT(problems_with("0", "auth: {session_secret: short, kiln_users: true}"), Catch::Contains("session_secret"));
  REQUIRE_THAT(problems_with("0", "auth: {ldap: x}"), Catch::Contains("unknown key 'ldap'"));
  REQUIRE_THAT(problems_with("0", "auth: {groups: {admins: [ann]}}"), Catch::Contains("names no source"));
}

TEST_CASE("change_hook_dialects enables known dialects only") {
  REQUIRE(problems_with("0", "change_hook_dialects: {base: true, github: {secret: s}, gitlab: {secret: t, codebase: c}}").empty());
  REQUIRE_THAT(problems_with("0", "change_hook_dialects: {bitbucket: true}"), Catch::Contains("{policy: NAME}"));
  REQUIRE_THAT(problems_with("0", "change_hook_dialects: {base: {policy: x}}"), Catch::Contains("unknown option 'policy'"));
  REQUIRE_THAT(problems_with("0", "change_hook_dialects: {github: {secret: 3}}"), Catch::Contains("github.secret"));
  REQUIRE_THAT(problems_with("0", "change_hook_dialects: {github: {strict: true}}"), Catch::Contains("strict"));
  REQUIRE_THAT(problems_with("0", "change_hook_auth: true, change_hook_dialects: {base: true}"),
               Catch::Contains("change_hook_auth needs an auth section"));
}

TEST_CASE("the page keys are checked naming the key and the problem") {
  REQUIRE(problems_with("0", "title: ACME, title_url: \"https://acme.example\", revlink: \"https://r/%s\", "
                             "changecommentlink: {regex: \"#(\\\\d+)\", url: \"https://b/\\\\1\", title: \"Bug \\\\1\"}, "
                             "projects: {p: \"https://p\"}, repositories: {r: \"https://r\"}")
              .empty());
  REQUIRE(problems_with("0", "revlink: {r: \"https://r/%s\"}, changecommentlink: [{regex: x, url: y}]").empty());
  REQUIRE_THAT(problems_with("0", "changecommentlink: {regex: \"(\", url: x}"), Catch::Contains("changecommentlink[0].regex"));
  REQUIRE_THAT(problems_with("0", "changecommentlink: {url: x}"), Catch::Contains("needs regex and url"));
  REQUIRE_THAT(problems_with("0", "revlink: {r: 3}"), Catch::Contains("revlink.r"));
  REQUIRE_THAT(problems_with("0", "revlink: 3"), Catch::Contains("revlink"));
  REQUIRE_THAT(problems_with("0", "projects: [a]"), Catch::Contains("projects"));
  REQUIRE_THAT(problems_with("0", "public_html: 7"), Catch::Contains("public_html"));
}
