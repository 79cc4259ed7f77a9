// The trigger step (Buildbot's Trigger): asks triggerable schedulers for
// buildsets with this build's source, and optionally waits for them.
#include "schedulers.h"

namespace kiln::schedulers {

const std::string& trigger_schema() {
  static const std::string schema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["schedulers"],
  "properties": {
    "schedulers": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Names of the triggerable schedulers to trigger."},
    "wait_for_finish": {"type": "boolean", "default": false, "description": "Wait until every triggered buildset completes; the step's result is then the worst of theirs."},
    "update_sourcestamp": {"type": "boolean", "default": false, "description": "Use the got_revision property (a string for the default codebase, or {codebase: revision}) as the triggered builds' revision."},
    "always_use_latest": {"type": "boolean", "default": false, "description": "Trigger the latest revision of the build's branches (no revision, no patch)."},
    "set_properties": {"type": "object", "default": {}, "description": "Properties given to the triggered builds (rendered: %(prop:x)s works)."},
    "copy_properties": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Names of this build's properties copied to the triggered builds (set_properties wins on a clash)."},
    "parent_relationship": {"type": "string", "default": "Triggered from", "description": "How the triggered buildsets name their relation to this build."}
  }
})json";
  return schema;
}

sdk::Status TriggerStep::validate(const json& config) {
  if (config.value("schedulers", json::array()).empty()) {
    return sdk::invalid_config("schedulers: name at least one triggerable scheduler");
  }
  if (config.value("update_sourcestamp", false) && config.value("always_use_latest", false)) {
    return sdk::invalid_config("update_sourcestamp and always_use_latest exclude each other");
  }
  return {};
}

sdk::Status TriggerStep::run() {
  if (auto info = context().info(); info.ok() && info->is_object()) info_ = *info;
  master_url_ = info_.value("master_url", std::string());
  if (!master_url_.empty() && master_url_.back() != '/') master_url_ += '/';
  wait_ = config().value("wait_for_finish", false);

  // Subscribed before anything is triggered, so no completion can slip by.
  auto started = context().subscribe("builds/+/new", [this](std::string_view, const json& e) { build_started(e); });
  if (!started.ok()) return started.status();
  if (wait_) {
    auto complete = context().subscribe("buildsets/+/complete",
                                        [this](std::string_view, const json& e) { buildset_complete(e); });
    if (!complete.ok()) return complete.status();
  }
  set_summary("triggering");
  with_sourcestamps([this](json stamps) { trigger_all(std::move(stamps)); });
  return {};
}

void TriggerStep::with_sourcestamps(std::function<void(json stamps)> next) {
  // The build's source stamps are its buildset's: build -> request ->
  // buildset. A host that cannot say falls back to the build's branch and
  // revision properties (the first codebase's).
  auto fallback = [this, next] {
    json ss = json::object();
    for (const char* key : {"codebase", "repository", "project", "branch", "revision"}) {
      auto value = property(key);
      ss[key] = value.ok() ? *value : json();
    }
    next(json::array({ss}));
  };
  const json buildid = info_.value("buildid", json());
  if (!buildid.is_number_integer()) return fallback();
  auto s = context().data_get("builds/" + buildid.dump(), json(), [this, next, fallback](sdk::Result<json> build) {
    if (!build.ok() || !build->contains("buildrequestid")) return fallback();
    context().data_get("buildrequests/" + (*build)["buildrequestid"].dump(), json(),
                       [this, next, fallback](sdk::Result<json> request) {
                         if (!request.ok() || !request->contains("buildsetid")) return fallback();
                         context().data_get("buildsets/" + (*request)["buildsetid"].dump(), json(),
                                            [next, fallback](sdk::Result<json> buildset) {
                                              if (!buildset.ok() || !buildset->contains("sourcestamps")) {
                                                return fallback();
                                              }
                                              next((*buildset)["sourcestamps"]);
                                            });
                       });
  });
  if (!s.ok()) fallback();
}

void TriggerStep::trigger_all(json stamps) {
  if (interrupted_ || finished()) return;
  const bool latest = config().value("always_use_latest", false);
  json got = json::object();
  if (config().value("update_sourcestamp", false)) {
    auto value = property("got_revision");
    // Buildbot: a plain got_revision belongs to the default codebase.
    if (value.ok() && value->is_object()) got = *value;
    if (value.ok() && value->is_string()) got = json{{"", *value}};
  }
  json sourcestamps = json::array();
  for (const auto& ss : stamps) {
    if (!ss.is_object()) continue;
    json out = json::object();
    for (const char* key : {"codebase", "repository", "project", "branch", "revision"}) {
      out[key] = ss.value(key, json());
    }
    const std::string codebase = out["codebase"].is_string() ? out["codebase"].get<std::string>() : "";
    if (latest) {
      out["revision"] = nullptr;
    } else {
      if (ss.contains("patch") && ss["patch"].is_object()) out["patch"] = ss["patch"];
      if (got.contains(codebase) && got[codebase].is_string()) out["revision"] = got[codebase];
    }
    sourcestamps.push_back(std::move(out));
  }

  json properties = json::object();
  for (const auto& name : string_list(config().value("copy_properties", json::array()))) {
    auto value = property(name);
    if (value.ok() && !value->is_null()) properties[name] = *value;
  }
  const json set_properties = config().value("set_properties", json::object());
  for (const auto& [name, value] : set_properties.items()) properties[name] = value;

  json args = {{"sourcestamps", sourcestamps},
               {"properties", properties},
               {"waited_for", wait_},
               {"parent_relationship", config().value("parent_relationship", std::string("Triggered from"))}};
  if (info_.contains("buildid")) args["parent_buildid"] = info_["buildid"];

  const auto names = string_list(config().value("schedulers", json::array()));
  outstanding_triggers_ = names.size();
  for (const auto& name : names) {
    auto s = context().data_control("schedulers/" + name, "trigger", args,
                                    [this, name](sdk::Result<json> answer) { triggered(name, std::move(answer)); });
    if (!s.ok()) triggered(name, s);
  }
}

