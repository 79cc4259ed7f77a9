// periodic and nightly on a real engine whose clock the test moves: firing
// times across month, leap-day and week boundaries, and only_if_changed.
// Expected instants were computed with `date -u -d <ISO time> +%s`.

#include "scheduler_master.h"

namespace {

using kiln::testing::SchedulerMaster;
using nlohmann::json;

std::string master_with(const std::string& schedulers) {
  return R"yaml(
workers: [{name: w1, type: local, max_builds: 4}]
builders:
  - {name: b, workers: [w1], collapse_requests: false, steps: [{type: shell, command: "true"}]}
schedulers:
)yaml" + schedulers;
}

uint64_t next_fire(SchedulerMaster& m, const std::string& scheduler) {
  json d = m.control("schedulers/" + scheduler, "describe");
  REQUIRE(d["next_fire_ms"].is_number());
  return d["next_fire_ms"].get<uint64_t>();
}

}  // namespace

TEST_CASE("a periodic scheduler fires at start and then every period of the master's clock") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: every30, type: periodic, period: 30, branch: main, builders: [b], properties: {kind: periodic}}
)yaml"));
  m.start();
  REQUIRE(m.new_buildsets().size() == 1);
  m.advance_s(29);
  CHECK(m.new_buildsets().size() == 1);
  m.advance_s(1);
  CHECK(m.new_buildsets().size() == 2);
  m.advance_s(60);
  CHECK(m.new_buildsets().size() == 4);
  CHECK(next_fire(m, "every30") == m.now_ms() + 30'000);

  const int64_t bsid = m.new_buildsets().back();
  json bs = m.buildset(bsid);
  CHECK(bs["sourcestamps"][0]["branch"] == "main");
  CHECK(bs["sourcestamps"][0]["revision"].is_null());
  CHECK(bs["reason"] == "The Periodic scheduler named 'every30' triggered this build");
  json props = m.get("buildsets/" + std::to_string(bsid) + "/properties");
  CHECK(props["scheduler"][0] == "every30");
  CHECK(props["kind"][0] == "periodic");
}

TEST_CASE("a periodic scheduler keeps its rhythm across a restart") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: every30, type: periodic, period: 30, builders: [b]}
)yaml"));
  m.start();
  m.advance_s(10);
  REQUIRE(m.new_buildsets().size() == 1);
  const uint64_t due = next_fire(m, "every30");
  m.restart();
  // Not again at start: the last firing is remembered.
  CHECK(m.new_buildsets().empty());
  CHECK(next_fire(m, "every30") == due);
  m.advance_s(20);
  CHECK(m.new_buildsets().size() == 1);
}

TEST_CASE("nightly computes its next firing across day, month, leap-day and week boundaries") {
  // The clock starts at 2024-01-31T23:30Z, a Wednesday.
  SchedulerMaster m(master_with(R"yaml(
  - {name: first-of-month, type: nightly, timezone: UTC, minute: 15, hour: 2, day_of_month: 1, builders: [b]}
  - {name: monday, type: nightly, timezone: UTC, minute: 0, hour: 3, day_of_week: 0, builders: [b]}
  - {name: march, type: nightly, timezone: UTC, minute: 0, hour: 0, day_of_month: 1, month: 3, builders: [b]}
  - {name: leap, type: nightly, timezone: UTC, minute: 0, hour: 0, day_of_month: 29, month: 2, builders: [b]}
  - {name: either, type: nightly, timezone: UTC, minute: 0, hour: 12, day_of_month: 15, day_of_week: 4, builders: [b]}
  - {name: half-hours, type: nightly, timezone: UTC, minute: [0, 30], hour: "*", builders: [b]}
)yaml"));
  m.start();
  CHECK(next_fire(m, "first-of-month") == 1706753700000ull);  // 2024-02-01T02:15Z
  CHECK(next_fire(m, "monday") == 1707102000000ull);          // 2024-02-05T03:00Z
  CHECK(next_fire(m, "march") == 1709251200000ull);           // 2024-03-01T00:00Z
  CHECK(next_fire(m, "leap") == 1709164800000ull);            // 2024-02-29T00:00Z
  // Both day fields given: either one matching is enough (cron's rule).
  CHECK(next_fire(m, "either") == 1706875200000ull);  // 2024-02-02T12:00Z, a Friday
  CHECK(next_fire(m, "half-hours") == 1706745600000ull);  // 2024-02-01T00:00Z

  // To 02:15: first-of-month fires once, half-hours five times.
  m.advance_s(9900);
  CHECK(m.buildsets_of("first-of-month").size() == 1);
  CHECK(m.buildsets_of("half-hours").size() == 5);
  CHECK(m.new_buildsets().size() == 6);
  CHECK(next_fire(m, "first-of-month") == 1709259300000ull);  // 2024-03-01T02:15Z
  CHECK(next_fire(m, "half-hours") == 1706754600000ull);      // 2024-02-01T02:30Z
}

TEST_CASE("nightly fires on its day of the week, then a week later") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: monday, type: nightly, timezone: UTC, minute: 0, hour: 3, day_of_week: 0, builders: [b]}
)yaml"),
                    1707087600000ull);  // 2024-02-04T23:00Z, a Sunday
  m.start();
  m.advance_s(4 * 3600 - 1);
  CHECK(m.new_buildsets().empty());
  m.advance_s(1);
  REQUIRE(m.new_buildsets().size() == 1);
  CHECK(next_fire(m, "monday") == 1707706800000ull);  // 2024-02-12T03:00Z
}

