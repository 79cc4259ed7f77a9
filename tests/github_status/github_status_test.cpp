// The github-status reporter against a real HTTP(S) server on loopback
// (tests/http_push/push_receiver.py) standing in for GitHub's API, with an
// in-process master running real builds on a local worker: the requests
// (method, path, token, JSON body) for a build's start and its result, one
// status per revision, source stamps without a revision or a GitHub
// repository left alone, a 500 retried after retry_delay without the
// pending status landing on the result, HTTPS, and configuration errors.

#include "http_push/push_receiver.h"
#include "plugin/plugin_test_support.h"
#include "schedulers/scheduler_master.h"
#include "store/temp_dir.h"
#include "util/certificate.h"
#include "util/config_errors.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using kiln::testing::PushReceiver;
using kiln::testing::run_build_with_rc;
using kiln::testing::SchedulerMaster;
using kiln::testing::TempDir;
using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

constexpr const char* kSha = "0123456789abcdef0123456789abcdef01234567";
constexpr const char* kOtherSha = "fedcba9876543210fedcba9876543210fedcba98";

// `unit` waits for GATE (a file in `gate`) before it exits with the rc
// property, so a test can look at what happened while it runs.
std::string master_yaml(const std::string& reporter, const TempDir& gate) {
  return R"yaml(
master: {title: GitHub Test, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 2}]
builders:
  - name: unit
    workers: [local-1]
    collapse_requests: false
    tags: [fast]
    steps: [{type: shell, name: test, command: ["sh", "-c", "while [ ! -e )yaml" +
         (gate / "GATE").string() + R"yaml( ]; do sleep 0.02; done; exit %(prop:rc:-0)s"]}]
  - name: docs
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: test, command: ["sh", "-c", "exit %(prop:rc:-0)s"]}]
  - name: broken
    workers: [local-1]
    steps: [{type: shell, name: bad, command: "echo %(nope:x)s"}]
reporters:
  - )yaml" + reporter + "\n";
}

std::string github(const std::string& base_url, const std::string& extra = "") {
  return "{type: github-status, token: \"${env:KILN_TEST_GITHUB_TOKEN}\", base_url: \"" + base_url +
         "\", retry_delay: 5" + (extra.empty() ? "" : ", " + extra) + "}";
}

std::string local_url(uint16_t port, const std::string& path = "/api/v3") {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

json stamp(const std::string& repository, const std::string& revision, const std::string& codebase = "") {
  return {{"repository", repository}, {"revision", revision}, {"branch", "main"}, {"codebase", codebase}};
}

json request_with(std::vector<json> stamps) { return {{"sourcestamps", stamps}}; }

// The statuses posted for one commit path, in order.
std::vector<json> statuses(const PushReceiver& receiver, const std::string& path) {
  std::vector<json> out;
  for (const auto& post : receiver.posts()) {
    if (post["path"] == path) out.push_back(json::parse(post["body"].get<std::string>()));
  }
  return out;
}

struct Token {
  Token() { ::setenv("KILN_TEST_GITHUB_TOKEN", "ghp_s3cret", 1); }
};

TEST_CASE("a build sets a pending commit status when it starts and success when it finishes") {
  Token token;
  TempDir gate("kiln-gh-gate");
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  SchedulerMaster m(master_yaml(github(local_url(port)), gate));
  m.start();
  json request = request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)});
  request["builders"] = {"unit"};
  request["properties"]["rc"] = 0;
  m.submit(request);
  REQUIRE(m.run_until([&] { return receiver.posts().size() == 1; }));

  const json post = receiver.posts()[0];
  INFO(post.dump(2));
  CHECK(post["method"] == "POST");
  CHECK(post["path"] == std::string("/api/v3/repos/kiln-ci/kiln/statuses/") + kSha);
  CHECK(post["headers"]["Authorization"] == "token ghp_s3cret");
  CHECK(post["headers"]["Content-Type"] == "application/json");
  CHECK(post["headers"]["User-Agent"] == "Kiln");
  CHECK(json::parse(post["body"].get<std::string>()) == json({{"state", "pending"},
                                                               {"context", "buildbot/unit"},
                                                               {"description", "Build started."},
                                                               {"target_url", "http://ci.example.org/#/builders/1/builds/1"}}));
  CHECK(m.finished_builds().empty());  // the status came while the build ran

  kiln::testing::write_file(gate / "GATE", "");
  REQUIRE(m.run_until([&] { return receiver.posts().size() == 2; }));
  m.settle();
  const json second = receiver.posts()[1];
  CHECK(second["path"] == post["path"]);
  CHECK(json::parse(second["body"].get<std::string>()) == json({{"state", "success"},
                                                                 {"context", "buildbot/unit"},
                                                                 {"description", "Build done."},
                                                                 {"target_url", "http://ci.example.org/#/builders/1/builds/1"}}));
}

