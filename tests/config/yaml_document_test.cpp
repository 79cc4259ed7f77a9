// One YAML file to JSON with positions: scalar typing, keys, merges.

#include "config/yaml_document.h"

#include <catch2/catch.hpp>

using namespace kiln::config;
using nlohmann::json;

TEST_CASE("plain scalars follow the YAML 1.2 core schema and quoted ones stay strings") {
  auto parsed = parse_yaml_text(
      "a: [true, False, null, ~, '', 12, -3, 0x1f, 0o17, 1.5, 1e3, .5, yes, on, 1.2.3, .inf, 012]\n"
      "b: ['true', \"12\", !!str 7, !!float 2]\n"
      "c:\n",
      "t.yaml");
  REQUIRE(parsed.errors.empty());
  CHECK(parsed.tree.root["a"] == json::parse(R"([true, false, null, null, "", 12, -3, 31, 15, 1.5, 1000.0, 0.5,
                                                   "yes", "on", "1.2.3", ".inf", 12])"));
  CHECK(parsed.tree.root["b"] == json::parse(R"(["true", "12", "7", 2.0])"));
  CHECK(parsed.tree.root["c"].is_null());
  CHECK(parsed.tree.plain_strings.count("/a/12") == 1);  // yes
  CHECK(parsed.tree.plain_strings.count("/b/0") == 0);   // quoted
}

TEST_CASE("every value and key has a 1-based position") {
  auto parsed = parse_yaml_text("top:\n  - {name: x, list: [1, 2]}\n  - key: v\n    empty:\n", "t.yaml");
  REQUIRE(parsed.errors.empty());
  const auto& at = parsed.tree.locations;
  CHECK(at.at("/top/0/list/1").line == 2);
  CHECK(at.at("/top/0/list/1").column == 25);
  CHECK(parsed.tree.key_locations.at("/top/1/key").line == 3);
  CHECK(parsed.tree.key_locations.at("/top/1/key").column == 5);
  // An empty value is placed at its key, not on the next line.
  CHECK(at.at("/top/1/empty").line == 4);
  CHECK(at.at("/top/1/empty").file == "t.yaml");
}

TEST_CASE("keys with / and ~ are escaped in pointers") {
  auto parsed = parse_yaml_text("env: {a/b: 1, c~d: 2}\n", "t.yaml");
  REQUIRE(parsed.errors.empty());
  CHECK(parsed.tree.locations.count("/env/a~1b") == 1);
  CHECK(parsed.tree.locations.count("/env/c~0d") == 1);
}

TEST_CASE("<< merge keys copy a mapping's keys without overriding written ones") {
  auto parsed = parse_yaml_text(
      "base: &base {workers: [a], tags: [x]}\n"
      "b:\n"
      "  <<: *base\n"
      "  tags: [y]\n",
      "t.yaml");
  REQUIRE(parsed.errors.empty());
  CHECK(parsed.tree.root["b"] == json::parse(R"({"workers": ["a"], "tags": ["y"]})"));
  CHECK(parsed.tree.locations.at("/b/workers/0").line == 1);
}

TEST_CASE("a duplicate key in a mapping is an error at the second key") {
  auto parsed = parse_yaml_text("a: 1\nb: 2\na: 3\n", "t.yaml");
  REQUIRE(parsed.errors.size() == 1);
  CHECK(parsed.errors[0].location.line == 3);
  CHECK(parsed.errors[0].location.column == 1);
  CHECK(parsed.errors[0].message == "duplicate key 'a' (first at line 1)");
}

TEST_CASE("a syntax error becomes a diagnostic with its position") {
  auto parsed = parse_yaml_text("a: 1\n  b: 2\n", "t.yaml");
  REQUIRE(parsed.errors.size() == 1);
  CHECK(parsed.errors[0].location.line == 2);
  CHECK(parsed.errors[0].location.column == 4);
  CHECK(parsed.errors[0].message == "illegal map value");
}
