#pragma once
// A problem found in configuration, told the way a person fixes it:
//   master.yaml:14:7: builders[1].workers[0]: unknown worker 'lnx'; did you mean 'linux'?

#include <string>
#include <string_view>
#include <vector>

namespace kiln::config {

struct SourceLocation {
  std::string file;  // as the user named it (relative paths stay relative)
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
};

struct Diagnostic {
  SourceLocation location;
  std::string path;     // "builders[1].workers[0]", "" for the whole file
  std::string message;

  std::string to_string() const;
};

// "/builders/1/workers/0" -> "builders[1].workers[0]".
std::string pointer_to_path(std::string_view json_pointer);

// The closest candidate by edit distance, when it is close enough to be a
// likely typo; "" otherwise.
std::string closest_match(std::string_view word,
                          const std::vector<std::string>& candidates);

}  // namespace kiln::config
