// triggerable with the trigger step, and dependent, on a real engine with
// real builds.

#include "scheduler_master.h"

namespace {

using kiln::testing::SchedulerMaster;
using nlohmann::json;

const char* kTriggerMaster = R"yaml(
workers: [{name: w1, type: local, max_builds: 4}]
builders:
  - name: parent
    workers: [w1]
    steps:
      - type: trigger
        name: run-tests
        schedulers: [tests]
        wait_for_finish: true
        set_properties: {from: "%(prop:buildername)s"}
        copy_properties: [flavour]
      - {type: shell, name: after, command: "true"}
  - name: parent-good
    workers: [w1]
    steps: [{type: trigger, schedulers: [good], wait_for_finish: true}]
  - name: parent-nowait
    workers: [w1]
    steps: [{type: trigger, schedulers: [tests]}]
  - {name: child-ok, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
  - {name: child-bad, workers: [w1], steps: [{type: shell, command: "exit 1"}]}
schedulers:
  - {name: tests, type: triggerable, builders: [child-ok, child-bad]}
  - {name: good, type: triggerable, builders: [child-ok]}
)yaml";

json build_of(SchedulerMaster& m, const std::string& builder) {
  for (const auto& b : m.finished_builds()) {
    json info = m.get("builds/" + b["buildid"].dump());
    json builder_info = m.get("builders/" + info["builderid"].dump());
    if (builder_info["name"] == builder) return info;
  }
  return json();
}

json steps_of(SchedulerMaster& m, const json& build) { return m.get("builds/" + build["buildid"].dump() + "/steps"); }

}  // namespace

TEST_CASE("a trigger step waiting for its builds takes the worst of their results") {
  SchedulerMaster m(kTriggerMaster);
  m.start();
  m.submit({{"builders", {"parent"}},
            {"sourcestamps", {{{"branch", "main"}, {"revision", "abc123"}, {"repository", "/srv/r.git"}}}},
            {"properties", {{"flavour", "debug"}}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 3; }));
  m.settle();

  json parent = build_of(m, "parent");
  REQUIRE(parent.is_object());
  CHECK(parent["results"] == KILN_FAILURE);
  json steps = steps_of(m, parent);
  REQUIRE(steps.size() == 2);
  CHECK(steps[0]["name"] == "run-tests");
  CHECK(steps[0]["results"] == KILN_FAILURE);
  // Each triggered build is linked from the step.
  std::set<std::string> urls;
  for (const auto& u : steps[0]["urls"]) urls.insert(u["name"].get<std::string>());
  CHECK(urls == std::set<std::string>{"child-ok #1", "child-bad #1"});

  json ok = build_of(m, "child-ok");
  json bad = build_of(m, "child-bad");
  REQUIRE(ok.is_object());
  REQUIRE(bad.is_object());
  CHECK(ok["results"] == KILN_SUCCESS);
  CHECK(bad["results"] == KILN_FAILURE);
  json props = m.get("builds/" + ok["buildid"].dump() + "/properties");
  CHECK(props["from"][0] == "parent");
  CHECK(props["flavour"][0] == "debug");
  CHECK(props["scheduler"][0] == "tests");
  CHECK(props["revision"][0] == "abc123");
  CHECK(props["branch"][0] == "main");

  // The triggered buildset knows its parent.
  json requests = m.get("buildrequests", {{"filters", {{"buildrequestid", "eq", {ok["buildrequestid"]}}}}});
  json bs = m.buildset(requests[0]["buildsetid"].get<int64_t>());
  CHECK(bs["parent_buildid"] == parent["buildid"]);
}

TEST_CASE("a trigger step whose triggered builds all succeed succeeds") {
  SchedulerMaster m(kTriggerMaster);
  m.start();
  m.submit({{"builders", {"parent-good"}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 2; }));
  m.settle();
  json parent = build_of(m, "parent-good");
  REQUIRE(parent.is_object());
  CHECK(parent["results"] == KILN_SUCCESS);
}

