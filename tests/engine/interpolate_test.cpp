#include "engine/interpolate.h"

#include <catch2/catch.hpp>

using kiln::engine::InterpolateScope;
using kiln::engine::render_interpolate;
using kiln::engine::render_json;
using nlohmann::json;

namespace {
std::string render(const std::string& text, const InterpolateScope& scope) {
  std::string error;
  auto out = render_interpolate(text, scope, error);
  INFO(error);
  REQUIRE(out);
  return *out;
}
}  // namespace

TEST_CASE("Interpolate renders properties with Buildbot's default, alternative and conditional forms") {
  json props = {{"branch", {"main", "Change"}}, {"empty", {"", "Build"}},
                {"n", {3, "Build"}}, {"flag", {true, "Build"}}};
  InterpolateScope scope;
  scope.properties = &props;
  CHECK(render("on %(prop:branch)s", scope) == "on main");
  CHECK(render("[%(prop:missing)s]", scope) == "[]");
  CHECK(render("%(prop:missing:-dflt)s", scope) == "dflt");
  CHECK(render("%(prop:empty:-dflt)s", scope) == "");
  CHECK(render("%(prop:empty:~dflt)s", scope) == "dflt");
  CHECK(render("%(prop:branch:+yes)s|%(prop:missing:+yes)s", scope) == "yes|");
  CHECK(render("%(prop:branch:?|set|unset)s %(prop:missing:?|set|unset)s", scope) == "set unset");
  CHECK(render("%(prop:empty:#?|t|f)s %(prop:flag:#?|t|f)s", scope) == "f t");
  CHECK(render("%(prop:n)s %(prop:flag)s 100%% %d", scope) == "3 True 100% %d");
}

TEST_CASE("Interpolate renders source stamps, worker info and keywords") {
  json ss = {{"", {{"branch", "dev"}, {"revision", "abc123"}}}};
  json worker = {{"name", "local-1"}};
  json kw = {{"x", "y"}};
  InterpolateScope scope;
  scope.sourcestamps = &ss;
  scope.worker = &worker;
  scope.keywords = &kw;
  CHECK(render("%(src::branch)s@%(src::revision)s on %(worker:name)s %(kw:x)s", scope) ==
        "dev@abc123 on local-1 y");
  CHECK(render("%(src:other:branch:-none)s", scope) == "none");
}

TEST_CASE("Interpolate names an unknown selector or a malformed expression") {
  InterpolateScope scope;
  std::string error;
  CHECK_FALSE(render_interpolate("%(prpo:x)s", scope, error));
  CHECK(error.find("unknown interpolation '%(prpo:x)s'") != std::string::npos);
  CHECK_FALSE(render_interpolate("%(prop:x", scope, error));
  CHECK(error.find("unterminated") != std::string::npos);
  CHECK_FALSE(render_interpolate("%(secret:token)s", scope, error));
  CHECK(error == "unknown secret 'token'");
}

TEST_CASE("rendering a config keeps a lone property's type and names the path of an error") {
  json props = {{"t", {30, "Build"}}, {"who", {"ann", "Change"}}};
  InterpolateScope scope;
  scope.properties = &props;
  json config = {{"timeout", "%(prop:t)s"}, {"command", {"echo", "%(prop:who)s"}}};
  std::string error;
  REQUIRE(render_json(config, scope, error));
  CHECK(config["timeout"] == 30);
  CHECK(config["command"][1] == "ann");
  json bad = {{"command", {"echo", "%(nope:x)s"}}};
  REQUIRE_FALSE(render_json(bad, scope, error));
  CHECK(error.rfind("command[1]: unknown interpolation", 0) == 0);
}
