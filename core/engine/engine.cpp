#include "engine/engine.h"

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"
#include "engine/worker_commands.h"

#include "config/core_schema.h"
#include "config/json_schema.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <spawn.h>
#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::engine {

namespace {

namespace fs = std::filesystem;

kiln_str to_c(const std::string& s) { return kiln_str{s.data(), s.size()}; }

// Runs `tar -xf TAR -C DEST` with an argument vector, not a shell line:
// masterdest may come from rendered properties, which must never reach a
// shell. Blocking; called off the loop.
bool unpack_tar(const std::string& tar, const std::string& dest) {
  const char* argv[] = {"tar", "-xf", tar.c_str(), "-C", dest.c_str(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "tar", &actions, nullptr, const_cast<char* const*>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool truthy_text(const json& value) {
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_null()) return false;
  if (value.is_number()) return value.get<double>() != 0;
  if (value.is_string()) {
    std::string s = value.get<std::string>();
    return !(s.empty() || s == "false" || s == "False" || s == "0" || s == "None");
  }
  return !value.empty();
}

std::optional<std::string> json_string(const json& j, const char* key) {
  if (j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return std::nullopt;
}

// Why a change cannot be stored, naming the field; empty when it can.
std::string change_problem(const json& change) {
  for (const char* key : {"author", "who", "committer", "comments", "project", "repository",
                          "codebase", "revision", "branch", "category", "revlink"}) {
    if (change.contains(key) && !change[key].is_string() && !change[key].is_null()) {
      return std::string("change field '") + key + "' must be a string, not " +
             change[key].type_name();
    }
  }
  if (change.contains("files")) {
    const json& files = change["files"];
    if (!files.is_array()) return "change field 'files' must be a list of paths";
    for (size_t i = 0; i < files.size(); ++i) {
      if (!files[i].is_string()) {
        return "change field 'files[" + std::to_string(i) + "]' must be a string";
      }
    }
  }
  if (change.contains("properties")) {
    if (!change["properties"].is_object()) return "change field 'properties' must be an object";
    for (const auto& [name, value] : change["properties"].items()) {
      if (auto problem = property_name_problem(name); !problem.empty()) {
        return "change field 'properties': " + problem;
      }
    }
  }
  for (const char* key : {"when_timestamp", "when"}) {
    if (change.contains(key) && !change[key].is_null() &&
        !(change[key].is_number_integer() ||
          (change[key].is_number_float() && change[key].get<double>() >= 0 &&
           change[key].get<double>() < 1e12))) {
      return std::string("change field '") + key + "' must be a Unix timestamp (seconds)";
    }
    if (change.contains(key) && change[key].is_number_integer() && change[key].get<int64_t>() < 0) {
      return std::string("change field '") + key + "' must not be negative";
    }
  }
  return {};
}

store::ChangeRecord change_record(const json& change, int64_t now) {
  store::ChangeRecord c;
  c.author = json_string(change, "author").value_or(json_string(change, "who").value_or(""));
  c.committer = json_string(change, "committer");
  for (const auto& f : change.value("files", json::array())) {
    if (f.is_string()) c.files.push_back(f.get<std::string>());
  }
  c.comments = json_string(change, "comments").value_or("");
  c.project = json_string(change, "project").value_or("");
  c.repository = json_string(change, "repository").value_or("");
  c.codebase = json_string(change, "codebase").value_or("");
  c.revision = json_string(change, "revision");
  c.branch = json_string(change, "branch");
  c.category = json_string(change, "category");
  c.revlink = json_string(change, "revlink");
  const json change_properties = change.value("properties", json::object());
  for (const auto& [name, value] : change_properties.items()) {
    c.properties[name] = json::array({value, "Change"});
  }
  c.when_timestamp = now;
  for (const char* key : {"when", "when_timestamp"}) {
    if (change.contains(key) && change[key].is_number()) {
      c.when_timestamp = static_cast<int64_t>(change[key].get<double>());
    }
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------
// State backend

void StoreStateBackend::get(const plugin::StateKey& key, Done done) {
  store_.get_state(std::string(plugin::kind_name(key.kind)), key.name, key.key,
                   [done = std::move(done)](store::Result<std::string> r) {
                     if (r.ok()) {
                       done(KILN_OK, std::move(r.value));
                     } else {
                       done(KILN_ERR_INTERNAL, r.status.message);
                     }
                   });
}

void StoreStateBackend::put(const plugin::StateKey& key, std::string value_json, Done done) {
  store_.put_state(std::string(plugin::kind_name(key.kind)), key.name, key.key,
                   std::move(value_json), [done = std::move(done)](store::Status s) {
                     if (s.ok()) {
                       done(KILN_OK, "null");
                     } else {
                       done(KILN_ERR_INTERNAL, s.message);
                     }
                   });
}

// ---------------------------------------------------------------------------
// Engine (public face)

Engine::Engine(util::EventLoop& loop, store::Store& store, plugin::Registry& registry,
               config::MasterConfig config, int64_t masterid)
    : data_(store, *this),
      core_(std::make_unique<EngineCore>(*this, loop, store, registry, std::move(config),
                                         masterid)) {}

Engine::~Engine() = default;

std::string Engine::start() { return core_->start(); }

void Engine::stop(std::function<void()> done) {
  EngineCore& core = *core_;
  core.stopping = true;
  // Builds still waiting for a latent worker to start never began: their
  // requests wait for the next start.
  std::vector<Build*> substantiating;
  for (auto& [ptr, build] : core.builds) {
    if (build->substantiation != 0) substantiating.push_back(ptr);
  }
  for (Build* build : substantiating) core.abandon_build(*build);
  for (auto& [ptr, build] : core.builds) {
    // As Buildbot does when a master goes away: the work is not dropped,
    // the build ends RETRY and its request waits for the next start.
    build->shutdown = true;
    core.stop_build(*build, "the master is shutting down");
  }
  // Waits for builds to wind down (their steps get the interrupt), then
  // takes components down in reverse order of creation.
  auto deadline = core.loop.now_ms() + 10'000;
  auto wait = std::make_shared<std::function<void()>>();
  *wait = [&core, deadline, wait, done = std::move(done)]() {
    if (!core.builds.empty() && core.loop.now_ms() < deadline) {
      core.loop.start_timer(50, 0, [wait] { (*wait)(); });
      return;
    }
    core.flush_logs();
    if (core.retention_timer) core.loop.cancel_timer(core.retention_timer);
    core.retention_timer = 0;
    for (auto* group : {&core.change_sources, &core.schedulers, &core.reporters}) {
      for (auto& [name, slot] : *group) {
        if (slot.instance) EngineCore::stop_component(*slot.instance);
      }
      group->clear();
    }
    for (auto& [name, worker] : core.workers) {
      if (worker->instance) {
        EngineCore::stop_component(*worker->instance);
        worker->instance.reset();
      }
    }
    core.store.wait();
    done();
    *wait = nullptr;
  };
  (*wait)();
}

void Engine::reconfigure(config::MasterConfig config, std::function<void(nlohmann::json)> done) {
  core_->reconfigure(std::move(config), std::move(done));
}

void Engine::add_change(const nlohmann::json& change, DataDone done) {
  core_->add_change(change, std::move(done));
}

void Engine::add_buildset(const nlohmann::json& request, DataDone done) {
  core_->add_buildset(request, "Force Build Form", std::move(done));
}

nlohmann::json Engine::status() const { return core_->status(); }

void Engine::control(std::string_view path, std::string_view action, const nlohmann::json& args,
                     DataDone done) {
  core_->control(path, action, args, std::move(done));
}

// ---------------------------------------------------------------------------
// Start-up

EngineCore::EngineCore(Engine& e, util::EventLoop& l, store::Store& s, plugin::Registry& r,
                       config::MasterConfig c, int64_t m)
    : engine(e),
      loop(l),
      store(s),
      registry(r),
      config(std::move(c)),
      masterid(m),
      events(e.events()),
      data(e.data()),
      state(s),
      locks(l, [this] { schedule_start_builds(); }) {
  locks.configure(config.locks);
}

EngineCore::~EngineCore() {
  *alive = false;
  if (log_flush_timer) loop.cancel_timer(log_flush_timer);
  if (retention_timer) loop.cancel_timer(retention_timer);
  for (const auto& [id, command] : commands) {
    std::error_code ec;
    if (command.writing) fs::remove(command.temp_path, ec);  // an upload that never finished
  }
  // Plugin instances go before the state they point into.
  builds.clear();
  reporters.clear();
  change_sources.clear();
  schedulers.clear();
  for (auto& [name, worker] : workers) worker->instance.reset();
}

std::string EngineCore::start() {
  auto recovered = store::wait_for<store::RecoveryCounts>(
      [&](auto done) { store.recover_after_crash(masterid, now_s(), std::move(done)); });
  if (!recovered.ok()) return "crash recovery failed: " + recovered.status.message;
  if (recovered.value.builds > 0 || recovered.value.requests > 0) {
    spdlog::warn("recovered after an unclean stop: {} builds marked RETRY, {} requests back in "
                 "the queue",
                 recovered.value.builds, recovered.value.requests);
  }

  // All registrations go to the store at once and commit together (one
  // round trip, not one per builder).
  std::vector<store::Result<int64_t>> builder_ids(config.builders.size());
  std::vector<store::Result<int64_t>> worker_ids(config.workers.size());
  for (size_t i = 0; i < config.builders.size(); ++i) {
    const auto& b = config.builders[i];
    store.ensure_builder(b.name,
                         b.description.empty() ? std::nullopt : std::optional(b.description),
                         b.tags,
                         store::Completion<int64_t>::on_store_thread(
                             [&builder_ids, i](store::Result<int64_t> r) { builder_ids[i] = std::move(r); }));
  }
  for (size_t i = 0; i < config.workers.size(); ++i) {
    store.ensure_worker(config.workers[i].name, json::object(),
                        store::Completion<int64_t>::on_store_thread(
                            [&worker_ids, i](store::Result<int64_t> r) { worker_ids[i] = std::move(r); }));
  }
  if (auto waited = store.wait(); !waited.ok()) return "cannot register builders: " + waited.message;
  for (size_t i = 0; i < config.builders.size(); ++i) {
    auto& b = config.builders[i];
    const auto& id = builder_ids[i];
    if (!id.ok()) return "cannot register builder '" + b.name + "': " + id.status.message;
    auto slot = std::make_unique<BuilderSlot>();
    slot->owned_config = std::make_shared<const config::BuilderConfig>(std::move(b));
    slot->config = slot->owned_config.get();
    slot->builderid = id.value;
    builders_by_id[id.value] = slot.get();
    builders[slot->config->name] = std::move(slot);
  }
  // Builders live in their slots from here on: one copy of a large
  // master's step configurations, not two.
  config.builders.clear();
  for (size_t i = 0; i < config.workers.size(); ++i) {
    const auto& w = config.workers[i];
    const auto& id = worker_ids[i];
    if (!id.ok()) return "cannot register worker '" + w.name + "': " + id.status.message;
    auto slot = std::make_unique<WorkerSlot>();
    slot->name = w.name;
    slot->owned_config = std::make_shared<const config::ComponentConfig>(w);
    slot->config = slot->owned_config.get();
    slot->workerid = id.value;
    slot->max_builds = w.common.value("max_builds", 1);
    slot->properties = w.common.value("properties", json::object());
    workers[w.name] = std::move(slot);
  }

  auto pending = store.pending_requests_sync(std::nullopt, 0);
  if (!pending.ok()) return "cannot read the queue: " + pending.status.message;
  size_t queued = 0;
  for (const auto& r : pending.value) {
    auto it = builders_by_id.find(r.builderid);
    if (it == builders_by_id.end()) continue;  // builder no longer configured
    it->second->pending.push_back({r.buildrequestid, r.buildsetid, r.priority, r.submitted_at});
    ++queued;
  }
  if (queued) spdlog::info("{} build requests pending", queued);

  if (auto error = create_components(); !error.empty()) return error;
  log_flush_timer = loop.start_timer(200, 200, [this] { flush_logs(); });
  apply_retention();
  schedule_start_builds();
  return {};
}

std::unique_ptr<plugin::Instance> EngineCore::create_instance(const config::ComponentConfig& c,
                                                              std::unique_ptr<kiln_ctx> ctx,
                                                              std::string& error) {
  const auto* type = registry.find(c.kind, c.type);
  if (!type) {
    error = std::string(plugin::kind_name(c.kind)) + " type '" + c.type + "' is not loaded";
    return nullptr;
  }
  return plugin::Instance::create(*type, std::move(ctx), c.config, error);
}

std::string EngineCore::start_component(const config::ComponentConfig& c,
                                        plugin::Instance& instance) {
  kiln_error err;
  kiln_status status = KILN_OK;
  switch (c.kind) {
    case KILN_KIND_WORKER:
      if (const auto* vt = instance.vtable<kiln_worker_vtable>(); KILN_HAS(kiln_worker_vtable, vt, start)) {
        status = vt->start(instance.handle(), &err);
      }
      break;
    case KILN_KIND_SCHEDULER:
      if (const auto* vt = instance.vtable<kiln_scheduler_vtable>(); KILN_HAS(kiln_scheduler_vtable, vt, start)) {
        status = vt->start(instance.handle(), &err);
      }
      break;
    case KILN_KIND_CHANGE_SOURCE:
      if (const auto* vt = instance.vtable<kiln_change_source_vtable>();
          KILN_HAS(kiln_change_source_vtable, vt, start)) {
        status = vt->start(instance.handle(), &err);
      }
      break;
    case KILN_KIND_REPORTER:
      if (const auto* vt = instance.vtable<kiln_reporter_vtable>(); KILN_HAS(kiln_reporter_vtable, vt, start)) {
        status = vt->start(instance.handle(), &err);
      }
      break;
    default:
      break;
  }
  if (status == KILN_OK) return {};
  return std::string(plugin::kind_name(c.kind)) + " '" + c.name + "' failed to start: " +
         (err.message.empty() ? "status " + std::to_string(err.status) : err.message);
}

void EngineCore::stop_component(plugin::Instance& instance) {
  switch (instance.type().kind) {
    case KILN_KIND_WORKER:
      if (const auto* vt = instance.vtable<kiln_worker_vtable>(); KILN_HAS(kiln_worker_vtable, vt, stop)) {
        vt->stop(instance.handle());
      }
      break;
    case KILN_KIND_SCHEDULER:
      if (const auto* vt = instance.vtable<kiln_scheduler_vtable>(); KILN_HAS(kiln_scheduler_vtable, vt, stop)) {
        vt->stop(instance.handle());
      }
      break;
    case KILN_KIND_CHANGE_SOURCE:
      if (const auto* vt = instance.vtable<kiln_change_source_vtable>();
          KILN_HAS(kiln_change_source_vtable, vt, stop)) {
        vt->stop(instance.handle());
      }
      break;
    case KILN_KIND_REPORTER:
      if (const auto* vt = instance.vtable<kiln_reporter_vtable>(); KILN_HAS(kiln_reporter_vtable, vt, stop)) {
        vt->stop(instance.handle());
      }
      break;
    default:
      break;
  }
}

std::string EngineCore::create_worker(WorkerSlot& slot) {
  std::string error;
  auto ctx = std::make_unique<WorkerContext>(*this, slot, slot.config->common);
  slot.context = ctx.get();
  slot.instance = create_instance(*slot.config, std::move(ctx), error);
  if (!slot.instance) {
    slot.context = nullptr;
    return error;
  }
  const auto* vt = slot.instance->vtable<kiln_worker_vtable>();
  slot.latent = KILN_HAS(kiln_worker_vtable, vt, substantiate) && KILN_HAS(kiln_worker_vtable, vt, insubstantiate);
  slot.build_wait_timeout_s = slot.config->common.value("build_wait_timeout", int64_t{600});
  if (!slot.latent && slot.config->common.contains("build_wait_timeout")) {
    spdlog::warn("worker '{}': build_wait_timeout is for latent workers; a '{}' worker ignores it", slot.name,
                 slot.config->type);
  }
  return error;
}

std::string EngineCore::create_components() {
  std::string error;
  for (auto& [name, slot] : workers) {
    if (error = create_worker(*slot); !error.empty()) return error;
  }
  auto create_all = [&](const std::vector<config::ComponentConfig>& configs,
                        std::map<std::string, ComponentSlot>& into) {
    for (const auto& c : configs) {
      ComponentSlot slot{std::make_shared<const config::ComponentConfig>(c), nullptr};
      slot.instance = create_instance(
          c, std::make_unique<ComponentContext>(*this, c.kind, c.name, c.common), error);
      if (!slot.instance) return false;
      into[c.name] = std::move(slot);
    }
    return true;
  };
  if (!create_all(config.schedulers, schedulers) ||
      !create_all(config.change_sources, change_sources) ||
      !create_all(config.reporters, reporters)) {
    return error;
  }

  // Started in dependency order: workers first, so that schedulers firing at
  // once find them; reporters before sources so no event is missed.
  for (auto& [name, slot] : workers) {
    // One broken worker (a basedir that cannot be created, a port in use)
    // must not keep the master and the other workers down.
    if (auto e = start_component(*slot->config, *slot->instance); !e.empty()) {
      slot->problem = e;
      spdlog::error("{}; builds for it wait until it starts: fix the cause, then `kiln "
                    "reconfig`", e);
    }
  }
  for (auto* group : {&reporters, &schedulers, &change_sources}) {
    for (auto& [name, slot] : *group) {
      if (auto e = start_component(*slot.config, *slot.instance); !e.empty()) return e;
    }
  }
  return {};
}

// ---------------------------------------------------------------------------
// Changes and buildsets

void EngineCore::add_change(const json& change, DataDone done) {
  if (!change.is_object()) {
    done(KILN_ERR_INVALID_ARGUMENT, error_value("a change must be a JSON object"));
    return;
  }
  if (auto problem = change_problem(change); !problem.empty()) {
    done(KILN_ERR_INVALID_ARGUMENT, error_value(problem));
    return;
  }
  store::ChangeRecord record = change_record(change, static_cast<int64_t>(now_s()));
  auto after_user = [this, record, done](std::optional<int64_t> uid) mutable {
    if (uid) record.uids.push_back(*uid);
    store.add_change(std::move(record), guarded(alive, [this, done](store::Result<int64_t> r) {
      if (!r.ok()) {
        done(KILN_ERR_INVALID_ARGUMENT, error_value(r.status.message));
        return;
      }
      const int64_t changeid = r.value;
      store::ResultSpec spec;
      spec.filters.push_back({"changeid", store::FilterOp::kEq, {changeid}});
      store.query(store::Resource::kChanges, spec,
                  guarded(alive, [this, changeid, done](store::Result<json> q) {
                    json change_json = q.ok() && !q.value.empty() ? q.value[0]
                                                                   : json{{"changeid", changeid}};
                    publish("changes/" + std::to_string(changeid) + "/new", change_json);
                    const std::string text = change_json.dump();
                    for (auto& [name, s] : schedulers) {
                      const auto* vt = s.instance->vtable<kiln_scheduler_vtable>();
                      if (KILN_HAS(kiln_scheduler_vtable, vt, on_change)) {
                        vt->on_change(s.instance->handle(), to_c(text));
                      }
                    }
                    done(KILN_OK, json{{"changeid", changeid}});
                  }));
    }));
  };
  if (record.author.empty()) {
    after_user(std::nullopt);
    return;
  }
  store.find_or_create_user(record.author, "author", record.author,
                            guarded(alive, [after_user](store::Result<int64_t> r) mutable {
                              after_user(r.ok() ? std::optional(r.value) : std::nullopt);
                            }));
}

void EngineCore::add_buildset(const json& request, const std::string& default_source,
                              DataDone done) {
  if (!request.is_object()) {
    done(KILN_ERR_INVALID_ARGUMENT, error_value("a buildset request must be a JSON object"));
    return;
  }
  store::BuildsetRequest bs;
  std::vector<std::string> names;
  for (const auto& b : request.value("builders", json::array())) {
    if (!b.is_string()) continue;
    auto it = builders.find(b.get<std::string>());
    if (it == builders.end() || it->second->removed) {
      done(KILN_ERR_NOT_FOUND, error_value("no builder named '" + b.get<std::string>() + "'"));
      return;
    }
    names.push_back(it->first);
    bs.builderids.push_back(it->second->builderid);
  }
  if (bs.builderids.empty()) {
    done(KILN_ERR_INVALID_ARGUMENT, error_value("a buildset needs at least one builder"));
    return;
  }
  bs.reason = json_string(request, "reason").value_or("");
  bs.external_idstring = json_string(request, "external_idstring");
  const std::string source = json_string(request, "properties_source").value_or(default_source);
  const json request_properties = request.value("properties", json::object());
  if (!request_properties.is_object()) {
    done(KILN_ERR_INVALID_ARGUMENT, error_value("buildset properties must be a JSON object"));
    return;
  }
  for (const auto& [name, value] : request_properties.items()) {
    if (auto problem = property_name_problem(name); !problem.empty()) {
      done(KILN_ERR_INVALID_ARGUMENT, error_value(problem));
      return;
    }
  }
  for (const auto& [name, value] : request_properties.items()) {
    bs.properties[name] = json::array({value, source});
  }
  if (request.contains("parent_buildid") && request["parent_buildid"].is_number()) {
    bs.parent_buildid = request["parent_buildid"].get<int64_t>();
  }
  bs.parent_relationship = json_string(request, "parent_relationship");
  bs.waited_for = request.value("waited_for", false);
  bs.priority = request.value("priority", 0);
  bs.submitted_at = static_cast<int64_t>(now_s());
  json stamps = request.value("sourcestamps", json::array());
  if (stamps.empty()) stamps.push_back(json::object());
  for (const auto& ss : stamps) {
    store::SourceStampSpec spec;
    spec.codebase = json_string(ss, "codebase").value_or("");
    spec.repository = json_string(ss, "repository").value_or("");
    spec.project = json_string(ss, "project").value_or("");
    spec.branch = json_string(ss, "branch");
    spec.revision = json_string(ss, "revision");
    if (spec.branch && spec.branch->empty()) spec.branch.reset();
    if (spec.revision && spec.revision->empty()) spec.revision.reset();
    for (const auto& id : ss.value("changeids", json::array())) {
      if (id.is_number_integer()) spec.changeids.push_back(id.get<int64_t>());
    }
    if (ss.contains("patch") && ss["patch"].is_object()) {
      store::PatchRecord patch;
      patch.level = ss["patch"].value("level", 1);
      patch.body = json_string(ss["patch"], "body").value_or("");
      patch.subdir = json_string(ss["patch"], "subdir");
      patch.author = json_string(ss["patch"], "author").value_or("");
      patch.comment = json_string(ss["patch"], "comment").value_or("");
      spec.patch = std::move(patch);
    }
    bs.sourcestamps.push_back(std::move(spec));
  }
  const int64_t priority = bs.priority;
  const int64_t submitted = bs.submitted_at;
  auto sources = request_source(bs.sourcestamps, bs.reason);
  store.add_buildset(std::move(bs), guarded(alive, [=, this](store::Result<store::BuildsetIds> r) {
    if (!r.ok()) {
      done(KILN_ERR_INVALID_ARGUMENT, error_value(r.status.message));
      return;
    }
    json brids = json::object();
    for (const auto& [builderid, brid] : r.value.brids) {
      auto slot = builders_by_id.find(builderid);
      // A reconfig may have removed the builder meanwhile: the request waits
      // in the store for its return.
      if (slot == builders_by_id.end() || slot->second->removed) continue;
      BuilderSlot* builder = slot->second;
      brids[builder->config->name] = brid;
      PendingRequest pr{brid, r.value.bsid, priority, submitted, sources};
      auto pos = std::find_if(builder->pending.begin(), builder->pending.end(),
                              [&](const PendingRequest& p) { return p.priority < priority; });
      builder->pending.insert(pos, pr);
      publish("buildrequests/" + std::to_string(brid) + "/new",
              {{"buildrequestid", brid}, {"buildsetid", r.value.bsid},
               {"builderid", builderid}, {"priority", priority}, {"submitted_at", submitted},
               {"claimed", false}, {"complete", false}});
    }
    publish("buildsets/" + std::to_string(r.value.bsid) + "/new",
            {{"bsid", r.value.bsid}, {"submitted_at", submitted}, {"complete", false}});
    schedule_start_builds();
    done(KILN_OK, json{{"bsid", r.value.bsid}, {"brids", brids}});
  }));
}

// ---------------------------------------------------------------------------
// Builds

void EngineCore::schedule_start_builds() {
  if (start_builds_scheduled || stopping) return;
  start_builds_scheduled = true;
  loop.post(guarded(alive, [this] { start_builds(); }));
}

void EngineCore::start_builds() {
  start_builds_scheduled = false;
  if (stopping) return;
  if (clean_shutdown) return check_clean_shutdown();
  distribution->start_builds();
}

void EngineCore::start_build(BuilderSlot& builder, WorkerSlot& worker,
                             std::vector<PendingRequest> requests, std::unique_ptr<LockClaim> claim) {
  auto owned = std::make_unique<Build>();
  Build* build = owned.get();
  build->locks = std::move(claim);
  build->builder = &builder;
  build->worker = &worker;
  for (const auto& r : requests) build->brids.push_back(r.brid);
  build->bsid = requests.front().bsid;
  build->requests = std::move(requests);
  builds[build] = std::move(owned);
  builder.running.insert(build);
  worker.builds.insert(build);

  // Collapsed requests are claimed together and built as one.
  store.claim_requests(
      build->brids, masterid, static_cast<int64_t>(now_s()),
      guarded(alive, [this, build](store::Result<std::vector<int64_t>> claimed) {
        if (!claimed.ok() || claimed.value.empty()) {
          // Another master took them, or they were cancelled meanwhile.
          build->brids.clear();
          build->requests.clear();
          abandon_build(*build);
          return;
        }
        if (claimed.value.size() != build->brids.size()) {
          BuildDistribution::keep_claimed(*build, claimed.value);
        }
        for (int64_t brid : build->brids) {
          publish("buildrequests/" + std::to_string(brid) + "/claimed",
                  {{"buildrequestid", brid}, {"claimed", true}});
        }
        distribution->load_build_inputs(*build, [this, build](json request, json buildset) {
          begin_build(*build, request, buildset);
        });
      }));
}

void EngineCore::abandon_build(Build& build) {
  if (!build.brids.empty()) {
    store.unclaim_requests(build.brids, [](store::Status) {});
    BuildDistribution::requeue(*build.builder, build.requests);
  }
  WorkerSlot& worker = *build.worker;
  build.builder->running.erase(&build);
  worker.builds.erase(&build);
  builds.erase(&build);
  if (worker.builds.empty()) worker_idle(worker);
  schedule_start_builds();
}

InterpolateScope EngineCore::scope_for(const Build& build) const {
  InterpolateScope scope;
  scope.properties = &build.properties;
  scope.sourcestamps = &build.sourcestamps;
  scope.worker = &build.worker->info;
  return scope;
}

void EngineCore::set_build_property(Build& build, const std::string& name, json value,
                                    const std::string& source) {
  build.properties[name] = json::array({value, source});
  if (build.buildid) {
    store.set_build_property(build.buildid, name, std::move(value), source, [](store::Status) {});
  }
}

void EngineCore::begin_build(Build& build, const json& buildrequest, const json& buildset) {
  const auto& bc = *build.builder->config;
  // Lowest precedence first; later sources override, as in Buildbot.
  for (const auto& [k, v] : config.master.properties.items()) {
    build.properties[k] = json::array({v, "Master"});
  }
  for (const auto& [k, v] : build.worker->properties.items()) {
    build.properties[k] = json::array({v, "Worker"});
  }
  for (const auto& [k, v] : bc.properties.items()) build.properties[k] = json::array({v, "Builder"});
  const json buildrequest_properties = buildrequest.value("properties", json::object());
  for (const auto& [k, v] : buildrequest_properties.items()) {
    build.properties[k] = v;
  }
  for (const auto& ss : buildset.value("sourcestamps", json::array())) {
    build.sourcestamps[ss.value("codebase", "")] = ss;
  }
  if (!buildset.value("sourcestamps", json::array()).empty()) {
    const json& ss = buildset["sourcestamps"][0];
    for (const char* key : {"branch", "revision", "repository", "project", "codebase"}) {
      if (ss.contains(key)) build.properties[key] = json::array({ss[key], "Build"});
    }
  }
  build.properties["buildername"] = json::array({bc.name, "Builder"});
  build.properties["workername"] = json::array({build.worker->name, "Worker"});
  build.properties["builddir"] = json::array({bc.builddir, "Builder"});
  if (buildset.contains("reason") && !build.properties.contains("reason")) {
    build.properties["reason"] = json::array({buildset["reason"], "Build"});
  }
  build.steps = bc.steps;
  if (build.worker->latent) {
    substantiate_for(build);
    return;
  }
  record_build(build);
}

void EngineCore::record_build(Build& build) {
  build.started_at = static_cast<int64_t>(now_s());
  store.add_build(
      build.builder->builderid, build.brids[0], build.worker->workerid, masterid, build.started_at,
      "building", guarded(alive, [this, &build](store::Result<store::BuildIds> ids) {
        if (!ids.ok()) {
          spdlog::error("builder '{}': cannot record a build: {}", build.builder->config->name,
                        ids.status.message);
          abandon_build(build);
          return;
        }
        build.buildid = ids.value.buildid;
        build.number = ids.value.number;
        builds_by_id[build.buildid] = &build;
        build.properties["buildnumber"] = json::array({build.number, "Build"});
        for (const auto& [name, entry] : build.properties.items()) {
          store.set_build_property(build.buildid, name, entry[0], entry[1].get<std::string>(),
                                   [](store::Status) {});
        }
        spdlog::info("build {} #{} started on {}", build.builder->config->name, build.number,
                     build.worker->name);
        publish("builds/" + std::to_string(build.buildid) + "/new",
                {{"buildid", build.buildid}, {"number", build.number},
                 {"builderid", build.builder->builderid}, {"buildrequestid", build.brids[0]},
                 {"workerid", build.worker->workerid}, {"masterid", masterid},
                 {"started_at", build.started_at}, {"complete", false}, {"results", nullptr},
                 {"state_string", "building"}});
        run_next_step(build);
      }));
}

void EngineCore::run_next_step(Build& build) {
  while (build.next_step < build.steps.size()) {
    config::ComponentConfig step = build.steps[build.next_step++];
    const bool always_run = step.common.value("always_run", false);
    if ((build.progress.halt || build.stopping) && !always_run) continue;
    start_step(build, std::move(step));
    return;
  }
  finish_build(build);
}

void EngineCore::start_step(Build& build, config::ComponentConfig step_config) {
  const std::string name = step_config.name;
  auto run = std::make_unique<StepRun>(build, std::move(step_config));
  StepRun* r = run.get();
  build.current = std::move(run);
  build.current_step_name = name;
  store.add_step(build.buildid, name, guarded(alive, [this, r](store::Result<store::StepIds> ids) {
    Build& build = r->build;
    if (!ids.ok()) {
      spdlog::error("build {}: cannot record step '{}': {}", build.buildid, r->config.name,
                    ids.status.message);
      r->finished = true;
      build.progress = apply_step_result(build.progress, KILN_EXCEPTION, {});
      loop.post(guarded(alive, [this, &build] {
        build.current.reset();
        run_next_step(build);
      }));
      return;
    }
    r->stepid = ids.value.stepid;
    r->number = ids.value.number;
    r->name = ids.value.name;
    publish("steps/" + std::to_string(r->stepid) + "/new",
            {{"stepid", r->stepid}, {"number", r->number}, {"name", r->name},
             {"buildid", build.buildid}, {"complete", false}});
    // Events follow the store: a reader reacting to one finds the record.
    store.start_step(r->stepid, static_cast<int64_t>(now_s()),
                     guarded(alive, [this, stepid = r->stepid, buildid = build.buildid](store::Status) {
                       publish("steps/" + std::to_string(stepid) + "/started",
                               {{"stepid", stepid}, {"buildid", buildid}});
                     }));

    InterpolateScope scope = scope_for(build);
    std::string error;
    r->common = r->config.common;
    config::apply_schema_defaults(config::core_definition("step"), r->common);
    if (!render_json(r->common, scope, error)) {
      fail_step(*r, KILN_EXCEPTION, "cannot render step '" + r->name + "': " + error);
      return;
    }
    if (r->common.contains("hide_step_if")) r->hidden = truthy_text(r->common["hide_step_if"]);
    // Its locks first, as in Buildbot: do_step_if and the rest see a step
    // that may run.
    const auto uses = config::lock_accesses(r->common.value("locks", json::array()));
    if (uses.empty()) return run_step(*r);
    std::string blocking;
    if ((r->locks = locks.try_take(uses, build.worker->name, &blocking))) return run_step(*r);
    const std::string waiting = "waiting for lock '" + blocking + "'";
    store.set_step_state_string(r->stepid, waiting, [](store::Status) {});
    build.current_step_name = r->name + " (" + waiting + ")";
    r->lock_wait = locks.wait_for(
        uses, build.worker->name,
        build.builder->config->name + "/" + std::to_string(build.number) + "/" + r->name,
        [this, r](std::unique_ptr<LockClaim> claim) {
          r->lock_wait.reset();
          r->locks = std::move(claim);
          r->build.current_step_name = r->name;
          run_step(*r);
        });
  }));
}

void EngineCore::run_step(StepRun& run) {
  StepRun* r = &run;
  Build& build = run.build;
  {
    InterpolateScope scope = scope_for(build);
    std::string error;
    if (r->common.contains("do_step_if") && !truthy_text(r->common["do_step_if"])) {
      step_finished(*r, KILN_SKIPPED, "skipped");
      return;
    }
    const auto* type = registry.find(KILN_KIND_STEP, r->config.type);
    if (!type) {
      fail_step(*r, KILN_EXCEPTION, "step type '" + r->config.type + "' is not loaded");
      return;
    }
    json config = r->config.config;
    config::apply_schema_defaults(type->schema, config);
    if (!render_json(config, scope, error)) {
      fail_step(*r, KILN_EXCEPTION, "cannot render step '" + r->name + "': " + error);
      return;
    }
    auto ctx = std::make_unique<StepContext>(
        *this, *r, build.builder->config->name + "/" + std::to_string(build.number) + "/" + r->name,
        r->common);
    r->context = ctx.get();
    r->instance = plugin::Instance::create(*type, std::move(ctx), config, error);
    if (!r->instance) {
      r->context = nullptr;
      fail_step(*r, KILN_EXCEPTION, error);
      return;
    }
    const auto* vt = r->instance->vtable<kiln_step_vtable>();
    kiln_error err;
    if (!KILN_HAS(kiln_step_vtable, vt, run)) {
      fail_step(*r, KILN_EXCEPTION, "step type '" + r->config.type + "' has no run function");
    } else if (vt->run(r->instance->handle(), &err) != KILN_OK && !r->finished) {
      fail_step(*r, KILN_EXCEPTION,
                "step '" + r->name + "' failed to run: " +
                    (err.message.empty() ? "status " + std::to_string(err.status) : err.message));
    }
  }
}

void EngineCore::fail_step(StepRun& run, int result, const std::string& message) {
  spdlog::warn("build {}: {}", run.build.buildid, message);
  uint64_t handle = add_step_log(run, "err.text", KILN_LOG_TYPE_TEXT);
  run.logs[handle]->writer->append(KILN_STREAM_STDOUT, message + "\n");
  step_finished(run, result, message);
}

void EngineCore::step_finished(StepRun& run, int result, std::string summary) {
  if (run.finished) return;
  run.finished = true;
  run.lock_wait.reset();
  run.locks.reset();  // the next step, or another build, may want them
  Build& build = run.build;
  // Commands still running belong to a step that no longer listens.
  for (uint64_t id : std::vector<uint64_t>(run.commands.begin(), run.commands.end())) {
    auto it = commands.find(id);
    if (it == commands.end()) continue;
    WorkerSlot* worker = it->second.worker;
    commands.erase(it);
    if (worker->instance) {
      const auto* vt = worker->instance->vtable<kiln_worker_vtable>();
      if (KILN_HAS(kiln_worker_vtable, vt, command_interrupt)) {
        vt->command_interrupt(worker->instance->handle(), id, to_c(std::string("step finished")));
      }
    }
  }
  run.commands.clear();
  for (auto& [handle, log] : run.logs) finish_step_log(*log);
  if (build.worker_lost) result = KILN_RETRY;
  const int64_t now = static_cast<int64_t>(now_s());
  if (run.stepid) {
    store.set_step_state_string(run.stepid, summary, [](store::Status) {});
    json finished = {{"stepid", run.stepid}, {"buildid", build.buildid}, {"number", run.number},
                     {"name", run.name}, {"complete", true}, {"complete_at", now},
                     {"results", result}, {"state_string", summary}, {"hidden", run.hidden}};
    store.finish_step(run.stepid, result, run.hidden, now,
                      guarded(alive, [this, finished = std::move(finished)](store::Status) {
                        publish("steps/" + std::to_string(finished["stepid"].get<int64_t>()) +
                                    "/finished",
                                finished);
                      }));
  }
  build.progress =
      apply_step_result(build.progress, result, StepResultFlags::from_common(run.common));
  // The plugin may still be inside its own call: destroy it from the loop.
  loop.post(guarded(alive, [this, &build] {
    build.current.reset();
    run_next_step(build);
  }));
}

void EngineCore::finish_build(Build& build) {
  int results = build.progress.results;
  if (build.worker_lost || build.shutdown) {
    results = KILN_RETRY;
  } else if (build.stopping) {
    results = worst_result(results, KILN_CANCELLED);
  }
  const int64_t now = static_cast<int64_t>(now_s());
  store.set_build_state_string(build.buildid, std::string("build ") + result_name(results),
                               [](store::Status) {});
  // The event goes out once the store holds the result, so a reader that
  // reacts to it finds the build complete.
  json finished_event = {
      {"buildid", build.buildid}, {"number", build.number},
      {"builderid", build.builder->builderid}, {"buildrequestid", build.brids.front()},
      {"workerid", build.worker->workerid}, {"masterid", masterid},
      {"started_at", build.started_at}, {"complete", true}, {"complete_at", now},
      {"results", results}, {"state_string", std::string("build ") + result_name(results)}};
  store.finish_build(build.buildid, results, now,
                     guarded(alive, [this, finished_event](store::Status) {
                       publish("builds/" +
                                   std::to_string(finished_event["buildid"].get<int64_t>()) +
                                   "/finished",
                               finished_event);
                     }));
  if (results == KILN_RETRY) {
    store.unclaim_requests(build.brids, [](store::Status) {});
    // A builder a reconfig removed leaves them in the store for its return.
    if (!build.builder->removed) BuildDistribution::requeue(*build.builder, build.requests);
  } else {
    // Collapsed requests may come from several buildsets.
    std::set<int64_t> bsids{build.bsid};
    for (const auto& r : build.requests) bsids.insert(r.bsid);
    store.complete_requests(build.brids, results, now,
                            guarded(alive, [this, bsids](store::Status) {
                              for (int64_t bsid : bsids) check_buildset_complete(bsid);
                            }));
  }
  spdlog::info("build {} #{} finished: {}", build.builder->config->name, build.number,
               result_name(results));
  build.builder->last = json{{"number", build.number}, {"results", results}, {"complete_at", now}};
  BuilderSlot& builder = *build.builder;
  WorkerSlot& worker = *build.worker;
  builder.running.erase(&build);
  worker.builds.erase(&build);
  builds_by_id.erase(build.buildid);
  builds.erase(&build);
  if (worker.builds.empty()) {
    if (worker.removed || worker.replacement) {
      after_worker_idle(worker);
    } else {
      worker_idle(worker);
    }
  }
  if (builder.running.empty() && builder.removed) after_builder_idle(builder);
  schedule_start_builds();
}

void EngineCore::check_buildset_complete(int64_t bsid) {
  store::ResultSpec spec;
  spec.filters.push_back({"buildsetid", store::FilterOp::kEq, {bsid}});
  store.query(store::Resource::kBuildrequests, spec,
              guarded(alive, [this, bsid](store::Result<json> r) {
                if (!r.ok() || r.value.empty()) return;
                int results = KILN_SUCCESS;
                for (const auto& br : r.value) {
                  if (!br.value("complete", false)) return;
                  if (br["results"].is_number()) results = worst_result(results, br["results"].get<int>());
                }
                const int64_t now = static_cast<int64_t>(now_s());
                store.complete_buildset(
                    bsid, results, now, guarded(alive, [this, bsid, results, now](store::Status) {
                      publish("buildsets/" + std::to_string(bsid) + "/complete",
                              {{"bsid", bsid}, {"complete", true}, {"complete_at", now},
                               {"results", results}});
                    }));
              }));
}

void EngineCore::stop_build(Build& build, const std::string& reason) {
  if (build.stopping) return;
  build.stopping = true;
  build.stop_reason = reason;
  if (build.current && build.current->lock_wait && !build.current->finished) {
    // It never ran: nothing to interrupt.
    step_finished(*build.current, KILN_CANCELLED, "cancelled while waiting for locks: " + reason);
    return;
  }
  if (build.current && build.current->instance && !build.current->finished) {
    const auto* vt = build.current->instance->vtable<kiln_step_vtable>();
    if (KILN_HAS(kiln_step_vtable, vt, interrupt)) {
      vt->interrupt(build.current->instance->handle(), to_c(reason));
    } else {
      // A step that cannot be interrupted: its commands are, and it ends.
      step_finished(*build.current, KILN_CANCELLED, "cancelled: " + reason);
    }
  }
}

// ---------------------------------------------------------------------------
// Commands

kiln_status EngineCore::start_command(StepRun& run, const std::string& name, const json& args,
                                      kiln_ctx::CommandHandlers handlers, uint64_t& id,
                                      std::string& error) {
  WorkerSlot& worker = *run.build.worker;
  if (!worker.connected || !worker.instance) {
    error = "worker '" + worker.name + "' is not connected";
    return KILN_ERR_RETRY;
  }
  CommandPlace place;
  place.worker_basedir = worker.info.value("basedir", "");
  place.builder_dir = run.build.builder->config->workerbuilddir;
  place.master_dir = config.basedir.string();
  place.builder_env = run.build.builder->config->env;
  place.step_common = run.common;
  auto wire = to_wire_command(name, args, place);
  if (auto* message = std::get_if<std::string>(&wire)) {
    error = *message;
    return KILN_ERR_INVALID_ARGUMENT;
  }
  auto& command = std::get<WireCommand>(wire);
  RunningCommand running;
  running.worker = &worker;
  running.step = &run;
  running.handlers = std::move(handlers);
  running.transfer = static_cast<int>(command.transfer);
  running.master_path = command.master_path;
  running.master_mode = command.master_mode;
  std::error_code ec;
  switch (command.transfer) {
    case WireCommand::Transfer::kUploadFile:
    case WireCommand::Transfer::kUploadDirectory: {
      const fs::path dest = command.master_path;
      // Hidden beside the destination; a directory arrives as a tar to unpack.
      const bool directory = command.transfer == WireCommand::Transfer::kUploadDirectory;
      fs::create_directories(directory ? dest : dest.parent_path(), ec);
      running.temp_path =
          (dest.parent_path() / ("." + dest.filename().string() + (directory ? ".kiln-upload.tar" : ".kiln-upload")))
              .string();
      running.writing = std::make_unique<std::ofstream>(running.temp_path, std::ios::binary);
      if (!*running.writing) {
        error = "cannot write '" + running.temp_path + "' on the master";
        return KILN_ERR_INVALID_ARGUMENT;
      }
      break;
    }
    case WireCommand::Transfer::kDownloadFile:
      running.reading = std::make_unique<std::ifstream>(command.master_path, std::ios::binary);
      if (!*running.reading) {
        error = "cannot read '" + command.master_path + "' on the master";
        return KILN_ERR_INVALID_ARGUMENT;
      }
      break;
    case WireCommand::Transfer::kNone:
      break;
  }
  id = next_command_id++;
  commands.emplace(id, std::move(running));
  run.commands.insert(id);
  const auto* vt = worker.instance->vtable<kiln_worker_vtable>();
  kiln_error err;
  const std::string args_text = command.args.dump();
  if (!KILN_HAS(kiln_worker_vtable, vt, command_start) ||
      vt->command_start(worker.instance->handle(), id, to_c(command.name), to_c(args_text),
                        &err) != KILN_OK) {
    commands.erase(id);
    run.commands.erase(id);
    error = "worker '" + worker.name + "' refused command '" + command.name + "': " + err.message;
    return err.status == KILN_OK ? KILN_ERR_INTERNAL : err.status;
  }
  return KILN_OK;
}

void EngineCore::complete_command(uint64_t id, json result) {
  auto it = commands.find(id);
  if (it == commands.end()) return;
  RunningCommand command = std::move(it->second);
  commands.erase(it);
  if (command.step) command.step->commands.erase(id);
  if (command.writing) command.writing->close();
  const bool ok = result.value("rc", -1) == 0;
  if (command.transfer == static_cast<int>(WireCommand::Transfer::kUploadFile)) {
    if (auto failure = finish_file_upload(command, ok)) {
      result["rc"] = 1;
      result["failure"] = *failure;
    }
  }
  auto deliver = [handlers = command.handlers](const json& r) {
    if (handlers.on_complete) handlers.on_complete(r.dump());
  };
  if (command.transfer == static_cast<int>(WireCommand::Transfer::kUploadDirectory)) {
    // Unpacking may take a while: off the loop, then back.
    // The thread may outlive the engine, never the loop: it holds only the loop.
    std::string tar = command.temp_path, dest = command.master_path;
    auto finish = guarded(alive, [deliver, result](json r) mutable { deliver(r); });
    std::thread([&loop = loop, tar, dest, ok, result, finish]() mutable {
      json r = result;
      if (ok) {
        if (!unpack_tar(tar, dest)) {
          r["rc"] = 1;
          r["failure"] = "cannot unpack the uploaded directory into " + dest;
        }
      }
      std::error_code ec;
      fs::remove(tar, ec);
      loop.post([finish, r]() mutable { finish(r); });
    }).detach();
    return;
  }
  deliver(result);
}

std::optional<std::string> EngineCore::finish_file_upload(const RunningCommand& command, bool ok) {
  std::error_code ec;
  if (!ok) {
    fs::remove(command.temp_path, ec);
    return std::nullopt;
  }
  if (command.writing && command.writing->fail()) {
    fs::remove(command.temp_path, ec);
    return "cannot write '" + command.master_path + "' on the master";
  }
  fs::rename(command.temp_path, command.master_path, ec);
  if (ec) {
    fs::remove(command.temp_path, ec);
    return "cannot move the upload to '" + command.master_path + "': " + ec.message();
  }
  if (command.master_mode) {
    fs::permissions(command.master_path, static_cast<fs::perms>(*command.master_mode) & fs::perms::mask, ec);
    if (ec) return "cannot set the mode of '" + command.master_path + "': " + ec.message();
  }
  if (command.utime) {
    auto to_timespec = [](double seconds) {
      timespec t{};
      t.tv_sec = static_cast<time_t>(seconds);
      t.tv_nsec = static_cast<long>((seconds - static_cast<double>(t.tv_sec)) * 1e9);
      return t;
    };
    const timespec times[2] = {to_timespec(command.utime->first), to_timespec(command.utime->second)};
    if (::utimensat(AT_FDCWD, command.master_path.c_str(), times, 0) != 0) {
      return "cannot set the times of '" + command.master_path + "': " + std::strerror(errno);
    }
  }
  return std::nullopt;
}

void EngineCore::worker_lost(WorkerSlot& worker, const std::string& reason) {
  // The instance that refused them is gone.
  if (!worker.incompatible.empty()) {
    worker.incompatible.clear();
    schedule_start_builds();
  }
  for (Build* build : worker.builds) build->worker_lost = true;
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : commands) {
    if (c.worker == &worker) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    complete_command(id, {{"rc", -1}, {"failure", "worker lost: " + reason}, {"lost", true}});
  }
}

// ---------------------------------------------------------------------------
// Logs

uint64_t EngineCore::add_step_log(StepRun& run, const std::string& name, char type) {
  const uint64_t handle = run.next_log_handle++;
  auto log = std::make_shared<StepLog>();
  StepLog* l = log.get();
  l->writer = std::make_unique<LogWriter>(type, [this, l](std::string lines) {
    if (l->logid == 0) {
      l->queued.push_back(std::move(lines));
      return;
    }
    append_log_lines(l->logid, std::move(lines));
  });
  run.logs[handle] = log;
  // The step may finish (and its run go) before the store names the log:
  // the answer keeps the StepLog alive and sends what waited.
  const int64_t stepid = run.stepid;
  store.add_log(stepid, name, type,
                guarded(alive, [this, log, stepid, name](store::Result<int64_t> r) {
    if (!r.ok()) {
      spdlog::warn("step {}: cannot add log '{}': {}", stepid, name, r.status.message);
      return;
    }
    log->logid = r.value;
    publish("logs/" + std::to_string(log->logid) + "/new",
            {{"logid", log->logid}, {"name", name}, {"stepid", stepid}, {"complete", false}});
    auto queued = std::move(log->queued);
    log->queued.clear();
    for (auto& lines : queued) append_log_lines(log->logid, std::move(lines));
    if (log->finish_requested && !log->finished) {
      log->finished = true;
      finish_log_record(log->logid);
    }
  }));
  return handle;
}

void EngineCore::finish_step_log(StepLog& log) {
  if (log.finish_requested) return;
  log.writer->finish();
  log.finish_requested = true;
  if (log.logid != 0 && !log.finished) {
    log.finished = true;
    finish_log_record(log.logid);
  }
}

void EngineCore::append_log_lines(int64_t logid, std::string lines) {
  const size_t bytes = lines.size();
  output_throttle.queued(bytes);
  store.append_log(logid, std::move(lines),
                   guarded(alive, [this, logid, bytes](store::Result<store::LineRange> appended) {
                     output_throttle.committed(bytes);
                     if (!appended.ok()) return;
                     publish("logs/" + std::to_string(logid) + "/append",
                             {{"logid", logid}, {"first_line", appended.value.first_line},
                              {"last_line", appended.value.last_line}});
                   }));
}

void EngineCore::finish_log_record(int64_t logid) {
  store.finish_log(logid, guarded(alive, [this, logid](store::Status) {
    publish("logs/" + std::to_string(logid) + "/finished", {{"logid", logid}, {"complete", true}});
  }));
}

void EngineCore::flush_logs() {
  for (auto& [ptr, build] : builds) {
    if (!build->current) continue;
    for (auto& [handle, log] : build->current->logs) {
      if (!log->finish_requested) log->writer->flush();
    }
  }
}

// ---------------------------------------------------------------------------
// Control and status

void EngineCore::call_scheduler_control(plugin::Instance& scheduler, std::string_view action,
                                        const json& args, DataDone done) {
  const auto* vt = scheduler.vtable<kiln_scheduler_vtable>();
  if (!KILN_HAS(kiln_scheduler_vtable, vt, control) || vt->control == nullptr) {
    done(KILN_ERR_UNSUPPORTED,
         error_value("scheduler type '" + scheduler.type().type_name + "' takes no actions"));
    return;
  }
  call_control(vt->control, scheduler.handle(), action, args, std::move(done),
               "scheduler refused '" + std::string(action) + "'");
}

void EngineCore::call_control(ControlFn control, void* instance, std::string_view action,
                              const json& args, DataDone done, const std::string& refused) {
  auto holder = std::make_unique<DataDone>(std::move(done));
  const std::string text = args.dump();
  const std::string act(action);
  kiln_json_cb cb = [](void* user, kiln_status status, kiln_str json_text) {
    std::unique_ptr<DataDone> d(static_cast<DataDone*>(user));
    std::string_view text(json_text.ptr, json_text.len);
    if (status == KILN_OK) {
      (*d)(KILN_OK, json::parse(text, nullptr, false));
    } else {
      (*d)(status, error_value(std::string(text)));
    }
  };
  DataDone* raw = holder.get();
  // The plugin either answers through cb or refuses: then it never calls cb.
  kiln_status status = control(instance, to_c(act), to_c(text), cb, raw);
  if (status == KILN_OK) {
    holder.release();  // the callback owns it now
  } else {
    (*raw)(status, error_value(refused));
  }
}

void EngineCore::submit_rebuild(int64_t buildid, DataDone done) {
  store::ResultSpec spec;
  spec.filters.push_back({"buildid", store::FilterOp::kEq, {buildid}});
  store.query(store::Resource::kBuilds, spec, guarded(alive, [this, buildid, done](store::Result<json> b) {
    if (!b.ok() || b.value.empty()) {
      done(KILN_ERR_NOT_FOUND, error_value("no build " + std::to_string(buildid)));
      return;
    }
    const json build = b.value[0];
    store::ResultSpec br_spec;
    br_spec.filters.push_back({"buildrequestid", store::FilterOp::kEq, {build["buildrequestid"]}});
    br_spec.properties = {"*"};
    store.query(store::Resource::kBuildrequests, br_spec,
                guarded(alive, [this, build, done](store::Result<json> br) {
      if (!br.ok() || br.value.empty()) {
        done(KILN_ERR_NOT_FOUND, error_value("the build's request is gone"));
        return;
      }
      const json request = br.value[0];
      store::ResultSpec bs_spec;
      bs_spec.filters.push_back({"bsid", store::FilterOp::kEq, {request["buildsetid"]}});
      store.query(store::Resource::kBuildsets, bs_spec,
                  guarded(alive, [this, build, request, done](store::Result<json> bs) {
        if (!bs.ok() || bs.value.empty()) {
          done(KILN_ERR_NOT_FOUND, error_value("the build's buildset is gone"));
          return;
        }
        auto builder = builders_by_id.find(build["builderid"].get<int64_t>());
        if (builder == builders_by_id.end()) {
          done(KILN_ERR_NOT_FOUND, error_value("the build's builder is no longer configured"));
          return;
        }
        json props = json::object();
        const json request_properties = request.value("properties", json::object());
        for (const auto& [k, v] : request_properties.items()) {
          props[k] = v.is_array() && !v.empty() ? v[0] : v;
        }
        json stamps = json::array();
        for (const auto& ss : bs.value[0].value("sourcestamps", json::array())) {
          stamps.push_back({{"codebase", ss.value("codebase", "")},
                            {"repository", ss.value("repository", "")},
                            {"project", ss.value("project", "")},
                            {"branch", ss.value("branch", json())},
                            {"revision", ss.value("revision", json())}});
        }
        add_buildset({{"builders", {builder->second->config->name}},
                      {"reason", "rebuild of build " + std::to_string(build["buildid"].get<int64_t>())},
                      {"sourcestamps", stamps},
                      {"properties", props},
                      {"properties_source", "Rebuild"}},
                     "Rebuild", done);
      }));
    }));
  }));
}

namespace {

// A login check against the users of `kiln user`, for front ends such as
// the web plugin. The hash never leaves the core, and crypt(3) (tens of
// milliseconds for yescrypt) runs on the store's thread, not the loop.
// Both failures answer alike, so a caller cannot probe for usernames.
void check_user_password(util::EventLoop& on_loop, store::Store& store,
                         const std::shared_ptr<bool>& alive, const json& args, DataDone done) {
  const json username = args.value("username", json());
  const json password = args.value("password", json());
  if (!username.is_string() || !password.is_string() || username.get<std::string>().empty()) {
    done(KILN_ERR_INVALID_ARGUMENT,
         error_value("check_password takes {\"username\": \"...\", \"password\": \"...\"}"));
    return;
  }
  std::weak_ptr<bool> weak = alive;
  store.user_login(
      username.get<std::string>(),
      store::Completion<store::UserLogin>::on_store_thread(
          [&on_loop, weak, done, name = username.get<std::string>(),
           secret = password.get<std::string>()](store::Result<store::UserLogin> r) {
            const bool matches = r.ok() && store::verify_password(secret, r.value.bb_password_hash);
            json answer = matches ? json{{"uid", r.value.uid},
                                         {"identifier", r.value.identifier},
                                         {"username", name}}
                                  : json();
            on_loop.post([weak, done, matches, answer = std::move(answer)] {
              if (weak.expired()) return;
              if (matches) return done(KILN_OK, answer);
              done(KILN_ERR_NOT_FOUND, error_value("wrong username or password"));
            });
          }));
}

}  // namespace

void EngineCore::control(std::string_view path, std::string_view action, const json& args,
                         DataDone done) {
  std::string p(path);
  while (!p.empty() && p.front() == '/') p.erase(0, 1);
  auto slash = p.find('/');
  const std::string collection = p.substr(0, slash);
  const std::string id = slash == std::string::npos ? "" : p.substr(slash + 1);
  auto numeric = [&]() -> std::optional<int64_t> {
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    return std::stoll(id);
  };

  // "describe" finds the form the same way "force" finds the scheduler,
  // so a builder's page can show its force form without knowing its name.
  if (collection == "forceschedulers" && (action == "force" || action == "describe")) {
    plugin::Instance* target = nullptr;
    if (!id.empty()) {
      auto it = schedulers.find(id);
      if (it == schedulers.end()) {
        done(KILN_ERR_NOT_FOUND, error_value("no scheduler named '" + id + "'"));
        return;
      }
      target = it->second.instance.get();
    } else {
      std::string wanted;
      if (args.contains("builderNames") && args["builderNames"].is_array() &&
          !args["builderNames"].empty()) {
        wanted = args["builderNames"][0].get<std::string>();
      }
      for (auto& [name, s] : schedulers) {
        if (s.instance->type().type_name != "force") continue;
        const json builders_list = s.config->common.value("builders", json::array());
        if (wanted.empty() ||
            std::find(builders_list.begin(), builders_list.end(), wanted) != builders_list.end()) {
          target = s.instance.get();
          break;
        }
      }
      if (!target) {
        done(KILN_ERR_NOT_FOUND,
             error_value(wanted.empty() ? "no force scheduler is configured"
                                        : "no force scheduler may build '" + wanted + "'"));
        return;
      }
    }
    call_scheduler_control(*target, action, args, std::move(done));
    return;
  }
  if (collection == "schedulers" && !id.empty()) {
    auto it = schedulers.find(id);
    if (it == schedulers.end()) {
      done(KILN_ERR_NOT_FOUND, error_value("no scheduler named '" + id + "'"));
      return;
    }
    call_scheduler_control(*it->second.instance, action, args, std::move(done));
    return;
  }
  if (collection == "changesources" && action == "poll") {
    // The ABI's "poll now", for one change source or every one (`kiln poll`).
    if (!id.empty() && change_sources.count(id) == 0) {
      done(KILN_ERR_NOT_FOUND, error_value("no change source named '" + id + "'"));
      return;
    }
    json polled = json::array();
    json errors = json::object();
    for (auto& [name, slot] : change_sources) {
      if (!id.empty() && name != id) continue;
      const auto* vt = slot.instance->vtable<kiln_change_source_vtable>();
      if (!KILN_HAS(kiln_change_source_vtable, vt, poll) || vt->poll == nullptr) {
        if (!id.empty()) errors[name] = "it does not poll";
        continue;
      }
      kiln_error err;
      const kiln_status status = vt->poll(slot.instance->handle(), &err);
      if (status == KILN_OK) {
        polled.push_back(name);
      } else {
        errors[name] = err.message.empty() ? "status " + std::to_string(status) : err.message;
      }
    }
    done(KILN_OK, json{{"polled", std::move(polled)}, {"errors", std::move(errors)}});
    return;
  }
  if (collection == "builds" && numeric()) {
    const int64_t buildid = *numeric();
    if (action == "stop") {
      auto it = builds_by_id.find(buildid);
      if (it == builds_by_id.end()) {
        done(KILN_ERR_NOT_FOUND, error_value("build " + id + " is not running"));
        return;
      }
      stop_build(*it->second, args.value("reason", std::string("stopped by request")));
      done(KILN_OK, json{{"stopped", buildid}});
      return;
    }
    if (action == "rebuild") {
      submit_rebuild(buildid, std::move(done));
      return;
    }
  }
  if (collection == "buildrequests" && numeric() && action == "cancel") {
    cancel_request(*numeric(), args.value("reason", std::string("request cancelled")), std::move(done));
    return;
  }
  if (collection == "workers" && !id.empty()) {
    WorkerSlot* worker = nullptr;
    for (auto& [name, w] : workers) {
      if (name == id || (numeric() && w->workerid == *numeric())) worker = w.get();
    }
    if (!worker) {
      done(KILN_ERR_NOT_FOUND, error_value("no worker '" + id + "'"));
      return;
    }
    control_worker(*worker, action, args, std::move(done));
    return;
  }
  if (collection == "changes" && numeric() && action == "stop") {
    stop_change(*numeric(), args, std::move(done));
    return;
  }
  if (collection == "masters" && (action == "stop" || action == "shutdown") &&
      (id.empty() || (numeric() && *numeric() == masterid))) {
    request_clean_shutdown(args, std::move(done));
    return;
  }
  if (collection == "users" && id.empty() && action == "check_password") {
    check_user_password(loop, store, alive, args, std::move(done));
    return;
  }
  done(KILN_ERR_NOT_FOUND, error_value("no action '" + std::string(action) + "' on '" + p + "'"));
}


void EngineCore::cancel_request(int64_t brid, const std::string& reason, DataDone done) {
  for (auto& [ptr, build] : builds) {
    if (std::find(build->brids.begin(), build->brids.end(), brid) != build->brids.end()) {
      stop_build(*build, reason);
      done(KILN_OK, json{{"cancelled", brid}, {"build_stopped", build->buildid}});
      return;
    }
  }
  store.cancel_request(brid, static_cast<int64_t>(now_s()),
                       guarded(alive, [this, brid, done](store::Result<bool> r) {
    if (!r.ok() || !r.value) {
      done(KILN_ERR_NOT_FOUND, error_value("build request " + std::to_string(brid) +
                                           " is not pending"));
      return;
    }
    int64_t bsid = 0;
    for (auto& [name, b] : builders) {
      for (auto it = b->pending.begin(); it != b->pending.end(); ++it) {
        if (it->brid == brid) {
          bsid = it->bsid;
          b->pending.erase(it);
          break;
        }
      }
    }
    publish("buildrequests/" + std::to_string(brid) + "/cancelled",
            {{"buildrequestid", brid}, {"complete", true}, {"results", KILN_CANCELLED}});
    if (bsid) check_buildset_complete(bsid);
    done(KILN_OK, json{{"cancelled", brid}});
  }));
}

json EngineCore::status() const {
  json out = {{"builders", json::array()}, {"workers", json::array()}};
  for (const auto& [name, b] : builders) {
    json running = json::array();
    for (const Build* build : b->running) {
      running.push_back({{"number", build->number},
                         {"worker", build->worker->name},
                         {"step", build->current_step_name},
                         {"started_at", build->started_at}});
    }
    json entry = {{"name", name},
                  {"pending", b->pending.size()},
                  {"running", running},
                  {"last", b->last.value_or(json())}};
    if (!b->pending.empty() && !b->waiting_for_lock.empty()) entry["waiting_for_lock"] = b->waiting_for_lock;
    out["builders"].push_back(std::move(entry));
  }
  for (const auto& [name, w] : workers) {
    out["workers"].push_back({{"name", name},
                              {"connected", w->connected},
                              {"running", w->builds.size()},
                              {"max_builds", w->max_builds},
                              {"problem", w->problem.empty() ? json() : json(w->problem)},
                              {"latent", w->latent},
                              {"substantiating", std::count_if(w->builds.begin(), w->builds.end(),
                                                               [](const Build* b) { return b->substantiation != 0; })},
                              {"insubstantiating", w->insubstantiating},
                              {"paused", w->paused},
                              {"graceful", w->graceful},
                              {"quarantine", distribution->quarantine_of(name)}});
  }
  if (clean_shutdown) out["clean_shutdown"] = {{"running_builds", builds.size()}};
  out["locks"] = locks.status();
  out["log_backlog"] = {{"queued_bytes", output_throttle.queued_bytes()},
                        {"peak_bytes", output_throttle.peak_bytes()},
                        {"paused_workers", output_throttle.paused_workers()}};
  return out;
}

}  // namespace kiln::engine
