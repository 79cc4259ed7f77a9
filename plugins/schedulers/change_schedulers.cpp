// single-branch and any-branch: changes in, batched buildsets out.
#include "schedulers.h"

#include <algorithm>

namespace kiln::schedulers {

namespace {

std::string change_schema(bool any_branch) {
  std::string branch;
  if (!any_branch) {
    branch = R"json(
    "branch": {"type": ["string", "null"], "description": "The one branch built (null: the default branch). Required unless change_filter is given; combined with it when both are."},)json";
  }
  return std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {)json") +
         branch + R"json(
    "tree_stable_timer": {"type": ["number", "null"], "minimum": 0, "default": null, "description": "Seconds without new changes before a batch is built; every change restarts it. 0 or null: each important change is built at once."},
    "change_filter": )json" +
         kChangeFilterSchema + R"json(,
    "file_is_important": )json" +
         kFileIsImportantSchema + R"json(,
    "only_important": {"type": "boolean", "default": false, "description": "Drop unimportant changes instead of folding them into the next buildset."},
    "reason": {"type": "string", "default": "The %(classname)s scheduler named '%(name)s' triggered this build", "description": "The buildset's reason; %(name)s and %(classname)s are replaced."}
  }
})json";
}

}  // namespace

const std::string& single_branch_schema() {
  static const std::string schema = change_schema(false);
  return schema;
}

const std::string& any_branch_schema() {
  static const std::string schema = change_schema(true);
  return schema;
}

void KeptChanges::load(std::function<void(json entries)> done) {
  auto s = ctx_.state_get("changes", [this, done](sdk::Result<json> value) {
    if (!value.ok()) {
      ctx_.warn("cannot read the changes kept by a previous run: " + value.status().to_string());
      done(json::array());
      return;
    }
    done(value->is_array() ? *value : json::array());
  });
  if (!s.ok()) {
    // A host without state: nothing survives restarts, but changes still build.
    ctx_.warn("no persistent state: " + s.to_string());
    done(json::array());
  }
}

void KeptChanges::save() {
  if (writing_) {
    stale_ = true;
    return;
  }
  write();
}

void KeptChanges::flush() {
  if (!stale_) return;
  stale_ = false;
  auto s = ctx_.state_put("changes", snapshot_());
  if (!s.ok()) ctx_.debug("changes not saved: " + s.to_string());
}

void KeptChanges::write() {
  writing_ = true;
  stale_ = false;
  // The callback never outlives the component (the SDK drops it), and the
  // component owns this.
  auto s = ctx_.state_put("changes", snapshot_(), [this](sdk::Result<json> r) {
    if (!r.ok()) ctx_.warn("cannot save the changes not yet built: " + r.status().to_string());
    writing_ = false;
    if (stale_) write();
  });
  if (!s.ok()) {
    writing_ = false;
    ctx_.debug("changes not saved: " + s.to_string());
  }
}

ChangeScheduler::ChangeScheduler(sdk::Context ctx, const json& config, bool any_branch)
    : Scheduler(std::move(ctx), config),
      any_branch_(any_branch),
      id_(Identity::read(context(), any_branch ? "any-branch" : "single-branch")),
      filter_(ChangeFilter::make(config.value("change_filter", json()),
                                 !any_branch && config.contains("branch") ? std::optional(config["branch"])
                                                                          : std::nullopt)
                  .value()),
      importance_(Importance::make(config.value("file_is_important", json())).value()),
      store_(context(), [this] { return all_kept(); }) {
  const json timer = config.value("tree_stable_timer", json());
  if (timer.is_number()) tree_stable_ms_ = static_cast<uint64_t>(timer.get<double>() * 1000.0);
  only_important_ = config.value("only_important", false);
  reason_ = format_reason(config.value("reason", std::string(kDefaultReason)), id_.name,
                          any_branch ? "AnyBranchScheduler" : "SingleBranchScheduler");
}

sdk::Status ChangeScheduler::validate_common(const json& config, bool any_branch) {
  if (!any_branch && !config.contains("branch") && !config.value("change_filter", json()).is_object()) {
    return sdk::invalid_config(
        "single-branch needs a branch (null for the default branch) or a change_filter");
  }
  auto filter = ChangeFilter::make(config.value("change_filter", json()),
                                   !any_branch && config.contains("branch") ? std::optional(config["branch"])
                                                                            : std::nullopt);
  if (!filter) return filter.status();
  auto importance = Importance::make(config.value("file_is_important", json()));
  if (!importance) return importance.status();
  return {};
}

