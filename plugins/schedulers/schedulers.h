#pragma once
// The component classes of kiln-schedulers and their config schemas; see
// README.md for each type's keys. Every scheduler reads its core-owned keys
// (builders, properties) from ctx.info()["common"] and stamps its buildsets
// with the "scheduler" property, which is how `dependent` recognises its
// upstream's buildsets.

#include "change_filter.h"
#include "common.h"
#include "cron.h"

#include "authenticated_listener.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::schedulers {

const std::string& single_branch_schema();
const std::string& any_branch_schema();
const std::string& periodic_schema();
const std::string& nightly_schema();
const std::string& triggerable_schema();
const std::string& dependent_schema();
const std::string& trigger_schema();
const std::string& try_schema();

// The default reason of every scheduler type, formatted by format_reason.
inline constexpr const char* kDefaultReason = "The %(classname)s scheduler named '%(name)s' triggered this build";

// Changes the scheduler has seen but not yet built, kept in plugin state
// (key "changes") so that they survive a restart.
class KeptChanges {
 public:
  // `snapshot` gives what to keep now (every kept change).
  KeptChanges(const sdk::Context& ctx, std::function<json()> snapshot)
      : ctx_(ctx), snapshot_(std::move(snapshot)) {}
  // Loads what a previous run left; done() runs once, on the loop.
  void load(std::function<void(json entries)> done);
  // Writes the snapshot. While a write is in flight a call only marks the
  // state stale, and one more write of the then-current snapshot follows:
  // a burst of 10,000 changes costs a few writes, not 10,000 ever longer
  // ones.
  void save();
  // At stop: a stale snapshot is written now, since the answer to the
  // write in flight will not come to a stopped component.
  void flush();

 private:
  void write();

  const sdk::Context& ctx_;
  std::function<json()> snapshot_;
  bool writing_ = false;
  bool stale_ = false;
};

// single-branch and any-branch: Buildbot's SingleBranchScheduler and
// AnyBranchScheduler. Matching changes are classified important or not and
// kept; an important one starts (and every later one restarts) the
// tree-stable timer of its batch, whose expiry submits one buildset with
// every change of the batch. Without a timer each important change is
// built at once, together with the unimportant ones kept before it.
class ChangeScheduler : public sdk::Scheduler {
 public:
  ChangeScheduler(sdk::Context ctx, const json& config, bool any_branch);
  static sdk::Status validate_common(const json& config, bool any_branch);

  sdk::Status start() override;
  void stop() override;
  void on_change(const json& change) override;
  // "describe": {"pending": [changeids kept, in flight included], "timers": N}.
  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override;

 private:
  // The batch a change belongs to: one for single-branch; per codebase,
  // project, repository and branch for any-branch.
  std::string batch_of(const json& change) const;
  void classify(const json& change);
  void keep(const json& kept);
  void restart_timer(const std::string& batch);
  void fire(const std::string& batch);
  void save();
  json all_kept() const;

  bool any_branch_;
  Identity id_;
  ChangeFilter filter_;
  Importance importance_;
  uint64_t tree_stable_ms_ = 0;
  bool only_important_ = false;
  std::string reason_;
  KeptChanges store_;

  bool loaded_ = false;
  std::vector<json> early_;                 // changes seen before the state was read
  std::map<std::string, json> pending_;     // batch -> kept changes
  std::map<uint64_t, json> in_flight_;      // submission -> kept changes
  uint64_t next_flight_ = 1;
  std::map<std::string, uint64_t> timers_;  // batch -> timer id
};

class SingleBranchScheduler final : public ChangeScheduler {
 public:
  SingleBranchScheduler(sdk::Context ctx, const json& config) : ChangeScheduler(std::move(ctx), config, false) {}
  static sdk::Status validate(const json& config) { return validate_common(config, false); }
};

class AnyBranchScheduler final : public ChangeScheduler {
 public:
  AnyBranchScheduler(sdk::Context ctx, const json& config) : ChangeScheduler(std::move(ctx), config, true) {}
  static sdk::Status validate(const json& config) { return validate_common(config, true); }
};

// periodic and nightly: Buildbot's Timed schedulers. The last firing time is
// kept in state ("last_build"), so a restart keeps the rhythm and a firing
// missed while the master was down happens once at start.
class TimedScheduler : public sdk::Scheduler {
 public:
  TimedScheduler(sdk::Context ctx, const json& config, std::string classname);

  sdk::Status start() override;
  void stop() override;
  void on_change(const json& change) override;
  // "describe": {"next_fire_ms": N or null, "last_fire_ms": N or null}.
  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override;

