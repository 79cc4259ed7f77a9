#pragma once
// What the schedulers of kiln-schedulers share: each scheduler's identity
// (its name and the core-owned builders and properties, read from
// ctx.info()["common"]), Buildbot's default reasons, the buildset a batch of
// changes makes, and Buildbot's ordering of results.

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace kiln::schedulers {

namespace sdk = kiln::sdk;
using nlohmann::json;

// The facts every scheduler reads once at creation.
struct Identity {
  std::string name;
  std::vector<std::string> builders;
  json properties = json::object();

  static Identity read(const sdk::Context& ctx, std::string_view fallback_name);
};

// `text` with %(name)s and %(classname)s replaced, as Buildbot formats a
// scheduler's reason.
std::string format_reason(std::string_view text, std::string_view name, std::string_view classname);

// A change as a scheduler keeps it between its arrival and its buildset:
// only what the buildset needs, so that kept changes survive a restart
// through state_put without holding their file lists.
json kept_change(const json& change, bool important);

// The buildset request for `changes` (kept_change entries, in arrival
// order): one source stamp per codebase, with the changes' ids, and
// branch, revision, repository and project of that codebase's latest
// change. Properties: the scheduler's, then the changes' own, then
// "scheduler".
json buildset_for_changes(const Identity& id, const std::string& reason, const json& changes);

// Buildbot's worst_status: SKIPPED < SUCCESS < WARNINGS < FAILURE <
// EXCEPTION < RETRY < CANCELLED.
int worst_result(int a, int b);

// A JSON value that may be one string or a list of them, as a list.
std::vector<std::string> string_list(const json& value);

}  // namespace kiln::schedulers