TEST_CASE("results map to GitHub states as Buildbot maps them and context and descriptions are templates") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  SchedulerMaster m(master_yaml(github(local_url(port, "/"),
                                       "context: \"ci/%(prop:buildername)s/{{branch}}\", "
                                       "start_description: \"{{builder}} #{{number}} is building\", "
                                       "end_description: \"{{builder}} #{{number}}: {{result}}\""),
                                gate));
  m.start();
  struct Case {
    std::string builder;
    int rc;
    std::string sha, state, result, url;
  };
  // An unknown property selector ends the step with EXCEPTION: an error.
  const std::vector<Case> cases = {{"unit", 0, kSha, "success", "success", "builders/1/builds/1"},
                                   {"unit", 1, kOtherSha, "failure", "failure", "builders/1/builds/2"},
                                   {"broken", 0, kSha, "error", "exception", "builders/3/builds/1"}};
  for (const auto& c : cases) {
    const size_t before = receiver.posts().size();
    const json build = run_build_with_rc(m, c.builder, c.rc, request_with({stamp("git@github.com:kiln-ci/kiln.git", c.sha)}));
    const std::string path = "/repos/kiln-ci/kiln/statuses/" + c.sha;
    REQUIRE(m.run_until([&] {
      auto got = statuses(receiver, path);
      return receiver.posts().size() > before && !got.empty() && got.back()["state"] != "pending";
    }));
    m.settle();
    auto got = statuses(receiver, path);
    INFO(json(got).dump(2));
    const std::string number = build["number"].dump();
    CHECK(got.back() == json({{"state", c.state},
                              {"context", "ci/" + c.builder + "/main"},
                              {"description", c.builder + " #" + number + ": " + c.result},
                              {"target_url", "http://ci.example.org/#/" + c.url}}));
    // A pending status, when it went out, went out before the result.
    got.erase(got.begin(), got.end() - std::min<size_t>(got.size(), receiver.posts().size() - before));
    for (size_t k = 0; k + 1 < got.size(); ++k) {
      CHECK(got[k]["state"] == "pending");
      CHECK(got[k]["description"] == c.builder + " #" + number + " is building");
    }
  }
}

TEST_CASE("each source stamp with a revision of a GitHub repository gets its own status and the others are logged and skipped") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(github(local_url(port, "")), gate));
  m.start();
  run_build_with_rc(m, "unit", 1,
                    request_with({stamp("https://github.com/kiln-ci/kiln", kSha, "app"),
                                  stamp("ssh://git@ghe.example.org:2222/tools/lib.git/", kOtherSha, "lib"),
                                  stamp("https://github.com/kiln-ci/docs.git", "", "docs"),
                                  stamp("/srv/repo.git", kOtherSha, "local")}));
  const std::string app = std::string("/repos/kiln-ci/kiln/statuses/") + kSha;
  const std::string lib = std::string("/repos/tools/lib/statuses/") + kOtherSha;
  REQUIRE(m.run_until([&] {
    auto a = statuses(receiver, app);
    auto l = statuses(receiver, lib);
    return !a.empty() && a.back()["state"] == "failure" && !l.empty() && l.back()["state"] == "failure";
  }));
  m.settle();
  INFO(log.text());
  for (const auto& post : receiver.posts()) {
    CHECK((post["path"] == app || post["path"] == lib));
  }
  CHECK(contains(log.text(), "no commit status for build unit #1: codebase 'docs' has no revision"));
  CHECK(contains(log.text(), "no commit status for build unit #1: codebase 'local''s repository '/srv/repo.git' is not a GitHub repository URL"));
}

TEST_CASE("the builders and tags filters choose whose builds set statuses") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  const std::string filter = GENERATE(std::string("builders: [docs]"), std::string("tags: [docs-only]"));
  SchedulerMaster m(master_yaml(github(local_url(port), filter), gate));
  m.start();
  run_build_with_rc(m, "unit", 0, request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)}));
  run_build_with_rc(m, "docs", 0, request_with({stamp("https://github.com/kiln-ci/kiln.git", kOtherSha)}));
  const std::string docs = std::string("/api/v3/repos/kiln-ci/kiln/statuses/") + kOtherSha;
  if (filter.rfind("builders", 0) == 0) {
    REQUIRE(m.run_until([&] {
      auto got = statuses(receiver, docs);
      return !got.empty() && got.back()["state"] == "success";
    }));
  }
  m.settle();
  for (const auto& post : receiver.posts()) {
    INFO(post.dump());
    CHECK(post["path"] == docs);  // never unit's, and with tags [docs-only] nobody's
  }
  if (filter.rfind("tags", 0) == 0) CHECK(receiver.posts().empty());
}

