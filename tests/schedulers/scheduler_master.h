#pragma once
// A real engine with the real plugins (kiln-schedulers, the local worker,
// std-steps) on a loop whose clock the test moves by hand, over a store in
// a temp folder that outlives restarts of the engine.

#include "engine/engine.h"

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace kiln::testing {

using nlohmann::json;

// 2024-01-31T23:30:00Z, a Wednesday: month, leap-day and week boundaries
// are all near.
inline constexpr uint64_t kJan31_2330 = 1706743800000ull;

class SchedulerMaster {
 public:
  // `plugin_dirs`: folders of test plugins loaded besides the built ones.
  explicit SchedulerMaster(const std::string& yaml, uint64_t start_ms = kJan31_2330,
                           std::vector<std::filesystem::path> plugin_dirs = {})
      : clock_(std::make_shared<util::ManualClock>(start_ms)), loop_(clock_) {
    std::ofstream(dir_ / "master.yaml") << yaml;
    master::register_builtins(registry_);
    plugin_dirs.insert(plugin_dirs.begin(), KILN_BUILD_PLUGIN_DIR);
    for (const auto& e : registry_.load_directories(plugin_dirs)) FAIL(e.to_string());
    auto read = config::read_config_document(dir_ / "master.yaml");
    for (const auto& d : read.errors) FAIL(d.to_string());
    auto checked = config::check_master_config(*read.document, registry_);
    for (const auto& d : checked.errors) FAIL(d.to_string());
    config_ = *checked.config;
    open(store::OpenMode::kCreate);
  }
  ~SchedulerMaster() { close(); }

  void start() {
    const std::string error = engine_->start();
    REQUIRE(error.empty());
    engine_->events().subscribe("buildsets/+/new", [this](const std::string&, const json& e) {
      new_buildsets_.push_back(e["bsid"].get<int64_t>());
    });
    engine_->events().subscribe("builds/+/finished",
                                [this](const std::string&, const json& e) { finished_builds_.push_back(e); });
    settle();
  }

  // Stops the engine and the store and starts both again on the same
  // folder, as `kiln restart` does.
  void restart() {
    close();
    new_buildsets_.clear();
    finished_builds_.clear();
    open(store::OpenMode::kNormal);
    start();
  }

  engine::Engine& engine() { return *engine_; }
  // The master's folder (master.yaml, the store, http.log).
  const std::filesystem::path& dir() const { return dir_.path(); }
  store::Store& store() { return *store_; }
  const std::vector<int64_t>& new_buildsets() const { return new_buildsets_; }
  const std::vector<json>& finished_builds() const { return finished_builds_; }

  // Moves the master's clock, firing what falls due, then lets the work
  // that follows finish.
  void advance_s(uint64_t seconds) {
    loop_.advance_manual_clock(seconds * 1000);
    settle();
  }
  uint64_t now_ms() const { return loop_.now_ms(); }

  // Runs the loop, and the timers due now, until nothing is left to do and
  // the store is idle.
  void settle() {
    for (int round = 0; round < 50; ++round) {
      size_t ran = 0;
      loop_.advance_manual_clock(0);
      while (size_t n = loop_.poll()) ran += n;
      store_->wait();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (loop_.poll() == 0 && ran == 0) return;
    }
  }

  // Pumps the loop until pred() holds or 20 s of real time pass (a bound
  // for a loaded machine; the work takes milliseconds).
  bool run_until(const std::function<bool()>& pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (loop_.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
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

  // A change as a change source sends it; returns its id once every
  // scheduler has seen it.
  int64_t add_change(json change) {
    int64_t id = 0;
    engine_->add_change(change, [&](kiln_status status, json value) {
      INFO(value.dump());
      REQUIRE(status == KILN_OK);
      id = value["changeid"].get<int64_t>();
    });
    REQUIRE(run_until([&] { return id != 0; }));
    settle();
    return id;
  }

  json control(const std::string& path, const std::string& action, const json& args = json::object()) {
    json out;
    bool done = false;
    engine_->control(path, action, args, [&](kiln_status status, json value) {
      INFO(path << " " << action << ": " << value.dump());
      CHECK(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  json submit(const json& request) {
    json out;
    engine_->add_buildset(request, [&](kiln_status status, json value) {
      INFO(value.dump());
      REQUIRE(status == KILN_OK);
      out = std::move(value);
    });
    REQUIRE(run_until([&] { return !out.is_null(); }));
    return out;
  }

  // The scheduler that made a buildset (its "scheduler" property).
  std::string scheduler_of(int64_t bsid) {
    json props = get("buildsets/" + std::to_string(bsid) + "/properties");
    return props.contains("scheduler") ? props["scheduler"][0].get<std::string>() : std::string();
  }
  std::vector<int64_t> buildsets_of(const std::string& scheduler) {
    std::vector<int64_t> out;
    for (int64_t bsid : new_buildsets_) {
      if (scheduler_of(bsid) == scheduler) out.push_back(bsid);
    }
    return out;
  }
  json buildset(int64_t bsid) { return get("buildsets/" + std::to_string(bsid)); }

  // The change ids a buildset covers, read through its (first) build once
  // that build finished.
  std::vector<int64_t> changes_of(int64_t bsid) {
    json build;
    REQUIRE(run_until([&] {
      json requests = get("buildrequests", {{"filters", {{"buildsetid", "eq", {bsid}}}}});
      if (requests.empty()) return false;
      json builds = get("buildrequests/" + requests[0]["buildrequestid"].dump() + "/builds");
      if (builds.empty() || !builds[0]["complete"].get<bool>()) return false;
      build = builds[0];
      return true;
    }));
    std::vector<int64_t> ids;
    for (const auto& c : get("builds/" + build["buildid"].dump() + "/changes")) {
      ids.push_back(c["changeid"].get<int64_t>());
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  }

 private:
  void open(store::OpenMode mode) {
    store::OpenOptions options;
    options.url = "sqlite:state.sqlite";
    options.base_dir = dir_.path();
    options.mode = mode;
    options.post_to_loop = [this](std::function<void()> fn) { loop_.post(std::move(fn)); };
    auto opened = store::open_store(std::move(options));
    REQUIRE(opened.ok());
    store_ = std::move(opened.value);
    auto master = store_->register_master_sync("test:" + dir_.path().string(), 0);
    REQUIRE(master.ok());
    engine_ = std::make_unique<engine::Engine>(loop_, *store_, registry_, config_, master.value);
  }

  void close() {
    if (engine_) {
      bool stopped = false;
      engine_->stop([&] { stopped = true; });
      // The engine polls its running builds on the master's clock.
      for (int i = 0; i < 4000 && !stopped; ++i) {
        if (loop_.poll() == 0) {
          loop_.advance_manual_clock(50);
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      }
      engine_.reset();
    }
    if (store_) {
      store_->wait();
      store_.reset();
    }
  }

  TempDir dir_{"kiln-sched"};
  plugin::Registry registry_;
  config::MasterConfig config_;
  std::shared_ptr<util::ManualClock> clock_;
  util::EventLoop loop_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<engine::Engine> engine_;
  std::vector<int64_t> new_buildsets_;
  std::vector<json> finished_builds_;
};

// Runs one build of `builder` to its end, with its `rc` property set (the
// notifier tests' builders exit with it), and lets the reporters read it;
// returns the build's finished event.
inline json run_build_with_rc(SchedulerMaster& m, const std::string& builder, int rc, json request = json::object()) {
  const size_t before = m.finished_builds().size();
  request["builders"] = {builder};
  if (!request.contains("reason")) request["reason"] = "a test build";
  request["properties"]["rc"] = rc;
  m.submit(request);
  REQUIRE(m.run_until([&] { return m.finished_builds().size() > before; }));
  m.settle();
  return m.finished_builds().back();
}

}  // namespace kiln::testing
