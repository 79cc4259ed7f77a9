// The build engine's store calls: changes, buildsets, requests and claims,
// builds, steps, logs, crash recovery and retention (SQLite backend).

#include "store/sqlite_db.h"
#include "store/store.h"
#include "store/fixtures.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <filesystem>

using namespace kiln::store;
using kiln::testing::ok;
using kiln::testing::TempDir;
using nlohmann::json;

namespace {

// A master, a builder and one claimed request: what a build needs.
struct World {
  std::unique_ptr<Store> store = kiln::testing::open_memory_store();
  int64_t master = ok(store->register_master_sync("host:/srv/m", 100));
  int64_t builder = ok(store->ensure_builder_sync("unit", "unit tests", {"fast"}));

  int64_t request(int64_t builderid, int64_t submitted_at = 100, int64_t priority = 0) {
    BuildsetRequest r;
    r.reason = "test";
    r.submitted_at = submitted_at;
    r.builderids = {builderid};
    r.priority = priority;
    return ok(store->add_buildset_sync(r)).brids.at(builderid);
  }
  BuildIds build(int64_t builderid, int64_t started_at = 200) {
    int64_t brid = request(builderid);
    REQUIRE(ok(store->claim_requests_sync({brid}, master, started_at)) ==
            std::vector<int64_t>{brid});
    return ok(store->add_build_sync(builderid, brid, std::nullopt, master, started_at,
                                    "building"));
  }
  int64_t brid_of(int64_t buildid) {
    ResultSpec spec;
    spec.filters = {{"buildid", FilterOp::kEq, {buildid}}};
    return ok(store->query_sync(Resource::kBuilds, spec)).at(0)["buildrequestid"];
  }
  int64_t log(char type = 't') {
    auto b = build(builder);
    auto step = ok(store->add_step_sync(b.buildid, "compile"));
    return ok(store->add_log_sync(step.stepid, "output", type));
  }
};

std::string numbered_lines(int64_t from, int64_t to) {
  std::string s;
  for (int64_t i = from; i <= to; ++i) s += "line " + std::to_string(i) + "\n";
  return s;
}

}  // namespace

TEST_CASE(
    "a change with files, properties and a user round-trips through query(changes)") {
  World w;
  int64_t uid = ok(
      w.store->find_or_create_user_sync("Jane <jane@x.org>", "git", "Jane <jane@x.org>"));
  REQUIRE(ok(w.store->find_or_create_user_sync("other", "git", "Jane <jane@x.org>")) ==
          uid);

  ChangeRecord c;
  c.author = "Jane <jane@x.org>";
  c.committer = "CI Bot <ci@x.org>";
  c.files = {"src/a.cpp", "docs/b.md"};
  c.comments = "fix the thing";
  c.project = "kiln";
  c.repository = "https://git.example/kiln.git";
  c.codebase = "core";
  c.revision = "abc123";
  c.branch = "main";
  c.category = "bugfix";
  c.revlink = "https://git.example/kiln/commit/abc123";
  c.properties = {{"ticket", {42, "Change"}}, {"labels", {json::array({"a"}), "Change"}}};
  c.when_timestamp = 1'700'000'000;
  c.uids = {uid};
  int64_t first = ok(w.store->add_change_sync(c));
  c.revision = "def456";
  int64_t second = ok(w.store->add_change_sync(c));

  ResultSpec spec;
  spec.filters = {{"changeid", FilterOp::kEq, {second}}};
  json rows = ok(w.store->query_sync(Resource::kChanges, spec));
  REQUIRE(rows.size() == 1);
  const json& row = rows[0];
  REQUIRE(row["changeid"] == second);
  REQUIRE(row["author"] == "Jane <jane@x.org>");
  REQUIRE(row["committer"] == "CI Bot <ci@x.org>");
  REQUIRE(row["files"] == json::array({"src/a.cpp", "docs/b.md"}));
  REQUIRE(row["comments"] == "fix the thing");
  REQUIRE(row["revision"] == "def456");
  REQUIRE(row["branch"] == "main");
  REQUIRE(row["category"] == "bugfix");
  REQUIRE(row["revlink"] == "https://git.example/kiln/commit/abc123");
  REQUIRE(row["when_timestamp"] == 1'700'000'000);
  REQUIRE(row["project"] == "kiln");
  REQUIRE(row["repository"] == "https://git.example/kiln.git");
  REQUIRE(row["codebase"] == "core");
  REQUIRE(row["properties"] == c.properties);
  // The parent is the previous change on the same branch and repository.
  REQUIRE(row["parent_changeids"] == json::array({first}));
  REQUIRE(row["sourcestamp"]["revision"] == "def456");
  REQUIRE(row["sourcestamp"]["branch"] == "main");
  REQUIRE(row["sourcestamp"]["codebase"] == "core");
  REQUIRE(row["sourcestamp"]["patch"].is_null());

  ResultSpec by_change;
  by_change.parent = Scope{"changeid", first};
  json users = ok(w.store->query_sync(Resource::kUsers, by_change));
  REQUIRE(users.size() == 1);
  REQUIRE(users[0]["uid"] == uid);
  REQUIRE(users[0]["attributes"] == json{{"git", "Jane <jane@x.org>"}});
  REQUIRE(ok(w.store->query_sync(Resource::kChanges, {}))[0]["parent_changeids"] ==
          json::array());
}

TEST_CASE("change properties that are not [value, source] pairs are refused") {
  World w;
  ChangeRecord c;
  c.author = "a";
  c.properties = {{"bad", 3}};
  auto r = w.store->add_change_sync(c);
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message, Catch::Contains("'bad'"));
}

