#include "engine/data_api.h"
#include "store/store.h"

#include <catch2/catch.hpp>

#include <deque>
#include <mutex>
#include <stdexcept>

using namespace kiln::store;
using kiln::engine::ControlTarget;
using kiln::engine::DataApi;
using kiln::engine::DataDone;
using nlohmann::json;

namespace {

// Posted store completions wait here until the test pumps them, as they
// would wait for the engine's loop.
struct FakeLoop {
  std::mutex mutex;
  std::deque<std::function<void()>> queue;

  PostFn post() {
    return [this](std::function<void()> fn) {
      std::lock_guard lock(mutex);
      queue.push_back(std::move(fn));
    };
  }
  size_t pump() {
    std::deque<std::function<void()>> ready;
    {
      std::lock_guard lock(mutex);
      ready.swap(queue);
    }
    for (auto& fn : ready) fn();
    return ready.size();
  }
};

struct NoControl final : ControlTarget {
  void control(std::string_view, std::string_view, const json&, DataDone done) override {
    done(KILN_ERR_UNSUPPORTED, json{{"error", "no control in this test"}});
  }
};

struct Answer {
  kiln_status status = KILN_ERR_INTERNAL;
  json value;
  int calls = 0;
};

template <class T>
T ok(Result<T> r) {
  INFO(r.status.message);
  REQUIRE(r.ok());
  return std::move(r.value);
}

// A store holding two builders, a worker, a change, a buildset with one
// request per builder, three builds, steps and logs.
struct World {
  FakeLoop loop;
  std::unique_ptr<Store> store;
  NoControl control;
  std::unique_ptr<DataApi> api;

  int64_t masterid = 0, unit = 0, lint = 0, workerid = 0, changeid = 0, uid = 0;
  BuildsetIds bs;
  BuildIds unit1, unit2, lint1;
  StepIds compile, test;
  int64_t stdio = 0, summary = 0;

  World() {
    OpenOptions o;
    o.url = "sqlite::memory:";
    o.mode = OpenMode::kCreate;
    o.post_to_loop = loop.post();
    auto opened = open_store(std::move(o));
    INFO(opened.status.message);
    REQUIRE(opened.ok());
    store = std::move(opened.value);
    api = std::make_unique<DataApi>(*store, control);

    masterid = ok(store->register_master_sync("host:/srv/master", 1000));
    unit = ok(store->ensure_builder_sync("unit", std::string("unit tests"), {"fast", "ci"}));
    lint = ok(store->ensure_builder_sync("lint", std::nullopt, {}));
    workerid = ok(store->ensure_worker_sync("w1", json{{"os", "linux"}}));
    uid = ok(store->find_or_create_user_sync("alice", "git", "alice <a@example.org>"));

    ChangeRecord change;
    change.author = "alice <a@example.org>";
    change.files = {"src/a.cpp", "src/b.cpp"};
    change.comments = "fix the frobnicator";
    change.repository = "https://example.org/repo.git";
    change.project = "kiln";
    change.revision = "abc123";
    change.branch = "main";
    change.when_timestamp = 1100;
    change.uids = {uid};
    changeid = ok(store->add_change_sync(change));

    BuildsetRequest request;
    SourceStampSpec ss;
    ss.repository = change.repository;
    ss.project = change.project;
    ss.branch = "main";
    ss.revision = "abc123";
    ss.changeids = {changeid};
    request.sourcestamps = {ss};
    request.reason = "forced by alice";
    request.properties = json{{"owner", json::array({"alice", "Force Build Form"})}};
    request.submitted_at = 1200;
    request.builderids = {unit, lint};
    bs = ok(store->add_buildset_sync(request));

    unit1 =
        ok(store->add_build_sync(unit, bs.brids.at(unit), workerid, masterid, 1300, "building"));
    REQUIRE(store->set_build_property_sync(unit1.buildid, "got_revision", "abc123", "Git").ok());
    REQUIRE(store->finish_build_sync(unit1.buildid, results::kFailure, 1400).ok());
    unit2 =
        ok(store->add_build_sync(unit, bs.brids.at(unit), workerid, masterid, 1500, "building"));
    lint1 =
        ok(store->add_build_sync(lint, bs.brids.at(lint), workerid, masterid, 1350, "building"));
    REQUIRE(store->finish_build_sync(lint1.buildid, results::kSuccess, 1360).ok());

    compile = ok(store->add_step_sync(unit1.buildid, "compile"));
    test = ok(store->add_step_sync(unit1.buildid, "test"));
    stdio = ok(store->add_log_sync(compile.stepid, "stdio", 's'));
    ok(store->append_log_sync(stdio, prefix_stdio_lines('h', "cmake --build .\n")));
    ok(store->append_log_sync(stdio, prefix_stdio_lines('o', "line 1\nline 2\nline 3\n")));
    ok(store->append_log_sync(stdio, prefix_stdio_lines('e', "warning: x\n")));
    summary = ok(store->add_log_sync(test.stepid, "Test Summary", 't'));
    ok(store->append_log_sync(summary, "12 passed\n1 failed\n"));
    REQUIRE(store->wait().ok());
    loop.pump();
  }

