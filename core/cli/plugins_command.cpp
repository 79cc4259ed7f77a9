// `kiln plugins [DIR] [TYPE]`: what component types this kiln can load, and
// each type's configuration, documented from its JSON Schema.

#include "cli/commands.h"
#include "master/master_loading.h"
#include "plugin/registry.h"

#include "config/diagnostic.h"
#include "config/master_config.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <sstream>

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kind_name(kiln_component_kind kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return "change_source";
    case KILN_KIND_SCHEDULER: return "scheduler";
    case KILN_KIND_STEP: return "step";
    case KILN_KIND_WORKER: return "worker";
    case KILN_KIND_REPORTER: return "reporter";
    case KILN_KIND_POLICY: return "policy";
  }
  return "?";
}

std::string type_of(const json& schema) {
  if (schema.contains("enum")) {
    std::string out = "one of";
    for (const auto& v : schema["enum"]) out += " " + v.dump();
    return out;
  }
  if (!schema.contains("type")) {
    if (schema.contains("anyOf") || schema.contains("oneOf")) {
      std::string out;
      for (const auto& alt : schema.value("anyOf", schema.value("oneOf", json::array()))) {
        out += (out.empty() ? "" : " or ") + type_of(alt);
      }
      return out;
    }
    return "any";
  }
  const json& t = schema["type"];
  std::string out;
  if (t.is_array()) {
    for (const auto& x : t) out += (out.empty() ? "" : " or ") + x.get<std::string>();
  } else {
    out = t.get<std::string>();
  }
  if (out == "array" && schema.contains("items") && schema["items"].is_object()) {
    out += " of " + type_of(schema["items"]);
  }
  return out;
}

// "keys: command*, env, workdir" — * marks required keys.
std::string keys_summary(const json& schema) {
  if (!schema.contains("properties") || schema["properties"].empty()) return "no settings";
  std::set<std::string> required;
  for (const auto& r : schema.value("required", json::array())) required.insert(r.get<std::string>());
  std::string out;
  for (const auto& [key, _] : schema["properties"].items()) {
    out += (out.empty() ? "" : ", ") + key + (required.count(key) ? "*" : "");
  }
  return out;
}

void describe_properties(std::ostringstream& out, const json& schema, const std::string& indent) {
  std::set<std::string> required;
  for (const auto& r : schema.value("required", json::array())) required.insert(r.get<std::string>());
  const json schema_properties = schema.value("properties", json::object());
  for (const auto& [key, prop] : schema_properties.items()) {
    out << indent << key << (required.count(key) ? " (required)" : "") << ": " << type_of(prop);
    if (prop.contains("default")) out << ", default " << prop["default"].dump();
    out << "\n";
    if (prop.contains("description")) {
      out << indent << "    " << prop["description"].get<std::string>() << "\n";
    }
    if (prop.value("type", json()) == "object" && prop.contains("properties")) {
      describe_properties(out, prop, indent + "    ");
    }
    const json items = prop.value("items", json());
    if (items.is_object() && items.contains("properties")) {
      out << indent << "    each item:\n";
      describe_properties(out, items, indent + "      ");
    }
  }
}

std::string describe(const plugin::ComponentType& type) {
  std::ostringstream out;
  out << kind_name(type.kind) << " '" << type.type_name << "' " << type.version << "\n";
  out << "  from " << type.plugin_name << " " << type.plugin_version << " ("
      << (type.library.empty() ? std::string("built into kiln") : type.library.string()) << ")\n";
  if (!type.summary.empty()) out << "  " << type.summary << "\n";
  out << "\nsettings (besides the keys every " << kind_name(type.kind)
      << " has; see docs/configuration.md):\n";
  if (type.schema.value("properties", json::object()).empty()) {
    out << "  none\n";
  } else {
    describe_properties(out, type.schema, "  ");
  }
  out << "\nJSON Schema:\n" << type.schema.dump(2) << "\n";
  return out.str();
}

}  // namespace

int plugins_command(const Args& args) {
  std::vector<fs::path> config_paths;
  std::string wanted;
  for (const auto& arg : args) {
    std::error_code ec;
    if (wanted.empty() && config_paths.empty() && fs::exists(master::master_yaml_path(arg), ec) &&
        fs::is_directory(arg, ec)) {
      auto read = config::read_config_document(master::master_yaml_path(arg));
      if (!read.document) {
        for (const auto& d : read.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
        return 1;
      }
      config_paths = config::plugin_paths_of(*read.document);
    } else if (wanted.empty()) {
      wanted = arg;
    } else {
      std::fprintf(stderr, "kiln plugins: unexpected argument '%s'\n", arg.c_str());
      return 2;
    }
  }

  plugin::Registry registry;
  master::register_builtins(registry);
  std::vector<fs::path> search_path;
  auto errors = master::load_plugins(registry, config_paths, search_path);
  for (const auto& e : errors) std::fprintf(stderr, "error: %s\n", e.to_string().c_str());

  if (!wanted.empty()) {
    std::vector<const plugin::ComponentType*> matches;
    std::vector<std::string> names;
    for (const auto* type : registry.all()) {
      names.push_back(type->type_name);
      if (type->type_name == wanted) matches.push_back(type);
    }
    if (matches.empty()) {
      std::string hint = config::closest_match(wanted, names);
      std::fprintf(stderr, "kiln plugins: no component type '%s'%s\n", wanted.c_str(),
                   hint.empty() ? "" : ("; did you mean '" + hint + "'?").c_str());
      return 1;
    }
    for (const auto* type : matches) std::fputs(describe(*type).c_str(), stdout);
    return errors.empty() ? 0 : 1;
  }

  std::printf("%-14s %-24s %-9s %-26s %s\n", "KIND", "TYPE", "VERSION", "LIBRARY", "SETTINGS");
  for (const auto* type : registry.all()) {
    std::string library = type->library.empty() ? "<built-in>" : type->library.filename().string();
    std::printf("%-14s %-24s %-9s %-26s %s\n", kind_name(type->kind), type->type_name.c_str(),
                type->version.c_str(), library.c_str(), keys_summary(type->schema).c_str());
  }
  std::printf("\nsearched:");
  for (const auto& p : search_path) std::printf(" %s", p.c_str());
  std::printf("\n`kiln plugins TYPE` documents one type.\n");
  return errors.empty() ? 0 : 1;
}

}  // namespace kiln::cli
