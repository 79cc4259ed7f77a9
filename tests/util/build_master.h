#pragma once
// A real engine over a store in a temp folder, with the real plugins and the
// builders of a master.yaml, for tests that run whole builds (source steps
// against real repositories): submit a buildset, wait for its build, read
// the build's properties, steps and logs through the data API.

#include "config/master_config.h"
#include "engine/engine.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace kiln::testing {

using nlohmann::json;

// One local worker's master folder (the yaml names the workers); builds run
// real programs.
class BuildMaster {
 public:
  // For tests of the engine's timing and of component types of their own:
  // a loop on a manual clock (timers move with loop().advance_manual_clock),
  // and a built-in plugin registered before the plugin folder is loaded.
  struct Options {
    std::shared_ptr<kiln::util::ManualClock> clock;
    kiln_plugin_entry_fn builtin = nullptr;
    std::string builtin_label;
  };

  explicit BuildMaster(const std::string& yaml, const std::string& tmp_name = "kiln-build-master")
      : BuildMaster(yaml, tmp_name, Options()) {}
  BuildMaster(const std::string& yaml, const std::string& tmp_name, const Options& with)
      : dir_(tmp_name),
        owned_loop_(with.clock ? std::make_unique<kiln::util::EventLoop>(with.clock)
                               : std::make_unique<kiln::util::EventLoop>()),
        loop_(*owned_loop_) {
    std::ofstream(dir_ / "master.yaml") << yaml;
    kiln::master::register_builtins(registry_);
    if (with.builtin) REQUIRE(!registry_.add_builtin(with.builtin, with.builtin_label));
    for (const auto& e : registry_.load_directories({KILN_BUILD_PLUGIN_DIR})) FAIL(e.to_string());
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
  ~BuildMaster() {
    bool stopped = false;
    engine_->stop([&] { stopped = true; });
    pump_until(loop_, [&] { return stopped; });
    engine_.reset();
  }

  // The folder the local worker gives builder `builder`.
  std::filesystem::path builder_dir(const std::string& builder) const {
    return dir_.path() / "workers" / "w1" / builder;
  }

  json get(const std::string& path, json query = nullptr) {
    json out;
    bool done = false;
    engine_->data().get(path, query, [&](kiln_status status, json value) {
      INFO(value.dump());
      CHECK(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(pump_until(loop_, [&] { return done; }));
    return out;
  }

  // Runs one build of `builder` for these source stamps; returns the build.
  json build(const std::string& builder, json sourcestamps) {
    const size_t before = finished_.size();
    bool submitted = false;
    engine_->add_buildset({{"builders", {builder}}, {"reason", "test"}, {"sourcestamps", std::move(sourcestamps)}},
                          [&](kiln_status status, json value) {
                            INFO(value.dump());
                            REQUIRE(status == KILN_OK);
                            submitted = true;
                          });
    REQUIRE(pump_until(loop_, [&] { return submitted && finished_.size() > before; }));
    return get("builds/" + std::to_string(finished_.back()["buildid"].get<int64_t>()));
  }

  // Submits a buildset of `builder` without waiting for it.
  void submit(const std::string& builder) {
    engine_->add_buildset({{"builders", {builder}}, {"reason", "test"}}, [](kiln_status status, json value) {
      INFO(value.dump());
      CHECK(status == KILN_OK);
    });
  }

  kiln::util::EventLoop& loop() { return loop_; }
  kiln::engine::Engine& engine() { return *engine_; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  // builds/N/finished events so far, in order.
  const std::vector<json>& finished() const { return finished_; }

  json properties(const json& build) {
    return get("builds/" + std::to_string(build["buildid"].get<int64_t>()) + "/properties");
  }
  json steps(const json& build) { return get("builds/" + std::to_string(build["buildid"].get<int64_t>()) + "/steps"); }
  // The text of a step's stdio log.
  std::string stdio(const json& step) {
    json logs = get("steps/" + std::to_string(step["stepid"].get<int64_t>()) + "/logs");
    for (const auto& l : logs) {
      if (l["name"] == "stdio") {
        return get("logs/" + std::to_string(l["logid"].get<int64_t>()) + "/contents")["content"];
      }
    }
    return {};
  }

 private:
  TempDir dir_;
  std::unique_ptr<kiln::util::EventLoop> owned_loop_;
  kiln::util::EventLoop& loop_;
  kiln::plugin::Registry registry_;
  kiln::config::MasterConfig config_;
  std::unique_ptr<kiln::store::Store> store_;
  std::unique_ptr<kiln::engine::Engine> engine_;
  std::vector<json> finished_;
};

// A master.yaml with one local worker `w1` and one builder `b` whose steps
// are `steps` (YAML list items, indented by six spaces).
inline std::string one_builder_yaml(const std::string& steps) {
  return "workers:\n  - {name: w1, type: local, max_builds: 1}\nbuilders:\n  - name: b\n    workers: [w1]\n"
         "    steps:\n" +
         steps;
}

// The value of a build property, as builds/N/properties shows it
// ({name: [value, source]}); null when absent.
inline json property_value(const json& properties, const std::string& name) {
  return properties.contains(name) ? properties[name][0] : json();
}

}  // namespace kiln::testing
