// Control actions on workers, changes and the master (Buildbot's data API
// actions of the same names):
//
// - workers/ID or NAME: `ping` asks the worker type (a round trip to a
//   remote worker); `graceful_shutdown` (Buildbot's `stop`) takes no new
//   build on the worker and, once its running builds are over, asks the
//   worker type to shut it down; `shutdown` (Buildbot's `kill`) asks at
//   once, so its builds end RETRY; `pause` / `unpause` stop and resume new
//   builds. `paused` and `graceful` are kept on the worker's record.
// - changes/N `stop`: every build running for a request that contains the
//   change is stopped, every pending one cancelled.
// - masters/N `stop` / `shutdown`: a clean shutdown. No build starts any
//   more; once none runs, the event masters/N/drained tells the master to
//   exit (master.cpp), as a signal would.

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"

#include <spdlog/spdlog.h>

namespace kiln::engine {

void EngineCore::call_worker_control(WorkerSlot& worker, std::string_view action, const json& args,
                                     DataDone done) {
  const auto* vt = worker.instance ? worker.instance->vtable<kiln_worker_vtable>() : nullptr;
  if (!vt || !KILN_HAS(kiln_worker_vtable, vt, control) || vt->control == nullptr) {
    done(KILN_ERR_UNSUPPORTED, error_value("worker '" + worker.name + "' (type '" +
                                       (worker.instance ? worker.instance->type().type_name : std::string("?")) +
                                       "') takes no action '" + std::string(action) + "'"));
    return;
  }
  call_control(vt->control, worker.instance->handle(), action, args, std::move(done),
               "worker '" + worker.name + "' refused '" + std::string(action) + "'");
}

void EngineCore::save_worker_state(WorkerSlot& worker) {
  store.set_worker_state(worker.workerid, worker.paused, worker.graceful, [name = worker.name](store::Status s) {
    if (!s.ok()) spdlog::warn("worker '{}': cannot save its state: {}", name, s.message);
  });
  publish("workers/" + std::to_string(worker.workerid) + "/state_updated",
          {{"workerid", worker.workerid}, {"name", worker.name}, {"paused", worker.paused},
           {"graceful", worker.graceful}, {"connected", worker.connected}});
}

void EngineCore::control_worker(WorkerSlot& worker, std::string_view action, const json& args,
                                DataDone done) {
  if (action == "ping") {
    if (!worker.connected) {
      done(KILN_ERR_NOT_FOUND, error_value("worker '" + worker.name + "' is not connected"));
      return;
    }
    call_worker_control(worker, "ping", args, std::move(done));
    return;
  }
  if (action == "graceful_shutdown" || action == "stop") {
    if (!worker.graceful) {
      worker.graceful = true;
      spdlog::info("worker '{}': graceful shutdown requested ({} running build(s))", worker.name,
                   worker.builds.size());
      save_worker_state(worker);
    }
    done(KILN_OK, json{{"graceful", true}, {"running_builds", worker.builds.size()}});
    graceful_worker_idle(worker);
    return;
  }
  if (action == "shutdown" || action == "kill") {
    if (!worker.connected) {
      done(KILN_ERR_NOT_FOUND, error_value("worker '" + worker.name + "' is not connected"));
      return;
    }
    call_worker_control(worker, "shutdown", args, std::move(done));
    return;
  }
  if (action == "pause" || action == "unpause") {
    const bool paused = action == "pause";
    if (worker.paused != paused) {
      worker.paused = paused;
      save_worker_state(worker);
      if (!paused) schedule_start_builds();
    }
    done(KILN_OK, json{{"paused", paused}});
    return;
  }
  done(KILN_ERR_NOT_FOUND, error_value("no action '" + std::string(action) + "' on workers (ping, graceful_shutdown, "
                                   "stop, shutdown, kill, pause, unpause)"));
}

void EngineCore::graceful_worker_idle(WorkerSlot& worker) {
  if (!worker.graceful || !worker.builds.empty() || !worker.connected || stopping) return;
  spdlog::info("worker '{}': no build left, shutting it down gracefully", worker.name);
  call_worker_control(worker, "graceful_shutdown", json::object(),
                      [name = worker.name](kiln_status status, json answer) {
                        if (status != KILN_OK) {
                          spdlog::info("worker '{}' stays connected, taking no builds: {}", name,
                                       answer.value("error", answer.dump()));
                        }
                      });
}

void EngineCore::stop_change(int64_t changeid, const json& args, DataDone done) {
  const std::string reason = args.value("reason", "change " + std::to_string(changeid) + " stopped");
  store::ResultSpec spec;
  spec.parent = store::Scope{"changeid", changeid};
  spec.filters.push_back({"complete", store::FilterOp::kEq, {false}});
  store.query(store::Resource::kBuildrequests, spec,
              guarded(alive, [this, changeid, reason, done](store::Result<json> requests) {
    if (!requests.ok()) {
      done(KILN_ERR_INTERNAL, error_value(requests.status.message));
      return;
    }
    struct Tally {
      json cancelled = json::array();
      json stopped = json::array();
      size_t left = 0;
      DataDone done;
    };
    auto tally = std::make_shared<Tally>();
    tally->done = done;
    tally->left = requests.value.size() + 1;  // +1: the loop below
    auto one_done = [tally, changeid] {
      if (--tally->left != 0) return;
      tally->done(KILN_OK, json{{"changeid", changeid},
                                {"cancelled_requests", tally->cancelled},
                                {"stopped_builds", tally->stopped}});
    };
    for (const auto& r : requests.value) {
      const int64_t brid = r.value("buildrequestid", int64_t{0});
      cancel_request(brid, reason, [tally, one_done, brid](kiln_status status, json answer) {
        if (status == KILN_OK) {
          if (answer.contains("build_stopped")) {
            tally->stopped.push_back(answer["build_stopped"]);
          } else {
            tally->cancelled.push_back(brid);
          }
        }
        one_done();
      });
    }
    one_done();
  }));
}

void EngineCore::request_clean_shutdown(const json& args, DataDone done) {
  (void)args;
  if (!clean_shutdown) {
    clean_shutdown = true;
    spdlog::info("clean shutdown requested: no new builds; {} running", builds.size());
    publish("masters/" + std::to_string(masterid) + "/stopping",
            {{"masterid", masterid}, {"running_builds", builds.size()}});
  }
  done(KILN_OK, json{{"clean_shutdown", true}, {"running_builds", builds.size()}});
  schedule_start_builds();
}

void EngineCore::check_clean_shutdown() {
  if (!clean_shutdown || clean_shutdown_done || !builds.empty() || stopping) return;
  clean_shutdown_done = true;
  spdlog::info("clean shutdown: no build is running; the master stops");
  publish("masters/" + std::to_string(masterid) + "/drained", {{"masterid", masterid}});
}

}  // namespace kiln::engine
