// git-poller on real repositories: the REAL kiln-git.so in the shared poller
// harness (state that outlives instances, a manual clock).

#include "git_test_support.h"

#include "util/poller_harness.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
using kiln::git::test::GitRepo;
using kiln::git::test::pump_until;
using kiln::testing::revisions_of;

// git-poller over an upstream repository of its own.
class PollerFixture : public kiln::testing::PollerHarness {
 public:
  PollerFixture() : PollerHarness("kiln-git.so", "git-poller", "kiln-git-poller"), upstream_(tmp() / "upstream") {}

  GitRepo& upstream() { return upstream_; }

  void create(json config) {
    if (!config.contains("repourl")) config["repourl"] = upstream_.url();
    PollerHarness::create(config);
  }

  json heads() const { return saved("heads").value("heads", json::object()); }

 private:
  GitRepo upstream_;
};

std::vector<std::string> revisions(const std::vector<json>& changes) { return revisions_of(changes); }

}  // namespace

TEST_CASE("the first poll records the heads of a repository without reporting its history") {
  PollerFixture f;
  f.upstream().commit("one");
  f.upstream().commit("two");
  const std::string head = f.upstream().commit("three");
  f.create({{"branches", {"main"}}});
  f.poll();
  CHECK(f.rec().changes.empty());
  CHECK(f.heads() == json{{"refs/heads/main", head}});
  CHECK(f.rec().logged(KILN_LOG_INFO, "first poll"));
  CHECK(f.rec().errors() == 0);
  // The mirror is a bare repository named after the URL, in the master folder.
  bool mirror = false;
  for (const auto& entry : std::filesystem::directory_iterator(f.tmp() / "master")) {
    if (entry.path().filename().string().rfind("gitpoller-", 0) == 0) {
      mirror = std::filesystem::exists(entry.path() / "HEAD");
    }
  }
  CHECK(mirror);
}

TEST_CASE("a poll that finds every branch where it was fetches nothing and a moved branch is fetched") {
  PollerFixture f;
  f.upstream().commit("base");
  f.create({{"branches", "all"}});
  f.poll();
  std::filesystem::path fetch_head;
  for (const auto& entry : std::filesystem::directory_iterator(f.tmp() / "master")) {
    if (entry.path().filename().string().rfind("gitpoller-", 0) == 0) fetch_head = entry.path() / "FETCH_HEAD";
  }
  REQUIRE(std::filesystem::exists(fetch_head));
  std::filesystem::remove(fetch_head);
  f.poll();
  CHECK_FALSE(std::filesystem::exists(fetch_head));  // only ls-remote ran
  CHECK(f.rec().changes.empty());
  const std::string next = f.upstream().commit("next");
  f.poll();
  CHECK(std::filesystem::exists(fetch_head));
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{next});
  CHECK(f.rec().errors() == 0);
}

TEST_CASE("new commits become changes oldest first with author, committer, files and times") {
  PollerFixture f;
  f.upstream().commit("base", {{"README", "r\n"}});
  f.create({{"project", "proj"}, {"category", "cat"}, {"codebase", "cb"}});  // default: the remote's HEAD branch
  f.poll();
  REQUIRE(f.rec().changes.empty());

  const std::string first = f.upstream().commit("Add two files\n\nWith a body.", {{"src/a.c", "a\n"}, {"b.txt", "b\n"}},
                                                "Bea Writer <bea@example.org>", "2023-05-01T10:00:00Z");
  const std::string second = f.upstream().commit("Change a", {{"src/a.c", "a2\n"}}, "Ann Author <ann@example.org>",
                                                 "2023-05-02T10:00:00Z");
  f.poll();
  REQUIRE(f.rec().changes.size() == 2);
  const json& c1 = f.rec().changes[0];
  CHECK(c1["revision"] == first);
  CHECK(c1["author"] == "Bea Writer <bea@example.org>");
  CHECK(c1["committer"] == "Cee Committer <cee@example.org>");
  std::vector<std::string> files = c1["files"];
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"b.txt", "src/a.c"});
  CHECK(c1["comments"] == "Add two files\n\nWith a body.");
  CHECK(c1["branch"] == "main");
  CHECK(c1["when_timestamp"] == 1682935200);
  CHECK(c1["repository"] == f.upstream().url());
  CHECK(c1["project"] == "proj");
  CHECK(c1["category"] == "cat");
  CHECK(c1["codebase"] == "cb");
  CHECK(f.rec().changes[1]["revision"] == second);
  CHECK(f.rec().changes[1]["when_timestamp"] == 1683021600);
  CHECK(f.heads() == json{{"refs/heads/main", second}});

  // Nothing new: nothing reported.
  f.poll();
  CHECK(f.rec().changes.size() == 2);
}