  // Runs get() to its answer, pumping the fake loop, then keeps pumping a
  // little to catch a second call of `done`.
  Answer get(std::string_view path, const json& query = nullptr) {
    auto answer = std::make_shared<Answer>();
    api->get(path, query, [answer](kiln_status status, json value) {
      answer->status = status;
      answer->value = std::move(value);
      ++answer->calls;
    });
    for (int i = 0; i < 200 && answer->calls == 0; ++i) {
      REQUIRE(store->wait().ok());
      loop.pump();
    }
    for (int i = 0; i < 3; ++i) {
      REQUIRE(store->wait().ok());
      loop.pump();
    }
    REQUIRE(answer->calls == 1);
    return *answer;
  }

  json get_ok(std::string_view path, const json& query = nullptr) {
    auto a = get(path, query);
    INFO(path << " -> " << a.value.dump());
    REQUIRE(a.status == KILN_OK);
    return a.value;
  }
};

std::vector<int64_t> ids(const json& rows, const char* field) {
  std::vector<int64_t> out;
  for (const auto& r : rows) out.push_back(r.at(field).get<int64_t>());
  return out;
}

void require_not_found(World& w, std::string_view path, const std::string& message) {
  auto a = w.get(path);
  INFO(path << " -> " << a.value.dump());
  REQUIRE(a.status == KILN_ERR_NOT_FOUND);
  REQUIRE(a.value.at("error").get<std::string>() == message);
}

}  // namespace

TEST_CASE("builders are listed, and one is found by its id or by its name") {
  World w;
  auto all = w.get_ok("builders");
  REQUIRE(all.is_array());
  REQUIRE(ids(all, "builderid") == std::vector<int64_t>{w.unit, w.lint});

  auto by_id = w.get_ok("builders/" + std::to_string(w.lint));
  REQUIRE(by_id.is_object());
  REQUIRE(by_id.at("name") == "lint");

  auto by_name = w.get_ok("/builders/unit/");
  REQUIRE(by_name.at("builderid") == w.unit);
  REQUIRE(by_name.at("description") == "unit tests");
  REQUIRE(by_name.at("tags") == json::array({"ci", "fast"}));
}

