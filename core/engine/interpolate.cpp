#include "engine/interpolate.h"

#include <cctype>

namespace kiln::engine {

namespace {

using nlohmann::json;

bool truthy(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) return !v.get_ref<const std::string&>().empty();
  return !v.empty();
}

std::optional<json> lookup_property(const InterpolateScope& scope, const std::string& name) {
  if (!scope.properties || !scope.properties->contains(name)) return std::nullopt;
  const json& entry = (*scope.properties)[name];
  // Properties are [value, source]; a bare value is accepted too.
  if (entry.is_array() && entry.size() == 2 && entry[1].is_string()) return entry[0];
  return entry;
}

// Applies the part after the key: ":-x", ":~x", ":+x", ":?|a|b", ":#?|a|b".
std::optional<std::string> apply_modifier(const std::optional<json>& value,
                                          std::string_view modifier, std::string& error) {
  if (modifier.empty()) return value ? property_text(*value) : std::string();
  const bool set = value.has_value();
  if (modifier[0] == '-') return set ? property_text(*value) : std::string(modifier.substr(1));
  if (modifier[0] == '~') {
    return set && truthy(*value) ? property_text(*value) : std::string(modifier.substr(1));
  }
  if (modifier[0] == '+') return set ? std::string(modifier.substr(1)) : std::string();
  const bool hash = modifier.substr(0, 2) == "#?";
  if (hash || modifier[0] == '?') {
    std::string_view rest = modifier.substr(hash ? 2 : 1);
    if (rest.size() < 2) {
      error = "malformed conditional '" + std::string(modifier) + "': expected ?|yes|no";
      return std::nullopt;
    }
    char delim = rest[0];
    auto mid = rest.find(delim, 1);
    if (mid == std::string_view::npos) {
      error = "malformed conditional '" + std::string(modifier) + "': expected ?|yes|no";
      return std::nullopt;
    }
    std::string_view yes = rest.substr(1, mid - 1);
    std::string_view no = rest.substr(mid + 1);
    bool condition = hash ? (set && truthy(*value)) : set;
    return std::string(condition ? yes : no);
  }
  error = "unknown modifier ':" + std::string(modifier) + "' (expected :-, :~, :+, :? or :#?)";
  return std::nullopt;
}

// Splits "name:modifier" at the first ':' (names never hold one).
std::pair<std::string, std::string_view> split_key(std::string_view body) {
  auto colon = body.find(':');
  if (colon == std::string_view::npos) return {std::string(body), {}};
  return {std::string(body.substr(0, colon)), body.substr(colon + 1)};
}

std::optional<std::string> render_one(std::string_view selector, std::string_view body,
                                      const InterpolateScope& scope, std::string& error) {
  if (selector == "prop") {
    auto [name, modifier] = split_key(body);
    return apply_modifier(lookup_property(scope, name), modifier, error);
  }
  if (selector == "src") {
    auto colon = body.find(':');
    if (colon == std::string_view::npos) {
      error = "%(src:...)s needs a codebase and an attribute: %(src:codebase:branch)s";
      return std::nullopt;
    }
    std::string codebase(body.substr(0, colon));
    auto [attr, modifier] = split_key(body.substr(colon + 1));
    std::optional<json> value;
    if (scope.sourcestamps && scope.sourcestamps->contains(codebase)) {
      const json& ss = (*scope.sourcestamps)[codebase];
      if (ss.contains(attr) && !ss[attr].is_null()) value = ss[attr];
    }
    return apply_modifier(value, modifier, error);
  }
  if (selector == "worker" || selector == "kw") {
    const json* map = selector == "worker" ? scope.worker : scope.keywords;
    auto [name, modifier] = split_key(body);
    std::optional<json> value;
    if (map && map->contains(name) && !(*map)[name].is_null()) value = (*map)[name];
    return apply_modifier(value, modifier, error);
  }
  if (selector == "secret") {
    std::optional<std::string> value = scope.secret ? scope.secret(body) : std::nullopt;
    if (!value) {
      error = "unknown secret '" + std::string(body) + "'";
      return std::nullopt;
    }
    return value;
  }
  error = "unknown interpolation '%(" + std::string(selector) + ":" + std::string(body) +
          ")s' (expected prop, src, worker, kw or secret)";
  return std::nullopt;
}

}  // namespace

std::string property_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
  if (value.is_null()) return "None";
  return value.dump();
}

std::optional<std::string> render_interpolate(std::string_view text, const InterpolateScope& scope,
                                              std::string& error) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t pct = text.find('%', i);
    if (pct == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, pct - i));
    if (pct + 1 < text.size() && text[pct + 1] == '%') {
      out.push_back('%');
      i = pct + 2;
      continue;
    }
    if (pct + 1 >= text.size() || text[pct + 1] != '(') {
      out.push_back('%');  // a lone % (e.g. in a date format) stays
      i = pct + 1;
      continue;
    }
    size_t close = text.find(")s", pct + 2);
    if (close == std::string_view::npos) {
      error = "unterminated '%(' at offset " + std::to_string(pct) + " (expected ')s')";
      return std::nullopt;
    }
    std::string_view inner = text.substr(pct + 2, close - pct - 2);
    auto colon = inner.find(':');
    if (colon == std::string_view::npos) {
      error = "'%(" + std::string(inner) + ")s' needs a selector: %(prop:" + std::string(inner) +
              ")s";
      return std::nullopt;
    }
    auto rendered = render_one(inner.substr(0, colon), inner.substr(colon + 1), scope, error);
    if (!rendered) return std::nullopt;
    out += *rendered;
    i = close + 2;
  }
  return out;
}

bool render_json(json& value, const InterpolateScope& scope, std::string& error) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    if (text.find("%(") == std::string::npos && text.find("%%") == std::string::npos) return true;
    // A lone %(prop:x)s keeps the property's JSON type.
    if (text.rfind("%(prop:", 0) == 0 && text.size() > 9 && text.compare(text.size() - 2, 2, ")s") == 0 &&
        text.find("%(", 2) == std::string::npos) {
      std::string name = text.substr(7, text.size() - 9);
      if (name.find(':') == std::string::npos) {
        auto prop = lookup_property(scope, name);
        if (prop && !prop->is_string()) {
          value = *prop;
          return true;
        }
      }
    }
    auto rendered = render_interpolate(text, scope, error);
    if (!rendered) return false;
    value = std::move(*rendered);
    return true;
  }
  if (value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (!render_json(value[i], scope, error)) {
        error = "[" + std::to_string(i) + "]: " + error;
        return false;
      }
    }
  } else if (value.is_object()) {
    for (auto& [key, item] : value.items()) {
      if (!render_json(item, scope, error)) {
        error = key + (error.rfind('[', 0) == 0 ? "" : ": ") + error;
        return false;
      }
    }
  }
  return true;
}

std::string property_name_problem(std::string_view name) {
  if (name.empty()) return "a property name cannot be empty";
  if (name.size() > 200) return "property name longer than 200 characters";
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '/' || c == '~' || c == ':') {
      continue;
    }
    std::string shown = c < 0x20 || c >= 0x7f ? "byte " + std::to_string(c)
                                              : "'" + std::string(1, static_cast<char>(c)) + "'";
    return "property name '" + std::string(name) + "' contains " + shown +
           " (allowed: letters, digits, _ . - / ~ :)";
  }
  return {};
}

}  // namespace kiln::engine
