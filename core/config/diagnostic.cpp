#include "config/diagnostic.h"

#include <algorithm>
#include <cctype>
#include <limits>

namespace kiln::config {

namespace {

bool is_index(std::string_view token) {
  if (token.empty() || token.size() > 18) return false;
  if (token.size() > 1 && token[0] == '0') return false;  // "01" is a key
  return std::all_of(token.begin(), token.end(),
                     [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Keys that read unambiguously after a dot. Dashes are allowed because
// nothing in a path could mistake them for an operator, and YAML keys like
// "build-dir" would look needlessly alarming in brackets.
bool is_plain_key(std::string_view token) {
  if (token.empty()) return false;
  const auto first = static_cast<unsigned char>(token[0]);
  if (!(std::isalpha(first) != 0 || first == '_')) return false;
  return std::all_of(token.begin(), token.end(), [](unsigned char c) {
    return std::isalnum(c) != 0 || c == '_' || c == '-';
  });
}

std::string quoted_key(std::string_view token) {
  std::string out = "[\"";
  for (char c : token) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += "\"]";
  return out;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Optimal string alignment distance: Levenshtein plus adjacent
// transpositions, the commonest typing slip ("buidlers").
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

}  // namespace

std::string Diagnostic::to_string() const {
  std::string out = location.file;
  if (location.line > 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(location.line);
    if (location.column > 0) out += ':' + std::to_string(location.column);
  }
  if (!out.empty()) out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

std::string pointer_to_path(std::string_view json_pointer) {
  if (json_pointer.empty()) return "";
  // Not a pointer at all; showing it as given beats inventing a path.
  if (json_pointer[0] != '/') return std::string(json_pointer);

  std::string path;
  std::size_t pos = 1;
  while (true) {
    const std::size_t end = std::min(json_pointer.find('/', pos), json_pointer.size());
    std::string token;
    for (std::size_t i = pos; i < end; ++i) {
      if (json_pointer[i] == '~' && i + 1 < end &&
          (json_pointer[i + 1] == '0' || json_pointer[i + 1] == '1')) {
        token += json_pointer[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        token += json_pointer[i];
      }
    }
    if (is_index(token)) {
      path += '[' + token + ']';
    } else if (is_plain_key(token)) {
      if (!path.empty()) path += '.';
      path += token;
    } else {
      path += quoted_key(token);
    }
    if (end == json_pointer.size()) break;
    pos = end + 1;
  }
  return path;
}

std::string closest_match(std::string_view word,
                          const std::vector<std::string>& candidates) {
  if (word.empty()) return "";
  const std::string lower_word = lowercase(word);
  const std::string* best = nullptr;
  std::size_t best_folded = std::numeric_limits<std::size_t>::max();
  std::size_t best_exact = std::numeric_limits<std::size_t>::max();
  for (const auto& candidate : candidates) {
    if (candidate.empty()) continue;
    const std::size_t folded = edit_distance(lower_word, lowercase(candidate));
    const std::size_t longest = std::max(word.size(), candidate.size());
    // About one slip per three letters of the longer word ("lnx" -> "linux"),
    // but never a rewrite of the whole word ("x" -> "y").
    const std::size_t limit = std::max<std::size_t>(1, (longest + 1) / 3);
    if (folded > limit || (folded > 0 && folded >= longest)) continue;
    // Case only breaks ties: "Linux" and "linux" are both distance 0 from
    // "LINUX" once folded, and the one typed the same way wins.
    const std::size_t exact = edit_distance(word, candidate);
    if (folded < best_folded || (folded == best_folded && exact < best_exact)) {
      best = &candidate;
      best_folded = folded;
      best_exact = exact;
    }
  }
  return best != nullptr ? *best : std::string();
}

}  // namespace kiln::config