void TriggerStep::triggered(const std::string& scheduler, sdk::Result<json> answer) {
  if (outstanding_triggers_ > 0) --outstanding_triggers_;
  if (!answer.ok() || !answer->is_object() || !answer->value("bsid", json()).is_number_integer()) {
    add_log_line("cannot trigger scheduler '" + scheduler + "': " +
                 (answer.ok() ? "it answered " + answer->dump() : answer.status().message()));
    result_ = worst_result(result_, KILN_EXCEPTION);
    maybe_finish();
    return;
  }
  const int64_t bsid = (*answer)["bsid"].get<int64_t>();
  triggered_names_.push_back(scheduler);
  add_log_line("triggered '" + scheduler + "': buildset " + std::to_string(bsid));
  const json brids = answer->value("brids", json::object());
  for (const auto& [builder, brid] : brids.items()) {
    if (!brid.is_number_integer()) continue;
    brids_[brid.get<int64_t>()] = builder;
    if (interrupted_) {
      cancel(brid.get<int64_t>());
    } else if (!wait_) {
      add_url(builder + " request #" + brid.dump(), master_url_ + "#/buildrequests/" + brid.dump());
    }
  }
  if (wait_) {
    if (auto done = complete_.find(bsid); done != complete_.end()) {
      result_ = worst_result(result_, done->second);
    } else {
      waiting_bsids_.insert(bsid);
    }
  }
  maybe_finish();
}

void TriggerStep::build_started(const json& event) {
  const json brid = event.value("buildrequestid", json());
  if (!brid.is_number_integer() || finished()) return;
  auto it = brids_.find(brid.get<int64_t>());
  if (it == brids_.end()) return;
  const std::string number = event.value("number", json()).dump();
  add_url(it->second + " #" + number,
          master_url_ + "#/builders/" + event.value("builderid", json()).dump() + "/builds/" + number);
}

void TriggerStep::buildset_complete(const json& event) {
  const json bsid_value = event.value("bsid", json());
  if (!bsid_value.is_number_integer()) return;
  const int64_t bsid = bsid_value.get<int64_t>();
  const int results = event.value("results", static_cast<int>(KILN_EXCEPTION));
  if (waiting_bsids_.erase(bsid) > 0) {
    result_ = worst_result(result_, results);
    maybe_finish();
  } else if (outstanding_triggers_ > 0) {
    // May be ours, completing before its trigger's answer came.
    complete_[bsid] = results;
  }
}

void TriggerStep::maybe_finish() {
  if (finished() || outstanding_triggers_ > 0) return;
  if (interrupted_) {
    finish(KILN_CANCELLED, "interrupted");
    return;
  }
  if (wait_ && !waiting_bsids_.empty()) {
    set_summary("waiting for " + std::to_string(waiting_bsids_.size()) + " buildset(s)");
    return;
  }
  std::string names;
  for (const auto& n : triggered_names_) names += (names.empty() ? "" : ", ") + n;
  std::string summary = names.empty() ? "triggered nothing" : "triggered " + names;
  if (result_ != KILN_SUCCESS) {
    static const char* const kWords[] = {"success", "warnings", "failure", "skipped",
                                         "exception", "retry", "cancelled"};
    if (result_ >= 0 && result_ <= 6) summary += std::string(" (") + kWords[result_] + ")";
  }
  finish(static_cast<kiln_result>(result_), summary);
}

void TriggerStep::interrupt(std::string_view reason) {
  if (finished() || interrupted_) return;
  interrupted_ = true;
  add_log_line("interrupted: " + std::string(reason));
  // As Buildbot: cancelling a request stops its build if it runs already.
  for (const auto& [brid, builder] : brids_) cancel(brid);
  // Answers still on their way would name requests to cancel too.
  maybe_finish();
}

void TriggerStep::cancel(int64_t brid) {
  // The host wants a callback even when the answer does not matter.
  context().data_control("buildrequests/" + std::to_string(brid), "cancel",
                         {{"reason", "parent build was interrupted"}}, [](sdk::Result<json>) {});
}

void TriggerStep::add_log_line(const std::string& line) {
  if (log_ == 0) {
    auto id = add_log("trigger", KILN_LOG_TYPE_TEXT);
    if (!id.ok()) return;
    log_ = *id;
  }
  append_log(log_, line + "\n");
}

}  // namespace kiln::schedulers
