#include "engine/build_distribution.h"

#include "engine/engine_contexts.h"
#include "engine/engine_core.h"
#include "engine/policies.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <deque>
#include <random>

namespace kiln::engine {

namespace {

// Requests read back from the store (at start-up, after a reconfig) have no
// sources in memory yet; a builder loads them this many at a time, from the
// head of its queue, before it collapses.
constexpr size_t kSourceWindow = 200;

json optional_json(const std::optional<std::string>& s) { return s ? json(*s) : json(); }

std::optional<std::string> optional_string(const json& j, const char* key) {
  if (j.contains(key) && j[key].is_string()) return j[key].get<std::string>();
  return std::nullopt;
}

void finish_source(RequestSource& source) {
  for (const auto& ss : source.stamps) {
    if (!ss.patch.is_null()) source.patched = true;
    source.key[ss.codebase] = {ss.repository, ss.branch, ss.project};
  }
}

json stamp_json(const StampInfo& ss) {
  return {{"codebase", ss.codebase},   {"repository", ss.repository},
          {"project", ss.project},     {"branch", optional_json(ss.branch)},
          {"revision", optional_json(ss.revision)}, {"patch", ss.patch},
          {"changeids", ss.changeids}};
}

// Sort key of a request's age: the newest is the greatest.
std::pair<int64_t, int64_t> age_key(const PendingRequest& r) { return {r.submitted_at, r.brid}; }

}  // namespace

std::shared_ptr<const RequestSource> request_source(
    const std::vector<store::SourceStampSpec>& stamps, std::string reason) {
  auto source = std::make_shared<RequestSource>();
  source->reason = std::move(reason);
  for (const auto& spec : stamps) {
    StampInfo ss;
    ss.codebase = spec.codebase;
    ss.repository = spec.repository;
    ss.project = spec.project;
    ss.branch = spec.branch;
    ss.revision = spec.revision;
    ss.changeids = spec.changeids;
    if (spec.patch) {
      ss.patch = {{"level", spec.patch->level},
                  {"subdir", optional_json(spec.patch->subdir)},
                  {"author", spec.patch->author},
                  {"comment", spec.patch->comment}};
    }
    source->stamps.push_back(std::move(ss));
  }
  finish_source(*source);
  return source;
}

std::shared_ptr<const RequestSource> request_source(const json& buildset) {
  auto source = std::make_shared<RequestSource>();
  source->reason = buildset.value("reason", json()).is_string() ? buildset["reason"].get<std::string>() : "";
  for (const auto& row : buildset.value("sourcestamps", json::array())) {
    StampInfo ss;
    ss.codebase = row.value("codebase", "");
    ss.repository = row.value("repository", "");
    ss.project = row.value("project", "");
    ss.branch = optional_string(row, "branch");
    ss.revision = optional_string(row, "revision");
    ss.patch = row.value("patch", json());
    // The diff itself is no business of a policy, and may be large.
    if (ss.patch.is_object()) ss.patch.erase("body");
    source->stamps.push_back(std::move(ss));
  }
  finish_source(*source);
  return source;
}

bool same_source(const RequestSource& a, const RequestSource& b) {
  if (a.unknown || b.unknown || a.patched || b.patched) return false;
  return &a == &b || a.key == b.key;
}

BuildDistribution::~BuildDistribution() {
  for (auto& [key, q] : quarantine_) {
    if (q.timer) core_.loop.cancel_timer(q.timer);
  }
}

BuildDistribution::Choice BuildDistribution::resolve(const std::optional<std::string>& name,
                                                     std::string_view builtin_type) const {
  if (!name) return {};
  // A policy that is the built-in itself runs natively too.
  if (!builtin_type.empty() && core_.policies->type_of(*name) == builtin_type) return {};
  return {&*name};
}

// ---------------------------------------------------------------------------
// A pass

void BuildDistribution::start_builds() {
  for (BuilderSlot* builder : builder_order()) serve(*builder);
}

std::vector<BuilderSlot*> BuildDistribution::builder_order() {
  std::vector<std::pair<int64_t, BuilderSlot*>> waiting;
  for (auto& [name, b] : core_.builders) {
    if (b->pending.empty()) continue;
    int64_t oldest = INT64_MAX;
    for (const auto& p : b->pending) oldest = std::min(oldest, p.submitted_at);
    waiting.emplace_back(oldest, b.get());
  }
  // Built-in: builders whose oldest request is oldest go first, ties by name
  // (the map's order).
  std::stable_sort(waiting.begin(), waiting.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<BuilderSlot*> order;
  for (const auto& [t, b] : waiting) order.push_back(b);

  Choice policy = resolve(core_.config.master.prioritize_builders, "oldest-request-first");
  if (policy.native() || order.size() < 2) return order;
  json builders = json::array();
  for (const auto& [t, b] : waiting) {
    json entry = builder_json(*b);
    entry["oldest_request_time"] = t;
    entry["pending"] = b->pending.size();
    entry["running"] = b->running.size();
    builders.push_back(std::move(entry));
  }
  auto answer = ask(*policy.name, "prioritize_builders", {{"builders", builders}});
  if (!answer) return order;
  if (!answer->is_array()) {
    ask_failed(*policy.name, "prioritize_builders", "expected an array of builder names");
    return order;
  }
  // The policy may leave builders out: they wait for the next pass.
  std::vector<BuilderSlot*> chosen;
  for (const auto& name : *answer) {
    if (!name.is_string()) continue;
    auto it = core_.builders.find(name.get<std::string>());
    if (it == core_.builders.end() || it->second->pending.empty()) continue;
    if (std::find(chosen.begin(), chosen.end(), it->second.get()) == chosen.end()) {
      chosen.push_back(it->second.get());
    }
  }
  return chosen;
}

void BuildDistribution::serve(BuilderSlot& builder) {
  const config::BuilderConfig& bc = *builder.config;
  const Choice build_policy = resolve(bc.next_build, "oldest-build-first");
  // Unset keeps Kiln's least-busy choice; "random-worker" is Buildbot's.
  const Choice worker_policy = resolve(bc.next_worker, "");
  const Choice start_policy = resolve(bc.can_start_build, "always-start");
  const bool collapse = bc.collapse_requests.value_or(core_.config.master.collapse_requests);
  const bool wants_sources = collapse || !build_policy.native() || !worker_policy.native() ||
                             !start_policy.native();
  if (wants_sources && !sources_ready(builder)) return;

  while (!builder.pending.empty()) {
    std::vector<WorkerSlot*> candidates = available_workers(builder);
    if (candidates.empty()) return;
    auto index = next_request(builder, build_policy);
    if (!index) return;
    const PendingRequest& request = builder.pending[*index];
    WorkerSlot* worker = nullptr;
    std::unique_ptr<LockClaim> locks;
    builder.waiting_for_lock.clear();
    while (!candidates.empty()) {
      WorkerSlot* w = next_worker(builder, worker_policy, candidates, request);
      if (!w) break;
      candidates.erase(std::find(candidates.begin(), candidates.end(), w));
      if (!can_start(builder, start_policy, *w, request)) {
        quarantine(*w, builder);
        continue;
      }
      // Busy locks are no fault of the worker: no quarantine; a release
      // brings the builder round again. A worker lock may be free elsewhere.
      if (!bc.locks.empty() && !(locks = core_.locks.try_take(bc.locks, w->name, &builder.waiting_for_lock))) continue;
      worker = w;
      builder.waiting_for_lock.clear();
      break;
    }
    if (!worker) return;
    core_.start_build(builder, *worker, take_requests(builder, *index), std::move(locks));
  }
}

std::vector<WorkerSlot*> BuildDistribution::available_workers(const BuilderSlot& builder) const {
  std::vector<WorkerSlot*> out;
  for (const auto& name : builder.config->workers) {
    auto it = core_.workers.find(name);
    if (it == core_.workers.end()) continue;
    WorkerSlot* w = it->second.get();
    if (static_cast<int>(w->builds.size()) >= w->max_builds) continue;
    if (w->paused || w->graceful) continue;  // control actions (worker_control.cpp)
    // A latent worker that is down is started for the build.
    if (!w->connected && !w->latent) continue;
    if (w->latent && (w->insubstantiating || !w->instance || !w->problem.empty() ||
                      w->incompatible.count(builder.config->name))) {
      continue;
    }
    if (!quarantine_.empty() && quarantined(*w, builder)) continue;
    out.push_back(w);
  }
  return out;
}

std::optional<size_t> BuildDistribution::next_request(BuilderSlot& builder, Choice policy) {
  // The queue is kept in priority, then age, order: the built-in's choice is
  // its head.
  if (policy.native()) return 0;
  json requests = json::array();
  for (const auto& r : builder.pending) requests.push_back(request_json(builder, r));
  auto answer = ask(*policy.name, "next_build",
                    {{"builder", builder_json(builder)}, {"requests", std::move(requests)}});
  if (!answer) return 0;
  if (answer->is_null()) return std::nullopt;  // nothing now
  if (answer->is_object() && answer->contains("buildrequestid")) answer = (*answer)["buildrequestid"];
  if (answer->is_number_integer()) {
    const int64_t brid = answer->get<int64_t>();
    for (size_t i = 0; i < builder.pending.size(); ++i) {
      if (builder.pending[i].brid == brid) return i;
    }
  }
  ask_failed(*policy.name, "next_build", "answered " + answer->dump() + ", not a pending buildrequestid");
  return 0;
}

WorkerSlot* BuildDistribution::next_worker(BuilderSlot& builder, Choice policy,
                                           const std::vector<WorkerSlot*>& candidates,
                                           const PendingRequest& request) {
  auto least_busy = [&] {
    WorkerSlot* best = nullptr;
    for (WorkerSlot* w : candidates) {
      if (!best || w->builds.size() < best->builds.size()) best = w;
    }
    return best;
  };
  if (policy.native()) return least_busy();
  if (core_.policies->type_of(*policy.name) == "random-worker") {
    static std::mt19937 rng{std::random_device{}()};
    return candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng)];
  }
  json workers = json::array();
  for (const WorkerSlot* w : candidates) {
    workers.push_back({{"name", w->name},
                       {"workerid", w->workerid},
                       {"running", w->builds.size()},
                       {"max_builds", w->max_builds},
                       {"properties", w->properties}});
  }
  auto answer = ask(*policy.name, "next_worker",
                    {{"builder", builder_json(builder)},
                     {"workers", std::move(workers)},
                     {"request", request_json(builder, request)}});
  if (!answer) return least_busy();
  if (answer->is_null()) return nullptr;
  const json name = answer->is_object() ? answer->value("name", json()) : *answer;
  if (name.is_string()) {
    for (WorkerSlot* w : candidates) {
      if (w->name == name.get<std::string>()) return w;
    }
  }
  ask_failed(*policy.name, "next_worker", "answered " + answer->dump() + ", not one of the workers offered");
  return least_busy();
}

