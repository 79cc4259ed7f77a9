// The status-push and http-push reporters against a real HTTP receiver
// (tests/http_push/push_receiver.py, Python's http.server) on loopback,
// with an in-process master running real builds on a local worker and its
// clock moved by hand: what a batch holds in either wire format, a
// receiver answering 500 and then recovering, a queue that outlives a
// restart, the queue bound, and configuration errors.

#include "http_push/push_receiver.h"
#include "plugin/plugin_test_support.h"
#include "schedulers/scheduler_master.h"
#include "store/temp_dir.h"
#include "util/config_errors.h"

#include <algorithm>
#include <string>
#include <vector>

namespace {

using kiln::testing::PushReceiver;
using kiln::testing::run_build_with_rc;
using kiln::testing::SchedulerMaster;
using kiln::testing::TempDir;
using nlohmann::json;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string url_decoded(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size()) {
      out += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// The packets of one POST, in either wire format.
json packets_of(const json& post) {
  const std::string body = post["body"];
  if (body.rfind("packets=", 0) == 0) return json::parse(url_decoded(body.substr(8)));
  return json::parse(body);
}

std::vector<std::string> names_of(const json& packets) {
  std::vector<std::string> out;
  for (const auto& p : packets) out.push_back(p["event"]);
  return out;
}

json all_packets(const PushReceiver& receiver) {
  json out = json::array();
  for (const auto& post : receiver.posts()) {
    for (const auto& p : packets_of(post)) out.push_back(p);
  }
  return out;
}

std::string master_yaml(const std::string& reporter) {
  return R"yaml(
master: {title: Push Test, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 1}]
builders:
  - name: unit
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: test, command: ["sh", "-c", "exit %(prop:rc:-0)s"]}]
reporters:
  - )yaml" + reporter + "\n";
}

std::string push(const std::string& type, uint16_t port, const std::string& extra = "") {
  return "{type: " + type + ", name: push, server_url: \"http://127.0.0.1:" + std::to_string(port) +
         "/submit\", buffer_delay: 1, retry_delay: 5, timeout: 10" + (extra.empty() ? "" : ", " + extra) + "}";
}


const std::vector<std::string> kOneBuild = {"buildsetSubmitted", "buildStarted", "stepStarted",
                                            "stepFinished",      "buildFinished", "buildsetFinished"};

TEST_CASE("a build's events reach the receiver batched as JSON, in either wire format") {
  const std::string type = GENERATE(std::string("status-push"), std::string("http-push"));
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  SchedulerMaster m(master_yaml(push(type, port, "headers: {X-Token: s3cret}")));
  m.start();
  run_build_with_rc(m, "unit", 1);
  CHECK(receiver.posts().empty());  // nothing before buffer_delay is up
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return receiver.posts().size() == 1; }));
  m.settle();

  const json post = receiver.posts()[0];
  INFO(post.dump(2));
  CHECK(post["path"] == "/submit");
  CHECK(post["headers"]["X-Token"] == "s3cret");
  CHECK(post["headers"]["Content-Type"] ==
        (type == "http-push" ? "application/x-www-form-urlencoded" : "application/json"));
  const json packets = packets_of(post);
  CHECK(names_of(packets) == kOneBuild);
  for (size_t i = 0; i < packets.size(); ++i) {
    CHECK(packets[i]["id"] == i + 1);
    CHECK(packets[i]["project"] == "Push Test");
  }
  const json& finished = packets[4];
  CHECK(finished["routing_key"] == "builds/1/finished");
  CHECK(finished["payload"]["builder"] == "unit");
  CHECK(finished["payload"]["results"] == KILN_FAILURE);
  CHECK(finished["payload"]["number"] == 1);

  // The next build's events come in the next batch, and only they.
  run_build_with_rc(m, "unit", 0);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return receiver.posts().size() == 2; }));
  const json second = packets_of(receiver.posts()[1]);
  CHECK(names_of(second) == kOneBuild);
  CHECK(second[0]["id"] == 7);
  CHECK(second[4]["payload"]["results"] == KILN_SUCCESS);
}

TEST_CASE("a receiver answering 500 gets the batch again after retry_delay, with nothing lost or repeated") {
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  receiver.refuse(true);
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(push("status-push", port)));
  m.start();
  run_build_with_rc(m, "unit", 0);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return contains(log.text(), "cannot push 6 events"); }));
  CHECK(contains(log.text(), "the server answered 500 Receiver Down: try later; retrying in 5.0 s"));
  CHECK(receiver.refused() == 1);
  // Builds go on while the receiver is down; their events queue up.
  run_build_with_rc(m, "unit", 1);
  m.advance_s(1);
  CHECK(receiver.refused() == 1);  // still waiting out retry_delay

  receiver.refuse(false);
  m.advance_s(4);
  REQUIRE(m.run_until([&] { return !receiver.posts().empty(); }));
  m.settle();
  m.advance_s(1);
  const json packets = all_packets(receiver);
  std::vector<std::string> both = kOneBuild;
  both.insert(both.end(), kOneBuild.begin(), kOneBuild.end());
  CHECK(names_of(packets) == both);
  for (size_t i = 0; i < packets.size(); ++i) CHECK(packets[i]["id"] == i + 1);
  CHECK(contains(log.text(), "works again after 1 failure"));
}

