#pragma once
// What the git tests share: real repositories made with the git command line
// in temporary folders (GitRepo).

#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"
#include "util/shell.h"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

namespace kiln::git::test {

using kiln::testing::quoted;
using kiln::testing::sh;
using kiln::testing::trimmed;

// A working repository with branch main; commits get fixed identities and,
// when asked, fixed dates.
class GitRepo {
 public:
  explicit GitRepo(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    git("init -q -b main");
  }

  const std::filesystem::path& dir() const { return dir_; }
  std::string url() const { return dir_.string(); }

  std::string git(const std::string& args) const {
    return sh("cd " + quoted(dir_.string()) + " && git -c user.name=Tester -c user.email=tester@example.org " +
              args);
  }

  void write(const std::string& path, const std::string& text) const {
    std::filesystem::create_directories((dir_ / path).parent_path());
    std::ofstream(dir_ / path, std::ios::binary) << text;
  }

  // Writes the files, commits them and returns the new commit's id.
  std::string commit(const std::string& message, const std::vector<std::pair<std::string, std::string>>& files = {},
                     const std::string& author = "Ann Author <ann@example.org>",
                     const std::string& date = "") {
    for (const auto& [path, text] : files) write(path, text);
    git("add -A");
    std::string env = "GIT_COMMITTER_NAME='Cee Committer' GIT_COMMITTER_EMAIL=cee@example.org ";
    if (!date.empty()) env += "GIT_AUTHOR_DATE=" + quoted(date) + " GIT_COMMITTER_DATE=" + quoted(date) + " ";
    sh("cd " + quoted(dir_.string()) + " && " + env + "git commit -q --allow-empty --author=" + quoted(author) +
       " -m " + quoted(message));
    return head();
  }

  std::string head(const std::string& ref = "HEAD") const { return trimmed(git("rev-parse " + ref)); }

 private:
  std::filesystem::path dir_;
};

using kiln::testing::pump_until;

}  // namespace kiln::git::test
