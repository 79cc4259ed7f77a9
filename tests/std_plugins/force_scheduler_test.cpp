// The `force` scheduler of kiln-force-scheduler.so, driven through a fake engine.
#include "std_plugins/std_plugins_support.h"

namespace {

using kiln::std_plugins::test::force_scheduler_library;
using kiln::std_plugins::test::Harness;
using nlohmann::json;

Harness force(const json& config = json::object(), const json& builders = {"hello", "check-sh"}) {
  const json facts = {{"kind", "scheduler"},
                      {"name", "force"},
                      {"master_dir", "/srv/ci"},
                      {"common", {{"builders", builders}, {"properties", {{"team", "core"}}}}}};
  return Harness(force_scheduler_library(), KILN_KIND_SCHEDULER, "force", config, facts);
}

// Sends control(action, args) and runs the loop until it is answered.
Harness::Answer ask(Harness& h, const std::string& action, const json& args) {
  Harness::Answer answer;
  const kiln_status status = h.control(action, args, answer);
  if (status != KILN_OK) {
    answer.answered = true;
    answer.status = status;
    return answer;
  }
  REQUIRE(h.run_until([&] { return answer.answered; }));
  return answer;
}

const json kTypedParams = json::array({
    {{"name", "jobs"}, {"type", "int"}, {"default", 2}, {"label", "Parallel jobs"}},
    {{"name", "fast"}, {"type", "bool"}},
    {{"name", "target"}, {"type", "choice"}, {"choices", {"debug", "release"}}},
    {{"name", "ticket"}, {"type", "string"}, {"required", true}, {"default", "none"}},
});

}  // namespace

TEST_CASE("force submits a buildset with the owner, the reason, the source stamp and typed properties") {
  auto h = force({{"parameters", kTypedParams}});
  REQUIRE(h.error.empty());
  auto answer = ask(h, "force",
                    {{"builderNames", {"hello"}},
                     {"reason", "try it"},
                     {"username", "alice"},
                     {"branch", "main"},
                     {"revision", "abc123"},
                     {"properties", {{"jobs", "4"}, {"fast", "true"}, {"target", "release"}}}});
  REQUIRE(answer.status == KILN_OK);
  REQUIRE(h.rec->buildsets.size() == 1);
  CHECK(answer.value() == json({{"bsid", 41}, {"brids", {{"hello", 1}}}}));
  const json& req = h.rec->buildsets[0];
  CHECK(req["builders"] == json({"hello"}));
  CHECK(req["reason"] == "A build was forced by 'alice': try it");
  CHECK(req["sourcestamps"] == json::array({{{"codebase", ""},
                                             {"branch", "main"},
                                             {"revision", "abc123"},
                                             {"repository", ""},
                                             {"project", ""}}}));
  CHECK(req["properties"] == json({{"team", "core"},
                                   {"jobs", 4},
                                   {"fast", true},
                                   {"target", "release"},
                                   {"ticket", "none"},
                                   {"reason", "try it"},
                                   {"owner", "alice"},
                                   {"scheduler", "force"}}));
}

TEST_CASE("force without builder names builds every builder of the scheduler with the configured defaults") {
  auto h = force({{"reason", {{"default", "nightly by hand"}}}, {"branch", {{"default", "develop"}}},
                  {"reason_string", "%(owner)s forced: %(reason)s"}});
  REQUIRE(h.error.empty());
  auto answer = ask(h, "force", json::object());
  REQUIRE(answer.status == KILN_OK);
  const json& req = h.rec->buildsets.at(0);
  CHECK(req["builders"] == json({"hello", "check-sh"}));
  CHECK(req["reason"] == "anonymous forced: nightly by hand");
  CHECK(req["sourcestamps"][0]["branch"] == "develop");
  CHECK(req["properties"]["owner"] == "anonymous");
  CHECK(answer.value()["brids"] == json({{"hello", 1}, {"check-sh", 2}}));
}

TEST_CASE("force with an unknown builder is refused, naming it and the builders it may force") {
  auto h = force();
  auto answer = ask(h, "force", {{"builderNames", {"hello", "nope"}}});
  CHECK(answer.status == KILN_ERR_INVALID_ARGUMENT);
  CHECK_THAT(answer.text, Catch::Contains("'nope'"));
  CHECK_THAT(answer.text, Catch::Contains("hello, check-sh"));
  CHECK(h.rec->buildsets.empty());
}

