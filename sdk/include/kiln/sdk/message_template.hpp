#pragma once
// kiln::sdk::MessageTemplate: the template language of notifier messages
// (mail subjects and bodies, chat texts). A small Mustache subset over a
// JSON context, checked against a description of the fields when it is
// parsed, so a misspelt field is a configuration error with its line and
// column rather than an empty spot in a mail:
//
//   {{builder}}            a field (dotted: {{build.number}}); lists print
//                          as "a, b"; in an HTML template the text is escaped
//   {{{body}}} {{&body}}   the same, never escaped
//   {{#changes}}..{{/changes}}  once per item of a list (the item's fields
//                          come first, then the outer ones; {{.}} is the item),
//                          or once when a value is true/non-empty
//   {{^changes}}..{{/changes}}  only when the value is false, null or empty
//   {{! a comment }}
//   A section or comment tag alone on its line, from its first column,
//   takes no line of the output.
//   %(builder)s  %(prop:branch)s   Buildbot's spelling, the same as
//                          {{builder}} and {{prop.branch}}
//
// The fields are described by a JSON value of the context's shape: a
// string for a scalar field, [item] for a list whose items look like
// `item`, an object for a record, and {"*": ...} for a map of any keys
// (properties). Header-only; needs nothing but nlohmann/json.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::sdk {

// A template that does not parse, or names a field the context does not
// have: what() is "line L, column C: ...".
class TemplateError : public std::runtime_error {
 public:
  TemplateError(size_t line, size_t column, const std::string& message)
      : std::runtime_error("line " + std::to_string(line) + ", column " + std::to_string(column) +
                           ": " + message),
        line_(line),
        column_(column) {}
  size_t line() const { return line_; }
  size_t column() const { return column_; }

 private:
  size_t line_, column_;
};

class MessageTemplate {
 public:
  enum class Escape { kNone, kHtml };

  MessageTemplate() = default;
  // Throws TemplateError. `fields` describes the context (see above); null
  // accepts any field.
  MessageTemplate(std::string_view text, const nlohmann::json& fields, Escape escape = Escape::kNone)
      : escape_(escape) {
    Parser parser(text, fields);
    nodes_ = parser.parse();
  }

  std::string render(const nlohmann::json& context) const {
    std::string out;
    std::vector<const nlohmann::json*> stack{&context};
    render_nodes(nodes_, stack, out);
    return out;
  }

