// The `hg` step end to end: a real engine with the local worker runs real
// hg against repositories made in temporary folders.

#include "hg_test_support.h"

#include "util/build_master.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using nlohmann::json;
using kiln::hg::test::HgRepo;
using kiln::testing::BuildMaster;
using kiln::testing::TempDir;

std::string master_yaml(const std::string& step) { return kiln::testing::one_builder_yaml("      - " + step + "\n"); }

std::string read(const std::filesystem::path& p) { return kiln::testing::read_file(p); }

using kiln::testing::property_value;

}  // namespace

TEST_CASE("an hg clobber checkout of the stamp's branch sets got_revision and the summary") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  up.commit("base", {{"file.txt", "default\n"}});
  up.hg("branch -q dev");
  const std::string dev = up.commit("dev work", {{"file.txt", "dev\n"}});
  up.hg("update -q default");
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\", branch_type: inrepo, mode: full, method: clobber}"), "kiln-hg-step");
  json build = m.build("b", {{{"branch", "dev"}}});
  INFO(m.stdio(m.steps(build)[0]));
  CHECK(build["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(build), "got_revision") == dev);
  CHECK(m.steps(build)[0]["state_string"] == "update " + dev.substr(0, 12));
  CHECK(read(m.builder_dir("b") / "build" / "file.txt") == "dev\n");
}

TEST_CASE("an incremental hg build pulls and updates in place, keeping untracked files") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  const std::string first = up.commit("one", {{"a.txt", "1\n"}});
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\"}"), "kiln-hg-step");
  json b1 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b1), "got_revision") == first);

  const auto work = m.builder_dir("b") / "build";
  std::ofstream(work / "output.o") << "built";
  const std::string second = up.commit("two", {{"a.txt", "2\n"}});
  json b2 = m.build("b", json::array({json::object()}));
  const std::string log = m.stdio(m.steps(b2)[0]);
  INFO(log);
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b2), "got_revision") == second);
  CHECK(read(work / "a.txt") == "2\n");
  CHECK(std::filesystem::exists(work / "output.o"));
  CHECK(log.find("hg --noninteractive pull") != std::string::npos);
  CHECK(log.find("clone") == std::string::npos);
}

TEST_CASE("an exact hg revision of the source stamp is checked out") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  const std::string old = up.commit("old", {{"v.txt", "old\n"}});
  up.commit("new", {{"v.txt", "new\n"}});
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\"}"), "kiln-hg-step");
  json b1 = m.build("b", {{{"revision", old}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b1), "got_revision") == old);
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "old\n");
  json b2 = m.build("b", json::array({json::object()}));
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "new\n");
}

TEST_CASE("hg full fresh purges unknown and ignored files, full clean keeps ignored ones") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  up.commit("base", {{"a.txt", "a\n"}, {".hgignore", "syntax: glob\n*.o\n"}});
  for (const std::string method : {"fresh", "clean"}) {
    BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\", mode: full, method: " + method + "}"),
                  "kiln-hg-step");
    REQUIRE(m.build("b", json::array({json::object()}))["results"] == KILN_SUCCESS);
    const auto work = m.builder_dir("b") / "build";
    std::ofstream(work / "junk.txt") << "junk";
    std::ofstream(work / "thing.o") << "object";
    std::ofstream(work / "a.txt") << "edited\n";
    json b2 = m.build("b", json::array({json::object()}));
    INFO(method << ": " << m.stdio(m.steps(b2)[0]));
    REQUIRE(b2["results"] == KILN_SUCCESS);
    CHECK_FALSE(std::filesystem::exists(work / "junk.txt"));
    CHECK(std::filesystem::exists(work / "thing.o") == (method == "clean"));
    CHECK(read(work / "a.txt") == "a\n");
  }
}

TEST_CASE("an hg stamp's patch is imported in its subdir and gone after the next incremental build") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  up.commit("base", {{"sub/hello.txt", "hello\n"}});
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\"}"), "kiln-hg-step");
  const std::string diff =
      "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+hello, patched\n"
      "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new file\n";
  json b1 = m.build("b", {{{"patch", {{"level", 1}, {"body", diff}, {"subdir", "sub"}}}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  const auto work = m.builder_dir("b") / "build";
  CHECK(read(work / "sub" / "hello.txt") == "hello, patched\n");
  CHECK(read(work / "sub" / "new.txt") == "new file\n");

  json b2 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b2)[0]));
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(work / "sub" / "hello.txt") == "hello\n");
  CHECK_FALSE(std::filesystem::exists(work / "sub" / "new.txt"));
}

TEST_CASE("an hg patch that does not apply fails the build") {
  TempDir tmp("kiln-hg-up");
  HgRepo up(tmp / "up");
  up.commit("base", {{"hello.txt", "hello\n"}});
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + up.url() + "\"}"), "kiln-hg-step");
  json b = m.build("b", {{{"patch", {{"level", 1}, {"body", "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-bye\n+ciao\n"}}}}});
  const std::string log = m.stdio(m.steps(b)[0]);
  INFO(log);
  CHECK(b["results"] == KILN_FAILURE);
  CHECK(m.steps(b)[0]["state_string"] == "update (patch failed)");
  CHECK(log.find("hunk") != std::string::npos);
}

TEST_CASE("hg's default branch_type is dirname as in Buildbot so repourl plus the stamp's branch is cloned") {
  TempDir tmp("kiln-hg-up");
  HgRepo stable(tmp / "repos" / "stable");
  const std::string rev = stable.commit("stable", {{"f", "stable\n"}});
  BuildMaster m(master_yaml("{type: hg, repourl: \"" + (tmp / "repos").string() + "/\"}"),
                "kiln-hg-step");
  json b = m.build("b", {{{"branch", "stable"}}});
  INFO(m.stdio(m.steps(b)[0]));
  REQUIRE(b["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b), "got_revision") == rev);
  CHECK(read(m.builder_dir("b") / "build" / "f") == "stable\n");
}

TEST_CASE("the hg step refuses an empty repourl and a method in incremental mode") {
  kiln::plugin::Registry registry;
  REQUIRE_FALSE(registry.load_library(std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-hg.so"));
  auto empty = registry.check_with_plugin(KILN_KIND_STEP, "hg", {{"repourl", ""}});
  REQUIRE(empty);
  CHECK(empty->find("repourl must not be empty") != std::string::npos);
  auto method = registry.check_with_plugin(KILN_KIND_STEP, "hg", {{"repourl", "/srv/hg"}, {"method", "clobber"}});
  REQUIRE(method);
  CHECK(method->find("applies to mode full only") != std::string::npos);
}
