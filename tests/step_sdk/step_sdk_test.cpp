// The straight-line step SDK (kiln::sdk::SimpleStep) under a real engine:
// the test plugin tests/plugins/step_sdk runs its run() on the SDK's thread
// while the local worker runs real processes and the store keeps real logs.

#include "engine/engine.h"

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

namespace {

using nlohmann::json;
using kiln::testing::TempDir;

// A master folder whose master.yaml is `yaml` with every "@DIR@" replaced by
// the folder's path, with the built plugins and the test step plugin, on a
// loop the test pumps.
class Master {
 public:
  explicit Master(std::string yaml) {
    for (size_t at = yaml.find("@DIR@"); at != std::string::npos; at = yaml.find("@DIR@")) {
      yaml.replace(at, 5, dir_.path().string());
    }
    std::ofstream(dir_ / "master.yaml") << yaml;
    kiln::master::register_builtins(registry_);
    auto errors = registry_.load_directories(
        {KILN_BUILD_PLUGIN_DIR, std::filesystem::path(KILN_TEST_PLUGIN_DIR) / "step_sdk"});
    for (const auto& e : errors) FAIL(e.to_string());
    auto read = kiln::config::read_config_document(dir_ / "master.yaml");
    for (const auto& d : read.errors) FAIL(d.to_string());
    auto checked = kiln::config::check_master_config(*read.document, registry_);
    for (const auto& d : checked.errors) FAIL(d.to_string());
    config_ = *checked.config;

    kiln::store::OpenOptions options;
    options.url = "sqlite:state.sqlite";
    options.base_dir = dir_.path();
    options.mode = kiln::store::OpenMode::kCreate;
    options.post_to_loop = [this](std::function<void()> fn) { loop_.post(std::move(fn)); };
    auto opened = kiln::store::open_store(std::move(options));
    REQUIRE(opened.ok());
    store_ = std::move(opened.value);
    auto master = store_->register_master_sync("test:" + dir_.path().string(), 0);
    REQUIRE(master.ok());
    engine_ = std::make_unique<kiln::engine::Engine>(loop_, *store_, registry_, config_, master.value);
    REQUIRE(engine_->start().empty());
    engine_->events().subscribe("builds/+/finished",
                                [this](const std::string&, const json& e) { finished_.push_back(e); });
  }
  ~Master() { stop(); }

  // Stops the engine (interrupting running builds); true once it is down.
  bool stop(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    if (!engine_) return true;
    bool stopped = false;
    engine_->stop([&] { stopped = true; });
    if (!run_until([&] { return stopped; }, limit)) return false;
    engine_.reset();
    return true;
  }

  const std::filesystem::path& dir() const { return dir_.path(); }
  kiln::engine::Engine& engine() { return *engine_; }

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    return kiln::testing::pump_until(loop_, pred, limit);
  }