TEST_CASE(
    "a buildset creates one request per builder with its priority and sourcestamps") {
  World w;
  int64_t other = ok(w.store->ensure_builder_sync("lint", std::nullopt, {}));
  BuildsetRequest r;
  r.reason = "force build";
  r.external_idstring = "ext-1";
  r.properties = {{"owner", {"jane", "Force Build Form"}}};
  r.submitted_at = 500;
  r.waited_for = true;
  r.builderids = {w.builder, other};
  r.priority = 7;
  SourceStampSpec ss;
  ss.codebase = "core";
  ss.repository = "repo";
  ss.branch = "main";
  ss.revision = "abc";
  ss.patch = PatchRecord{1, "--- a\n+++ b\n\xff binary\n", "sub", "jane", "try this"};
  r.sourcestamps = {ss};
  auto ids = ok(w.store->add_buildset_sync(r));
  REQUIRE(ids.brids.size() == 2);

  ResultSpec by_set;
  by_set.parent = Scope{"buildsetid", ids.bsid};
  by_set.properties = {"*"};
  json reqs = ok(w.store->query_sync(Resource::kBuildrequests, by_set));
  REQUIRE(reqs.size() == 2);
  for (const auto& req : reqs) {
    REQUIRE(ids.brids.at(req["builderid"].get<int64_t>()) == req["buildrequestid"]);
    REQUIRE(req["priority"] == 7);
    REQUIRE(req["claimed"] == false);
    REQUIRE(req["claimed_by_masterid"].is_null());
    REQUIRE(req["complete"] == false);
    REQUIRE(req["results"].is_null());
    REQUIRE(req["submitted_at"] == 500);
    REQUIRE(req["waited_for"] == true);
    REQUIRE(req["properties"] == r.properties);
  }

  json sets = ok(w.store->query_sync(Resource::kBuildsets, {}));
  REQUIRE(sets.size() == 1);
  REQUIRE(sets[0]["bsid"] == ids.bsid);
  REQUIRE(sets[0]["reason"] == "force build");
  REQUIRE(sets[0]["external_idstring"] == "ext-1");
  REQUIRE(sets[0]["complete"] == false);
  REQUIRE(sets[0]["parent_buildid"].is_null());
  const json& stamp = sets[0]["sourcestamps"].at(0);
  REQUIRE(stamp["revision"] == "abc");
  // The byte that is not UTF-8 shows as U+FFFD; JSON text must be UTF-8.
  REQUIRE(stamp["patch"]["body"] == "--- a\n+++ b\n\xef\xbf\xbd binary\n");
  REQUIRE(stamp["patch"]["level"] == 1);
  REQUIRE(stamp["patch"]["subdir"] == "sub");
  REQUIRE(stamp["patch"]["author"] == "jane");
  REQUIRE(stamp["patch"]["comment"] == "try this");

  REQUIRE_FALSE(sets[0].contains("properties"));
  ResultSpec with_properties;
  with_properties.properties = {"owner"};
  REQUIRE(ok(w.store->query_sync(Resource::kBuildsets,
                                 with_properties))[0]["properties"] == r.properties);

  ok(w.store->complete_buildset_sync(ids.bsid, results::kSuccess, 900));
  json done = ok(w.store->query_sync(Resource::kBuildsets, {}));
  REQUIRE(done[0]["complete"] == true);
  REQUIRE(done[0]["complete_at"] == 900);
  REQUIRE(done[0]["results"] == 0);
  REQUIRE(w.store->complete_buildset_sync(ids.bsid, 0, 901).code ==
          StatusCode::kInvalidArgument);
}

