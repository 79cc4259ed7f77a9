#include "config/diagnostic.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using kiln::config::closest_match;
using kiln::config::Diagnostic;
using kiln::config::pointer_to_path;

TEST_CASE("a diagnostic reads file:line:col: path: message") {
  Diagnostic d{{"master.yaml", 14, 7}, "builders[1].workers[0]", "unknown worker 'lnx'"};
  CHECK(d.to_string() == "master.yaml:14:7: builders[1].workers[0]: unknown worker 'lnx'");
}

TEST_CASE("a diagnostic leaves out the parts it does not know") {
  CHECK(Diagnostic{{"master.yaml", 14, 0}, "workers", "m"}.to_string() == "master.yaml:14: workers: m");
  CHECK(Diagnostic{{"master.yaml", 0, 0}, "", "m"}.to_string() == "master.yaml: m");
  CHECK(Diagnostic{{"", 0, 0}, "workers[0]", "m"}.to_string() == "workers[0]: m");
  CHECK(Diagnostic{{"", 0, 0}, "", "m"}.to_string() == "m");
  CHECK(Diagnostic{{"", 3, 9}, "", "m"}.to_string() == "3:9: m");
  // A column without a line says nothing useful.
  CHECK(Diagnostic{{"a.yaml", 0, 9}, "", "m"}.to_string() == "a.yaml: m");
}

TEST_CASE("a JSON pointer becomes a dotted path with indices") {
  CHECK(pointer_to_path("") == "");
  CHECK(pointer_to_path("/builders/1/workers/0") == "builders[1].workers[0]");
  CHECK(pointer_to_path("/0/name") == "[0].name");
  CHECK(pointer_to_path("/master/plugin_paths") == "master.plugin_paths");
  CHECK(pointer_to_path("/steps/2/halt-on-failure") == "steps[2].halt-on-failure");
}

TEST_CASE("pointer_to_path unescapes ~0 and ~1 and quotes keys that are not identifiers") {
  CHECK(pointer_to_path("/properties/odd key") == "properties[\"odd key\"]");
  CHECK(pointer_to_path("/env/a~1b") == "env[\"a/b\"]");
  CHECK(pointer_to_path("/env/a~0b") == "env[\"a~b\"]");
  // ~01 is "~1" literally: ~0 is decoded, and the 1 is not re-read.
  CHECK(pointer_to_path("/env/~01") == "env[\"~1\"]");
  CHECK(pointer_to_path("/odd key/x") == "[\"odd key\"].x");
  CHECK(pointer_to_path("/env/say \"hi\"") == "env[\"say \\\"hi\\\"\"]");
  CHECK(pointer_to_path("/a.b") == "[\"a.b\"]");
  CHECK(pointer_to_path("/env/") == "env[\"\"]");
  // Leading zeros make a key, not an index.
  CHECK(pointer_to_path("/env/007") == "env[\"007\"]");
}

TEST_CASE("closest_match suggests a near spelling") {
  const std::vector<std::string> workers = {"linux", "windows"};
  CHECK(closest_match("lnx", workers) == "linux");
  CHECK(closest_match("windwos", workers) == "windows");
  CHECK(closest_match("buidlers", {"workers", "builders", "schedulers"}) == "builders");
  CHECK(closest_match("portt", {"port", "host"}) == "port");
}

TEST_CASE("closest_match returns nothing when no candidate is close") {
  CHECK(closest_match("macos", {"linux", "windows"}).empty());
  CHECK(closest_match("x", {"y", "z"}).empty());
  CHECK(closest_match("lnx", {}).empty());
  CHECK(closest_match("", {"linux"}).empty());
}

TEST_CASE("closest_match ignores case for distance and uses it to break ties") {
  CHECK(closest_match("LINUX", {"windows", "linux"}) == "linux");
  CHECK(closest_match("Linux", {"linux", "Linux"}) == "Linux");
  CHECK(closest_match("linuz", {"Linux", "linux"}) == "linux");
  // Nearer wins over earlier.
  CHECK(closest_match("test", {"tests_all", "tests"}) == "tests");
}