bool BuildDistribution::can_start(BuilderSlot& builder, Choice policy, WorkerSlot& worker,
                                  const PendingRequest& request) {
  if (policy.native()) return true;
  auto answer = ask(*policy.name, "can_start_build",
                    {{"builder", builder_json(builder)},
                     {"worker", {{"name", worker.name},
                                 {"workerid", worker.workerid},
                                 {"running", worker.builds.size()},
                                 {"max_builds", worker.max_builds},
                                 {"properties", worker.properties},
                                 {"info", worker.info}}},
                     {"request", request_json(builder, request)}});
  // A broken policy must not stop every build: it counts as a yes.
  const bool yes = !answer || !answer->is_boolean() || answer->get<bool>();
  if (answer && !answer->is_boolean()) {
    ask_failed(*policy.name, "can_start_build", "answered " + answer->dump() + ", not true or false");
  }
  if (yes) release(worker, builder);
  return yes;
}

std::vector<PendingRequest> BuildDistribution::take_requests(BuilderSlot& builder, size_t index) {
  auto& pending = builder.pending;
  std::vector<PendingRequest> taken{pending[index]};
  const bool collapse =
      builder.config->collapse_requests.value_or(core_.config.master.collapse_requests);
  const PendingRequest& primary = pending[index];
  std::vector<size_t> merged;
  if (collapse && pending.size() > 1 && primary.source && !primary.source->unknown &&
      !primary.source->patched) {
    const Choice policy =
        resolve(core_.config.master.collapse_requests_policy, "collapse-same-source");
    json args;
    if (!policy.native()) {
      args = {{"builder", builder_json(builder)}, {"request1", request_json(builder, primary)}};
    }
    for (size_t i = 0; i < pending.size(); ++i) {
      const PendingRequest& other = pending[i];
      // Patches never collapse, whatever a policy says.
      if (i == index || !other.source || other.source->unknown || other.source->patched) continue;
      bool yes = false;
      if (policy.native()) {
        yes = same_source(*primary.source, *other.source);
      } else {
        args["request2"] = request_json(builder, other);
        auto answer = ask(*policy.name, "collapse_requests", args);
        yes = answer && answer->is_boolean() && answer->get<bool>();
      }
      if (yes) merged.push_back(i);
    }
  }
  if (merged.empty()) {
    pending.erase(pending.begin() + static_cast<long>(index));
    return taken;
  }
  for (size_t i : merged) taken.push_back(pending[i]);
  merged.push_back(index);
  std::sort(merged.begin(), merged.end());
  std::deque<PendingRequest> rest;
  for (size_t i = 0, m = 0; i < pending.size(); ++i) {
    if (m < merged.size() && merged[m] == i) {
      ++m;
      continue;
    }
    rest.push_back(std::move(pending[i]));
  }
  pending = std::move(rest);
  return taken;
}