TEST_CASE("force checks typed parameters and required values and submits nothing when one is wrong") {
  auto h = force({{"parameters", kTypedParams}, {"username_required", true}});
  REQUIRE(h.error.empty());
  SECTION("an int that is not one") {
    auto answer = ask(h, "force", {{"username", "bob"}, {"properties", {{"jobs", "many"}}}});
    CHECK(answer.status == KILN_ERR_INVALID_ARGUMENT);
    CHECK_THAT(answer.text, Catch::Contains("'Parallel jobs': 'many' is not an integer"));
  }
  SECTION("a choice outside its choices") {
    auto answer = ask(h, "force", {{"username", "bob"}, {"target", "profile"}});
    CHECK(answer.status == KILN_ERR_INVALID_ARGUMENT);
    CHECK_THAT(answer.text, Catch::Contains("'profile' is not one of the choices (debug, release)"));
  }
  SECTION("a bool that is not one") {
    auto answer = ask(h, "force", {{"username", "bob"}, {"fast", "maybe"}});
    CHECK_THAT(answer.text, Catch::Contains("is not a boolean"));
  }
  SECTION("a required value left empty") {
    auto answer = ask(h, "force", {{"username", "bob"}, {"properties", {{"ticket", ""}}}});
    CHECK_THAT(answer.text, Catch::Contains("'ticket' needs to be specified"));
  }
  SECTION("no username when one is required") {
    auto answer = ask(h, "force", json::object());
    CHECK_THAT(answer.text, Catch::Contains("username is required"));
  }
  CHECK(h.rec->buildsets.empty());
}

TEST_CASE("force builds one source stamp per configured codebase") {
  auto h = force({{"codebases", {"app", {{"codebase", "lib"}, {"branch", {{"default", "stable"}}}}}}});
  REQUIRE(h.error.empty());
  auto answer = ask(h, "force", {{"app_branch", "dev"}, {"codebases", {{"lib", {{"revision", "r1"}}}}}});
  REQUIRE(answer.status == KILN_OK);
  CHECK(h.rec->buildsets.at(0)["sourcestamps"] ==
        json::array({{{"codebase", "app"}, {"branch", "dev"}, {"revision", ""}, {"repository", ""}, {"project", ""}},
                     {{"codebase", "lib"}, {"branch", "stable"}, {"revision", "r1"}, {"repository", ""}, {"project", ""}}}));
}

TEST_CASE("force describes its form's parameters") {
  auto h = force({{"parameters", kTypedParams}, {"label", "Force a build"}, {"revision", {{"hide", true}}}});
  auto answer = ask(h, "describe", json::object());
  REQUIRE(answer.status == KILN_OK);
  const json d = answer.value();
  CHECK(d["name"] == "force");
  CHECK(d["label"] == "Force a build");
  CHECK(d["builders"] == json({"hello", "check-sh"}));
  std::vector<std::string> names;
  for (const auto& p : d["parameters"]) names.push_back(p["name"]);
  CHECK(names == std::vector<std::string>{"username", "reason", "branch", "revision", "repository", "project", "jobs",
                                          "fast", "target", "ticket"});
  CHECK(d["parameters"][3]["hide"] == true);
  CHECK(d["parameters"][8]["choices"] == json({"debug", "release"}));
  CHECK(d["parameters"][6]["default"] == 2);
}

TEST_CASE("force refuses parameter definitions it cannot honour when the config is checked") {
  CHECK_THAT(force({{"parameters", {{{"name", "t"}, {"type", "choice"}}}}}).error, Catch::Contains("needs choices"));
  CHECK_THAT(force({{"parameters", {{{"name", "n"}, {"type", "int"}, {"default", "x"}}}}}).error,
             Catch::Contains("bad default"));
  CHECK_THAT(force({{"parameters", {{{"name", "reason"}}}}}).error, Catch::Contains("reserved"));
  CHECK_THAT(force({{"parameters", {{{"name", "a"}}, {{"name", "a"}}}}}).error, Catch::Contains("twice"));
  CHECK_THAT(force({{"parameters", {{{"name", "a"}, {"type", "float"}}}}}).error, Catch::Contains("type"));
}

TEST_CASE("force answers other control actions as unsupported") {
  auto h = force();
  auto answer = ask(h, "trigger", json::object());
  CHECK(answer.status == KILN_ERR_UNSUPPORTED);
  CHECK(h.rec->buildsets.empty());
}
