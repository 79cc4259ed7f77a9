// Build distribution on a real engine: requests collapse into one build,
// policies from a plugin choose builders and workers, can_start_build
// refusals quarantine a worker on the loop's (manual) clock, and components
// reach policies through policy_call.

#include "engine/engine.h"

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"

#include <catch2/catch.hpp>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <set>
#include <thread>

namespace {

using nlohmann::json;
using kiln::testing::TempDir;

// A master folder with the test policies loaded, on a loop the test pumps;
// its clock is manual so quarantine timeouts pass without waiting.
class Master {
 public:
  explicit Master(const std::string& yaml) : gate_(dir_.path() / "go") {
    std::string text = yaml;
    for (auto pos = text.find("@GATE@"); pos != std::string::npos; pos = text.find("@GATE@")) {
      text.replace(pos, 6, gate_.string());
    }
    std::ofstream(dir_.path() / "master.yaml") << text;
    kiln::master::register_builtins(registry_);
    auto errors = registry_.load_directories(
        {KILN_BUILD_PLUGIN_DIR, std::string(KILN_TEST_PLUGIN_DIR) + "/dist_policies"});
    for (const auto& e : errors) FAIL(e.to_string());
    auto read = kiln::config::read_config_document(dir_.path() / "master.yaml");
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
    engine_->events().subscribe("builds/+/new", [this](const std::string&, const json& e) {
      started_.push_back(e);
    });
    engine_->events().subscribe("builds/+/finished", [this](const std::string&, const json& e) {
      finished_.push_back(e);
    });
    REQUIRE(engine_->start().empty());
  }
  ~Master() {
    std::ofstream(gate_) << "go";
    bool stopped = false;
    engine_->stop([&] { stopped = true; });
    // Stopping waits on timers of the manual clock.
    run_until([&] { return stopped; }, 50);
    engine_.reset();
  }