// ---------------------------------------------------------------------------
// Sources of requests read back from the store

bool BuildDistribution::sources_ready(BuilderSlot& builder) {
  if (loading_.count(builder.builderid)) return false;
  std::vector<json> missing;
  const size_t window = std::min(builder.pending.size(), kSourceWindow);
  for (size_t i = 0; i < window; ++i) {
    const auto& p = builder.pending[i];
    if (!p.source) missing.push_back(p.bsid);
  }
  if (missing.empty()) return true;
  loading_.insert(builder.builderid);
  std::set<int64_t> wanted;
  for (const auto& id : missing) wanted.insert(id.get<int64_t>());
  store::ResultSpec spec;
  spec.filters.push_back({"bsid", store::FilterOp::kEq, std::move(missing)});
  const int64_t builderid = builder.builderid;
  core_.store.query(
      store::Resource::kBuildsets, spec,
      guarded(core_.alive, [this, builderid, wanted](store::Result<json> r) {
        loading_.erase(builderid);
        std::map<int64_t, std::shared_ptr<const RequestSource>> found;
        if (r.ok()) {
          for (const auto& bs : r.value) found[bs.value("bsid", int64_t{0})] = request_source(bs);
        } else {
          spdlog::warn("cannot read pending buildsets; their requests will not collapse: {}",
                       r.status.message);
        }
        auto unknown = std::make_shared<RequestSource>();
        unknown->unknown = true;
        for (int64_t bsid : wanted) found.try_emplace(bsid, unknown);
        for (auto& [name, b] : core_.builders) {
          for (auto& p : b->pending) {
            if (p.source) continue;
            if (auto it = found.find(p.bsid); it != found.end()) p.source = it->second;
          }
        }
        core_.schedule_start_builds();
      }));
  return false;
}