sdk::Status ChangeScheduler::start() {
  store_.load([this](json entries) {
    for (const auto& e : entries) {
      if (e.is_object() && e.contains("changeid")) pending_[batch_of(e)].push_back(e);
    }
    loaded_ = true;
    if (!entries.empty()) {
      context().info("resuming with " + std::to_string(entries.size()) + " change(s) not yet built");
    }
    // Batches a previous run had started waiting on wait again (or build at
    // once without a timer); unimportant-only ones keep waiting for an
    // important change.
    std::vector<std::string> batches;
    for (const auto& [batch, changes] : pending_) {
      if (std::any_of(changes.begin(), changes.end(), [](const json& c) { return c.value("important", false); })) {
        batches.push_back(batch);
      }
    }
    for (const auto& batch : batches) {
      if (tree_stable_ms_ > 0) {
        restart_timer(batch);
      } else {
        fire(batch);
      }
    }
    auto early = std::move(early_);
    early_.clear();
    for (const auto& change : early) classify(change);
  });
  return {};
}

void ChangeScheduler::stop() {
  for (const auto& [batch, id] : timers_) context().cancel_timer(id);
  timers_.clear();
  store_.flush();
}

void ChangeScheduler::on_change(const json& change) {
  if (!filter_.matches(change)) return;
  if (!loaded_) {
    early_.push_back(change);
    return;
  }
  classify(change);
}

std::string ChangeScheduler::batch_of(const json& change) const {
  if (!any_branch_) return {};
  auto text = [&](const char* key) {
    const json v = change.value(key, json());
    return v.is_string() ? v : json("");
  };
  json branch = change.value("branch", json());
  if (branch.is_string() && branch.get<std::string>().empty()) branch = nullptr;
  return json::array({text("codebase"), text("project"), text("repository"), branch}).dump();
}

void ChangeScheduler::classify(const json& change) {
  const bool important = importance_.important(context(), change);
  if (!important && only_important_) return;
  const std::string batch = batch_of(change);
  pending_[batch].push_back(kept_change(change, important));
  save();
  if (tree_stable_ms_ == 0) {
    if (important) fire(batch);
    return;
  }
  // An unimportant change does not start a wait, but it does prolong one:
  // the tree is not stable yet.
  if (!important && timers_.count(batch) == 0) return;
  restart_timer(batch);
}

void ChangeScheduler::restart_timer(const std::string& batch) {
  if (auto it = timers_.find(batch); it != timers_.end()) {
    context().cancel_timer(it->second);
    timers_.erase(it);
  }
  auto id = context().start_timer(tree_stable_ms_, [this, batch] {
    timers_.erase(batch);
    fire(batch);
  });
  if (id.ok()) {
    timers_[batch] = *id;
  } else {
    context().warn("cannot start the tree-stable timer (" + id.status().to_string() + "); building now");
    fire(batch);
  }
}

void ChangeScheduler::fire(const std::string& batch) {
  auto it = pending_.find(batch);
  if (it == pending_.end() || it->second.empty()) return;
  json changes = std::move(it->second);
  pending_.erase(it);
  std::sort(changes.begin(), changes.end(), [](const json& a, const json& b) {
    return a.value("changeid", int64_t{0}) < b.value("changeid", int64_t{0});
  });
  const uint64_t flight = next_flight_++;
  in_flight_[flight] = changes;
  const json request = buildset_for_changes(id_, reason_, changes);
  // The kept changes are forgotten only once the buildset exists: a master
  // that dies in between builds them again rather than never.
  auto s = add_buildset(request, [this, flight, batch](sdk::Result<json> result) {
    json changes = std::move(in_flight_[flight]);
    in_flight_.erase(flight);
    if (!result.ok()) {
      context().error("cannot submit a buildset: " + result.status().to_string() +
                      "; its changes wait for the next one");
      json& back = pending_[batch];
      for (auto& c : back) changes.push_back(std::move(c));
      back = std::move(changes);
      return;
    }
    context().debug("buildset " + result->value("bsid", json()).dump() + " for " +
                    std::to_string(changes.size()) + " change(s)");
    save();
  });
  if (!s.ok()) {
    context().error("cannot submit a buildset: " + s.to_string());
    json& back = pending_[batch];
    for (auto& c : back) in_flight_[flight].push_back(std::move(c));
    back = std::move(in_flight_[flight]);
    in_flight_.erase(flight);
  }
}

void ChangeScheduler::save() { store_.save(); }

json ChangeScheduler::all_kept() const {
  json all = json::array();
  for (const auto& [batch, changes] : pending_) {
    for (const auto& c : changes) all.push_back(c);
  }
  for (const auto& [flight, changes] : in_flight_) {
    for (const auto& c : changes) all.push_back(c);
  }
  return all;
}

sdk::Status ChangeScheduler::control(std::string_view action, const json& args, sdk::Reply reply) {
  (void)args;
  if (action != "describe") {
    return sdk::Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) +
                                                 "' (this scheduler answers describe)");
  }
  json pending = json::array();
  for (const auto& [batch, changes] : pending_) {
    for (const auto& c : changes) pending.push_back(c.value("changeid", json()));
  }
  for (const auto& [flight, changes] : in_flight_) {
    for (const auto& c : changes) pending.push_back(c.value("changeid", json()));
  }
  std::sort(pending.begin(), pending.end());
  reply.ok(json{{"name", id_.name}, {"pending", pending}, {"timers", timers_.size()}});
  return {};
}

}  // namespace kiln::schedulers