TEST_CASE("missing objects answer not-found with a message naming what is missing") {
  World w;
  require_not_found(w, "builders/99", "no builder 99");
  require_not_found(w, "builders/nosuch", "no builder named 'nosuch'");
  require_not_found(w, "builders/nosuch/builds", "no builder named 'nosuch'");
  require_not_found(w, "builders/unit/builds/9", "no build 9 on builder 'unit'");
  require_not_found(w, "builds/12345", "no build 12345");
  require_not_found(w, "builds/12345/steps", "no build 12345");
  require_not_found(w, "builds/" + std::to_string(w.unit1.buildid) + "/steps/deploy",
                    "no step 'deploy' in build " + std::to_string(w.unit1.buildid));
  require_not_found(w, "steps/" + std::to_string(w.compile.stepid) + "/logs/nolog",
                    "no log 'nolog' in step " + std::to_string(w.compile.stepid));
  require_not_found(w, "logs/777/contents", "no log 777");
  require_not_found(w, "changes/55", "no change 55");
  require_not_found(w, "buildsets/55", "no buildset 55");
  require_not_found(w, "buildrequests/55", "no build request 55");
  require_not_found(w, "workers/w9", "no worker named 'w9'");
  require_not_found(w, "masters/55", "no master 55");
  require_not_found(w, "sourcestamps/55", "no sourcestamp 55");
  require_not_found(w, "users/55", "no user 55");
}

TEST_CASE("paths that name no resource answer not-found naming the path") {
  World w;
  require_not_found(w, "", "no data path ''");
  require_not_found(w, "frobs", "no data path 'frobs'");
  require_not_found(w, "builders/unit/frobs", "no data path 'builders/unit/frobs'");
  require_not_found(w, "builds/" + std::to_string(w.unit1.buildid) + "/steps/0/frobs",
                    "no data path 'builds/" + std::to_string(w.unit1.buildid) + "/steps/0/frobs'");
  require_not_found(w, "users/" + std::to_string(w.uid) + "/x",
                    "no data path 'users/" + std::to_string(w.uid) + "/x'");
}

TEST_CASE("a builder's builds are addressed by number down to steps, logs and contents") {
  World w;
  auto builds = w.get_ok("builders/unit/builds");
  REQUIRE(ids(builds, "buildid") == std::vector<int64_t>{w.unit1.buildid, w.unit2.buildid});

  auto second = w.get_ok("builders/" + std::to_string(w.unit) + "/builds/2");
  REQUIRE(second.at("buildid") == w.unit2.buildid);
  REQUIRE(second.at("complete") == false);

  auto lint_first = w.get_ok("builders/lint/builds/1");
  REQUIRE(lint_first.at("buildid") == w.lint1.buildid);
  REQUIRE(lint_first.at("results") == results::kSuccess);

  auto steps = w.get_ok("builders/unit/builds/1/steps");
  REQUIRE(ids(steps, "stepid") == std::vector<int64_t>{w.compile.stepid, w.test.stepid});
  REQUIRE(w.get_ok("builders/unit/builds/1/steps/1").at("name") == "test");
  REQUIRE(w.get_ok("builders/unit/builds/1/steps/compile").at("number") == 0);

  auto logs = w.get_ok("builders/unit/builds/1/steps/test/logs");
  REQUIRE(logs.size() == 1);
  REQUIRE(logs[0].at("slug") == "Test_Summary");
  auto log = w.get_ok("builders/unit/builds/1/steps/test/logs/Test_Summary");
  REQUIRE(log.at("logid") == w.summary);
  auto contents = w.get_ok("builders/unit/builds/1/steps/compile/logs/stdio/contents");
  REQUIRE(contents.at("logid") == w.stdio);
  REQUIRE(contents.at("content") == "hcmake --build .\noline 1\noline 2\noline 3\newarning: x\n");

  require_not_found(w, "builders/unit/builds/1/steps/test/logs/stdio/contents",
                    "no log 'stdio' in step " + std::to_string(w.test.stepid));
}

TEST_CASE("a builder's build requests, workers and masters are collections under it") {
  World w;
  auto requests = w.get_ok("builders/lint/buildrequests");
  REQUIRE(ids(requests, "buildrequestid") == std::vector<int64_t>{w.bs.brids.at(w.lint)});
  REQUIRE(w.get_ok("builders/lint/workers").is_array());
  REQUIRE(w.get_ok("builders/lint/masters").is_array());
}

