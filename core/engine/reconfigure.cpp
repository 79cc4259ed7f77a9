// Reconfiguration of a running engine, and retention. A reconfig compares the
// new configuration with the running one by name: what is equal keeps
// running untouched, what changed is reconfigured in place when its plugin
// can or re-created, what is new starts, what is gone stops. Builds that run
// keep the configuration they started with; a busy worker or builder that
// changed or went away follows when its last build ends.

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace kiln::engine {

namespace {

bool same_component(const config::ComponentConfig& a, const config::ComponentConfig& b) {
  return a.kind == b.kind && a.type == b.type && a.config == b.config && a.common == b.common;
}

bool same_builder(const config::BuilderConfig& a, const config::BuilderConfig& b) {
  auto same_steps = [](const auto& x, const auto& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const auto& p, const auto& q) {
      return p.name == q.name && same_component(p, q);
    });
  };
  return a.name == b.name && a.description == b.description && a.workers == b.workers &&
         a.tags == b.tags && a.builddir == b.builddir && a.workerbuilddir == b.workerbuilddir &&
         a.properties == b.properties && a.env == b.env &&
         a.collapse_requests == b.collapse_requests && a.next_worker == b.next_worker &&
         a.next_build == b.next_build && a.can_start_build == b.can_start_build &&
         a.build_horizon_days == b.build_horizon_days &&
         a.log_horizon_days == b.log_horizon_days && a.locks == b.locks && same_steps(a.steps, b.steps);
}

// Runs `then` once every one of `remaining` asynchronous parts reported.
struct Countdown {
  size_t remaining = 1;
  std::function<void()> then;
  void one_done() {
    if (--remaining == 0 && then) std::exchange(then, nullptr)();
  }
};

std::string kind_label(kiln_component_kind kind) {
  std::string label(plugin::kind_name(kind));
  std::replace(label.begin(), label.end(), '_', ' ');
  return label;
}

constexpr uint64_t kRetentionIntervalMs = 3600 * 1000;
constexpr int64_t kRetentionBatch = 500;

}  // namespace

void EngineCore::reconfigure(config::MasterConfig next, std::function<void(json)> done) {
  auto refuse = [&](const std::string& why) {
    done(json{{"ok", false}, {"errors", json::array({why})}, {"changes", json::array()}});
  };
  if (stopping) return refuse("the master is shutting down");
  if (next.master.db != config.master.db) {
    return refuse("master.db changed from '" + config.master.db + "' to '" + next.master.db +
                  "': a running master cannot move its store; restart it to use the new one");
  }

  // New or changed builders and new workers are registered in the store
  // first; nothing running changes until every answer is in.
  auto plan = std::make_shared<ReconfigPlan>();
  plan->next = std::move(next);
  for (const auto& b : plan->next.builders) {
    auto it = builders.find(b.name);
    if (it == builders.end() || it->second->removed ||
        it->second->config->description != b.description || it->second->config->tags != b.tags) {
      plan->builder_ids[b.name] = 0;
    }
  }
  for (const auto& w : plan->next.workers) {
    if (!workers.count(w.name)) plan->worker_ids[w.name] = 0;
  }

  auto registered = std::make_shared<Countdown>();
  registered->remaining = 1 + plan->builder_ids.size() + plan->worker_ids.size();
  registered->then = [this, plan, done = std::move(done)]() mutable {
    if (!plan->errors.empty()) {
      done(json{{"ok", false}, {"errors", plan->errors}, {"changes", json::array()}});
      return;
    }
    // Builders new to this run may have requests waiting in the store from
    // when they were last configured.
    std::vector<int64_t> fresh;
    for (const auto& [name, id] : plan->builder_ids) {
      auto it = builders.find(name);
      if (it == builders.end() || it->second->removed) fresh.push_back(id);
    }
    auto loaded = std::make_shared<Countdown>();
    loaded->remaining = 1 + fresh.size();
    loaded->then = [this, plan, done = std::move(done)]() mutable {
      apply_reconfig(*plan, std::move(done));
    };
    for (int64_t id : fresh) {
      store.pending_requests(
          id, 0, guarded(alive, [plan, loaded, id](store::Result<std::vector<store::BuildRequestRecord>> r) {
            if (r.ok()) {
              for (const auto& p : r.value) {
                plan->pending[id].push_back(
                    {p.buildrequestid, p.buildsetid, p.priority, p.submitted_at});
              }
            }
            loaded->one_done();
          }));
    }
    loaded->one_done();
  };
  for (const auto& b : plan->next.builders) {
    if (!plan->builder_ids.count(b.name)) continue;
    store.ensure_builder(
        b.name, b.description.empty() ? std::nullopt : std::optional(b.description), b.tags,
        guarded(alive, [plan, registered, name = b.name](store::Result<int64_t> r) {
          if (r.ok()) {
            plan->builder_ids[name] = r.value;
          } else {
            plan->errors.push_back("cannot register builder '" + name + "': " + r.status.message);
          }
          registered->one_done();
        }));
  }
  for (const auto& [name, unused] : plan->worker_ids) {
    store.ensure_worker(name, json::object(),
                        guarded(alive, [plan, registered, name = name](store::Result<int64_t> r) {
                          if (r.ok()) {
                            plan->worker_ids[name] = r.value;
                          } else {
                            plan->errors.push_back("cannot register worker '" + name +
                                                   "': " + r.status.message);
                          }
                          registered->one_done();
                        }));
  }
  registered->one_done();
}

