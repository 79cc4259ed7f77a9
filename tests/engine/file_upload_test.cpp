// File uploads as the master sees them, over a real local worker: the
// master's copy appears whole and only on success, with the worker file's
// times when the step keeps them.

#include "util/build_master.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

using kiln::testing::BuildMaster;
using kiln::testing::one_builder_yaml;
using kiln::testing::read_file;

namespace {

// Names in the folder that are not `keep`: leftovers of an upload.
int other_entries(const std::filesystem::path& folder, const std::string& keep) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().filename() != keep) ++count;
  }
  return count;
}

}  // namespace

TEST_CASE("a failed file upload leaves the master's earlier copy as it was and no partial file") {
  BuildMaster m(one_builder_yaml(
      "      - {type: file-upload, workersrc: missing.txt, masterdest: uploads/out.txt}\n"));
  std::filesystem::create_directories(m.dir() / "uploads");
  std::ofstream(m.dir() / "uploads" / "out.txt") << "earlier build\n";

  const auto build = m.build("b", nlohmann::json::array());
  CHECK(build["results"] == KILN_FAILURE);
  CHECK(read_file(m.dir() / "uploads" / "out.txt") == "earlier build\n");
  CHECK(other_entries(m.dir() / "uploads", "out.txt") == 0);
}

TEST_CASE("a file upload truncated at maxsize fails and leaves no file on the master") {
  BuildMaster m(one_builder_yaml(
      "      - {type: shell, command: \"seq 1 1000 > big.txt\"}\n"
      "      - {type: file-upload, workersrc: big.txt, masterdest: uploads/big.txt, maxsize: 100}\n"));
  const auto build = m.build("b", nlohmann::json::array());
  CHECK(build["results"] == KILN_FAILURE);
  CHECK_FALSE(std::filesystem::exists(m.dir() / "uploads" / "big.txt"));
  CHECK(other_entries(m.dir() / "uploads", "") == 0);
}

TEST_CASE("a file upload gives the master's copy the worker file's times with keepstamp and the step's mode") {
  BuildMaster m(one_builder_yaml(
      "      - {type: shell, command: \"echo stamped > a.txt && touch -d '2001-02-03 04:05:06 UTC' a.txt\"}\n"
      "      - {type: file-upload, workersrc: a.txt, masterdest: uploads/a.txt, keepstamp: true, mode: \"0604\"}\n"
      "      - {type: file-upload, workersrc: a.txt, masterdest: uploads/b.txt}\n"));
  const auto build = m.build("b", nlohmann::json::array());
  REQUIRE(build["results"] == KILN_SUCCESS);
  CHECK(read_file(m.dir() / "uploads" / "a.txt") == "stamped\n");
  struct stat kept {}, fresh {};
  REQUIRE(::stat((m.dir() / "uploads" / "a.txt").c_str(), &kept) == 0);
  REQUIRE(::stat((m.dir() / "uploads" / "b.txt").c_str(), &fresh) == 0);
  CHECK(kept.st_mtime == 981173106);  // 2001-02-03 04:05:06 UTC
  CHECK(fresh.st_mtime > 981173106);
  CHECK((kept.st_mode & 07777) == 0604);
  CHECK((fresh.st_mode & 07777) != 0604);
  CHECK(other_entries(m.dir() / "uploads", "") == 2);
}
