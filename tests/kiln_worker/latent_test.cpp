// The exec-latent worker type inside a real engine: its start command
// launches the built kiln-worker program on loopback, which connects back
// over Buildbot's msgpack protocol; its stop command kills it by pid. Every
// command appends to an `events` file, so each test reads the exact order of
// starts and stops. Timeouts are seconds, not Buildbot's minutes.

#include "buildbot_worker/bbw_support.h"
#include "kiln_worker_process.h"

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <sstream>

namespace {

using namespace bbw_test;

// master.yaml with one exec-latent worker lw1 (password pw-one) on `port`,
// its own keys `worker_keys` (YAML flow entries), and `builders`.
std::string latent_yaml(uint16_t port, const std::string& worker_keys, const std::string& builders) {
  return "workers:\n"
         "  - {name: lw1, type: exec-latent, password: pw-one, listen: \"127.0.0.1:" + std::to_string(port) +
         "\", " + worker_keys + "}\n" + builders;
}

const char* const kHelloBuilder = R"yaml(
builders:
  - {name: b, workers: [lw1], steps: [{type: shell, name: hi, command: "echo hi from %(prop:workername)s"}]}
)yaml";

// A start command that launches kiln-worker in the background (its pid in
// <root>/lw1.pid) and notes "start <image property>"; a stop command that
// kills that pid and notes "stop".
std::string kiln_worker_commands(const fs::path& root) {
  const std::string r = root.string();
  return "start_command: [/bin/sh, -c, \"echo start %(prop:image:-none)s >> " + r + "/events; " KILN_WORKER_BINARY
         " --master %(kw:master)s --name %(kw:name)s --password %(kw:password)s --basedir " + r +
         "/lw1 --reconnect-min 0.05 --reconnect-max 0.5 >> " + r + "/lw1.log 2>&1 & echo $! > " + r +
         "/lw1.pid\"], stop_command: [/bin/sh, -c, \"kill $(cat " + r + "/lw1.pid); echo stop >> " + r +
         "/events\"]";
}