TEST_CASE("a buildset for an unknown builder is refused whole") {
  World w;
  BuildsetRequest r;
  r.builderids = {w.builder, 999};
  REQUIRE(w.store->add_buildset_sync(r).status.code == StatusCode::kNotFound);
  REQUIRE(ok(w.store->query_sync(Resource::kBuildsets, {})).empty());
  REQUIRE(ok(w.store->pending_requests_sync(std::nullopt)).empty());
}

TEST_CASE("a claimed request cannot be claimed again, by another master or the same") {
  World w;
  int64_t other_master = ok(w.store->register_master_sync("host:/srv/other", 100));
  int64_t a = w.request(w.builder);
  int64_t b = w.request(w.builder);

  REQUIRE(ok(w.store->claim_requests_sync({a}, w.master, 300)) ==
          std::vector<int64_t>{a});
  REQUIRE(ok(w.store->claim_requests_sync({a, b}, other_master, 301)) ==
          std::vector<int64_t>{b});
  REQUIRE(ok(w.store->claim_requests_sync({a, b}, w.master, 302)).empty());
  REQUIRE(ok(w.store->pending_requests_sync(w.builder)).empty());

  ResultSpec spec;
  spec.filters = {{"buildrequestid", FilterOp::kEq, {a}}};
  json row = ok(w.store->query_sync(Resource::kBuildrequests, spec)).at(0);
  REQUIRE(row["claimed"] == true);
  REQUIRE(row["claimed_at"] == 300);
  REQUIRE(row["claimed_by_masterid"] == w.master);

  ok(w.store->unclaim_requests_sync({a}));
  auto pending = ok(w.store->pending_requests_sync(w.builder));
  REQUIRE(pending.size() == 1);
  REQUIRE(pending[0].buildrequestid == a);
  REQUIRE(ok(w.store->claim_requests_sync({a}, other_master, 303)) ==
          std::vector<int64_t>{a});
}

TEST_CASE("pending requests come highest priority first, then oldest first") {
  World w;
  int64_t old_low = w.request(w.builder, 100, 0);
  int64_t new_high = w.request(w.builder, 300, 5);
  int64_t new_low = w.request(w.builder, 200, 0);
  int64_t lint = ok(w.store->ensure_builder_sync("lint", std::nullopt, {}));
  int64_t other = w.request(lint, 50, 0);
  auto ids = [](const std::vector<BuildRequestRecord>& v) {
    std::vector<int64_t> out;
    for (const auto& r : v) out.push_back(r.buildrequestid);
    return out;
  };
  REQUIRE(ids(ok(w.store->pending_requests_sync(w.builder))) ==
          std::vector<int64_t>{new_high, old_low, new_low});
  REQUIRE(ids(ok(w.store->pending_requests_sync(w.builder, 2))) ==
          std::vector<int64_t>{new_high, old_low});
  REQUIRE(ok(w.store->pending_requests_sync(std::nullopt)).size() == 4);
  REQUIRE(ids(ok(w.store->pending_requests_sync(lint))) == std::vector<int64_t>{other});
}

