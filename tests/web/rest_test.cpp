// The web plugin's REST API over real HTTP against a real master whose
// builds ran on a local worker: Buildbot's envelope, nesting, log
// contents and raw downloads streamed in chunks, query parameters, errors
// and keep-alive.

#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using kiln::testing::HttpConnection;
using kiln::testing::HttpReply;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

json ok_json(const HttpReply& reply) {
  INFO(reply.status << " " << reply.body.substr(0, 500));
  REQUIRE(reply.status == 200);
  REQUIRE(reply.headers.at("content-type") == "application/json");
  json value = reply.json();
  REQUIRE(value.is_object());
  return value;
}

std::vector<std::string> names(const json& items, const char* field = "name") {
  std::vector<std::string> out;
  for (const auto& item : items) out.push_back(item.at(field).get<std::string>());
  return out;
}

std::vector<int64_t> numbers(const json& items, const char* field) {
  std::vector<int64_t> out;
  for (const auto& item : items) out.push_back(item.at(field).get<int64_t>());
  return out;
}

void require_error(const HttpReply& reply, unsigned status, const std::string& fragment) {
  INFO(reply.body);
  REQUIRE(reply.status == status);
  json value = reply.json();
  REQUIRE(value.is_object());
  REQUIRE_THAT(value.at("error").get<std::string>(), Catch::Contains(fragment));
}

std::string seq(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += std::to_string(i) + "\n";
  return out;
}

}  // namespace

TEST_CASE("builders are served in Buildbot's envelope, addressed by id or by name") {
  WebMaster web;
  json all = ok_json(web.get("/api/v2/builders"));
  REQUIRE(names(all["builders"]) == std::vector<std::string>{"unit", "lint", "slow"});
  REQUIRE(all["meta"] == json{{"total", 3}});
  const json& unit = all["builders"][0];
  for (const char* field : {"builderid", "name", "masterids", "description", "tags"}) {
    INFO(field);
    CHECK(unit.contains(field));
  }
  REQUIRE(unit["tags"] == json::array({"fast"}));

  json by_name = ok_json(web.get("/api/v2/builders/unit"));
  json by_id = ok_json(web.get("/api/v2/builders/" + unit["builderid"].dump()));
  REQUIRE(by_name == json{{"builders", {unit}}, {"meta", json::object()}});
  REQUIRE(by_id == by_name);
}

TEST_CASE("a forced build is served with its steps, logs, contents and raw log") {
  WebMaster web;
  json build = web.force_and_finish("unit");
  REQUIRE(build["complete"] == true);
  REQUIRE(build["results"] == 0);
  REQUIRE(build["number"] == 1);

  json builds = ok_json(web.get("/api/v2/builders/unit/builds"));
  REQUIRE(numbers(builds["builds"], "buildid") == std::vector<int64_t>{build["buildid"].get<int64_t>()});
  json same = ok_json(web.get("/api/v2/builders/unit/builds/1"));
  REQUIRE(same["builds"][0]["buildid"] == build["buildid"]);

  const std::string steps_path = "/api/v2/builds/" + build["buildid"].dump() + "/steps";
  json steps = ok_json(web.get(steps_path));
  REQUIRE(names(steps["steps"]) == std::vector<std::string>{"hello", "count"});
  REQUIRE(steps["meta"]["total"] == 2);
  REQUIRE(ok_json(web.get(steps_path + "/hello"))["meta"] == json::object());
  for (const auto& step : steps["steps"]) {
    CHECK(step["results"] == 0);
    CHECK(step["complete"] == true);
  }

  // The same log through the nested path and by id.
  json logs = ok_json(web.get("/api/v2/builders/unit/builds/1/steps/hello/logs"));
  REQUIRE(logs["logs"].size() == 1);
  const json log = logs["logs"][0];
  REQUIRE(log["slug"] == "stdio");
  REQUIRE(log["type"] == "s");
  json contents = ok_json(web.get("/api/v2/logs/" + log["logid"].dump() + "/contents"));
  const json chunk = contents["logchunks"][0];
  REQUIRE(chunk["logid"] == log["logid"]);
  REQUIRE(chunk["firstline"] == 0);
  const std::string text = chunk["content"].get<std::string>();
  // Stream letters stay in contents: o for stdout, e for stderr.
  REQUIRE_THAT(text, Catch::Contains("oline 1\noline 2\n"));
  REQUIRE_THAT(text, Catch::Contains("eoops\n"));

  HttpReply raw = web.get("/api/v2/builders/unit/builds/1/steps/hello/logs/stdio/raw");
  REQUIRE(raw.status == 200);
  REQUIRE(raw.headers.at("content-type") == "text/plain; charset=utf-8");
  REQUIRE(raw.headers.at("content-disposition") ==
          "attachment; filename=unit_build_1_step_hello_log_stdio.txt");
  REQUIRE_THAT(raw.body, Catch::Contains("line 1\nline 2\n"));
  REQUIRE_THAT(raw.body, Catch::Contains("oops\n"));
  REQUIRE(raw.body.find("oline") == std::string::npos);
}

