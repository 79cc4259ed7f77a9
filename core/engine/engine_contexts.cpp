#include "engine/engine_contexts.h"

#include "engine/engine_core.h"
#include "engine/worker_commands.h"

#include "config/diagnostic.h"
#include "config/json_schema.h"

#include <spdlog/spdlog.h>

namespace kiln::engine {

namespace {

std::string_view text_of(kiln_ctx::Bytes data) {
  return std::string_view(reinterpret_cast<const char*>(data.data()), data.size());
}

// Parses JSON handed over by a plugin; invalid text is the plugin's error.
std::optional<json> parse(std::string_view text) {
  json value = json::parse(text, nullptr, false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

// The keys of a step entry the core owns (docs/configuration.md); the rest of
// a dynamically added step goes to its plugin.
bool core_step_key(const std::string& key) {
  static const std::set<std::string> kKeys = {
      "type", "name", "description", "description_done", "halt_on_failure",
      "flunk_on_failure", "warn_on_failure", "flunk_on_warnings", "warn_on_warnings",
      "always_run", "do_step_if", "hide_step_if", "timeout", "max_time", "interrupt_signal",
      "decode_rc", "env", "workdir", "log_eval"};
  return kKeys.count(key) > 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// ComponentContext

ComponentContext::ComponentContext(EngineCore& core, kiln_component_kind kind, std::string name,
                                   json common)
    : InstanceContext(core.loop, &core.state, kind, std::move(name)),
      core_(core),
      common_(std::move(common)) {}

ComponentContext::~ComponentContext() {
  *alive_ = false;
  for (uint64_t id : subscriptions_) core_.events.unsubscribe(id);
}

void ComponentContext::context_facts(json& facts) const {
  facts["master_dir"] = core_.config.basedir.string();
  facts["master_title"] = core_.config.master.title;
  facts["master_url"] = core_.config.master.buildbot_url;
  facts["common"] = common_;
}

std::function<void(kiln_status, json)> ComponentContext::answer(JsonCallback cb) const {
  return [weak = std::weak_ptr<bool>(alive_), cb = std::move(cb)](kiln_status status, json value) {
    auto alive = weak.lock();
    if (!alive || !*alive || !cb) return;
    if (status == KILN_OK) {
      cb(status, value.dump());
    } else {
      cb(status, value.is_object() && value.contains("error") ? value["error"].get<std::string>()
                                                               : value.dump());
    }
  };
}

kiln_status ComponentContext::change_add(std::string_view change_json, JsonCallback cb) {
  auto change = parse(change_json);
  if (!change || !change->is_object()) return KILN_ERR_INVALID_ARGUMENT;
  core_.add_change(*change, answer(std::move(cb)));
  return KILN_OK;
}

kiln_status ComponentContext::buildset_add(std::string_view request_json, JsonCallback cb) {
  auto request = parse(request_json);
  if (!request || !request->is_object()) return KILN_ERR_INVALID_ARGUMENT;
  // Buildbot tags properties with the scheduler that set them.
  std::string source = "Scheduler";
  if (kind() == KILN_KIND_SCHEDULER) source = "Scheduler " + name();
  core_.add_buildset(*request, source, answer(std::move(cb)));
  return KILN_OK;
}

kiln_status ComponentContext::data_get(std::string_view path, std::string_view query_json,
                                       JsonCallback cb) {
  json query;
  if (!query_json.empty()) {
    auto q = parse(query_json);
    if (!q) return KILN_ERR_INVALID_ARGUMENT;
    query = std::move(*q);
  }
  core_.data.get(path, query, answer(std::move(cb)));
  return KILN_OK;
}

kiln_status ComponentContext::data_control(std::string_view path, std::string_view action,
                                           std::string_view args_json, JsonCallback cb) {
  json args = json::object();
  if (!args_json.empty()) {
    auto a = parse(args_json);
    if (!a) return KILN_ERR_INVALID_ARGUMENT;
    args = std::move(*a);
  }
  core_.control(path, action, args, answer(std::move(cb)));
  return KILN_OK;
}

kiln_status ComponentContext::subscribe(std::string_view pattern, EventCallback on_event,
                                        uint64_t& sub_id) {
  if (pattern.empty()) return KILN_ERR_INVALID_ARGUMENT;
  sub_id = core_.events.subscribe(
      std::string(pattern), [on_event = std::move(on_event)](const std::string& key, const json& e) {
        on_event(key, e.dump());
      });
  subscriptions_.insert(sub_id);
  return KILN_OK;
}

kiln_status ComponentContext::unsubscribe(uint64_t sub_id) {
  if (subscriptions_.erase(sub_id) == 0) return KILN_ERR_NOT_FOUND;
  core_.events.unsubscribe(sub_id);
  return KILN_OK;
}

kiln_status ComponentContext::policy_call(std::string_view policy_name, std::string_view args_json,
                                          std::string& out_json, std::string& error) {
  if (policy_name.empty()) {
    error = "policy_call needs a policy name";
    return KILN_ERR_INVALID_ARGUMENT;
  }
  if (!parse(args_json.empty() ? std::string_view("{}") : args_json)) {
    error = "policy_call: the arguments are not JSON";
    return KILN_ERR_INVALID_ARGUMENT;
  }
  kiln_status status = core_.policies->call(
      policy_name, args_json.empty() ? std::string_view("{}") : args_json, out_json, error);
  // The SDK passes no error slot (a plugin cannot make one): the message
  // would otherwise reach nobody.
  if (status != KILN_OK) log(KILN_LOG_WARN, "policy_call: " + error);
  return status;
}

// ---------------------------------------------------------------------------
// WorkerContext

WorkerContext::WorkerContext(EngineCore& core, WorkerSlot& slot, json common)
    : ComponentContext(core, KILN_KIND_WORKER, slot.name, std::move(common)), slot_(slot) {}

kiln_status WorkerContext::worker_connected(std::string_view info_json) {
  auto info = parse(info_json);
  if (!info || !info->is_object()) return KILN_ERR_INVALID_ARGUMENT;
  slot_.info = std::move(*info);
  slot_.info["name"] = slot_.name;
  slot_.connected = true;
  // A graceful shutdown ends with the disconnection: what connects now
  // takes builds again.
  if (slot_.graceful) {
    slot_.graceful = false;
    core_.save_worker_state(slot_);
  }
  core_.store.set_worker_info(slot_.workerid, slot_.info, [](store::Status) {});
  core_.store.set_worker_connected(slot_.workerid, core_.masterid, true, [](store::Status) {});
  spdlog::info("worker '{}' connected", slot_.name);
  core_.publish("workers/" + std::to_string(slot_.workerid) + "/connected",
                {{"workerid", slot_.workerid}, {"name", slot_.name}, {"workerinfo", slot_.info}});
  // A latent worker up for a build that went meanwhile still stops.
  if (slot_.latent && slot_.builds.empty()) core_.worker_idle(slot_);
  core_.schedule_start_builds();
  return KILN_OK;
}

kiln_status WorkerContext::render(std::string_view text, std::string& out, std::string& error) {
  json worker = slot_.info;
  worker["name"] = slot_.name;
  InterpolateScope scope;
  json properties;
  if (slot_.rendering_for != nullptr) {
    scope = core_.scope_for(*slot_.rendering_for);
  } else {
    properties = json::object();
    for (const auto& [k, v] : core_.config.master.properties.items()) properties[k] = json::array({v, "Master"});
    for (const auto& [k, v] : slot_.properties.items()) properties[k] = json::array({v, "Worker"});
    properties["workername"] = json::array({slot_.name, "Worker"});
    scope.properties = &properties;
  }
  scope.worker = &worker;
  auto rendered = render_interpolate(text, scope, error);
  if (!rendered) return KILN_ERR_INVALID_ARGUMENT;
  out = std::move(*rendered);
  return KILN_OK;
}

kiln_status WorkerContext::worker_disconnected(std::string_view reason) {
  if (!slot_.connected) return KILN_OK;
  slot_.connected = false;
  core_.store.set_worker_connected(slot_.workerid, core_.masterid, false, [](store::Status) {});
  spdlog::warn("worker '{}' disconnected: {}", slot_.name, reason);
  core_.worker_lost(slot_, std::string(reason));
  core_.publish("workers/" + std::to_string(slot_.workerid) + "/disconnected",
                {{"workerid", slot_.workerid}, {"name", slot_.name}});
  return KILN_OK;
}

kiln_status WorkerContext::command_output(uint64_t command_id, kiln_stream stream, Bytes data) {
  auto it = core_.commands.find(command_id);
  if (it == core_.commands.end()) return KILN_ERR_NOT_FOUND;
  if (it->second.handlers.on_output) it->second.handlers.on_output(stream, data);
  return KILN_OK;
}

kiln_status WorkerContext::output_throttle(std::function<void()> resume) {
  auto guarded_resume = [alive = std::weak_ptr<bool>(alive_), resume = std::move(resume)] {
    if (auto a = alive.lock(); a && *a) resume();
  };
  return core_.output_throttle.should_pause(std::move(guarded_resume)) ? KILN_ERR_RETRY : KILN_OK;
}

kiln_status WorkerContext::command_update(uint64_t command_id, std::string_view update_json) {
  auto it = core_.commands.find(command_id);
  if (it == core_.commands.end()) return KILN_ERR_NOT_FOUND;
  if (it->second.transfer == static_cast<int>(WireCommand::Transfer::kUploadFile)) {
    // keepstamp: the engine, which writes the master's copy, applies the times.
    if (auto update = parse(update_json); update && update->is_object()) {
      if (auto t = update->find("utime"); t != update->end() && t->is_array() && t->size() == 2 &&
                                          (*t)[0].is_number() && (*t)[1].is_number()) {
        it->second.utime = std::make_pair((*t)[0].get<double>(), (*t)[1].get<double>());
      }
    }
  }
  if (it->second.handlers.on_update) it->second.handlers.on_update(update_json);
  return KILN_OK;
}

kiln_status WorkerContext::command_complete(uint64_t command_id, std::string_view result_json) {
  if (core_.commands.find(command_id) == core_.commands.end()) return KILN_ERR_NOT_FOUND;
  auto result = parse(result_json);
  if (!result || !result->is_object()) {
    result = json{{"rc", -1}, {"failure", "the worker sent an unreadable result"}};
  }
  core_.complete_command(command_id, std::move(*result));
  return KILN_OK;
}

kiln_status WorkerContext::transfer_write(uint64_t command_id, Bytes data) {
  auto it = core_.commands.find(command_id);
  if (it == core_.commands.end() || !it->second.writing) return KILN_ERR_NOT_FOUND;
  it->second.writing->write(reinterpret_cast<const char*>(data.data()),
                            static_cast<std::streamsize>(data.size()));
  return *it->second.writing ? KILN_OK : KILN_ERR_INTERNAL;
}

kiln_status WorkerContext::transfer_read(uint64_t command_id, size_t max_len,
                                         std::vector<uint8_t>& out) {
  auto it = core_.commands.find(command_id);
  if (it == core_.commands.end() || !it->second.reading) return KILN_ERR_NOT_FOUND;
  out.resize(max_len);
  it->second.reading->read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(max_len));
  out.resize(static_cast<size_t>(it->second.reading->gcount()));
  return KILN_OK;
}

// ---------------------------------------------------------------------------
// StepContext

StepContext::StepContext(EngineCore& core, StepRun& run, std::string name, json common)
    : ComponentContext(core, KILN_KIND_STEP, std::move(name), std::move(common)), run_(run) {}

StepContext::~StepContext() = default;

void StepContext::context_facts(json& facts) const {
  ComponentContext::context_facts(facts);
  facts["builder"] = run_.build.builder->config->name;
  facts["buildid"] = run_.build.buildid;
  facts["build_number"] = run_.build.number;
  facts["step_number"] = run_.number;
  facts["step_name"] = run_.name;
  facts["worker"] = run_.build.worker->name;
}

kiln_status StepContext::render(std::string_view text, std::string& out, std::string& error) {
  auto rendered = render_interpolate(text, core_.scope_for(run_.build), error);
  if (!rendered) return KILN_ERR_INVALID_ARGUMENT;
  out = std::move(*rendered);
  return KILN_OK;
}

kiln_status StepContext::property_get(std::string_view name, std::string& out) {
  const json& props = run_.build.properties;
  auto it = props.find(std::string(name));
  if (it == props.end()) {
    out = "null";
  } else {
    out = json{{"value", (*it)[0]}, {"source", (*it)[1]}}.dump();
  }
  return KILN_OK;
}

kiln_status StepContext::property_set(std::string_view name, std::string_view value_json,
                                      std::string_view source) {
  if (auto problem = property_name_problem(name); !problem.empty()) {
    log(KILN_LOG_WARN, problem);
    return KILN_ERR_INVALID_ARGUMENT;
  }
  auto value = parse(value_json);
  if (!value) return KILN_ERR_INVALID_ARGUMENT;
  core_.set_build_property(run_.build, std::string(name), std::move(*value),
                           source.empty() ? run_.name : std::string(source));
  return KILN_OK;
}

kiln_status StepContext::command_start(std::string_view command_name, std::string_view args_json,
                                       CommandHandlers handlers, uint64_t& command_id) {
  if (run_.finished) return KILN_ERR_INVALID_ARGUMENT;
  auto args = parse(args_json.empty() ? std::string_view("{}") : args_json);
  if (!args || !args->is_object()) return KILN_ERR_INVALID_ARGUMENT;
  std::string error;
  kiln_status status = core_.start_command(run_, std::string(command_name), *args,
                                           std::move(handlers), command_id, error);
  if (status != KILN_OK) log(KILN_LOG_WARN, error);
  return status;
}

kiln_status StepContext::command_interrupt(uint64_t command_id, std::string_view reason) {
  auto it = core_.commands.find(command_id);
  if (it == core_.commands.end() || it->second.step != &run_) return KILN_ERR_NOT_FOUND;
  WorkerSlot* worker = it->second.worker;
  if (!worker->instance) return KILN_ERR_NOT_FOUND;
  const auto* vt = worker->instance->vtable<kiln_worker_vtable>();
  if (!KILN_HAS(kiln_worker_vtable, vt, command_interrupt)) return KILN_ERR_UNSUPPORTED;
  const std::string why(reason);
  return vt->command_interrupt(worker->instance->handle(), command_id,
                               kiln_str{why.data(), why.size()});
}

kiln_status StepContext::log_add(std::string_view name, char type, uint64_t& log_id) {
  if (name.empty() || run_.finished) return KILN_ERR_INVALID_ARGUMENT;
  if (type != KILN_LOG_TYPE_STDIO && type != KILN_LOG_TYPE_TEXT && type != KILN_LOG_TYPE_HTML) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  log_id = core_.add_step_log(run_, std::string(name), type);
  return KILN_OK;
}

kiln_status StepContext::log_append(uint64_t log_id, kiln_stream stream, Bytes data) {
  auto it = run_.logs.find(log_id);
  if (it == run_.logs.end() || it->second->finish_requested) return KILN_ERR_NOT_FOUND;
  it->second->writer->append(stream, text_of(data));
  return KILN_OK;
}

kiln_status StepContext::log_finish(uint64_t log_id) {
  auto it = run_.logs.find(log_id);
  if (it == run_.logs.end()) return KILN_ERR_NOT_FOUND;
  core_.finish_step_log(*it->second);
  return KILN_OK;
}

kiln_status StepContext::set_summary(std::string_view summary) {
  if (run_.stepid) {
    core_.store.set_step_state_string(run_.stepid, std::string(summary), [](store::Status) {});
  }
  return KILN_OK;
}

kiln_status StepContext::add_url(std::string_view name, std::string_view url) {
  if (name.empty()) return KILN_ERR_INVALID_ARGUMENT;
  core_.store.add_step_url(run_.stepid, std::string(name), std::string(url), [](store::Status) {});
  return KILN_OK;
}

kiln_status StepContext::set_statistic(std::string_view name, std::string_view value_json) {
  auto value = parse(value_json);
  if (name.empty() || !value) return KILN_ERR_INVALID_ARGUMENT;
  run_.statistics[std::string(name)] = std::move(*value);
  return KILN_OK;
}

kiln_status StepContext::set_progress(std::string_view, double) { return KILN_OK; }

kiln_status StepContext::add_steps(std::string_view steps_json, std::string& error) {
  auto steps = parse(steps_json);
  if (!steps || !steps->is_array()) {
    error = "add_steps expects a JSON array of step configurations";
    return KILN_ERR_INVALID_ARGUMENT;
  }
  std::vector<config::ComponentConfig> added;
  for (size_t i = 0; i < steps->size(); ++i) {
    const json& entry = (*steps)[i];
    if (!entry.is_object() || !entry.contains("type") || !entry["type"].is_string()) {
      error = "step " + std::to_string(i) + " needs a 'type'";
      return KILN_ERR_INVALID_ARGUMENT;
    }
    config::ComponentConfig step;
    step.kind = KILN_KIND_STEP;
    step.type = entry["type"].get<std::string>();
    step.name = entry.value("name", step.type);
    step.common = json::object();
    step.config = json::object();
    for (const auto& [key, value] : entry.items()) {
      if (key == "type" || key == "name") continue;
      (core_step_key(key) ? step.common : step.config)[key] = value;
    }
    const json* schema = core_.registry.schema_for(KILN_KIND_STEP, step.type);
    if (!schema) {
      error = "step " + std::to_string(i) + ": unknown step type '" + step.type + "'";
      return KILN_ERR_INVALID_ARGUMENT;
    }
    auto violations = config::validate_against_schema(*schema, step.config);
    if (!violations.empty()) {
      error = "step " + std::to_string(i) + " ('" + step.name + "'): " +
              config::pointer_to_path(violations[0].instance_pointer) + ": " +
              violations[0].message;
      return KILN_ERR_INVALID_ARGUMENT;
    }
    config::apply_schema_defaults(*schema, step.config);
    if (auto problem = core_.registry.check_with_plugin(KILN_KIND_STEP, step.type, step.config)) {
      error = "step " + std::to_string(i) + " ('" + step.name + "'): " + *problem;
      return KILN_ERR_INVALID_ARGUMENT;
    }
    added.push_back(std::move(step));
  }
  auto& list = run_.build.steps;
  list.insert(list.begin() + static_cast<long>(run_.build.next_step), added.begin(), added.end());
  return KILN_OK;
}

kiln_status StepContext::step_finish(kiln_result result, std::string_view summary) {
  if (run_.finished) return KILN_ERR_INVALID_ARGUMENT;
  if (result < KILN_SUCCESS || result > KILN_CANCELLED) return KILN_ERR_INVALID_ARGUMENT;
  core_.step_finished(run_, result, std::string(summary));
  return KILN_OK;
}

}  // namespace kiln::engine
