#pragma once
// The engine's side of each plugin handle: which host services each kind of
// component gets, and where they lead. Internal to core/engine.

#include "engine/engine.h"
#include "engine/log_writer.h"
#include "plugin/host.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <set>
#include <string>

namespace kiln::engine {

struct EngineCore;
struct WorkerSlot;
struct StepRun;

// Services every component has: identity, changes, buildsets, the data API
// and events. Subscriptions end with the context.
class ComponentContext : public plugin::InstanceContext {
 public:
  ComponentContext(EngineCore& core, kiln_component_kind kind, std::string name,
                   nlohmann::json common);
  ~ComponentContext() override;

  kiln_status change_add(std::string_view change_json, JsonCallback cb) override;
  kiln_status buildset_add(std::string_view request_json, JsonCallback cb) override;
  kiln_status data_get(std::string_view path, std::string_view query_json,
                       JsonCallback cb) override;
  kiln_status data_control(std::string_view path, std::string_view action,
                           std::string_view args_json, JsonCallback cb) override;
  kiln_status subscribe(std::string_view pattern, EventCallback on_event,
                        uint64_t& sub_id) override;
  kiln_status unsubscribe(uint64_t sub_id) override;
  // Policies by name (`policies:`), then built-in policy types by type name.
  kiln_status policy_call(std::string_view policy_name, std::string_view args_json,
                          std::string& out_json, std::string& error) override;

  // A reconfig that changed only core-owned keys (a worker's max_builds or
  // properties) updates them in place.
  void set_common(nlohmann::json common) { common_ = std::move(common); }

 protected:
  void context_facts(nlohmann::json& facts) const override;
  // done, wrapped so it never runs after this context is destroyed.
  std::function<void(kiln_status, nlohmann::json)> answer(JsonCallback cb) const;

  EngineCore& core_;
  nlohmann::json common_;
  std::set<uint64_t> subscriptions_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A configured worker: its plugin reports connection and command progress.
class WorkerContext final : public ComponentContext {
 public:
  WorkerContext(EngineCore& core, WorkerSlot& slot, nlohmann::json common);

  // Interpolate with the master's and the worker's properties and its
  // info; inside a call to the plugin's substantiate, with the properties
  // and sources of the build it starts for.
  kiln_status render(std::string_view text, std::string& out, std::string& error) override;
  kiln_status worker_connected(std::string_view info_json) override;
  kiln_status worker_disconnected(std::string_view reason) override;
  kiln_status command_output(uint64_t command_id, kiln_stream stream, Bytes data) override;
  kiln_status command_update(uint64_t command_id, std::string_view update_json) override;
  kiln_status command_complete(uint64_t command_id, std::string_view result_json) override;
  kiln_status transfer_write(uint64_t command_id, Bytes data) override;
  kiln_status transfer_read(uint64_t command_id, size_t max_len,
                            std::vector<uint8_t>& out) override;
  kiln_status output_throttle(std::function<void()> resume) override;

 private:
  WorkerSlot& slot_;
};

// One run of a step in a build.
class StepContext final : public ComponentContext {
 public:
  StepContext(EngineCore& core, StepRun& run, std::string name, nlohmann::json common);
  ~StepContext() override;

  kiln_status render(std::string_view text, std::string& out, std::string& error) override;
  kiln_status property_get(std::string_view name, std::string& out) override;
  kiln_status property_set(std::string_view name, std::string_view value_json,
                           std::string_view source) override;
  kiln_status command_start(std::string_view command_name, std::string_view args_json,
                            CommandHandlers handlers, uint64_t& command_id) override;
  kiln_status command_interrupt(uint64_t command_id, std::string_view reason) override;
  kiln_status log_add(std::string_view name, char type, uint64_t& log_id) override;
  kiln_status log_append(uint64_t log_id, kiln_stream stream, Bytes data) override;
  kiln_status log_finish(uint64_t log_id) override;
  kiln_status set_summary(std::string_view summary) override;
  kiln_status add_url(std::string_view name, std::string_view url) override;
  kiln_status set_statistic(std::string_view name, std::string_view value_json) override;
  kiln_status set_progress(std::string_view metric, double value) override;
  kiln_status add_steps(std::string_view steps_json, std::string& error) override;
  kiln_status step_finish(kiln_result result, std::string_view summary) override;

 protected:
  void context_facts(nlohmann::json& facts) const override;

 private:
  StepRun& run_;
};

}  // namespace kiln::engine
