#pragma once
// What the svn tests share: a real repository made with `svnadmin create`,
// reached through a file:// URL, and a working copy of its root to commit
// from with fixed authors and dates.

#include "util/shell.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace kiln::svn::test {

using kiln::testing::quoted;
using kiln::testing::sh;
using kiln::testing::trimmed;

class SvnRepo {
 public:
  // The repository in dir/repo, a working copy of its root in dir/wc.
  explicit SvnRepo(const std::filesystem::path& dir) : repo_(dir / "repo"), wc_(dir / "wc") {
    std::filesystem::create_directories(dir);
    sh("svnadmin create " + quoted(repo_.string()));
    // Dates are set after the commit (svn:date); svn allows revision
    // property changes only through this hook.
    const auto hook = repo_ / "hooks" / "pre-revprop-change";
    std::ofstream(hook) << "#!/bin/sh\nexit 0\n";
    std::filesystem::permissions(hook, std::filesystem::perms::owner_all, std::filesystem::perm_options::add);
    sh("svn checkout -q " + quoted(url()) + " " + quoted(wc_.string()));
  }

  std::string url(const std::string& below = "") const {
    return "file://" + repo_.string() + (below.empty() ? "" : "/" + below);
  }
  const std::filesystem::path& wc() const { return wc_; }

  std::string svn(const std::string& args) const {
    return sh("cd " + quoted(wc_.string()) + " && svn " + args + " 2>&1");
  }

  void write(const std::string& path, const std::string& text) const {
    std::filesystem::create_directories((wc_ / path).parent_path());
    std::ofstream(wc_ / path, std::ios::binary) << text;
  }

  // Writes the files (folders on the way are added too), commits everything
  // and returns the new revision's number.
  int commit(const std::string& message, const std::vector<std::pair<std::string, std::string>>& files = {},
             const std::string& author = "ann", const std::string& date = "") {
    for (const auto& [path, text] : files) write(path, text);
    svn("add -q --force --parents .");
    svn("commit -q --force-log --username " + quoted(author) + " -m " + quoted(message));
    svn("update -q");
    const int revision = head();
    if (!date.empty()) svn("propset -q --revprop -r " + std::to_string(revision) + " svn:date " + quoted(date));
    return revision;
  }

  // Folders, committed at once (a layout: trunk, branches, ...).
  int mkdirs(const std::vector<std::string>& dirs, const std::string& message = "layout") {
    std::string list;
    for (const auto& d : dirs) list += " " + quoted(d);
    svn("mkdir -q --parents" + list);
    svn("commit -q --force-log --username admin -m " + quoted(message));
    svn("update -q");
    return head();
  }

  // A server-side copy (a branch or tag), as one revision.
  int copy(const std::string& from, const std::string& to, const std::string& author = "ann") {
    svn("copy -q --parents --username " + quoted(author) + " -m " + quoted("copy " + from + " to " + to) + " " +
        quoted(url(from)) + " " + quoted(url(to)));
    svn("update -q");
    return head();
  }

  int head() const { return std::stoi(trimmed(sh("svn info --show-item revision " + quoted(url())))); }

 private:
  std::filesystem::path repo_, wc_;
};

}  // namespace kiln::svn::test