TEST_CASE(
    "cancelling completes an unclaimed request with CANCELLED and leaves a claimed one") {
  World w;
  int64_t free = w.request(w.builder);
  int64_t claimed = w.request(w.builder);
  ok(w.store->claim_requests_sync({claimed}, w.master, 1));
  REQUIRE(ok(w.store->cancel_request_sync(free, 10)) == true);
  REQUIRE(ok(w.store->cancel_request_sync(claimed, 10)) == false);
  REQUIRE(ok(w.store->cancel_request_sync(free, 11)) == false);
  REQUIRE(w.store->cancel_request_sync(9999, 11).status.code == StatusCode::kNotFound);

  ResultSpec spec;
  spec.filters = {{"complete", FilterOp::kEq, {true}}};
  json rows = ok(w.store->query_sync(Resource::kBuildrequests, spec));
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0]["buildrequestid"] == free);
  REQUIRE(rows[0]["results"] == results::kCancelled);
  REQUIRE(rows[0]["complete_at"] == 10);
}

TEST_CASE("completing requests is all or nothing") {
  World w;
  int64_t a = w.request(w.builder);
  int64_t b = w.request(w.builder);
  ok(w.store->complete_requests_sync({b}, results::kSuccess, 5));
  REQUIRE(w.store->complete_requests_sync({a, b}, results::kFailure, 6).code ==
          StatusCode::kInvalidArgument);
  ResultSpec spec;
  spec.filters = {{"buildrequestid", FilterOp::kEq, {a}}};
  REQUIRE(ok(w.store->query_sync(Resource::kBuildrequests, spec))[0]["complete"] ==
          false);
  ok(w.store->complete_requests_sync({a}, results::kFailure, 7));
  REQUIRE(ok(w.store->query_sync(Resource::kBuildrequests, spec))[0]["results"] == 2);
}

TEST_CASE("build numbers count up per builder, independently of other builders") {
  World w;
  int64_t lint = ok(w.store->ensure_builder_sync("lint", std::nullopt, {}));
  REQUIRE(w.build(w.builder).number == 1);
  REQUIRE(w.build(w.builder).number == 2);
  REQUIRE(w.build(lint).number == 1);
  auto third = w.build(w.builder);
  REQUIRE(third.number == 3);

  ok(w.store->set_build_state_string_sync(third.buildid, "compiling"));
  ok(w.store->set_build_property_sync(third.buildid, "got_revision", "abc", "Git"));
  ok(w.store->set_build_property_sync(third.buildid, "jobs", 4, "Builder"));
  ok(w.store->finish_build_sync(third.buildid, results::kWarnings, 400));
  REQUIRE(ok(w.store->build_properties_sync(third.buildid)) ==
          json{{"got_revision", {"abc", "Git"}}, {"jobs", {4, "Builder"}}});

  ResultSpec spec;
  spec.parent = Scope{"builderid", w.builder};
  spec.filters = {{"number", FilterOp::kEq, {"3"}}};
  spec.properties = {"jobs"};
  json rows = ok(w.store->query_sync(Resource::kBuilds, spec));
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0]["buildid"] == third.buildid);
  REQUIRE(rows[0]["state_string"] == "compiling");
  REQUIRE(rows[0]["complete"] == true);
  REQUIRE(rows[0]["complete_at"] == 400);
  REQUIRE(rows[0]["results"] == 1);
  REQUIRE(rows[0]["workerid"].is_null());
  REQUIRE(rows[0]["properties"] == json{{"jobs", {4, "Builder"}}});
  // Properties only when asked, as in Buildbot.
  spec.properties.clear();
  REQUIRE_FALSE(
      ok(w.store->query_sync(Resource::kBuilds, spec))[0].contains("properties"));
}

