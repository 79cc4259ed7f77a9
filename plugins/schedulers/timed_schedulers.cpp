// periodic and nightly: buildsets on the master's clock.
#include "schedulers.h"

#include <algorithm>

namespace kiln::schedulers {

namespace {

constexpr const char* kBranchSchema =
    R"json("branch": {"type": ["string", "null"], "default": null, "description": "The branch built (null: the default branch), at its latest revision."})json";
constexpr const char* kReasonSchema =
    R"json("reason": {"type": "string", "default": "The %(classname)s scheduler named '%(name)s' triggered this build", "description": "The buildset's reason; %(name)s and %(classname)s are replaced."})json";

// One cron field: an integer, a list of them, or "*".
std::string cron_field(const char* name, const char* default_value, const char* what) {
  return std::string("\"") + name +
         R"json(": {"type": ["integer", "array", "string"], "items": {"type": "integer"}, "default": )json" +
         default_value + R"json(, "description": ")json" + what + R"json( (an integer, a list of them, or '*' for every one)."})json";
}

}  // namespace

const std::string& periodic_schema() {
  static const std::string schema = std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["period"],
  "properties": {
    "period": {"type": "number", "minimum": 0.001, "description": "Seconds between buildsets; the first comes at start, or one period after the last one before a restart."},
    )json") + kBranchSchema + ",\n    " + kReasonSchema + R"json(
  }
})json";
  return schema;
}

const std::string& nightly_schema() {
  static const std::string schema =
      std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    )json") +
      cron_field("minute", "0", "Minute(s) of the hour, 0-59") + ",\n    " +
      cron_field("hour", "\"*\"", "Hour(s) of the day, 0-23") + ",\n    " +
      cron_field("day_of_month", "\"*\"", "Day(s) of the month, 1-31") + ",\n    " +
      cron_field("month", "\"*\"", "Month(s), 1-12") + ",\n    " +
      cron_field("day_of_week", "\"*\"", "Day(s) of the week, Monday = 0 to Sunday = 6 (Buildbot's numbering)") +
      R"json(,
    "timezone": {"enum": ["local", "UTC"], "default": "local", "description": "Whether the fields are the master's local time or UTC."},
    "only_if_changed": {"type": "boolean", "default": false, "description": "Skip a firing unless an important change (by change_filter and file_is_important) came since the last buildset; the buildset then carries those changes."},
    "change_filter": )json" +
      kChangeFilterSchema + R"json(,
    "file_is_important": )json" + kFileIsImportantSchema + ",\n    " + kBranchSchema + ",\n    " + kReasonSchema +
      R"json(
  }
})json";
  return schema;
}

TimedScheduler::TimedScheduler(sdk::Context ctx, const json& config, std::string classname)
    : Scheduler(std::move(ctx), config),
      id_(Identity::read(context(), "timed")),
      branch_(config.value("branch", json())),
      store_(context(), [this] { return kept_; }) {
  reason_ = format_reason(config.value("reason", std::string(kDefaultReason)), id_.name, classname);
}

sdk::Status TimedScheduler::start() {
  auto s = context().state_get("last_build", [this](sdk::Result<json> value) {
    if (value.ok() && value->is_number_unsigned()) last_fire_ = value->get<uint64_t>();
    if (!only_if_changed_) {
      loaded_ = true;
      schedule();
      return;
    }
    store_.load([this](json entries) {
      for (auto& e : entries) kept_.push_back(std::move(e));
      loaded_ = true;
      auto early = std::move(early_);
      early_.clear();
      for (const auto& change : early) on_change(change);
      schedule();
    });
  });
  if (!s.ok()) {
    context().warn("no persistent state (" + s.to_string() + "); starting afresh");
    loaded_ = true;
    schedule();
  }
  return {};
}

void TimedScheduler::stop() {
  if (timer_ != 0) context().cancel_timer(timer_);
  timer_ = 0;
  store_.flush();
}

void TimedScheduler::on_change(const json& change) {
  // Only only_if_changed needs to know about changes (as in Buildbot).
  if (!only_if_changed_ || !filter_ || !filter_->matches(change)) return;
  if (!loaded_) {
    early_.push_back(change);
    return;
  }
  kept_.push_back(kept_change(change, importance_->important(context(), change)));
  save_changes();
}

void TimedScheduler::save_changes() { store_.save(); }

