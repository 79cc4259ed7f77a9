#pragma once
// What reading a master.yaml and checking it against the built plugins'
// schemas and validate() says: every error, one a line, for tests of configuration
// error messages (each names the file, line and key).

#include "config/master_config.h"
#include "config/yaml_document.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <string>

namespace kiln::testing {

inline std::string config_errors(const std::string& yaml) {
  TempDir dir("kiln-config-errors");
  write_file(dir / "master.yaml", yaml);
  kiln::plugin::Registry registry;
  kiln::master::register_builtins(registry);
  for (const auto& e : registry.load_directories({KILN_BUILD_PLUGIN_DIR})) FAIL(e.to_string());
  auto read = kiln::config::read_config_document(dir / "master.yaml");
  // Errors in reading (YAML, includes, ${env:}/${file:}) come first and
  // stop the check, as in `kiln checkconfig`.
  std::string out;
  for (const auto& d : read.errors) out += d.to_string() + "\n";
  if (!read.errors.empty()) return out;
  auto checked = kiln::config::check_master_config(*read.document, registry);
  for (const auto& d : checked.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace kiln::testing
