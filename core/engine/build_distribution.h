#pragma once
// Which pending build request runs where: Buildbot's build request
// distributor. For each pass the builders are ordered (prioritize_builders);
// each builder picks its next request (next_build) and a worker for it
// (next_worker), asks whether the build may start there (can_start_build;
// a refusal quarantines that worker for that builder, 1 s doubling to 1 h),
// and folds the compatible pending requests into the same build
// (collapse_requests, Buildbot 0.8.5's request merging). Each decision calls
// the policy configured by name, or runs the built-in default natively: the
// default path builds no JSON. Internal to core/engine; loop thread only.

#include "store/records.h"
#include "util/event_loop.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace kiln::engine {

struct EngineCore;
struct BuilderSlot;
struct WorkerSlot;
struct Build;
struct PendingRequest;

// One source stamp of a request, as policies see it.
struct StampInfo {
  std::string codebase, repository, project;
  std::optional<std::string> branch, revision;
  nlohmann::json patch;            // null, or {level, subdir, author, comment}
  std::vector<int64_t> changeids;  // known for requests submitted since start-up
};

// The sources of a buildset, shared by its requests (one per builder).
struct RequestSource {
  std::vector<StampInfo> stamps;
  std::string reason;
  // What the default collapse compares: codebase -> (repository, branch,
  // project), and whether any stamp carries a patch.
  std::map<std::string, std::tuple<std::string, std::optional<std::string>, std::string>> key;
  bool patched = false;
  bool unknown = false;  // the store could not say: never collapses
};

std::shared_ptr<const RequestSource> request_source(
    const std::vector<store::SourceStampSpec>& stamps, std::string reason);
// From a buildset as the data API shows it.
std::shared_ptr<const RequestSource> request_source(const nlohmann::json& buildset);

// The default collapse rule (the built-in "collapse-same-source"): the same
// codebases, each on the same repository, branch and project, no patch.
bool same_source(const RequestSource& a, const RequestSource& b);

class BuildDistribution {
 public:
  explicit BuildDistribution(EngineCore& core) : core_(core) {}
  ~BuildDistribution();
  BuildDistribution(const BuildDistribution&) = delete;
  BuildDistribution& operator=(const BuildDistribution&) = delete;

  // One pass over every builder with pending requests.
  void start_builds();

  // Puts requests back at the head of the builder's queue (in priority
  // order, ahead of younger requests of equal priority).
  static void requeue(BuilderSlot& builder, const std::vector<PendingRequest>& requests);
  // Narrows a starting build to the requests this master managed to claim.
  static void keep_claimed(Build& build, const std::vector<int64_t>& claimed);
  // Reads what a starting build is made of: the request (properties of all
  // its requests, the newest winning) and the buildset (sourcestamps, per
  // codebase the newest request's, with the changes of all).
  void load_build_inputs(Build& build,
                         std::function<void(nlohmann::json request, nlohmann::json buildset)> done);

  // {builder: seconds left} for a quarantined worker; null when none.
  nlohmann::json quarantine_of(const std::string& worker) const;

  // A worker may not start builds of the builder for a while (1 s doubling
  // to 1 h); release() ends it and resets the backoff.
  void quarantine(const WorkerSlot& worker, const BuilderSlot& builder);
  void release(const WorkerSlot& worker, const BuilderSlot& builder);

  static constexpr uint64_t kFirstQuarantineMs = 1000;
  static constexpr uint64_t kMaxQuarantineMs = 3600 * 1000;

 private:
  // A configured policy, or the built-in default run natively.
  struct Choice {
    const std::string* name = nullptr;  // null: native
    bool native() const { return name == nullptr; }
  };
  Choice resolve(const std::optional<std::string>& name, std::string_view builtin_type) const;

  std::vector<BuilderSlot*> builder_order();
  void serve(BuilderSlot& builder);
  bool sources_ready(BuilderSlot& builder);
  std::vector<WorkerSlot*> available_workers(const BuilderSlot& builder) const;
  std::optional<size_t> next_request(BuilderSlot& builder, Choice policy);
  WorkerSlot* next_worker(BuilderSlot& builder, Choice policy,
                          const std::vector<WorkerSlot*>& candidates, const PendingRequest& request);
  bool can_start(BuilderSlot& builder, Choice policy, WorkerSlot& worker,
                 const PendingRequest& request);
  std::vector<PendingRequest> take_requests(BuilderSlot& builder, size_t index);

  bool quarantined(const WorkerSlot& worker, const BuilderSlot& builder) const;

  nlohmann::json builder_json(const BuilderSlot& builder) const;
  static nlohmann::json request_json(const BuilderSlot& builder, const PendingRequest& request);
  // Calls a policy for the engine; a failure is logged (once per message)
  // and answered nullopt so the caller falls back to the default.
  std::optional<nlohmann::json> ask(const std::string& policy, const char* hook,
                                    const nlohmann::json& args);
  void ask_failed(const std::string& policy, const char* hook, const std::string& problem);

  struct Quarantine {
    uint64_t until_ms = 0;
    uint64_t delay_ms = 0;
    util::EventLoop::TimerId timer = 0;
  };

  EngineCore& core_;
  std::map<std::pair<std::string, std::string>, Quarantine> quarantine_;  // (worker, builder)
  std::set<int64_t> loading_;                                           // builderids
  std::map<std::string, std::string> last_failure_;                     // policy -> message
};

}  // namespace kiln::engine