TEST_CASE("builds by id reach their steps by number or name, changes and properties") {
  World w;
  auto all = w.get_ok("builds");
  REQUIRE(ids(all, "buildid") ==
          std::vector<int64_t>{w.unit1.buildid, w.unit2.buildid, w.lint1.buildid});
  const std::string b = "builds/" + std::to_string(w.unit1.buildid);
  auto build = w.get_ok(b);
  REQUIRE(build.at("number") == 1);
  REQUIRE(build.at("builderid") == w.unit);
  REQUIRE_FALSE(build.contains("properties"));

  REQUIRE(ids(w.get_ok(b + "/steps"), "stepid") ==
          std::vector<int64_t>{w.compile.stepid, w.test.stepid});
  REQUIRE(w.get_ok(b + "/steps/0").at("stepid") == w.compile.stepid);
  REQUIRE(w.get_ok(b + "/steps/test").at("stepid") == w.test.stepid);
  REQUIRE(ids(w.get_ok(b + "/steps/test/logs"), "logid") == std::vector<int64_t>{w.summary});
  REQUIRE(w.get_ok(b + "/steps/compile/logs/stdio").at("type") == "s");

  auto changes = w.get_ok(b + "/changes");
  REQUIRE(ids(changes, "changeid") == std::vector<int64_t>{w.changeid});

  auto props = w.get_ok(b + "/properties");
  REQUIRE(props == json{{"got_revision", json::array({"abc123", "Git"})}});

  auto with_props = w.get_ok(b, json{{"property", {"*"}}});
  REQUIRE(with_props.at("properties").at("got_revision") == json::array({"abc123", "Git"}));
}

TEST_CASE("steps and logs are addressed by id, logs of a step by slug") {
  World w;
  const std::string s = "steps/" + std::to_string(w.compile.stepid);
  REQUIRE(w.get_ok(s).at("name") == "compile");
  REQUIRE(ids(w.get_ok(s + "/logs"), "logid") == std::vector<int64_t>{w.stdio});
  REQUIRE(w.get_ok(s + "/logs/stdio").at("num_lines") == 5);
  REQUIRE(w.get_ok(s + "/logs/stdio/contents").at("content").get<std::string>().size() > 0);
  auto log = w.get_ok("logs/" + std::to_string(w.summary));
  REQUIRE(log.at("name") == "Test Summary");
  REQUIRE(log.at("stepid") == w.test.stepid);
}

TEST_CASE("log contents page by lines with offset and limit and keep stdio stream letters") {
  World w;
  const std::string path = "logs/" + std::to_string(w.stdio) + "/contents";
  auto all = w.get_ok(path);
  REQUIRE(all == json{{"logid", w.stdio},
                      {"firstline", 0},
                      {"content", "hcmake --build .\noline 1\noline 2\noline 3\newarning: x\n"}});

  auto middle = w.get_ok(path, json{{"offset", 1}, {"limit", 2}});
  REQUIRE(middle == json{{"logid", w.stdio}, {"firstline", 1}, {"content", "oline 1\noline 2\n"}});

  auto tail = w.get_ok(path, json{{"offset", 3}});
  REQUIRE(tail.at("content") == "oline 3\newarning: x\n");

  auto past_end = w.get_ok(path, json{{"offset", 10}, {"limit", 5}});
  REQUIRE(past_end.at("content") == "");
  REQUIRE(past_end.at("firstline") == 10);

  auto none = w.get_ok(path, json{{"limit", 0}});
  REQUIRE(none.at("content") == "");

  auto text = w.get_ok("logs/" + std::to_string(w.summary) + "/contents",
                       json{{"offset", 1}, {"limit", 1}});
  REQUIRE(text.at("content") == "1 failed\n");
}

