#include "config/core_schema.h"

#include <map>

namespace kiln::config {
namespace {

// Kept as schema text rather than code so that core keys and plugin keys are
// checked by the same validator, with the same messages. The prose reference
// is docs/configuration.md; keep both in step.
constexpr const char* kCoreSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "master": {"$ref": "#/definitions/master"},
    "workers": {"type": ["array", "null"], "items": {"$ref": "#/definitions/worker"}},
    "change_sources": {"type": ["array", "null"], "items": {"$ref": "#/definitions/change_source"}},
    "schedulers": {"type": ["array", "null"], "items": {"$ref": "#/definitions/scheduler"}},
    "builders": {"type": ["array", "null"], "items": {"$ref": "#/definitions/builder"}},
    "reporters": {"type": ["array", "null"], "items": {"$ref": "#/definitions/reporter"}},
    "policies": {"type": ["array", "null"], "items": {"$ref": "#/definitions/policy"}},
    "locks": {"type": ["array", "null"], "items": {"$ref": "#/definitions/lock"}}
  },
  "definitions": {
    "name": {"type": "string", "minLength": 1},
    "type": {"type": "string", "minLength": 1},
    "policy_ref": {"type": "string", "minLength": 1},
    "properties": {"type": "object", "default": {}},
    "strings": {"type": "array", "items": {"type": "string"}},
    "env": {
      "type": "object",
      "additionalProperties": {"type": ["string", "array"], "items": {"type": "string"}},
      "default": {}
    },
    "lock": {
      "type": "object",
      "additionalProperties": false,
      "required": ["name"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"enum": ["master", "worker"], "default": "master"},
        "max_count": {"type": "integer", "minimum": 1, "default": 1},
        "max_count_for_worker": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}}
      }
    },
    "lock_uses": {
      "type": "array",
      "items": {
        "type": ["string", "object"],
        "minLength": 1,
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
          "name": {"$ref": "#/definitions/name"},
          "access": {"enum": ["counting", "exclusive"], "default": "counting"},
          "count": {"type": "integer", "minimum": 1, "default": 1}
        }
      }
    },
    "master": {
      "type": ["object", "null"],
      "additionalProperties": false,
      "properties": {
        "title": {"type": "string", "default": "Kiln"},
        "title_url": {"type": "string", "default": ""},
        "url": {"type": "string", "minLength": 1, "default": "http://localhost:8010/"},
        "db": {"type": "string", "minLength": 1, "default": "sqlite:state.sqlite"},
        "plugin_paths": {"$ref": "#/definitions/strings"},
        "collapse_requests": {"type": "boolean", "default": true},
        "prioritize_builders": {"$ref": "#/definitions/policy_ref"},
        "collapse_requests_policy": {"$ref": "#/definitions/policy_ref"},
        "properties": {"$ref": "#/definitions/properties"},
        "log_level": {"enum": ["trace", "debug", "info", "warn", "error", "critical", "off"],
                      "default": "info"},
        "log_max_bytes": {"type": "integer", "minimum": 4096, "default": 10485760},
        "log_max_files": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}
      }
    },
    "worker": {
      "type": "object",
      "required": ["name", "type"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"},
        "max_builds": {"type": "integer", "minimum": 1},
        "properties": {"$ref": "#/definitions/properties"},
        "build_wait_timeout": {"type": "integer",
                               "description": "Latent workers: seconds a started worker waits for another build before it is stopped (Buildbot's build_wait_timeout; 0 stops it after each build, negative never). Default 600."}
      }
    },
    "change_source": {
      "type": "object",
      "required": ["type"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"}
      }
    },
    "scheduler": {
      "type": "object",
      "required": ["name", "type", "builders"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"},
        "builders": {"$ref": "#/definitions/strings"},
        "properties": {"$ref": "#/definitions/properties"}
      }
    },
    "builder": {
      "type": "object",
      "additionalProperties": false,
      "required": ["name", "workers", "steps"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "description": {"type": "string"},
        "workers": {"$ref": "#/definitions/strings"},
        "tags": {"$ref": "#/definitions/strings"},
        "builddir": {"type": "string", "minLength": 1},
        "workerbuilddir": {"type": "string", "minLength": 1},
        "properties": {"$ref": "#/definitions/properties"},
        "env": {"$ref": "#/definitions/env"},
        "collapse_requests": {"type": "boolean"},
        "next_worker": {"$ref": "#/definitions/policy_ref"},
        "next_build": {"$ref": "#/definitions/policy_ref"},
        "can_start_build": {"$ref": "#/definitions/policy_ref"},
        "build_horizon_days": {"type": "number", "minimum": 0},
        "log_horizon_days": {"type": "number", "minimum": 0},
        "locks": {"$ref": "#/definitions/lock_uses"},
        "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}}
      }
    },
    "step": {
      "type": "object",
      "required": ["type"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"},
        "description": {"type": ["string", "array"], "items": {"type": "string"}},
        "description_done": {"type": ["string", "array"], "items": {"type": "string"}},
        "halt_on_failure": {"type": "boolean"},
        "flunk_on_failure": {"type": "boolean"},
        "warn_on_failure": {"type": "boolean"},
        "flunk_on_warnings": {"type": "boolean"},
        "warn_on_warnings": {"type": "boolean"},
        "always_run": {"type": "boolean", "default": false},
        "do_step_if": {"type": ["boolean", "string"], "default": true},
        "hide_step_if": {"type": ["boolean", "string"], "default": false},
        "timeout": {"type": "number", "minimum": 0, "default": 1200},
        "max_time": {"type": "number", "minimum": 0},
        "interrupt_signal": {"enum": ["KILL", "TERM", "INT", "HUP", "QUIT", "USR1", "USR2"],
                             "default": "KILL"},
        "decode_rc": {
          "type": "object",
          "patternProperties": {
            "^-?[0-9]+$": {"enum": ["SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION",
                                    "RETRY", "CANCELLED"]}
          },
          "additionalProperties": false,
          "default": {"0": "SUCCESS"}
        },
        "env": {"$ref": "#/definitions/env"},
        "workdir": {"type": "string", "minLength": 1},
        "locks": {"$ref": "#/definitions/lock_uses"},
        "log_eval": {"$ref": "#/definitions/policy_ref"}
      }
    },
    "reporter": {
      "type": "object",
      "required": ["type"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"}
      }
    },
    "policy": {
      "type": "object",
      "required": ["name", "type"],
      "properties": {
        "name": {"$ref": "#/definitions/name"},
        "type": {"$ref": "#/definitions/type"}
      }
    }
  }
})json";

}  // namespace

