#pragma once
// Runs one change source of a REAL plugin library outside an engine, for
// the poller tests of every VCS: an in-memory state backend that outlives
// the instances (so a new instance is a master restart), a manual clock, and
// a record of the changes and log lines the instance produced.

#include "plugin/host.h"
#include "plugin/registry.h"
#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kiln::testing {

// Survives the instances, as the store does across master restarts.
class MemoryState final : public kiln::plugin::StateBackend {
 public:
  void get(const kiln::plugin::StateKey& key, Done done) override {
    auto it = values.find(key.name + "/" + key.key);
    done(KILN_OK, it == values.end() ? "null" : it->second);
  }
  void put(const kiln::plugin::StateKey& key, std::string value, Done done) override {
    values[key.name + "/" + key.key] = std::move(value);
    ++puts;
    done(KILN_OK, "null");
  }
  nlohmann::json value(const std::string& name, const std::string& key) const {
    auto it = values.find(name + "/" + key);
    return it == values.end() ? nlohmann::json() : nlohmann::json::parse(it->second);
  }
  std::map<std::string, std::string> values;
  int puts = 0;
};

struct RecordedPolls {
  std::vector<nlohmann::json> changes;
  std::vector<std::pair<kiln_log_level, std::string>> logs;
  int errors() const {
    return static_cast<int>(std::count_if(logs.begin(), logs.end(),
                                          [](const auto& l) { return l.first == KILN_LOG_ERROR; }));
  }
  bool logged(kiln_log_level level, const std::string& part) const {
    return std::any_of(logs.begin(), logs.end(), [&](const auto& l) {
      return l.first == level && l.second.find(part) != std::string::npos;
    });
  }
  int count_logged(const std::string& part) const {
    return static_cast<int>(std::count_if(logs.begin(), logs.end(), [&](const auto& l) {
      return l.second.find(part) != std::string::npos;
    }));
  }
};

// Policy instances by name, as master.yaml's `policies:` makes them.
using PolicyInstances = std::map<std::string, std::unique_ptr<kiln::plugin::Instance>, std::less<>>;

class PollerContext final : public kiln::plugin::InstanceContext {
 public:
  PollerContext(kiln::util::EventLoop& loop, MemoryState& state, std::string master_dir,
                std::shared_ptr<RecordedPolls> rec, const PolicyInstances& policies)
      : InstanceContext(loop, &state, KILN_KIND_CHANGE_SOURCE, "poller"),
        master_dir_(std::move(master_dir)),
        rec_(std::move(rec)),
        policies_(policies) {}

  // The policy's own call, as the engine makes it.
  kiln_status policy_call(std::string_view name, std::string_view args_json, std::string& out_json,
                          std::string& error) override {
    auto it = policies_.find(name);
    if (it == policies_.end()) {
      error = "no policy named '" + std::string(name) + "'";
      return KILN_ERR_NOT_FOUND;
    }
    const auto* vt = it->second->vtable<kiln_policy_vtable>();
    kiln_error err;
    kiln_text_cb deliver = [](void* user, kiln_str text) {
      static_cast<std::string*>(user)->assign(text.ptr != nullptr ? text.ptr : "", text.len);
    };
    kiln_status status =
        vt->call(it->second->handle(), kiln_str{args_json.data(), args_json.size()}, deliver, &out_json, &err);
    if (status != KILN_OK) error = err.message;
    return status;
  }

  void log(kiln_log_level level, std::string_view message) override {
    rec_->logs.emplace_back(level, std::string(message));
  }
  kiln_status change_add(std::string_view change_json, JsonCallback cb) override {
    rec_->changes.push_back(nlohmann::json::parse(change_json));
    const nlohmann::json answer = {{"changeid", rec_->changes.size()}};
    if (cb) loop()->post([cb, text = answer.dump()] { cb(KILN_OK, text); });
    return KILN_OK;
  }

 protected:
  void context_facts(nlohmann::json& facts) const override {
    facts["master_dir"] = master_dir_;
    facts["common"] = nlohmann::json::object();
  }

 private:
  std::string master_dir_;
  std::shared_ptr<RecordedPolls> rec_;
  const PolicyInstances& policies_;
};