TEST_CASE("a raw log names its download after builder, build, step and slug") {
  World w;
  auto stdio = w.get_ok("logs/" + std::to_string(w.stdio) + "/raw");
  REQUIRE(stdio == json{{"filename", "unit_build_1_step_compile_log_stdio.txt"},
                        {"mime-type", "text/plain"},
                        {"content", "cmake --build .\nline 1\nline 2\nline 3\nwarning: x\n"}});

  auto text = w.get_ok("builders/unit/builds/1/steps/test/logs/Test_Summary/raw");
  REQUIRE(text.at("filename") == "unit_build_1_step_test_log_Test_Summary.txt");
  REQUIRE(text.at("content") == "12 passed\n1 failed\n");
}

TEST_CASE("a raw log larger than one store page is assembled from every page in order") {
  World w;
  auto stepid = ok(w.store->add_step_sync(w.lint1.buildid, "big")).stepid;
  auto logid = ok(w.store->add_log_sync(stepid, "out", 't'));
  std::string expected;
  for (int batch = 0; batch < 8; ++batch) {
    std::string lines;
    for (int i = 0; i < 2000; ++i) {
      lines += "batch " + std::to_string(batch) + " line " + std::to_string(i) +
               " ........................................\n";
    }
    ok(w.store->append_log_sync(logid, lines));
    expected += lines;
  }
  REQUIRE(expected.size() > 2 * 256 * 1024);
  auto raw = w.get_ok("logs/" + std::to_string(logid) + "/raw");
  REQUIRE(raw.at("content").get<std::string>().size() == expected.size());
  REQUIRE(raw.at("content") == expected);
  REQUIRE(raw.at("filename") == "lint_build_1_step_big_log_out.txt");
}

TEST_CASE("changes, buildsets, requests, workers, masters, sourcestamps and users are served") {
  World w;
  auto changes = w.get_ok("changes");
  REQUIRE(ids(changes, "changeid") == std::vector<int64_t>{w.changeid});
  auto change = w.get_ok("changes/" + std::to_string(w.changeid));
  REQUIRE(change.at("files") == json::array({"src/a.cpp", "src/b.cpp"}));
  const int64_t ssid = change.at("sourcestamp").at("ssid").get<int64_t>();

  REQUIRE(ids(w.get_ok("buildsets"), "bsid") == std::vector<int64_t>{w.bs.bsid});
  const std::string bs = "buildsets/" + std::to_string(w.bs.bsid);
  REQUIRE(w.get_ok(bs).at("reason") == "forced by alice");
  REQUIRE(w.get_ok(bs + "/properties") ==
          json{{"owner", json::array({"alice", "Force Build Form"})}});

  REQUIRE(w.get_ok("buildrequests").size() == 2);
  auto request = w.get_ok("buildrequests/" + std::to_string(w.bs.brids.at(w.unit)));
  REQUIRE(request.at("builderid") == w.unit);
  REQUIRE(ids(w.get_ok("buildrequests/" + std::to_string(w.bs.brids.at(w.lint)) + "/builds"),
              "buildid") == std::vector<int64_t>{w.lint1.buildid});

  REQUIRE(ids(w.get_ok("workers"), "workerid") == std::vector<int64_t>{w.workerid});
  REQUIRE(w.get_ok("workers/w1").at("workerid") == w.workerid);
  REQUIRE(w.get_ok("workers/" + std::to_string(w.workerid)).at("name") == "w1");
  REQUIRE(w.get_ok("workers/w1/builds").size() == 3);

  REQUIRE(ids(w.get_ok("masters"), "masterid") == std::vector<int64_t>{w.masterid});
  REQUIRE(w.get_ok("masters/" + std::to_string(w.masterid)).at("name") == "host:/srv/master");

  REQUIRE(ids(w.get_ok("sourcestamps"), "ssid") == std::vector<int64_t>{ssid});
  REQUIRE(w.get_ok("sourcestamps/" + std::to_string(ssid)).at("revision") == "abc123");
  REQUIRE(ids(w.get_ok("sourcestamps/" + std::to_string(ssid) + "/changes"), "changeid") ==
          std::vector<int64_t>{w.changeid});

  REQUIRE(ids(w.get_ok("users"), "uid") == std::vector<int64_t>{w.uid});
  REQUIRE(w.get_ok("users/" + std::to_string(w.uid)).at("identifier") == "alice");
}

