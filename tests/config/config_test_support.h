#pragma once
// What the configuration tests share: a small component catalog standing in
// for the plugin registry, and a scratch folder for master.yaml files.

#include "config/component_catalog.h"
#include "config/master_config.h"
#include "store/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>

namespace kiln::config::testing {

class FakeCatalog : public ComponentCatalog {
 public:
  FakeCatalog() {
    add(KILN_KIND_STEP, "shell", R"({
      "type": "object", "additionalProperties": false, "required": ["command"],
      "properties": {"command": {"type": ["string", "array"], "items": {"type": "string"}},
                     "logfiles": {"type": "object"}}})");
    add(KILN_KIND_STEP, "git", R"({
      "type": "object", "additionalProperties": false, "required": ["repourl"],
      "properties": {"repourl": {"type": "string"},
                     "mode": {"enum": ["incremental", "full"], "default": "incremental"}}})");
    add(KILN_KIND_WORKER, "local", R"({"type": "object", "additionalProperties": false})");
    add(KILN_KIND_WORKER, "buildbot-worker", R"({
      "type": "object", "additionalProperties": false, "required": ["password"],
      "properties": {"password": {"type": "string"}}})");
    add(KILN_KIND_SCHEDULER, "force", R"({"type": "object", "additionalProperties": false})");
    add(KILN_KIND_SCHEDULER, "single-branch", R"({
      "type": "object", "additionalProperties": false, "required": ["branch"],
      "properties": {"branch": {"type": "string"},
                     "tree_stable_timer": {"type": "integer", "minimum": 0, "default": 0}}})");
    add(KILN_KIND_CHANGE_SOURCE, "git-poller", R"({
      "type": "object", "additionalProperties": false, "required": ["repourl"],
      "properties": {"repourl": {"type": "string"},
                     "branches": {"type": "array", "items": {"type": "string"}},
                     "poll_interval": {"type": "integer", "minimum": 1, "default": 600}}})");
    add(KILN_KIND_REPORTER, "web", R"({
      "type": "object", "additionalProperties": false,
      "properties": {"port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 8010}}})");
    add(KILN_KIND_REPORTER, "mail", R"({
      "type": "object", "additionalProperties": false, "required": ["fromaddr"],
      "properties": {"fromaddr": {"type": "string"}, "relay_password": {"type": "string"}}})");
    add(KILN_KIND_POLICY, "alphabetical", R"({"type": "object", "additionalProperties": false})",
        "prioritize_builders");
    add(KILN_KIND_POLICY, "oldest-first", R"({"type": "object", "additionalProperties": false})",
        "next_build");
  }

  const nlohmann::json* schema_for(kiln_component_kind kind, std::string_view type_name) const override {
    auto found = types_.find({kind, std::string(type_name)});
    return found == types_.end() ? nullptr : &found->second.schema;
  }

  std::vector<std::string> type_names(kiln_component_kind kind) const override {
    std::vector<std::string> names;
    for (const auto& [key, type] : types_) {
      if (key.first == kind) names.push_back(key.second);
    }
    return names;
  }

  // Like a real plugin's validate(): mail checks what a schema cannot, and
  // quotes the offending value back, as plugins are wont to do.
  std::optional<std::string> check_with_plugin(kiln_component_kind kind, std::string_view type_name,
                                               const nlohmann::json& config) const override {
    ++checks;
    if (kind == KILN_KIND_REPORTER && type_name == "mail") {
      std::string from = config.at("fromaddr");
      if (from.find('@') == std::string::npos) return "fromaddr '" + from + "' is not an email address";
    }
    return std::nullopt;
  }

  std::optional<std::string> policy_hook(std::string_view type_name) const override {
    auto found = types_.find({KILN_KIND_POLICY, std::string(type_name)});
    if (found == types_.end()) return std::nullopt;
    return found->second.hook;
  }

  mutable int checks = 0;

 private:
  struct Type {
    nlohmann::json schema;
    std::string hook;
  };
  void add(kiln_component_kind kind, std::string name, const char* schema, std::string hook = "") {
    types_[{kind, std::move(name)}] = Type{nlohmann::json::parse(schema), std::move(hook)};
  }
  std::map<std::pair<kiln_component_kind, std::string>, Type> types_;
};

// A scratch folder removed with everything in it at the end of a test.
using kiln::testing::TempDir;

// A variable set for the length of a test.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name_.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
};

// Phase 1 then phase 2, every diagnostic of whichever failed.
inline std::vector<Diagnostic> all_errors(const std::filesystem::path& path, const ComponentCatalog& catalog) {
  ReadResult read = read_config_document(path);
  if (!read.document) return read.errors;
  return check_master_config(*read.document, catalog).errors;
}

inline std::string describe(const std::vector<Diagnostic>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.to_string() + "\n";
  return out;
}

}  // namespace kiln::config::testing
