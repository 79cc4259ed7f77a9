#include "config/json_schema.h"

#include "config/diagnostic.h"
#include "config/yaml_document.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string_view>
#include <unordered_map>

namespace kiln::config {

namespace {

using nlohmann::json;

// check_schema rejects $ref loops that never descend into the value, so only
// a value nested this deep under a recursive schema reaches the limit; it
// keeps the stack safe, and real configuration is nowhere near it.
constexpr int kMaxDepth = 200;
constexpr std::size_t kMaxCachedPatterns = 512;

const std::vector<std::string>& type_names() {
  static const std::vector<std::string> names = {
      "null", "boolean", "object", "array", "number", "string", "integer"};
  return names;
}

// --- regular expressions --------------------------------------------------

// Compiling a std::regex costs far more than matching with it, and the same
// component schema is checked once per configured component, so compiled
// patterns are shared process-wide. nullptr marks a pattern that does not
// compile.
std::shared_ptr<const std::regex> compiled_pattern(const std::string& pattern,
                                                   std::string* error = nullptr) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::pair<std::shared_ptr<const std::regex>, std::string>>
      cache;
  {
    std::lock_guard lock(mutex);
    if (auto it = cache.find(pattern); it != cache.end()) {
      if (error != nullptr) *error = it->second.second;
      return it->second.first;
    }
  }
  std::shared_ptr<const std::regex> compiled;
  std::string message;
  try {
    compiled = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    message = e.what();
  }
  std::lock_guard lock(mutex);
  if (cache.size() >= kMaxCachedPatterns) cache.clear();
  cache.emplace(pattern, std::make_pair(compiled, message));
  if (error != nullptr) *error = message;
  return compiled;
}

bool pattern_matches(const std::regex& re, const std::string& text) {
  try {
    return std::regex_search(text, re);
  } catch (const std::regex_error&) {
    // libstdc++ throws on pathological backtracking; a value we cannot
    // match does not match.
    return false;
  }
}

// --- JSON helpers ---------------------------------------------------------

bool is_integral(const json& v) {
  if (v.is_number_integer()) return true;  // also covers unsigned
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

long double as_number(const json& v) {
  if (v.is_number_unsigned()) return static_cast<long double>(v.get<std::uint64_t>());
  if (v.is_number_integer()) return static_cast<long double>(v.get<std::int64_t>());
  return static_cast<long double>(v.get<double>());
}

std::string type_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return is_integral(v) ? "integer" : "number";
    default: return "value";
  }
}

bool has_type(const json& v, std::string_view type) {
  if (type == "number") return v.is_number();
  if (type == "integer") return is_integral(v);
  if (type == "null") return v.is_null();
  if (type == "boolean") return v.is_boolean();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  return false;
}

// How a value reads in a message: strings in single quotes, the rest as JSON.
std::string show(const json& v) {
  if (v.is_string()) return "'" + v.get<std::string>() + "'";
  return v.dump();
}

// "a", "a or b", "a, b or c".
std::string join_or(const std::vector<std::string>& words) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " or " : ", ";
    out += words[i];
  }
  return out;
}

std::string join_values(const std::vector<json>& values) {
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += show(values[i]);
  }
  return out;
}