TEST_CASE("a step name already used in the build gets _2, _3 appended") {
  World w;
  auto build = w.build(w.builder);
  auto a = ok(w.store->add_step_sync(build.buildid, "test"));
  auto b = ok(w.store->add_step_sync(build.buildid, "test"));
  auto c = ok(w.store->add_step_sync(build.buildid, "test"));
  REQUIRE(a.name == "test");
  REQUIRE(b.name == "test_2");
  REQUIRE(c.name == "test_3");
  REQUIRE(std::vector<int64_t>{a.number, b.number, c.number} ==
          std::vector<int64_t>{0, 1, 2});

  ok(w.store->start_step_sync(b.stepid, 210));
  ok(w.store->set_step_state_string_sync(b.stepid, "running"));
  ok(w.store->add_step_url_sync(b.stepid, "report", "http://r/1"));
  ok(w.store->add_step_url_sync(b.stepid, "report", "http://r/1"));
  ok(w.store->finish_step_sync(b.stepid, results::kFailure, true, 220));
  ResultSpec spec;
  spec.parent = Scope{"buildid", build.buildid};
  spec.filters = {{"name", FilterOp::kEq, {"test_2"}}};
  json row = ok(w.store->query_sync(Resource::kSteps, spec)).at(0);
  REQUIRE(row["stepid"] == b.stepid);
  REQUIRE(row["started_at"] == 210);
  REQUIRE(row["state_string"] == "running");
  REQUIRE(row["urls"] == json::array({{{"name", "report"}, {"url", "http://r/1"}}}));
  REQUIRE(row["results"] == 2);
  REQUIRE(row["hidden"] == true);
  REQUIRE(row["complete"] == true);
}

TEST_CASE("log slugs are identifiers unique per step and log names may not repeat") {
  World w;
  auto build = w.build(w.builder);
  auto step = ok(w.store->add_step_sync(build.buildid, "compile"));
  int64_t a = ok(w.store->add_log_sync(step.stepid, "test results", 't'));
  int64_t b = ok(w.store->add_log_sync(step.stepid, "test/results", 'h'));
  REQUIRE(w.store->add_log_sync(step.stepid, "test results", 't').status.code ==
          StatusCode::kInvalidArgument);
  REQUIRE(w.store->add_log_sync(step.stepid, "x", 'q').status.code ==
          StatusCode::kInvalidArgument);
  ResultSpec spec;
  spec.parent = Scope{"stepid", step.stepid};
  json logs = ok(w.store->query_sync(Resource::kLogs, spec));
  REQUIRE(logs.size() == 2);
  REQUIRE(logs[0]["logid"] == a);
  REQUIRE(logs[0]["slug"] == "test_results");
  REQUIRE(logs[0]["type"] == "t");
  REQUIRE(logs[1]["logid"] == b);
  REQUIRE(logs[1]["slug"] == "test_results_2");
  REQUIRE(logs[1]["num_lines"] == 0);
  REQUIRE(logs[1]["complete"] == false);
}

TEST_CASE("log lines are read back exactly for any range across several chunks") {
  World w;
  int64_t logid = w.log();
  // Appends of varied sizes, one of them bigger than a chunk.
  int64_t next = 0;
  for (int64_t n : {1, 7, 3, 9000, 2, 40}) {
    auto range = ok(w.store->append_log_sync(logid, numbered_lines(next, next + n - 1)));
    REQUIRE(range.first_line == next);
    REQUIRE(range.last_line == next + n - 1);
    next += n;
  }
  const int64_t total = next;
  for (auto [from, to] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 0},
                                                {0, 10},
                                                {5, 12},
                                                {11, 11},
                                                {8, 9050},
                                                {9000, 9052},
                                                {9050, total - 1},
                                                {total - 3, total + 100},
                                                {-5, 2}}) {
    INFO(from << ".." << to);
    REQUIRE(ok(w.store->log_lines_sync(logid, from, to)) ==
            numbered_lines(std::max<int64_t>(from, 0), std::min(to, total - 1)));
  }
  REQUIRE(ok(w.store->log_lines_sync(logid, total, total + 5)).empty());
  REQUIRE(ok(w.store->log_lines_sync(logid, 10, 5)).empty());

  ok(w.store->finish_log_sync(logid));
  REQUIRE(w.store->append_log_sync(logid, "late\n").status.code ==
          StatusCode::kInvalidArgument);
  // Finishing folded the small chunks together; the text is unchanged.
  REQUIRE(ok(w.store->log_lines_sync(logid, 0, total - 1)) ==
          numbered_lines(0, total - 1));
  ResultSpec spec;
  spec.filters = {{"logid", FilterOp::kEq, {logid}}};
  json row = ok(w.store->query_sync(Resource::kLogs, spec)).at(0);
  REQUIRE(row["num_lines"] == total);
  REQUIRE(row["complete"] == true);
}

