#pragma once
// What hg prints for kiln-hg and how it is read, kept apart from the
// components: the templates the poller asks for and their parsers.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::hg {

// `hg heads --template kHeadsTemplate`, `hg bookmarks --template
// kBookmarksTemplate`: one "name\x1fnode" line each.
extern const char* const kHeadsTemplate;
extern const char* const kBookmarksTemplate;
// name -> every node listed for it (a branch may have several heads).
std::map<std::string, std::vector<std::string>> parse_named_nodes(std::string_view text);

struct Commit {
  std::string node, author, branch, comments;
  int64_t when = 0;
  std::vector<std::string> files;
};
// The --template of `hg log` whose output parse_commits reads: fields split
// by \x1f, files by \x1e, records ended by \x1d (none of which a commit
// message can hold in a way that matters here: a record is only accepted
// when it has every field).
extern const char* const kCommitTemplate;
std::optional<std::vector<Commit>> parse_commits(std::string_view text);

// The revset of the commits NEW reaches that none of `known` reaches, oldest
// first; known nodes the mirror does not have (stripped) are skipped.
std::string new_commits_revset(const std::string& head, const std::vector<std::string>& known);

}  // namespace kiln::hg
