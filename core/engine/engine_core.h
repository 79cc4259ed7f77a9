#pragma once
// The engine's state and machinery, shared by engine.cpp (scheduling and
// builds) and engine_contexts.cpp (the plugin handles). Internal to
// core/engine: everything here lives on the loop thread.

#include "engine/build_distribution.h"
#include "engine/engine.h"
#include "engine/interpolate.h"
#include "engine/locks.h"
#include "engine/log_writer.h"
#include "engine/output_throttle.h"
#include "engine/policies.h"
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
#include <functional>
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

// Runs fn only while the engine exists (store answers may arrive late).
template <class F>
auto guarded(const std::shared_ptr<bool>& alive, F fn) {
  return [weak = std::weak_ptr<bool>(alive), fn = std::move(fn)](auto&&... args) mutable {
    if (weak.lock()) fn(std::forward<decltype(args)>(args)...);
  };
}

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
  // The slot owns its configuration so that a reconfig can replace the
  // master's config while builds still run on the old one.
  std::shared_ptr<const config::ComponentConfig> owned_config;
  const config::ComponentConfig* config = nullptr;  // owned_config.get()
  int64_t workerid = 0;
  int max_builds = 1;
  nlohmann::json properties = nlohmann::json::object();
  WorkerContext* context = nullptr;  // owned by instance
  std::unique_ptr<plugin::Instance> instance;
  bool connected = false;
  nlohmann::json info = nlohmann::json::object();
  std::set<Build*> builds;
  // Reconfig of a busy worker waits for its builds: then the instance is
  // re-created with `replacement`, or the slot goes away when `removed`.
  std::shared_ptr<const config::ComponentConfig> replacement;
  bool removed = false;
  std::string problem;  // why it failed to start; a reconfig retries it

  // Latent workers (the plugin offers substantiate/insubstantiate, as
  // Buildbot's AbstractLatentWorker): started for a build, stopped after
  // build_wait_timeout seconds without one (latent_workers.cpp).
  bool latent = false;
  int64_t build_wait_timeout_s = 600;  // 0: at once; negative: never
  uint64_t idle_timer = 0;
  bool insubstantiating = false;  // from insubstantiate until its done
  // Builders whose request the running instance refused as incompatible:
  // they wait until it stops (then it starts again for them).
  std::set<std::string> incompatible;
  // The build whose substantiate call is in progress: the context renders
  // with its properties.
  const Build* rendering_for = nullptr;

  // Control actions (worker_control.cpp), both kept in the store's worker
  // record: paused takes no new builds; graceful takes none either and is
  // told to shut down once its builds are over (cleared when it connects).
  bool paused = false;
  bool graceful = false;
};

struct PendingRequest {
  int64_t brid = 0;
  int64_t bsid = 0;
  int64_t priority = 0;
  int64_t submitted_at = 0;
  // Its buildset's sources, for collapsing and policies; null until read
  // back for requests the store handed over (build_distribution.cpp).
  std::shared_ptr<const RequestSource> source = nullptr;
};

struct BuilderSlot {
  std::shared_ptr<const config::BuilderConfig> owned_config;  // see WorkerSlot
  const config::BuilderConfig* config = nullptr;              // owned_config.get()
  int64_t builderid = 0;
  std::deque<PendingRequest> pending;  // priority, then oldest first
  std::set<Build*> running;
  std::optional<json> last;  // {"number", "results", "complete_at"}
  bool removed = false;      // by a reconfig; goes when its builds end
  std::string waiting_for_lock;  // the lock its next build waits for, if any
};

// A scheduler, change source or reporter, by its configured name.
struct ComponentSlot {
  std::shared_ptr<const config::ComponentConfig> config;
  std::unique_ptr<plugin::Instance> instance;
};

// One remote command a step started, while it runs.
struct RunningCommand {
  WorkerSlot* worker = nullptr;
  StepRun* step = nullptr;
  kiln_ctx::CommandHandlers handlers;
  int transfer = 0;  // WireCommand::Transfer
  std::string master_path;
  // Uploads go to temp_path beside master_path (a file, or the tar of a
  // directory) and take its place only when the worker reports success, so a
  // failed upload neither leaves a partial file nor spoils an earlier one.
  std::unique_ptr<std::ofstream> writing;
  std::unique_ptr<std::ifstream> reading;  // download source
  std::string temp_path;
  // keepstamp: the worker file's access and modification times, in seconds.
  std::optional<std::pair<double, double>> utime;
  std::optional<int> master_mode;
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
  std::unique_ptr<LockWait> lock_wait;  // while its locks are taken by others
  std::unique_ptr<LockClaim> locks;

