// The `svn` step end to end: a real engine with the local worker runs real
// svn against repositories made with svnadmin in temporary folders.

#include "svn_test_support.h"

#include "util/build_master.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

namespace {

using nlohmann::json;
using kiln::svn::test::SvnRepo;
using kiln::testing::BuildMaster;
using kiln::testing::TempDir;

std::string master_yaml(const std::string& step) { return kiln::testing::one_builder_yaml("      - " + step + "\n"); }

std::string read(const std::filesystem::path& p) { return kiln::testing::read_file(p); }

using kiln::testing::property_value;

}  // namespace

TEST_CASE("an svn checkout of the stamp's exact revision sets got_revision and the summary") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  const int old = up.commit("old", {{"v.txt", "old\n"}});
  up.commit("new", {{"v.txt", "new\n"}});
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\", mode: full, method: clobber}"), "kiln-svn-step");
  json build = m.build("b", {{{"revision", std::to_string(old)}}});
  INFO(m.stdio(m.steps(build)[0]));
  CHECK(build["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(build), "got_revision") == std::to_string(old));
  CHECK(m.steps(build)[0]["state_string"] == "update r" + std::to_string(old));
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "old\n");

  // No revision: the latest.
  json latest = m.build("b", json::array({json::object()}));
  REQUIRE(latest["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(latest), "got_revision") == std::to_string(up.head()));
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "new\n");
}

TEST_CASE("an incremental svn build updates the working copy in place and keeps untracked files") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  const int first = up.commit("one", {{"a.txt", "1\n"}});
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\"}"), "kiln-svn-step");
  json b1 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b1), "got_revision") == std::to_string(first));
  CHECK(m.stdio(m.steps(b1)[0]).find("svn checkout") != std::string::npos);

  const auto work = m.builder_dir("b") / "build";
  std::ofstream(work / "output.o") << "built";
  const int second = up.commit("two", {{"a.txt", "2\n"}});
  json b2 = m.build("b", json::array({json::object()}));
  const std::string log = m.stdio(m.steps(b2)[0]);
  INFO(log);
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b2), "got_revision") == std::to_string(second));
  CHECK(read(work / "a.txt") == "2\n");
  CHECK(std::filesystem::exists(work / "output.o"));
  CHECK(log.find("svn update") != std::string::npos);
  CHECK(log.find("svn checkout") == std::string::npos);

  // Back to an older revision, in place.
  json b3 = m.build("b", {{{"revision", std::to_string(first)}}});
  REQUIRE(b3["results"] == KILN_SUCCESS);
  CHECK(read(work / "a.txt") == "1\n");
}

TEST_CASE("svn full fresh removes unversioned and ignored files and reverts local edits") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  up.commit("base", {{"a.txt", "a\n"}});
  up.svn("propset -q svn:ignore '*.o' .");
  up.commit("ignore objects");
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\", mode: full}"), "kiln-svn-step");
  REQUIRE(m.build("b", json::array({json::object()}))["results"] == KILN_SUCCESS);
  const auto work = m.builder_dir("b") / "build";
  std::ofstream(work / "junk.txt") << "junk";
  std::ofstream(work / "thing.o") << "object";
  std::ofstream(work / "a.txt") << "edited\n";
  json b2 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b2)[0]));
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK_FALSE(std::filesystem::exists(work / "junk.txt"));
  CHECK_FALSE(std::filesystem::exists(work / "thing.o"));
  CHECK(read(work / "a.txt") == "a\n");
}

TEST_CASE("svn full clean keeps ignored files, and copy builds from a pristine source copy") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  up.commit("base", {{"a.txt", "a\n"}});
  up.svn("propset -q svn:ignore '*.o' .");
  up.commit("ignore objects");
  {
    BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\", mode: full, method: clean}"), "kiln-svn-step");
    REQUIRE(m.build("b", json::array({json::object()}))["results"] == KILN_SUCCESS);
    const auto work = m.builder_dir("b") / "build";
    std::ofstream(work / "junk.txt") << "junk";
    std::ofstream(work / "thing.o") << "object";
    REQUIRE(m.build("b", json::array({json::object()}))["results"] == KILN_SUCCESS);
    CHECK_FALSE(std::filesystem::exists(work / "junk.txt"));
    CHECK(std::filesystem::exists(work / "thing.o"));
  }
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\", mode: full, method: copy}"), "kiln-svn-step");
  json b1 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  const auto work = m.builder_dir("b") / "build";
  std::ofstream(work / "output.o") << "built";
  REQUIRE(m.build("b", json::array({json::object()}))["results"] == KILN_SUCCESS);
  CHECK(read(work / "a.txt") == "a\n");
  CHECK_FALSE(std::filesystem::exists(work / "output.o"));
  CHECK(std::filesystem::exists(m.builder_dir("b") / "source" / ".svn"));
}

