// Phase 2 of reading master.yaml: the core's schema, every component against
// its plugin's schema and validate(), names and cross-references.

#include "config/core_schema.h"
#include "config/json_schema.h"
#include "config/master_config.h"
#include "config/yaml_document.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <tuple>

namespace kiln::config {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A name that can be a path component and a URL segment as is: no separators,
// no leading dot or dash. Builders may also have inner spaces, as Buildbot's
// often do ("linux full"); their default builddir turns them into '_'.
bool safe_name(const std::string& name, bool spaces) {
  if (name.empty() || name.size() > 100) return false;
  if (name.front() == '.' || name.front() == '-' || name.front() == ' ' || name.back() == ' ') return false;
  return std::all_of(name.begin(), name.end(), [&](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.' || (spaces && c == ' ');
  });
}

std::string position_text(const SourceLocation& at) {
  return at.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

const json* member(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto found = object.find(key);
  return found == object.end() ? nullptr : &*found;
}

std::optional<std::string> string_member(const json& object, const char* key) {
  const json* value = member(object, key);
  if (value == nullptr || !value->is_string()) return std::nullopt;
  return value->get<std::string>();
}

std::vector<std::string> strings_member(const json& object, const char* key) {
  std::vector<std::string> out;
  const json* value = member(object, key);
  if (value == nullptr || !value->is_array()) return out;
  for (const auto& item : *value) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

// A named thing declared once per kind, with where its name was written.
struct Declared {
  std::string name;
  std::string pointer;  // of the name value (or the entry, for default names)
};

class Checker {
 public:
  Checker(const ConfigDocument& doc, const ComponentCatalog& catalog) : doc_(doc), catalog_(catalog) {}

  CheckResult run() {
    std::error_code ec;
    config_.basedir = fs::absolute(doc_.main_file, ec).parent_path();
    report(validate_against_schema(core_schema(), doc_.root), "", nullptr);
    read_master();
    config_.workers = components(KILN_KIND_WORKER, "workers");
    config_.change_sources = components(KILN_KIND_CHANGE_SOURCE, "change_sources");
    config_.schedulers = components(KILN_KIND_SCHEDULER, "schedulers");
    config_.reporters = components(KILN_KIND_REPORTER, "reporters");
    config_.policies = components(KILN_KIND_POLICY, "policies");
    read_locks();
    read_builders();
    check_names();
    check_references();
    check_locks();

    CheckResult result;
    std::stable_sort(errors_.begin(), errors_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::tie(a.location.file, a.location.line, a.location.column) <
             std::tie(b.location.file, b.location.line, b.location.column);
    });
    // anyOf-style schemas and repeated checks can say the same thing twice.
    errors_.erase(std::unique(errors_.begin(), errors_.end(),
                              [](const Diagnostic& a, const Diagnostic& b) {
                                return a.location.file == b.location.file && a.location.line == b.location.line &&
                                       a.location.column == b.location.column && a.path == b.path &&
                                       a.message == b.message;
                              }),
                  errors_.end());
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.config = std::move(config_);
    return result;
  }

 private:
  void error(const std::string& pointer, const std::string& message, bool at_key = false) {
    SourceLocation at = doc_.locate(pointer);
    if (at_key) {
      if (auto found = doc_.key_locations.find(pointer); found != doc_.key_locations.end()) at = found->second;
    }
    errors_.push_back(Diagnostic{at, pointer_to_path(pointer), redact_secrets(doc_, message)});
  }

  // Violations of a schema applied at `base`. An unknown key points at the
  // key itself and, when the validator did not, suggests a known one.
  void report(const std::vector<SchemaViolation>& violations, const std::string& base,
              const json* plugin_schema) {
    static const std::string kUnknown = "unknown key '";
    for (const auto& violation : violations) {
      std::string pointer = base + violation.instance_pointer;
      std::string message = violation.message;
      if (message.rfind(kUnknown, 0) != 0) {
        error(pointer, message);
        continue;
      }
      if (plugin_schema == nullptr && pointer.rfind("/builders/", 0) == 0 &&
          std::count(pointer.begin(), pointer.end(), '/') == 3 && pointer.ends_with("/type")) {
        error(pointer, "a builder has no 'type'; its steps do", true);
        continue;
      }
      size_t end = message.find('\'', kUnknown.size());
      std::string key = message.substr(kUnknown.size(), end == std::string::npos ? std::string::npos
                                                                                   : end - kUnknown.size());
      std::string token = "/" + escape_pointer_token(key);
      bool names_member = pointer.size() >= token.size() &&
                          pointer.compare(pointer.size() - token.size(), token.size(), token) == 0 &&
                          doc_.key_locations.count(pointer) != 0;
      std::string member_pointer = names_member ? pointer : pointer + token;
      std::string object_pointer = member_pointer.substr(0, member_pointer.size() - token.size());
      // The validator only knows one schema's keys; the entry also has the
      // core's ("halt_on_failur" is meant for the core, not the plugin).
      if (std::string hint = closest_match(key, known_keys(object_pointer, plugin_schema)); !hint.empty()) {
        message = kUnknown + key + "'; did you mean '" + hint + "'?";
      }
      error(member_pointer, message, true);
    }
  }

  // The keys an object at `pointer` may hold, for "did you mean" hints.
  std::vector<std::string> known_keys(const std::string& pointer, const json* plugin_schema) {
    std::vector<std::string> keys;
    auto depth = std::count(pointer.begin(), pointer.end(), '/');
    std::string definition;
    if (pointer.empty()) {
      for (const auto& [key, value] : core_schema().at("properties").items()) keys.push_back(key);
      keys.push_back("include");
      return keys;
    }
    std::string top = pointer.substr(1, pointer.find('/', 1) == std::string::npos ? std::string::npos
                                                                                  : pointer.find('/', 1) - 1);
    if (top == "master" && depth == 1) definition = "master";
    if (top == "builders" && depth == 2) definition = "builder";
    if (top == "builders" && depth == 4) definition = "step";
    if (depth == 2 && top != "builders" && top != "master") {
      definition = top.substr(0, top.size() - 1);  // "workers" -> "worker"
      if (top == "policies") definition = "policy";
    }
    if (definition.empty()) return keys;
    keys = core_keys(definition);
    if (plugin_schema != nullptr && plugin_schema->contains("properties") &&
        (*plugin_schema)["properties"].is_object()) {
      for (const auto& [key, value] : (*plugin_schema)["properties"].items()) keys.push_back(key);
    }
    return keys;
  }

  void read_master() {
    MasterSettings& m = config_.master;
    const json* master = member(doc_.root, "master");
    if (master == nullptr || !master->is_object()) return;
    if (auto v = string_member(*master, "title")) m.title = *v;
    if (auto v = string_member(*master, "title_url")) m.title_url = *v;
    if (auto v = string_member(*master, "url"); v && !v->empty()) {
      // Links are made by appending to it, as Buildbot's buildbotURL.
      m.buildbot_url = v->back() == '/' ? *v : *v + "/";
    }
    if (auto v = string_member(*master, "db"); v && !v->empty()) {
      m.db = *v;
      if (v->find(':') == std::string::npos) {
        error("/master/db", "expected a database URL such as 'sqlite:state.sqlite'");
      }
    }
    for (const auto& path : strings_member(*master, "plugin_paths")) {
      m.plugin_paths.push_back((config_.basedir / path).lexically_normal());
    }
    if (const json* v = member(*master, "collapse_requests"); v && v->is_boolean()) m.collapse_requests = *v;
    m.prioritize_builders = policy_reference("/master/prioritize_builders", "prioritize_builders");
    m.collapse_requests_policy = policy_reference("/master/collapse_requests_policy", "collapse_requests");
    if (const json* v = member(*master, "properties"); v && v->is_object()) m.properties = *v;
    if (auto v = string_member(*master, "log_level")) m.log_level = *v;
    if (const json* v = member(*master, "log_max_bytes"); v && v->is_number_integer() && *v >= 0) {
      m.log_max_bytes = v->get<uint64_t>();
    }
    if (const json* v = member(*master, "log_max_files"); v && v->is_number_integer() && *v >= 0) {
      m.log_max_files = v->get<unsigned>();
    }
  }

  // Remembers a policy reference for check_references(); returns its name.
  std::optional<std::string> policy_reference(const std::string& pointer, const std::string& hook) {
    json::json_pointer where(pointer);
    if (!doc_.root.contains(where) || !doc_.root.at(where).is_string()) return std::nullopt;
    std::string name = doc_.root.at(where).get<std::string>();
    policy_refs_.push_back({pointer, name, hook});
    return name;
  }

  std::vector<ComponentConfig> components(kiln_component_kind kind, const char* list) {
    std::vector<ComponentConfig> out;
    const json* entries = member(doc_.root, list);
    if (entries == nullptr || !entries->is_array()) return out;
    for (size_t i = 0; i < entries->size(); ++i) {
      std::string pointer = "/" + std::string(list) + "/" + std::to_string(i);
      if (auto c = component(kind, (*entries)[i], pointer)) out.push_back(std::move(*c));
    }
    default_names(out, kind == KILN_KIND_CHANGE_SOURCE || kind == KILN_KIND_REPORTER ? '-' : 0);
    return out;
  }

  std::optional<ComponentConfig> component(kiln_component_kind kind, const json& entry,
                                           const std::string& pointer) {
    if (!entry.is_object()) return std::nullopt;  // the core schema said so
    ComponentConfig c;
    c.kind = kind;
    c.pointer = pointer;
    c.location = doc_.locate(pointer);
    c.common = json::object();
    c.config = json::object();
    std::string definition(definition_name(kind));
    std::vector<std::string> owned = core_keys(definition);
    for (const auto& [key, value] : entry.items()) {
      if (key == "type" || key == "name") continue;
      bool core = std::find(owned.begin(), owned.end(), key) != owned.end();
      (core ? c.common : c.config)[key] = value;
    }
    // Steps are kept as written (one per builder and step adds up): the
    // engine fills their defaults when a step starts.
    if (kind != KILN_KIND_STEP) apply_schema_defaults(core_definition(definition), c.common);
    if (auto name = string_member(entry, "name")) c.name = *name;
    auto type = string_member(entry, "type");
    if (!type || type->empty()) return c;
    c.type = *type;

    const json* schema = catalog_.schema_for(kind, c.type);
    if (schema == nullptr) {
      std::string hint = closest_match(c.type, catalog_.type_names(kind));
      error(pointer + "/type", "unknown " + std::string(kind_words(kind)) + " type '" + c.type + "'" +
                                   (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      return c;
    }
    auto violations = validate_against_schema(*schema, c.config);
    report(violations, pointer, schema);
    if (!violations.empty()) return c;
    json effective = c.config;
    apply_schema_defaults(*schema, effective);
    if (auto rejected = catalog_.check_with_plugin(kind, c.type, effective)) {
      // The SDK already names the type in what a plugin rejects.
      const std::string prefix = c.type + ": ";
      error(pointer, rejected->rfind(prefix, 0) == 0 ? *rejected : prefix + *rejected);
    }
    if (kind == KILN_KIND_POLICY) policy_hooks_[c.name] = catalog_.policy_hook(c.type);
    note_policy_keys(*schema, effective, pointer);
    if (kind != KILN_KIND_STEP) c.config = std::move(effective);
    return c;
  }

  // A plugin's schema marks a key that names a policy with
  // "x-kiln-policy": {"hook": H, "builtins": [words the plugin itself
  // knows]}; any other string there is checked by check_references() as
  // the core's own policy keys are: declared under `policies:`, hook H.
  void note_policy_keys(const json& schema, const json& config, const std::string& pointer) {
    const json* properties = member(schema, "properties");
    if (properties == nullptr || !properties->is_object()) return;
    for (const auto& [key, property] : properties->items()) {
      const json* mark = member(property, "x-kiln-policy");
      const json* value = member(config, key.c_str());
      if (mark == nullptr || !mark->is_object() || value == nullptr || !value->is_string()) continue;
      const json builtins = mark->value("builtins", json::array());
      if (std::find(builtins.begin(), builtins.end(), *value) != builtins.end()) continue;
      policy_refs_.push_back({pointer + "/" + escape_pointer_token(key), value->get<std::string>(),
                              mark->value("hook", std::string())});
    }
  }

  // Unnamed components are named after their type; with `separator` '-',
  // repeats of a type become "<type>-1", "<type>-2", ...; otherwise (steps)
  // the first keeps "<type>" and later ones get "_2", "_3", ...
  void default_names(std::vector<ComponentConfig>& items, char separator) {
    std::set<std::string> used;
    std::map<std::string, int> unnamed_of_type;
    for (const auto& c : items) {
      if (!c.name.empty()) {
        used.insert(c.name);
      } else {
        ++unnamed_of_type[c.type];
      }
    }
    std::map<std::string, int> counter;
    for (auto& c : items) {
      if (!c.name.empty() || c.type.empty()) continue;
      std::string name = c.type;
      if (separator == '-') {
        if (unnamed_of_type[c.type] > 1) name = c.type + "-" + std::to_string(++counter[c.type]);
      } else {
        for (int n = 2; used.count(name) != 0; ++n) name = c.type + "_" + std::to_string(n);
      }
      used.insert(name);
      c.name = name;
    }
  }

  void read_builders() {
    const json* entries = member(doc_.root, "builders");
    if (entries == nullptr || !entries->is_array()) return;
    for (size_t i = 0; i < entries->size(); ++i) {
      const json& entry = (*entries)[i];
      if (!entry.is_object()) continue;
      std::string pointer = "/builders/" + std::to_string(i);
      BuilderConfig b;
      b.pointer = pointer;
      b.location = doc_.locate(pointer);
      b.name = string_member(entry, "name").value_or("");
      b.description = string_member(entry, "description").value_or("");
      b.workers = strings_member(entry, "workers");
      b.tags = strings_member(entry, "tags");
      if (const json* v = member(entry, "properties"); v && v->is_object()) b.properties = *v;
      if (const json* v = member(entry, "env"); v && v->is_object()) b.env = *v;
      if (const json* v = member(entry, "collapse_requests"); v && v->is_boolean()) b.collapse_requests = v->get<bool>();
      b.next_worker = policy_reference(pointer + "/next_worker", "next_worker");
      b.next_build = policy_reference(pointer + "/next_build", "next_build");
      b.can_start_build = policy_reference(pointer + "/can_start_build", "can_start_build");
      if (const json* v = member(entry, "build_horizon_days"); v && v->is_number()) b.build_horizon_days = *v;
      if (const json* v = member(entry, "log_horizon_days"); v && v->is_number()) b.log_horizon_days = *v;
      if (const json* v = member(entry, "locks")) b.locks = lock_accesses(*v);

      std::string label = b.name.empty() ? "builder" : "builder '" + b.name + "'";
      b.builddir = string_member(entry, "builddir").value_or(default_builddir(b.name));
      if (fs::path dir(b.builddir); !b.builddir.empty() && (dir.is_absolute() || has_dot_dot(dir))) {
        error(pointer + "/builddir", "builddir must be a relative path inside the master's folder");
      }
      b.workerbuilddir = string_member(entry, "workerbuilddir").value_or(b.builddir);
      if (const json* v = member(entry, "workers"); v && v->is_array() && v->empty()) {
        error(pointer + "/workers", label + " has no workers");
      }
      if (const json* v = member(entry, "steps"); v && v->is_array()) {
        if (v->empty()) error(pointer + "/steps", label + " has no steps");
        for (size_t s = 0; s < v->size(); ++s) {
          std::string step_pointer = pointer + "/steps/" + std::to_string(s);
          auto step = component(KILN_KIND_STEP, (*v)[s], step_pointer);
          if (!step) continue;
          policy_reference(step_pointer + "/log_eval", "log_eval");
          b.steps.push_back(std::move(*step));
        }
        check_unique(b.steps, "step", " in " + label);
        default_names(b.steps, 0);
      }
      config_.builders.push_back(std::move(b));
    }
  }

  void read_locks() {
    const json* entries = member(doc_.root, "locks");
    if (entries == nullptr || !entries->is_array()) return;
    for (size_t i = 0; i < entries->size(); ++i) {
      const json& entry = (*entries)[i];
      if (!entry.is_object()) continue;
      LockConfig lock;
      lock.pointer = "/locks/" + std::to_string(i);
      lock.name = string_member(entry, "name").value_or("");
      lock.per_worker = string_member(entry, "type").value_or("master") == "worker";
      if (const json* v = member(entry, "max_count"); v && v->is_number_integer()) lock.max_count = v->get<int>();
      if (const json* v = member(entry, "max_count_for_worker"); v && v->is_object()) {
        if (!lock.per_worker) {
          error(lock.pointer + "/max_count_for_worker", "max_count_for_worker needs a worker lock (type: worker)", true);
        }
        for (const auto& [worker, count] : v->items()) {
          if (count.is_number_integer()) lock.max_count_for_worker[worker] = count.get<int>();
        }
      }
      config_.locks.push_back(std::move(lock));
    }
  }

  // Every use names a declared lock and asks no more than it can ever give.
  void check_locks() {
    check_unique(config_.locks, "lock");
    std::vector<std::string> names;
    std::map<std::string, const LockConfig*> by_name;
    for (const auto& l : config_.locks) {
      names.push_back(l.name);
      by_name.emplace(l.name, &l);
    }
    std::set<std::string> worker_names;
    std::vector<std::string> workers;
    for (const auto& w : config_.workers) {
      worker_names.insert(w.name);
      workers.push_back(w.name);
    }
    for (const auto& l : config_.locks) {
      for (const auto& [worker, count] : l.max_count_for_worker) {
        if (worker_names.count(worker) != 0) continue;
        std::string hint = closest_match(worker, workers);
        error(l.pointer + "/max_count_for_worker/" + worker,
              "unknown worker '" + worker + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"), true);
      }
    }
    auto check_uses = [&](const std::string& list_pointer) {
      json::json_pointer where(list_pointer);
      if (!doc_.root.contains(where) || !doc_.root.at(where).is_array()) return;
      const json& listed = doc_.root.at(where);
      std::set<std::string> seen;
      for (size_t i = 0; i < listed.size(); ++i) {
        const std::string pointer = list_pointer + "/" + std::to_string(i);
        std::vector<LockAccess> one = lock_accesses(json::array({listed[i]}));
        if (one.empty()) continue;
        const LockAccess& use = one.front();
        auto found = by_name.find(use.name);
        if (found == by_name.end()) {
          std::string hint = closest_match(use.name, names);
          error(pointer, "unknown lock '" + use.name + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
          continue;
        }
        if (!seen.insert(use.name).second) error(pointer, "lock '" + use.name + "' is listed twice");
        const LockConfig& lock = *found->second;
        int most = lock.max_count;
        for (const auto& [worker, count] : lock.max_count_for_worker) most = std::max(most, count);
        if (!use.exclusive && use.count > most) {
          error(pointer, "count " + std::to_string(use.count) + " of lock '" + use.name +
                             "' is more than its max_count " + std::to_string(most) + ": it could never be taken");
        }
      }
    };
    for (const auto& b : config_.builders) {
      check_uses(b.pointer + "/locks");
      for (const auto& step : b.steps) check_uses(step.pointer + "/locks");
    }
  }

  static bool has_dot_dot(const fs::path& path) {
    return std::any_of(path.begin(), path.end(), [](const fs::path& part) { return part == ".."; });
  }

  static std::string default_builddir(std::string name) {
    std::replace(name.begin(), name.end(), ' ', '_');
    return name;
  }

  // Explicit names only: defaults are made unique where they are made.
  template <typename Item>
  void check_unique(const std::vector<Item>& items, const std::string& what, const std::string& where = "") {
    std::map<std::string, std::string> first;
    for (const auto& item : items) {
      if (item.name.empty()) continue;
      std::string name_pointer = item.pointer + "/name";
      json::json_pointer written(name_pointer);
      if (!doc_.root.contains(written)) continue;
      auto [prior, fresh] = first.emplace(item.name, name_pointer);
      if (!fresh) {
        error(name_pointer, "duplicate " + what + " name '" + item.name + "'" + where + " (first at " +
                                position_text(doc_.locate(prior->second)) + ")");
      }
    }
  }

  void check_names() {
    check_unique(config_.workers, "worker");
    check_unique(config_.change_sources, "change source");
    check_unique(config_.schedulers, "scheduler");
    check_unique(config_.builders, "builder");
    check_unique(config_.reporters, "reporter");
    check_unique(config_.policies, "policy");
    // Defaulted names can still collide with a written one.
    for (auto* list : {&config_.change_sources, &config_.reporters}) {
      std::map<std::string, int> seen;
      for (const auto& c : *list) ++seen[c.name];
      for (const auto& c : *list) {
        if (!doc_.root.contains(json::json_pointer(c.pointer + "/name")) && seen[c.name] > 1) {
          error(c.pointer, "the default name '" + c.name + "' is also written on another entry; give this one a name");
        }
      }
    }
    for (const auto& w : config_.workers) {
      if (!w.name.empty() && !safe_name(w.name, false)) {
        error(w.pointer + "/name", "worker name '" + w.name +
                                       "' may only hold letters, digits, '-', '_' and '.', not starting with '.' or '-'");
      }
    }
    std::map<std::string, std::string> builddirs;
    for (const auto& b : config_.builders) {
      if (!b.name.empty() && !safe_name(b.name, true)) {
        error(b.pointer + "/name", "builder name '" + b.name +
                                       "' may only hold letters, digits, inner spaces, '-', '_' and '.', "
                                       "not starting with '.' or '-'");
      }
      if (b.builddir.empty()) continue;
      auto [prior, fresh] = builddirs.emplace(b.builddir, b.name);
      if (!fresh && prior->second != b.name) {
        error(b.pointer, "builder '" + b.name + "' would share builddir '" + b.builddir + "' with builder '" +
                             prior->second + "'");
      }
    }
  }

  void check_references() {
    std::vector<std::string> workers;
    for (const auto& w : config_.workers) workers.push_back(w.name);
    std::vector<std::string> builders;
    for (const auto& b : config_.builders) builders.push_back(b.name);
    // Thousands of builders each naming workers: look names up, not through.
    const std::set<std::string> worker_set(workers.begin(), workers.end());
    const std::set<std::string> builder_set(builders.begin(), builders.end());

    auto check_list = [&](const std::string& list_pointer, const std::vector<std::string>& declared,
                          const std::string& what) {
      json::json_pointer where(list_pointer);
      if (!doc_.root.contains(where) || !doc_.root.at(where).is_array()) return;
      const json& listed = doc_.root.at(where);
      std::set<std::string> seen;
      const std::set<std::string>& declared_set = what == "worker" ? worker_set : builder_set;
      for (size_t i = 0; i < listed.size(); ++i) {
        if (!listed[i].is_string()) continue;
        std::string name = listed[i].get<std::string>();
        std::string pointer = list_pointer + "/" + std::to_string(i);
        if (declared_set.count(name) == 0) {
          std::string hint = closest_match(name, declared);
          error(pointer, "unknown " + what + " '" + name + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
        } else if (!seen.insert(name).second) {
          error(pointer, what + " '" + name + "' is listed twice");
        }
      }
    };
    for (const auto& b : config_.builders) check_list(b.pointer + "/workers", workers, "worker");
    for (const auto& s : config_.schedulers) check_list(s.pointer + "/builders", builders, "builder");

    std::vector<std::string> policies;
    for (const auto& p : config_.policies) policies.push_back(p.name);
    for (const auto& ref : policy_refs_) {
      auto found = policy_hooks_.find(ref.name);
      bool declared = std::find(policies.begin(), policies.end(), ref.name) != policies.end();
      if (!declared) {
        std::string hint = closest_match(ref.name, policies);
        error(ref.pointer, "unknown policy '" + ref.name + "'" + (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      } else if (found != policy_hooks_.end() && found->second != ref.hook) {
        error(ref.pointer, "policy '" + ref.name + "' is a '" + found->second.value_or("(no hook)") +
                               "' policy; this key needs a '" + ref.hook + "' policy");
      }
    }
  }

  struct PolicyRef {
    std::string pointer;
    std::string name;
    std::string hook;
  };

  const ConfigDocument& doc_;
  const ComponentCatalog& catalog_;
  MasterConfig config_;
  std::vector<Diagnostic> errors_;
  std::vector<PolicyRef> policy_refs_;
  std::map<std::string, std::optional<std::string>> policy_hooks_;  // policy name -> hook
};

}  // namespace

std::vector<LockAccess> lock_accesses(const json& locks) {
  std::vector<LockAccess> out;
  if (!locks.is_array()) return out;
  for (const auto& use : locks) {
    LockAccess access;
    if (use.is_string()) {
      access.name = use.get<std::string>();
    } else if (use.is_object() && use.contains("name") && use["name"].is_string()) {
      access.name = use["name"].get<std::string>();
      access.exclusive = use.value("access", std::string("counting")) == "exclusive";
      if (const auto it = use.find("count"); it != use.end() && it->is_number_integer()) access.count = it->get<int>();
    } else {
      continue;
    }
    if (access.exclusive) access.count = 1;
    out.push_back(std::move(access));
  }
  return out;
}

CheckResult check_master_config(const ConfigDocument& doc, const ComponentCatalog& catalog) {
  try {
    return Checker(doc, catalog).run();
  } catch (const std::exception& e) {
    // A bug or a throwing catalog must still come out as a diagnostic.
    CheckResult failed;
    failed.errors.push_back(Diagnostic{SourceLocation{doc.main_file.string(), 0, 0}, "",
                                       redact_secrets(doc, std::string("internal error while checking: ") + e.what())});
    return failed;
  }
}

}  // namespace kiln::config
