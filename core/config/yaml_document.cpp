#include "config/yaml_document.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

namespace kiln::config {
namespace {

// Deeper than any sensible configuration; stops runaway alias graphs.
constexpr int kMaxDepth = 200;

template <typename Pred>
bool all_of(std::string_view s, Pred pred) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

bool is_octal_digit(int c) { return c >= '0' && c <= '7'; }

// [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool looks_like_float(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i - start;
  };
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (digits() == 0) return false;
  } else {
    if (digits() == 0) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

std::optional<nlohmann::json> parse_integer(std::string_view digits, int base, bool negative) {
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  if (!negative) {
    if (magnitude <= static_cast<uint64_t>(INT64_MAX)) return nlohmann::json(static_cast<int64_t>(magnitude));
    return nlohmann::json(magnitude);
  }
  if (magnitude <= static_cast<uint64_t>(INT64_MAX) + 1) {
    return nlohmann::json(static_cast<int64_t>(0 - magnitude));
  }
  return std::nullopt;
}

SourceLocation location_of(const YAML::Mark& mark, const std::string& file) {
  // yaml-cpp counts from 0 and uses -1 for "no position".
  if (mark.line < 0) return SourceLocation{file, 0, 0};
  return SourceLocation{file, mark.line + 1, mark.column + 1};
}

class Converter {
 public:
  Converter(std::string file, YamlParseResult& out) : file_(std::move(file)), out_(out) {}

  nlohmann::json convert(const YAML::Node& node, const std::string& pointer,
                         const SourceLocation& fallback, int depth) {
    if (depth > kMaxDepth) {
      error(location_of(node.Mark(), file_), "nesting is too deep (a recursive alias?)");
      return nullptr;
    }
    SourceLocation here = location_of(node.Mark(), file_);
    // An empty value ("key:" then a newline) is marked where the next token
    // starts; the key is where a reader looks.
    if (node.IsNull() && (here.line == 0 || here.line > fallback.line) && fallback.line > 0) {
      here = fallback;
    }
    out_.tree.locations[pointer] = here;
    switch (node.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        return nullptr;
      case YAML::NodeType::Scalar:
        return scalar(node, pointer, here);
      case YAML::NodeType::Sequence: {
        nlohmann::json array = nlohmann::json::array();
        size_t index = 0;
        for (const auto& item : node) {
          array.push_back(convert(item, pointer + "/" + std::to_string(index), SourceLocation{}, depth + 1));
          ++index;
        }
        return array;
      }
      case YAML::NodeType::Map:
        return mapping(node, pointer, depth);
    }
    return nullptr;
  }

 private:
  void error(const SourceLocation& where, std::string message) {
    out_.errors.push_back(Diagnostic{where, "", std::move(message)});
  }

  nlohmann::json scalar(const YAML::Node& node, const std::string& pointer,
                        const SourceLocation& here) {
    const std::string& text = node.Scalar();
    const std::string& tag = node.Tag();
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return text;  // quoted or !!str
    if (tag == "?" || tag.empty()) {
      nlohmann::json value = resolve_plain_scalar(text);
      if (value.is_string()) out_.tree.plain_strings.insert(pointer);
      return value;
    }
    static const std::map<std::string, nlohmann::json::value_t> kTypedTags = {
        {"tag:yaml.org,2002:int", nlohmann::json::value_t::number_integer},
        {"tag:yaml.org,2002:float", nlohmann::json::value_t::number_float},
        {"tag:yaml.org,2002:bool", nlohmann::json::value_t::boolean},
        {"tag:yaml.org,2002:null", nlohmann::json::value_t::null},
    };
    auto wanted = kTypedTags.find(tag);
    if (wanted == kTypedTags.end()) {
      error(here, "unsupported YAML tag '" + tag + "'");
      return text;
    }
    nlohmann::json value = resolve_plain_scalar(text);
    bool ok = value.type() == wanted->second ||
              (wanted->second == nlohmann::json::value_t::number_integer && value.is_number_integer()) ||
              (wanted->second == nlohmann::json::value_t::number_float && value.is_number());
    if (!ok) {
      error(here, "value does not read as the type its tag '" + tag + "' asks for");
      return text;
    }
    if (wanted->second == nlohmann::json::value_t::number_float) return value.get<double>();
    return value;
  }

  // A mapping's entries with `<<` merges resolved: own keys first, then
  // merged keys that are not already present, earlier sources winning.
  void collect_entries(const YAML::Node& map, std::vector<std::pair<YAML::Node, YAML::Node>>& entries,
                       std::set<std::string>& seen, bool own, int depth) {
    if (depth > kMaxDepth) return;
    std::vector<YAML::Node> merges;
    std::map<std::string, SourceLocation> first_seen;
    for (const auto& entry : map) {
      YAML::Node key = entry.first;
      YAML::Node value = entry.second;
      SourceLocation key_at = location_of(key.Mark(), file_);
      if (!key.IsScalar()) {
        if (own) error(key_at, "mapping keys must be plain strings");
        continue;
      }
      if (key.Scalar() == "<<" && key.Tag() == "?") {
        merges.push_back(value);
        continue;
      }
      if (own) {
        auto [prior, fresh] = first_seen.emplace(key.Scalar(), key_at);
        if (!fresh) {
          error(key_at, "duplicate key '" + key.Scalar() + "' (first at line " +
                            std::to_string(prior->second.line) + ")");
          continue;
        }
      }
      if (seen.insert(key.Scalar()).second) entries.emplace_back(key, value);
    }
    for (const auto& source : merges) {
      if (source.IsMap()) {
        collect_entries(source, entries, seen, false, depth + 1);
      } else if (source.IsSequence()) {
        for (const auto& item : source) {
          if (item.IsMap()) {
            collect_entries(item, entries, seen, false, depth + 1);
          } else {
            error(location_of(item.Mark(), file_), "'<<' merges mappings only");
          }
        }
      } else {
        error(location_of(source.Mark(), file_), "'<<' merges mappings only");
      }
    }
  }

  nlohmann::json mapping(const YAML::Node& node, const std::string& pointer, int depth) {
    std::vector<std::pair<YAML::Node, YAML::Node>> entries;
    std::set<std::string> seen;
    collect_entries(node, entries, seen, true, depth);
    nlohmann::json object = nlohmann::json::object();
    for (const auto& [key, value] : entries) {
      std::string child = pointer + "/" + escape_pointer_token(key.Scalar());
      SourceLocation key_at = location_of(key.Mark(), file_);
      out_.tree.key_locations[child] = key_at;
      object[key.Scalar()] = convert(value, child, key_at, depth + 1);
    }
    return object;
  }

  std::string file_;
  YamlParseResult& out_;
};

YamlParseResult parse(const std::string& text, const std::string& display_name) {
  YamlParseResult result;
  try {
    std::vector<YAML::Node> documents = YAML::LoadAll(text);
    if (documents.size() > 1) {
      result.errors.push_back(Diagnostic{location_of(documents[1].Mark(), display_name), "",
                                         "only one YAML document per file is allowed"});
    }
    if (documents.empty()) {
      result.tree.root = nlohmann::json::object();
      result.tree.locations[""] = SourceLocation{display_name, 1, 1};
      return result;
    }
    Converter converter(display_name, result);
    result.tree.root = converter.convert(documents[0], "", SourceLocation{display_name, 1, 1}, 0);
  } catch (const YAML::Exception& e) {
    result.errors.push_back(Diagnostic{location_of(e.mark, display_name), "", e.msg});
  } catch (const std::exception& e) {
    result.errors.push_back(Diagnostic{SourceLocation{display_name, 0, 0}, "", e.what()});
  }
  return result;
}

}  // namespace

