#pragma once
// master.yaml, read and checked: the master's settings and every component's
// configuration, each with where it was written. See docs/configuration.md.
//
// Reading happens in two phases because plugins must be loaded before their
// schemas can be checked, and master.plugin_paths says where plugins are:
//   1. read_config_document(): YAML, `include:`, ${env:..}/${file:..},
//      builder matrices -> a ConfigDocument (JSON plus source positions);
//   2. check_master_config(): the core's own schema, every component against
//      its plugin's schema, cross-references -> MasterConfig or diagnostics.

#include "config/component_catalog.h"
#include "config/diagnostic.h"

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::config {

// The merged document of master.yaml and its includes, as JSON, with the
// position each value came from.
struct ConfigDocument {
  std::filesystem::path main_file;  // master.yaml as given
  nlohmann::json root;              // after includes, substitution, matrices
  // JSON Pointer ("/builders/1/workers/0") -> where that value was written.
  std::map<std::string, SourceLocation> locations;
  // JSON Pointer of an object member -> where its key was written (what an
  // "unknown key" error points at).
  std::map<std::string, SourceLocation> key_locations;
  // Pointers whose value came from ${env:..} or ${file:..}: never printed.
  std::set<std::string> secret_pointers;
  // The substituted texts themselves, so that anything printed about this
  // document (diagnostics, later logs) can redact them.
  std::set<std::string> secret_values;

  // Where the value at `pointer` was written; falls back to its nearest
  // ancestor, then to main_file.
  SourceLocation locate(const std::string& pointer) const;
};

struct ComponentConfig {
  kiln_component_kind kind{};
  std::string type;              // the plugin type name (`type:`)
  std::string name;              // unique within its kind
  // Defaults are applied to both, except for steps, which keep what was
  // written (the engine fills their defaults when a step starts).
  nlohmann::json common;         // keys the core owns for this kind, except
                                 // type and name
  nlohmann::json config;         // the plugin's own keys
  std::string pointer;           // JSON Pointer of this entry in the document
  SourceLocation location;
};

// A lock builds and steps take: Buildbot's MasterLock (one for the master)
// or WorkerLock (one per worker, `per_worker`).
struct LockConfig {
  std::string name;
  bool per_worker = false;
  int max_count = 1;
  std::map<std::string, int> max_count_for_worker;  // worker lock only
  std::string pointer;
  bool operator==(const LockConfig& o) const {
    return name == o.name && per_worker == o.per_worker && max_count == o.max_count &&
           max_count_for_worker == o.max_count_for_worker;
  }
};

// One use of a lock by a builder (for the whole build) or a step: `name` or
// {name, access: exclusive|counting, count}.
struct LockAccess {
  std::string name;
  bool exclusive = false;  // counting otherwise, Buildbot's default
  int count = 1;           // counting only
  bool operator==(const LockAccess&) const = default;
};

// The accesses of a `locks:` value that passed the schema; others skipped.
std::vector<LockAccess> lock_accesses(const nlohmann::json& locks);

struct BuilderConfig {
  std::string name;
  std::string description;
  std::vector<std::string> workers;
  std::vector<std::string> tags;
  std::string builddir;          // defaults to a filesystem-safe `name`
  std::string workerbuilddir;    // defaults to builddir
  nlohmann::json properties = nlohmann::json::object();
  nlohmann::json env = nlohmann::json::object();
  std::optional<bool> collapse_requests;  // unset: the master's setting
  std::optional<std::string> next_worker;  // policy names, unset: built-in
  std::optional<std::string> next_build;
  std::optional<std::string> can_start_build;
  std::optional<double> build_horizon_days;  // retention; unset: keep
  std::optional<double> log_horizon_days;
  std::vector<LockAccess> locks;       // held for the whole build
  std::vector<ComponentConfig> steps;  // kind STEP; common = step keys
  std::string pointer;
  SourceLocation location;
};

struct MasterSettings {
  std::string title = "Kiln";
  std::string title_url;
  std::string buildbot_url = "http://localhost:8010/";  // master.url
  std::string db = "sqlite:state.sqlite";
  std::vector<std::filesystem::path> plugin_paths;  // absolute
  bool collapse_requests = true;
  std::optional<std::string> prioritize_builders;  // policy names
  std::optional<std::string> collapse_requests_policy;
  nlohmann::json properties = nlohmann::json::object();
  std::string log_level = "info";
  uint64_t log_max_bytes = 10 * 1024 * 1024;
  unsigned log_max_files = 10;
};

struct MasterConfig {
  std::filesystem::path basedir;     // folder of master.yaml
  MasterSettings master;
  std::vector<ComponentConfig> workers;
  std::vector<ComponentConfig> change_sources;
  std::vector<ComponentConfig> schedulers;
  std::vector<BuilderConfig> builders;
  std::vector<ComponentConfig> reporters;
  std::vector<ComponentConfig> policies;  // named policy functions
  std::vector<LockConfig> locks;
};

// Phase 1. `path` is a master.yaml or a folder holding one. Fails with every
// problem it can find (YAML syntax, missing includes or env vars, ...).
struct ReadResult {
  std::optional<ConfigDocument> document;
  std::vector<Diagnostic> errors;
};
ReadResult read_config_document(const std::filesystem::path& path);

// master.plugin_paths of a document, resolved against its folder, without
// full checking (so plugins can be loaded before phase 2).
std::vector<std::filesystem::path> plugin_paths_of(const ConfigDocument& doc);

// `text` with every secret value of `doc` replaced by "***".
std::string redact_secrets(const ConfigDocument& doc, std::string text);

// Phase 2. Every error at once, sorted by file and position.
struct CheckResult {
  std::optional<MasterConfig> config;
  std::vector<Diagnostic> errors;
};
CheckResult check_master_config(const ConfigDocument& doc,
                                const ComponentCatalog& catalog);

}  // namespace kiln::config