  json get(const std::string& path) {
    json out;
    bool done = false;
    engine_->data().get(path, nullptr, [&](kiln_status status, json value) {
      INFO(path << ": " << value.dump());
      CHECK(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  void force(const std::string& builder) {
    bool done = false;
    engine_->add_buildset({{"builders", {builder}}}, [&](kiln_status status, json value) {
      INFO(value.dump());
      REQUIRE(status == KILN_OK);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
  }

  std::vector<json> wait_finished(size_t count) {
    REQUIRE(run_until([&] { return finished_.size() >= count; }));
    return finished_;
  }

  json steps_of(const json& build) { return get("builds/" + std::to_string(build["buildid"].get<int64_t>()) + "/steps"); }

  // The text of a step's log named `name`, or "" when it has none.
  std::string log_text(const json& step, const std::string& name) {
    for (const auto& log : get("steps/" + std::to_string(step["stepid"].get<int64_t>()) + "/logs")) {
      if (log["name"] != name) continue;
      return get("logs/" + std::to_string(log["logid"].get<int64_t>()) + "/contents")["content"].get<std::string>();
    }
    return {};
  }

  json property(const json& build, const std::string& name) {
    json props = get("builds/" + std::to_string(build["buildid"].get<int64_t>()) + "/properties");
    if (props.is_array() && !props.empty()) props = props[0];
    return props.contains(name) ? props[name][0] : json();
  }

 private:
  TempDir dir_{"kiln-step-sdk"};
  kiln::plugin::Registry registry_;
  kiln::config::MasterConfig config_;
  kiln::util::EventLoop loop_;
  std::unique_ptr<kiln::store::Store> store_;
  std::unique_ptr<kiln::engine::Engine> engine_;
  std::vector<json> finished_;
};

std::string master_with_steps(const std::string& steps, int max_builds = 1) {
  return "workers: [{name: w1, type: local, max_builds: " + std::to_string(max_builds) +
         "}]\n"
         "builders:\n"
         "  - name: b\n"
         "    workers: [w1]\n"
         "    steps:\n" +
         steps;
}

}  // namespace

TEST_CASE("shell output reaches the stdio log and the exit code decides the step's result") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, name: ok, command: "echo out; echo err >&2"}
      - {type: straight-line, name: bad, command: ["sh", "-c", "echo failing; exit 3"]}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_FAILURE);
  json steps = m.steps_of(finished[0]);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0]["results"] == KILN_SUCCESS);
  CHECK(steps[0]["state_string"] == "rc 0");
  const std::string stdio = m.log_text(steps[0], "stdio");
  CHECK_THAT(stdio, Catch::Contains("oout\n") && Catch::Contains("eerr\n"));
  CHECK(steps[1]["results"] == KILN_FAILURE);
  CHECK(steps[1]["state_string"] == "rc 3");
  CHECK_THAT(m.log_text(steps[1], "stdio"), Catch::Contains("ofailing\n"));
}

TEST_CASE("decode_rc of the step's common keys maps exit codes for result_of") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, command: "exit 3", decode_rc: {"3": "WARNINGS"}}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_WARNINGS);
}

TEST_CASE("a step is created with its schema's defaults though the master keeps only what was written") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, config_to_property: seen, note: written}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  const json seen = m.property(finished[0], "seen");
  CHECK(seen["note"] == "written");
  CHECK(seen["count_lines"] == false);
  CHECK(seen["command"].is_null());
  CHECK(seen["stat"] == "");
}

TEST_CASE("properties set in run() are visible to the next step and readable in run()") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, name: produce, command: "echo 42", stdout_to_property: answer}
      - {type: shell, name: consume, command: "echo the answer is %(prop:answer)s"}
      - {type: straight-line, name: read, read_property: answer}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  json steps = m.steps_of(finished[0]);
  REQUIRE(steps.size() == 3);
  CHECK_THAT(m.log_text(steps[1], "stdio"), Catch::Contains("the answer is 42"));
  CHECK(steps[2]["state_string"] == "answer=\"42\"");
  CHECK(m.property(finished[0], "answer") == "42");
}

TEST_CASE("a line observer sees every line of the command's output, in order, split across chunks") {
  // 20000 lines: more than one read of the pipe, so lines straddle chunks.
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, command: "seq 1 20000; printf 7", count_lines: true}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  // The last line has no line end: it still counts once the command is done.
  CHECK(m.property(finished[0], "lines_seen") == 20001);
  CHECK(m.property(finished[0], "line_sum") == 20000LL * 20001 / 2 + 7);
}

