#pragma once
// What the hg tests share: real repositories made with `hg init` in
// temporary folders, with fixed authors and, when asked, fixed dates.

#include "util/shell.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace kiln::hg::test {

using kiln::testing::quoted;
using kiln::testing::sh;
using kiln::testing::trimmed;

class HgRepo {
 public:
  explicit HgRepo(std::filesystem::path dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    hg("init -q");
  }

  const std::filesystem::path& dir() const { return dir_; }
  std::string url() const { return dir_.string(); }

  std::string hg(const std::string& args) const {
    return sh("cd " + quoted(dir_.string()) + " && HGPLAIN=1 hg --config ui.username=Tester " + args);
  }

  void write(const std::string& path, const std::string& text) const {
    std::filesystem::create_directories((dir_ / path).parent_path());
    std::ofstream(dir_ / path, std::ios::binary) << text;
  }

  // Writes the files, commits everything and returns the new changeset's id.
  std::string commit(const std::string& message, const std::vector<std::pair<std::string, std::string>>& files = {},
                     const std::string& author = "Ann Author <ann@example.org>", const std::string& date = "") {
    for (const auto& [path, text] : files) write(path, text);
    hg("addremove -q");
    hg("commit -q -u " + quoted(author) + (date.empty() ? "" : " -d " + quoted(date)) + " -m " + quoted(message));
    return head();
  }

  std::string head(const std::string& rev = ".") const { return trimmed(hg("log -r " + quoted(rev) + " --template '{node}'")); }

 private:
  std::filesystem::path dir_;
};

}  // namespace kiln::hg::test
