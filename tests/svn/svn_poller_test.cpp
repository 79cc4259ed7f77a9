// svn-poller on real repositories (svnadmin create, file:// URLs): the REAL
// kiln-svn.so in the shared poller harness (state that outlives instances,
// a manual clock), and split_file policies from a real policy plugin.

#include "svn_test_support.h"

#include "util/config_errors.h"
#include "util/poller_harness.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using kiln::svn::test::SvnRepo;
using kiln::testing::revisions_of;

const std::string kPolicies = std::string(KILN_TEST_PLUGIN_DIR) + "/vcs_policies/kiln-vcs_policies.so";

class SvnPollerFixture : public kiln::testing::PollerHarness {
 public:
  SvnPollerFixture() : PollerHarness("kiln-svn.so", "svn-poller", "kiln-svn-poller"), repo_(tmp() / "up") {}
  SvnRepo& repo() { return repo_; }
  // svn-poller over `below` (a path under the root; "" for the root).
  void create_at(const std::string& below, json config = json::object()) {
    config["repourl"] = repo_.url(below);
    create(config);
  }
  json last_revision() const { return saved("last_revision"); }

 private:
  SvnRepo repo_;
};

std::vector<std::string> sorted(json files) {
  std::vector<std::string> out = files;
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("the first svn poll records the head revision without reporting history") {
  SvnPollerFixture f;
  f.repo().commit("one", {{"a.txt", "1\n"}});
  const int two = f.repo().commit("two", {{"a.txt", "2\n"}});
  f.create_at("");
  f.poll();
  CHECK(f.rec().changes.empty());
  CHECK(f.last_revision() == json{{"repourl", f.repo().url()}, {"revision", two}});
  CHECK(f.rec().logged(KILN_LOG_INFO, "first poll"));
  CHECK(f.rec().errors() == 0);
}

TEST_CASE("each new svn revision becomes a change with author, files, comments, revision and date") {
  SvnPollerFixture f;
  f.repo().commit("base", {{"README", "r\n"}});
  f.create_at("", {{"project", "proj"}, {"category", "cat"}, {"codebase", "cb"},
                   {"revlinktmpl", "https://svn.example.org/r%s"}});
  f.poll();
  REQUIRE(f.rec().changes.empty());

  const int first = f.repo().commit("Add two files\n\nWith a body & <markup>.", {{"src/a.c", "a\n"}, {"b.txt", "b\n"}},
                                    "bea", "2023-05-01T10:00:00.000000Z");
  const int second = f.repo().commit("Change a", {{"src/a.c", "a2\n"}}, "ann", "2023-05-02T10:00:00.000000Z");
  f.poll();
  REQUIRE(f.rec().changes.size() == 2);
  const json& c1 = f.rec().changes[0];
  CHECK(c1["revision"] == std::to_string(first));
  CHECK(c1["author"] == "bea");
  CHECK(sorted(c1["files"]) == std::vector<std::string>{"b.txt", "src", "src/a.c"});
  CHECK(c1["comments"] == "Add two files\n\nWith a body & <markup>.");
  CHECK(c1["branch"].is_null());
  CHECK(c1["when_timestamp"] == 1682935200);
  CHECK(c1["repository"] == f.repo().url());
  CHECK(c1["project"] == "proj");
  CHECK(c1["category"] == "cat");
  CHECK(c1["codebase"] == "cb");
  CHECK(c1["revlink"] == "https://svn.example.org/r" + std::to_string(first));
  CHECK(f.rec().changes[1]["revision"] == std::to_string(second));
  CHECK(f.rec().changes[1]["files"] == json{"src/a.c"});
  CHECK(f.rec().changes[1]["when_timestamp"] == 1683021600);
  CHECK(f.last_revision()["revision"] == second);

  // Nothing new: nothing reported.
  f.poll();
  CHECK(f.rec().changes.size() == 2);
}

TEST_CASE("svn-poller below the root reports only its own paths, relative to repourl") {
  SvnPollerFixture f;
  f.repo().mkdirs({"proj/trunk", "other"});
  f.create_at("proj/trunk");
  f.poll();
  f.repo().commit("outside", {{"other/x.txt", "x\n"}});
  const int inside = f.repo().commit("inside", {{"proj/trunk/lib/y.c", "y\n"}});
  f.poll();
  REQUIRE(f.rec().changes.size() == 1);
  CHECK(f.rec().changes[0]["revision"] == std::to_string(inside));
  CHECK(sorted(f.rec().changes[0]["files"]) == std::vector<std::string>{"lib", "lib/y.c"});
  CHECK(f.rec().changes[0]["repository"] == f.repo().url("proj/trunk"));
}

TEST_CASE("split_file_branches puts trunk on the default branch and branches/NAME on branches/NAME") {
  SvnPollerFixture f;
  f.repo().mkdirs({"trunk", "branches", "tags"});
  f.repo().commit("base", {{"trunk/common-src/amanda.h", "h\n"}});
  f.create_at("", {{"split_file", "split_file_branches"}});
  f.poll();

  const int branched = f.repo().copy("trunk", "branches/3_3");
  const int on_branch = f.repo().commit("fix on 3_3", {{"branches/3_3/common-src/amanda.h", "h2\n"}});
  const int on_trunk = f.repo().commit("trunk work", {{"trunk/common-src/amanda.h", "h3\n"}});
  // A file in no branch (tags/...) is of no interest.
  f.repo().copy("trunk", "tags/3_3_0");
  // One revision on two branches: a change for each.
  f.repo().write("trunk/both.txt", "t\n");
  f.repo().write("branches/3_3/both.txt", "b\n");
  const int both = f.repo().commit("both");
  f.poll();

  const auto& ch = f.rec().changes;
  REQUIRE(ch.size() == 5);
  CHECK(ch[0]["revision"] == std::to_string(branched));
  CHECK(ch[0]["branch"] == "branches/3_3");
  CHECK(ch[0]["files"] == json{""});  // the branch's own folder: Buildbot's "" file
  CHECK(ch[1]["revision"] == std::to_string(on_branch));
  CHECK(ch[1]["branch"] == "branches/3_3");
  CHECK(ch[1]["files"] == json{"common-src/amanda.h"});
  CHECK(ch[2]["revision"] == std::to_string(on_trunk));
  CHECK(ch[2]["branch"].is_null());
  CHECK(ch[2]["files"] == json{"common-src/amanda.h"});
  CHECK(ch[3]["revision"] == std::to_string(both));
  CHECK(ch[4]["revision"] == std::to_string(both));
  std::vector<json> branches = {ch[3]["branch"], ch[4]["branch"]};
  CHECK(std::count(branches.begin(), branches.end(), json()) == 1);
  CHECK(std::count(branches.begin(), branches.end(), json("branches/3_3")) == 1);
  CHECK(ch[3]["files"] == json{"both.txt"});
}

TEST_CASE("svn-poller ignores a revision that only deletes a branch") {
  SvnPollerFixture f;
  f.repo().mkdirs({"trunk", "branches"});
  f.repo().commit("base", {{"trunk/a", "a\n"}});
  f.repo().copy("trunk", "branches/old");
  f.create_at("", {{"split_file", "split_file_branches"}});
  f.poll();
  f.repo().svn("rm -q " + kiln::testing::quoted(f.repo().url("branches/old")) + " -m gone");
  const int after = f.repo().commit("after", {{"trunk/a", "a2\n"}});
  f.poll();
  CHECK(revisions_of(f.rec().changes) == std::vector<std::string>{std::to_string(after)});
  CHECK(f.rec().logged(KILN_LOG_INFO, "deletes branch"));
}

TEST_CASE("split_file_projects_branches names each change's project from the top folder") {
  SvnPollerFixture f;
  f.repo().mkdirs({"amanda/trunk", "amanda/branches", "other/trunk"});
  f.create_at("", {{"split_file", "split_file_projects_branches"}, {"project", "fallback"}});
  f.poll();
  f.repo().commit("amanda trunk", {{"amanda/trunk/x.c", "x\n"}});
  f.repo().copy("amanda/trunk", "amanda/branches/3_2");
  f.repo().commit("amanda branch", {{"amanda/branches/3_2/x.c", "x2\n"}});
  f.repo().commit("other", {{"other/trunk/y.c", "y\n"}});
  f.repo().commit("top level file", {{"README", "r\n"}});
  f.poll();
  const auto& ch = f.rec().changes;
  REQUIRE(ch.size() == 4);
  CHECK(ch[0]["project"] == "amanda");
  CHECK(ch[0]["branch"].is_null());
  CHECK(ch[0]["files"] == json{"x.c"});
  CHECK(ch[1]["project"] == "amanda");
  CHECK(ch[1]["branch"] == "branches/3_2");
  CHECK(ch[2]["project"] == "amanda");
  CHECK(ch[2]["branch"] == "branches/3_2");
  CHECK(ch[2]["files"] == json{"x.c"});
  CHECK(ch[3]["project"] == "other");
  CHECK(ch[3]["files"] == json{"y.c"});
}

TEST_CASE("a custom split_file policy places Nevow's files and ignores Quotient's") {
  SvnPollerFixture f;
  f.add_policy("nevow-only", kPolicies, "branch-project-split", {{"only_project", "Nevow"}});
  f.repo().mkdirs({"trunk/Nevow", "trunk/Quotient", "branches"});
  f.create_at("", {{"split_file", "nevow-only"}});
  f.poll();
  const int nevow = f.repo().commit("nevow", {{"trunk/Nevow/formless/webform.py", "w\n"}});
  f.repo().commit("quotient", {{"trunk/Quotient/setup.py", "s\n"}});
  f.repo().copy("trunk", "branches/1.5.x");
  const int on_branch = f.repo().commit("nevow on 1.5.x", {{"branches/1.5.x/Nevow/formless/webform.py", "w2\n"}});
  f.repo().commit("quotient on 1.5.x", {{"branches/1.5.x/Quotient/setup.py", "s2\n"}});
  f.poll();
  const auto& ch = f.rec().changes;
  REQUIRE(ch.size() == 2);
  CHECK(ch[0]["revision"] == std::to_string(nevow));
  CHECK(ch[0]["branch"].is_null());
  // The new folder is a file of the change too, as in Buildbot.
  CHECK(sorted(ch[0]["files"]) == std::vector<std::string>{"formless", "formless/webform.py"});
  CHECK(ch[0]["project"] == "");
  CHECK(ch[1]["revision"] == std::to_string(on_branch));
  CHECK(ch[1]["branch"] == "branches/1.5.x");
  CHECK(ch[1]["files"] == json{"formless/webform.py"});
}

TEST_CASE("a custom split_file policy that names projects gives one change per project") {
  SvnPollerFixture f;
  f.add_policy("by-project", kPolicies, "branch-project-split");
  f.repo().mkdirs({"trunk/Nevow", "trunk/Quotient"});
  f.create_at("", {{"split_file", "by-project"}});
  f.poll();
  f.repo().write("trunk/Nevow/a.py", "a\n");
  f.repo().write("trunk/Quotient/setup.py", "s\n");
  f.repo().commit("both projects");
  f.poll();
  const auto& ch = f.rec().changes;
  REQUIRE(ch.size() == 2);
  std::vector<std::string> projects = {ch[0]["project"], ch[1]["project"]};
  std::sort(projects.begin(), projects.end());
  CHECK(projects == std::vector<std::string>{"Nevow", "Quotient"});
  CHECK(ch[0]["revision"] == ch[1]["revision"]);
}

TEST_CASE("a split_file policy that fails or answers nonsense stops the poll without losing revisions") {
  SvnPollerFixture f;
  f.add_policy("bad", kPolicies, "bad-split");
  f.repo().commit("base", {{"a", "a\n"}});
  f.create_at("", {{"split_file", "bad"}});
  f.poll();
  const int before = f.last_revision()["revision"];
  f.repo().commit("next", {{"a", "a2\n"}});
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_ERROR, "split_file policy 'bad' answered 42"));
  CHECK(f.rec().changes.empty());
  CHECK(f.last_revision()["revision"] == before);

  f.create_at("", {{"split_file", "no-such-policy"}});
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_ERROR, "split_file policy 'no-such-policy' failed"));
  CHECK(f.last_revision()["revision"] == before);
}

