#pragma once
// Buildbot's change hooks, /change_hook/<dialect>: a POST from a code host
// (or a script) turned into changes for the ABI's change_add. Each dialect
// is enabled by name in the reporter's change_hook_dialects: `base`
// (Buildbot's form or JSON fields of one change), `github` (push and
// pull_request events, X-Hub-Signature-256 checked when a secret is set)
// and `gitlab` (push, tag_push and merge_request events, X-Gitlab-Token).
// Any other dialect name is a plugin's: a `change_hook` policy function
// (named by the dialect's `policy`) turns the request into changes.
// Parsing only: web.cpp hands the changes to the master.

#include "http_types.h"

#include <kiln/sdk/status.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::web {

struct HookDialect {
  std::string secret;    // github: the HMAC key; gitlab: the token; empty: none
  std::string codebase;  // set on every change when not empty
  std::string policy;    // a plugin's dialect: its change_hook policy
};
using HookDialects = std::map<std::string, HookDialect>;

// `change_hook_dialects` of the config: {base: true, github: {secret: ...}}.
sdk::Result<HookDialects> parse_hook_dialects(const nlohmann::json& config);

struct HookOutcome {
  unsigned status = 200;  // 400 bad payload, 403 bad signature/token, 404 dialect off
  std::string error;
  std::vector<nlohmann::json> changes;  // change_add's JSON, oldest first
};

// The changes a POST to /change_hook/<dialect> carries, or why not.
HookOutcome parse_change_hook(const HookDialects& dialects, std::string_view dialect,
                              const Request& request);

// A plugin's dialect: the arguments of its change_hook policy,
// {"dialect", "method", "path", "query", "headers": {lower-case name:
// value}, "body"}, and its answer (a list of changes, or {"changes":
// [...]}, or {"status": 4xx, "error": "..."}) as an outcome.
nlohmann::json policy_hook_args(std::string_view dialect, const Request& request);
HookOutcome policy_hook_outcome(const HookDialects& dialects, std::string_view dialect,
                                const Request& request, kiln_status status,
                                const nlohmann::json& answer, const std::string& error);

// "2015-05-05T19:40:15-04:00" or "...Z" (GitHub's and GitLab's
// timestamps) as Unix seconds; -1 when not that shape.
int64_t parse_iso8601(std::string_view text);

}  // namespace kiln::web
