// single-branch and any-branch on a real engine: batching by the tree-stable
// timer, change filters, importance, and changes kept across a restart.

#include "scheduler_master.h"

namespace {

using kiln::testing::SchedulerMaster;
using nlohmann::json;

std::string master_with(const std::string& schedulers) {
  return R"yaml(
workers: [{name: w1, type: local, max_builds: 4}]
builders:
  - {name: b, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
  - {name: c, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
schedulers:
)yaml" + schedulers;
}

json change(const std::string& branch, const std::string& revision, json files = json::array({"src/a.c"}),
            const std::string& project = "") {
  return {{"author", "ann"}, {"branch", branch},   {"revision", revision},
          {"files", files},  {"project", project}, {"repository", "/srv/repo.git"}};
}

}  // namespace

TEST_CASE("three changes within the tree-stable timer make one buildset, each change restarting the timer") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: quick, type: single-branch, branch: main, tree_stable_timer: 60, builders: [b], properties: {team: core}}
)yaml"));
  m.start();
  const int64_t c1 = m.add_change(change("main", "r1"));
  m.advance_s(50);
  const int64_t c2 = m.add_change(change("main", "r2"));
  // 100 s after the first change: a timer that had not restarted would have
  // fired at 60.
  m.advance_s(50);
  CHECK(m.new_buildsets().empty());
  const int64_t c3 = m.add_change(change("main", "r3"));
  m.advance_s(59);
  CHECK(m.new_buildsets().empty());
  m.advance_s(1);
  REQUIRE(m.new_buildsets().size() == 1);

  const int64_t bsid = m.new_buildsets()[0];
  json bs = m.buildset(bsid);
  REQUIRE(bs["sourcestamps"].size() == 1);
  CHECK(bs["sourcestamps"][0]["revision"] == "r3");
  CHECK(bs["sourcestamps"][0]["branch"] == "main");
  CHECK(bs["sourcestamps"][0]["repository"] == "/srv/repo.git");
  CHECK(bs["reason"] == "The SingleBranchScheduler scheduler named 'quick' triggered this build");
  json props = m.get("buildsets/" + std::to_string(bsid) + "/properties");
  CHECK(props["scheduler"][0] == "quick");
  CHECK(props["team"][0] == "core");
  CHECK(m.changes_of(bsid) == std::vector<int64_t>{c1, c2, c3});

  // The batch is gone: a later change starts a new one.
  m.add_change(change("main", "r4"));
  m.advance_s(60);
  CHECK(m.new_buildsets().size() == 2);
}

TEST_CASE("without a tree-stable timer single-branch builds each important change at once") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: quick, type: single-branch, branch: main, builders: [b]}
)yaml"));
  m.start();
  const int64_t c1 = m.add_change(change("main", "r1"));
  const int64_t c2 = m.add_change(change("main", "r2"));
  REQUIRE(m.new_buildsets().size() == 2);
  CHECK(m.buildset(m.new_buildsets()[0])["sourcestamps"][0]["revision"] == "r1");
  CHECK(m.buildset(m.new_buildsets()[1])["sourcestamps"][0]["revision"] == "r2");
  CHECK(m.changes_of(m.new_buildsets()[1]) == std::vector<int64_t>{c2});
  (void)c1;
}

TEST_CASE("change filters select changes by branch, anchored regular expression and lists") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: main-only, type: single-branch, branch: main, builders: [b]}
  - name: releases
    type: any-branch
    builders: [c]
    change_filter: {branch_re: "rel-", project: [alpha, beta]}
  - name: listed
    type: single-branch
    builders: [b]
    change_filter: {branch: [main, hotfix], category: [null, urgent]}
)yaml"));
  m.start();
  m.add_change(change("main", "m1", json::array({"x"}), "alpha"));
  m.add_change(change("rel-1", "r1", json::array({"x"}), "alpha"));
  m.add_change(change("rel-2", "r2", json::array({"x"}), "beta"));
  m.add_change(change("rel-3", "r3", json::array({"x"}), "gamma"));   // project not listed
  m.add_change(change("xrel-1", "r4", json::array({"x"}), "alpha"));  // regex anchored at the start
  m.add_change(change("feature", "f1", json::array({"x"}), "alpha"));
  json hot = change("hotfix", "h1");
  hot["category"] = "urgent";
  m.add_change(hot);
  json chore = change("hotfix", "h2");
  chore["category"] = "chore";  // category not listed
  m.add_change(chore);

  auto revisions = [&](const std::string& scheduler) {
    std::vector<std::string> out;
    for (int64_t bsid : m.buildsets_of(scheduler)) {
      out.push_back(m.buildset(bsid)["sourcestamps"][0]["revision"].get<std::string>());
    }
    return out;
  };
  CHECK(revisions("main-only") == std::vector<std::string>{"m1"});
  CHECK(revisions("releases") == std::vector<std::string>{"r1", "r2"});
  CHECK(revisions("listed") == std::vector<std::string>{"m1", "h1"});
}

