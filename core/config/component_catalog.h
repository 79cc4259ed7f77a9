#pragma once
// What the configuration checker needs to know about component types, without
// depending on how plugins are loaded. The plugin registry implements it.

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::config {

class ComponentCatalog {
 public:
  virtual ~ComponentCatalog() = default;

  // The JSON Schema of a component type's own configuration keys, or
  // nullptr when no such type of that kind is registered.
  virtual const nlohmann::json* schema_for(kiln_component_kind kind,
                                           std::string_view type_name) const = 0;

  // Every registered type name of a kind (for "did you mean" hints).
  virtual std::vector<std::string> type_names(kiln_component_kind kind) const = 0;

  // The component's own validate() beyond its schema; returns an error
  // message when the plugin rejects the config (defaults already applied).
  virtual std::optional<std::string> check_with_plugin(
      kiln_component_kind kind, std::string_view type_name,
      const nlohmann::json& config) const = 0;

  // For policies: which hook a policy type fills ("collapse_requests", ...).
  virtual std::optional<std::string> policy_hook(std::string_view type_name) const = 0;
};

}  // namespace kiln::config