TEST_CASE("a log longer than one page streams in chunks, whole and in order") {
  WebMaster web;
  json build = web.force_and_finish("unit");
  const std::string log_path = "/api/v2/builds/" + build["buildid"].dump() + "/steps/count/logs/stdio";
  // The command's own lines come between the header lines the worker
  // writes (the command before, the elapsed time after).
  HttpReply raw = web.get(log_path + "/raw");
  REQUIRE(raw.status == 200);
  REQUIRE(raw.chunked);
  const std::string expected = seq(1, 5000);
  REQUIRE(raw.body.find("\n" + expected) != std::string::npos);
  REQUIRE_THAT(raw.body, Catch::Contains("\nelapsedTime="));

  json whole = ok_json(web.get(log_path + "/contents"));
  const std::string content = whole["logchunks"][0]["content"].get<std::string>();
  const size_t first = content.find("\no1\n");
  REQUIRE(first != std::string::npos);
  REQUIRE_THAT(content, Catch::Contains("\no4999\no5000\nh"));

  // offset and limit count lines, as Buildbot's logchunks do.
  const auto header_lines = std::count(content.begin(), content.begin() + first + 1, '\n');
  json page = ok_json(web.get(log_path + "/contents?offset=" + std::to_string(header_lines + 2499) +
                              "&limit=3"));
  REQUIRE(page["logchunks"][0]["firstline"] == header_lines + 2499);
  REQUIRE(page["logchunks"][0]["content"] == "o2500\no2501\no2502\n");
}

TEST_CASE("query parameters filter, order, page and project, and meta.total counts the whole selection") {
  WebMaster web;
  web.force_and_finish("unit");
  web.force_and_finish("lint");
  web.force_and_finish("unit");
  const auto unit_id = ok_json(web.get("/api/v2/builders/unit"))["builders"][0]["builderid"];

  json newest = ok_json(web.get("/api/v2/builds?order=-buildid&limit=1"));
  REQUIRE(newest["builds"].size() == 1);
  REQUIRE(newest["builds"][0]["number"] == 2);
  REQUIRE(newest["meta"]["total"] == 3);

  json second_page = ok_json(web.get("/api/v2/builds?order=-buildid&limit=1&offset=1"));
  REQUIRE(second_page["builds"][0]["builderid"] != unit_id);
  REQUIRE(second_page["meta"]["total"] == 3);

  json unit_builds = ok_json(web.get("/api/v2/builds?builderid=" + unit_id.dump() + "&order=-number"));
  REQUIRE(numbers(unit_builds["builds"], "number") == std::vector<int64_t>{2, 1});

  json failed = ok_json(web.get("/api/v2/builds?complete=true&results__ne=0"));
  REQUIRE(failed["builds"].size() == 1);
  REQUIRE(failed["builds"][0]["results"] == 2);

  REQUIRE(numbers(ok_json(web.get("/api/v2/builders/unit/builds?number__gt=1"))["builds"], "number") ==
          std::vector<int64_t>{2});
  REQUIRE(names(ok_json(web.get("/api/v2/builders?name__eq=lint"))["builders"]) ==
          std::vector<std::string>{"lint"});
  REQUIRE(names(ok_json(web.get("/api/v2/builders?name__contains=in"))["builders"]) ==
          std::vector<std::string>{"lint"});
  REQUIRE(ok_json(web.get("/api/v2/builds?complete=false"))["builds"].empty());

  json projected = ok_json(web.get("/api/v2/builds?field=buildid&field=number"));
  REQUIRE(projected["builds"].size() == 3);
  for (const auto& b : projected["builds"]) {
    REQUIRE(b.size() == 2);
    REQUIRE(b.contains("buildid"));
    REQUIRE(b.contains("number"));
  }

  // The other main collections answer in the same envelope.
  for (const char* type : {"buildrequests", "buildsets", "workers", "sourcestamps", "changes"}) {
    INFO(type);
    json all = ok_json(web.get(std::string("/api/v2/") + type));
    REQUIRE(all.contains(type));
    REQUIRE(all["meta"]["total"] == all[type].size());
  }
  REQUIRE(ok_json(web.get("/api/v2/buildrequests"))["buildrequests"].size() == 3);
  REQUIRE(ok_json(web.get("/api/v2/workers/w1"))["workers"][0]["name"] == "w1");
  json props = ok_json(web.get("/api/v2/builds/1/properties"));
  REQUIRE(props["properties"][0]["buildername"][0] == "unit");
  REQUIRE(ok_json(web.get("/api/v2/buildsets/1/properties"))["properties"][0].contains("owner"));
}