TEST_CASE("without use_commit_timestamps a change is dated when the poller saw it") {
  PollerFixture f;
  f.upstream().commit("base");
  f.create({{"branches", {"main"}}, {"use_commit_timestamps", false}});
  f.poll();
  f.upstream().commit("later", {}, "Ann Author <ann@example.org>", "2001-01-01T00:00:00Z");
  f.poll();
  REQUIRE(f.rec().changes.size() == 1);
  CHECK(f.rec().changes[0]["when_timestamp"] == f.loop().now_ms() / 1000);
}

TEST_CASE("branches as a regular expression poll only the branches whose whole name matches") {
  PollerFixture f;
  const std::string base = f.upstream().commit("base");
  f.upstream().git("branch release/1");
  f.upstream().git("branch feature/x");
  f.upstream().git("branch release/1-old-feature");
  f.create({{"branches", "release/[0-9]+"}});
  f.poll();
  CHECK(f.heads() == json{{"refs/heads/release/1", base}});

  f.upstream().git("checkout -q feature/x");
  f.upstream().commit("on feature");
  f.upstream().git("checkout -q release/1");
  const std::string fix = f.upstream().commit("on release");
  f.poll();
  REQUIRE(f.rec().changes.size() == 1);
  CHECK(f.rec().changes[0]["revision"] == fix);
  CHECK(f.rec().changes[0]["branch"] == "release/1");
}

TEST_CASE("branches all reports new branches with only their own commits") {
  PollerFixture f;
  f.upstream().commit("one");
  const std::string two = f.upstream().commit("two");
  f.create({{"branches", "all"}});
  f.poll();
  CHECK(f.heads() == json{{"refs/heads/main", two}});

  // A branch made from a known commit brings nothing new...
  f.upstream().git("branch same");
  // ...one with a commit of its own brings that commit alone.
  f.upstream().git("checkout -q -b topic");
  const std::string topic = f.upstream().commit("topic work", {{"t.txt", "t\n"}});
  f.poll();
  REQUIRE(f.rec().changes.size() == 1);
  CHECK(f.rec().changes[0]["revision"] == topic);
  CHECK(f.rec().changes[0]["branch"] == "topic");
  CHECK(f.heads().size() == 3);

  // Merged into main: the merge commit is new, the topic commit is not.
  f.upstream().git("checkout -q main");
  f.upstream().git("merge -q --no-ff -m merge topic");
  const std::string merge = f.upstream().head();
  f.poll();
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{topic, merge});
}

TEST_CASE("a new instance on the same state does not report commits again") {
  PollerFixture f;
  f.upstream().commit("one");
  f.create({{"branches", {"main"}}});
  f.poll();
  const std::string two = f.upstream().commit("two");
  f.poll();
  REQUIRE(revisions(f.rec().changes) == std::vector<std::string>{two});

  // A restart: the instance goes, a new one reads the saved heads.
  f.create({{"branches", {"main"}}});
  f.poll();
  CHECK(f.rec().changes.size() == 1);
  CHECK(f.rec().count_logged("first poll") == 1);
  const std::string three = f.upstream().commit("three");
  f.poll();
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{two, three});
}

TEST_CASE("a force push reports only the commits that no known head reached") {
  PollerFixture f;
  f.upstream().commit("a");
  const std::string b = f.upstream().commit("b");
  f.upstream().commit("c");
  f.create({{"branches", {"main"}}});
  f.poll();

  // Rewrite: drop c, add d and e on top of b.
  f.upstream().git("reset -q --hard " + b);
  const std::string d = f.upstream().commit("d");
  const std::string e = f.upstream().commit("e");
  f.poll();
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{d, e});
  CHECK(f.heads() == json{{"refs/heads/main", e}});
}