TEST_CASE(
    "appending text that is not whole lines, or stdio lines without a stream, is "
    "refused") {
  World w;
  int64_t stdio = w.log('s');
  REQUIRE(w.store->append_log_sync(stdio, "no newline").status.code ==
          StatusCode::kInvalidArgument);
  REQUIRE(w.store->append_log_sync(stdio, "ok\nxbad\n").status.code ==
          StatusCode::kInvalidArgument);
  std::string framed = prefix_stdio_lines('h', "make test\n") +
                       prefix_stdio_lines('o', "one\ntwo") +
                       prefix_stdio_lines('e', "err\n");
  REQUIRE(framed == "hmake test\noone\notwo\neerr\n");
  auto range = ok(w.store->append_log_sync(stdio, framed));
  REQUIRE(range.first_line == 0);
  REQUIRE(range.last_line == 3);
  REQUIRE(ok(w.store->log_lines_sync(stdio, 1, 2)) == "oone\notwo\n");
}

TEST_CASE("a 50 MB log is stored compressed and a line range reads only its chunks") {
  TempDir dir;
  std::unique_ptr<Store> store;
  {
    OpenOptions o;
    o.url = "sqlite:state.sqlite";
    o.base_dir = dir.path();
    o.mode = OpenMode::kCreate;
    store = ok(open_store(std::move(o)));
  }
  int64_t master = ok(store->register_master_sync("m", 1));
  int64_t builder = ok(store->ensure_builder_sync("b", std::nullopt, {}));
  BuildsetRequest r;
  r.builderids = {builder};
  int64_t brid = ok(store->add_buildset_sync(r)).brids.at(builder);
  auto build = ok(store->add_build_sync(builder, brid, std::nullopt, master, 1, ""));
  auto step = ok(store->add_step_sync(build.buildid, "compile"));
  int64_t logid = ok(store->add_log_sync(step.stepid, "stdio", 's'));

  constexpr size_t kTotal = 50u << 20;
  constexpr size_t kBatch = 64u << 10;
  auto line_of = [](int64_t i) {
    return "o[" + std::to_string(i) + "] g++ -O2 -Wall -c src/module_" +
           std::to_string(i % 37) + ".cpp -o build/module_" + std::to_string(i % 37) +
           ".o\n";
  };
  size_t written = 0;
  int64_t line = 0;
  while (written < kTotal) {
    std::string batch;
    while (batch.size() + 100 < kBatch) batch += line_of(line++);
    written += batch.size();
    store->append_log(logid, std::move(batch),
                      [](Result<LineRange> r) { REQUIRE(r.ok()); });
  }
  ok(store->wait());
  ok(store->finish_log_sync(logid));

  const auto before = store->stats();
  std::string expected;
  for (int64_t i = 1000; i <= 1010; ++i) expected += line_of(i);
  REQUIRE(ok(store->log_lines_sync(logid, 1000, 1010)) == expected);
  REQUIRE(store->stats().log_chunks_read - before.log_chunks_read <= 2);

  std::string tail;
  for (int64_t i = line - 3; i < line; ++i) tail += line_of(i);
  REQUIRE(ok(store->log_lines_sync(logid, line - 3, line + 10)) == tail);

  store.reset();  // checkpoints the WAL into the file
  const auto size = std::filesystem::file_size(dir / "state.sqlite");
  INFO("store file " << size << " bytes for " << written << " bytes of log");
  REQUIRE(size < written / 10);
}

