#include "engine/policies.h"

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"

namespace kiln::engine {

namespace {

// A policy that calls policies that call it back would recurse forever.
constexpr int kMaxNesting = 8;

const config::ComponentConfig* configured(const config::MasterConfig& config,
                                          std::string_view name) {
  for (const auto& p : config.policies) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

Policies::Policies(EngineCore& core) : core_(core) {}

Policies::~Policies() = default;

std::string Policies::type_of(std::string_view name) const {
  if (const auto* entry = configured(core_.config, name)) return entry->type;
  if (core_.registry.find(KILN_KIND_POLICY, name)) return std::string(name);
  return {};
}

kiln_status Policies::call(std::string_view name, std::string_view args_json, std::string& out,
                           std::string& error) {
  std::string type;
  json config = json::object();
  if (const auto* entry = configured(core_.config, name)) {
    type = entry->type;
    config = entry->config;
  } else if (core_.registry.find(KILN_KIND_POLICY, name)) {
    type = std::string(name);
  } else {
    error = "no policy named '" + std::string(name) +
            "': neither a `policies:` entry of master.yaml nor a policy type";
    return KILN_ERR_NOT_FOUND;
  }
  if (depth_ >= kMaxNesting) {
    error = "policy '" + std::string(name) + "': policies call each other too deeply";
    return KILN_ERR_REFUSED;
  }

  auto it = entries_.find(name);
  // An entry in use stays as it is: a reconfig cannot happen inside a call.
  if (it == entries_.end() || (it->second->active == 0 &&
                               (it->second->type != type || it->second->config != config))) {
    const auto* policy_type = core_.registry.find(KILN_KIND_POLICY, type);
    if (!policy_type) {
      error = "policy '" + std::string(name) + "': policy type '" + type + "' is not loaded";
      return KILN_ERR_NOT_FOUND;
    }
    auto entry = std::make_shared<Entry>();
    entry->type = type;
    entry->config = config;
    entry->instance = plugin::Instance::create(
        *policy_type,
        std::make_unique<ComponentContext>(core_, KILN_KIND_POLICY, std::string(name),
                                           json::object()),
        config, error);
    if (!entry->instance) return KILN_ERR_INTERNAL;
    it = entries_.insert_or_assign(std::string(name), std::move(entry)).first;
  }

  std::shared_ptr<Entry> entry = it->second;  // held: a nested call may replace the map's
  const auto* vt = entry->instance->vtable<kiln_policy_vtable>();
  if (!KILN_HAS(kiln_policy_vtable, vt, call)) {
    error = "policy '" + std::string(name) + "' (type '" + type + "') has no call function";
    return KILN_ERR_UNSUPPORTED;
  }
  struct Answer {
    std::string text;
    bool given = false;
  } answer;
  kiln_text_cb deliver = [](void* user, kiln_str text) {
    auto* a = static_cast<Answer*>(user);
    a->text.assign(text.ptr ? text.ptr : "", text.len);
    a->given = true;
  };
  kiln_error err;
  ++entry->active;
  ++depth_;
  kiln_status status =
      vt->call(entry->instance->handle(), kiln_str{args_json.data(), args_json.size()}, deliver,
               &answer, &err);
  --depth_;
  --entry->active;
  if (status != KILN_OK) {
    error = "policy '" + std::string(name) + "' failed: " +
            (err.message.empty() ? "status " + std::to_string(status) : err.message);
    return status;
  }
  if (!answer.given) {
    error = "policy '" + std::string(name) + "' returned without an answer";
    return KILN_ERR_INTERNAL;
  }
  out = std::move(answer.text);
  return KILN_OK;
}

std::optional<json> Policies::call(std::string_view name, const json& args, std::string& error) {
  std::string text;
  if (call(name, args.dump(), text, error) != KILN_OK) return std::nullopt;
  json answer = json::parse(text, nullptr, false);
  if (answer.is_discarded()) {
    error = "policy '" + std::string(name) + "' answered with invalid JSON";
    return std::nullopt;
  }
  return answer;
}

}  // namespace kiln::engine
