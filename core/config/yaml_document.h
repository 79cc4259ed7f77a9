#pragma once
// One YAML file turned into JSON, remembering where every value and every key
// was written. Scalars follow the YAML 1.2 core schema: quoted scalars stay
// strings; plain ones become null, bool, integer or float when they read as
// one, strings otherwise. `<<` merge keys are honoured (yaml-cpp 0.7 does not).

#include "config/diagnostic.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::config {

// A JSON tree with positions, keyed by JSON Pointer relative to its root.
struct YamlTree {
  nlohmann::json root;
  std::map<std::string, SourceLocation> locations;
  std::map<std::string, SourceLocation> key_locations;
  // Pointers of strings written as plain (unquoted) scalars: a substitution
  // that fills such a scalar entirely is typed as if written there.
  std::set<std::string> plain_strings;
};

struct YamlParseResult {
  YamlTree tree;
  std::vector<Diagnostic> errors;  // empty when the tree is usable
};

// Reads `file`; positions name it `display_name`. Never throws.
YamlParseResult parse_yaml_file(const std::filesystem::path& file,
                                const std::string& display_name);
// The same for text already in memory (tests, stdin).
YamlParseResult parse_yaml_text(const std::string& text,
                                const std::string& display_name);

// How a plain scalar reads under the YAML 1.2 core schema.
nlohmann::json resolve_plain_scalar(std::string_view text);

// RFC 6901 escaping of one reference token ("a/b" -> "a~1b").
std::string escape_pointer_token(std::string_view token);

// Copies every entry of `src` at `from` or below it to the same place below
// `to` in `dst` (std::map or std::set keyed by pointer).
template <typename Container>
void copy_pointer_subtree(const Container& src, const std::string& from,
                          Container& dst, const std::string& to) {
  auto copy_range = [&](auto first, auto last) {
    for (auto it = first; it != last; ++it) {
      if constexpr (requires { typename Container::mapped_type; }) {
        dst.insert_or_assign(to + it->first.substr(from.size()), it->second);
      } else {
        dst.insert(to + it->substr(from.size()));
      }
    }
  };
  auto exact = src.find(from);
  if (exact != src.end()) copy_range(exact, std::next(exact));
  // '0' follows '/' in ASCII: [from + "/", from + "0") is exactly the subtree.
  copy_range(src.lower_bound(from + "/"), src.lower_bound(from + "0"));
}

}  // namespace kiln::config