TEST_CASE("a status GitHub answers 500 to is sent again after retry_delay and a retried pending never replaces the result") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  receiver.refuse(true);
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(github(local_url(port)), gate));
  m.start();
  run_build_with_rc(m, "unit", 1, request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)}));
  REQUIRE(m.run_until([&] { return contains(log.text(), "could not deliver failure status of kiln-ci/kiln@0123456789ab"); }));
  INFO(log.text());
  CHECK(contains(log.text(), "the server answered 500 Receiver Down: try later; retrying in 5.0 s"));
  CHECK(receiver.posts().empty());
  const size_t refused = receiver.refused();
  CHECK((refused == 1 || refused == 2));  // the pending, if it was read before the result

  receiver.refuse(false);
  m.advance_s(5);
  REQUIRE(m.run_until([&] { return contains(log.text(), "delivered failure status of kiln-ci/kiln@0123456789ab for build unit #1 at attempt 2"); }));
  m.settle();
  m.advance_s(10);
  const auto got = statuses(receiver, std::string("/api/v3/repos/kiln-ci/kiln/statuses/") + kSha);
  INFO(json(got).dump(2));
  REQUIRE(!got.empty());
  CHECK(got.back()["state"] == "failure");
  CHECK(receiver.refused() == refused);
}

TEST_CASE("a status nobody takes is tried retry_attempts times and then given up with a log line") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  kiln::plugin::test::LogCapture log;
  // Nobody listens on this port.
  const uint16_t port = kiln::testing::free_port();
  SchedulerMaster m(master_yaml(github(local_url(port), "retry_attempts: 2"), gate));
  m.start();
  run_build_with_rc(m, "unit", 0, request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)}));
  REQUIRE(m.run_until([&] { return contains(log.text(), "could not deliver success status"); }));
  m.advance_s(5);
  REQUIRE(m.run_until([&] { return contains(log.text(), "giving up on success status of kiln-ci/kiln@0123456789ab for build unit #1 after 2 attempts"); }));
  CHECK(contains(log.text(), "connecting to 127.0.0.1:" + std::to_string(port)));
}

TEST_CASE("statuses go to an HTTPS server whose certificate the master trusts") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  TempDir certs("kiln-gh-tls");
  kiln::testing::make_certificate(certs.path());
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port, certs / "cert.pem", certs / "key.pem");
  receiver.start();
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(github("https://localhost:" + std::to_string(port) + "/api/v3",
                                       "tls_ca_file: " + (certs / "cert.pem").string()),
                                gate));
  m.start();
  run_build_with_rc(m, "unit", 0, request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)}));
  const std::string path = std::string("/api/v3/repos/kiln-ci/kiln/statuses/") + kSha;
  INFO(log.text());
  REQUIRE(m.run_until([&] {
    auto got = statuses(receiver, path);
    return !got.empty() && got.back()["state"] == "success";
  }));
  CHECK(receiver.posts().back()["headers"]["Authorization"] == "token ghp_s3cret");
}

TEST_CASE("an HTTPS server the master does not trust gets nothing and the log says why") {
  Token token;
  TempDir gate("kiln-gh-gate");
  kiln::testing::write_file(gate / "GATE", "");
  TempDir certs("kiln-gh-tls");
  kiln::testing::make_certificate(certs.path());
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port, certs / "cert.pem", certs / "key.pem");
  receiver.start();
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(github("https://localhost:" + std::to_string(port), "retry_attempts: 1"), gate));
  m.start();
  run_build_with_rc(m, "unit", 0, request_with({stamp("https://github.com/kiln-ci/kiln.git", kSha)}));
  REQUIRE(m.run_until([&] { return contains(log.text(), "giving up on success status"); }));
  INFO(log.text());
  CHECK(contains(log.text(), "the TLS handshake with localhost"));
  CHECK(receiver.posts().empty());
}

TEST_CASE("github-status configuration errors name the file line and key") {
  TempDir gate("kiln-gh-gate");
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {"{type: github-status}", "token"},
      {"{type: github-status, token: x, colour: red}", "colour"},
      {"{type: github-status, token: x, base_url: \"ftp://example.org\"}", "base_url: 'ftp://example.org' is not an http:// or https:// URL"},
      {"{type: github-status, token: \"a b\"}", "token: a token is one word"},
      {"{type: github-status, token: x, context: \"ci/{{buildr}}\"}", "context: line 1, column 4: unknown field 'buildr'; did you mean 'builder'?"},
      {"{type: github-status, token: x, end_description: \"{{#steps}}x\"}", "end_description: line 1, column 1: section 'steps' is never closed"},
      {"{type: github-status, token: x, builders: [unit], tags: [fast]}", "give builders or tags, not both"},
  };
  for (const auto& c : cases) {
    const std::string errors = kiln::testing::config_errors(master_yaml(c.yaml, gate));
    INFO(c.yaml << "\n" << errors);
    CHECK(contains(errors, "master.yaml:"));
    CHECK(contains(errors, c.message));
  }
}

}  // namespace
