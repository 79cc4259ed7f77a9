#include "config/yaml_document.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
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

// The node graph of one document, as yaml-cpp's LoadAll would build it (an
// alias is the anchored node itself, marks are where each node starts) but
// in one flat vector: yaml-cpp's own nodes, each a web of shared pointers,
// cost more to build and free than the conversion that reads them.
struct Graph {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  struct Node {
    Kind kind = Kind::kNull;
    YAML::Mark mark = YAML::Mark::null_mark();
    std::string tag;
    std::string scalar;
    std::vector<size_t> children;  // a map's as key, value, key, value ...
  };
  std::vector<Node> nodes;
  std::vector<size_t> roots;  // one per document

  const Node& at(size_t index) const { return nodes[index]; }
};

class GraphBuilder final : public YAML::EventHandler {
 public:
  explicit GraphBuilder(Graph& graph) : graph_(graph) {}

  void OnDocumentStart(const YAML::Mark&) override {
    anchors_.clear();
    open_.clear();
    has_root_ = false;
  }
  void OnDocumentEnd() override {
    if (!has_root_) {  // as yaml-cpp: an empty document is a null node
      graph_.nodes.emplace_back();
      graph_.roots.push_back(graph_.nodes.size() - 1);
    }
  }
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    attach(add(Graph::Kind::kNull, mark, anchor));
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    // The parser has already refused an alias to an undefined anchor.
    if (anchor == 0 || anchor > anchors_.size()) throw YAML::ParserException(YAML::Mark::null_mark(), "unknown anchor");
    attach(anchors_[anchor - 1]);
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    size_t index = add(Graph::Kind::kScalar, mark, anchor);
    graph_.nodes[index].tag = tag;
    graph_.nodes[index].scalar = value;
    attach(index);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(Graph::Kind::kSequence, mark, tag, anchor);
  }
  void OnSequenceEnd() override { open_.pop_back(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(Graph::Kind::kMap, mark, tag, anchor);
  }
  void OnMapEnd() override { open_.pop_back(); }

 private:
  size_t add(Graph::Kind kind, const YAML::Mark& mark, YAML::anchor_t anchor) {
    graph_.nodes.emplace_back();
    graph_.nodes.back().kind = kind;
    graph_.nodes.back().mark = mark;
    size_t index = graph_.nodes.size() - 1;
    if (anchor != 0) {
      if (anchors_.size() < anchor) anchors_.resize(anchor);
      anchors_[anchor - 1] = index;
    }
    return index;
  }
  void open(Graph::Kind kind, const YAML::Mark& mark, const std::string& tag,
            YAML::anchor_t anchor) {
    size_t index = add(kind, mark, anchor);
    graph_.nodes[index].tag = tag;
    // Attached before its content, so a recursive alias inside finds it.
    attach(index);
    open_.push_back(index);
  }
  void attach(size_t index) {
    if (open_.empty()) {
      if (!has_root_) graph_.roots.push_back(index);
      has_root_ = true;
      return;
    }
    graph_.nodes[open_.back()].children.push_back(index);
  }

  Graph& graph_;
  std::vector<size_t> anchors_;  // anchor n is anchors_[n - 1]
  std::vector<size_t> open_;     // collections being filled, innermost last
  bool has_root_ = false;
};

class Converter {
 public:
  Converter(const Graph& graph, std::string file, YamlParseResult& out)
      : graph_(graph), file_(std::move(file)), out_(out) {}

  nlohmann::json convert(size_t index, const std::string& pointer,
                         const SourceLocation& fallback, int depth) {
    const Graph::Node& node = graph_.at(index);
    if (depth > kMaxDepth) {
      error(location_of(node.mark, file_), "nesting is too deep (a recursive alias?)");
      return nullptr;
    }
    SourceLocation here = location_of(node.mark, file_);
    // An empty value ("key:" then a newline) is marked where the next token
    // starts; the key is where a reader looks.
    if (node.kind == Graph::Kind::kNull && (here.line == 0 || here.line > fallback.line) &&
        fallback.line > 0) {
      here = fallback;
    }
    out_.tree.locations.insert_or_assign(pointer, here);
    switch (node.kind) {
      case Graph::Kind::kNull:
        return nullptr;
      case Graph::Kind::kScalar:
        return scalar(node, pointer, here);
      case Graph::Kind::kSequence: {
        nlohmann::json array = nlohmann::json::array();
        array.get_ref<nlohmann::json::array_t&>().reserve(node.children.size());
        std::string child = pointer + "/";
        const size_t base = child.size();
        for (size_t i = 0; i < node.children.size(); ++i) {
          child.resize(base);
          child += std::to_string(i);
          array.push_back(convert(node.children[i], child, SourceLocation{}, depth + 1));
        }
        return array;
      }
      case Graph::Kind::kMap:
        return mapping(node, pointer, depth);
    }
    return nullptr;
  }