const nlohmann::json& core_schema() {
  static const nlohmann::json schema = nlohmann::json::parse(kCoreSchema);
  return schema;
}

namespace {

// A definition on its own has no "#/definitions/..." to refer to; these copies
// have their references replaced by what they name.
nlohmann::json inline_refs(const nlohmann::json& schema) {
  if (schema.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& item : schema) out.push_back(inline_refs(item));
    return out;
  }
  if (!schema.is_object()) return schema;
  if (auto ref = schema.find("$ref"); ref != schema.end() && ref->is_string()) {
    const std::string prefix = "#/definitions/";
    const std::string& target = ref->get_ref<const std::string&>();
    if (target.rfind(prefix, 0) == 0) {
      return inline_refs(core_schema().at("definitions").at(target.substr(prefix.size())));
    }
  }
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : schema.items()) out[key] = inline_refs(value);
  return out;
}

}  // namespace

const nlohmann::json& core_definition(std::string_view name) {
  static const std::map<std::string, nlohmann::json, std::less<>> definitions = [] {
    std::map<std::string, nlohmann::json, std::less<>> out;
    for (const auto& [key, value] : core_schema().at("definitions").items()) out[key] = inline_refs(value);
    return out;
  }();
  return definitions.find(name)->second;
}

std::vector<std::string> core_keys(std::string_view definition) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : core_definition(definition).at("properties").items()) keys.push_back(key);
  return keys;
}

std::string_view definition_name(kiln_component_kind kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return "change_source";
    case KILN_KIND_SCHEDULER: return "scheduler";
    case KILN_KIND_STEP: return "step";
    case KILN_KIND_WORKER: return "worker";
    case KILN_KIND_REPORTER: return "reporter";
    case KILN_KIND_POLICY: return "policy";
  }
  return "";
}

std::string_view kind_words(kiln_component_kind kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return "change source";
    case KILN_KIND_SCHEDULER: return "scheduler";
    case KILN_KIND_STEP: return "step";
    case KILN_KIND_WORKER: return "worker";
    case KILN_KIND_REPORTER: return "reporter";
    case KILN_KIND_POLICY: return "policy";
  }
  return "component";
}

}  // namespace kiln::config
