// JSON-RPC control calls and the /ws live stream of the web plugin, over
// real HTTP and a real WebSocket against a master running real builds.

#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <string>

using kiln::testing::HttpReply;
using kiln::testing::LiveConnection;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

json rpc_result(const HttpReply& reply) {
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  json value = reply.json();
  REQUIRE(value["jsonrpc"] == "2.0");
  REQUIRE(value["id"] == 1);
  return value["result"];
}

void require_rpc_error(const HttpReply& reply, unsigned status, int code, const std::string& fragment) {
  INFO(reply.body);
  REQUIRE(reply.status == status);
  json value = reply.json();
  REQUIRE(value["error"]["code"] == code);
  REQUIRE_THAT(value["error"]["message"].get<std::string>(), Catch::Contains(fragment));
}

}  // namespace

TEST_CASE("force through the force scheduler, by builder name or by builderid, runs the build") {
  WebMaster web;
  json build = web.force_and_finish("lint");
  REQUIRE(build["results"] == 2);

  const auto unit_id = web.get("/api/v2/builders/unit").json()["builders"][0]["builderid"];
  const size_t before = web.master().finished_builds().size();
  json result = rpc_result(web.rpc("/api/v2/forceschedulers/force", "force",
                                   {{"builderid", unit_id}, {"reason", "from the form"}}));
  REQUIRE(result["bsid"].is_number());
  REQUIRE(web.master().run_until([&] { return web.master().finished_builds().size() > before; }));
  json unit_builds = web.get("/api/v2/builders/unit/builds").json();
  REQUIRE(unit_builds["builds"].size() == 1);
  json buildset = web.get("/api/v2/buildsets/" + result["bsid"].dump()).json()["buildsets"][0];
  REQUIRE_THAT(buildset["reason"].get<std::string>(), Catch::Contains("from the form"));

  require_rpc_error(web.rpc("/api/v2/forceschedulers/nosuch", "force", {{"builderNames", {"unit"}}}),
                    404, -32600, "nosuch");

  // The form's description, as Buildbot's forceschedulers resource.
  json form = web.get("/api/v2/forceschedulers/force").json();
  INFO(form.dump());
  REQUIRE(form["forceschedulers"][0]["name"] == "force");
  REQUIRE(form["forceschedulers"][0]["builder_names"] == json::array({"unit", "lint", "slow"}));
  REQUIRE(form["forceschedulers"][0]["all_fields"][1]["name"] == "reason");
  REQUIRE(web.get("/api/v2/forceschedulers/nosuch").status == 404);
}

TEST_CASE("stop a running build, cancel a waiting request, and rebuild, over JSON-RPC") {
  WebMaster web;
  auto& master = web.master();
  auto rpc = [&](const std::string& target, const std::string& method, const json& params) {
    return web.rpc(target, method, params);
  };
  auto get = [&](const std::string& target) { return web.get(target).json(); };

  rpc_result(rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}}));
  rpc_result(rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}}));
  REQUIRE(master.run_until([&] { return get("/api/v2/builds?complete=false")["builds"].size() == 1; }));
  json pending = get("/api/v2/buildrequests?claimed=false");
  REQUIRE(pending["buildrequests"].size() == 1);
  const auto waiting = pending["buildrequests"][0]["buildrequestid"];

  json cancelled = rpc_result(rpc("/api/v2/buildrequests/" + waiting.dump(), "cancel", {{"reason", "not needed"}}));
  REQUIRE(cancelled["cancelled"] == waiting);
  REQUIRE(get("/api/v2/buildrequests/" + waiting.dump())["buildrequests"][0]["results"] == 6);

  // Stopped through the nested path, which is resolved to the build's id.
  rpc_result(rpc("/api/v2/builders/slow/builds/1", "stop", {{"reason", "enough"}}));
  REQUIRE(master.run_until([&] { return master.finished_builds().size() == 1; }));
  json stopped = get("/api/v2/builders/slow/builds/1")["builds"][0];
  REQUIRE(stopped["complete"] == true);
  REQUIRE(stopped["results"] == 6);
  require_rpc_error(rpc("/api/v2/builds/" + stopped["buildid"].dump(), "stop", json::object()), 404,
                    -32600, "not running");

  rpc_result(rpc("/api/v2/builds/" + stopped["buildid"].dump(), "rebuild", json::object()));
  REQUIRE(master.run_until([&] { return get("/api/v2/builders/slow/builds/2")["builds"].size() == 1; }));
  rpc_result(rpc("/api/v2/builders/slow/builds/2", "stop", json::object()));
  REQUIRE(master.run_until([&] { return master.finished_builds().size() == 2; }));
}

