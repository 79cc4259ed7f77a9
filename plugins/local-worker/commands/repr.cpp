#include <kiln/worker/repr.h>

#include <cstdio>

namespace kiln::worker {

namespace {

std::string quoted(std::string_view text, bool bytes) {
  const bool has_single = text.find('\'') != std::string_view::npos;
  const bool has_double = text.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out = bytes ? "b" : "";
  out += quote;
  for (unsigned char c : text) {
    if (c == quote || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (bytes && c >= 0x80)) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);  // str repr keeps non-ASCII text as is
    }
  }
  out += quote;
  return out;
}

bool shell_safe(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("@%+=:,./-_").find(static_cast<char>(c)) != std::string_view::npos;
}

}  // namespace

std::string py_bytes_repr(std::string_view bytes) { return quoted(bytes, true); }

std::string py_bytes_list_repr(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    out += py_bytes_repr(items[i]);
  }
  return out + "]";
}

std::string py_number(const nlohmann::json& value) {
  if (value.is_number_integer()) return value.dump();
  if (value.is_number_float()) {
    std::string text = value.dump();  // shortest round-trip, "1.0" for whole numbers
    return text;
  }
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::string py_repr(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "None";
    case nlohmann::json::value_t::boolean: return value.get<bool>() ? "True" : "False";
    case nlohmann::json::value_t::string: return quoted(value.get_ref<const std::string&>(), false);
    case nlohmann::json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < value.size(); ++i) {
        if (i) out += ", ";
        out += py_repr(value[i]);
      }
      return out + "]";
    }
    case nlohmann::json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) out += ", ";
        first = false;
        out += quoted(key, false) + ": " + py_repr(item);
      }
      return out + "}";
    }
    default: return py_number(value);
  }
}

std::string shell_quote(const std::vector<std::string>& argv) {
  std::string out;
  for (size_t i = 0; i < argv.size(); ++i) {
    if (i) out += ' ';
    const std::string& arg = argv[i];
    bool safe = !arg.empty();
    for (unsigned char c : arg) safe = safe && shell_safe(c);
    if (safe) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'') {
        out += "'\"'\"'";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

}  // namespace kiln::worker