TEST_CASE("a restarted svn-poller continues from the saved revision") {
  SvnPollerFixture f;
  f.repo().commit("one", {{"a", "1\n"}});
  f.create_at("");
  f.poll();
  const int two = f.repo().commit("two", {{"a", "2\n"}});
  f.poll();
  REQUIRE(revisions_of(f.rec().changes) == std::vector<std::string>{std::to_string(two)});

  // Down while two commits land: the new instance reports both, once.
  f.destroy();
  const int three = f.repo().commit("three", {{"a", "3\n"}});
  const int four = f.repo().commit("four", {{"a", "4\n"}});
  f.create_at("");
  f.poll();
  CHECK(f.rec().count_logged("first poll") == 1);
  CHECK(revisions_of(f.rec().changes) ==
        std::vector<std::string>{std::to_string(two), std::to_string(three), std::to_string(four)});
}

TEST_CASE("an unreachable svn repository is logged with svn's message and the next poll recovers") {
  SvnPollerFixture f;
  f.repo().commit("one", {{"a", "1\n"}});
  f.create_at("");
  f.poll();
  const int two = f.repo().commit("two", {{"a", "2\n"}});
  const auto repo_dir = f.tmp() / "up" / "repo";
  std::filesystem::rename(repo_dir, f.tmp() / "moved");
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_ERROR, "cannot read the log of " + f.repo().url()));
  CHECK(f.rec().logged(KILN_LOG_ERROR, "Unable to connect to a repository"));  // svn's own words
  CHECK(f.rec().changes.empty());

  std::filesystem::rename(f.tmp() / "moved", repo_dir);
  const int errors = f.rec().errors();
  f.poll();
  CHECK(f.rec().errors() == errors);
  CHECK(revisions_of(f.rec().changes) == std::vector<std::string>{std::to_string(two)});
}