// ---------------------------------------------------------------------------
// Starting builds

void BuildDistribution::requeue(BuilderSlot& builder, const std::vector<PendingRequest>& requests) {
  auto& pending = builder.pending;
  for (auto r = requests.rbegin(); r != requests.rend(); ++r) {
    auto pos = std::find_if(pending.begin(), pending.end(),
                            [&](const PendingRequest& p) { return p.priority <= r->priority; });
    pending.insert(pos, *r);
  }
}

void BuildDistribution::keep_claimed(Build& build, const std::vector<int64_t>& claimed) {
  std::vector<PendingRequest> kept;
  for (auto& r : build.requests) {
    if (std::find(claimed.begin(), claimed.end(), r.brid) != claimed.end()) kept.push_back(r);
  }
  build.requests = std::move(kept);
  build.brids.clear();
  for (const auto& r : build.requests) build.brids.push_back(r.brid);
  if (!build.requests.empty()) build.bsid = build.requests.front().bsid;
}

void BuildDistribution::load_build_inputs(Build& build,
                                          std::function<void(json request, json buildset)> done) {
  std::vector<json> brids, bsids;
  for (const auto& r : build.requests) {
    brids.push_back(r.brid);
    if (std::find(bsids.begin(), bsids.end(), json(r.bsid)) == bsids.end()) bsids.push_back(r.bsid);
  }
  store::ResultSpec br_spec;
  br_spec.filters.push_back({"buildrequestid", store::FilterOp::kEq, std::move(brids)});
  br_spec.properties = {"*"};
  store::ResultSpec bs_spec;
  bs_spec.filters.push_back({"bsid", store::FilterOp::kEq, std::move(bsids)});
  Build* b = &build;
  // Both reads are queued at once, so the store runs them in one batch;
  // completions come in call order, so the requests are in by the time the
  // buildsets arrive.
  auto requests = std::make_shared<store::Result<json>>();
  core_.store.query(store::Resource::kBuildrequests, br_spec,
                    [requests](store::Result<json> br) { *requests = std::move(br); });
  core_.store.query(
      store::Resource::kBuildsets, bs_spec,
      guarded(core_.alive, [b, requests, done](store::Result<json> bs) {
        const store::Result<json>& br = *requests;
        std::map<int64_t, json> request_rows, buildset_rows;
        if (br.ok()) {
          for (const auto& row : br.value) request_rows[row.value("buildrequestid", int64_t{0})] = row;
        }
        if (bs.ok()) {
          for (const auto& row : bs.value) buildset_rows[row.value("bsid", int64_t{0})] = row;
        }
        const PendingRequest& primary = b->requests.front();
        json request = request_rows.count(primary.brid) ? request_rows[primary.brid] : json::object();
        json buildset = buildset_rows.count(primary.bsid) ? buildset_rows[primary.bsid] : json::object();
        if (b->requests.size() > 1) {
          // Oldest first, so that the newest request's values win.
          std::vector<const PendingRequest*> by_age;
          for (const auto& r : b->requests) by_age.push_back(&r);
          std::sort(by_age.begin(), by_age.end(),
                    [](auto* x, auto* y) { return age_key(*x) < age_key(*y); });
          json properties = json::object();
          std::map<std::string, json> stamps;
          std::vector<std::string> codebases;
          std::map<std::string, std::vector<int64_t>> changes;
          for (const PendingRequest* r : by_age) {
            const json row = request_rows.count(r->brid) ? request_rows[r->brid] : json::object();
            for (const auto& [k, v] : row.value("properties", json::object()).items()) {
              properties[k] = v;
            }
            const json set = buildset_rows.count(r->bsid) ? buildset_rows[r->bsid] : json::object();
            for (const auto& ss : set.value("sourcestamps", json::array())) {
              const std::string cb = ss.value("codebase", "");
              if (!stamps.count(cb)) codebases.push_back(cb);
              stamps[cb] = ss;
            }
            if (r->source) {
              for (const auto& ss : r->source->stamps) {
                auto& ids = changes[ss.codebase];
                ids.insert(ids.end(), ss.changeids.begin(), ss.changeids.end());
              }
            }
          }
          json merged = json::array();
          for (const auto& cb : codebases) {
            json ss = stamps[cb];
            auto& ids = changes[cb];
            std::sort(ids.begin(), ids.end());
            ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
            ss["changeids"] = ids;
            merged.push_back(std::move(ss));
          }
          request["properties"] = std::move(properties);
          buildset["sourcestamps"] = std::move(merged);
        }
        done(std::move(request), std::move(buildset));
      }));
}

