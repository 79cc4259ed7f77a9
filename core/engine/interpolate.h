#pragma once
// Buildbot's Interpolate syntax, rendered in any string of a step's config at
// step start:
//   %(prop:name)s            a build property ("" when unset)
//   %(prop:name:-default)s   default when unset;  :~default when unset or false
//   %(prop:name:+alt)s       alt when set, else ""
//   %(prop:name:?|yes|no)s   yes when set, else no;  :#?|yes|no on truthiness
//   %(src:codebase:attr)s    a source stamp attribute (branch, revision, ...)
//   %(worker:name)s          worker info (name, host, os, ...)
//   %(kw:name)s              a keyword value given by the caller
//   %(secret:name)s          a secret (never logged)
//   %%                       a literal %
// A selector other than prop/src/worker/kw/secret, or a malformed %( ),
// is an error naming it.

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::engine {

struct InterpolateScope {
  // {name: [value, source]} as Buildbot keeps properties.
  const nlohmann::json* properties = nullptr;
  // codebase -> {branch, revision, repository, project, codebase}.
  const nlohmann::json* sourcestamps = nullptr;
  const nlohmann::json* worker = nullptr;    // {"name": ..., "host": ...}
  const nlohmann::json* keywords = nullptr;  // {name: value}
  std::function<std::optional<std::string>(std::string_view)> secret;
};

// Renders one string. On error returns nullopt and sets `error`.
std::optional<std::string> render_interpolate(std::string_view text, const InterpolateScope& scope,
                                              std::string& error);

// Renders every string inside a JSON value in place. A string that is
// exactly one %(prop:x)s of a non-string property takes the property's
// value (so `timeout: "%(prop:t)s"` stays a number). Returns false with
// `error` naming the JSON path on the first failure.
bool render_json(nlohmann::json& value, const InterpolateScope& scope, std::string& error);

// Property names are what %(prop:NAME)s can reach: letters, digits and
// _ . - / ~ : (Buildbot's force scheduler rule), 1 to 200 characters.
// Returns the reason a name is refused, empty when it is fine.
std::string property_name_problem(std::string_view name);

// Python's str() of a JSON value, as Buildbot renders properties:
// strings as is, true -> "True", null -> "None", numbers as written.
std::string property_text(const nlohmann::json& value);

}  // namespace kiln::engine