TEST_CASE("events not yet pushed survive a restart of the master and go first after it") {
  const uint16_t port = kiln::testing::free_port();  // nobody listens yet
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(push("http-push", port)));
  m.start();
  run_build_with_rc(m, "unit", 2);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return contains(log.text(), "cannot push 6 events"); }));
  CHECK(contains(log.text(), "connecting to 127.0.0.1:" + std::to_string(port)));

  m.restart();
  PushReceiver receiver(port);
  receiver.start();
  run_build_with_rc(m, "unit", 0);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return !receiver.posts().empty(); }));
  m.settle();
  INFO(log.text());
  CHECK(contains(log.text(), "resuming with 6 events saved by the previous run"));
  const json packets = all_packets(receiver);
  std::vector<std::string> both = kOneBuild;
  both.insert(both.end(), kOneBuild.begin(), kOneBuild.end());
  REQUIRE(names_of(packets) == both);
  CHECK(packets[4]["payload"]["number"] == 1);
  CHECK(packets[4]["payload"]["results"] == KILN_FAILURE);
  CHECK(packets[10]["payload"]["number"] == 2);
  for (size_t i = 0; i < packets.size(); ++i) CHECK(packets[i]["id"] == i + 1);
}

TEST_CASE("a queue over max_queue drops its oldest events and logs how many") {
  const uint16_t port = kiln::testing::free_port();
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(push("status-push", port, "max_queue: 3")));
  m.start();
  run_build_with_rc(m, "unit", 0);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return contains(log.text(), "cannot push 3 events"); }));
  CHECK(contains(log.text(), "the queue is full (max_queue 3): dropped the 3 oldest events"));
  PushReceiver receiver(port);
  receiver.start();
  m.advance_s(5);
  REQUIRE(m.run_until([&] { return !receiver.posts().empty(); }));
  const json packets = all_packets(receiver);
  CHECK(names_of(packets) == std::vector<std::string>(kOneBuild.end() - 3, kOneBuild.end()));
  CHECK(packets[0]["id"] == 4);
}

TEST_CASE("with a builders or tags filter only the chosen builders' builds steps and logs are pushed") {
  const std::string filter = GENERATE(std::string("builders: [unit]"), std::string("tags: [pushed]"));
  const uint16_t port = kiln::testing::free_port();
  PushReceiver receiver(port);
  receiver.start();
  const std::string yaml = R"yaml(
master: {title: Push Test}
workers: [{name: local-1, type: local, max_builds: 1}]
builders:
  - {name: other, workers: [local-1], steps: [{type: shell, name: test, command: "echo other"}]}
  - {name: unit, workers: [local-1], tags: [pushed], steps: [{type: shell, name: test, command: "echo unit"}]}
reporters:
  - )yaml" + push("status-push", port, filter + ", events: [\"builds/+/new\", \"builds/+/finished\", \"steps/+/finished\", \"logs/+/append\", \"logs/+/finished\", \"buildsets/+/new\"]") + "\n";
  SchedulerMaster m(yaml);
  m.start();
  const json other = run_build_with_rc(m, "other", 0);
  const json unit = run_build_with_rc(m, "unit", 0);
  m.advance_s(1);
  REQUIRE(m.run_until([&] { return !receiver.posts().empty(); }));
  m.settle();
  m.advance_s(1);
  const json packets = all_packets(receiver);
  INFO(packets.dump(1));
  std::vector<std::string> names = names_of(packets);
  // Both buildsets (of no one builder); unit's build, step and log only.
  CHECK(std::count(names.begin(), names.end(), "buildsetSubmitted") == 2);
  CHECK(std::count(names.begin(), names.end(), "buildStarted") == 1);
  CHECK(std::count(names.begin(), names.end(), "buildFinished") == 1);
  CHECK(std::count(names.begin(), names.end(), "stepFinished") == 1);
  CHECK(std::count(names.begin(), names.end(), "logFinished") >= 1);
  CHECK(std::count(names.begin(), names.end(), "logChunk") >= 1);
  for (const auto& p : packets) {
    if (p["payload"].contains("buildid")) CHECK(p["payload"]["buildid"] == unit["buildid"]);
    if (p["payload"].contains("builder")) CHECK(p["payload"]["builder"] == "unit");
  }
  CHECK(other["buildid"] != unit["buildid"]);
}

TEST_CASE("push configuration errors name the key and what is wrong") {
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {"{type: status-push, server_url: \"ftp://example.org/x\"}", "server_url: 'ftp://example.org/x' is not an http:// or https:// URL"},
      {"{type: http-push, server_url: \"http://example.org:99999/x\"}", "'99999' is not a port"},
      {"{type: http-push, server_url: \"http://user:pw@example.org/x\"}", "give credentials in headers (Authorization), not in the URL"},
      {"{type: status-push, server_url: \"http://example.org/\", headers: {\"Bad Name\": x}}", "headers: 'Bad Name' is not a header name"},
      {"{type: status-push, server_url: \"http://example.org/\", events: [builds]}", "events[0]: 'builds' is not an event pattern"},
      {"{type: status-push, server_url: \"http://example.org/\", buffer_delay: 0}", "buffer_delay"},
      {"{type: status-push}", "server_url"},
      {"{type: status-push, server_url: \"http://example.org/\", builders: [unit], tags: [fast]}", "give builders or tags, not both"},
  };
  for (const auto& c : cases) {
    const std::string errors = kiln::testing::config_errors(master_yaml(c.yaml));
    INFO(c.yaml << "\n" << errors);
    CHECK(contains(errors, "master.yaml:"));
    CHECK(contains(errors, c.message));
  }
}

}  // namespace
