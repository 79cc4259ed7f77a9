#pragma once
// The JSON Schema of the keys master.yaml's core owns: the top level,
// `master`, builders, and the common keys of every component kind. Whatever
// else a component entry holds belongs to its plugin.

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace kiln::config {

// The whole schema, applied to the document root.
const nlohmann::json& core_schema();

// One of its definitions: "master", "worker", "change_source", "scheduler",
// "builder", "step", "reporter", "policy".
const nlohmann::json& core_definition(std::string_view name);

// The keys of a definition (for a component kind: the keys its plugin never sees).
std::vector<std::string> core_keys(std::string_view definition);

// "change_source" for KILN_KIND_CHANGE_SOURCE, ...
std::string_view definition_name(kiln_component_kind kind);

// "change source" for KILN_KIND_CHANGE_SOURCE, ... (for messages).
std::string_view kind_words(kiln_component_kind kind);

}  // namespace kiln::config
