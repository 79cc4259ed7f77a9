// hg-poller on real repositories (hg init): the REAL kiln-hg.so in the
// shared poller harness (state that outlives instances, a manual clock).

#include "hg_test_support.h"

#include "util/poller_harness.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using kiln::hg::test::HgRepo;
using kiln::testing::revisions_of;

class HgPollerFixture : public kiln::testing::PollerHarness {
 public:
  HgPollerFixture() : PollerHarness("kiln-hg.so", "hg-poller", "kiln-hg-poller"), upstream_(tmp() / "upstream") {}
  HgRepo& upstream() { return upstream_; }
  void create(json config = json::object()) {
    if (!config.contains("repourl")) config["repourl"] = upstream_.url();
    PollerHarness::create(config);
  }
  json heads() const { return saved("heads").value("heads", json::object()); }

 private:
  HgRepo upstream_;
};

}  // namespace

TEST_CASE("the first hg poll records the default branch's head in a mirror without reporting history") {
  HgPollerFixture f;
  f.upstream().commit("one", {{"a", "1\n"}});
  const std::string two = f.upstream().commit("two", {{"a", "2\n"}});
  f.create();
  f.poll();
  CHECK(f.rec().changes.empty());
  CHECK(f.heads() == json{{"branch:default", two}});
  CHECK(f.rec().logged(KILN_LOG_INFO, "first poll"));
  CHECK(f.rec().errors() == 0);
  bool mirror = false;
  for (const auto& entry : std::filesystem::directory_iterator(f.tmp() / "master")) {
    if (entry.path().filename().string().rfind("hgpoller-", 0) == 0) mirror = std::filesystem::exists(entry.path() / ".hg");
  }
  CHECK(mirror);
}

TEST_CASE("new hg changesets become changes oldest first with author, files, comments and dates") {
  HgPollerFixture f;
  f.upstream().commit("base", {{"README", "r\n"}});
  f.create({{"project", "proj"}, {"category", "cat"}, {"codebase", "cb"}});
  f.poll();
  const std::string first = f.upstream().commit("Add two files\n\nWith a body.", {{"src/a.c", "a\n"}, {"b.txt", "b\n"}},
                                                "Bea Writer <bea@example.org>", "2023-05-01 10:00:00 +0000");
  const std::string second = f.upstream().commit("Change a", {{"src/a.c", "a2\n"}}, "Ann Author <ann@example.org>",
                                                 "2023-05-02 10:00:00 +0000");
  f.poll();
  REQUIRE(f.rec().changes.size() == 2);
  const json& c1 = f.rec().changes[0];
  CHECK(c1["revision"] == first);
  CHECK(c1["author"] == "Bea Writer <bea@example.org>");
  std::vector<std::string> files = c1["files"];
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"b.txt", "src/a.c"});
  CHECK(c1["comments"] == "Add two files\n\nWith a body.");
  CHECK(c1["branch"] == "default");
  CHECK(c1["when_timestamp"] == 1682935200);
  CHECK(c1["repository"] == f.upstream().url());
  CHECK(c1["project"] == "proj");
  CHECK(c1["category"] == "cat");
  CHECK(c1["codebase"] == "cb");
  CHECK(f.rec().changes[1]["revision"] == second);
  CHECK(f.rec().changes[1]["when_timestamp"] == 1683021600);
  f.poll();
  CHECK(f.rec().changes.size() == 2);
}

TEST_CASE("hg-poller polls only the named branches it is given") {
  HgPollerFixture f;
  f.upstream().commit("base", {{"a", "a\n"}});
  f.upstream().hg("branch -q stable");
  f.upstream().commit("stable work", {{"s", "s\n"}});
  f.upstream().hg("branch -q -f other");
  f.upstream().commit("other work", {{"o", "o\n"}});
  f.create({{"branches", {"default", "stable"}}});
  f.poll();
  CHECK(f.heads().size() == 2);

  f.upstream().hg("update -q default");
  const std::string on_default = f.upstream().commit("default work", {{"d", "d\n"}});
  f.upstream().hg("update -q stable");
  const std::string on_stable = f.upstream().commit("stable later", {{"s", "s2\n"}});
  f.upstream().hg("update -q other");
  f.upstream().commit("other later", {{"o", "o2\n"}});
  f.poll();
  REQUIRE(revisions_of(f.rec().changes) == std::vector<std::string>{on_default, on_stable});
  CHECK(f.rec().changes[0]["branch"] == "default");
  CHECK(f.rec().changes[1]["branch"] == "stable");
  CHECK(f.rec().errors() == 0);
}