  StepRun(Build& b, config::ComponentConfig c) : build(b), config(std::move(c)) {}
};

struct Build {
  BuilderSlot* builder = nullptr;
  WorkerSlot* worker = nullptr;
  std::vector<int64_t> brids;
  int64_t bsid = 0;
  // Every request it builds, the chosen one first, then those collapsed
  // into it; brids and bsid follow them.
  std::vector<PendingRequest> requests;
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
  std::unique_ptr<LockClaim> locks;  // its builder's, for the whole build
  uint64_t substantiation = 0;  // while its latent worker starts for it
};

// What a reconfig needs from the store before it changes anything.
struct ReconfigPlan {
  config::MasterConfig next;
  std::map<std::string, int64_t> builder_ids;  // builders (re)registered
  std::map<std::string, int64_t> worker_ids;   // workers new to this run
  std::map<int64_t, std::vector<PendingRequest>> pending;  // their queues
  std::vector<std::string> errors;
};

// How a data-API or control answer carries a failure: {"error": message}.
inline nlohmann::json error_value(const std::string& message) { return {{"error", message}}; }

struct EngineCore {
  EngineCore(Engine& engine, util::EventLoop& loop, store::Store& store,
             plugin::Registry& registry, config::MasterConfig config, int64_t masterid);
  ~EngineCore();

  // --- start-up -------------------------------------------------------
  std::string start();
  std::string create_components();
  // --- reconfiguration (reconfigure.cpp) ----------------------------------
  void reconfigure(config::MasterConfig next, std::function<void(json)> done);
  void apply_reconfig(ReconfigPlan& plan, std::function<void(json)> done);
  void replace_worker(WorkerSlot& worker, std::shared_ptr<const config::ComponentConfig> next);
  void reconcile_components(const std::vector<config::ComponentConfig>& configs,
                            std::map<std::string, ComponentSlot>& running, json& changes,
                            std::vector<std::string>& errors);
  // Creates a component's instance; nullptr and `error` when it cannot.
  std::unique_ptr<plugin::Instance> create_instance(const config::ComponentConfig& c,
                                                    std::unique_ptr<kiln_ctx> ctx,
                                                    std::string& error);
  std::string start_component(const config::ComponentConfig& c, plugin::Instance& instance);
  static void stop_component(plugin::Instance& instance);
  std::string create_worker(WorkerSlot& slot);
  // A worker or builder a reconfig changed or removed while busy.
  void after_worker_idle(WorkerSlot& worker);
  void after_builder_idle(BuilderSlot& builder);
  // --- retention (reconfigure.cpp) ----------------------------------------
  void apply_retention();

  // --- changes and buildsets -------------------------------------------
  void add_change(const json& change, DataDone done);
  void add_buildset(const json& request, const std::string& default_source, DataDone done);

  // --- builds ------------------------------------------------------------
  void schedule_start_builds();
  void start_builds();
  // requests: the chosen one first, then those collapsed into it.
  void start_build(BuilderSlot& builder, WorkerSlot& worker, std::vector<PendingRequest> requests,
                   std::unique_ptr<LockClaim> locks);
  void begin_build(Build& build, const json& buildrequest, const json& buildset);
  void record_build(Build& build);  // its properties assembled, its worker up
  void abandon_build(Build& build);  // before it started: back to the queue
  void run_next_step(Build& build);
  void start_step(Build& build, config::ComponentConfig step_config);
  void run_step(StepRun& run);  // once its locks are taken
  void step_finished(StepRun& run, int result, std::string summary);
  void fail_step(StepRun& run, int result, const std::string& message);
  void check_buildset_complete(int64_t bsid);
  void submit_rebuild(int64_t buildid, DataDone done);
  void call_scheduler_control(plugin::Instance& scheduler, std::string_view action,
                              const json& args, DataDone done);
  // A `control` vtable entry (schedulers' and workers' share one shape):
  // the plugin answers through its callback, now or later, or refuses,
  // which answers {"error": refused}.
  using ControlFn = kiln_status (*)(void*, kiln_str, kiln_str, kiln_json_cb, void*);
  static void call_control(ControlFn control, void* instance, std::string_view action,
                           const json& args, DataDone done, const std::string& refused);
  void finish_build(Build& build);
  void set_build_property(Build& build, const std::string& name, json value,
                          const std::string& source);
  void stop_build(Build& build, const std::string& reason);