  // How a value prints: strings as they are, null as nothing, lists joined
  // with ", ", other values as JSON.
  static std::string text_of(const nlohmann::json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_null()) return {};
    if (value.is_array()) {
      std::string out;
      for (const auto& item : value) {
        if (!out.empty()) out += ", ";
        out += text_of(item);
      }
      return out;
    }
    return value.dump();
  }

  static std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return out;
  }

 private:
  struct Node {
    enum class Kind { kText, kField, kSection, kInverted } kind = Kind::kText;
    std::string text;                // kText: the text; others: the dotted name
    std::vector<std::string> path;   // the name split at dots; empty for "."
    bool raw = false;                // kField: never escaped
    std::vector<Node> children;      // sections
  };

  class Parser {
   public:
    Parser(std::string_view text, const nlohmann::json& fields) : text_(text) {
      if (!fields.is_null()) scopes_.push_back(&fields);
      check_ = !fields.is_null();
    }

    std::vector<Node> parse() {
      std::vector<Node> nodes = parse_until({});
      return nodes;
    }

   private:
    // Parses until the end, or until {{/closing}} when closing is given.
    std::vector<Node> parse_until(const std::optional<std::string>& closing) {
      std::vector<Node> nodes;
      std::string pending;
      auto flush = [&] {
        if (pending.empty()) return;
        Node n;
        n.text = std::move(pending);
        nodes.push_back(std::move(n));
        pending.clear();
      };
      while (pos_ < text_.size()) {
        if (text_.compare(pos_, 2, "{{") == 0) {
          flush();
          const size_t start = pos_;
          const bool triple = text_.compare(pos_, 3, "{{{") == 0;
          const std::string_view close = triple ? "}}}" : "}}";
          const size_t end = text_.find(close, pos_ + close.size());
          if (end == std::string_view::npos) fail(start, "'{{' is never closed");
          std::string tag = trim(text_.substr(pos_ + close.size(), end - pos_ - close.size()));
          pos_ = end + close.size();
          if (tag.empty()) fail(start, "empty tag");
          if (triple) {
            nodes.push_back(field(start, tag, true));
            continue;
          }
          const char sigil = tag[0];
          if (sigil == '!' || sigil == '/' || sigil == '#' || sigil == '^') skip_standalone_line(start);
          if (sigil == '!') continue;
          if (sigil == '/') {
            const std::string name = trim(tag.substr(1));
            if (!closing) fail(start, "'{{/" + name + "}}' closes no section");
            if (name != *closing) {
              fail(start, "'{{/" + name + "}}' closes section '" + *closing + "'");
            }
            return nodes;
          }
          if (sigil == '#' || sigil == '^') {
            nodes.push_back(section(start, trim(tag.substr(1)), sigil == '^'));
            continue;
          }
          if (sigil == '&') {
            nodes.push_back(field(start, trim(tag.substr(1)), true));
            continue;
          }
          nodes.push_back(field(start, tag, false));
          continue;
        }
        if (text_.compare(pos_, 2, "%(") == 0) {
          // Buildbot's %(name)s / %(prop:name)s.
          const size_t start = pos_;
          const size_t end = text_.find(")s", pos_ + 2);
          if (end == std::string_view::npos) fail(start, "'%(' has no closing ')s'");
          std::string name = trim(text_.substr(pos_ + 2, end - pos_ - 2));
          pos_ = end + 2;
          if (name.rfind("prop:", 0) == 0) name = "prop." + name.substr(5);
          flush();
          nodes.push_back(field(start, name, false));
          continue;
        }
        pending += text_[pos_++];
      }
      flush();
      if (closing) fail(section_start_, "section '" + *closing + "' is never closed with '{{/" + *closing + "}}'");
      return nodes;
    }

    // A section or comment tag that starts a line and ends it takes no
    // line of output: its line end is dropped.
    void skip_standalone_line(size_t tag_start) {
      if (tag_start != 0 && text_[tag_start - 1] != '\n') return;
      size_t p = pos_;
      while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t' || text_[p] == '\r')) ++p;
      if (p == text_.size()) {
        pos_ = p;
      } else if (text_[p] == '\n') {
        pos_ = p + 1;
      }
    }

    Node field(size_t at, const std::string& name, bool raw) {
      Node n;
      n.kind = Node::Kind::kField;
      n.text = name;
      n.path = split(at, name);
      n.raw = raw;
      resolve(at, n.path, name);
      return n;
    }

    Node section(size_t at, const std::string& name, bool inverted) {
      Node n;
      n.kind = inverted ? Node::Kind::kInverted : Node::Kind::kSection;
      n.text = name;
      n.path = split(at, name);
      const nlohmann::json* shape = resolve(at, n.path, name);
      const size_t saved_start = section_start_;
      section_start_ = at;
      // Inside a list section the item's fields come first.
      bool pushed = false;
      if (check_ && !inverted && shape != nullptr) {
        if (shape->is_array() && !shape->empty()) {
          scopes_.push_back(&(*shape)[0]);
          pushed = true;
        } else if (shape->is_object()) {
          scopes_.push_back(shape);
          pushed = true;
        }
      }
      n.children = parse_until(name);
      if (pushed) scopes_.pop_back();
      section_start_ = saved_start;
      return n;
    }

    std::vector<std::string> split(size_t at, const std::string& name) {
      if (name == ".") return {};
      std::vector<std::string> parts;
      size_t begin = 0;
      while (begin <= name.size()) {
        size_t dot = name.find('.', begin);
        if (dot == std::string::npos) dot = name.size();
        if (dot == begin) fail(at, "'" + name + "' is not a field name");
        parts.push_back(name.substr(begin, dot - begin));
        begin = dot + 1;
      }
      return parts;
    }

    // The shape of a field, innermost scope first; a TemplateError when no
    // scope has it. Null when nothing is checked.
    const nlohmann::json* resolve(size_t at, const std::vector<std::string>& path, const std::string& name) {
      if (!check_) return nullptr;
      if (path.empty()) {
        if (scopes_.size() < 2) fail(at, "'{{.}}' is only meaningful inside a section");
        return scopes_.back();
      }
      for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
        const nlohmann::json* shape = child(**it, path[0]);
        if (shape == nullptr) continue;
        for (size_t i = 1; i < path.size() && shape != nullptr; ++i) {
          const nlohmann::json* next = child(*shape, path[i]);
          if (next == nullptr) fail(at, "unknown field '" + name + "' ('" + path[i] + "' is not in '" + path[i - 1] + "')");
          shape = next;
        }
        return shape;
      }
      fail(at, "unknown field '" + name + "'" + suggestion(path[0]));
    }

    static const nlohmann::json* child(const nlohmann::json& shape, const std::string& key) {
      if (!shape.is_object()) return nullptr;
      auto it = shape.find(key);
      if (it != shape.end()) return &*it;
      it = shape.find("*");
      return it != shape.end() ? &*it : nullptr;
    }

    // "; did you mean 'builder'?" for a field one or two edits away.
    std::string suggestion(const std::string& name) const {
      std::string best;
      size_t best_distance = 3;
      for (const auto* scope : scopes_) {
        if (!scope->is_object()) continue;
        for (const auto& [key, _] : scope->items()) {
          const size_t d = distance(name, key);
          if (d < best_distance) {
            best_distance = d;
            best = key;
          }
        }
      }
      return best.empty() ? std::string() : "; did you mean '" + best + "'?";
    }

    static size_t distance(const std::string& a, const std::string& b) {
      std::vector<size_t> row(b.size() + 1);
      for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
      for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
          const size_t up = row[j];
          row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
          diagonal = up;
        }
      }
      return row[b.size()];
    }

    [[noreturn]] void fail(size_t at, const std::string& message) const {
      size_t line = 1, column = 1;
      for (size_t i = 0; i < at && i < text_.size(); ++i) {
        if (text_[i] == '\n') {
          ++line;
          column = 1;
        } else {
          ++column;
        }
      }
      throw TemplateError(line, column, message);
    }

    static std::string trim(std::string_view s) {
      while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
      while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
      return std::string(s);
    }

    std::string_view text_;
    size_t pos_ = 0;
    size_t section_start_ = 0;
    bool check_ = false;
    std::vector<const nlohmann::json*> scopes_;
  };

  static const nlohmann::json* lookup(const std::vector<const nlohmann::json*>& stack,
                                      const std::vector<std::string>& path) {
    if (path.empty()) return stack.back();
    for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
      const nlohmann::json& scope = **it;
      if (!scope.is_object()) continue;
      auto found = scope.find(path[0]);
      if (found == scope.end()) continue;
      const nlohmann::json* value = &*found;
      for (size_t i = 1; i < path.size(); ++i) {
        if (!value->is_object()) return nullptr;
        auto next = value->find(path[i]);
        if (next == value->end()) return nullptr;
        value = &*next;
      }
      return value;
    }
    return nullptr;
  }

  static bool truthy(const nlohmann::json* value) {
    if (value == nullptr || value->is_null()) return false;
    if (value->is_boolean()) return value->get<bool>();
    if (value->is_array() || value->is_object() || value->is_string()) return !value->empty();
    if (value->is_number()) return value->get<double>() != 0;
    return true;
  }

  void render_nodes(const std::vector<Node>& nodes, std::vector<const nlohmann::json*>& stack,
                    std::string& out) const {
    for (const Node& n : nodes) {
      switch (n.kind) {
        case Node::Kind::kText:
          out += n.text;
          break;
        case Node::Kind::kField: {
          const nlohmann::json* value = lookup(stack, n.path);
          if (value == nullptr) break;
          const std::string text = text_of(*value);
          out += escape_ == Escape::kHtml && !n.raw ? html_escape(text) : text;
          break;
        }
        case Node::Kind::kSection: {
          const nlohmann::json* value = lookup(stack, n.path);
          if (!truthy(value)) break;
          if (value->is_array()) {
            for (const auto& item : *value) {
              stack.push_back(&item);
              render_nodes(n.children, stack, out);
              stack.pop_back();
            }
          } else {
            stack.push_back(value);
            render_nodes(n.children, stack, out);
            stack.pop_back();
          }
          break;
        }
        case Node::Kind::kInverted:
          if (!truthy(lookup(stack, n.path))) render_nodes(n.children, stack, out);
          break;
      }
    }
  }

  std::vector<Node> nodes_;
  Escape escape_ = Escape::kNone;
};

}  // namespace kiln::sdk