void EngineCore::apply_reconfig(ReconfigPlan& plan, std::function<void(json)> done) {
  json changes = json::array();
  std::vector<std::string> errors;
  auto note = [&](std::string what) {
    spdlog::info("reconfig: {}", what);
    changes.push_back(std::move(what));
  };
  config::MasterConfig& next = plan.next;

  if (next.master.log_level != config.master.log_level) {
    spdlog::set_level(spdlog::level::from_str(next.master.log_level));
    note("log level " + next.master.log_level);
  }

  // Builders. A builder's running builds keep the steps they started with.
  std::set<std::string> wanted;
  for (const auto& b : next.builders) {
    wanted.insert(b.name);
    auto it = builders.find(b.name);
    if (it != builders.end()) {
      BuilderSlot& slot = *it->second;
      const bool returning = slot.removed;
      slot.removed = false;
      if (returning) {
        slot.pending.clear();
        for (const auto& p : plan.pending[slot.builderid]) slot.pending.push_back(p);
      }
      if (!same_builder(*slot.config, b)) {
        slot.owned_config = std::make_shared<const config::BuilderConfig>(b);
        slot.config = slot.owned_config.get();
        note("builder '" + b.name + "' changed");
      }
      continue;
    }
    auto slot = std::make_unique<BuilderSlot>();
    slot->owned_config = std::make_shared<const config::BuilderConfig>(b);
    slot->config = slot->owned_config.get();
    slot->builderid = plan.builder_ids[b.name];
    for (const auto& p : plan.pending[slot->builderid]) slot->pending.push_back(p);
    builders_by_id[slot->builderid] = slot.get();
    builders[b.name] = std::move(slot);
    note("builder '" + b.name + "' added");
  }
  std::vector<BuilderSlot*> idle_removed;
  for (auto& [name, slot] : builders) {
    if (wanted.count(name) || slot->removed) continue;
    // Its requests stay in the store, unclaimed, for when it comes back.
    slot->removed = true;
    slot->pending.clear();
    note("builder '" + name + "' removed" +
         (slot->running.empty() ? std::string()
                                : " (after its " + std::to_string(slot->running.size()) +
                                      " running builds)"));
    if (slot->running.empty()) idle_removed.push_back(slot.get());
  }
  for (BuilderSlot* slot : idle_removed) after_builder_idle(*slot);

  // Workers.
  wanted.clear();
  for (const auto& w : next.workers) {
    wanted.insert(w.name);
    auto it = workers.find(w.name);
    if (it == workers.end()) {
      auto slot = std::make_unique<WorkerSlot>();
      slot->name = w.name;
      slot->owned_config = std::make_shared<const config::ComponentConfig>(w);
      slot->config = slot->owned_config.get();
      slot->workerid = plan.worker_ids[w.name];
      slot->max_builds = w.common.value("max_builds", 1);
      slot->properties = w.common.value("properties", json::object());
      WorkerSlot& added = *slot;
      workers[w.name] = std::move(slot);
      if (auto error = create_worker(added); !error.empty()) {
        errors.push_back(error);
      } else if (added.problem = start_component(*added.config, *added.instance);
                 !added.problem.empty()) {
        errors.push_back(added.problem);
      }
      note("worker '" + w.name + "' added");
      continue;
    }
    WorkerSlot& slot = *it->second;
    slot.removed = false;
    if (same_component(*slot.config, w) && slot.problem.empty()) {
      slot.replacement.reset();
      continue;
    }
    if (slot.config->type == w.type && slot.config->config == w.config) {
      // Only keys the core owns changed: no need to disturb the connection.
      slot.owned_config = std::make_shared<const config::ComponentConfig>(w);
      slot.config = slot.owned_config.get();
      slot.max_builds = w.common.value("max_builds", 1);
      slot.properties = w.common.value("properties", json::object());
      slot.build_wait_timeout_s = w.common.value("build_wait_timeout", int64_t{600});
      if (slot.context) slot.context->set_common(w.common);
      slot.replacement.reset();
      note("worker '" + w.name + "' settings changed");
      continue;
    }
    auto cfg = std::make_shared<const config::ComponentConfig>(w);
    if (slot.builds.empty()) {
      replace_worker(slot, std::move(cfg));
      note("worker '" + w.name + "' restarted with its new configuration");
    } else {
      slot.replacement = std::move(cfg);
      note("worker '" + w.name + "' restarts with its new configuration after its " +
           std::to_string(slot.builds.size()) + " running builds");
    }
  }
  std::vector<WorkerSlot*> idle_gone;
  for (auto& [name, slot] : workers) {
    if (wanted.count(name) || slot->removed) continue;
    slot->removed = true;
    note("worker '" + name + "' removed" +
         (slot->builds.empty() ? std::string()
                               : " (after its " + std::to_string(slot->builds.size()) +
                                     " running builds)"));
    if (slot->builds.empty()) idle_gone.push_back(slot.get());
  }
  for (WorkerSlot* slot : idle_gone) after_worker_idle(*slot);

  // Reporters first so that they see what new schedulers and sources do.
  reconcile_components(next.reporters, reporters, changes, errors);
  reconcile_components(next.schedulers, schedulers, changes, errors);
  reconcile_components(next.change_sources, change_sources, changes, errors);

  if (next.locks != config.locks) {
    note("locks changed");
    locks.configure(next.locks);
  }
  next.builders.clear();  // they live in their slots, as after start()
  config = std::move(next);
  apply_retention();  // horizons may have changed
  schedule_start_builds();
  // Components that failed to start are reported, but the rest of the new
  // configuration is in place: the master runs it, as `kiln start` would.
  done(json{{"ok", errors.empty()}, {"errors", errors}, {"changes", changes}});
}