nlohmann::json resolve_plain_scalar(std::string_view s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  std::string_view body = s;
  bool negative = false;
  if (body[0] == '-' || body[0] == '+') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (all_of(body, [](int c) { return std::isdigit(c); })) {
    if (auto value = parse_integer(body, 10, negative)) return *value;
  }
  // The core schema has no sign on octal and hexadecimal forms.
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o' && all_of(s.substr(2), is_octal_digit)) {
    if (auto value = parse_integer(s.substr(2), 8, false)) return *value;
  }
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x' && all_of(s.substr(2), [](int c) { return std::isxdigit(c); })) {
    if (auto value = parse_integer(s.substr(2), 16, false)) return *value;
  }
  // .inf and .nan stay strings: JSON has no way to hold them.
  if (looks_like_float(s) || all_of(body, [](int c) { return std::isdigit(c); })) {
    return std::strtod(std::string(s).c_str(), nullptr);
  }
  return std::string(s);
}

std::string escape_pointer_token(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

YamlParseResult parse_yaml_text(const std::string& text, const std::string& display_name) {
  return parse(text, display_name);
}

YamlParseResult parse_yaml_file(const std::filesystem::path& file, const std::string& display_name) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    YamlParseResult result;
    result.errors.push_back(Diagnostic{SourceLocation{display_name, 0, 0}, "", "cannot read this file"});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str(), display_name);
}

}  // namespace kiln::config
