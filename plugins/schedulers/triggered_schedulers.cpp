// triggerable and dependent: buildsets caused by other builds.
#include "schedulers.h"

namespace kiln::schedulers {

namespace {

constexpr const char* kReasonSchema =
    R"json("reason": {"type": "string", "default": "The %(classname)s scheduler named '%(name)s' triggered this build", "description": "The buildset's reason; %(name)s and %(classname)s are replaced."})json";

// A source stamp as a trigger or an upstream buildset gives it, reduced to
// what buildset_add takes.
json stamp_for_request(const json& ss) {
  json out = json::object();
  for (const char* key : {"codebase", "repository", "project"}) {
    out[key] = ss.value(key, json()).is_string() ? ss[key] : json("");
  }
  for (const char* key : {"branch", "revision"}) {
    out[key] = ss.value(key, json()).is_string() ? ss[key] : json();
  }
  if (auto it = ss.find("changeids"); it != ss.end() && it->is_array()) out["changeids"] = *it;
  if (auto it = ss.find("patch"); it != ss.end() && it->is_object()) out["patch"] = *it;
  return out;
}

}  // namespace

const std::string& triggerable_schema() {
  static const std::string schema = std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    )json") + kReasonSchema + R"json(
  }
})json";
  return schema;
}

const std::string& dependent_schema() {
  static const std::string schema = std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["upstream"],
  "properties": {
    "upstream": {"type": "string", "minLength": 1, "description": "Name of the scheduler whose successful (SUCCESS or WARNINGS) buildsets this one follows."},
    )json") + kReasonSchema + R"json(
  }
})json";
  return schema;
}

TriggerableScheduler::TriggerableScheduler(sdk::Context ctx, const json& config)
    : Scheduler(std::move(ctx), config), id_(Identity::read(context(), "triggerable")) {
  reason_ = format_reason(config.value("reason", std::string(kDefaultReason)), id_.name, "Triggerable");
}

sdk::Status TriggerableScheduler::control(std::string_view action, const json& args, sdk::Reply reply) {
  if (action != "trigger") {
    return sdk::Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) +
                                                 "' (a triggerable scheduler answers trigger)");
  }
  json stamps = json::array();
  for (const auto& ss : args.value("sourcestamps", json::array())) {
    if (ss.is_object()) stamps.push_back(stamp_for_request(ss));
  }
  // Buildbot: the scheduler's properties, then those the trigger sets.
  json properties = id_.properties.is_object() ? id_.properties : json::object();
  const json given = args.value("properties", json::object());
  if (given.is_object()) {
    for (const auto& [name, value] : given.items()) properties[name] = value;
  }
  properties["scheduler"] = id_.name;
  json request = {{"builders", id_.builders},
                  {"reason", args.value("reason", json()).is_string() ? args["reason"].get<std::string>() : reason_},
                  {"sourcestamps", stamps},
                  {"properties", properties},
                  {"waited_for", args.value("waited_for", false)}};
  if (args.contains("parent_buildid") && args["parent_buildid"].is_number_integer()) {
    request["parent_buildid"] = args["parent_buildid"];
    request["parent_relationship"] = args.value("parent_relationship", std::string("Triggered from"));
  }
  return add_buildset(request, [reply](sdk::Result<json> result) {
    if (!result.ok()) {
      reply.fail(result.status());
      return;
    }
    reply.ok(json{{"bsid", result->value("bsid", json())}, {"brids", result->value("brids", json::object())}});
  });
}

DependentScheduler::DependentScheduler(sdk::Context ctx, const json& config)
    : Scheduler(std::move(ctx), config),
      id_(Identity::read(context(), "dependent")),
      upstream_(config.value("upstream", std::string())) {
  reason_ = format_reason(config.value("reason", std::string(kDefaultReason)), id_.name, "Dependent");
}

sdk::Status DependentScheduler::start() {
  // Which scheduler made a buildset is its "scheduler" property, so no
  // bookkeeping of upstream buildsets is needed, and one that completes
  // after a restart is still followed.
  auto sub = context().subscribe("buildsets/+/complete", [this](std::string_view, const json& event) {
    const int results = event.value("results", -1);
    if (results != KILN_SUCCESS && results != KILN_WARNINGS) return;
    upstream_complete(event.value("bsid", int64_t{0}));
  });
  return sub.ok() ? sdk::Status() : sub.status();
}

void DependentScheduler::upstream_complete(int64_t bsid) {
  if (bsid <= 0) return;
  const std::string path = "buildsets/" + std::to_string(bsid);
  context().data_get(path + "/properties", json(), [this, path, bsid](sdk::Result<json> props) {
    if (!props.ok() || !props->is_object()) return;
    const json entry = props->value("scheduler", json());
    const json scheduler = entry.is_array() && !entry.empty() ? entry[0] : entry;
    if (scheduler != json(upstream_)) return;
    context().data_get(path, json(), [this, bsid](sdk::Result<json> buildset) {
      if (!buildset.ok() || !buildset->is_object()) {
        context().warn("upstream buildset " + std::to_string(bsid) + " cannot be read: " +
                       (buildset.ok() ? std::string("not an object") : buildset.status().to_string()));
        return;
      }
      json stamps = json::array();
      for (const auto& ss : buildset->value("sourcestamps", json::array())) {
        if (ss.is_object()) stamps.push_back(stamp_for_request(ss));
      }
      json properties = id_.properties.is_object() ? id_.properties : json::object();
      properties["scheduler"] = id_.name;
      add_buildset({{"builders", id_.builders},
                    {"reason", reason_},
                    {"sourcestamps", stamps},
                    {"properties", properties}},
                   [this, bsid](sdk::Result<json> result) {
                     if (!result.ok()) {
                       context().error("cannot follow upstream buildset " + std::to_string(bsid) + ": " +
                                       result.status().to_string());
                     }
                   });
    });
  });
}

}  // namespace kiln::schedulers
