#include "change_filter.h"

#include <fnmatch.h>

namespace kiln::schedulers {

const char* const kChangeFilterSchema = R"json({
      "type": ["object", "null"], "default": null, "additionalProperties": false,
      "description": "Which changes the scheduler looks at (Buildbot's ChangeFilter). Every given field must match; each value may be a list (any entry matches). Regular expressions match at the start of the value, as Python's re.match.",
      "properties": {
        "branch": {"type": ["string", "null", "array"], "items": {"type": ["string", "null"]}, "description": "Branch name(s); null stands for the default branch."},
        "branch_re": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Regular expression(s) over the branch name."},
        "project": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Project name(s)."},
        "project_re": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Regular expression(s) over the project."},
        "repository": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Repository URL(s)."},
        "repository_re": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Regular expression(s) over the repository."},
        "category": {"type": ["string", "null", "array"], "items": {"type": ["string", "null"]}, "description": "Category name(s); null stands for no category."},
        "category_re": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Regular expression(s) over the category."},
        "codebase": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Codebase name(s)."},
        "codebase_re": {"type": ["string", "array"], "items": {"type": "string"}, "description": "Regular expression(s) over the codebase."}
      }})json";

const char* const kFileIsImportantSchema = R"json({
      "type": ["object", "string", "null"], "default": null, "additionalProperties": false,
      "description": "Which changes are important: null (all), the name of a file_is_important policy (answers true or false for {\"change\": C}), or glob lists over the change's files. A change is important when one of its files matches an include glob (any file when include is empty) and no exclude glob; a change without files is important.",
      "properties": {
        "include": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Globs of important files ('*' also matches '/')."},
        "exclude": {"type": "array", "items": {"type": "string"}, "default": [], "description": "Globs of files that never make a change important."}
      }})json";

namespace {

const char* const kFields[] = {"branch", "project", "repository", "category", "codebase"};

// Fields whose absence is a value of its own (null) rather than "".
bool nullable(std::string_view field) { return field == "branch" || field == "category"; }

}  // namespace

bool glob_match(const std::string& pattern, const std::string& text) {
  return ::fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
}

sdk::Result<ChangeFilter> ChangeFilter::make(const json& config, const std::optional<json>& branch) {
  ChangeFilter filter;
  const json cfg = config.is_object() ? config : json::object();
  for (const char* name : kFields) {
    Field f;
    f.name = name;
    if (auto it = cfg.find(name); it != cfg.end()) {
      std::vector<json> values;
      if (it->is_array()) {
        for (const auto& v : *it) values.push_back(v);
      } else {
        values.push_back(*it);
      }
      for (const auto& v : values) {
        if (!v.is_string() && !(v.is_null() && nullable(name))) {
          return sdk::invalid_config(std::string("change_filter.") + name + ": " + v.dump() + " is not a " +
                                     (nullable(name) ? "string or null" : "string"));
        }
      }
      f.values = std::move(values);
    }
    if (auto it = cfg.find(std::string(name) + "_re"); it != cfg.end()) {
      for (const auto& pattern : string_list(*it)) {
        try {
          f.patterns.emplace_back(pattern, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return sdk::invalid_config(std::string("change_filter.") + name + "_re: '" + pattern +
                                     "' is not a regular expression: " + e.what());
        }
      }
    }
    if (f.values || !f.patterns.empty()) filter.fields_.push_back(std::move(f));
  }
  if (branch) {
    // A single-branch scheduler's branch narrows whatever the filter allows.
    if (!branch->is_string() && !branch->is_null()) return sdk::invalid_config("branch must be a string or null");
    Field f;
    f.name = "branch";
    f.values = std::vector<json>{*branch};
    filter.fields_.push_back(std::move(f));
  }
  return filter;
}

bool ChangeFilter::Field::matches(const json& raw) const {
  // The data API shows an unset branch or category as null; some change
  // sources send "" for the default branch, which means the same.
  json value = raw;
  if (nullable(name) && value.is_string() && value.get<std::string>().empty()) value = nullptr;
  if (!nullable(name) && value.is_null()) value = "";
  if (values) {
    bool found = false;
    for (const auto& v : *values) {
      json wanted = v;
      if (nullable(name) && wanted.is_string() && wanted.get<std::string>().empty()) wanted = nullptr;
      if (wanted == value) {
        found = true;
        break;
      }
    }
    if (!found) return false;
  }
  if (!patterns.empty()) {
    if (!value.is_string()) return false;
    const std::string text = value.get<std::string>();
    bool any = false;
    for (const auto& re : patterns) {
      if (std::regex_search(text, re, std::regex_constants::match_continuous)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  return true;
}

bool ChangeFilter::matches(const json& change) const {
  for (const auto& f : fields_) {
    if (!f.matches(change.value(f.name, json()))) return false;
  }
  return true;
}

sdk::Result<Importance> Importance::make(const json& config) {
  Importance imp;
  if (config.is_string()) {
    imp.policy_ = config.get<std::string>();
    if (imp.policy_.empty()) return sdk::invalid_config("file_is_important: a policy name cannot be empty");
  } else if (config.is_object()) {
    imp.include_ = string_list(config.value("include", json::array()));
    imp.exclude_ = string_list(config.value("exclude", json::array()));
  } else if (!config.is_null()) {
    return sdk::invalid_config("file_is_important must be a policy name or {include, exclude}");
  }
  return imp;
}

bool Importance::important(const sdk::Context& ctx, const json& change) const {
  if (!policy_.empty()) {
    auto answer = ctx.call_policy(policy_, json{{"change", change}});
    if (answer.ok() && answer->is_boolean()) return answer->get<bool>();
    ctx.warn("file_is_important policy '" + policy_ + "' " +
             (answer.ok() ? "answered " + answer->dump().substr(0, 100) + " instead of true or false"
                          : "failed: " + answer.status().message()) +
             "; change " + change.value("changeid", json()).dump() + " counts as important");
    return true;
  }
  if (include_.empty() && exclude_.empty()) return true;
  const json files = change.value("files", json::array());
  if (!files.is_array() || files.empty()) return true;
  for (const auto& f : files) {
    if (!f.is_string()) continue;
    const std::string file = f.get<std::string>();
    bool included = include_.empty();
    for (const auto& g : include_) {
      if (glob_match(g, file)) {
        included = true;
        break;
      }
    }
    if (!included) continue;
    bool excluded = false;
    for (const auto& g : exclude_) {
      if (glob_match(g, file)) {
        excluded = true;
        break;
      }
    }
    if (!excluded) return true;
  }
  return false;
}

}  // namespace kiln::schedulers