TEST_CASE("unknown paths answer 404 and bad queries 400, as JSON naming the problem") {
  WebMaster web;
  require_error(web.get("/api/v2/nothing"), 404, "nothing");
  require_error(web.get("/api/v2/builders/999"), 404, "999");
  require_error(web.get("/api/v2/builders/nope/builds"), 404, "nope");
  require_error(web.get("/api/v2/builds/1/steps/x/logs"), 404, "build");
  require_error(web.get("/api/v2/builds?limit=ten"), 400, "limit");
  require_error(web.get("/api/v2/builds?colour=red"), 400, "colour");
  require_error(web.get("/api/v2/builds?field=colour"), 400, "colour");
  require_error(web.get("/api/v2/builds?number__near=1"), 400, "number__near");
  require_error(web.get("/api/v2/builds?order=-colour"), 400, "colour");
  require_error(web.get("/api/v2/logs/1/contents?limit=-1"), 400, "limit");
  HttpReply put = web.off_loop([&] { return HttpConnection(web.port()).request("PUT", "/api/v2/builds", "{}"); });
  REQUIRE(put.status == 405);
}

TEST_CASE("one connection carries many requests (HTTP/1.1 keep-alive)") {
  WebMaster web;
  auto replies = web.off_loop([&] {
    HttpConnection connection(web.port());
    std::vector<HttpReply> out;
    for (const char* target : {"/api/v2/builders", "/api/v2/nothing", "/api/v2/workers", "/"}) {
      out.push_back(connection.get(target));
      if (!connection.open()) break;
    }
    return out;
  });
  REQUIRE(replies.size() == 4);
  REQUIRE(replies[0].status == 200);
  REQUIRE(replies[1].status == 404);
  REQUIRE(names(replies[2].json()["workers"]) == std::vector<std::string>{"w1", "w2"});
  REQUIRE(replies[3].status == 200);
}

TEST_CASE("pages are HTML rendered by the server and unknown ones answer 404") {
  WebMaster web;
  HttpReply home = web.get("/");
  REQUIRE(home.status == 200);
  REQUIRE(home.headers.at("content-type") == "text/html; charset=utf-8");
  REQUIRE_THAT(home.body, Catch::Contains("href=\"/builders/"));
  REQUIRE_THAT(web.get("/builders/unit").body, Catch::Contains("<h1>Builder unit</h1>"));
  HttpReply missing = web.get("/no/such/page");
  REQUIRE(missing.status == 404);
  REQUIRE_THAT(missing.body, Catch::Contains("/no/such/page"));
}

TEST_CASE("oversized bodies get 413 and oversized headers 431 before anything is read further") {
  WebMaster web;
  // A Content-Length over 1 MiB is refused from the header alone.
  HttpReply body = web.off_loop([&] {
    return HttpConnection(web.port()).raw(
        "POST /api/v2/builds/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 2000000\r\n\r\n");
  });
  require_error(body, 413, "1048576");
  HttpReply header = web.off_loop([&] {
    return HttpConnection(web.port()).raw("GET /api/v2/builders HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " +
                                          std::string(20000, 'x') + "\r\n\r\n");
  });
  require_error(header, 431, "16384");
  HttpReply garbage = web.off_loop([&] { return HttpConnection(web.port()).raw("NOT HTTP AT ALL\r\n\r\n"); });
  REQUIRE(garbage.status == 400);
  REQUIRE(web.get("/api/v2/builds").json()["builds"].empty());
}

TEST_CASE("paths with dot segments answer 404 however they are spelled") {
  WebMaster web;
  for (const char* target : {"/../etc/passwd", "/builders/../../etc/passwd", "/builders/..%2F..%2Fetc%2Fpasswd",
                             "/api/v2/../../etc/passwd", "/builders/%2e%2e", "/./builders", "/builders/..%5C..%5Cwin.ini"}) {
    INFO(target);
    HttpReply reply = web.get(target);
    REQUIRE(reply.status == 404);
    REQUIRE(reply.body.find("root:") == std::string::npos);
  }
}

TEST_CASE("malformed query parameters answer 400 naming the parameter and its problem") {
  WebMaster web;
  require_error(web.get("/api/v2/builds?offset=-3"), 400, "offset");
  require_error(web.get("/api/v2/builds?limit="), 400, "limit");
  require_error(web.get("/api/v2/builds?complete=maybe"), 400, "complete");
  require_error(web.get("/api/v2/builds?number__gt=x"), 400, "number");
  require_error(web.get("/api/v2/logs/1/contents?offset=x"), 400, "offset");
}