TEST_CASE("a deleted branch is dropped from the known heads and may come back") {
  PollerFixture f;
  const std::string one = f.upstream().commit("one");
  f.upstream().git("branch gone");
  f.create({{"branches", "all"}});
  f.poll();
  CHECK(f.heads().contains("refs/heads/gone"));

  f.upstream().git("branch -D gone");
  f.poll();
  CHECK(f.heads() == json{{"refs/heads/main", one}});
  CHECK(f.rec().changes.empty());
  CHECK(f.rec().errors() == 0);

  f.upstream().git("checkout -q -b gone");
  const std::string back = f.upstream().commit("back again");
  f.poll();
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{back});
}

TEST_CASE("an unreachable repository is logged as an error and the next poll recovers") {
  PollerFixture f;
  f.upstream().commit("one");
  f.create({{"branches", {"main"}}});
  f.poll();
  const std::string two = f.upstream().commit("two");

  std::filesystem::rename(f.upstream().dir(), f.tmp() / "moved");
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_ERROR, "cannot list the refs of " + f.upstream().url()));
  CHECK(f.rec().changes.empty());

  std::filesystem::rename(f.tmp() / "moved", f.upstream().dir());
  const int errors = f.rec().errors();
  f.poll();
  CHECK(f.rec().errors() == errors);
  CHECK(revisions(f.rec().changes) == std::vector<std::string>{two});
}

TEST_CASE("a master without git logs that git cannot be run") {
  PollerFixture f;
  f.upstream().commit("one");
  f.create({{"branches", {"main"}}});
  const std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  ::setenv("PATH", (f.tmp() / "no-such-bin").c_str(), 1);
  f.poll();
  ::setenv("PATH", path.c_str(), 1);
  CHECK(f.rec().logged(KILN_LOG_ERROR, "cannot run 'git': not found in PATH"));
  f.poll();
  CHECK(f.rec().logged(KILN_LOG_INFO, "first poll"));
}

TEST_CASE("the poll timer skips a tick while a poll is still running and polls at launch when asked") {
  PollerFixture f;
  f.upstream().commit("one");
  f.create({{"branches", {"main"}}, {"poll_interval", 60}, {"poll_at_launch", true}});
  // At launch: the timer is due at once.
  f.loop().advance_manual_clock(0);
  // Its results come back through the loop, which has not run yet: the
  // poll is still running when the next tick comes.
  f.loop().advance_manual_clock(60'000);
  CHECK(f.rec().logged(KILN_LOG_DEBUG, "skipping this poll"));
  REQUIRE(pump_until(f.loop(), [&] { return f.state().puts == 1; }));
  while (f.loop().poll() > 0) {
  }
  const std::string two = f.upstream().commit("two");
  f.loop().advance_manual_clock(60'000);
  REQUIRE(pump_until(f.loop(), [&] { return f.rec().changes.size() == 1; }));
  CHECK(f.rec().changes[0]["revision"] == two);
}

TEST_CASE("a poller destroyed during a poll drops what that poll was doing") {
  PollerFixture f;
  f.upstream().commit("one");
  f.create({{"branches", {"main"}}});
  f.poll();
  REQUIRE(f.state().puts == 1);
  f.upstream().commit("two");
  // The poll's first program is queued at once; the instance goes while
  // it runs (the runner kills and joins it).
  const auto before = f.rec().logs.size();
  f.poll_without_waiting();
  f.destroy();
  for (int i = 0; i < 50; ++i) {
    f.loop().poll();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  CHECK(f.state().puts == 1);
  CHECK(f.rec().changes.empty());
  CHECK(f.rec().logs.size() == before);
}

TEST_CASE("git-poller refuses a branches pattern that is no regular expression") {
  kiln::plugin::Registry registry;
  REQUIRE_FALSE(registry.load_library(std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-git.so"));
  auto problem = registry.check_with_plugin(KILN_KIND_CHANGE_SOURCE, "git-poller",
                                            {{"repourl", "/srv/repo.git"}, {"branches", "release/(["}});
  REQUIRE(problem);
  CHECK(problem->find("not a regular expression") != std::string::npos);
  CHECK_FALSE(registry.check_with_plugin(KILN_KIND_CHANGE_SOURCE, "git-poller",
                                         {{"repourl", "/srv/repo.git"}, {"branches", "release/.*"}}));
}
