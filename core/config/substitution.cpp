#include "config/substitution.h"

#include "config/diagnostic.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kiln::config {
namespace {

enum class Mode { kMatrix, kSecrets };

bool is_scheme(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!std::islower(c) && c != '_') return false;
  }
  return true;
}

std::string value_text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::optional<std::string> read_secret_file(const std::filesystem::path& path, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  std::error_code ec;
  if (!in || std::filesystem::is_directory(path, ec)) {
    why = in ? "it is a folder" : std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream content;
  content << in.rdbuf();
  std::string text = content.str();
  // Files written by editors and `echo` end in a newline nobody means.
  if (!text.empty() && text.back() == '\n') text.pop_back();
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

Substituted scan(const std::string& text, Mode mode,
                 const std::map<std::string, nlohmann::json>* matrix,
                 const std::filesystem::path& folder) {
  Substituted out;
  int references = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, 3, "$${") == 0) {
      out.text += mode == Mode::kMatrix ? "$${" : "${";
      i += 3;
      continue;
    }
    if (text.compare(i, 2, "${") != 0) {
      out.text += text[i++];
      continue;
    }
    size_t close = text.find('}', i + 2);
    std::string_view inner = std::string_view(text).substr(i + 2, close == std::string::npos
                                                                    ? std::string::npos
                                                                    : close - i - 2);
    size_t colon = inner.find(':');
    std::string scheme(colon == std::string_view::npos ? std::string_view() : inner.substr(0, colon));
    bool known = scheme == "env" || scheme == "file" || scheme == "matrix";
    if (close == std::string::npos) {
      if (known) out.errors.push_back("'${" + scheme + ":' is not closed by '}'");
      out.text += text.substr(i);
      break;
    }
    std::string argument(inner.substr(colon == std::string_view::npos ? inner.size() : colon + 1));
    std::string written = text.substr(i, close + 1 - i);
    bool whole_string = i == 0 && close + 1 == text.size();
    i = close + 1;

    if (!known) {
      // A near miss of a known scheme is a typo; anything else (`${HOME}`,
      // `${X:-default}`) belongs to a shell and stays as written.
      std::string hint = is_scheme(scheme) && !argument.empty() &&
                                 std::string("-=?+").find(argument[0]) == std::string::npos
                             ? closest_match(scheme, {"env", "file", "matrix"})
                             : std::string();
      if (!hint.empty() && mode == Mode::kSecrets) {
        out.errors.push_back("unknown substitution '${" + scheme + ":...}'; did you mean '${" + hint +
                             ":...}'? (write '$${' for a literal '${')");
      }
      out.text += written;
      continue;
    }
    if (argument.empty()) {
      out.errors.push_back("'${" + scheme + ":}' names nothing");
      continue;
    }
    if (mode == Mode::kMatrix) {
      if (scheme != "matrix") {
        out.text += written;
        continue;
      }
      auto found = matrix->find(argument);
      if (found == matrix->end()) {
        std::vector<std::string> keys;
        for (const auto& [key, value] : *matrix) keys.push_back(key);
        std::string hint = closest_match(argument, keys);
        out.errors.push_back("unknown matrix key '" + argument + "'" +
                             (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
        continue;
      }
      ++references;
      out.text += value_text(found->second);
      if (whole_string) {
        out.whole = true;
        out.whole_value = found->second;
      }
      continue;
    }
    if (scheme == "matrix") {
      out.errors.push_back("'${matrix:" + argument + "}' is used outside a builder with a matrix");
      continue;
    }
    ++references;
    out.whole = whole_string;
    if (scheme == "env") {
      const char* value = std::getenv(argument.c_str());
      if (value == nullptr) {
        out.errors.push_back("environment variable '" + argument + "' is not set");
        continue;
      }
      out.text += value;
      out.secrets.emplace_back(value);
    } else {
      std::filesystem::path path(argument);
      if (path.is_relative()) path = folder / path;
      std::string why;
      auto content = read_secret_file(path, why);
      if (!content) {
        out.errors.push_back("cannot read file '" + argument + "': " + why);
        continue;
      }
      out.text += *content;
      out.secrets.push_back(std::move(*content));
    }
  }
  if (references != 1) out.whole = false;
  return out;
}

}  // namespace

Substituted substitute_matrix(const std::string& text,
                              const std::map<std::string, nlohmann::json>& values) {
  return scan(text, Mode::kMatrix, &values, {});
}

Substituted substitute_secrets(const std::string& text, const std::filesystem::path& folder) {
  return scan(text, Mode::kSecrets, nullptr, folder);
}

bool has_substitution(const std::string& text) { return text.find("${") != std::string::npos; }

}  // namespace kiln::config