TEST_CASE("a trigger step that does not wait succeeds once its buildsets are submitted") {
  SchedulerMaster m(kTriggerMaster);
  m.start();
  m.submit({{"builders", {"parent-nowait"}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 3; }));
  m.settle();
  json parent = build_of(m, "parent-nowait");
  REQUIRE(parent.is_object());
  CHECK(parent["results"] == KILN_SUCCESS);
  CHECK(build_of(m, "child-bad")["results"] == KILN_FAILURE);
}

TEST_CASE("a trigger step naming an unknown scheduler ends with EXCEPTION and says why") {
  SchedulerMaster m(R"yaml(
workers: [{name: w1, type: local}]
builders:
  - {name: parent, workers: [w1], steps: [{type: trigger, schedulers: [nope]}]}
)yaml");
  m.start();
  m.submit({{"builders", {"parent"}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 1; }));
  m.settle();
  CHECK(m.finished_builds()[0]["results"] == KILN_EXCEPTION);
  json steps = steps_of(m, m.finished_builds()[0]);
  json logs = m.get("steps/" + steps[0]["stepid"].dump() + "/logs");
  REQUIRE(logs.size() == 1);
  json text = m.get("logs/" + logs[0]["logid"].dump() + "/contents");
  CHECK(text["content"].get<std::string>().find("cannot trigger scheduler 'nope'") != std::string::npos);
}

TEST_CASE("stopping a build interrupts its waiting trigger step and cancels the triggered builds") {
  SchedulerMaster m(R"yaml(
workers: [{name: w1, type: local, max_builds: 4}]
builders:
  - {name: parent, workers: [w1], steps: [{type: trigger, schedulers: [slow], wait_for_finish: true}]}
  - {name: slow-child, workers: [w1], steps: [{type: shell, command: "sleep 30"}]}
schedulers:
  - {name: slow, type: triggerable, builders: [slow-child]}
)yaml");
  m.start();
  m.submit({{"builders", {"parent"}}});
  // Wait until the child runs, then stop the parent.
  REQUIRE(m.run_until([&] {
    json running = m.get("builds", {{"filters", {{"complete", "eq", {false}}}}});
    return running.size() == 2;
  }));
  json parent = m.get("builders/parent/builds/1");
  m.control("builds/" + parent["buildid"].dump(), "stop", {{"reason", "enough"}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 2; }));
  m.settle();
  CHECK(build_of(m, "parent")["results"] == KILN_CANCELLED);
  CHECK(build_of(m, "slow-child")["results"] == KILN_CANCELLED);
}

TEST_CASE("a dependent scheduler builds after its upstream's buildsets succeed, and only those") {
  SchedulerMaster m(R"yaml(
workers: [{name: w1, type: local, max_builds: 4}]
builders:
  - {name: compile, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "test %(prop:revision)s != bad"}]}
  - {name: package, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
schedulers:
  - {name: up, type: single-branch, branch: main, builders: [compile]}
  - {name: down, type: dependent, upstream: up, builders: [package], properties: {stage: two}}
)yaml");
  m.start();
  m.add_change({{"branch", "main"}, {"revision", "good1"}, {"repository", "/srv/r.git"}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 2; }));
  m.settle();
  auto down = m.buildsets_of("down");
  REQUIRE(down.size() == 1);
  json bs = m.buildset(down[0]);
  CHECK(bs["sourcestamps"][0]["revision"] == "good1");
  CHECK(bs["sourcestamps"][0]["branch"] == "main");
  CHECK(bs["sourcestamps"][0]["repository"] == "/srv/r.git");
  CHECK(m.get("buildsets/" + std::to_string(down[0]) + "/properties")["stage"][0] == "two");

  // A failing upstream buildset, and a successful one another scheduler
  // made on the same builder: neither is followed.
  m.add_change({{"branch", "main"}, {"revision", "bad"}});
  m.submit({{"builders", {"compile"}}, {"sourcestamps", {{{"branch", "main"}, {"revision", "forced"}}}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= 4; }));
  m.settle();
  CHECK(m.buildsets_of("down").size() == 1);
  CHECK(m.buildsets_of("up").size() == 2);
}
