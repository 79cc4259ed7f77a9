#include "cli/control_client.h"
#include "master/control_server.h"
#include "util/event_loop.h"

#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <future>
#include <thread>

using namespace kiln::cli;
using kiln::master::ControlReply;
using kiln::master::ControlServer;
using kiln::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Master {
  kiln::util::EventLoop loop;
  ControlServer server;
  std::thread thread;

  explicit Master(const fs::path& dir, kiln::master::ControlHandler handler)
      : server(loop.io(), std::move(handler)) {
    REQUIRE(server.start(dir) == "");
    thread = std::thread([this] { loop.run(); });
  }
  ~Master() {
    std::promise<void> stopped;
    loop.post([&] {
      server.stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
    loop.stop();
    thread.join();
  }
};

std::string control_error(const fs::path& dir, std::chrono::milliseconds timeout) {
  try {
    control_request(dir, json{{"op", "status"}}, timeout);
  } catch (const ControlError& e) {
    return e.what();
  }
  return "no error";
}

template <class Translate>
std::string usage_error(Translate translate, const Args& args) {
  try {
    translate(args);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("a control request reaches the master and its response comes back") {
  TempDir dir;
  json seen;
  Master master(dir.path(), [&](const json& request, ControlReply reply) {
    seen = request;
    reply(json{{"builders", json::array()}, {"workers", json::array()}});
  });
  auto response = control_request(dir.path(), json{{"op", "status"}});
  REQUIRE(response == json{{"builders", json::array()}, {"workers", json::array()}});
  REQUIRE(seen == json{{"op", "status"}});
}

TEST_CASE("without a running master the client says so and how to start one") {
  TempDir dir;
  const std::string expected = "no master is running in " + dir.path().string() +
                               " (no control socket); start it with `kiln start " +
                               dir.path().string() + "`";
  REQUIRE(control_error(dir.path(), std::chrono::seconds(1)) == expected);

  {
    Master master(dir.path(), [](const json&, ControlReply reply) { reply(json::object()); });
  }
  // The master is gone (its socket file too): same message.
  REQUIRE(control_error(dir.path(), std::chrono::seconds(1)) == expected);
}

TEST_CASE("a master that does not answer in time is reported after the timeout") {
  TempDir dir;
  std::promise<ControlReply> held;
  Master master(dir.path(), [&](const json&, ControlReply reply) { held.set_value(reply); });
  auto started = std::chrono::steady_clock::now();
  REQUIRE(control_error(dir.path(), std::chrono::milliseconds(200)) ==
          "the master in " + dir.path().string() + " did not answer within 200 ms");
  REQUIRE(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
  // Answering after the client left goes nowhere, harmlessly.
  auto late = held.get_future().get();
  late(json::object());
}

TEST_CASE("kiln data flags become the data API's JSON query") {
  auto call = data_call({"/srv/m", "builders/unit/builds", "--field", "number", "--field=results",
                         "--limit", "5", "--offset", "10", "--order", "-number", "--filter",
                         "complete=false", "--filter", "number__gt=3", "--filter",
                         "state_string=a b&c", "--property", "*"});
  REQUIRE(call.master_dir == "/srv/m");
  REQUIRE(call.request.at("op") == "data_get");
  REQUIRE(call.request.at("path") == "builders/unit/builds");
  const auto& q = call.request.at("query");
  REQUIRE(q.at("fields") == json::array({"number", "results"}));
  REQUIRE(q.at("limit") == 5);
  REQUIRE(q.at("offset") == 10);
  REQUIRE(q.at("order") == json::array({"-number"}));
  REQUIRE(q.at("property") == json::array({"*"}));
  REQUIRE(q.at("filters") ==
          json::array({json::array({"complete", "eq", json::array({false})}),
                       json::array({"number", "gt", json::array({3})}),
                       json::array({"state_string", "eq", json::array({"a b&c"})})}));

  REQUIRE(data_call({"d", "builders"}).request.at("query") == json::object());
}

TEST_CASE("kiln data rejects malformed flags naming them") {
  REQUIRE_THAT(usage_error(data_call, {"d", "builds", "--limit", "many"}),
               Catch::Contains("'limit'"));
  REQUIRE_THAT(usage_error(data_call, {"d", "builds", "--filter", "number__near=3"}),
               Catch::Contains("number__near"));
  REQUIRE_THAT(usage_error(data_call, {"d", "builds", "--filter", "nothing"}),
               Catch::Contains("--filter takes"));
  REQUIRE_THAT(usage_error(data_call, {"d", "builds", "--colour", "red"}),
               Catch::Contains("unknown option --colour"));
  REQUIRE_THAT(usage_error(data_call, {"d"}), Catch::Contains("DIR PATH"));
  REQUIRE_THAT(usage_error(data_call, {"d", "builds", "--limit"}),
               Catch::Contains("--limit needs a value"));
}

TEST_CASE("kiln force asks the named or the first force scheduler for the builder") {
  auto call = force_call({"m", "unit", "--scheduler", "manual", "--reason", "try it", "--branch",
                          "dev", "--revision", "abc", "--owner", "bob", "--property", "deploy=yes",
                          "--property", "eq=a=b"});
  REQUIRE(call.request == json{{"op", "control"},
                               {"path", "forceschedulers/manual"},
                               {"action", "force"},
                               {"args",
                                {{"builderNames", {"unit"}},
                                 {"reason", "try it"},
                                 {"branch", "dev"},
                                 {"revision", "abc"},
                                 {"owner", "bob"},
                                 {"properties", {{"deploy", "yes"}, {"eq", "a=b"}}}}}});

  auto plain = force_call({"m", "lint"});
  REQUIRE(plain.request.at("path") == "forceschedulers/");
  REQUIRE(plain.request.at("args") ==
          json{{"builderNames", {"lint"}}, {"properties", json::object()}});
  REQUIRE_THAT(usage_error(force_call, {"m", "lint", "--property", "novalue"}),
               Catch::Contains("NAME=VALUE"));
}

TEST_CASE("kiln sendchange describes the change with files from its arguments") {
  TempDir dir;
  kiln::testing::write_file(dir / "msg.txt", "from a file\n");
  auto call = sendchange_call({"m",
                               "--who",
                               "alice",
                               "--branch",
                               "main",
                               "--revision",
                               "r1",
                               "--repository",
                               "https://x/r.git",
                               "--project",
                               "p",
                               "--category",
                               "c",
                               "--codebase",
                               "cb",
                               "--logfile",
                               (dir / "msg.txt").string(),
                               "--property",
                               "k=v",
                               "--when",
                               "1700000000.5",
                               "src/a.c",
                               "--",
                               "-odd-name"});
  REQUIRE(call.request == json{{"op", "change_add"},
                               {"change",
                                {{"author", "alice"},
                                 {"branch", "main"},
                                 {"revision", "r1"},
                                 {"repository", "https://x/r.git"},
                                 {"project", "p"},
                                 {"category", "c"},
                                 {"codebase", "cb"},
                                 {"comments", "from a file\n"},
                                 {"files", {"src/a.c", "-odd-name"}},
                                 {"properties", {{"k", "v"}}},
                                 {"when_timestamp", 1700000000}}}});
  REQUIRE_THAT(
      usage_error(sendchange_call, {"m", "--who", "a", "--comments", "x", "--logfile", "f"}),
      Catch::Contains("not both"));
  REQUIRE_THAT(usage_error(sendchange_call, {"m", "--who", "a", "--when", "soon"}),
               Catch::Contains("--when"));
}

TEST_CASE("kiln try turns its flags into a try job with Buildbot's option names too") {
  TempDir dir;
  kiln::testing::write_file(dir / "fix.diff", "--- a/x\n+++ b/x\n");
  TryCall call = try_args({"--master", "ci:8031", "--username", "ann", "--passwd", "pw", "--builder", "a",
                           "--builder", "b", "--branch", "main", "--baserev", "abc", "--patchlevel", "0",
                           "--diff", (dir / "fix.diff").string(), "--property", "k=v", "--who", "Ann",
                           "--comment", "c", "--wait"});
  CHECK(call.master == "ci:8031");
  CHECK(call.auth == "ann:pw");
  CHECK(call.wait);
  CHECK(call.vc.empty());
  CHECK(call.job == json{{"builders", {"a", "b"}},
                         {"branch", "main"},
                         {"baserev", "abc"},
                         {"who", "Ann"},
                         {"comment", "c"},
                         {"properties", {{"k", "v"}}},
                         {"patch", {{"level", 0}, {"body", "--- a/x\n+++ b/x\n"}}}});
  CHECK(try_args({"--dryrun", "--vc", "git"}).vc == "git");

  const Args login = {"--master", "ci:8031", "--user", "u", "--password", "p"};
  auto with = [&](Args more) {
    Args all = login;
    all.insert(all.end(), more.begin(), more.end());
    return all;
  };
  CHECK_THAT(usage_error(try_args, with({})), Catch::Contains("--diff FILE") && Catch::Contains("--vc git"));
  CHECK_THAT(usage_error(try_args, with({"--vc", "svn"})), Catch::Contains("only git"));
  CHECK_THAT(usage_error(try_args, with({"--vc", "git", "--patchlevel", "x"})), Catch::Contains("--patchlevel"));
  CHECK_THAT(usage_error(try_args, with({"--vc", "git", "--wait=yes"})), Catch::Contains("takes no value"));
  CHECK_THAT(usage_error(try_args, {"--user", "u", "--password", "p", "--vc", "git"}),
             Catch::Contains("--master HOST:PORT"));
  CHECK_THAT(usage_error(try_args, {"--master", "ci:1", "--vc", "git"}), Catch::Contains("--user and --password"));
}

TEST_CASE("kiln poll asks every change source or the one named") {
  CHECK(poll_call({"m"}).request ==
        json{{"op", "control"}, {"path", "changesources/"}, {"action", "poll"}, {"args", json::object()}});
  CHECK(poll_call({"m", "repo"}).request["path"] == "changesources/repo");
  CHECK_THAT(usage_error(poll_call, {"m", "a", "b"}), Catch::Contains("DIR [CHANGE_SOURCE]"));
}

TEST_CASE("stop-build, cancel and rebuild address builds and build requests by id") {
  REQUIRE(stop_build_call({"m", "12", "--reason", "oops"}).request ==
          json{{"op", "control"},
               {"path", "builds/12"},
               {"action", "stop"},
               {"args", {{"reason", "oops"}}}});
  REQUIRE(cancel_call({"m", "7"}).request == json{{"op", "control"},
                                                  {"path", "buildrequests/7"},
                                                  {"action", "cancel"},
                                                  {"args", json::object()}});
  REQUIRE(rebuild_call({"m", "3"}).request == json{{"op", "control"},
                                                   {"path", "builds/3"},
                                                   {"action", "rebuild"},
                                                   {"args", json::object()}});
  REQUIRE_THAT(usage_error(stop_build_call, {"m", "twelve"}), Catch::Contains("BUILDID"));
  REQUIRE_THAT(usage_error(cancel_call, {"m", "0"}), Catch::Contains("BUILDREQUESTID"));
  REQUIRE(status_call({"m"}).request == json{{"op", "status"}});
  REQUIRE(reconfig_call({"m"}).request == json{{"op", "reconfig"}});
  REQUIRE_THAT(usage_error(status_call, {"m", "extra"}), Catch::Contains("expected DIR"));
}

TEST_CASE("status prints builders and workers as tables with results in words") {
  json status{
      {"builders",
       {{{"name", "unit"},
         {"pending", 2},
         {"running", {{{"number", 8}, {"worker", "w1"}, {"step", "test"}, {"started_at", 1000}}}},
         {"last", {{"number", 7}, {"results", 2}, {"complete_at", 400}}}},
        {{"name", "lint"}, {"pending", 0}, {"running", json::array()}, {"last", nullptr}}}},
      {"workers",
       {{{"name", "w1"}, {"connected", true}, {"running", 1}, {"max_builds", 2}},
        {{"name", "w2"}, {"connected", false}, {"running", 0}, {"max_builds", nullptr}}}}};
  REQUIRE(format_status(status, 1130) ==
          "BUILDER  PENDING  RUNNING                 LAST\n"
          "unit     2        #8 on w1, test, 2m 10s  #7 failure, 12m 10s ago\n"
          "lint     0        -                       -\n"
          "\n"
          "WORKER  CONNECTED  BUILDS\n"
          "w1      yes        1/2\n"
          "w2      no         0\n");
  REQUIRE(format_status(json::object(), 0) == "no builders\n\nno workers\n");
}

TEST_CASE("status shows a builder held back by a lock and the locks in use with their waiters") {
  json status{{"builders", {{{"name", "db-tests"}, {"pending", 1}, {"waiting_for_lock", "db"}, {"running", json::array()}}}},
              {"workers", json::array()},
              {"locks",
               {{{"name", "db"}, {"max_count", 1}, {"exclusive", true}, {"counting", 0}, {"waiting", {"unit/4/migrate"}}},
                {{"name", "cpu"}, {"worker", "w1"}, {"max_count", 4}, {"exclusive", false}, {"counting", 3},
                 {"waiting", json::array()}}}}};
  REQUIRE(format_status(status, 0) ==
          "BUILDER   PENDING                    RUNNING  LAST\n"
          "db-tests  1 (waiting for lock 'db')  -        -\n"
          "\n"
          "no workers\n"
          "\n"
          "LOCK       HELD       WAITING\n"
          "db         exclusive  unit/4/migrate\n"
          "cpu on w1  3/4        -\n");
}

TEST_CASE("result codes print as Buildbot's words") {
  const char* words[] = {"success",   "warnings", "failure",  "skipped",
                         "exception", "retry",    "cancelled"};
  for (int i = 0; i < 7; ++i) REQUIRE(result_word(i) == words[i]);
  REQUIRE(result_word(nullptr) == "-");
  REQUIRE(result_word(42) == "result 42");
}

TEST_CASE("a submitted buildset is reported with its request per builder") {
  REQUIRE(format_buildset(json{{"bsid", 5}, {"brids", {{"unit", 7}}}}) ==
          "buildset 5 submitted: request 7 on builder 'unit'");
  REQUIRE(format_buildset(json{{"bsid", 6}, {"brids", {{"a", 1}, {"b", 2}}}}) ==
          "buildset 6 submitted: request 1 on builder 'a', request 2 on builder 'b'");
}