TEST_CASE("a log read page by page comes back whole, in order, within the page size") {
  World w;
  int64_t logid = w.log();
  std::string all;
  for (int i = 0; i < 20; ++i) {
    std::string batch = numbered_lines(i * 500, i * 500 + 499);
    all += batch;
    ok(w.store->append_log_sync(logid, batch));
  }
  std::string read;
  int64_t next = 0;
  int pages = 0;
  for (;;) {
    auto page = ok(w.store->log_page_sync(logid, next, 16 * 1024));
    read += page.text;
    next = page.next_line;
    ++pages;
    if (page.end) break;
    REQUIRE(pages < 1000);
  }
  REQUIRE(read == all);
  REQUIRE(next == 10'000);
  REQUIRE(pages >= 4);
  // From the middle of a chunk, the page starts at that line.
  REQUIRE(ok(w.store->log_page_sync(logid, 1234, 10)).text.starts_with("line 1234\n"));
  auto past = ok(w.store->log_page_sync(logid, 20'000, 10));
  REQUIRE(past.text.empty());
  REQUIRE(past.end);
  REQUIRE(past.next_line == 20'000);
}

TEST_CASE(
    "crash recovery marks the master's unfinished builds RETRY and requeues their "
    "requests") {
  World w;
  int64_t other_master = ok(w.store->register_master_sync("host:/srv/other", 100));
  auto running = w.build(w.builder, 200);
  auto finished = w.build(w.builder, 210);
  ok(w.store->finish_build_sync(finished.buildid, results::kSuccess, 250));
  ok(w.store->complete_requests_sync({w.brid_of(finished.buildid)}, results::kSuccess,
                                     250));
  auto step_done = ok(w.store->add_step_sync(running.buildid, "checkout"));
  ok(w.store->finish_step_sync(step_done.stepid, results::kSuccess, false, 230));
  auto step_running = ok(w.store->add_step_sync(running.buildid, "compile"));
  int64_t logid = ok(w.store->add_log_sync(step_running.stepid, "stdio", 's'));
  ok(w.store->append_log_sync(logid, "ohalf\n"));
  // Claimed, but the master died before starting its build.
  int64_t orphan = w.request(w.builder);
  ok(w.store->claim_requests_sync({orphan}, w.master, 240));
  // Another master's claim is not ours to touch.
  int64_t theirs = w.request(w.builder);
  ok(w.store->claim_requests_sync({theirs}, other_master, 240));
  int64_t worker = ok(w.store->ensure_worker_sync("w1", {}));
  ok(w.store->set_worker_connected_sync(worker, w.master, true));

  auto counts = ok(w.store->recover_after_crash_sync(w.master, 1000));
  REQUIRE(counts.builds == 1);
  REQUIRE(counts.steps == 1);
  REQUIRE(counts.logs == 1);
  REQUIRE(counts.requests == 2);

  auto pending = ok(w.store->pending_requests_sync(w.builder));
  std::vector<int64_t> ids;
  for (const auto& p : pending) ids.push_back(p.buildrequestid);
  std::sort(ids.begin(), ids.end());
  std::vector<int64_t> expected{w.brid_of(running.buildid), orphan};
  std::sort(expected.begin(), expected.end());
  REQUIRE(ids == expected);

  json builds = ok(w.store->query_sync(Resource::kBuilds, {}));
  REQUIRE(builds[0]["results"] == results::kRetry);
  REQUIRE(builds[0]["complete_at"] == 1000);
  REQUIRE(builds[1]["results"] == results::kSuccess);
  json steps = ok(w.store->query_sync(Resource::kSteps, {}));
  REQUIRE(steps[0]["results"] == results::kSuccess);
  REQUIRE(steps[1]["results"] == results::kException);
  REQUIRE(steps[1]["complete_at"] == 1000);
  REQUIRE(ok(w.store->query_sync(Resource::kLogs, {}))[0]["complete"] == true);
  REQUIRE(ok(w.store->query_sync(Resource::kWorkers, {}))[0]["connected_to"] ==
          json::array());
  // Nothing is left to recover a second time.
  auto again = ok(w.store->recover_after_crash_sync(w.master, 1001));
  REQUIRE(again.builds + again.steps + again.logs + again.requests == 0);
}

TEST_CASE("retention deletes old logs and builds a batch per call, never newer ones") {
  World w;
  std::vector<int64_t> old_logs;
  for (int i = 0; i < 3; ++i) {
    auto b = w.build(w.builder, 100 + i);
    auto s = ok(w.store->add_step_sync(b.buildid, "s"));
    int64_t logid = ok(w.store->add_log_sync(s.stepid, "log", 't'));
    for (int k = 0; k < 4; ++k) ok(w.store->append_log_sync(logid, numbered_lines(k, k)));
    ok(w.store->finish_build_sync(b.buildid, 0, i == 2 ? 5000 : 1000 + i));
    old_logs.push_back(logid);
  }
  // Two builds finished before 2000 with 4 chunks each: 8 chunks, batches of 3.
  std::vector<int64_t> batches;
  for (;;) {
    int64_t n = ok(w.store->delete_old_logs_sync(w.builder, 2000, 3));
    if (n == 0) break;
    batches.push_back(n);
  }
  REQUIRE(batches == std::vector<int64_t>{3, 3, 2});
  json logs = ok(w.store->query_sync(Resource::kLogs, {}));
  REQUIRE(logs[0]["type"] == "d");
  REQUIRE(logs[1]["type"] == "d");
  REQUIRE(logs[2]["type"] == "t");
  REQUIRE(ok(w.store->log_lines_sync(old_logs[2], 0, 3)) == numbered_lines(0, 3));

  batches.clear();
  for (;;) {
    int64_t n = ok(w.store->delete_old_builds_sync(w.builder, 6000, 2));
    if (n == 0) break;
    batches.push_back(n);
  }
  // The newest build's 4 chunks first (2 + 2), then the builds (2 + 1).
  REQUIRE(batches == std::vector<int64_t>{2, 2, 2, 1});
  REQUIRE(ok(w.store->query_sync(Resource::kBuilds, {})).empty());
  REQUIRE(ok(w.store->query_sync(Resource::kSteps, {})).empty());
  REQUIRE(ok(w.store->query_sync(Resource::kLogs, {})).empty());
}

TEST_CASE("builders and workers are created once and updated in place") {
  World w;
  REQUIRE(ok(w.store->ensure_builder_sync("unit", "new words",
                                          {"slow", "linux", "slow"})) == w.builder);
  auto builders = ok(w.store->list_builders_sync());
  REQUIRE(builders.size() == 1);
  REQUIRE(builders[0].description == "new words");
  REQUIRE(builders[0].tags == std::vector<std::string>{"linux", "slow"});

  int64_t worker = ok(w.store->ensure_worker_sync("w1", {{"os", "linux"}}));
  ok(w.store->set_worker_info_sync(worker, {{"os", "debian"}, {"cpus", 2}}));
  REQUIRE(ok(w.store->ensure_worker_sync("w1", json::object())) == worker);
  ok(w.store->set_worker_connected_sync(worker, w.master, true));
  ok(w.store->set_worker_connected_sync(worker, w.master, true));
  json row = ok(w.store->query_sync(Resource::kWorkers, {})).at(0);
  REQUIRE(row["workerid"] == worker);
  REQUIRE(row["name"] == "w1");
  REQUIRE(row["workerinfo"] == json{{"os", "debian"}, {"cpus", 2}});
  REQUIRE(row["paused"] == false);
  REQUIRE(row["graceful"] == false);
  REQUIRE(row["connected_to"] == json::array({{{"masterid", w.master}}}));
  REQUIRE(row["configured_on"] == json::array());
  ok(w.store->set_worker_connected_sync(worker, w.master, false));
  REQUIRE(ok(w.store->query_sync(Resource::kWorkers, {}))[0]["connected_to"] ==
          json::array());
  REQUIRE(w.store->set_worker_info_sync(999, json::object()).code ==
          StatusCode::kNotFound);
}
