// Latent workers: Buildbot's AbstractLatentWorker, with the plugin as its
// start_instance/stop_instance. A worker whose plugin offers substantiate
// and insubstantiate counts as available while it is down; each build on it
// first calls substantiate (at once when it is up; the plugin joins builds
// to a start under way, and refuses with KILN_ERR_RETRY a build that needs
// a different instance). A failure quarantines the worker for the builder
// (with backoff) and leaves the requests pending. After its last build the
// worker waits build_wait_timeout seconds for another, then insubstantiate
// stops it. The plugin owns what only it can see: the start and stop
// themselves, their order, and the wait for the connection.

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"

#include <spdlog/spdlog.h>

namespace kiln::engine {

namespace {

kiln_str to_c(const std::string& s) { return kiln_str{s.data(), s.size()}; }

// What a plugin's done callback needs to find its way back. Owned by the
// callback once the plugin accepted the call.
struct SubstantiationWait {
  std::weak_ptr<bool> alive;
  EngineCore* core = nullptr;
  Build* build = nullptr;
  uint64_t ticket = 0;
};

struct InsubstantiationWait {
  std::weak_ptr<bool> alive;
  EngineCore* core = nullptr;
  std::string worker;
};

// Runs fn on the loop, at once when the plugin answered there.
template <class Fn>
void on_loop(EngineCore& core, const std::weak_ptr<bool>& alive, Fn fn) {
  if (core.loop.on_loop_thread()) {
    fn();
    return;
  }
  core.loop.post([alive, fn = std::move(fn)]() mutable {
    if (auto a = alive.lock(); a && *a) fn();
  });
}

}  // namespace

void EngineCore::cancel_idle_timer(WorkerSlot& worker) {
  if (worker.idle_timer) loop.cancel_timer(worker.idle_timer);
  worker.idle_timer = 0;
}

void EngineCore::substantiate_for(Build& build) {
  WorkerSlot& worker = *build.worker;
  cancel_idle_timer(worker);
  const auto* vt = worker.instance ? worker.instance->vtable<kiln_worker_vtable>() : nullptr;
  if (!KILN_HAS(kiln_worker_vtable, vt, substantiate)) {
    abandon_build(build);  // reconfigured meanwhile into a worker that is not latent
    return;
  }
  const uint64_t ticket = next_substantiation++;
  build.substantiation = ticket;
  json properties = json::object();
  for (const auto& [name, entry] : build.properties.items()) properties[name] = entry[0];
  json stamps = json::array();
  for (const auto& [codebase, ss] : build.sourcestamps.items()) stamps.push_back(ss);
  const std::string request = json{{"builder", build.builder->config->name},
                                   {"buildrequestids", build.brids},
                                   {"properties", std::move(properties)},
                                   {"sourcestamps", std::move(stamps)}}
                                  .dump();
  if (!worker.connected) {
    spdlog::info("worker '{}': substantiating for a build of '{}'", worker.name, build.builder->config->name);
  }
  auto wait = std::make_unique<SubstantiationWait>(SubstantiationWait{alive, this, &build, ticket});
  auto done = [](void* user, kiln_status status, kiln_str text) {
    std::shared_ptr<SubstantiationWait> w(static_cast<SubstantiationWait*>(user));
    auto a = w->alive.lock();
    if (!a || !*a) return;
    std::string message(text.ptr ? text.ptr : "", text.len);
    on_loop(*w->core, w->alive, [w, status, message = std::move(message)] {
      EngineCore& core = *w->core;
      // The build may have gone meanwhile (the master stops).
      if (!core.builds.count(w->build) || w->build->substantiation != w->ticket) return;
      Build& b = *w->build;
      b.substantiation = 0;
      WorkerSlot& worker = *b.worker;
      BuilderSlot& builder = *b.builder;
      if (status == KILN_OK) {
        core.distribution->release(worker, builder);
        core.record_build(b);
        return;
      }
      if (status == KILN_ERR_RETRY) {
        // Not a fault: its running instance cannot take this build. The
        // builder waits until the worker stops, then starts it anew.
        spdlog::info("worker '{}' cannot take a build of '{}' now: {}", worker.name, builder.config->name,
                     message);
        worker.incompatible.insert(builder.config->name);
        core.abandon_build(b);
        return;
      }
      spdlog::error("worker '{}' failed to substantiate for a build of '{}': {}; its requests stay pending",
                    worker.name, builder.config->name, message);
      core.distribution->quarantine(worker, builder);
      core.abandon_build(b);
    });
  };
  // The context renders with the build's properties during this call.
  worker.rendering_for = &build;
  const kiln_status status = vt->substantiate(worker.instance->handle(), to_c(request), done, wait.get());
  worker.rendering_for = nullptr;
  if (status == KILN_OK) {
    (void)wait.release();  // the callback owns it; `build` may be gone already
    return;
  }
  // Refused: the callback will not come.
  build.substantiation = 0;
  spdlog::error("worker '{}' refused to substantiate for a build of '{}' (status {}); its requests stay pending",
                worker.name, build.builder->config->name, static_cast<int>(status));
  distribution->quarantine(worker, *build.builder);
  abandon_build(build);
}

void EngineCore::worker_idle(WorkerSlot& worker) {
  if (worker.graceful) return graceful_worker_idle(worker);
  if (!worker.latent || !worker.builds.empty() || stopping) return;
  if (!worker.connected) {
    // Down, or its start failed: what it refused may try it again.
    if (!worker.incompatible.empty()) {
      worker.incompatible.clear();
      schedule_start_builds();
    }
    return;
  }
  if (!worker.incompatible.empty()) {
    insubstantiate(worker, "a pending build needs a different instance");
    return;
  }
  cancel_idle_timer(worker);
  if (worker.build_wait_timeout_s < 0) return;
  const std::string name = worker.name;
  worker.idle_timer = loop.start_timer(
      static_cast<uint64_t>(worker.build_wait_timeout_s) * 1000, 0, guarded(alive, [this, name] {
        auto it = workers.find(name);
        if (it == workers.end()) return;
        WorkerSlot& w = *it->second;
        w.idle_timer = 0;
        if (w.builds.empty() && w.connected) {
          insubstantiate(w, "no build for " + std::to_string(w.build_wait_timeout_s) + " s");
        }
      }));
}

void EngineCore::insubstantiate(WorkerSlot& worker, const std::string& why) {
  cancel_idle_timer(worker);
  if (worker.insubstantiating || !worker.instance) return;
  const auto* vt = worker.instance->vtable<kiln_worker_vtable>();
  if (!KILN_HAS(kiln_worker_vtable, vt, insubstantiate)) return;
  worker.insubstantiating = true;
  spdlog::info("worker '{}': insubstantiating: {}", worker.name, why);
  auto done = [](void* user, kiln_status status, kiln_str text) {
    std::shared_ptr<InsubstantiationWait> w(static_cast<InsubstantiationWait*>(user));
    auto a = w->alive.lock();
    if (!a || !*a) return;
    std::string message(text.ptr ? text.ptr : "", text.len);
    on_loop(*w->core, w->alive, [w, status, message = std::move(message)] {
      EngineCore& core = *w->core;
      auto it = core.workers.find(w->worker);
      if (it == core.workers.end()) return;
      WorkerSlot& worker = *it->second;
      worker.insubstantiating = false;
      worker.incompatible.clear();
      if (status != KILN_OK) {
        spdlog::warn("worker '{}': stopping it failed: {}", worker.name, message);
      } else {
        spdlog::info("worker '{}' insubstantiated", worker.name);
      }
      core.schedule_start_builds();
    });
  };
  auto wait = std::make_unique<InsubstantiationWait>(InsubstantiationWait{alive, this, worker.name});
  if (vt->insubstantiate(worker.instance->handle(), done, wait.get()) == KILN_OK) {
    (void)wait.release();  // the callback owns it
  } else {
    worker.insubstantiating = false;
    spdlog::warn("worker '{}' refused to insubstantiate", worker.name);
  }
}

}  // namespace kiln::engine
