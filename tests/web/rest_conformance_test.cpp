// REST conformance: for real builds (a success, a failure, a change through
// the base hook), every resource Kiln serves under /api/v2 is compared with
// the field lists of Buildbot's REST specification
// (shared/reference/buildbot-rest-api.md; types as Buildbot's data layer
// declares them): each listed field is present, with that JSON type.

#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

// A field's JSON type: "int", "string", "bool", "list", "object"; a
// trailing '?' also allows null (Buildbot's NoneOk).
using Fields = std::vector<std::pair<std::string, std::string>>;

// Buildbot's resource types: their fields and types.
const std::map<std::string, Fields>& buildbot_types() {
  static const std::map<std::string, Fields> types = {
      {"builders",
       {{"builderid", "int"}, {"name", "string"}, {"masterids", "list"}, {"description", "string?"},
        {"description_format", "string?"}, {"description_html", "string?"}, {"projectid", "int?"},
        {"tags", "list"}}},
      {"builds",
       {{"buildid", "int"}, {"number", "int"}, {"builderid", "int"}, {"buildrequestid", "int"},
        {"workerid", "int?"}, {"masterid", "int"}, {"started_at", "int"}, {"complete", "bool"},
        {"complete_at", "int?"}, {"results", "int?"}, {"state_string", "string"}}},
      {"steps",
       {{"stepid", "int"}, {"number", "int"}, {"name", "string"}, {"buildid", "int"}, {"started_at", "int?"},
        {"complete", "bool"}, {"complete_at", "int?"}, {"results", "int?"}, {"state_string", "string"},
        {"urls", "list"}, {"hidden", "bool"}}},
      {"logs",
       {{"logid", "int"}, {"name", "string"}, {"slug", "string"}, {"stepid", "int"}, {"complete", "bool"},
        {"num_lines", "int"}, {"type", "string"}}},
      {"logchunks", {{"logid", "int"}, {"firstline", "int"}, {"content", "string"}}},
      {"buildrequests",
       {{"buildrequestid", "int"}, {"buildsetid", "int"}, {"builderid", "int"}, {"priority", "int"},
        {"claimed", "bool"}, {"claimed_at", "int?"}, {"claimed_by_masterid", "int?"}, {"complete", "bool"},
        {"results", "int?"}, {"submitted_at", "int"}, {"complete_at", "int?"}, {"waited_for", "bool"}}},
      {"buildsets",
       {{"bsid", "int"}, {"external_idstring", "string?"}, {"reason", "string"}, {"submitted_at", "int"},
        {"complete", "bool"}, {"complete_at", "int?"}, {"results", "int?"}, {"parent_buildid", "int?"},
        {"parent_relationship", "string?"}, {"sourcestamps", "list"}}},
      {"changes",
       {{"changeid", "int"}, {"parent_changeids", "list"}, {"author", "string"}, {"committer", "string?"},
        {"files", "list"}, {"comments", "string"}, {"revision", "string?"}, {"when_timestamp", "int"},
        {"branch", "string?"}, {"category", "string?"}, {"revlink", "string?"}, {"properties", "object"},
        {"repository", "string"}, {"project", "string"}, {"codebase", "string"}, {"sourcestamp", "object"}}},
      {"sourcestamps",
       {{"ssid", "int"}, {"revision", "string?"}, {"branch", "string?"}, {"repository", "string"},
        {"codebase", "string"}, {"project", "string"}, {"patch", "object?"}, {"created_at", "int"}}},
      {"workers",
       {{"workerid", "int"}, {"name", "string"}, {"workerinfo", "object"}, {"paused", "bool"},
        {"graceful", "bool"}, {"connected_to", "list"}, {"configured_on", "list"}}},
      {"masters", {{"masterid", "int"}, {"name", "string"}, {"active", "bool"}, {"last_active", "int?"}}},
  };
  return types;
}

bool has_type(const json& value, std::string type) {
  if (type.ends_with('?')) {
    if (value.is_null()) return true;
    type.pop_back();
  }
  if (type == "int") return value.is_number_integer();
  if (type == "string") return value.is_string();
  if (type == "bool") return value.is_boolean();
  if (type == "list") return value.is_array();
  if (type == "object") return value.is_object();
  return false;
}

