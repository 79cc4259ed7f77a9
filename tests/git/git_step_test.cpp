// The `git` step end to end: a real Engine with the local worker runs real
// git against repositories made in temporary folders.

#include "git_test_support.h"

#include "util/build_master.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using kiln::git::test::GitRepo;
using kiln::git::test::sh;
using kiln::testing::TempDir;

using Master = kiln::testing::BuildMaster;

std::string master_yaml(const std::string& steps) { return kiln::testing::one_builder_yaml(steps); }

std::string read(const std::filesystem::path& p) { return kiln::testing::read_file(p); }

using kiln::testing::property_value;

}  // namespace

TEST_CASE("a full clobber checkout of the stamp's branch sets got_revision and the summary") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  up.commit("base", {{"file.txt", "main\n"}});
  up.git("checkout -q -b dev");
  const std::string dev = up.commit("dev work", {{"file.txt", "dev\n"}});
  up.git("checkout -q main");

  Master m(master_yaml("      - {type: git, repourl: " + up.url() + ", mode: full, method: clobber}\n"));
  json build = m.build("b", {{{"branch", "dev"}, {"repository", up.url()}}});
  INFO(m.stdio(m.steps(build)[0]));
  CHECK(build["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(build), "got_revision") == dev);
  CHECK(m.steps(build)[0]["state_string"] == "update " + dev.substr(0, 12));
  CHECK(read(m.builder_dir("b") / "build" / "file.txt") == "dev\n");
  // Named after the stamp's branch, not detached.
  CHECK(kiln::git::test::trimmed(sh("cd " + (m.builder_dir("b") / "build").string() +
                                    " && git rev-parse --abbrev-ref HEAD")) == "dev");
}

TEST_CASE("an incremental update fetches a new commit and keeps untracked files") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  const std::string first = up.commit("one", {{"a.txt", "1\n"}});
  Master m(master_yaml("      - {type: git, repourl: " + up.url() + ", mode: incremental}\n"));
  json b1 = m.build("b", {{{"branch", "main"}}});
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b1), "got_revision") == first);

  const auto work = m.builder_dir("b") / "build";
  std::ofstream(work / "output.o") << "built";
  const std::string second = up.commit("two", {{"a.txt", "2\n"}});
  json b2 = m.build("b", {{{"branch", "main"}}});
  const std::string log = m.stdio(m.steps(b2)[0]);
  INFO(log);
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b2), "got_revision") == second);
  CHECK(read(work / "a.txt") == "2\n");
  CHECK(std::filesystem::exists(work / "output.o"));
  CHECK(log.find("fetch") != std::string::npos);
  CHECK(log.find("clone") == std::string::npos);
}

TEST_CASE("an exact revision of the source stamp is checked out") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  const std::string old = up.commit("old", {{"v.txt", "old\n"}});
  up.commit("new", {{"v.txt", "new\n"}});
  Master m(master_yaml("      - {type: git, repourl: " + up.url() + "}\n"));
  // First a clone, then an update to an older revision: both paths.
  json b1 = m.build("b", {{{"branch", "main"}, {"revision", old}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b1), "got_revision") == old);
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "old\n");
  json b2 = m.build("b", {{{"branch", "main"}}});
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(m.builder_dir("b") / "build" / "v.txt") == "new\n");
  json b3 = m.build("b", {{{"branch", "main"}, {"revision", old}}});
  REQUIRE(b3["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b3), "got_revision") == old);
}

TEST_CASE("a stamp's patch is applied at its level in its subdir, and undone by the next update") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  up.commit("base", {{"sub/hello.txt", "hello\n"}, {"top.txt", "top\n"}});
  Master m(master_yaml("      - {type: git, repourl: " + up.url() + "}\n"));
  const std::string diff =
      "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-hello\n+patched\n"
      "--- /dev/null\n+++ b/added.txt\n@@ -0,0 +1 @@\n+new file\n";
  json b1 = m.build("b", {{{"branch", "main"}, {"patch", {{"level", 1}, {"body", diff}, {"subdir", "sub"}}}}});
  INFO(m.stdio(m.steps(b1)[0]));
  REQUIRE(b1["results"] == KILN_SUCCESS);
  const auto work = m.builder_dir("b") / "build";
  CHECK(read(work / "sub" / "hello.txt") == "patched\n");
  CHECK(read(work / "sub" / "added.txt") == "new file\n");
  CHECK(read(work / "top.txt") == "top\n");
  CHECK_FALSE(std::filesystem::exists(work / ".kiln-diff"));

  json b2 = m.build("b", {{{"branch", "main"}}});
  REQUIRE(b2["results"] == KILN_SUCCESS);
  CHECK(read(work / "sub" / "hello.txt") == "hello\n");
  CHECK_FALSE(std::filesystem::exists(work / "sub" / "added.txt"));
}

