// Reading hg's templated output (see hg_text.h).

#include "hg_text.h"

#include <cstdlib>

namespace kiln::hg {

const char* const kHeadsTemplate = "{branch}\\x1f{node}\\n";
const char* const kBookmarksTemplate = "{bookmark}\\x1f{node}\\n";
const char* const kCommitTemplate =
    "{node}\\x1f{author}\\x1f{date|hgdate}\\x1f{branch}\\x1f{join(files, \"\\x1e\")}\\x1f{desc|strip}\\x1d";

namespace {

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(separator, start);
    out.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

}  // namespace

std::map<std::string, std::vector<std::string>> parse_named_nodes(std::string_view text) {
  std::map<std::string, std::vector<std::string>> out;
  for (auto line : split(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t sep = line.find('\x1f');
    if (sep == std::string_view::npos || sep + 1 >= line.size()) continue;
    out[std::string(line.substr(0, sep))].emplace_back(line.substr(sep + 1));
  }
  return out;
}

std::optional<std::vector<Commit>> parse_commits(std::string_view text) {
  std::vector<Commit> out;
  for (auto record : split(text, '\x1d')) {
    if (record.empty()) continue;
    const auto fields = split(record, '\x1f');
    if (fields.size() != 6 || fields[0].size() != 40) return std::nullopt;
    Commit c;
    c.node = std::string(fields[0]);
    c.author = std::string(fields[1]);
    c.when = std::strtoll(std::string(fields[2]).c_str(), nullptr, 10);  // "seconds offset"
    c.branch = std::string(fields[3]);
    if (!fields[4].empty()) {
      for (auto f : split(fields[4], '\x1e')) c.files.emplace_back(f);
    }
    c.comments = std::string(fields[5]);
    out.push_back(std::move(c));
  }
  return out;
}

std::string new_commits_revset(const std::string& head, const std::vector<std::string>& known) {
  std::string revset = "sort(::" + head;
  if (!known.empty()) {
    revset += " - ::(";
    for (size_t i = 0; i < known.size(); ++i) revset += (i > 0 ? " or " : "") + ("present(" + known[i] + ")");
    revset += ")";
  }
  return revset + ", rev)";
}

}  // namespace kiln::hg
