#pragma once
// The values the engine hands to and gets back from the Store's build-model
// calls (changes, buildsets, requests, builds, steps, logs), and the data
// API's read request (Resource + ResultSpec). Field names are Buildbot's
// (master/buildbot/db/*.py and the data API), so a reader of Buildbot's docs
// finds them here unchanged. Times are Unix seconds.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::store {

// Buildbot's result codes, shared by builds, steps, requests and buildsets.
namespace results {
constexpr int kSuccess = 0;
constexpr int kWarnings = 1;
constexpr int kFailure = 2;
constexpr int kSkipped = 3;
constexpr int kException = 4;
constexpr int kRetry = 5;
constexpr int kCancelled = 6;
}  // namespace results

// Properties everywhere are a JSON object {name: [value, "source"]}.

struct ChangeRecord {
  std::string author;
  std::optional<std::string> committer;
  std::vector<std::string> files;
  std::string comments;
  std::string project;
  std::string repository;
  std::string codebase;
  std::optional<std::string> revision;
  std::optional<std::string> branch;
  std::optional<std::string> category;
  std::optional<std::string> revlink;
  nlohmann::json properties = nlohmann::json::object();
  int64_t when_timestamp = 0;
  // Empty: the newest change with the same branch, repository, project and
  // codebase, as Buildbot's getParentChangeIds does.
  std::optional<int64_t> parent_changeid;
  // Users (find_or_create_user) linked through change_users.
  std::vector<int64_t> uids;
};

struct PatchRecord {
  int64_t level = 1;
  std::string body;  // the diff; stored base64 as Buildbot does
  std::optional<std::string> subdir;
  std::string author;
  std::string comment;
};

// A source stamp of a buildset. Identical stamps (same branch, revision,
// repository, project, codebase and patch) share one sourcestamps row.
struct SourceStampSpec {
  std::string codebase;
  std::string repository;
  std::string project;
  std::optional<std::string> branch;
  std::optional<std::string> revision;
  std::optional<PatchRecord> patch;
  // The changes this build covers; they become the build's changes.
  std::vector<int64_t> changeids;
};

struct BuildsetRequest {
  std::vector<SourceStampSpec> sourcestamps;
  std::string reason;
  std::optional<std::string> external_idstring;
  nlohmann::json properties = nlohmann::json::object();
  std::optional<int64_t> parent_buildid;
  std::optional<std::string> parent_relationship;
  bool waited_for = false;
  int64_t submitted_at = 0;
  // One build request per builder, all with this priority.
  std::vector<int64_t> builderids;
  int64_t priority = 0;
};

struct BuildsetIds {
  int64_t bsid = 0;
  std::map<int64_t, int64_t> brids;  // builderid -> buildrequestid
};

struct BuilderRecord {
  int64_t builderid = 0;
  std::string name;
  std::optional<std::string> description;
  std::vector<std::string> tags;  // sorted
};

struct BuildRequestRecord {
  int64_t buildrequestid = 0;
  int64_t buildsetid = 0;
  int64_t builderid = 0;
  int64_t priority = 0;
  int64_t submitted_at = 0;
  bool waited_for = false;
};

struct BuildIds {
  int64_t buildid = 0;
  int64_t number = 0;  // per builder, from 1
};

struct StepIds {
  int64_t stepid = 0;
  int64_t number = 0;  // per build, from 0
  std::string name;    // as stored: "test_2" when "test" was taken
};

// Lines are numbered from 0; both ends inclusive.
struct LineRange {
  int64_t first_line = 0;
  int64_t last_line = -1;
};

// One page of a log read front to back (raw download).
struct LogPage {
  std::string text;       // whole lines, from the requested line on
  int64_t next_line = 0;  // pass back to read the next page
  bool end = false;       // no line at or after next_line exists yet
};

struct RecoveryCounts {
  int64_t builds = 0;    // marked RETRY
  int64_t steps = 0;     // marked EXCEPTION
  int64_t logs = 0;      // marked complete
  int64_t requests = 0;  // unclaimed, so they run again
};

// ---- Data API reads ------------------------------------------------------

enum class Resource {
  kBuilders,
  kBuilds,
  kSteps,
  kLogs,
  kChanges,
  kBuildsets,
  kBuildrequests,
  kWorkers,
  kMasters,
  kSourcestamps,
  kUsers,
};
// "builds" <-> Resource::kBuilds (the REST path segment).
std::optional<Resource> resource_from_name(std::string_view name);
std::string_view resource_name(Resource resource);

enum class FilterOp { kEq, kNe, kLt, kLe, kGt, kGe, kContains, kIn };
// "eq", "ne", ... as in `field__op=value`.
std::optional<FilterOp> filter_op_from_name(std::string_view name);

struct Filter {
  std::string field;
  FilterOp op = FilterOp::kEq;
  // Several values: eq/in match any, ne matches none, contains matches any.
  // Numbers and booleans may come as JSON strings (from a URL).
  std::vector<nlohmann::json> values;
};

// The parent in the REST path: /builders/3/builds is {"builderid", 3};
// /builds/7/steps {"buildid", 7}; /builds/7/changes {"buildid", 7}.
struct Scope {
  std::string field;
  int64_t id = 0;
};

struct ResultSpec {
  std::vector<Filter> filters;
  std::vector<std::string> order;  // "number", "-started_at"
  std::optional<int64_t> limit;
  int64_t offset = 0;
  std::optional<Scope> parent;
  // builds, buildrequests, buildsets: property names to include, "*" for all; empty
  // leaves the `properties` field out, as Buildbot does.
  std::vector<std::string> properties;
  // The fields the reader wants (REST's `field=`): each must exist, or the
  // query fails naming it. Empty means all; the store reads them all anyway.
  std::vector<std::string> fields;
};

}  // namespace kiln::store