TEST_CASE("svn-poller refuses a misspelt built-in splitter, an empty one and a revlink without %s") {
  SvnPollerFixture f;
  auto typo = f.check({{"repourl", "file:///srv/svn"}, {"split_file", "split_file_branch"}});
  REQUIRE(typo);
  CHECK(typo->find("split_file 'split_file_branch' is not a built-in splitter") != std::string::npos);
  auto empty = f.check({{"repourl", "file:///srv/svn"}, {"split_file", ""}});
  REQUIRE(empty);
  CHECK(empty->find("cannot be empty") != std::string::npos);
  auto revlink = f.check({{"repourl", "file:///srv/svn"}, {"revlinktmpl", "https://example.org/"}});
  REQUIRE(revlink);
  CHECK(revlink->find("has no %s") != std::string::npos);
  CHECK_FALSE(f.check({{"repourl", "file:///srv/svn"}, {"split_file", "split_file_projects_branches"}}));
  CHECK_FALSE(f.check({{"repourl", "file:///srv/svn"}, {"split_file", "my-splitter"}}));
}

TEST_CASE("checkconfig finds a split_file policy that is not declared, and leaves the built-in splitters alone") {
  const std::string errors = kiln::testing::config_errors(
      "workers:\n"
      "  - {name: w1, type: local}\n"
      "builders:\n"
      "  - {name: b, workers: [w1], steps: [{type: shell, command: 'true'}]}\n"
      "change_sources:\n"
      "  - {type: svn-poller, name: custom, repourl: 'file:///srv/svn', split_file: my_splitter}\n"
      "  - {type: svn-poller, name: builtin, repourl: 'file:///srv/svn2', split_file: split_file_branches}\n");
  INFO(errors);
  CHECK(std::count(errors.begin(), errors.end(), '\n') == 1);
  CHECK_THAT(errors, Catch::Contains("master.yaml:6:") && Catch::Contains("split_file") &&
                         Catch::Contains("unknown policy 'my_splitter'"));
}
