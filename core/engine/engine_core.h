#pragma once
// The engine's state and machinery, shared by engine.cpp (scheduling and
// builds) and engine_contexts.cpp (the plugin handles). Internal to
// core/engine: everything here lives on the loop thread.

#include "engine/engine.h"
#include "engine/interpolate.h"
#include "engine/log_writer.h"
#include "engine/step_results.h"

#include "config/master_config.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "util/event_loop.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::engine {

class StepContext;
class WorkerContext;
struct Build;

using nlohmann::json;

// Plugin state kept in the store (object_state).
class StoreStateBackend final : public plugin::StateBackend {
 public:
  explicit StoreStateBackend(store::Store& store) : store_(store) {}
  void get(const plugin::StateKey& key, Done done) override;
  void put(const plugin::StateKey& key, std::string value_json, Done done) override;

 private:
  store::Store& store_;
};

struct WorkerSlot {
  std::string name;
  const config::ComponentConfig* config = nullptr;
  int64_t workerid = 0;
  int max_builds = 1;
  nlohmann::json properties = nlohmann::json::object();
  WorkerContext* context = nullptr;  // owned by instance
  std::unique_ptr<plugin::Instance> instance;
  bool connected = false;
  nlohmann::json info = nlohmann::json::object();
  std::set<Build*> builds;
};

struct PendingRequest {
  int64_t brid = 0;
  int64_t bsid = 0;
  int64_t priority = 0;
  int64_t submitted_at = 0;
};

struct BuilderSlot {
  const config::BuilderConfig* config = nullptr;
  int64_t builderid = 0;
  std::deque<PendingRequest> pending;  // priority, then oldest first
  std::set<Build*> running;
  std::optional<json> last;  // {"number", "results", "complete_at"}
};

// One remote command a step started, while it runs.
struct RunningCommand {
  WorkerSlot* worker = nullptr;
  StepRun* step = nullptr;
  kiln_ctx::CommandHandlers handlers;
  int transfer = 0;  // WireCommand::Transfer
  std::string master_path;
  std::unique_ptr<std::ofstream> writing;  // upload destination (or tar for directories)
  std::unique_ptr<std::ifstream> reading;  // download source
  std::string temp_path;                   // directory uploads: the tar file
};

// A log of a step run. The store's logid arrives after the step already
// writes, so lines wait in `queued` until then.
struct StepLog {
  int64_t logid = 0;
  std::unique_ptr<LogWriter> writer;
  std::vector<std::string> queued;
  bool finish_requested = false;
  bool finished = false;
};

struct StepRun {
  Build& build;
  config::ComponentConfig config;
  int64_t stepid = 0;
  int64_t number = 0;
  std::string name;
  nlohmann::json common;  // rendered core-owned step keys
  StepContext* context = nullptr;  // owned by instance
  std::unique_ptr<plugin::Instance> instance;
  std::map<uint64_t, std::shared_ptr<StepLog>> logs;  // handle -> log (store answers hold it too)
  uint64_t next_log_handle = 1;
  json statistics = json::object();
  std::set<uint64_t> commands;
  bool finished = false;
  bool hidden = false;

  StepRun(Build& b, config::ComponentConfig c) : build(b), config(std::move(c)) {}
};

struct Build {
  BuilderSlot* builder = nullptr;
  WorkerSlot* worker = nullptr;
  std::vector<int64_t> brids;
  int64_t bsid = 0;
  int64_t buildid = 0;
  int64_t number = 0;
  int64_t started_at = 0;
  json properties = json::object();    // {name: [value, source]}
  json sourcestamps = json::object();  // codebase -> stamp
  std::vector<config::ComponentConfig> steps;
  size_t next_step = 0;
  BuildProgress progress;
  bool stopping = false;
  bool shutdown = false;  // stopped because the master stops: runs again later
  bool worker_lost = false;
  std::string stop_reason;
  std::unique_ptr<StepRun> current;
  std::string current_step_name;
};

struct EngineCore {
  EngineCore(Engine& engine, util::EventLoop& loop, store::Store& store,
             plugin::Registry& registry, config::MasterConfig config, int64_t masterid);
  ~EngineCore();

  // --- start-up -------------------------------------------------------
  std::string start();
  std::string create_components();

  // --- changes and buildsets -------------------------------------------
  void add_change(const json& change, DataDone done);
  void add_buildset(const json& request, const std::string& default_source, DataDone done);

  // --- builds ------------------------------------------------------------
  void schedule_start_builds();
  void start_builds();
  void start_build(BuilderSlot& builder, WorkerSlot& worker, PendingRequest request);
  void begin_build(Build& build, const json& buildrequest, const json& buildset);
  void abandon_build(Build& build);  // before it started: back to the queue
  void run_next_step(Build& build);
  void start_step(Build& build, config::ComponentConfig step_config);
  void step_finished(StepRun& run, int result, std::string summary);
  void fail_step(StepRun& run, int result, const std::string& message);
  void check_buildset_complete(int64_t bsid);
  void submit_rebuild(int64_t buildid, DataDone done);
  void call_scheduler_control(plugin::Instance& scheduler, std::string_view action,
                              const json& args, DataDone done);
  void finish_build(Build& build);
  void set_build_property(Build& build, const std::string& name, json value,
                          const std::string& source);
  void stop_build(Build& build, const std::string& reason);

  // --- commands ------------------------------------------------------------
  kiln_status start_command(StepRun& run, const std::string& name, const json& args,
                            kiln_ctx::CommandHandlers handlers, uint64_t& id,
                            std::string& error);
  void complete_command(uint64_t id, json result);
  void worker_lost(WorkerSlot& worker, const std::string& reason);

  // --- logs -------------------------------------------------------------
  void flush_logs();
  uint64_t add_step_log(StepRun& run, const std::string& name, char type);
  void finish_step_log(StepLog& log);

  // --- control -------------------------------------------------------------
  void control(std::string_view path, std::string_view action, const json& args, DataDone done);
  json status() const;

  uint64_t now_s() const { return loop.now_ms() / 1000; }
  InterpolateScope scope_for(const Build& build) const;
  void publish(const std::string& key, const json& event) { events.publish(key, event); }

  Engine& engine;
  util::EventLoop& loop;
  store::Store& store;
  plugin::Registry& registry;
  config::MasterConfig config;
  int64_t masterid;
  EventBus& events;
  DataApi& data;
  StoreStateBackend state;

  std::map<std::string, std::unique_ptr<WorkerSlot>> workers;
  std::map<std::string, std::unique_ptr<BuilderSlot>> builders;
  std::map<int64_t, BuilderSlot*> builders_by_id;
  std::vector<std::unique_ptr<plugin::Instance>> change_sources;
  std::map<std::string, std::unique_ptr<plugin::Instance>> schedulers;
  std::map<std::string, const config::ComponentConfig*> scheduler_configs;
  std::vector<std::unique_ptr<plugin::Instance>> reporters;
  std::map<Build*, std::unique_ptr<Build>> builds;  // starting and running
  std::map<int64_t, Build*> builds_by_id;
  std::map<uint64_t, RunningCommand> commands;
  uint64_t next_command_id = 1;
  bool start_builds_scheduled = false;
  bool stopping = false;
  uint64_t log_flush_timer = 0;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
};

}  // namespace kiln::engine