TEST_CASE("nightly on the 29th of February fires on leap days only") {
  SchedulerMaster m(master_with(R"yaml(
  - {name: leap, type: nightly, timezone: UTC, minute: 0, hour: 0, day_of_month: 29, month: 2, builders: [b]}
)yaml"),
                    1709161200000ull);  // 2024-02-28T23:00Z
  m.start();
  m.advance_s(3600);
  REQUIRE(m.new_buildsets().size() == 1);
  CHECK(next_fire(m, "leap") == 1835395200000ull);  // 2028-02-29T00:00Z
}

TEST_CASE("a nightly schedule that never matches is refused when the config is checked") {
  kiln::plugin::Registry registry;
  REQUIRE(!registry.load_library(std::string(KILN_BUILD_PLUGIN_DIR) + "/kiln-schedulers.so"));
  auto problem = registry.check_with_plugin(KILN_KIND_SCHEDULER, "nightly",
                                            {{"day_of_month", 30}, {"month", 2}, {"timezone", "UTC"}});
  REQUIRE(problem);
  CHECK(problem->find("never match") != std::string::npos);
  CHECK(!registry.check_with_plugin(KILN_KIND_SCHEDULER, "nightly", {{"day_of_month", 29}, {"month", 2}}));
  auto range = registry.check_with_plugin(KILN_KIND_SCHEDULER, "nightly", {{"hour", json::array({3, 24})}});
  REQUIRE(range);
  CHECK(range->find("hour: 24 is outside 0..23") != std::string::npos);
}

TEST_CASE("nightly with only_if_changed skips a firing without an important change and builds the changes otherwise") {
  SchedulerMaster m(master_with(R"yaml(
  - name: changed
    type: nightly
    timezone: UTC
    minute: [0, 30]
    branch: main
    only_if_changed: true
    file_is_important: {include: ["src/*"]}
    builders: [b]
)yaml"),
                    1706695800000ull);  // 2024-01-31T10:10Z
  m.start();
  m.advance_s(20 * 60);  // 10:30, nothing changed
  CHECK(m.new_buildsets().empty());
  const int64_t docs = m.add_change({{"branch", "main"}, {"revision", "r1"}, {"files", {"docs/a.txt"}}});
  m.add_change({{"branch", "other"}, {"revision", "x1"}, {"files", {"src/a.c"}}});  // another branch
  m.advance_s(30 * 60);  // 11:00, only an unimportant change on main
  CHECK(m.new_buildsets().empty());
  const int64_t code = m.add_change({{"branch", "main"}, {"revision", "r2"}, {"files", {"src/a.c"}}});
  m.advance_s(30 * 60);  // 11:30
  REQUIRE(m.new_buildsets().size() == 1);
  json bs = m.buildset(m.new_buildsets()[0]);
  CHECK(bs["sourcestamps"][0]["revision"] == "r2");
  CHECK(bs["sourcestamps"][0]["branch"] == "main");
  CHECK(m.changes_of(m.new_buildsets()[0]) == std::vector<int64_t>{docs, code});
  m.advance_s(30 * 60);  // 12:00: those were built
  CHECK(m.new_buildsets().size() == 1);
}