TEST_CASE("a change's users are its author's user objects, with their attributes") {
  World w;
  const std::string path = "changes/" + std::to_string(w.changeid) + "/users";
  auto users = w.get_ok(path);
  REQUIRE(ids(users, "uid") == std::vector<int64_t>{w.uid});
  REQUIRE(users[0].at("attributes").at("git") == "alice <a@example.org>");
  require_not_found(w, path + "/1", "no data path '" + path + "/1'");
  require_not_found(w, "changes/55/users", "no change 55");
}

TEST_CASE("fields keep only the named keys of every object and of a single one") {
  World w;
  auto rows = w.get_ok("builds", json{{"fields", {"buildid", "number"}}});
  REQUIRE(rows.size() == 3);
  for (const auto& r : rows) {
    REQUIRE(r.size() == 2);
    REQUIRE(r.contains("buildid"));
    REQUIRE(r.contains("number"));
  }
  auto one = w.get_ok("builders/unit", json{{"fields", {"name"}}});
  REQUIRE(one == json{{"name", "unit"}});
}

TEST_CASE("filters, order, limit and offset select and page a collection") {
  World w;
  auto complete = w.get_ok("builds", json{{"filters", {{"complete", "eq", {true}}}}});
  REQUIRE(ids(complete, "buildid") == std::vector<int64_t>{w.unit1.buildid, w.lint1.buildid});

  auto newest_first = w.get_ok("builds", json{{"order", {"-started_at"}}});
  REQUIRE(ids(newest_first, "buildid") ==
          std::vector<int64_t>{w.unit2.buildid, w.lint1.buildid, w.unit1.buildid});

  auto page = w.get_ok("builds", json{{"order", {"-started_at"}}, {"limit", 1}, {"offset", 1}});
  REQUIRE(ids(page, "buildid") == std::vector<int64_t>{w.lint1.buildid});

  auto unit_only = w.get_ok("builders/unit/builds", json{{"filters", {{"number", "gt", {1}}}}});
  REQUIRE(ids(unit_only, "buildid") == std::vector<int64_t>{w.unit2.buildid});

  auto from_url = w.get_ok("builds", DataApi::query_from_url("complete=false&field=buildid"));
  REQUIRE(from_url == json::array({json{{"buildid", w.unit2.buildid}}}));
}

TEST_CASE("a malformed query or a field the store does not know answers invalid-argument") {
  World w;
  auto bad_shape = w.get("builds", json{{"limit", "ten"}});
  REQUIRE(bad_shape.status == KILN_ERR_INVALID_ARGUMENT);
  REQUIRE(bad_shape.value.at("error").get<std::string>().find("limit") != std::string::npos);

  auto bad_op = w.get("builds", json{{"filters", {{"number", "near", {1}}}}});
  REQUIRE(bad_op.status == KILN_ERR_INVALID_ARGUMENT);

  auto unknown_field = w.get("builds", json{{"filters", {{"colour", "eq", {"red"}}}}});
  REQUIRE(unknown_field.status == KILN_ERR_INVALID_ARGUMENT);
  REQUIRE(unknown_field.value.at("error").get<std::string>().find("colour") != std::string::npos);
}