void TimedScheduler::schedule() {
  if (timer_ != 0) context().cancel_timer(timer_);
  timer_ = 0;
  auto now = context().now_ms();
  if (!now.ok()) {
    context().error("no clock: " + now.status().to_string());
    return;
  }
  next_fire_ = next_fire(last_fire_, *now);
  if (!next_fire_) {
    context().warn("the schedule never fires");
    return;
  }
  // Firings missed while the master was down collapse into one, now.
  if (*next_fire_ < *now) next_fire_ = *now;
  const uint64_t delay = *next_fire_ - *now;
  auto id = context().start_timer(delay, [this] {
    timer_ = 0;
    fire();
  });
  if (id.ok()) {
    timer_ = *id;
  } else {
    context().error("cannot start a timer: " + id.status().to_string());
  }
}

void TimedScheduler::fire() {
  // The time it was due, not the time it ran: a late start must not shift
  // the rhythm.
  last_fire_ = next_fire_.value_or(context().now_ms().value_or(0));
  context().state_put("last_build", json(*last_fire_));

  json request;
  if (only_if_changed_) {
    const bool any_important =
        std::any_of(kept_.begin(), kept_.end(), [](const json& c) { return c.value("important", false); });
    if (!any_important) {
      context().info("no important change since the last buildset: skipped");
      schedule();
      return;
    }
    request = buildset_for_changes(id_, reason_, kept_);
    kept_ = json::array();
    save_changes();
  } else {
    json properties = id_.properties.is_object() ? id_.properties : json::object();
    properties["scheduler"] = id_.name;
    request = json{{"builders", id_.builders},
                   {"reason", reason_},
                   {"sourcestamps", json::array({json{{"codebase", ""}, {"branch", branch_}}})},
                   {"properties", properties}};
  }
  auto s = add_buildset(request, [this](sdk::Result<json> result) {
    if (!result.ok()) context().error("cannot submit a buildset: " + result.status().to_string());
  });
  if (!s.ok()) context().error("cannot submit a buildset: " + s.to_string());
  schedule();
}

sdk::Status TimedScheduler::control(std::string_view action, const json& args, sdk::Reply reply) {
  (void)args;
  if (action != "describe") {
    return sdk::Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) +
                                                 "' (this scheduler answers describe)");
  }
  reply.ok(json{{"name", id_.name},
                {"next_fire_ms", next_fire_ ? json(*next_fire_) : json()},
                {"last_fire_ms", last_fire_ ? json(*last_fire_) : json()},
                {"kept_changes", kept_.size()}});
  return {};
}

PeriodicScheduler::PeriodicScheduler(sdk::Context ctx, const json& config)
    : TimedScheduler(std::move(ctx), config, "Periodic"),
      period_ms_(static_cast<uint64_t>(config.value("period", 1.0) * 1000.0)) {
  if (period_ms_ == 0) period_ms_ = 1;
}

std::optional<uint64_t> PeriodicScheduler::next_fire(std::optional<uint64_t> last, uint64_t now) const {
  // Buildbot: at once the first time, else one period after the last.
  if (!last) return now;
  return *last + period_ms_;
}

NightlyScheduler::NightlyScheduler(sdk::Context ctx, const json& config)
    : TimedScheduler(std::move(ctx), config, "Nightly"), cron_(CronSpec::make(config).value()) {
  only_if_changed_ = config.value("only_if_changed", false);
  if (only_if_changed_) {
    // Buildbot's Timed: the change_filter when given, else the branch built.
    const json change_filter = config.value("change_filter", json());
    filter_ = ChangeFilter::make(change_filter, change_filter.is_object()
                                                    ? std::nullopt
                                                    : std::optional(config.value("branch", json())))
                  .value();
    importance_ = Importance::make(config.value("file_is_important", json())).value();
  }
}

sdk::Status NightlyScheduler::validate(const json& config) {
  auto cron = CronSpec::make(config);
  if (!cron) return cron.status();
  // A schedule like the 30th of February would never fire: say so now.
  if (!cron->next_after(0)) return sdk::invalid_config("these cron fields never match a date");
  auto filter = ChangeFilter::make(config.value("change_filter", json()));
  if (!filter) return filter.status();
  auto importance = Importance::make(config.value("file_is_important", json()));
  if (!importance) return importance.status();
  return {};
}

std::optional<uint64_t> NightlyScheduler::next_fire(std::optional<uint64_t> last, uint64_t now) const {
  // From the last firing, so one missed while the master was down is
  // noticed (schedule() then fires it at once), as Buildbot's Timed does.
  return cron_.next_after(last.value_or(now));
}

}  // namespace kiln::schedulers