// ---------------------------------------------------------------------------
// Quarantine

bool BuildDistribution::quarantined(const WorkerSlot& worker, const BuilderSlot& builder) const {
  auto it = quarantine_.find({worker.name, builder.config->name});
  return it != quarantine_.end() && it->second.until_ms > core_.loop.now_ms();
}

void BuildDistribution::quarantine(const WorkerSlot& worker, const BuilderSlot& builder) {
  Quarantine& q = quarantine_[{worker.name, builder.config->name}];
  q.delay_ms = q.delay_ms ? std::min(q.delay_ms * 2, kMaxQuarantineMs) : kFirstQuarantineMs;
  q.until_ms = core_.loop.now_ms() + q.delay_ms;
  if (q.timer) core_.loop.cancel_timer(q.timer);
  q.timer = core_.loop.start_timer(q.delay_ms, 0, [this, key = std::make_pair(worker.name, builder.config->name)] {
    if (auto it = quarantine_.find(key); it != quarantine_.end()) it->second.timer = 0;
    core_.schedule_start_builds();
  });
  spdlog::info("worker '{}' may not start builds of '{}': quarantined for {} s", worker.name,
               builder.config->name, q.delay_ms / 1000);
}

void BuildDistribution::release(const WorkerSlot& worker, const BuilderSlot& builder) {
  if (quarantine_.empty()) return;
  auto it = quarantine_.find({worker.name, builder.config->name});
  if (it == quarantine_.end()) return;
  if (it->second.timer) core_.loop.cancel_timer(it->second.timer);
  quarantine_.erase(it);
}