TEST_CASE("query_from_url turns REST parameters into the JSON query form") {
  auto q = DataApi::query_from_url(
      "field=buildid&field=number,results&limit=10&offset=20&order=-number&order=builderid"
      "&property=*&complete=false&number__gt=3&results__ne=0&name__contains=li%20nux"
      "&builderid=1&builderid=2&buildid__in=4,5&state_string=a+b");
  REQUIRE(q.at("fields") == json::array({"buildid", "number", "results"}));
  REQUIRE(q.at("limit") == 10);
  REQUIRE(q.at("offset") == 20);
  REQUIRE(q.at("order") == json::array({"-number", "builderid"}));
  REQUIRE(q.at("property") == json::array({"*"}));
  REQUIRE(q.at("filters") ==
          json::array({json::array({"complete", "eq", json::array({false})}),
                       json::array({"number", "gt", json::array({3})}),
                       json::array({"results", "ne", json::array({0})}),
                       json::array({"name", "contains", json::array({"li nux"})}),
                       json::array({"builderid", "eq", json::array({1, 2})}),
                       json::array({"buildid", "in", json::array({4, 5})}),
                       json::array({"state_string", "eq", json::array({"a b"})})}));
  REQUIRE(DataApi::query_from_url("") == json::object());
}

TEST_CASE("query_from_url rejects a malformed parameter naming it") {
  auto message_of = [](std::string_view qs) {
    try {
      DataApi::query_from_url(qs);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  REQUIRE_THAT(message_of("limit=ten"), Catch::Contains("'limit'"));
  REQUIRE_THAT(message_of("offset=-1"), Catch::Contains("'offset'"));
  REQUIRE_THAT(message_of("number__near=3"), Catch::Contains("'number__near'"));
  REQUIRE_THAT(message_of("name=%zz"), Catch::Contains("'name'"));
  REQUIRE_THAT(message_of("__eq=3"), Catch::Contains("'__eq'"));
}

TEST_CASE("a REST query string gives the keys the JSON query does not set") {
  World w;
  auto rows = w.get_ok("builds", json{{"query_string", "complete=true&order=-buildid&limit=5"},
                                      {"limit", 1}});
  REQUIRE(ids(rows, "buildid") == std::vector<int64_t>{w.lint1.buildid});

  auto bad = w.get("builds", json{{"query_string", "number__near=3"}});
  REQUIRE(bad.status == KILN_ERR_INVALID_ARGUMENT);
  REQUIRE_THAT(bad.value.at("error").get<std::string>(), Catch::Contains("'number__near'"));
}

TEST_CASE("count answers a collection's size under its filters, ignoring limit and offset") {
  World w;
  REQUIRE(w.get_ok("builds", json{{"count", true}, {"limit", 1}, {"offset", 1}}) ==
          json{{"total", 3}});
  REQUIRE(w.get_ok("builders/unit/builds", json{{"count", true}}) == json{{"total", 2}});
  REQUIRE(w.get_ok("builds", json{{"query_string", "complete=false&limit=0"}, {"count", true}}) ==
          json{{"total", 1}});
  REQUIRE(w.get("builds", json{{"count", "yes"}}).status == KILN_ERR_INVALID_ARGUMENT);
}

TEST_CASE("a field name the resource does not have is refused, as Buildbot's REST API does") {
  World w;
  auto listed = w.get("builds", json{{"fields", {"buildid", "colour"}}});
  REQUIRE(listed.status == KILN_ERR_INVALID_ARGUMENT);
  REQUIRE_THAT(listed.value.at("error").get<std::string>(), Catch::Contains("'colour'"));
  auto single = w.get("builders/unit", json{{"fields", {"colour"}}});
  REQUIRE(single.status == KILN_ERR_INVALID_ARGUMENT);
}

TEST_CASE("a raw log read with offset and limit answers only those lines, stripped") {
  World w;
  const std::string path = "logs/" + std::to_string(w.stdio) + "/raw";
  auto page = w.get_ok(path, json{{"offset", 1}, {"limit", 2}});
  REQUIRE(page.at("filename") == "unit_build_1_step_compile_log_stdio.txt");
  REQUIRE(page.at("content") == "line 1\nline 2\n");
  REQUIRE(w.get_ok(path, json{{"offset", 4}, {"limit", 10}}).at("content") == "warning: x\n");
  REQUIRE(w.get_ok(path, json{{"offset", 9}, {"limit", 10}}).at("content") == "");
}