 protected:
  // The next firing after the last one (nullopt: never fired before).
  virtual std::optional<uint64_t> next_fire(std::optional<uint64_t> last, uint64_t now) const = 0;
  // Nightly's only_if_changed; periodic never looks at changes.
  bool only_if_changed_ = false;
  std::optional<ChangeFilter> filter_;
  std::optional<Importance> importance_;

 private:
  void schedule();
  void fire();
  void save_changes();

  Identity id_;
  std::string reason_;
  json branch_;
  KeptChanges store_;
  bool loaded_ = false;
  std::optional<uint64_t> last_fire_;
  std::optional<uint64_t> next_fire_;
  uint64_t timer_ = 0;
  json kept_ = json::array();
  std::vector<json> early_;
};

class PeriodicScheduler final : public TimedScheduler {
 public:
  PeriodicScheduler(sdk::Context ctx, const json& config);

 protected:
  std::optional<uint64_t> next_fire(std::optional<uint64_t> last, uint64_t now) const override;

 private:
  uint64_t period_ms_;
};

class NightlyScheduler final : public TimedScheduler {
 public:
  NightlyScheduler(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

 protected:
  std::optional<uint64_t> next_fire(std::optional<uint64_t> last, uint64_t now) const override;

 private:
  CronSpec cron_;
};

// triggerable: builds only when a trigger step asks, through
// control("trigger", {sourcestamps, properties, parent_buildid,
// parent_relationship, waited_for}); answers {"bsid", "brids"}.
class TriggerableScheduler final : public sdk::Scheduler {
 public:
  TriggerableScheduler(sdk::Context ctx, const json& config);
  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override;

 private:
  Identity id_;
  std::string reason_;
};

// dependent: when a buildset of the `upstream` scheduler completes with
// SUCCESS or WARNINGS, submits one with the same source stamps.
class DependentScheduler final : public sdk::Scheduler {
 public:
  DependentScheduler(sdk::Context ctx, const json& config);
  sdk::Status start() override;

 private:
  void upstream_complete(int64_t bsid);

  Identity id_;
  std::string reason_;
  std::string upstream_;
};

// A try job as `kiln try` POSTs it: {"builders": [...], "branch",
// "baserev", "repository", "project", "codebase", "patch": {"level",
// "body", "subdir"}, "who", "comment", "properties": {...}}, checked
// field by field against the builders the scheduler may build.
struct TryJob {
  std::string error;                  // why it is refused (400), naming the field or builder
  std::vector<std::string> builders;  // all allowed ones when the job names none
  json stamp;                         // the source stamp for buildset_add, patch included
  json properties = json::object();
  std::string reason;                 // Buildbot's "'try' job by user W (comment)"
};
TryJob parse_try_job(std::string_view body, const std::vector<std::string>& allowed);

// try: Buildbot's Try_Userpass. A listener of its own (port, interface,
// userpass) takes POST /try (a TryJob; answers {"bsid", "brids"}),
// GET /buildsets/N (the state of one of its buildsets, for `kiln try
// --wait`) and GET /builders (the builders it may build).
class TryScheduler final : public sdk::Scheduler {
 public:
  TryScheduler(sdk::Context ctx, const json& config);
  ~TryScheduler() override;
  static sdk::Status validate(const json& config);
  sdk::Status start() override;
  void stop() override;

 private:
  void receive(http_listener::Request request, http_listener::Respond respond);
  void submit(TryJob job, const std::string& user, http_listener::Respond respond);
  void describe_buildset(int64_t bsid, http_listener::Respond respond);

  Identity id_;
  std::unique_ptr<http_listener::AuthenticatedListener> listener_;
};

// The trigger step: Buildbot's Trigger.
class TriggerStep final : public sdk::Step {
 public:
  TriggerStep(sdk::Context ctx, const json& config) : Step(std::move(ctx), config) {}
  static sdk::Status validate(const json& config);
  sdk::Status run() override;
  void interrupt(std::string_view reason) override;

 private:
  void with_sourcestamps(std::function<void(json stamps)> next);
  void trigger_all(json stamps);
  void triggered(const std::string& scheduler, sdk::Result<json> answer);
  void build_started(const json& event);
  void buildset_complete(const json& event);
  void maybe_finish();
  void cancel(int64_t brid);
  void add_log_line(const std::string& line);

  json info_ = json::object();
  std::string master_url_;
  bool wait_ = false;
  size_t outstanding_triggers_ = 0;
  std::map<int64_t, std::string> brids_;  // build request -> builder
  std::set<int64_t> waiting_bsids_;       // triggered, not complete yet
  std::map<int64_t, int> complete_;       // bsid -> results, possibly before its trigger answered
  std::vector<std::string> triggered_names_;
  int result_ = KILN_SUCCESS;
  bool interrupted_ = false;
  uint64_t log_ = 0;
};

}  // namespace kiln::schedulers
