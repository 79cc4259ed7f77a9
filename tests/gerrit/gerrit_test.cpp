// The gerrit reporter with its ssh command pointed at a recording script
// (tests/gerrit/record_review.py) and an in-process master running real
// builds: the `gerrit review` command line per finished build of a change
// (message, votes, change and patch set), builds of no change left alone,
// ssh failures retried and refusals not, and configuration errors.

#include "plugin/plugin_test_support.h"
#include "schedulers/scheduler_master.h"
#include "store/temp_dir.h"
#include "util/config_errors.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using kiln::testing::run_build_with_rc;
using kiln::testing::SchedulerMaster;
using kiln::testing::TempDir;
using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string master_yaml(const std::string& reporter) {
  return R"yaml(
master: {title: Gerrit Test, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 1}]
builders:
  - name: unit
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: test, command: ["sh", "-c", "exit %(prop:rc:-0)s"]}]
reporters:
  - )yaml" + reporter + "\n";
}

std::string gerrit(const TempDir& record, const std::string& extra = "") {
  return "{type: gerrit, server: review.example.org, username: ci, retry_delay: 5, ssh_command: [/usr/bin/python3, " KILN_SOURCE_DIR
         "/tests/gerrit/record_review.py, " + record.path().string() + "]" + (extra.empty() ? "" : ", " + extra) + "}";
}

std::vector<std::vector<std::string>> reviews(const TempDir& record) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(record.path())) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::vector<std::string>> out;
  for (const auto& f : files) out.push_back(json::parse(kiln::testing::read_file(f)).get<std::vector<std::string>>());
  return out;
}

json change_props(const json& number, const json& patchset) {
  return {{"properties", {{"event.change.number", number}, {"event.patchSet.number", patchset}}}};
}

TEST_CASE("each finished build of a Gerrit change is reviewed through the ssh command with its message and votes") {
  TempDir record("kiln-gerrit");
  SchedulerMaster m(master_yaml(gerrit(record, "message: \"{{result}} on {{builder}} #{{number}}: {{build_url}} (it's done)\"")));
  m.start();
  run_build_with_rc(m, "unit", 0, change_props(42, 3));
  run_build_with_rc(m, "unit", 0);  // no change: no review
  run_build_with_rc(m, "unit", 1, {{"properties", {{"gerrit_change", "7,1"}}}});
  REQUIRE(m.run_until([&] { return reviews(record).size() == 2; }));
  m.settle();
  const auto got = reviews(record);
  REQUIRE(got.size() == 2);
  const std::vector<std::string> base = {"-p", "29418", "ci@review.example.org", "gerrit", "review", "--message"};
  std::vector<std::string> first = base;
  first.insert(first.end(), {"'success on unit #1: http://ci.example.org/#/builders/1/builds/1 (it'\\''s done)'",
                             "--label", "Verified=1", "42,3"});
  CHECK(got[0] == first);
  std::vector<std::string> third = base;
  third.insert(third.end(), {"'failure on unit #3: http://ci.example.org/#/builders/1/builds/3 (it'\\''s done)'",
                             "--label", "Verified=-1", "7,1"});
  CHECK(got[1] == third);
}

TEST_CASE("labels set the votes per result, and mode picks which builds are reviewed") {
  TempDir record("kiln-gerrit");
  SchedulerMaster m(master_yaml(gerrit(record, "mode: failing, port: 2222, identity_file: keys/ci, "
                                               "labels: {failure: {Verified: -1, Code-Review: -2}}")));
  m.start();
  run_build_with_rc(m, "unit", 0, change_props("5", "2"));
  run_build_with_rc(m, "unit", 2, change_props("5", "2"));
  REQUIRE(m.run_until([&] { return !reviews(record).empty(); }));
  m.settle();
  const auto got = reviews(record);
  REQUIRE(got.size() == 1);
  INFO(json(got[0]).dump());
  CHECK(std::vector<std::string>(got[0].begin(), got[0].begin() + 4) ==
        std::vector<std::string>{"-p", "2222", "-i", got[0][3]});
  CHECK(got[0][3].size() > 8);
  CHECK(got[0][3].substr(got[0][3].size() - 8) == "/keys/ci");
  const std::vector<std::string> tail(got[0].end() - 5, got[0].end());
  CHECK(tail == std::vector<std::string>{"--label", "Code-Review=-2", "--label", "Verified=-1", "5,2"});
}

TEST_CASE("an ssh failure (exit 255) is retried after retry_delay, and a review gerrit refuses is logged and not retried") {
  TempDir record("kiln-gerrit");
  kiln::testing::write_file(record / "exit", "255");
  kiln::testing::write_file(record / "say", "ssh: connect to host review.example.org port 29418: Connection refused");
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(gerrit(record)));
  m.start();
  run_build_with_rc(m, "unit", 0, change_props(1, 1));
  REQUIRE(m.run_until([&] { return contains(log.text(), "could not deliver review of change 1,1"); }));
  CHECK(contains(log.text(), "exited with 255: ssh: connect to host review.example.org port 29418: Connection refused"));
  fs::remove(record / "exit");
  fs::remove(record / "say");
  m.advance_s(5);
  REQUIRE(m.run_until([&] { return reviews(record).size() == 1; }));
  CHECK(reviews(record)[0].back() == "1,1");

  kiln::testing::write_file(record / "exit", "1");
  kiln::testing::write_file(record / "say", "fatal: \"99\" no such change");
  run_build_with_rc(m, "unit", 0, change_props(99, 1));
  REQUIRE(m.run_until([&] { return contains(log.text(), "not retrying"); }));
  CHECK(contains(log.text(), "cannot deliver review of change 99,1 for build unit #2, not retrying"));
  CHECK(contains(log.text(), "no such change"));
}

TEST_CASE("gerrit configuration errors name the key and what is wrong") {
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {"{type: gerrit, server: g, labels: {succes: {Verified: 1}}}", "labels: 'succes' is not a result"},
      {"{type: gerrit, server: g, labels: {success: {Verified: 3}}}", "labels.success.Verified: a vote is a whole number from -2 to 2"},
      {"{type: gerrit, server: g, labels: {success: 1}}", "labels.success: give {Label: vote, ...}"},
      {"{type: gerrit, server: g, message: \"{{reslt}}\"}", "message: line 1, column 1: unknown field 'reslt'; did you mean 'result'?"},
      {"{type: gerrit, server: g, ssh_command: []}", "ssh_command"},
      {"{type: gerrit}", "server"},
  };
  for (const auto& c : cases) {
    const std::string errors = kiln::testing::config_errors(master_yaml(c.yaml));
    INFO(c.yaml << "\n" << errors);
    CHECK(contains(errors, "master.yaml:"));
    CHECK(contains(errors, c.message));
  }
}

}  // namespace
