#include "git_text.h"

#include <kiln/sdk/poller.hpp>

#include <cstdio>

namespace kiln::git {

namespace {

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

}  // namespace

const char* const kCommitFormat = "%x1e%H%x00%an <%ae>%x00%cn <%ce>%x00%ct%x00%B%x00";

RemoteRefs parse_ls_remote(std::string_view text) {
  RemoteRefs out;
  std::map<std::string, std::string> peeled;
  for (std::string_view line : lines_of(text)) {
    size_t tab = line.find('\t');
    if (tab == std::string_view::npos) continue;
    std::string_view left = line.substr(0, tab);
    std::string_view name = line.substr(tab + 1);
    if (left.rfind("ref: ", 0) == 0) {
      if (name == "HEAD") out.head_target = std::string(left.substr(5));
      continue;
    }
    if (name.size() > 3 && name.substr(name.size() - 3) == "^{}") {
      peeled[std::string(name.substr(0, name.size() - 3))] = std::string(left);
      continue;
    }
    if (name.rfind("refs/", 0) != 0) continue;  // HEAD and other pseudo refs
    out.refs[std::string(name)] = std::string(left);
  }
  // An annotated tag's commit is what builds care about.
  for (auto& [name, sha] : peeled) {
    if (auto it = out.refs.find(name); it != out.refs.end()) it->second = sha;
  }
  return out;
}

std::map<std::string, std::string> parse_for_each_ref(std::string_view text) {
  std::map<std::string, std::string> out;
  for (std::string_view line : lines_of(text)) {
    size_t a = line.find(' ');
    if (a == std::string_view::npos) continue;
    std::string_view name = line.substr(0, a);
    std::string_view rest = line.substr(a + 1);
    size_t b = rest.find(' ');
    std::string_view object = rest.substr(0, b);
    std::string_view peeled = b == std::string_view::npos ? std::string_view() : rest.substr(b + 1);
    out[std::string(name)] = std::string(peeled.empty() ? object : peeled);
  }
  return out;
}

std::optional<std::vector<Commit>> parse_commits(std::string_view text,
                                                 const std::vector<std::string>& revisions) {
  std::vector<Commit> out;
  size_t pos = 0;
  for (size_t i = 0; i < revisions.size(); ++i) {
    const std::string start = "\x1e" + revisions[i] + std::string(1, '\0');
    size_t begin = text.find(start, pos);
    if (begin == std::string_view::npos) return std::nullopt;
    size_t end = text.size();
    if (i + 1 < revisions.size()) {
      const std::string next = "\x1e" + revisions[i + 1] + std::string(1, '\0');
      end = text.find(next, begin + start.size());
      if (end == std::string_view::npos) return std::nullopt;
    }
    std::string_view record = text.substr(begin + 1, end - begin - 1);
    std::vector<std::string_view> fields;
    size_t p = 0;
    for (int f = 0; f < 5; ++f) {
      size_t nul = record.find('\0', p);
      if (nul == std::string_view::npos) return std::nullopt;
      fields.push_back(record.substr(p, nul - p));
      p = nul + 1;
    }
    Commit c;
    c.revision = std::string(fields[0]);
    c.author = std::string(fields[1]);
    c.committer = std::string(fields[2]);
    c.commit_time = std::strtoll(std::string(fields[3]).c_str(), nullptr, 10);
    c.comments = trim_right(fields[4]);
    // Then -z's commit terminator, a newline, and NUL-terminated paths.
    std::string_view files = record.substr(p);
    while (!files.empty() && (files.front() == '\0' || files.front() == '\n')) files.remove_prefix(1);
    size_t q = 0;
    while (q < files.size()) {
      size_t nul = files.find('\0', q);
      if (nul == std::string_view::npos) nul = files.size();
      std::string_view name = files.substr(q, nul - q);
      if (!name.empty() && name != "\n") c.files.emplace_back(name);
      q = nul + 1;
    }
    out.push_back(std::move(c));
    pos = end;
  }
  return out;
}

std::string branch_of(std::string_view ref) {
  constexpr std::string_view kHeads = "refs/heads/";
  if (ref.rfind(kHeads, 0) == 0) return std::string(ref.substr(kHeads.size()));
  return std::string(ref);
}

std::string ref_of_branch(std::string_view branch) {
  if (branch.rfind("refs/", 0) == 0) return std::string(branch);
  return "refs/heads/" + std::string(branch);
}

std::string tracking_ref(std::string_view ref) {
  if (ref.rfind("refs/", 0) == 0) return "refs/kiln/" + std::string(ref.substr(5));
  return "refs/kiln/" + std::string(ref);
}

std::string url_hash(std::string_view url) { return kiln::sdk::stable_hash_hex(url); }

std::string trim_right(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ' ||
                           text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return std::string(text);
}

}  // namespace kiln::git