void EngineCore::reconcile_components(const std::vector<config::ComponentConfig>& configs,
                                      std::map<std::string, ComponentSlot>& running,
                                      json& changes, std::vector<std::string>& errors) {
  auto note = [&](std::string what) {
    spdlog::info("reconfig: {}", what);
    changes.push_back(std::move(what));
  };
  std::set<std::string> wanted;
  for (const auto& c : configs) {
    wanted.insert(c.name);
    const std::string label = kind_label(c.kind) + " '" + c.name + "'";
    auto it = running.find(c.name);
    if (it != running.end()) {
      ComponentSlot& slot = it->second;
      if (same_component(*slot.config, c)) continue;
      std::string refusal;
      if (slot.config->type == c.type && slot.config->common == c.common &&
          slot.instance->reconfigure(c.config, refusal)) {
        slot.config = std::make_shared<const config::ComponentConfig>(c);
        note(label + " reconfigured in place");
        continue;
      }
      if (!refusal.empty()) spdlog::info("reconfig: {}; re-creating it", refusal);
      stop_component(*slot.instance);
      running.erase(it);
      note(label + " restarted with its new configuration");
    } else {
      note(label + " added");
    }
    std::string error;
    ComponentSlot slot{std::make_shared<const config::ComponentConfig>(c), nullptr};
    slot.instance = create_instance(
        c, std::make_unique<ComponentContext>(*this, c.kind, c.name, c.common), error);
    if (!slot.instance) {
      errors.push_back(label + ": " + error);
      continue;
    }
    if (auto failed = start_component(c, *slot.instance); !failed.empty()) {
      errors.push_back(failed);
      continue;
    }
    running[c.name] = std::move(slot);
  }
  for (auto it = running.begin(); it != running.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    note(kind_label(it->second.config->kind) + " '" + it->first + "' removed");
    stop_component(*it->second.instance);
    it = running.erase(it);
  }
}

