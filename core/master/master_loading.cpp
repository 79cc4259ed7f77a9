#include "master/master_loading.h"

#include "master/builtin_plugin.h"

#include <algorithm>

namespace kiln::master {

namespace fs = std::filesystem;

fs::path master_yaml_path(const fs::path& dir_or_file) {
  std::error_code ec;
  if (fs::is_directory(dir_or_file, ec)) return dir_or_file / "master.yaml";
  return dir_or_file;
}

void register_builtins(plugin::Registry& registry) {
  if (auto error = registry.add_builtin(&builtin_plugin_entry, "<built-in>")) {
    // A built-in that fails the loader's checks is a bug in this binary.
    throw std::logic_error(error->to_string());
  }
}

std::vector<plugin::LoadError> load_plugins(plugin::Registry& registry,
                                           const std::vector<fs::path>& config_paths,
                                           std::vector<fs::path>& searched) {
  // Folders the user named must exist; the default ones may not.
  searched = plugin::plugin_search_path(config_paths);
  std::vector<fs::path> defaults;
  for (const auto& dir : searched) {
    if (std::find(config_paths.begin(), config_paths.end(), dir) == config_paths.end()) {
      defaults.push_back(dir);
    }
  }
  auto errors = registry.load_directories(config_paths, plugin::Registry::IfMissing::kError);
  auto more = registry.load_directories(defaults, plugin::Registry::IfMissing::kSkip);
  errors.insert(errors.end(), more.begin(), more.end());
  return errors;
}

MasterLoad load_master(const fs::path& path) {
  MasterLoad result;
  auto read = config::read_config_document(master_yaml_path(path));
  for (const auto& d : read.errors) result.errors.push_back(d.to_string());
  if (!read.document) return result;

  LoadedMaster loaded;
  loaded.registry = std::make_unique<plugin::Registry>();
  register_builtins(*loaded.registry);
  auto errors = load_plugins(*loaded.registry, config::plugin_paths_of(*read.document),
                             loaded.plugin_search_path);
  for (const auto& e : errors) result.errors.push_back(e.to_string());
  if (!result.errors.empty()) return result;

  auto checked = config::check_master_config(*read.document, *loaded.registry);
  for (const auto& d : checked.errors) result.errors.push_back(d.to_string());
  if (!checked.config) return result;
  loaded.config = std::move(*checked.config);
  result.master = std::move(loaded);
  return result;
}

}  // namespace kiln::master