// Every field of `type` missing from `item` or of another type, as lines.
std::string mismatches(const std::string& type, const json& item) {
  std::string out;
  for (const auto& [field, expected] : buildbot_types().at(type)) {
    if (!item.contains(field)) {
      out += type + "." + field + ": missing\n";
    } else if (!has_type(item[field], expected)) {
      out += type + "." + field + ": " + item[field].dump() + " is not " + expected + "\n";
    }
  }
  return out;
}

// GETs `path` and checks every element of its envelope's `type` list;
// returns them.
json conforming(WebMaster& web, const std::string& path, const std::string& type) {
  const auto reply = web.get("/api/v2/" + path);
  INFO(path << ": " << reply.status << " " << reply.body.substr(0, 400));
  REQUIRE(reply.status == 200);
  const json body = reply.json();
  REQUIRE(body.contains(type));
  REQUIRE(body[type].is_array());
  REQUIRE(!body[type].empty());
  REQUIRE(body.contains("meta"));
  std::string problems;
  for (const auto& item : body[type]) problems += mismatches(type, item);
  INFO(problems);
  CHECK(problems.empty());
  return body[type];
}

}  // namespace

TEST_CASE("every resource of real builds has the fields and types of Buildbot's REST spec") {
  WebMaster web("change_hook_dialects: {base: true}");
  const auto hook = web.request("POST", "/change_hook/base",
                                json{{"author", "alice <alice@example.org>"}, {"comments", "fix"},
                                     {"branch", "main"}, {"revision", "abc123"}, {"repository", "/srv/repo.git"},
                                     {"project", "kiln"}, {"files", {"a.c"}}}
                                    .dump(),
                                {{"Content-Type", "application/json"}});
  REQUIRE(hook.status == 200);
  const json ok = web.force_and_finish("unit");
  const json failed = web.force_and_finish("lint");
  REQUIRE(ok["results"] == 0);
  REQUIRE(failed["results"] == 2);
  const std::string buildid = ok["buildid"].dump();

  const json builders = conforming(web, "builders", "builders");
  conforming(web, "builders/unit", "builders");
  conforming(web, "builders/" + builders[0]["builderid"].dump() + "/builds", "builds");
  conforming(web, "builds", "builds");
  conforming(web, "builds/" + buildid, "builds");
  const json steps = conforming(web, "builds/" + buildid + "/steps", "steps");
  conforming(web, "steps/" + steps[0]["stepid"].dump(), "steps");
  const json logs = conforming(web, "steps/" + steps[0]["stepid"].dump() + "/logs", "logs");
  conforming(web, "logs/" + logs[0]["logid"].dump(), "logs");
  conforming(web, "logs/" + logs[0]["logid"].dump() + "/contents", "logchunks");
  const json requests = conforming(web, "buildrequests", "buildrequests");
  conforming(web, "buildrequests/" + requests[0]["buildrequestid"].dump(), "buildrequests");
  const json sets = conforming(web, "buildsets", "buildsets");
  conforming(web, "buildsets/" + sets[0]["bsid"].dump(), "buildsets");
  const json changes = conforming(web, "changes", "changes");
  conforming(web, "changes/" + changes[0]["changeid"].dump(), "changes");
  conforming(web, "sourcestamps", "sourcestamps");
  conforming(web, "workers", "workers");
  conforming(web, "workers/w1", "workers");
  conforming(web, "masters", "masters");

  // Values, not only types, where Buildbot's meaning is fixed.
  REQUIRE(ok["complete"] == true);
  REQUIRE(failed["state_string"].is_string());
  REQUIRE(logs[0]["type"] == "s");
  REQUIRE(requests[0]["complete"] == true);
  REQUIRE(requests[0]["claimed"] == true);
}

TEST_CASE("builds carry Buildbot's properties field when asked with property") {
  WebMaster web;
  const json build = web.force_and_finish("unit");
  const json with = web.get("/api/v2/builds/" + build["buildid"].dump() + "?property=*").json();
  INFO(with.dump());
  REQUIRE(with["builds"][0]["properties"].is_object());
  // Buildbot's shape: {name: [value, source]}.
  for (const auto& [name, pair] : with["builds"][0]["properties"].items()) {
    INFO(name);
    REQUIRE(pair.is_array());
    REQUIRE(pair.size() == 2);
    REQUIRE(pair[1].is_string());
  }
  REQUIRE(with["builds"][0]["properties"].contains("buildername"));
}