TEST_CASE("any-branch keeps one tree-stable timer per branch") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: all, type: any-branch, tree_stable_timer: 30, builders: [b]}
)yaml"));
  m.start();
  const int64_t a1 = m.add_change(change("a", "a1"));
  m.advance_s(20);
  const int64_t b1 = m.add_change(change("b", "b1"));
  const int64_t a2 = m.add_change(change("a", "a2"));
  m.advance_s(29);
  CHECK(m.new_buildsets().empty());
  // b's timer started at 20 s and a's restarted then: both fall due at 50 s.
  m.advance_s(1);
  REQUIRE(m.new_buildsets().size() == 2);
  std::map<std::string, int64_t> by_branch;
  for (int64_t bsid : m.new_buildsets()) {
    by_branch[m.buildset(bsid)["sourcestamps"][0]["branch"].get<std::string>()] = bsid;
  }
  REQUIRE(by_branch.size() == 2);
  CHECK(m.buildset(by_branch["a"])["sourcestamps"][0]["revision"] == "a2");
  CHECK(m.changes_of(by_branch["a"]) == std::vector<int64_t>{a1, a2});
  CHECK(m.changes_of(by_branch["b"]) == std::vector<int64_t>{b1});
}

TEST_CASE("unimportant changes are kept and folded into the buildset of the next important change") {
  SchedulerMaster m(master_with(R"yaml(
  - name: src
    type: single-branch
    branch: main
    builders: [b]
    file_is_important: {include: ["src/*"], exclude: ["*.md"]}
)yaml"));
  m.start();
  const int64_t docs = m.add_change(change("main", "r1", json::array({"docs/guide.txt"})));
  const int64_t readme = m.add_change(change("main", "r2", json::array({"src/README.md"})));
  CHECK(m.new_buildsets().empty());
  const int64_t code = m.add_change(change("main", "r3", json::array({"docs/x.txt", "src/deep/a.c"})));
  REQUIRE(m.new_buildsets().size() == 1);
  CHECK(m.buildset(m.new_buildsets()[0])["sourcestamps"][0]["revision"] == "r3");
  CHECK(m.changes_of(m.new_buildsets()[0]) == std::vector<int64_t>{docs, readme, code});
}

TEST_CASE("only_important leaves unimportant changes out of the buildset") {
  SchedulerMaster m(master_with(R"yaml(
  - name: src
    type: single-branch
    branch: main
    tree_stable_timer: 10
    only_important: true
    builders: [b]
    file_is_important: {include: ["src/*"]}
)yaml"));
  m.start();
  m.add_change(change("main", "r1", json::array({"docs/guide.txt"})));
  m.advance_s(10);
  CHECK(m.new_buildsets().empty());
  const int64_t code = m.add_change(change("main", "r2", json::array({"src/a.c"})));
  m.add_change(change("main", "r3", json::array({"docs/later.txt"})));
  m.advance_s(10);
  REQUIRE(m.new_buildsets().size() == 1);
  CHECK(m.buildset(m.new_buildsets()[0])["sourcestamps"][0]["revision"] == "r2");
  CHECK(m.changes_of(m.new_buildsets()[0]) == std::vector<int64_t>{code});
}

TEST_CASE("changes seen but not yet built survive a master restart") {
  SchedulerMaster m(master_with(R"yaml(
  - name: src
    type: single-branch
    branch: main
    tree_stable_timer: 60
    builders: [b]
    file_is_important: {include: ["src/*"]}
  - name: docs
    type: single-branch
    branch: main
    builders: [c]
    file_is_important: {include: ["docs/*"]}
)yaml"));
  m.start();
  const int64_t c1 = m.add_change(change("main", "r1", json::array({"src/a.c"})));
  const int64_t c2 = m.add_change(change("main", "r2", json::array({"src/b.c"})));
  m.advance_s(30);
  CHECK(m.buildsets_of("src").empty());
  // `docs` built nothing yet: both changes wait there as unimportant ones
  // (they went to `docs` too; c1 and c2 touch no docs).
  m.restart();
  json described = m.control("schedulers/src", "describe");
  CHECK(described["pending"] == json::array({c1, c2}));
  CHECK(m.control("schedulers/docs", "describe")["pending"] == json::array({c1, c2}));

  m.advance_s(60);
  auto src = m.buildsets_of("src");
  REQUIRE(src.size() == 1);
  CHECK(m.changes_of(src[0]) == std::vector<int64_t>{c1, c2});

  const int64_t c3 = m.add_change(change("main", "r3", json::array({"docs/guide.txt"})));
  auto docs = m.buildsets_of("docs");
  REQUIRE(docs.size() == 1);
  CHECK(m.changes_of(docs[0]) == std::vector<int64_t>{c1, c2, c3});

  // What was built is forgotten; c3, unimportant to `src`, waits there for
  // an important change, across another restart too.
  m.restart();
  CHECK(m.control("schedulers/src", "describe")["pending"] == json::array({c3}));
  CHECK(m.control("schedulers/docs", "describe")["pending"] == json::array());
  m.advance_s(120);
  CHECK(m.new_buildsets().empty());
  const int64_t c4 = m.add_change(change("main", "r4", json::array({"src/c.c"})));
  m.advance_s(60);
  src = m.buildsets_of("src");
  REQUIRE(src.size() == 1);
  CHECK(m.changes_of(src[0]) == std::vector<int64_t>{c3, c4});
}

TEST_CASE("file_is_important may name a policy the engine knows, here a built-in one") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: by-builtin, type: single-branch, branch: main, builders: [b], file_is_important: all-files-important}
  - {name: by-missing, type: single-branch, branch: main, builders: [c], file_is_important: no-such-policy}
)yaml"));
  m.start();
  const int64_t c1 = m.add_change(change("main", "r1", json::array({"docs/a.txt"})));
  // The built-in policy calls every change important; a policy the engine
  // does not know cannot say no, so the change counts as important too.
  REQUIRE(m.buildsets_of("by-builtin").size() == 1);
  REQUIRE(m.buildsets_of("by-missing").size() == 1);
  CHECK(m.changes_of(m.buildsets_of("by-builtin")[0]) == std::vector<int64_t>{c1});
}