// One master folder (tmp()/"master"); instances of the change source type
// `type` of `library` (a file name in the build's plugin folder) are made,
// and remade for restarts, on the same state backend.
class PollerHarness {
 public:
  PollerHarness(const std::string& library, const std::string& type, const std::string& tmp_name)
      : tmp_(tmp_name), loop_(std::make_shared<kiln::util::ManualClock>()) {
    std::filesystem::create_directories(tmp_ / "master");
    auto problem = registry_.load_library(std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / library);
    REQUIRE_FALSE(problem);
    type_ = registry_.find(KILN_KIND_CHANGE_SOURCE, type);
    REQUIRE(type_ != nullptr);
  }
  ~PollerHarness() { destroy(); }
  PollerHarness(const PollerHarness&) = delete;
  PollerHarness& operator=(const PollerHarness&) = delete;

  const std::filesystem::path& tmp() const { return tmp_.path(); }
  kiln::util::EventLoop& loop() { return loop_; }
  MemoryState& state() { return state_; }
  RecordedPolls& rec() { return *rec_; }

  void create(const nlohmann::json& config) {
    destroy();
    auto ctx = std::make_unique<PollerContext>(loop_, state_, (tmp_ / "master").string(), rec_, policies_);
    std::string error;
    instance_ = kiln::plugin::Instance::create(*type_, std::move(ctx), config, error);
    INFO(error);
    REQUIRE(instance_);
    const auto* vt = instance_->vtable<kiln_change_source_vtable>();
    REQUIRE(vt->start(instance_->handle(), nullptr) == KILN_OK);
  }
  void destroy() {
    if (!instance_) return;
    instance_->vtable<kiln_change_source_vtable>()->stop(instance_->handle());
    instance_.reset();
  }

  // A `policies:` entry: policy `type` of `library` (a path), under `name`.
  void add_policy(const std::string& name, const std::filesystem::path& library, const std::string& type,
                  const nlohmann::json& config = nlohmann::json::object()) {
    if (registry_.find(KILN_KIND_POLICY, type) == nullptr) REQUIRE_FALSE(registry_.load_library(library));
    const auto* policy_type = registry_.find(KILN_KIND_POLICY, type);
    REQUIRE(policy_type != nullptr);
    std::string error;
    auto instance = kiln::plugin::Instance::create(
        *policy_type, std::make_unique<kiln::plugin::InstanceContext>(loop_, nullptr, KILN_KIND_POLICY, name),
        config, error);
    INFO(error);
    REQUIRE(instance);
    policies_[name] = std::move(instance);
  }

  // Forces a poll (the host's "poll now") and waits until it has ended:
  // saved its state, or logged why it failed.
  void poll() {
    const int before = state_.puts + rec_->errors();
    poll_without_waiting();
    REQUIRE(pump_until(loop_, [&] { return state_.puts + rec_->errors() > before; }));
    while (loop_.poll() > 0) {
    }
  }
  void poll_without_waiting() {
    const auto* vt = instance_->vtable<kiln_change_source_vtable>();
    REQUIRE(vt->poll != nullptr);
    REQUIRE(vt->poll(instance_->handle(), nullptr) == KILN_OK);
  }

  // The instance's saved state under `key` (the instance is named "poller").
  nlohmann::json saved(const std::string& key) const { return state_.value("poller", key); }

  // What the plugin's validation says of a config: nullopt when accepted.
  std::optional<std::string> check(const nlohmann::json& config) {
    return registry_.check_with_plugin(KILN_KIND_CHANGE_SOURCE, type_name(), config);
  }

 private:
  std::string type_name() const { return type_->type_name; }

  TempDir tmp_;
  kiln::util::EventLoop loop_;
  MemoryState state_;
  std::shared_ptr<RecordedPolls> rec_ = std::make_shared<RecordedPolls>();
  kiln::plugin::Registry registry_;
  const kiln::plugin::ComponentType* type_ = nullptr;
  PolicyInstances policies_;
  std::unique_ptr<kiln::plugin::Instance> instance_;  // after policies_: goes first
};

// The revisions of recorded changes, in order.
inline std::vector<std::string> revisions_of(const std::vector<nlohmann::json>& changes) {
  std::vector<std::string> out;
  for (const auto& c : changes) out.push_back(c["revision"]);
  return out;
}

}  // namespace kiln::testing