 private:
  void error(const SourceLocation& where, std::string message) {
    out_.errors.push_back(Diagnostic{where, "", std::move(message)});
  }

  nlohmann::json scalar(const Graph::Node& node, const std::string& pointer,
                        const SourceLocation& here) {
    const std::string& text = node.scalar;
    const std::string& tag = node.tag;
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

  using Entry = std::pair<const Graph::Node*, size_t>;  // key, value's index

  // A mapping's entries with `<<` merges resolved: own keys first, then
  // merged keys that are not already present, earlier sources winning.
  void collect_entries(const Graph::Node& map, std::vector<Entry>& entries,
                       std::unordered_set<std::string_view>& seen, bool own, int depth) {
    if (depth > kMaxDepth) return;
    std::vector<size_t> merges;
    std::unordered_map<std::string_view, int> first_seen;  // key -> its line
    for (size_t i = 0; i + 1 < map.children.size(); i += 2) {
      const Graph::Node& key = graph_.at(map.children[i]);
      const size_t value = map.children[i + 1];
      if (key.kind != Graph::Kind::kScalar) {
        if (own) error(location_of(key.mark, file_), "mapping keys must be plain strings");
        continue;
      }
      if (key.scalar == "<<" && key.tag == "?") {
        merges.push_back(value);
        continue;
      }
      if (own) {
        SourceLocation key_at = location_of(key.mark, file_);
        auto [prior, fresh] = first_seen.emplace(key.scalar, key_at.line);
        if (!fresh) {
          error(key_at, "duplicate key '" + key.scalar + "' (first at line " +
                            std::to_string(prior->second) + ")");
          continue;
        }
      }
      if (seen.insert(key.scalar).second) entries.emplace_back(&key, value);
    }
    for (size_t index : merges) {
      const Graph::Node& source = graph_.at(index);
      if (source.kind == Graph::Kind::kMap) {
        collect_entries(source, entries, seen, false, depth + 1);
      } else if (source.kind == Graph::Kind::kSequence) {
        for (size_t item_index : source.children) {
          const Graph::Node& item = graph_.at(item_index);
          if (item.kind == Graph::Kind::kMap) {
            collect_entries(item, entries, seen, false, depth + 1);
          } else {
            error(location_of(item.mark, file_), "'<<' merges mappings only");
          }
        }
      } else {
        error(location_of(source.mark, file_), "'<<' merges mappings only");
      }
    }
  }

  nlohmann::json mapping(const Graph::Node& node, const std::string& pointer, int depth) {
    std::vector<Entry> entries;
    std::unordered_set<std::string_view> seen;
    collect_entries(node, entries, seen, true, depth);
    nlohmann::json object = nlohmann::json::object();
    std::string child = pointer + "/";
    const size_t base = child.size();
    for (const auto& [key, value] : entries) {
      child.resize(base);
      child += escape_pointer_token(key->scalar);
      SourceLocation key_at = location_of(key->mark, file_);
      out_.tree.key_locations.insert_or_assign(child, key_at);
      object[key->scalar] = convert(value, child, key_at, depth + 1);
    }
    return object;
  }

  const Graph& graph_;
  std::string file_;
  YamlParseResult& out_;
};

YamlParseResult parse(const std::string& text, const std::string& display_name) {
  YamlParseResult result;
  try {
    Graph graph;
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      GraphBuilder builder(graph);
      while (parser.HandleNextDocument(builder)) {
      }
    }
    if (graph.roots.size() > 1) {
      result.errors.push_back(Diagnostic{location_of(graph.at(graph.roots[1]).mark, display_name),
                                         "", "only one YAML document per file is allowed"});
    }
    if (graph.roots.empty()) {
      result.tree.root = nlohmann::json::object();
      result.tree.locations[""] = SourceLocation{display_name, 1, 1};
      return result;
    }
    Converter converter(graph, display_name, result);
    result.tree.root = converter.convert(graph.roots[0], "", SourceLocation{display_name, 1, 1}, 0);
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