std::vector<std::string> events(const fs::path& root) {
  std::vector<std::string> out;
  std::istringstream in(kiln::testing::read_file(root / "events"));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool process_gone(int pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

json worker_status(EngineFixture& f) {
  const json status = f.engine().status();
  for (const auto& w : status["workers"]) {
    if (w["name"] == "lw1") return w;
  }
  return {};
}

// The master's log while it lives.
class LogCapture {
 public:
  LogCapture() { spdlog::default_logger()->sinks().push_back(sink_); }
  ~LogCapture() { spdlog::default_logger()->sinks().pop_back(); }
  std::string text() const {
    std::string out;
    for (const auto& line : sink_->last_formatted()) out += line;
    return out;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
};

}  // namespace

TEST_CASE("exec-latent starts kiln-worker for a build and its stop command ends it after build_wait_timeout") {
  TempDir root("kiln-latent");
  const uint16_t port = free_port();
  EngineFixture f(latent_yaml(port, "build_wait_timeout: 1, missing_timeout: 20, " + kiln_worker_commands(root.path()),
                              kHelloBuilder));
  REQUIRE(f.start().empty());
  // Nothing starts before a build needs it.
  f.run_until([] { return false; }, std::chrono::milliseconds(300));
  CHECK(events(root.path()).empty());
  CHECK(worker_status(f)["connected"] == false);
  CHECK(worker_status(f)["latent"] == true);

  f.submit({{"builders", {"b"}}, {"properties", {{"image", "debian"}}}});
  auto finished = f.wait_finished(1);
  INFO(kiln::testing::read_file(root.path() / "lw1.log"));
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(f.log_text(finished[0]["buildid"].get<int64_t>(), "hi").find("ohi from lw1\n") != std::string::npos);
  // Rendered with the build's properties.
  CHECK(events(root.path()) == std::vector<std::string>{"start debian"});
  const int pid = std::stoi(kiln::testing::read_file(root.path() / "lw1.pid"));
  CHECK(!process_gone(pid));

  // Idle for build_wait_timeout: stopped, and the worker is down.
  REQUIRE(f.run_until([&] { return events(root.path()).size() == 2; }, std::chrono::seconds(10)));
  CHECK(events(root.path())[1] == "stop");
  CHECK(f.run_until([&] { return process_gone(pid) && worker_status(f)["connected"] == false; }));

  // The next build starts it again: one stop per start.
  f.submit({{"builders", {"b"}}});
  finished = f.wait_finished(2);
  CHECK(finished[1]["results"] == KILN_SUCCESS);
  REQUIRE(f.run_until([&] { return events(root.path()).size() == 4; }, std::chrono::seconds(10)));
  CHECK(events(root.path()) == std::vector<std::string>{"start debian", "stop", "start none", "stop"});
}

TEST_CASE("exec-latent whose start command fails leaves the request pending and quarantines the worker and says why") {
  TempDir root("kiln-latent");
  const uint16_t port = free_port();
  const std::string r = root.path().string();
  LogCapture log;
  EngineFixture f(latent_yaml(port,
                              "start_command: \"echo start >> " + r + "/events; echo no capacity left >&2; exit 3\", "
                              "stop_command: \"echo stop >> " + r + "/events\"",
                              kHelloBuilder));
  REQUIRE(f.start().empty());
  const json submitted = f.submit({{"builders", {"b"}}});
  // Every start gets its stop, a failed one too.
  REQUIRE(f.run_until([&] { return events(root.path()).size() >= 2; }, std::chrono::seconds(10)));
  CHECK(events(root.path())[0] == "start");
  CHECK(events(root.path())[1] == "stop");
  CHECK(f.run_until([&] { return !worker_status(f)["quarantine"].is_null(); }, std::chrono::seconds(5)));
  CHECK(worker_status(f)["quarantine"].contains("b"));
  CHECK(f.finished().empty());
  const int64_t brid = submitted["brids"]["b"].get<int64_t>();
  const json request = f.get("buildrequests/" + std::to_string(brid));
  INFO(request.dump());
  const json& row = request.is_array() ? request[0] : request;
  CHECK(row["complete"] == false);
  CHECK(row["claimed"] == false);
  const std::string logged = log.text();
  CHECK(logged.find("the start command failed: exit code 3: no capacity left") != std::string::npos);
  CHECK(logged.find("its requests stay pending") != std::string::npos);

  // After the quarantine it tries again, still one stop per start.
  REQUIRE(f.run_until([&] { return events(root.path()).size() >= 4; }, std::chrono::seconds(10)));
  CHECK(events(root.path())[2] == "start");
  CHECK(events(root.path())[3] == "stop");
  CHECK(f.finished().empty());
}

TEST_CASE("exec-latent stops a slow start only after it finished when the worker misses missing_timeout") {
  TempDir root("kiln-latent");
  const uint16_t port = free_port();
  const std::string r = root.path().string();
  EngineFixture f(latent_yaml(port,
                              "missing_timeout: 0.5, start_command: \"echo start-begin >> " + r +
                                  "/events; sleep 2; echo start-end >> " + r + "/events\", "
                                  "stop_command: \"echo stop >> " + r + "/events\"",
                              kHelloBuilder));
  REQUIRE(f.start().empty());
  f.submit({{"builders", {"b"}}});
  // The substantiation times out while the start command still runs: the
  // worker is quarantined, and nothing stops it yet.
  REQUIRE(f.run_until([&] { return !worker_status(f)["quarantine"].is_null(); }, std::chrono::seconds(5)));
  CHECK(events(root.path()) == std::vector<std::string>{"start-begin"});
  // Once the start has finished, its stop follows.
  REQUIRE(f.run_until([&] { return events(root.path()).size() >= 3; }, std::chrono::seconds(10)));
  CHECK(events(root.path())[1] == "start-end");
  CHECK(events(root.path())[2] == "stop");
  CHECK(f.finished().empty());
}

TEST_CASE("exec-latent with builds_may_be_incompatible stops an instance started for other properties before the next build") {
  TempDir root("kiln-latent");
  const uint16_t port = free_port();
  EngineFixture f(latent_yaml(port,
                              "build_wait_timeout: 600, builds_may_be_incompatible: true, "
                              "compatible_properties: [image], " + kiln_worker_commands(root.path()),
                              kHelloBuilder));
  REQUIRE(f.start().empty());
  f.submit({{"builders", {"b"}}, {"properties", {{"image", "one"}}}});
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  // Same image: the running instance takes it.
  f.submit({{"builders", {"b"}}, {"properties", {{"image", "one"}}}});
  finished = f.wait_finished(2);
  CHECK(events(root.path()) == std::vector<std::string>{"start one"});
  // Another image: stopped at once (not after build_wait_timeout), started anew.
  f.submit({{"builders", {"b"}}, {"properties", {{"image", "two"}}}});
  finished = f.wait_finished(3);
  INFO(kiln::testing::read_file(root.path() / "lw1.log"));
  CHECK(finished[2]["results"] == KILN_SUCCESS);
  CHECK(events(root.path()) == std::vector<std::string>{"start one", "stop", "start two"});
}

TEST_CASE("exec-latent refuses a worker that connects while no start is under way") {
  TempDir root("kiln-latent");
  const uint16_t port = free_port();
  LogCapture log;
  EngineFixture f(latent_yaml(port, kiln_worker_commands(root.path()), kHelloBuilder));
  REQUIRE(f.start().empty());
  // Started by hand, not by the master: it gets in, and is sent away.
  kiln_worker_test::KilnWorkerProcess stray(root.path(), "lw1", "pw-one", port);
  stray.start();
  CHECK(f.run_until([&] { return log.text().find("refused a connection for 'lw1'") != std::string::npos; },
                    std::chrono::seconds(10)));
  CHECK(log.text().find("not starting this latent worker now") != std::string::npos);
  CHECK(worker_status(f)["connected"] == false);
  CHECK(events(root.path()).empty());
}