json BuildDistribution::quarantine_of(const std::string& worker) const {
  json out;
  const uint64_t now = core_.loop.now_ms();
  for (const auto& [key, q] : quarantine_) {
    if (key.first != worker || q.until_ms <= now) continue;
    out[key.second] = (q.until_ms - now + 999) / 1000;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Policy arguments

json BuildDistribution::builder_json(const BuilderSlot& builder) const {
  const auto& bc = *builder.config;
  return {{"name", bc.name},
          {"builderid", builder.builderid},
          {"tags", bc.tags},
          {"workers", bc.workers},
          {"properties", bc.properties}};
}

json BuildDistribution::request_json(const BuilderSlot& builder, const PendingRequest& request) {
  json r = {{"buildrequestid", request.brid},
            {"buildsetid", request.bsid},
            {"builderid", builder.builderid},
            {"priority", request.priority},
            {"submitted_at", request.submitted_at}};
  if (request.source && !request.source->unknown) {
    json stamps = json::array();
    for (const auto& ss : request.source->stamps) stamps.push_back(stamp_json(ss));
    r["sourcestamps"] = std::move(stamps);
    r["reason"] = request.source->reason;
  }
  return r;
}

std::optional<json> BuildDistribution::ask(const std::string& policy, const char* hook,
                                           const json& args) {
  std::string error;
  auto answer = core_.policies->call(policy, args, error);
  if (!answer) ask_failed(policy, hook, error);
  return answer;
}

void BuildDistribution::ask_failed(const std::string& policy, const char* hook,
                                   const std::string& problem) {
  // A pass runs for every build: say it once, not hundreds of times a second.
  auto& last = last_failure_[policy];
  if (last == problem) return;
  last = problem;
  spdlog::warn("{} policy '{}': {}; using the built-in default", hook, policy, problem);
}

}  // namespace kiln::engine