TEST_CASE("logs written from run() and other worker commands go through the host") {
  Master m(master_with_steps(R"yaml(
      # shell() runs in the workdir "build"; stat's path is relative to the build's folder.
      - {type: straight-line, command: "mkdir -p here && touch here/file", stat: build/here/file, note: "a note"}
      - {type: straight-line, stat: nowhere/file}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  json steps = m.steps_of(finished[0]);
  REQUIRE(steps.size() == 2);
  CHECK(m.log_text(steps[0], "notes") == "a note\n");
  CHECK(m.property(finished[0], "stat:build/here/file") == true);
  CHECK(m.property(finished[0], "stat:nowhere/file") == false);
  CHECK(steps[0]["results"] == KILN_SUCCESS);
}

TEST_CASE("stopping the build during a long shell ends the step CANCELLED at once") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, name: long, command: "touch @DIR@/started; exec sleep 60"}
      - {type: straight-line, name: after, command: "true"}
)yaml"));
  m.force("b");
  REQUIRE(m.run_until([&] { return std::filesystem::exists(m.dir() / "started"); }));
  json builds = m.get("builds");
  REQUIRE(builds.size() == 1);
  const auto stop_at = std::chrono::steady_clock::now();
  bool stopped = false;
  m.engine().control("builds/" + std::to_string(builds[0]["buildid"].get<int64_t>()), "stop",
                     {{"reason", "test stops it"}}, [&](kiln_status status, json) {
                       CHECK(status == KILN_OK);
                       stopped = true;
                     });
  auto finished = m.wait_finished(1);
  CHECK(std::chrono::steady_clock::now() - stop_at < std::chrono::seconds(5));
  CHECK(stopped);
  CHECK(finished[0]["results"] == KILN_CANCELLED);
  json steps = m.steps_of(finished[0]);
  REQUIRE(!steps.empty());
  CHECK(steps[0]["name"] == "long");
  CHECK(steps[0]["results"] == KILN_CANCELLED);
  for (size_t i = 1; i < steps.size(); ++i) CHECK(steps[i]["results"] != KILN_SUCCESS);
}

TEST_CASE("an exception from run() ends the step EXCEPTION with the message in its err.text log") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, command: "echo before", throw: "the framboozler exploded"}
)yaml"));
  m.force("b");
  auto finished = m.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_EXCEPTION);
  json steps = m.steps_of(finished[0]);
  REQUIRE(steps.size() == 1);
  CHECK(steps[0]["results"] == KILN_EXCEPTION);
  CHECK_THAT(steps[0]["state_string"].get<std::string>(), Catch::Contains("the framboozler exploded"));
  CHECK_THAT(m.log_text(steps[0], "err.text"), Catch::Contains("the framboozler exploded"));
  CHECK_THAT(m.log_text(steps[0], "stdio"), Catch::Contains("obefore\n"));
}

TEST_CASE("two builds of a straight-line step run at once without blocking each other or the loop") {
  // Each build's command waits until both have started: run one after the
  // other, the first would time out and fail.
  Master m(master_with_steps(R"yaml(
      - type: straight-line
        command: >-
          touch @DIR@/started.%(prop:buildnumber)s;
          n=0; while [ $(ls @DIR@ | grep -c '^started') -lt 2 ]; do
            n=$((n+1)); [ $n -gt 200 ] && exit 1; sleep 0.05; done;
          touch @DIR@/release.%(prop:buildnumber)s; while [ ! -e @DIR@/go ]; do sleep 0.05; done
)yaml",
                             2));
  m.force("b");
  m.force("b");
  // Both steps are now waiting in their commands, each on its own thread:
  // the loop still answers the data API.
  REQUIRE(m.run_until([&] {
    return std::filesystem::exists(m.dir() / "release.1") && std::filesystem::exists(m.dir() / "release.2");
  }));
  json builds = m.get("builds");
  REQUIRE(builds.size() == 2);
  CHECK(builds[0]["complete"] == false);
  CHECK(builds[1]["complete"] == false);
  std::ofstream(m.dir() / "go").put('\n');
  auto finished = m.wait_finished(2);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(finished[1]["results"] == KILN_SUCCESS);
}

TEST_CASE("shutting the master down while a straight-line step waits in a long shell is prompt") {
  Master m(master_with_steps(R"yaml(
      - {type: straight-line, command: "touch @DIR@/started; exec sleep 60"}
)yaml"));
  m.force("b");
  REQUIRE(m.run_until([&] { return std::filesystem::exists(m.dir() / "started"); }));
  const auto stop_at = std::chrono::steady_clock::now();
  // The step's thread is interrupted and joined when the engine lets go of
  // the step: a wait that ignored the interrupt would hold this up for 60 s.
  CHECK(m.stop(std::chrono::seconds(10)));
  CHECK(std::chrono::steady_clock::now() - stop_at < std::chrono::seconds(5));
}