TEST_CASE("svn full export gives a tree without .svn and the source copy's revision") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  const int rev = up.commit("base", {{"a.txt", "a\n"}});
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\", mode: full, method: export}"), "kiln-svn-step");
  json b = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b)[0]));
  REQUIRE(b["results"] == KILN_SUCCESS);
  CHECK(read(m.builder_dir("b") / "build" / "a.txt") == "a\n");
  CHECK_FALSE(std::filesystem::exists(m.builder_dir("b") / "build" / ".svn"));
  CHECK(property_value(m.properties(b), "got_revision") == std::to_string(rev));
}

TEST_CASE("svn with base_url checks out the stamp's branch, default_branch without one") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  up.mkdirs({"trunk", "branches"});
  up.commit("trunk", {{"trunk/f.txt", "trunk\n"}});
  up.copy("trunk", "branches/1.x");
  up.commit("on branch", {{"branches/1.x/f.txt", "branch\n"}});
  BuildMaster m(master_yaml("{type: svn, base_url: \"" + up.url() + "/\"}"), "kiln-svn-step");
  json b1 = m.build("b", {{{"branch", "branches/1.x"}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(read(m.builder_dir("b") / "build" / "f.txt") == "branch\n");
  // Another URL in the same folder: checked out afresh, not switched.
  json b2 = m.build("b", json::array({json::object()}));
  const std::string log = m.stdio(m.steps(b2)[0]);
  INFO(log);
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(m.builder_dir("b") / "build" / "f.txt") == "trunk\n");
  CHECK(log.find("checking out afresh") != std::string::npos);
}

TEST_CASE("an svn stamp's patch is applied in its subdir and cleaned away by the next build") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  up.commit("base", {{"sub/hello.txt", "hello\n"}, {"top.txt", "top\n"}});
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\"}"), "kiln-svn-step");
  const std::string diff =
      "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+hello, patched\n"
      "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new file\n";
  json b1 = m.build("b", {{{"patch", {{"level", 1}, {"body", diff}, {"subdir", "sub"}}}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  const auto work = m.builder_dir("b") / "build";
  CHECK(read(work / "sub" / "hello.txt") == "hello, patched\n");
  CHECK(read(work / "sub" / "new.txt") == "new file\n");
  CHECK_FALSE(std::filesystem::exists(work / ".kiln-diff"));

  json b2 = m.build("b", json::array({json::object()}));
  INFO(m.stdio(m.steps(b2)[0]));
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(work / "sub" / "hello.txt") == "hello\n");
  CHECK_FALSE(std::filesystem::exists(work / "sub" / "new.txt"));
  CHECK_FALSE(std::filesystem::exists(work / ".kiln-patched"));
}

TEST_CASE("an svn patch that does not apply fails the build with patch's output in the log") {
  TempDir tmp("kiln-svn-up");
  SvnRepo up(tmp / "up");
  up.commit("base", {{"hello.txt", "hello\n"}});
  BuildMaster m(master_yaml("{type: svn, repourl: \"" + up.url() + "\"}"), "kiln-svn-step");
  const std::string diff = "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-goodbye\n+farewell\n";
  json b = m.build("b", {{{"patch", {{"level", 1}, {"body", diff}}}}});
  const std::string log = m.stdio(m.steps(b)[0]);
  INFO(log);
  CHECK(b["results"] == KILN_FAILURE);
  CHECK(m.steps(b)[0]["state_string"] == "update (patch failed)");
  CHECK(log.find("FAILED") != std::string::npos);  // patch's report of the rejected hunk
}

TEST_CASE("an svn checkout of a repository that does not exist fails with svn's message") {
  TempDir tmp("kiln-svn-up");
  BuildMaster m(master_yaml("{type: svn, repourl: \"file://" + (tmp / "nothing").string() + "\"}"), "kiln-svn-step");
  json b = m.build("b", json::array({json::object()}));
  const std::string log = m.stdio(m.steps(b)[0]);
  INFO(log);
  CHECK(b["results"] == KILN_FAILURE);
  CHECK(log.find("Unable to connect to a repository") != std::string::npos);
}

TEST_CASE("the svn step refuses a config without a URL, with two, or with a method in incremental mode") {
  kiln::plugin::Registry registry;
  REQUIRE_FALSE(registry.load_library(std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-svn.so"));
  auto none = registry.check_with_plugin(KILN_KIND_STEP, "svn", json::object());
  REQUIRE(none);
  CHECK(none->find("repourl (or base_url") != std::string::npos);
  auto both = registry.check_with_plugin(KILN_KIND_STEP, "svn", {{"repourl", "file:///a"}, {"base_url", "file:///b/"}});
  REQUIRE(both);
  CHECK(both->find("not both") != std::string::npos);
  auto method = registry.check_with_plugin(KILN_KIND_STEP, "svn",
                                           {{"repourl", "file:///a"}, {"mode", "incremental"}, {"method", "clobber"}});
  REQUIRE(method);
  CHECK(method->find("applies to mode full only") != std::string::npos);
  CHECK_FALSE(registry.check_with_plugin(KILN_KIND_STEP, "svn", {{"repourl", "file:///a"}, {"mode", "full"}, {"method", "export"}}));
}
