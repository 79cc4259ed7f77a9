#pragma once
// Text that git prints and Kiln parses, kept apart from the components so
// the parsing rules sit in one place: ls-remote listings, batched commit
// records, ref names, and the mirror folder's name.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::git {

// `git ls-remote --symref`: refs -> object, plus where HEAD points.
struct RemoteRefs {
  std::map<std::string, std::string> refs;  // "refs/heads/main" -> sha
  std::string head_target;                  // "refs/heads/main", or empty
};
RemoteRefs parse_ls_remote(std::string_view text);

// `git for-each-ref --format='%(refname) %(objectname) %(*objectname)'`:
// ref -> commit (the peeled object for annotated tags).
std::map<std::string, std::string> parse_for_each_ref(std::string_view text);

// One commit as the poller reports it.
struct Commit {
  std::string revision, author, committer, comments;
  int64_t commit_time = 0;
  std::vector<std::string> files;
};

// The --format of the batched `git log` whose output parse_commits reads.
extern const char* const kCommitFormat;
// Records of `git log --no-walk=unsorted -z --name-only --format=kCommitFormat
// <revs...>`, one per expected revision, in that order. Looks each record up
// by its revision, so no message text can be mistaken for a separator.
std::optional<std::vector<Commit>> parse_commits(std::string_view text,
                                                 const std::vector<std::string>& revisions);

// "refs/heads/x" -> "x"; other refs (tags) stay whole, as in Buildbot.
std::string branch_of(std::string_view ref);
// "x" or "refs/heads/x" -> "refs/heads/x"; other "refs/..." stay.
std::string ref_of_branch(std::string_view branch);
// Where the mirror keeps a remote ref: "refs/heads/x" -> "refs/kiln/heads/x".
std::string tracking_ref(std::string_view ref);

// 16 hex digits (FNV-1a 64) naming the mirror of one repository URL; stable
// across builds and machines.
std::string url_hash(std::string_view url);

// Trims trailing whitespace (git's output ends with a newline).
std::string trim_right(std::string_view text);

}  // namespace kiln::git
