#pragma once
// What the git tests share: real repositories made with the git command line
// in temporary folders (GitRepo), and a loop pump with a real-time bound.

#include "store/temp_dir.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

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

// Runs a shell command line; returns its stdout (stderr goes to the test's
// output) and fails the test when it exits non-zero.
inline std::string sh(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int rc = ::pclose(pipe);
  INFO(command);
  REQUIRE(rc == 0);
  return out;
}

inline std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

inline std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

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
