#pragma once
// Which changes a scheduler looks at (Buildbot's ChangeFilter) and which of
// those matter (its fileIsImportant): glob lists over the change's files,
// or a named policy function called through the host.

#include "common.h"

#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace kiln::schedulers {

// JSON Schema fragments shared by the schedulers' schemas.
extern const char* const kChangeFilterSchema;
extern const char* const kFileIsImportantSchema;

class ChangeFilter {
 public:
  // `config`: the change_filter object (null for none). `branch`, when
  // given, is a single-branch scheduler's own branch: a string, or null for
  // the default branch.
  static sdk::Result<ChangeFilter> make(const json& config, const std::optional<json>& branch = std::nullopt);

  // change: as the data API shows it.
  bool matches(const json& change) const;

 private:
  // One field: the change's value must be one of `values` (null stands for
  // "no value", e.g. the default branch) and, when given, match a regex.
  struct Field {
    std::string name;
    std::optional<std::vector<json>> values;
    std::vector<std::regex> patterns;  // any of them, anchored at the start
    bool matches(const json& value) const;
  };
  std::vector<Field> fields_;
};

// Decides whether a change is important: always (no setting), by globs
// ({include, exclude}), or by a policy function's answer.
class Importance {
 public:
  static sdk::Result<Importance> make(const json& config);

  // A policy that fails or answers something other than a boolean counts
  // the change as important (building too much beats missing a change),
  // with a warning in the master's log.
  bool important(const sdk::Context& ctx, const json& change) const;
  bool configured() const { return !policy_.empty() || !include_.empty() || !exclude_.empty(); }

 private:
  std::string policy_;
  std::vector<std::string> include_, exclude_;
};

// fnmatch(3) without FNM_PATHNAME: '*' also matches '/', as Python's
// fnmatch that Buildbot's users know.
bool glob_match(const std::string& pattern, const std::string& text);

}  // namespace kiln::schedulers