std::string plural(std::size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

std::size_t code_points(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string child(const std::string& pointer, std::string_view key) {
  return pointer + "/" + escape_pointer_token(key);
}

std::string child(const std::string& pointer, std::size_t index) {
  return pointer + "/" + std::to_string(index);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Resolves "#" or "#/json/pointer" (URI fragment: percent-encoded, then
// ~0/~1-escaped) within `root`. Anything else is outside the subset.
const json* resolve_local_ref(const json& root, const std::string& ref, std::string& error) {
  if (ref.empty() || ref[0] != '#') {
    error = "$ref '" + ref + "' is not supported: only references within the same schema "
            "('#/definitions/name') are";
    return nullptr;
  }
  std::string fragment;
  for (std::size_t i = 1; i < ref.size(); ++i) {
    if (ref[i] == '%' && i + 2 < ref.size() && hex_digit(ref[i + 1]) >= 0 &&
        hex_digit(ref[i + 2]) >= 0) {
      fragment += static_cast<char>(hex_digit(ref[i + 1]) * 16 + hex_digit(ref[i + 2]));
      i += 2;
    } else {
      fragment += ref[i];
    }
  }
  if (fragment.empty()) return &root;
  if (fragment[0] != '/') {
    error = "$ref '" + ref + "' is not supported: only JSON Pointer fragments ('#/...') are";
    return nullptr;
  }
  const json* node = &root;
  std::size_t pos = 1;
  while (true) {
    const std::size_t end = std::min(fragment.find('/', pos), fragment.size());
    std::string token;
    for (std::size_t i = pos; i < end; ++i) {
      if (fragment[i] == '~' && i + 1 < end && (fragment[i + 1] == '0' || fragment[i + 1] == '1')) {
        token += fragment[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        token += fragment[i];
      }
    }
    if (node->is_object()) {
      auto it = node->find(token);
      if (it == node->end()) node = nullptr; else node = &*it;
    } else if (node->is_array() && !token.empty() &&
               std::all_of(token.begin(), token.end(), [](unsigned char c) { return std::isdigit(c); }) &&
               token.size() < 10 && std::stoul(token) < node->size()) {
      node = &(*node)[std::stoul(token)];
    } else {
      node = nullptr;
    }
    if (node == nullptr) {
      error = "$ref '" + ref + "' points to nothing in this schema";
      return nullptr;
    }
    if (end == fragment.size()) break;
    pos = end + 1;
  }
  return node;
}

// The bound `keyword` sets when `count` breaks it: minLength, minItems and
// minProperties (is_minimum) and their max counterparts share this shape.
std::optional<std::size_t> broken_bound(const json& schema, const char* keyword,
                                        std::size_t count, bool is_minimum) {
  auto it = schema.find(keyword);
  if (it == schema.end() || !it->is_number()) return std::nullopt;
  const long double bound = as_number(*it);
  const long double n = static_cast<long double>(count);
  if (is_minimum ? n >= bound : n <= bound) return std::nullopt;
  return static_cast<std::size_t>(bound);
}

// Calls visit(key, value, subschema, is_additional) for every schema that
// applies to a member of `object`: its `properties` entry, each matching
// `patternProperties` entry, else `additionalProperties`. Shared by
// validation and defaulting so both read the keywords the same way.
template <typename Object, typename Visit>
void for_each_member_schema(const json& schema, Object& object, Visit&& visit) {
  const json* properties = nullptr;
  if (auto it = schema.find("properties"); it != schema.end() && it->is_object()) properties = &*it;
  const json* patterns = nullptr;
  if (auto it = schema.find("patternProperties"); it != schema.end() && it->is_object()) {
    patterns = &*it;
  }
  const json* additional = nullptr;
  if (auto it = schema.find("additionalProperties"); it != schema.end()) additional = &*it;

  for (auto&& [key, value] : object.items()) {
    bool known = false;
    if (properties != nullptr) {
      if (auto p = properties->find(key); p != properties->end()) {
        known = true;
        visit(key, value, *p, false);
      }
    }
    if (patterns != nullptr) {
      for (const auto& [pattern, sub] : patterns->items()) {
        auto re = compiled_pattern(pattern);
        if (re && pattern_matches(*re, key)) {
          known = true;
          visit(key, value, sub, false);
        }
      }
    }
    if (!known && additional != nullptr) visit(key, value, *additional, true);
  }
}

// Calls visit(index, value, subschema, is_additional) for every schema that
// applies to an element of `array`: `items` (one schema, or one per
// position), then `additionalItems` past a positional `items`.
template <typename Array, typename Visit>
void for_each_item_schema(const json& schema, Array& array, Visit&& visit) {
  auto items = schema.find("items");
  if (items == schema.end()) return;
  auto additional = schema.find("additionalItems");
  for (std::size_t i = 0; i < array.size(); ++i) {
    if (!items->is_array()) {
      visit(i, array[i], *items, false);
    } else if (i < items->size()) {
      visit(i, array[i], (*items)[i], false);
    } else if (additional != schema.end()) {
      visit(i, array[i], *additional, true);
    }
  }
}

// --- validation -----------------------------------------------------------

struct Finding {
  std::string pointer;
  std::string message;
  // Set when the value has the wrong type / is not among the allowed values,
  // so that anyOf/oneOf can merge alternatives into one message.
  std::vector<std::string> expected_types;
  std::vector<json> allowed_values;
};

class Validator {
 public:
  explicit Validator(const json& root) : root_(root) {}

  void validate(const json& schema, const json& instance, const std::string& pointer,
                std::vector<Finding>& out, int depth = 0) {
    if (schema.is_boolean()) {
      if (!schema.get<bool>()) out.push_back({pointer, "is not allowed here", {}, {}});
      return;
    }
    if (!schema.is_object()) return;  // check_schema already reported it
    if (too_deep_) return;
    if (depth > kMaxDepth) {
      // Findings inside alternatives get discarded, so the caller reads
      // this flag rather than a finding.
      too_deep_ = true;
      return;
    }
    // In draft-07 a $ref replaces the schema it sits in: siblings are ignored.
    if (auto ref = schema.find("$ref"); ref != schema.end() && ref->is_string()) {
      std::string error;
      if (const json* target = resolve_local_ref(root_, ref->get<std::string>(), error)) {
        validate(*target, instance, pointer, out, depth + 1);
      } else {
        out.push_back({"", "invalid schema: " + error, {}, {}});
      }
      return;
    }

    const bool type_ok = check_type(schema, instance, pointer, out);
    // A value of the wrong type is reported once, not again for each of the
    // enum members it also fails to equal.
    if (type_ok) check_values(schema, instance, pointer, out);
    if (instance.is_number()) check_number(schema, instance, pointer, out);
    if (instance.is_string()) check_string(schema, instance, pointer, out);
    if (instance.is_array()) check_array(schema, instance, pointer, out, depth);
    if (instance.is_object()) check_object(schema, instance, pointer, out, depth);
    check_combinators(schema, instance, pointer, out, depth);
  }

  bool too_deep() const { return too_deep_; }

  bool matches(const json& schema, const json& instance, int depth = 0) {
    std::vector<Finding> scratch;
    validate(schema, instance, "", scratch, depth);
    return scratch.empty();
  }

 private:
  bool check_type(const json& schema, const json& instance, const std::string& pointer,
                  std::vector<Finding>& out) {
    auto it = schema.find("type");
    if (it == schema.end()) return true;
    std::vector<std::string> wanted;
    if (it->is_string()) {
      wanted.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const auto& t : *it) {
        if (t.is_string()) wanted.push_back(t.get<std::string>());
      }
    }
    if (std::any_of(wanted.begin(), wanted.end(),
                    [&](const std::string& t) { return has_type(instance, t); })) {
      return true;
    }
    out.push_back({pointer, "expected " + join_or(wanted) + ", got " + type_of(instance), wanted, {}});
    return false;
  }

  void check_values(const json& schema, const json& instance, const std::string& pointer,
                    std::vector<Finding>& out) {
    if (auto it = schema.find("const"); it != schema.end() && instance != *it) {
      out.push_back({pointer, "must be " + show(*it), {}, {*it}});
    }
    auto it = schema.find("enum");
    if (it == schema.end() || !it->is_array()) return;
    if (std::any_of(it->begin(), it->end(), [&](const json& v) { return v == instance; })) return;
    std::vector<json> allowed(it->begin(), it->end());
    out.push_back({pointer, enum_message(allowed, instance), {}, allowed});
  }

  void check_number(const json& schema, const json& instance, const std::string& pointer,
                    std::vector<Finding>& out) {
    const long double x = as_number(instance);
    auto bound = [&](const char* keyword) -> const json* {
      auto it = schema.find(keyword);
      return it != schema.end() && it->is_number() ? &*it : nullptr;
    };
    if (const json* b = bound("minimum"); b && x < as_number(*b)) {
      out.push_back({pointer, "must be at least " + b->dump(), {}, {}});
    }
    if (const json* b = bound("maximum"); b && x > as_number(*b)) {
      out.push_back({pointer, "must be at most " + b->dump(), {}, {}});
    }
    if (const json* b = bound("exclusiveMinimum"); b && x <= as_number(*b)) {
      out.push_back({pointer, "must be greater than " + b->dump(), {}, {}});
    }
    if (const json* b = bound("exclusiveMaximum"); b && x >= as_number(*b)) {
      out.push_back({pointer, "must be less than " + b->dump(), {}, {}});
    }
    if (const json* m = bound("multipleOf"); m && as_number(*m) > 0 && !is_multiple(instance, *m)) {
      out.push_back({pointer, "must be a multiple of " + m->dump(), {}, {}});
    }
  }

  static bool is_multiple(const json& value, const json& divisor) {
    if (value.is_number_integer() && divisor.is_number_integer()) {
      // Exact for the common integer case; unsigned values beyond int64
      // go through the floating path below.
      if (!value.is_number_unsigned() && !divisor.is_number_unsigned()) {
        return value.get<std::int64_t>() % divisor.get<std::int64_t>() == 0;
      }
    }
    const long double q = as_number(value) / as_number(divisor);
    if (!std::isfinite(q)) return false;
    // Decimal fractions are inexact in binary: 0.0075 / 0.0001 is
    // 74.99999999999999, which is still meant to be a multiple.
    return std::fabs(q - std::nearbyint(q)) <= 1e-9L * std::max(1.0L, std::fabs(q));
  }

  void check_string(const json& schema, const json& instance, const std::string& pointer,
                    std::vector<Finding>& out) {
    const auto& s = instance.get_ref<const std::string&>();
    const std::size_t length = code_points(s);
    if (auto bound = broken_bound(schema, "minLength", length, true)) {
      out.push_back({pointer, "must be at least " + plural(*bound, "character") + " long", {}, {}});
    }
    if (auto bound = broken_bound(schema, "maxLength", length, false)) {
      out.push_back({pointer, "must be at most " + plural(*bound, "character") + " long", {}, {}});
    }
    if (auto it = schema.find("pattern"); it != schema.end() && it->is_string()) {
      auto re = compiled_pattern(it->get<std::string>());
      if (re && !pattern_matches(*re, s)) {
        out.push_back({pointer, "does not match the pattern '" + it->get<std::string>() + "'", {}, {}});
      }
    }
  }

  // "must have at least 1 item, has 0", for arrays and objects alike.
  static void check_count(const json& schema, const char* min_keyword, const char* max_keyword,
                          std::string_view noun, std::size_t n, const std::string& pointer,
                          std::vector<Finding>& out) {
    const std::string has = ", has " + std::to_string(n);
    if (auto bound = broken_bound(schema, min_keyword, n, true)) {
      out.push_back({pointer, "must have at least " + plural(*bound, noun) + has, {}, {}});
    }
    if (auto bound = broken_bound(schema, max_keyword, n, false)) {
      out.push_back({pointer, "must have at most " + plural(*bound, noun) + has, {}, {}});
    }
  }

  void check_array(const json& schema, const json& instance, const std::string& pointer,
                   std::vector<Finding>& out, int depth) {
    const std::size_t n = instance.size();
    check_count(schema, "minItems", "maxItems", "item", n, pointer, out);
    if (auto it = schema.find("uniqueItems"); it != schema.end() && it->is_boolean() && it->get<bool>()) {
      for (std::size_t j = 1; j < n; ++j) {
        for (std::size_t i = 0; i < j; ++i) {
          if (instance[i] == instance[j]) {
            out.push_back({child(pointer, j), "repeats item " + std::to_string(i) + "; items must be unique", {}, {}});
            break;
          }
        }
      }
    }
    bool extra_items = false;
    for_each_item_schema(schema, instance, [&](std::size_t i, const json& value, const json& sub,
                                               bool is_additional) {
      if (is_additional && sub.is_boolean() && !sub.get<bool>()) {
        extra_items = true;
      } else {
        validate(sub, value, child(pointer, i), out, depth + 1);
      }
    });
    // One complaint about the length, not one "not allowed" per extra item.
    if (extra_items) {
      out.push_back({pointer, "must have at most " + plural(schema.at("items").size(), "item") +
                                  ", has " + std::to_string(n), {}, {}});
    }
  }

  void check_object(const json& schema, const json& instance, const std::string& pointer,
                    std::vector<Finding>& out, int depth) {
    const std::size_t n = instance.size();
    check_count(schema, "minProperties", "maxProperties", "key", n, pointer, out);
    if (auto it = schema.find("required"); it != schema.end() && it->is_array()) {
      for (const auto& key : *it) {
        if (key.is_string() && !instance.contains(key.get<std::string>())) {
          out.push_back({pointer, "missing required key '" + key.get<std::string>() + "'", {}, {}});
        }
      }
    }
    const json* properties = nullptr;
    if (auto it = schema.find("properties"); it != schema.end() && it->is_object()) properties = &*it;
    for_each_member_schema(schema, instance, [&](const std::string& key, const json& value,
                                                 const json& sub, bool is_additional) {
      if (is_additional && sub.is_boolean() && !sub.get<bool>()) {
        out.push_back({child(pointer, key), unknown_key_message(key, properties, instance), {}, {}});
      } else {
        validate(sub, value, child(pointer, key), out, depth + 1);
      }
    });
  }

  static std::string unknown_key_message(const std::string& key, const json* properties,
                                         const json& instance) {
    std::string message = "unknown key '" + key + "'";
    if (properties == nullptr) return message;
    // Only keys not already given are plausible meant-to-be spellings.
    std::vector<std::string> candidates;
    for (const auto& [name, unused] : properties->items()) {
      if (!instance.contains(name)) candidates.push_back(name);
    }
    if (auto guess = closest_match(key, candidates); !guess.empty()) {
      message += "; did you mean '" + guess + "'?";
    }
    return message;
  }

  static std::string enum_message(const std::vector<json>& allowed, const json& instance) {
    std::string message = allowed.size() == 1 ? "must be " + show(allowed[0])
                                              : "must be one of " + join_values(allowed);
    if (instance.is_string()) {
      std::vector<std::string> words;
      for (const auto& v : allowed) {
        if (v.is_string()) words.push_back(v.get<std::string>());
      }
      if (auto guess = closest_match(instance.get<std::string>(), words); !guess.empty()) {
        message += "; did you mean '" + guess + "'?";
      }
    }
    return message;
  }

  void check_combinators(const json& schema, const json& instance, const std::string& pointer,
                         std::vector<Finding>& out, int depth) {
    if (auto it = schema.find("allOf"); it != schema.end() && it->is_array()) {
      for (const auto& sub : *it) validate(sub, instance, pointer, out, depth + 1);
    }
    if (auto it = schema.find("anyOf"); it != schema.end() && it->is_array()) {
      std::vector<std::vector<Finding>> failures;
      bool any = false;
      for (const auto& sub : *it) {
        std::vector<Finding> found;
        validate(sub, instance, pointer, found, depth + 1);
        if (found.empty()) {
          any = true;
          break;
        }
        failures.push_back(std::move(found));
      }
      if (!any && !failures.empty()) out.push_back(summarise(failures, instance, pointer));
    }
    if (auto it = schema.find("oneOf"); it != schema.end() && it->is_array()) {
      std::vector<std::vector<Finding>> failures;
      std::vector<std::size_t> matched;
      for (std::size_t i = 0; i < it->size(); ++i) {
        std::vector<Finding> found;
        validate((*it)[i], instance, pointer, found, depth + 1);
        if (found.empty()) {
          matched.push_back(i + 1);
        } else {
          failures.push_back(std::move(found));
        }
      }
      if (matched.empty() && !failures.empty()) {
        out.push_back(summarise(failures, instance, pointer));
      } else if (matched.size() > 1) {
        out.push_back({pointer, "matches more than one of the allowed forms (" +
                                    std::to_string(matched[0]) + " and " +
                                    std::to_string(matched[1]) + "); it must match exactly one",
                       {}, {}});
      }
    }
    if (auto it = schema.find("not"); it != schema.end() && matches(*it, instance, depth + 1)) {
      out.push_back({pointer, "matches a form that is not allowed here", {}, {}});
    }
  }

  // One message for a value that fits none of the alternatives. When every
  // alternative failed on the value itself (its type, or not an allowed
  // value) the alternatives merge: "expected string or array, got integer".
  // Otherwise the alternative that got furthest explains what is wrong.
  static Finding summarise(const std::vector<std::vector<Finding>>& failures, const json& instance,
                           const std::string& pointer) {
    std::vector<std::string> types;
    std::vector<json> values;
    const std::vector<Finding>* closest = nullptr;
    for (const auto& found : failures) {
      auto type_miss = std::find_if(found.begin(), found.end(), [&](const Finding& f) {
        return f.pointer == pointer && !f.expected_types.empty();
      });
      if (type_miss != found.end()) {
        for (const auto& t : type_miss->expected_types) {
          if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
        }
        continue;
      }
      const bool only_values = std::all_of(found.begin(), found.end(), [&](const Finding& f) {
        return f.pointer == pointer && !f.allowed_values.empty();
      });
      if (only_values) {
        for (const auto& f : found) {
          for (const auto& v : f.allowed_values) {
            if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
          }
        }
        continue;
      }
      if (closest == nullptr || found.size() < closest->size()) closest = &found;
    }

    if (closest == nullptr) {
      Finding merged{pointer, "", types, values};
      if (values.empty()) {
        merged.message = "expected " + join_or(types) + ", got " + type_of(instance);
      } else if (types.empty()) {
        merged.message = enum_message(values, instance);
      } else {
        merged.message = "expected " + join_or(types) + " or one of " + join_values(values) +
                         ", got " + (instance.is_string() ? show(instance) : type_of(instance));
      }
      return merged;
    }
    const Finding& first = closest->front();
    std::string message = failures.size() == 1
                              ? "does not match the allowed form"
                              : "does not match any of the " + std::to_string(failures.size()) +
                                    " allowed forms";
    std::string where;
    if (first.pointer.size() > pointer.size() && first.pointer.compare(0, pointer.size(), pointer) == 0) {
      where = pointer_to_path(std::string_view(first.pointer).substr(pointer.size())) + ": ";
    }
    message += " (closest: " + where + first.message + ")";
    return {pointer, message, {}, {}};
  }

  const json& root_;
  bool too_deep_ = false;
};

// --- schema checking ------------------------------------------------------

class SchemaChecker {
 public:
  explicit SchemaChecker(const json& root) : root_(root) {}

  std::vector<std::string> run() {
    check(root_, "#");
    find_loops();
    return std::move(problems_);
  }

 private:
  void problem(const std::string& at, const std::string& message) {
    problems_.push_back(at + ": " + message);
  }

  void check(const json& schema, const std::string& at) {
    if (!locations_.emplace(&schema, at).second) return;
    order_.push_back(&schema);
    if (schema.is_boolean()) return;
    if (!schema.is_object()) {
      problem(at, "a schema must be an object or a boolean, not " + type_of(schema));
      return;
    }
    for (const auto& [keyword, value] : schema.items()) {
      check_keyword(keyword, value, child(at, keyword));
    }
  }

  void check_keyword(const std::string& keyword, const json& value, const std::string& at) {
    if (keyword == "type") {
      check_type(value, at);
    } else if (keyword == "properties" || keyword == "patternProperties" ||
               keyword == "definitions") {
      if (!value.is_object()) {
        problem(at, "'" + keyword + "' must be an object of schemas");
        return;
      }
      for (const auto& [name, sub] : value.items()) {
        if (keyword == "patternProperties") check_pattern(name, at);
        check(sub, child(at, name));
      }
    } else if (keyword == "additionalProperties" || keyword == "additionalItems" ||
               keyword == "not") {
      check(value, at);
    } else if (keyword == "items") {
      if (value.is_array()) {
        for (std::size_t i = 0; i < value.size(); ++i) check(value[i], child(at, i));
      } else {
        check(value, at);
      }
    } else if (keyword == "anyOf" || keyword == "oneOf" || keyword == "allOf") {
      if (!value.is_array() || value.empty()) {
        problem(at, "'" + keyword + "' must be a non-empty array of schemas");
        return;
      }
      for (std::size_t i = 0; i < value.size(); ++i) check(value[i], child(at, i));
    } else if (keyword == "required") {
      std::set<std::string> seen;
      const bool ok = value.is_array() && std::all_of(value.begin(), value.end(), [&](const json& k) {
                        return k.is_string() && seen.insert(k.get<std::string>()).second;
                      });
      if (!ok) problem(at, "'required' must be an array of distinct key names (strings)");
    } else if (keyword == "enum") {
      if (!value.is_array()) problem(at, "'enum' must be an array of the allowed values");
    } else if (keyword == "minimum" || keyword == "maximum" || keyword == "exclusiveMinimum" ||
               keyword == "exclusiveMaximum") {
      if (!value.is_number()) problem(at, "'" + keyword + "' must be a number");
    } else if (keyword == "multipleOf") {
      if (!value.is_number() || as_number(value) <= 0) {
        problem(at, "'multipleOf' must be a number greater than 0");
      }
    } else if (keyword == "minLength" || keyword == "maxLength" || keyword == "minItems" ||
               keyword == "maxItems" || keyword == "minProperties" || keyword == "maxProperties") {
      if (!is_integral(value) || as_number(value) < 0) {
        problem(at, "'" + keyword + "' must be a non-negative integer");
      }
    } else if (keyword == "uniqueItems") {
      if (!value.is_boolean()) problem(at, "'uniqueItems' must be true or false");
    } else if (keyword == "pattern") {
      if (!value.is_string()) {
        problem(at, "'pattern' must be a string");
      } else {
        check_pattern(value.get<std::string>(), at);
      }
    } else if (keyword == "title" || keyword == "description") {
      if (!value.is_string()) problem(at, "'" + keyword + "' must be a string");
    } else if (keyword == "$ref") {
      check_ref(value, at);
    }
    // const, default and keywords outside the subset carry no constraint on
    // their own value; unknown keywords are ignored as the standard says.
  }

  void check_type(const json& value, const std::string& at) {
    auto check_name = [&](const json& name, const std::string& where) {
      if (!name.is_string()) {
        problem(where, "a type must be a string naming a JSON type");
        return;
      }
      const auto& names = type_names();
      const std::string& s = name.get_ref<const std::string&>();
      if (std::find(names.begin(), names.end(), s) != names.end()) return;
      std::string message = "unknown type '" + s + "'";
      // Plugin authors bring type names from their own languages; those are
      // too far from JSON's names for an edit distance to find.
      static const std::vector<std::pair<std::string, std::string>> kForeignNames = {
          {"int", "integer"}, {"bool", "boolean"}, {"str", "string"},  {"float", "number"},
          {"double", "number"}, {"list", "array"}, {"dict", "object"}, {"map", "object"},
          {"none", "null"}};
      auto foreign = std::find_if(kForeignNames.begin(), kForeignNames.end(),
                                  [&](const auto& alias) { return alias.first == s; });
      if (foreign != kForeignNames.end()) {
        message += "; did you mean '" + foreign->second + "'?";
      } else if (auto guess = closest_match(s, names); !guess.empty()) {
        message += "; did you mean '" + guess + "'?";
      } else {
        message += "; the types are " + join_or(names);
      }
      problem(where, message);
    };
    if (value.is_array()) {
      if (value.empty()) problem(at, "'type' must list at least one type");
      for (std::size_t i = 0; i < value.size(); ++i) check_name(value[i], child(at, i));
    } else {
      check_name(value, at);
    }
  }

  void check_pattern(const std::string& pattern, const std::string& at) {
    std::string error;
    if (!compiled_pattern(pattern, &error)) {
      problem(at, "pattern '" + pattern + "' is not a valid ECMAScript regular expression (" +
                      error + ")");
    }
  }

  void check_ref(const json& value, const std::string& at) {
    if (!value.is_string()) {
      problem(at, "'$ref' must be a string");
      return;
    }
    const std::string& ref = value.get_ref<const std::string&>();
    std::string error;
    const json* target = resolve_local_ref(root_, ref, error);
    if (target == nullptr) {
      problem(at, error);
    } else if (!target->is_object() && !target->is_boolean()) {
      problem(at, "$ref '" + ref + "' points to " + type_of(*target) + ", not a schema");
    } else {
      // A target outside any keyword ("#/my_defs/x") is still a schema.
      check(*target, ref);
    }
  }

  // Schemas that apply to the same value as `schema` does: following only
  // these never moves into the value, so a cycle among them would make
  // validation loop forever ({"allOf": [{"$ref": "#"}]}).
  std::vector<std::pair<const json*, std::string>> same_value_edges(const json& schema) {
    std::vector<std::pair<const json*, std::string>> edges;
    if (!schema.is_object()) return edges;
    if (auto ref = schema.find("$ref"); ref != schema.end() && ref->is_string()) {
      std::string error;
      if (const json* target = resolve_local_ref(root_, ref->get<std::string>(), error)) {
        edges.emplace_back(target, "$ref");
      }
      return edges;  // draft-07: the rest of a schema with $ref is ignored
    }
    for (const char* keyword : {"allOf", "anyOf", "oneOf"}) {
      auto it = schema.find(keyword);
      if (it == schema.end() || !it->is_array()) continue;
      for (std::size_t i = 0; i < it->size(); ++i) {
        edges.emplace_back(&(*it)[i], std::string(keyword) + "/" + std::to_string(i));
      }
    }
    if (auto it = schema.find("not"); it != schema.end()) edges.emplace_back(&*it, "not");
    return edges;
  }

  void find_loops() {
    enum class Mark { kNew, kOnPath, kDone };
    std::map<const json*, Mark> marks;
    std::function<void(const json*)> visit = [&](const json* node) {
      marks[node] = Mark::kOnPath;
      for (const auto& [next, via] : same_value_edges(*node)) {
        const Mark mark = marks.count(next) != 0 ? marks[next] : Mark::kNew;
        if (mark == Mark::kOnPath) {
          auto from = locations_.find(node);
          auto to = locations_.find(next);
          problem((from != locations_.end() ? from->second : std::string("#")) + "/" + via,
                  "refers back to '" + (to != locations_.end() ? to->second : std::string("#")) +
                      "' without going into a key or an item, which would never end");
        } else if (mark == Mark::kNew) {
          visit(next);
        }
      }
      marks[node] = Mark::kDone;
    };
    for (const json* node : order_) {
      if (marks.count(node) == 0) visit(node);
    }
  }

  const json& root_;
  std::map<const json*, std::string> locations_;
  std::vector<const json*> order_;
  std::vector<std::string> problems_;
};

// --- defaults -------------------------------------------------------------

class DefaultFiller {
 public:
  explicit DefaultFiller(const json& root) : root_(root), validator_(root) {}

  void fill(const json& schema, json& instance, int depth) {
    if (depth > kMaxDepth) return;
    const json& s = resolved(schema, depth);
    if (!s.is_object()) return;

    if (auto it = s.find("allOf"); it != s.end() && it->is_array()) {
      for (const auto& sub : *it) fill(sub, instance, depth + 1);
    }
    // Defaults of an alternative only make sense once the value is known to
    // be that alternative.
    for (const char* keyword : {"anyOf", "oneOf"}) {
      auto it = s.find(keyword);
      if (it == s.end() || !it->is_array()) continue;
      for (const auto& sub : *it) {
        if (validator_.matches(sub, instance)) {
          fill(sub, instance, depth + 1);
          break;
        }
      }
    }

    if (instance.is_object()) fill_object(s, instance, depth);
    if (instance.is_array()) fill_array(s, instance, depth);
  }

 private:
  const json& resolved(const json& schema, int depth) {
    const json* s = &schema;
    for (int hops = 0; s->is_object() && hops + depth <= kMaxDepth; ++hops) {
      auto ref = s->find("$ref");
      if (ref == s->end() || !ref->is_string()) break;
      std::string error;
      const json* target = resolve_local_ref(root_, ref->get<std::string>(), error);
      if (target == nullptr) break;
      s = target;
    }
    return *s;
  }

  void fill_object(const json& s, json& instance, int depth) {
    if (auto it = s.find("properties"); it != s.end() && it->is_object()) {
      for (const auto& [key, sub] : it->items()) {
        if (instance.contains(key)) continue;
        // draft-07 ignores keywords beside a $ref, but a default written
        // there is plainly meant for this property, so it wins.
        if (sub.is_object()) {
          if (auto def = sub.find("default"); def != sub.end()) {
            instance[key] = *def;
            continue;
          }
        }
        const json& target = resolved(sub, depth);
        if (target.is_object()) {
          if (auto def = target.find("default"); def != target.end()) instance[key] = *def;
        }
      }
    }
    for_each_member_schema(s, instance, [&](const std::string&, json& value, const json& sub, bool) {
      fill(sub, value, depth + 1);
    });
  }

  void fill_array(const json& s, json& instance, int depth) {
    for_each_item_schema(s, instance, [&](std::size_t, json& value, const json& sub, bool) {
      fill(sub, value, depth + 1);
    });
  }

  const json& root_;
  Validator validator_;
};

}  // namespace

std::vector<SchemaViolation> validate_against_schema(const nlohmann::json& schema,
                                                     const nlohmann::json& instance) {
  std::vector<SchemaViolation> violations;
  if (auto problems = check_schema(schema); !problems.empty()) {
    for (auto& p : problems) violations.push_back({"", "invalid schema: " + p});
    return violations;
  }
  std::vector<Finding> found;
  Validator validator(schema);
  validator.validate(schema, instance, "", found);
  if (validator.too_deep()) {
    return {{"", "the configuration is nested deeper than " + std::to_string(kMaxDepth) +
                     " levels; it cannot be checked"}};
  }
  // allOf branches may repeat each other's complaints.
  std::set<std::pair<std::string, std::string>> seen;
  for (auto& f : found) {
    if (seen.emplace(f.pointer, f.message).second) {
      violations.push_back({std::move(f.pointer), std::move(f.message)});
    }
  }
  return violations;
}

void apply_schema_defaults(const nlohmann::json& schema, nlohmann::json& instance) {
  DefaultFiller(schema).fill(schema, instance, 0);
}

std::vector<std::string> check_schema(const nlohmann::json& schema) {
  return SchemaChecker(schema).run();
}

}  // namespace kiln::config