TEST_CASE("hg-poller follows a bookmark and names the changes after it") {
  HgPollerFixture f;
  f.upstream().commit("base", {{"a", "a\n"}});
  f.upstream().hg("bookmark -q feature");
  f.create({{"bookmarks", {"feature"}}});
  f.poll();
  CHECK(f.heads().contains("bookmark:feature"));
  const std::string work = f.upstream().commit("feature work", {{"f", "f\n"}});  // the active bookmark moves
  f.poll();
  REQUIRE(revisions_of(f.rec().changes) == std::vector<std::string>{work});
  CHECK(f.rec().changes[0]["branch"] == "feature");
}

TEST_CASE("a restarted hg-poller continues from the saved heads") {
  HgPollerFixture f;
  f.upstream().commit("one", {{"a", "1\n"}});
  f.create();
  f.poll();
  const std::string two = f.upstream().commit("two", {{"a", "2\n"}});
  f.poll();
  REQUIRE(revisions_of(f.rec().changes) == std::vector<std::string>{two});
  f.destroy();
  const std::string three = f.upstream().commit("three", {{"a", "3\n"}});
  f.create();
  f.poll();
  CHECK(f.rec().count_logged("first poll") == 1);
  CHECK(revisions_of(f.rec().changes) == std::vector<std::string>{two, three});
}

TEST_CASE("a branch with two heads stays at its known head until they are merged") {
  HgPollerFixture f;
  const std::string base = f.upstream().commit("base", {{"a", "a\n"}});
  f.create();
  f.poll();
  const std::string left = f.upstream().commit("left", {{"l", "l\n"}});
  f.upstream().hg("update -q " + base);
  const std::string right = f.upstream().commit("right", {{"r", "r\n"}});
  f.poll();
  CHECK(f.rec().changes.empty());
  CHECK(f.rec().logged(KILN_LOG_WARN, "has 2 heads"));
  CHECK(f.heads() == json{{"branch:default", base}});
  f.upstream().hg("merge -q " + left);
  const std::string merge = f.upstream().commit("merge");
  f.poll();
  std::vector<std::string> revs = revisions_of(f.rec().changes);
  CHECK(revs.size() == 3);
  CHECK(revs.back() == merge);
  CHECK(std::find(revs.begin(), revs.end(), left) != revs.end());
  CHECK(std::find(revs.begin(), revs.end(), right) != revs.end());
}

TEST_CASE("an unreachable hg repository is logged with hg's message and the next poll recovers") {
  HgPollerFixture f;
  f.upstream().commit("one", {{"a", "1\n"}});
  f.create();
  f.poll();
  const std::string two = f.upstream().commit("two", {{"a", "2\n"}});
  std::filesystem::rename(f.upstream().dir(), f.tmp() / "moved");
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_ERROR, "cannot pull from " + f.upstream().url()));
  CHECK(f.rec().logged(KILN_LOG_ERROR, "repository " + f.upstream().url() + " not found"));
  std::filesystem::rename(f.tmp() / "moved", f.upstream().dir());
  const int errors = f.rec().errors();
  f.poll();
  CHECK(f.rec().errors() == errors);
  CHECK(revisions_of(f.rec().changes) == std::vector<std::string>{two});
}

TEST_CASE("hg-poller refuses an empty repourl and a branch listed twice") {
  HgPollerFixture f;
  auto twice = f.check({{"repourl", "/srv/hg"}, {"branches", {"default", "default"}}});
  REQUIRE(twice);
  CHECK(twice->find("branches: 'default' is listed twice") != std::string::npos);
  auto empty = f.check({{"repourl", ""}});
  REQUIRE(empty);
  CHECK(empty->find("repourl must not be empty") != std::string::npos);
  CHECK_FALSE(f.check({{"repourl", "/srv/hg"}, {"bookmarks", {"main"}}}));
}
