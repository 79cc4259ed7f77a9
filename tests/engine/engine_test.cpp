// The engine end to end on real plugins: the local worker runs real
// processes, the shell step streams into real logs in a real SQLite store.

#include "engine/engine.h"
#include "engine/output_throttle.h"

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/sqlite_store.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>

namespace {

using nlohmann::json;
using kiln::testing::TempDir;

// A master folder, its plugins, store and engine, on a loop the test pumps.
class EngineFixture {
 public:
  explicit EngineFixture(const std::string& yaml) {
    std::ofstream(dir_ / "master.yaml") << yaml;
    kiln::master::register_builtins(registry_);
    auto errors = registry_.load_directories({KILN_BUILD_PLUGIN_DIR});
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
    engine_ = std::make_unique<kiln::engine::Engine>(loop_, *store_, registry_, config_,
                                                     master.value);
  }
  ~EngineFixture() {
    if (engine_) {
      bool stopped = false;
      engine_->stop([&] { stopped = true; });
      run_until([&] { return stopped; });
      engine_.reset();
    }
  }

  std::string start() { return engine_->start(); }
  kiln::engine::Engine& engine() { return *engine_; }
  kiln::store::Store& store() { return *store_; }
  kiln::util::EventLoop& loop() { return loop_; }
  const std::filesystem::path& dir() const { return dir_.path(); }

  bool run_until(const std::function<bool()>& pred) { return kiln::testing::pump_until(loop_, pred); }