void EngineCore::replace_worker(WorkerSlot& worker,
                                std::shared_ptr<const config::ComponentConfig> next) {
  if (worker.context && worker.connected) worker.context->worker_disconnected("reconfigured");
  cancel_idle_timer(worker);
  worker.incompatible.clear();
  worker.insubstantiating = false;
  if (worker.instance) {
    stop_component(*worker.instance);
    worker.instance.reset();
  }
  worker.context = nullptr;
  worker.owned_config = std::move(next);
  worker.config = worker.owned_config.get();
  worker.max_builds = worker.config->common.value("max_builds", 1);
  worker.properties = worker.config->common.value("properties", json::object());
  if (auto error = create_worker(worker); !error.empty()) {
    spdlog::error("reconfig: worker '{}': {}", worker.name, error);
    return;
  }
  worker.problem = start_component(*worker.config, *worker.instance);
  if (!worker.problem.empty()) spdlog::error("reconfig: {}", worker.problem);
}

void EngineCore::after_worker_idle(WorkerSlot& worker) {
  if (worker.removed) {
    if (worker.context && worker.connected) worker.context->worker_disconnected("removed");
    if (worker.instance) stop_component(*worker.instance);
    const std::string name = worker.name;
    spdlog::info("worker '{}' removed", name);
    workers.erase(name);  // worker is gone from here on
    return;
  }
  if (auto next = std::move(worker.replacement)) {
    worker.replacement.reset();
    replace_worker(worker, std::move(next));
  }
}

void EngineCore::after_builder_idle(BuilderSlot& builder) {
  spdlog::info("builder '{}' removed", builder.config->name);
  builders_by_id.erase(builder.builderid);
  const std::string name = builder.config->name;
  builders.erase(name);  // builder is gone from here on
}

// ---------------------------------------------------------------------------
// Retention: per builder, builds older than build_horizon_days and logs older
// than log_horizon_days go, one small batch per store call so that neither
// the store thread nor the engine is held for long.

void EngineCore::apply_retention() {
  if (retention_timer == 0) {
    retention_timer =
        loop.start_timer(kRetentionIntervalMs, kRetentionIntervalMs, [this] { apply_retention(); });
  }
  if (retention_running || stopping) return;
  struct Job {
    int64_t builderid;
    int64_t older_than;
    bool logs;  // else builds
  };
  auto jobs = std::make_shared<std::deque<Job>>();
  const int64_t now = static_cast<int64_t>(now_s());
  for (const auto& [name, b] : builders) {
    if (b->removed) continue;
    if (auto days = b->config->log_horizon_days) {
      jobs->push_back({b->builderid, now - static_cast<int64_t>(*days * 86400), true});
    }
    if (auto days = b->config->build_horizon_days) {
      jobs->push_back({b->builderid, now - static_cast<int64_t>(*days * 86400), false});
    }
  }
  if (jobs->empty()) return;
  retention_running = true;
  auto deleted = std::make_shared<int64_t>(0);
  auto next = std::make_shared<std::function<void()>>();
  *next = [this, jobs, deleted, weak_next = std::weak_ptr(next)]() {
    if (jobs->empty() || stopping) {
      retention_running = false;
      if (*deleted) spdlog::info("retention: {} old rows deleted", *deleted);
      publish("master/retention", {{"deleted", *deleted}});
      return;
    }
    const Job job = jobs->front();
    auto again = [this, jobs, deleted, weak_next](store::Result<int64_t> r) {
      auto self = weak_next.lock();
      if (!self) return;
      if (!r.ok()) {
        spdlog::error("retention: {}", r.status.message);
        jobs->pop_front();
      } else if (r.value == 0) {
        jobs->pop_front();
      } else {
        *deleted += r.value;
      }
      // The next batch goes through the loop so other work interleaves.
      loop.post([self] { (*self)(); });
    };
    if (job.logs) {
      store.delete_old_logs(job.builderid, job.older_than, kRetentionBatch, guarded(alive, again));
    } else {
      store.delete_old_builds(job.builderid, job.older_than, kRetentionBatch,
                              guarded(alive, again));
    }
  };
  // The chain keeps itself alive through the posted closures.
  retention_chain = next;
  (*next)();
}

}  // namespace kiln::engine