  // Pumps the loop until pred() holds (20 s bound for a loaded machine);
  // advance_ms > 0 moves the manual clock that much on each idle turn.
  bool run_until(const std::function<bool()>& pred, uint64_t advance_ms = 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (loop_.poll() == 0) {
        if (advance_ms) loop_.advance_manual_clock(advance_ms);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    return true;
  }
  // Lets everything in flight land (store answers, posted work).
  void settle() {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
    while (std::chrono::steady_clock::now() < until) {
      if (loop_.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  void advance(uint64_t ms) {
    loop_.advance_manual_clock(ms);
    settle();
  }

  json get(const std::string& path, json query = nullptr) {
    json out;
    bool done = false;
    engine_->data().get(path, query, [&](kiln_status status, json value) {
      INFO(path << ": " << value.dump());
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

  // Opens the gate that the `gate` builder's build waits on.
  void open_gate() { std::ofstream(gate_) << "go"; }

  json entry(const char* list, const std::string& name) {
    const json all = engine_->status();
    for (const auto& e : all[list]) {
      if (e["name"] == name) return e;
    }
    FAIL("no " << list << " entry " << name);
    return {};
  }
  json builder_status(const std::string& name) { return entry("builders", name); }
  json worker_status(const std::string& name) { return entry("workers", name); }

  bool wait_finished(size_t count) { return run_until([&] { return finished_.size() >= count; }); }
  const std::vector<json>& started() const { return started_; }
  const std::vector<json>& finished() const { return finished_; }

  int64_t builderid(const std::string& name) {
    return get("builders/" + name)["builderid"].get<int64_t>();
  }
  std::vector<json> builds_of(const std::string& builder) {
    std::vector<json> out;
    for (const auto& b : finished_) {
      if (b["builderid"] == builderid(builder)) out.push_back(b);
    }
    return out;
  }
  json property(int64_t buildid, const std::string& name) {
    json props = get("builds/" + std::to_string(buildid) + "/properties");
    if (!props.contains(name)) return nullptr;
    return props[name].is_array() ? props[name][0] : props[name];
  }

 private:
  TempDir dir_{"kiln-distrib"};
  std::filesystem::path gate_;
  kiln::plugin::Registry registry_;
  kiln::config::MasterConfig config_;
  kiln::util::EventLoop loop_{std::make_shared<kiln::util::ManualClock>()};
  std::unique_ptr<kiln::store::Store> store_;
  std::unique_ptr<kiln::engine::Engine> engine_;
  std::vector<json> started_, finished_;
};

// One worker, one build at a time; the `gate` builder holds it until the
// test opens the gate, so requests for the others pile up meanwhile.
std::string gated_master(const std::string& builders, const std::string& master = "") {
  return master + R"yaml(
workers:
  - {name: w1, type: local, max_builds: 1}
builders:
  - name: gate
    workers: [w1]
    steps: [{type: shell, command: ["sh", "-c", "while [ ! -e '@GATE@' ]; do sleep 0.01; done"]}]
)yaml" + builders;
}

constexpr const char* kOneBuilder = R"yaml(
  - {name: b, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml";

json on_branch(const std::string& builder, const std::string& branch, const std::string& revision) {
  return {{"builders", {builder}},
          {"sourcestamps", {{{"repository", "https://example.org/r.git"},
                             {"branch", branch},
                             {"revision", revision}}}}};
}

// Holds the worker with a gate build, submits `requests`, checks that they
// all wait, then lets them run; returns their brids.
std::vector<int64_t> pile_up(Master& m, const std::vector<json>& requests) {
  m.submit({{"builders", {"gate"}}});
  REQUIRE(m.run_until([&] { return m.started().size() == 1; }));
  std::vector<int64_t> brids;
  for (const auto& r : requests) {
    json ids = m.submit(r);
    for (const auto& [builder, brid] : ids["brids"].items()) brids.push_back(brid.get<int64_t>());
  }
  m.open_gate();
  return brids;
}

void check_all_complete(Master& m, const std::vector<int64_t>& brids) {
  for (int64_t brid : brids) {
    json br = m.get("buildrequests/" + std::to_string(brid));
    if (br.is_array()) br = br[0];
    INFO("request " << brid << ": " << br.dump());
    CHECK(br["complete"] == true);
    CHECK(br["results"] == KILN_SUCCESS);
  }
}

}  // namespace

TEST_CASE("three pending requests on one branch collapse into one build that completes them all") {
  Master m(gated_master(kOneBuilder));
  auto brids = pile_up(m, {on_branch("b", "main", "r1"), on_branch("b", "main", "r2"),
                           on_branch("b", "main", "r3")});
  REQUIRE(m.wait_finished(2));
  m.settle();
  auto builds = m.builds_of("b");
  REQUIRE(builds.size() == 1);
  CHECK(m.builder_status("b")["pending"] == 0);
  check_all_complete(m, brids);
  // The newest request's source stamp is what the build checks out.
  CHECK(m.property(builds[0]["buildid"].get<int64_t>(), "revision") == "r3");
  // Every buildset the collapsed requests came from completes.
  for (const auto& bs : m.get("buildsets")) CHECK(bs["complete"] == true);
}

TEST_CASE("requests on different branches do not collapse") {
  Master m(gated_master(kOneBuilder));
  auto brids = pile_up(m, {on_branch("b", "main", "r1"), on_branch("b", "dev", "r2"),
                           on_branch("b", "main", "r3")});
  REQUIRE(m.wait_finished(3));
  m.settle();
  // main r1 + main r3 together, dev alone.
  CHECK(m.builds_of("b").size() == 2);
  check_all_complete(m, brids);
}

TEST_CASE("a request carrying a patch never collapses, nor do others into it") {
  Master m(gated_master(kOneBuilder));
  json patched = on_branch("b", "main", "r2");
  patched["sourcestamps"][0]["patch"] = {{"level", 1}, {"body", "--- a\n+++ b\n"}};
  auto brids = pile_up(m, {patched, on_branch("b", "main", "r1"), on_branch("b", "main", "r3")});
  REQUIRE(m.wait_finished(3));
  m.settle();
  CHECK(m.builds_of("b").size() == 2);
  check_all_complete(m, brids);
}

TEST_CASE("collapse_requests of a builder overrides the master's setting") {
  Master m(gated_master(R"yaml(
  - {name: never, collapse_requests: false, workers: [w1], steps: [{type: shell, command: ["true"]}]}
  - {name: always, collapse_requests: true, workers: [w1], steps: [{type: shell, command: ["true"]}]}
  - {name: inherit, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml",
                        "master: {collapse_requests: false}\n"));
  std::vector<json> requests;
  for (const char* builder : {"never", "always", "inherit"}) {
    for (int i = 0; i < 3; ++i) requests.push_back(on_branch(builder, "main", "r"));
  }
  auto brids = pile_up(m, requests);
  REQUIRE(m.wait_finished(1 + 3 + 1 + 3));
  m.settle();
  CHECK(m.builds_of("never").size() == 3);
  CHECK(m.builds_of("always").size() == 1);
  CHECK(m.builds_of("inherit").size() == 3);
  check_all_complete(m, brids);
}

TEST_CASE("a collapse policy from a plugin decides which requests collapse") {
  Master m(gated_master(kOneBuilder, R"yaml(
master: {collapse_requests_policy: by-reason}
policies:
  - {name: by-reason, type: same-reason}
)yaml"));
  json a = on_branch("b", "main", "r1"), b = on_branch("b", "dev", "r2"), c = on_branch("b", "x", "r3");
  a["reason"] = "nightly";
  b["reason"] = "nightly";
  c["reason"] = "manual";
  auto brids = pile_up(m, {a, b, c});
  REQUIRE(m.wait_finished(3));
  m.settle();
  // Different branches, but the policy looks only at the reason.
  CHECK(m.builds_of("b").size() == 2);
  check_all_complete(m, brids);
}

TEST_CASE("a prioritize_builders policy from a plugin orders the builders") {
  const char* builders = R"yaml(
  - {name: alpha, workers: [w1], steps: [{type: shell, command: ["true"]}]}
  - {name: omega, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml";
  SECTION("built-in: the builder with the oldest request first") {
    Master m(gated_master(builders));
    pile_up(m, {{{"builders", {"alpha"}}}, {{"builders", {"omega"}}}});
    REQUIRE(m.wait_finished(3));
    CHECK(m.started()[1]["builderid"] == m.builderid("alpha"));
    CHECK(m.started()[2]["builderid"] == m.builderid("omega"));
  }
  SECTION("the plugin's reverse name order") {
    Master m(gated_master(builders, R"yaml(
master: {prioritize_builders: reverse}
policies:
  - {name: reverse, type: reverse-builders}
)yaml"));
    pile_up(m, {{{"builders", {"alpha"}}}, {{"builders", {"omega"}}}});
    REQUIRE(m.wait_finished(3));
    CHECK(m.started()[1]["builderid"] == m.builderid("omega"));
    CHECK(m.started()[2]["builderid"] == m.builderid("alpha"));
  }
}

TEST_CASE("a next_worker policy from a plugin picks the worker") {
  Master m(R"yaml(
workers:
  - {name: w1, type: local, max_builds: 1}
  - {name: w2, type: local, max_builds: 1}
policies:
  - {name: second, type: pick-worker, worker: w2}
builders:
  - {name: plain, workers: [w1, w2], steps: [{type: shell, command: ["true"]}]}
  - {name: picky, next_worker: second, workers: [w1, w2], steps: [{type: shell, command: ["true"]}]}
)yaml");
  m.submit({{"builders", {"plain"}}});
  REQUIRE(m.wait_finished(1));
  m.submit({{"builders", {"picky"}}});
  REQUIRE(m.wait_finished(2));
  auto worker_of = [&](const json& build) {
    return m.get("workers/" + std::to_string(build["workerid"].get<int64_t>()))["name"];
  };
  // Both idle: the default takes the first listed, the policy its own.
  CHECK(worker_of(m.builds_of("plain")[0]) == "w1");
  CHECK(worker_of(m.builds_of("picky")[0]) == "w2");
}

TEST_CASE("a can_start_build refusal quarantines the worker for a growing time, then the build starts") {
  Master m(R"yaml(
workers:
  - {name: w1, type: local, max_builds: 1}
policies:
  - {name: twice-no, type: refuse-first, refusals: 2}
builders:
  - {name: b, can_start_build: twice-no, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml");
  m.submit({{"builders", {"b"}}});
  m.settle();
  CHECK(m.started().empty());
  CHECK(m.builder_status("b")["pending"] == 1);
  CHECK(m.worker_status("w1")["quarantine"] == json{{"b", 1}});

  m.advance(999);
  CHECK(m.started().empty());
  m.advance(1);  // the first quarantine ends; the second refusal doubles it
  CHECK(m.started().empty());
  CHECK(m.worker_status("w1")["quarantine"] == json{{"b", 2}});

  m.advance(1999);
  CHECK(m.started().empty());
  m.advance(1);
  REQUIRE(m.wait_finished(1));
  CHECK(m.finished()[0]["results"] == KILN_SUCCESS);
  CHECK(m.worker_status("w1")["quarantine"].is_null());
}

TEST_CASE("policy_call from a component reaches a configured policy or a built-in, and names unknown ones") {
  Master m(R"yaml(
workers:
  - {name: w1, type: local, max_builds: 1}
policies:
  - {name: reverse, type: reverse-builders}
builders:
  - name: asker
    workers: [w1]
    steps:
      - {type: ask-policy, policy: reverse, into: configured,
         args: {builders: [{name: a}, {name: c}, {name: b}]}}
      - {type: ask-policy, policy: oldest-build-first, into: builtin,
         args: {requests: [{buildrequestid: 7, priority: 0, submitted_at: 20},
                           {buildrequestid: 8, priority: 0, submitted_at: 10}]}}
      - {type: ask-policy, policy: no-such-policy, into: unknown}
)yaml");
  // The plugin gets the status; the message goes to the master's log.
  auto log = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  spdlog::default_logger()->sinks().push_back(log);
  m.submit({{"builders", {"asker"}}});
  REQUIRE(m.wait_finished(1));
  spdlog::default_logger()->sinks().pop_back();
  std::string logged;
  for (const auto& line : log->last_formatted()) logged += line;
  CHECK(logged.find("no policy named 'no-such-policy'") != std::string::npos);
  const int64_t buildid = m.finished()[0]["buildid"].get<int64_t>();
  CHECK(m.property(buildid, "configured_answer") == json{"c", "b", "a"});
  CHECK(m.property(buildid, "builtin_answer") == 8);
  json error = m.property(buildid, "unknown_error");
  INFO(error.dump());
  CHECK(error["status"] == KILN_ERR_NOT_FOUND);
  CHECK(m.property(buildid, "unknown_answer").is_null());
}