TEST_CASE("malformed JSON-RPC calls get Buildbot's error codes and change nothing") {
  WebMaster web;
  auto post = [&](const std::string& body) {
    return web.off_loop([&] { return kiln::testing::HttpConnection(web.port()).request("POST", "/api/v2/builds/1", body); });
  };
  require_rpc_error(post("{not json"), 400, -32700, "JSON");
  require_rpc_error(post("[]"), 400, -32600, "batch");
  require_rpc_error(post(R"({"method": "stop", "id": 1})"), 400, -32600, "jsonrpc");
  require_rpc_error(post(R"({"jsonrpc": "2.0", "method": 3, "id": 1})"), 400, -32600, "method");
  require_rpc_error(post(R"({"jsonrpc": "2.0", "method": "stop", "params": [1], "id": 1})"), 400, -32602, "params");
  require_rpc_error(web.rpc("/api/v2/builds/1", "explode"), 501, -32601, "explode");
  require_rpc_error(web.rpc("/api/v2/builders/unit/builds/7", "stop"), 404, -32600, "7");
  REQUIRE(web.get("/api/v2/builds").json()["builds"].empty());
}

TEST_CASE("a WebSocket client consuming a path gets the events of builds as they happen") {
  WebMaster web;
  auto live = web.off_loop([&] { return std::make_shared<LiveConnection>(web.port()); });
  auto exchange = [&](const json& frame) {
    return web.off_loop([&] {
      live->send(frame);
      return live->receive();
    });
  };
  REQUIRE(exchange({{"cmd", "startConsuming"}, {"path", "builds/*/*"}, {"_id", 1}}) ==
          json{{"_id", 1}, {"code", 200}, {"msg", "OK"}});
  REQUIRE(exchange({{"cmd", "ping"}, {"_id", 2}}) == json{{"_id", 2}, {"code", 200}, {"msg", "pong"}});
  auto unknown = exchange({{"cmd", "explode"}, {"_id", 3}});
  REQUIRE((*unknown)["code"] == 404);
  auto not_consumed = exchange({{"cmd", "stopConsuming"}, {"path", "steps/*/*"}, {"_id", 4}});
  REQUIRE((*not_consumed)["code"] == 400);
  auto no_id = exchange({{"cmd", "ping"}});
  REQUIRE((*no_id)["code"] == 400);

  json build = web.force_and_finish("unit");
  // builds/N/new then builds/N/finished; no step or log events.
  auto first = web.off_loop([&] { return live->receive(); });
  auto second = web.off_loop([&] { return live->receive(); });
  REQUIRE(first);
  REQUIRE(second);
  const std::string key = "builds/" + build["buildid"].dump();
  REQUIRE((*first)["k"] == key + "/new");
  REQUIRE((*first)["m"]["buildid"] == build["buildid"]);
  REQUIRE((*second)["k"] == key + "/finished");
  REQUIRE((*second)["m"]["results"] == 0);

  REQUIRE(exchange({{"cmd", "stopConsuming"}, {"path", "builds/*/*"}, {"_id", 5}}) ==
          json{{"_id", 5}, {"code", 200}, {"msg", "OK"}});
  web.force_and_finish("lint");
  // Nothing was consumed meanwhile: the next frame is the answer to this.
  REQUIRE(exchange({{"cmd", "ping"}, {"_id", 6}}) == json{{"_id", 6}, {"code", 200}, {"msg", "pong"}});
}

TEST_CASE("a port that is taken stops the master's start with the address named") {
  const uint16_t port = kiln::testing::free_port();
  WebMaster first(port);
  kiln::testing::SchedulerMaster second(kiln::testing::web_master_yaml(port));
  const std::string error = second.engine().start();
  REQUIRE_THAT(error, Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(port)));
  REQUIRE_THAT(error, Catch::Contains("web"));
}

TEST_CASE("worker ping and pause and a master stop over JSON-RPC reach the engine") {
  WebMaster web;
  json pong = rpc_result(web.rpc("/api/v2/workers/w2", "ping"));
  REQUIRE(pong["ok"] == true);
  rpc_result(web.rpc("/api/v2/workers/w2", "pause"));
  REQUIRE(web.get("/api/v2/workers/w2").json()["workers"][0]["paused"] == true);
  rpc_result(web.rpc("/api/v2/workers/w2", "unpause"));
  REQUIRE(web.get("/api/v2/workers/w2").json()["workers"][0]["paused"] == false);

  const auto masterid = web.get("/api/v2/masters").json()["masters"][0]["masterid"];
  json stopping = rpc_result(web.rpc("/api/v2/masters/" + masterid.dump(), "stop"));
  REQUIRE(stopping["clean_shutdown"] == true);
  REQUIRE(stopping["running_builds"] == 0);
}