  // --- commands ------------------------------------------------------------
  kiln_status start_command(StepRun& run, const std::string& name, const json& args,
                            kiln_ctx::CommandHandlers handlers, uint64_t& id,
                            std::string& error);
  void complete_command(uint64_t id, json result);
  // Puts a finished file upload in place (or drops it); says why it failed.
  std::optional<std::string> finish_file_upload(const RunningCommand& command, bool ok);
  void worker_lost(WorkerSlot& worker, const std::string& reason);

  // --- latent workers (latent_workers.cpp) -------------------------------
  // Starts (or joins the start of) the build's latent worker, then records
  // the build; a failure quarantines the worker and requeues the requests.
  void substantiate_for(Build& build);
  // The worker has no build left: arm its idle timer, or stop it now when
  // a request waits for a different instance.
  void worker_idle(WorkerSlot& worker);
  void insubstantiate(WorkerSlot& worker, const std::string& why);
  void cancel_idle_timer(WorkerSlot& worker);

  // --- logs -------------------------------------------------------------
  void flush_logs();
  uint64_t add_step_log(StepRun& run, const std::string& name, char type);
  void finish_step_log(StepLog& log);
  // Store a log's lines or its end, then publish logs/N/append or /finished.
  void append_log_lines(int64_t logid, std::string lines);
  void finish_log_record(int64_t logid);

  // --- control -------------------------------------------------------------
  void control(std::string_view path, std::string_view action, const json& args, DataDone done);
  // workers/N, changes/N, masters/N (worker_control.cpp).
  void control_worker(WorkerSlot& worker, std::string_view action, const json& args, DataDone done);
  void call_worker_control(WorkerSlot& worker, std::string_view action, const json& args, DataDone done);
  void save_worker_state(WorkerSlot& worker);
  // A graceful worker's last build ended: it is told to shut down.
  void graceful_worker_idle(WorkerSlot& worker);
  // A pending request is cancelled, a running one's build stopped.
  void cancel_request(int64_t brid, const std::string& reason, DataDone done);
  void stop_change(int64_t changeid, const json& args, DataDone done);
  void request_clean_shutdown(const json& args, DataDone done);
  // The clean shutdown waits for running builds; the last one ends it.
  void check_clean_shutdown();
  json status() const;

  uint64_t now_s() const { return loop.now_ms() / 1000; }
  InterpolateScope scope_for(const Build& build) const;
  void publish(const std::string& key, const json& event) { events.publish(key, event); }

  Engine& engine;
  util::EventLoop& loop;
  store::Store& store;
  plugin::Registry& registry;
  // The master's configuration, except `builders`, which start() and
  // reconfigure() move into the builders' slots.
  config::MasterConfig config;
  int64_t masterid;
  EventBus& events;
  DataApi& data;
  StoreStateBackend state;

  std::map<std::string, std::unique_ptr<WorkerSlot>> workers;
  std::map<std::string, std::unique_ptr<BuilderSlot>> builders;
  std::map<int64_t, BuilderSlot*> builders_by_id;
  std::map<std::string, ComponentSlot> change_sources;
  std::map<std::string, ComponentSlot> schedulers;
  std::map<std::string, ComponentSlot> reporters;
  std::map<Build*, std::unique_ptr<Build>> builds;  // starting and running
  std::map<int64_t, Build*> builds_by_id;
  std::map<uint64_t, RunningCommand> commands;
  uint64_t next_command_id = 1;
  uint64_t next_substantiation = 1;
  bool start_builds_scheduled = false;
  bool stopping = false;
  // masters/N stop: no build starts, and once none runs the master exits
  // (the event masters/N/stopping_done, which the master waits for).
  bool clean_shutdown = false;
  bool clean_shutdown_done = false;
  uint64_t log_flush_timer = 0;
  uint64_t retention_timer = 0;
  bool retention_running = false;
  std::shared_ptr<std::function<void()>> retention_chain;  // the batch in flight
  OutputThrottle output_throttle;
  LockTable locks;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);
  // Last, so that policy instances go before the state they use.
  std::unique_ptr<Policies> policies = std::make_unique<Policies>(*this);
  std::unique_ptr<BuildDistribution> distribution = std::make_unique<BuildDistribution>(*this);
};

}  // namespace kiln::engine