TEST_CASE("a patch that does not apply fails the step") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  up.commit("base", {{"hello.txt", "hello\n"}});
  Master m(master_yaml("      - {type: git, repourl: " + up.url() + "}\n"));
  const std::string diff = "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-something else\n+patched\n";
  json b = m.build("b", {{{"branch", "main"}, {"patch", {{"level", 1}, {"body", diff}}}}});
  CHECK(b["results"] == KILN_FAILURE);
  CHECK(m.steps(b)[0]["state_string"] == "update (failure)");
  CHECK(m.stdio(m.steps(b)[0]).find("the patch does not apply") != std::string::npos);
}

TEST_CASE("a shallow clone has only the requested depth of history") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  up.commit("one");
  up.commit("two");
  const std::string three = up.commit("three");
  // --depth needs a transport: git ignores it for plain local paths.
  Master m(master_yaml("      - {type: git, repourl: \"file://" + up.url() + "\", mode: full, method: clobber, shallow: true}\n"));
  json b = m.build("b", {{{"branch", "main"}}});
  INFO(m.stdio(m.steps(b)[0]));
  REQUIRE(b["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b), "got_revision") == three);
  const auto work = m.builder_dir("b") / "build";
  CHECK(kiln::git::test::trimmed(sh("cd " + work.string() + " && git rev-list --count HEAD")) == "1");
}

TEST_CASE("fresh removes ignored and untracked files, clean keeps ignored ones, copy keeps a pristine source") {
  TempDir tmp("kiln-git-up");
  GitRepo up(tmp / "up");
  up.commit("base", {{".gitignore", "*.o\n"}, {"a.c", "a\n"}});
  Master m(master_yaml("      - {type: git, name: clean, repourl: " + up.url() + ", mode: full, method: clean, workdir: c}\n"
                       "      - {type: git, name: fresh, repourl: " + up.url() + ", mode: full, method: fresh, workdir: f}\n"
                       "      - {type: git, name: copy, repourl: " + up.url() + ", mode: full, method: copy, workdir: k}\n"));
  REQUIRE(m.build("b", {{{"branch", "main"}}})["results"] == KILN_SUCCESS);
  const auto base = m.builder_dir("b");
  for (const char* dir : {"c", "f", "k"}) {
    std::ofstream(base / dir / "x.o") << "ignored";
    std::ofstream(base / dir / "junk.txt") << "untracked";
  }
  REQUIRE(m.build("b", {{{"branch", "main"}}})["results"] == KILN_SUCCESS);
  CHECK(std::filesystem::exists(base / "c" / "x.o"));
  CHECK_FALSE(std::filesystem::exists(base / "c" / "junk.txt"));
  CHECK_FALSE(std::filesystem::exists(base / "f" / "x.o"));
  CHECK_FALSE(std::filesystem::exists(base / "f" / "junk.txt"));
  CHECK_FALSE(std::filesystem::exists(base / "k" / "x.o"));
  CHECK(read(base / "k" / "a.c") == "a\n");
  CHECK(std::filesystem::exists(base / "source" / ".git"));
}

TEST_CASE("two codebases check out into workdirs rendered from their stamps") {
  TempDir tmp("kiln-git-up");
  GitRepo app(tmp / "app");
  GitRepo lib(tmp / "lib");
  const std::string app_rev = app.commit("app", {{"app.txt", "app\n"}});
  const std::string lib_rev = lib.commit("lib", {{"lib.txt", "lib\n"}});
  Master m(master_yaml("      - {type: git, repourl: " + app.url() + ", codebase: app, workdir: \"src-%(src:app:codebase)s\"}\n"
                       "      - {type: git, repourl: " + lib.url() + ", codebase: lib, workdir: \"src-%(src:lib:codebase)s\"}\n"));
  json b = m.build("b", {{{"codebase", "app"}, {"branch", "main"}, {"repository", app.url()}},
                         {{"codebase", "lib"}, {"branch", "main"}, {"repository", lib.url()}}});
  INFO(m.stdio(m.steps(b)[0]));
  REQUIRE(b["results"] == KILN_SUCCESS);
  CHECK(property_value(m.properties(b), "got_revision") == json{{"app", app_rev}, {"lib", lib_rev}});
  CHECK(read(m.builder_dir("b") / "src-app" / "app.txt") == "app\n");
  CHECK(read(m.builder_dir("b") / "src-lib" / "lib.txt") == "lib\n");
}

TEST_CASE("a repository that cannot be cloned fails the step with git's reason in the log") {
  TempDir tmp("kiln-git-up");
  Master m(master_yaml("      - {type: git, repourl: " + (tmp / "missing").string() + ", mode: full, method: clobber}\n"));
  json b = m.build("b", {{{"branch", "main"}}});
  CHECK(b["results"] == KILN_FAILURE);
  const std::string log = m.stdio(m.steps(b)[0]);
  CHECK(log.find("git clone failed") != std::string::npos);
  CHECK(log.find("does not exist") != std::string::npos);
}
