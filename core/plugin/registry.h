#pragma once
// Every component type the master can instantiate, from plugin libraries and
// from built-in entry functions alike (both go through the same descriptor
// checks and copies). Owns the loaded libraries: they stay mapped until the
// Registry is destroyed, which must happen after every Instance is gone.
//
// A master uses a few of the libraries it finds, and each mapped library
// costs resident memory (its relocated pages, its static data, the TLS
// libraries it pulls in). release_unused() unloads the libraries none of
// whose types was looked up since loading and keeps them "dormant": their
// type names are still known, and the first find() of one loads its
// library again (a reconfig or a dynamically added step naming it).

#include "config/component_catalog.h"
#include "plugin/loader.h"

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln::plugin {

// "change_source", "scheduler", "step", "worker", "reporter", "policy";
// "unknown" for anything else.
std::string_view kind_name(kiln_component_kind kind);
std::optional<kiln_component_kind> kind_from_name(std::string_view name);

struct ComponentType {
  kiln_component_kind kind{};
  std::string type_name, version, summary;
  nlohmann::json schema;  // {"type": "object"} when the plugin gave none
  std::string plugin_name, plugin_version;
  std::filesystem::path library;  // empty for built-ins
  // Host copy, zero-filled beyond the plugin's struct_size; desc.vtable
  // points at `vtables` below, likewise a zero-filled host copy.
  kiln_component_desc desc{};

  union Vtables {
    kiln_change_source_vtable change_source;
    kiln_scheduler_vtable scheduler;
    kiln_step_vtable step;
    kiln_worker_vtable worker;
    kiln_reporter_vtable reporter;
    kiln_policy_vtable policy;
  } vtables{};

  ComponentType() = default;
  // desc.vtable points into this object.
  ComponentType(const ComponentType&) = delete;
  ComponentType& operator=(const ComponentType&) = delete;

  // The kind's vtable, or nullptr when T is not this kind's vtable type.
  template <typename T>
  const T* vtable() const;
};

class Registry final : public config::ComponentCatalog {
 public:
  enum class IfMissing { kError, kSkip };

  Registry() = default;
  // Calls each plugin's shutdown, then unloads, newest first.
  ~Registry() override;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Loads every regular `*.so` file of each folder (by name, not recursive).
  // A missing folder is an error unless if_missing is kSkip (for default
  // search folders). Returns every problem; good libraries still load.
  std::vector<LoadError> load_directories(const std::vector<std::filesystem::path>& dirs,
                                          IfMissing if_missing = IfMissing::kError);
  // All or nothing: a library with one bad component registers none.
  // Loading the same file twice is a no-op.
  std::optional<LoadError> load_library(const std::filesystem::path& file);
  std::optional<LoadError> add_builtin(kiln_plugin_entry_fn entry, std::string label);

  // Loads a dormant type's library first (see release_unused); nullptr
  // when no library provides the type or the dormant one no longer loads
  // (logged).
  const ComponentType* find(kiln_component_kind kind, std::string_view type_name) const;

  // Unloads, newest first, every library none of whose types find() has
  // returned, and remembers its types as dormant. Call it only while no
  // Instance of such a type exists (before the engine starts). Returns how
  // many libraries were unloaded.
  size_t release_unused();

  // Sorted by kind, then type name. Loaded types only.
  std::vector<const ComponentType*> all() const;
  // The loaded plugins, in load order.
  std::vector<const PluginLibrary*> plugins() const;

  // config::ComponentCatalog
  const nlohmann::json* schema_for(kiln_component_kind kind,
                                   std::string_view type_name) const override;
  // Dormant types included.
  std::vector<std::string> type_names(kiln_component_kind kind) const override;
  std::optional<std::string> check_with_plugin(kiln_component_kind kind,
                                               std::string_view type_name,
                                               const nlohmann::json& config) const override;
  std::optional<std::string> policy_hook(std::string_view type_name) const override;

 private:
  using TypeKey = std::pair<int, std::string>;

  std::optional<LoadError> add(std::unique_ptr<PluginLibrary> lib);
  // Loads the dormant library providing `key`, if any.
  const ComponentType* wake(const TypeKey& key);

  std::vector<std::unique_ptr<PluginLibrary>> libraries_;
  std::vector<std::unique_ptr<ComponentType>> types_;
  std::map<TypeKey, ComponentType*> index_;
  std::vector<std::filesystem::path> loaded_files_;  // canonical
  // Libraries (canonical file) whose types find() returned.
  mutable std::set<std::filesystem::path> used_files_;
  // Types of released libraries, and those libraries' canonical files.
  std::map<TypeKey, std::filesystem::path> dormant_;
  std::set<std::filesystem::path> dormant_files_;
};

namespace detail {
template <typename T>
constexpr int vtable_kind() {
  if constexpr (std::is_same_v<T, kiln_change_source_vtable>) return KILN_KIND_CHANGE_SOURCE;
  else if constexpr (std::is_same_v<T, kiln_scheduler_vtable>) return KILN_KIND_SCHEDULER;
  else if constexpr (std::is_same_v<T, kiln_step_vtable>) return KILN_KIND_STEP;
  else if constexpr (std::is_same_v<T, kiln_worker_vtable>) return KILN_KIND_WORKER;
  else if constexpr (std::is_same_v<T, kiln_reporter_vtable>) return KILN_KIND_REPORTER;
  else if constexpr (std::is_same_v<T, kiln_policy_vtable>) return KILN_KIND_POLICY;
  else return 0;
}
}  // namespace detail

template <typename T>
const T* ComponentType::vtable() const {
  static_assert(detail::vtable_kind<T>() != 0, "not a component vtable type");
  if (static_cast<int>(kind) != detail::vtable_kind<T>()) return nullptr;
  return reinterpret_cast<const T*>(&vtables);
}

}  // namespace kiln::plugin
