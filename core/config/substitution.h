#pragma once
// `${env:NAME}`, `${file:PATH}` and `${matrix:KEY}` inside configuration
// strings. `$${` stands for a literal `${`; any other `${...}` (a shell
// variable in a command, say) is left as written.

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace kiln::config {

struct Substituted {
  std::string text;
  // The string was exactly one reference and nothing else, so a plain
  // scalar may take the referenced value's type.
  bool whole = false;
  nlohmann::json whole_value;       // for a whole ${matrix:..}: the value itself
  std::vector<std::string> secrets;  // every env/file value put into `text`
  std::vector<std::string> errors;   // never quote a substituted value
};

// Replaces ${matrix:KEY} from `values`; leaves `$${`, env and file
// references for substitute_secrets(), which runs later.
Substituted substitute_matrix(const std::string& text,
                              const std::map<std::string, nlohmann::json>& values);

// Replaces ${env:..} and ${file:..} (relative paths against `folder`) and
// turns `$${` into `${`. A ${matrix:..} left over is an error.
Substituted substitute_secrets(const std::string& text, const std::filesystem::path& folder);

// True when `text` holds something either function would act on.
bool has_substitution(const std::string& text);

}  // namespace kiln::config