  json get(const std::string& path, json query = nullptr) {
    json out;
    bool done = false;
    engine_->data().get(path, query, [&](kiln_status status, json value) {
      INFO(value.dump());
      CHECK(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  json submit(const json& request) {
    json out;
    bool done = false;
    engine_->add_buildset(request, [&](kiln_status status, json value) {
      INFO(value.dump());
      REQUIRE(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  // Waits until `count` builds have finished; returns their events.
  std::vector<json> wait_finished(size_t count) {
    REQUIRE(run_until([&] { return finished_.size() >= count; }));
    return finished_;
  }
  void watch_builds() {
    engine_->events().subscribe("builds/+/finished", [this](const std::string&, const json& e) {
      finished_.push_back(e);
    });
  }

 private:
  TempDir dir_{"kiln-engine"};
  kiln::plugin::Registry registry_;
  kiln::config::MasterConfig config_;
  kiln::util::EventLoop loop_;
  std::unique_ptr<kiln::store::Store> store_;
  std::unique_ptr<kiln::engine::Engine> engine_;
  std::vector<json> finished_;
};

const char* kTwoStepMaster = R"yaml(
workers:
  - {name: w1, type: local, max_builds: 2}
schedulers:
  - {name: force, type: force, builders: [hello]}
builders:
  - name: hello
    workers: [w1]
    properties: {greeting: hi}
    steps:
      - {type: shell, name: greet, command: ["sh", "-c", "echo %(prop:greeting)s from %(prop:buildername)s; echo oops >&2"]}
      - {type: shell, name: fail, command: "exit 3"}
      - {type: shell, name: never, command: "echo should not run"}
      - {type: shell, name: cleanup, command: "echo cleanup", always_run: true}
)yaml";

}  // namespace

TEST_CASE("a forced build runs its steps on the local worker and keeps its logs in the store") {
  EngineFixture f(kTwoStepMaster);
  REQUIRE(f.start().empty());
  f.watch_builds();
  json ids = f.submit({{"builders", {"hello"}}, {"reason", "test"}});
  CHECK(ids["brids"].contains("hello"));
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_FAILURE);

  json build = f.get("builders/hello/builds/1");
  CHECK(build["complete"] == true);
  CHECK(build["results"] == KILN_FAILURE);
  json steps = f.get("builds/" + std::to_string(build["buildid"].get<int64_t>()) + "/steps");
  // Without halt_on_failure a failing step does not stop the build.
  REQUIRE(steps.size() == 4);
  CHECK(steps[0]["name"] == "greet");
  CHECK(steps[0]["results"] == KILN_SUCCESS);
  CHECK(steps[1]["name"] == "fail");
  CHECK(steps[1]["results"] == KILN_FAILURE);
  CHECK(steps[2]["name"] == "never");
  CHECK(steps[3]["name"] == "cleanup");

  json logs = f.get("steps/" + std::to_string(steps[0]["stepid"].get<int64_t>()) + "/logs");
  REQUIRE(!logs.empty());
  json contents = f.get("logs/" + std::to_string(logs[0]["logid"].get<int64_t>()) + "/contents");
  const std::string text = contents["content"].get<std::string>();
  CHECK(text.find("ohi from hello\n") != std::string::npos);
  CHECK(text.find("eoops\n") != std::string::npos);
}

TEST_CASE("halt_on_failure stops a build except for always_run steps") {
  std::string yaml = kTwoStepMaster;
  yaml.replace(yaml.find("command: \"exit 3\"}"), std::string("command: \"exit 3\"}").size(),
               "command: \"exit 3\", halt_on_failure: true}");
  EngineFixture f(yaml);
  REQUIRE(f.start().empty());
  f.watch_builds();
  f.submit({{"builders", {"hello"}}});
  f.wait_finished(1);
  json steps = f.get("builds/" + std::to_string(f.get("builders/hello/builds/1")["buildid"].get<int64_t>()) + "/steps");
  std::vector<std::string> names;
  for (const auto& s : steps) names.push_back(s["name"]);
  CHECK(names == std::vector<std::string>{"greet", "fail", "cleanup"});
}

TEST_CASE("builds on one builder get increasing numbers and each request completes") {
  EngineFixture f(R"yaml(
workers: [{name: w1, type: local, max_builds: 2}]
builders:
  - {name: quick, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
)yaml");
  REQUIRE(f.start().empty());
  f.watch_builds();
  // Without collapsing, five requests are five builds.
  for (int i = 0; i < 5; ++i) f.submit({{"builders", {"quick"}}});
  auto finished = f.wait_finished(5);
  std::set<int64_t> numbers;
  for (const auto& e : finished) {
    CHECK(e["results"] == KILN_SUCCESS);
    numbers.insert(e["number"].get<int64_t>());
  }
  CHECK(numbers == std::set<int64_t>{1, 2, 3, 4, 5});
  REQUIRE(f.run_until([&] {
    json requests = f.get("buildrequests", {{"filters", {{"complete", "eq", {false}}}}});
    return requests.empty();
  }));
}

TEST_CASE("a step whose command does not exist ends the build with a failure, the master keeps running") {
  EngineFixture f(R"yaml(
workers: [{name: w1, type: local}]
builders:
  - {name: b, workers: [w1], steps: [{type: shell, command: [/nonexistent/program]}]}
)yaml");
  REQUIRE(f.start().empty());
  f.watch_builds();
  f.submit({{"builders", {"b"}}});
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] != KILN_SUCCESS);
  // And a second build still runs.
  f.submit({{"builders", {"b"}}});
  CHECK(f.wait_finished(2).size() == 2);
}

TEST_CASE("an unknown property selector ends the step with EXCEPTION and says why in a log") {
  EngineFixture f(R"yaml(
workers: [{name: w1, type: local}]
builders:
  - {name: b, workers: [w1], steps: [{type: shell, name: bad, command: "echo %(nope:x)s"}]}
)yaml");
  REQUIRE(f.start().empty());
  f.watch_builds();
  f.submit({{"builders", {"b"}}});
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_EXCEPTION);
  json steps = f.get("builds/" + std::to_string(finished[0]["buildid"].get<int64_t>()) + "/steps");
  json logs = f.get("steps/" + std::to_string(steps[0]["stepid"].get<int64_t>()) + "/logs");
  REQUIRE(logs.size() == 1);
  json contents = f.get("logs/" + std::to_string(logs[0]["logid"].get<int64_t>()) + "/contents");
  CHECK(contents["content"].get<std::string>().find("unknown interpolation") != std::string::npos);
}

TEST_CASE("the force scheduler submits a buildset through a control action") {
  EngineFixture f(kTwoStepMaster);
  REQUIRE(f.start().empty());
  f.watch_builds();
  json result;
  bool done = false;
  f.engine().control("forceschedulers/force", "force",
                     {{"builderNames", {"hello"}}, {"reason", "because"}, {"owner", "ann"}},
                     [&](kiln_status status, json value) {
                       INFO(value.dump());
                       CHECK(status == KILN_OK);
                       result = value;
                       done = true;
                     });
  REQUIRE(f.run_until([&] { return done; }));
  CHECK(result.contains("bsid"));
  f.wait_finished(1);
}

TEST_CASE("a directory upload unpacks on the master even where the destination holds a quote") {
  EngineFixture f(R"yaml(
workers: [{name: w1, type: local}]
builders:
  - name: b
    workers: [w1]
    steps:
      - {type: shell, command: "mkdir -p out && echo one > out/a.txt && echo two > out/b.txt"}
      - {type: directory-upload, workersrc: out, masterdest: "uploads/it's here"}
)yaml");
  REQUIRE(f.start().empty());
  f.watch_builds();
  f.submit({{"builders", {"b"}}});
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  const auto dest = f.dir() / "uploads" / "it's here";
  CHECK(kiln::testing::read_file(dest / "a.txt") == "one\n");
  CHECK(kiln::testing::read_file(dest / "b.txt") == "two\n");
}

TEST_CASE("malformed changes and odd property names are refused naming the field, and nothing is stored") {
  EngineFixture f(kTwoStepMaster);
  REQUIRE(f.start().empty());
  auto add_change = [&](const json& change) {
    std::pair<kiln_status, json> answer{KILN_OK, nullptr};
    bool done = false;
    f.engine().add_change(change, [&](kiln_status s, json v) {
      answer = {s, std::move(v)};
      done = true;
    });
    REQUIRE(f.run_until([&] { return done; }));
    return answer;
  };
  const std::vector<std::pair<json, std::string>> bad = {
      {json{{"who", "a"}, {"files", "not-a-list"}}, "'files' must be a list"},
      {json{{"who", "a"}, {"files", {"ok", 3}}}, "'files[1]' must be a string"},
      {json{{"who", 42}}, "'who' must be a string"},
      {json{{"who", "a"}, {"when_timestamp", "yesterday"}}, "'when_timestamp' must be a Unix"},
      {json{{"who", "a"}, {"properties", {{"bad name)s", 1}}}}, "contains ' '"},
      {json{{"who", "a"}, {"properties", {{"", 1}}}}, "cannot be empty"},
  };
  for (const auto& [change, message] : bad) {
    auto [status, value] = add_change(change);
    INFO(change.dump() << " -> " << value.dump());
    CHECK(status == KILN_ERR_INVALID_ARGUMENT);
    CHECK_THAT(value.value("error", std::string()), Catch::Contains(message));
  }
  CHECK(f.get("changes").empty());

  auto [status, value] = add_change(json{{"who", "Ann <ann@example.org>"},
                                         {"files", {"a.c"}},
                                         {"properties", {{"ok.name-1/x:y~z", 1}}},
                                         {"when", 1700000000}});
  INFO(value.dump());
  REQUIRE(status == KILN_OK);
  auto changes = f.get("changes");
  REQUIRE(changes.size() == 1);
  CHECK(changes[0]["when_timestamp"] == 1700000000);

  bool refused = false;
  f.engine().add_buildset(json{{"builders", {"hello"}}, {"properties", {{"%(prop:x)s", 1}}}},
                          [&](kiln_status s, json v) {
                            CHECK(s == KILN_ERR_INVALID_ARGUMENT);
                            CHECK_THAT(v.value("error", std::string()),
                                       Catch::Contains("property name '%(prop:x)s'"));
                            refused = true;
                          });
  REQUIRE(f.run_until([&] { return refused; }));
  CHECK(f.get("buildsets").empty());
}

TEST_CASE("a step writing faster than the store commits is paused until the store catches up") {
  TempDir gate_dir{"kiln-throttle-gate"};
  const auto gate = gate_dir.path() / "go";
  // 40 MB of 50-byte lines, written once the test has stopped the store.
  EngineFixture f(R"yaml(
workers:
  - {name: w1, type: local}
builders:
  - name: flood
    workers: [w1]
    steps:
      - type: shell
        name: flood
        command: ["sh", "-c", "while [ ! -e )yaml" + gate.string() + R"yaml( ]; do sleep 0.02; done; yes 0123456789012345678901234567890123456789012345678 | head -c 40000000"]
)yaml");
  REQUIRE(f.start().empty());
  f.watch_builds();
  bool step_started = false;
  f.engine().events().subscribe("steps/+/started", [&](const std::string&, const json&) { step_started = true; });
  f.submit({{"builders", {"flood"}}});
  REQUIRE(f.run_until([&] { return step_started; }));

  auto* sqlite = dynamic_cast<kiln::store::SqliteStore*>(&f.store());
  REQUIRE(sqlite != nullptr);
  sqlite->hold();
  // Released on every way out, or the fixture's teardown would wait on it.
  std::unique_ptr<kiln::store::SqliteStore, void (*)(kiln::store::SqliteStore*)> held(
      sqlite, [](kiln::store::SqliteStore* s) { s->release(); });
  std::ofstream(gate) << "go";
  auto backlog = [&] { return f.engine().status()["log_backlog"]; };
  REQUIRE(f.run_until([&] { return backlog()["paused_workers"] == 1; }));
  // Paused: the worker holds its pipe, so the backlog stops growing at the
  // pause mark plus what was already on its way (one drain of the local
  // worker's queue, 4 MiB, and a line batch), far below the 40 MB written.
  const size_t bound = kiln::engine::OutputThrottle::kPauseBytes + (4u << 20) + (128u << 10);
  CHECK(backlog()["peak_bytes"].get<size_t>() <= bound);
  kiln::testing::pump_until(f.loop(), [] { return false; }, std::chrono::milliseconds(300));
  CHECK(backlog()["peak_bytes"].get<size_t>() <= bound);
  CHECK(f.engine().status()["builders"][0]["running"].size() == 1);

  held.reset();
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(backlog()["peak_bytes"].get<size_t>() <= bound);
  CHECK(backlog()["queued_bytes"] == 0);
  json steps = f.get("builds/" + std::to_string(finished[0]["buildid"].get<int64_t>()) + "/steps");
  json logs = f.get("steps/" + std::to_string(steps[0]["stepid"].get<int64_t>()) + "/logs");
  REQUIRE(!logs.empty());
  // 800,000 stdout lines of the flood plus the header lines.
  CHECK(logs[0]["num_lines"].get<int64_t>() >= 800000);
}
