#pragma once
// Turning a master folder into checked configuration: read master.yaml, load
// the plugins it and the environment point at, check every component against
// its plugin's schema. Shared by `kiln checkconfig`, `kiln start` and reconfig.

#include "config/master_config.h"
#include "plugin/registry.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::master {

struct LoadedMaster {
  std::unique_ptr<plugin::Registry> registry;
  config::MasterConfig config;
  std::vector<std::filesystem::path> plugin_search_path;
};

struct MasterLoad {
  std::optional<LoadedMaster> master;
  std::vector<std::string> errors;  // each ready to print, one per line
};

// `path` is a master folder or a master.yaml file.
MasterLoad load_master(const std::filesystem::path& path);

// The master.yaml a folder-or-file argument designates.
std::filesystem::path master_yaml_path(const std::filesystem::path& dir_or_file);

// Loads plugins from the config's folders (which must exist), then from the
// default search path (KILN_PLUGIN_PATH, installed, beside the binary).
// `searched` receives every folder in search order.
std::vector<plugin::LoadError> load_plugins(plugin::Registry& registry,
                                           const std::vector<std::filesystem::path>& config_paths,
                                           std::vector<std::filesystem::path>& searched);

// Registers the components compiled into the core (through the same
// descriptor path as plugin libraries).
void register_builtins(plugin::Registry& registry);

}  // namespace kiln::master
