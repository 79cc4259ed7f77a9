// Change hooks over real HTTP: Buildbot's base dialect (form and JSON),
// GitHub push and pull_request events signed with X-Hub-Signature-256,
// GitLab push events with X-Gitlab-Token, a plugin's dialect (a
// change_hook policy) and change_hook_auth; the changes are read back
// through the REST API.

#include "web/web_master.h"

#include <kiln/sdk/base64.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <catch2/catch.hpp>

#include <string>

using kiln::testing::HttpReply;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

constexpr const char* kHooks =
    "change_hook_dialects:\n"
    "  base: true\n"
    "  github: {secret: \"It's a Secret to Everybody\"}\n"
    "  gitlab: {secret: gitlab-token, codebase: app}\n";

std::string github_signature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &size);
  std::string out = "sha256=";
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned i = 0; i < size; ++i) {
    out += kDigits[mac[i] >> 4];
    out += kDigits[mac[i] & 15];
  }
  return out;
}

// The shape of GitHub's documented push event: two commits on main.
json github_push() {
  auto commit = [](const std::string& id, const std::string& message, const std::string& when) {
    return json{{"id", id},
                {"tree_id", "f9d2a07e9488b91af2641b26b9407fe22a451433"},
                {"distinct", true},
                {"message", message},
                {"timestamp", when},
                {"url", "https://github.com/octo-org/hello/commit/" + id},
                {"author", {{"name", "Monalisa Octocat"}, {"email", "mona@github.com"}, {"username", "octocat"}}},
                {"committer", {{"name", "GitHub"}, {"email", "noreply@github.com"}, {"username", "web-flow"}}},
                {"added", {"docs/new.md"}},
                {"removed", json::array()},
                {"modified", {"README.md"}}};
  };
  return json{
      {"ref", "refs/heads/main"},
      {"before", "9049f1265b7d61be4a8904a9a27120d2064dab3b"},
      {"after", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"},
      {"created", false},
      {"deleted", false},
      {"forced", false},
      {"compare", "https://github.com/octo-org/hello/compare/9049f1265b7d...0d1a26e67d8f"},
      {"commits", {commit("b7e3a4f8b8c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6", "Update README", "2015-05-05T19:40:15-04:00"),
                   commit("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "Add docs", "2015-05-05T19:41:15-04:00")}},
      {"head_commit", nullptr},
      {"repository", {{"id", 35129377},
                      {"name", "hello"},
                      {"full_name", "octo-org/hello"},
                      {"html_url", "https://github.com/octo-org/hello"},
                      {"clone_url", "https://github.com/octo-org/hello.git"}}},
      {"pusher", {{"name", "octocat"}, {"email", "mona@github.com"}}},
      {"sender", {{"login", "octocat"}, {"id", 1}}}};
}

json github_pull_request(const std::string& action) {
  return json{{"action", action},
              {"number", 2},
              {"pull_request", {{"url", "https://api.github.com/repos/octo-org/hello/pulls/2"},
                                {"html_url", "https://github.com/octo-org/hello/pull/2"},
                                {"number", 2},
                                {"state", "open"},
                                {"title", "Update the README with new information."},
                                {"body", "This is a pretty simple change."},
                                {"created_at", "2019-05-15T15:20:33Z"},
                                {"commits", 1},
                                {"head", {{"ref", "changes"}, {"sha", "ec26c3e57ca3a959ca5aad62de7213c562f8c821"}}},
                                {"base", {{"ref", "main"},
                                          {"sha", "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"},
                                          {"repo", {{"full_name", "octo-org/hello"}}}}}}},
              {"repository", {{"name", "hello"},
                              {"full_name", "octo-org/hello"},
                              {"html_url", "https://github.com/octo-org/hello"}}},
              {"sender", {{"login", "Codertocat"}}}};
}

// The shape of GitLab's documented push event.
json gitlab_push() {
  return json{
      {"object_kind", "push"},
      {"event_name", "push"},
      {"before", "95790bf891e76fee5e1747ab589903a6a1f80f22"},
      {"after", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"},
      {"ref", "refs/heads/master"},
      {"user_name", "John Smith"},
      {"project", {{"name", "Diaspora"}, {"path_with_namespace", "mike/diaspora"}}},
      {"repository", {{"name", "Diaspora"},
                      {"url", "git@example.com:mike/diaspora.git"},
                      {"homepage", "http://example.com/mike/diaspora"},
                      {"git_http_url", "http://example.com/mike/diaspora.git"}}},
      {"commits", {{{"id", "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"},
                    {"message", "Update Catalan translation to e38cb41."},
                    {"title", "Update Catalan translation to e38cb41."},
                    {"timestamp", "2011-12-12T14:27:31+02:00"},
                    {"url", "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327"},
                    {"author", {{"name", "Jordi Mallach"}, {"email", "jordi@softcatala.org"}}},
                    {"added", {"CHANGELOG"}},
                    {"modified", {"app/controller/application.rb"}},
                    {"removed", json::array()}}}},
      {"total_commits_count", 1}};
}

json changes(WebMaster& web) { return web.get("/api/v2/changes?order=changeid").json()["changes"]; }

void require_status(const HttpReply& reply, unsigned status) {
  INFO(reply.body);
  REQUIRE(reply.status == status);
}

}  // namespace

TEST_CASE("the base hook takes a change as form fields or as JSON") {
  WebMaster web(kHooks);
  HttpReply form = web.request(
      "POST", "/change_hook/base",
      "author=alice&comments=fix+the+build&branch=main&revision=abc123&repository=%2Fsrv%2Frepo.git"
      "&project=kiln&category=fix&files=%5B%22a.c%22%2C%22b.c%22%5D&properties=%7B%22ticket%22%3A+42%7D"
      "&when_timestamp=1700000000",
      {{"Content-Type", "application/x-www-form-urlencoded"}});
  require_status(form, 200);
  REQUIRE(form.json()["changeids"].size() == 1);
  HttpReply as_json = web.request(
      "POST", "/change_hook/base",
      json{{"author", "bob"}, {"comments", "docs"}, {"branch", "dev"}, {"files", {"README"}}}.dump(),
      {{"Content-Type", "application/json"}});
  require_status(as_json, 200);

  json all = changes(web);
  REQUIRE(all.size() == 2);
  REQUIRE(all[0]["author"] == "alice");
  REQUIRE(all[0]["comments"] == "fix the build");
  REQUIRE(all[0]["branch"] == "main");
  REQUIRE(all[0]["revision"] == "abc123");
  REQUIRE(all[0]["repository"] == "/srv/repo.git");
  REQUIRE(all[0]["category"] == "fix");
  REQUIRE(all[0]["files"] == json::array({"a.c", "b.c"}));
  REQUIRE(all[0]["when_timestamp"] == 1700000000);
  REQUIRE(all[0]["properties"]["ticket"][0] == 42);
  REQUIRE(all[1]["author"] == "bob");
  REQUIRE(all[1]["files"] == json::array({"README"}));

  require_status(web.request("POST", "/change_hook/base", "files=not-json",
                             {{"Content-Type", "application/x-www-form-urlencoded"}}),
                 400);
  require_status(web.request("POST", "/change_hook/base", json{{"files", "a.c"}}.dump(),
                             {{"Content-Type", "application/json"}}),
                 400);
  require_status(web.get("/change_hook/base"), 405);
  REQUIRE(changes(web).size() == 2);
}

TEST_CASE("a dialect that is not enabled answers 404 and adds nothing") {
  WebMaster web("change_hook_dialects: {base: true}");
  HttpReply reply = web.request("POST", "/change_hook/github", github_push().dump(),
                                {{"Content-Type", "application/json"}, {"X-GitHub-Event", "push"}});
  require_status(reply, 404);
  REQUIRE_THAT(reply.body, Catch::Contains("github"));
  WebMaster none;
  require_status(none.request("POST", "/change_hook/base", "author=a",
                              {{"Content-Type", "application/x-www-form-urlencoded"}}),
                 404);
  REQUIRE(changes(web).empty());
}

TEST_CASE("a signed GitHub push adds one change per commit and a wrong signature is refused") {
  WebMaster web(kHooks);
  const std::string secret = "It's a Secret to Everybody";
  const std::string body = github_push().dump();
  auto post = [&](const std::string& signature, const std::string& target = "/change_hook/github") {
    std::map<std::string, std::string> headers = {{"Content-Type", "application/json"},
                                                  {"X-GitHub-Event", "push"}};
    if (!signature.empty()) headers["X-Hub-Signature-256"] = signature;
    return web.request("POST", target, body, headers);
  };
  require_status(post(""), 403);
  require_status(post(github_signature("wrong secret", body)), 403);
  require_status(post("sha1=" + github_signature(secret, body).substr(7)), 403);
  REQUIRE(changes(web).empty());

  HttpReply ok = post(github_signature(secret, body));
  require_status(ok, 200);
  REQUIRE(ok.json()["changeids"].size() == 2);
  json all = changes(web);
  REQUIRE(all.size() == 2);
  REQUIRE(all[0]["author"] == "Monalisa Octocat <mona@github.com>");
  REQUIRE(all[0]["committer"] == "GitHub <noreply@github.com>");
  REQUIRE(all[0]["revision"] == "b7e3a4f8b8c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6");
  REQUIRE(all[0]["branch"] == "main");
  REQUIRE(all[0]["comments"] == "Update README");
  REQUIRE(all[0]["files"] == json::array({"docs/new.md", "README.md"}));
  REQUIRE(all[0]["repository"] == "https://github.com/octo-org/hello");
  REQUIRE(all[0]["project"] == "octo-org/hello");
  REQUIRE(all[0]["revlink"] == "https://github.com/octo-org/hello/commit/b7e3a4f8b8c2e3f4a5b6c7d8e9f0a1b2c3d4e5f6");
  REQUIRE(all[0]["when_timestamp"] == 1430869215);
  REQUIRE(all[1]["comments"] == "Add docs");

  // ?project= names the project.
  require_status(post(github_signature(secret, body), "/change_hook/github?project=hello-ci"), 200);
  REQUIRE(changes(web)[2]["project"] == "hello-ci");
}

TEST_CASE("GitHub pull requests add a change when opened and nothing when closed") {
  WebMaster web(kHooks);
  const std::string secret = "It's a Secret to Everybody";
  auto post = [&](const json& payload, const std::string& event) {
    const std::string body = payload.dump();
    return web.request("POST", "/change_hook/github", body,
                       {{"Content-Type", "application/json"},
                        {"X-GitHub-Event", event},
                        {"X-Hub-Signature-256", github_signature(secret, body)}});
  };
  require_status(post(github_pull_request("opened"), "pull_request"), 200);
  require_status(post(github_pull_request("closed"), "pull_request"), 200);
  require_status(post(json{{"zen", "Design for failure."}}, "ping"), 200);
  require_status(post(json::object(), "fork-of-nothing"), 400);
  json all = changes(web);
  REQUIRE(all.size() == 1);
  REQUIRE(all[0]["branch"] == "refs/pull/2/merge");
  REQUIRE(all[0]["revision"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
  REQUIRE(all[0]["category"] == "pull");
  REQUIRE(all[0]["author"] == "Codertocat");
  REQUIRE(all[0]["project"] == "octo-org/hello");
  REQUIRE_THAT(all[0]["comments"].get<std::string>(), Catch::StartsWith("GitHub Pull Request #2 (1 commit)"));
}

TEST_CASE("a GitLab push with the right token adds its commits and a wrong token nothing") {
  WebMaster web(kHooks);
  const std::string body = gitlab_push().dump();
  auto post = [&](const std::string& token) {
    return web.request("POST", "/change_hook/gitlab", body,
                       {{"Content-Type", "application/json"},
                        {"X-Gitlab-Event", "Push Hook"},
                        {"X-Gitlab-Token", token}});
  };
  require_status(post("guess"), 403);
  REQUIRE(changes(web).empty());
  require_status(post("gitlab-token"), 200);
  json all = changes(web);
  REQUIRE(all.size() == 1);
  REQUIRE(all[0]["author"] == "Jordi Mallach <jordi@softcatala.org>");
  REQUIRE(all[0]["branch"] == "master");
  REQUIRE(all[0]["revision"] == "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327");
  REQUIRE(all[0]["repository"] == "git@example.com:mike/diaspora.git");
  REQUIRE(all[0]["project"] == "Diaspora");
  REQUIRE(all[0]["category"] == "push");
  REQUIRE(all[0]["codebase"] == "app");
  REQUIRE(all[0]["files"] == json::array({"CHANGELOG", "app/controller/application.rb"}));
  REQUIRE(all[0]["when_timestamp"] == 1323692851);
}

TEST_CASE("a plugin's change_hook policy serves a dialect of its own") {
  WebMaster web("change_hook_dialects: {lines: {policy: lines, codebase: tools}}", kiln::testing::free_port(),
                "policies: [{name: lines, type: test-lines-hook}]\n",
                {std::string(KILN_TEST_PLUGIN_DIR) + "/web_hooks"});
  require_status(web.request("POST", "/change_hook/lines", "abc main\n", {{"Content-Type", "text/plain"}}), 403);
  REQUIRE(changes(web).empty());
  HttpReply ok = web.request("POST", "/change_hook/lines", "abc main\ndef dev\n",
                             {{"Content-Type", "text/plain"}, {"X-Token", "let-me-in"}});
  require_status(ok, 200);
  REQUIRE(ok.json()["changeids"].size() == 2);
  json all = changes(web);
  REQUIRE(all.size() == 2);
  REQUIRE(all[0]["revision"] == "abc");
  REQUIRE(all[1]["branch"] == "dev");
  REQUIRE(all[1]["author"] == "hook-bot");
  REQUIRE(all[1]["comments"] == "from the lines dialect");
  REQUIRE(all[1]["codebase"] == "tools");
}

TEST_CASE("with change_hook_auth a hook needs the Basic credentials of a user") {
  WebMaster web("auth: {users: [{username: hooker, password: hook-pw}]}\n"
                "change_hook_auth: true\n"
                "change_hook_dialects: {base: true}");
  auto post = [&](std::map<std::string, std::string> headers) {
    headers["Content-Type"] = "application/x-www-form-urlencoded";
    return web.request("POST", "/change_hook/base", "author=a&branch=main", headers);
  };
  HttpReply anonymous = post({});
  require_status(anonymous, 401);
  REQUIRE_THAT(anonymous.headers["www-authenticate"], Catch::Contains("Basic"));
  require_status(post({{"Authorization", "Basic " + kiln::sdk::base64_encode("hooker:guess")}}), 401);
  REQUIRE(changes(web).empty());
  require_status(post({{"Authorization", "Basic " + kiln::sdk::base64_encode("hooker:hook-pw")}}), 200);
  REQUIRE(changes(web).size() == 1);
}
