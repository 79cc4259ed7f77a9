#include "config/json_schema.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

using kiln::config::apply_schema_defaults;
using kiln::config::check_schema;
using kiln::config::SchemaViolation;
using kiln::config::validate_against_schema;
using nlohmann::json;

namespace {

// Cases of the draft-07 suite that rely on what the subset deliberately
// leaves out, keyed by file and group description.
const std::set<std::pair<std::string, std::string>> kOutsideSubset = {
    // Fetches the draft-07 meta-schema over HTTP.
    {"ref.json", "remote ref, containing refs itself"},
    // Resolves "$ref": "node" against "$id" base URIs.
    {"ref.json", "Recursive references between schemas"},
};

// Every group and case of one suite file must give the verdict the suite
// expects; returns how many cases ran so an empty or skipped-away file
// cannot pass silently.
int run_suite_file(const std::string& file) {
  std::ifstream in(std::string(KILN_JSON_SCHEMA_TEST_SUITE) + "/" + file);
  REQUIRE(in.good());
  const json groups = json::parse(in);
  int cases = 0;
  for (const auto& group : groups) {
    const std::string description = group.at("description").get<std::string>();
    if (kOutsideSubset.count({file, description}) != 0) continue;
    for (const auto& test : group.at("tests")) {
      const auto violations = validate_against_schema(group.at("schema"), test.at("data"));
      INFO(file << " / " << description << " / " << test.at("description").get<std::string>());
      INFO("schema: " << group.at("schema").dump() << "  data: " << test.at("data").dump());
      INFO("first violation: " << (violations.empty() ? std::string("none")
                                                      : violations.front().instance_pointer + " " +
                                                            violations.front().message));
      CHECK(violations.empty() == test.at("valid").get<bool>());
      ++cases;
    }
  }
  return cases;
}

bool has_violation(const std::vector<SchemaViolation>& violations, const std::string& pointer,
                   const std::string& message) {
  return std::any_of(violations.begin(), violations.end(), [&](const SchemaViolation& v) {
    return v.instance_pointer == pointer && v.message == message;
  });
}

std::string describe(const std::vector<SchemaViolation>& violations) {
  std::string out;
  for (const auto& v : violations) out += "[" + v.instance_pointer + "] " + v.message + "\n";
  return out;
}

}  // namespace

#define KILN_SUITE_FILE(file)                                                          \
  TEST_CASE("draft-07 test suite: every case of " file " gets the expected verdict") { \
    CHECK(run_suite_file(file) > 0);                                                   \
  }

KILN_SUITE_FILE("type.json")
KILN_SUITE_FILE("properties.json")
KILN_SUITE_FILE("required.json")
KILN_SUITE_FILE("additionalProperties.json")
KILN_SUITE_FILE("patternProperties.json")
KILN_SUITE_FILE("enum.json")
KILN_SUITE_FILE("const.json")
KILN_SUITE_FILE("default.json")
KILN_SUITE_FILE("items.json")
KILN_SUITE_FILE("additionalItems.json")
KILN_SUITE_FILE("minimum.json")
KILN_SUITE_FILE("maximum.json")
KILN_SUITE_FILE("exclusiveMinimum.json")
KILN_SUITE_FILE("exclusiveMaximum.json")
KILN_SUITE_FILE("multipleOf.json")
KILN_SUITE_FILE("minLength.json")
KILN_SUITE_FILE("maxLength.json")
KILN_SUITE_FILE("pattern.json")
KILN_SUITE_FILE("minItems.json")
KILN_SUITE_FILE("maxItems.json")
KILN_SUITE_FILE("uniqueItems.json")
KILN_SUITE_FILE("minProperties.json")
KILN_SUITE_FILE("maxProperties.json")
KILN_SUITE_FILE("anyOf.json")
KILN_SUITE_FILE("oneOf.json")
KILN_SUITE_FILE("allOf.json")
KILN_SUITE_FILE("not.json")
KILN_SUITE_FILE("ref.json")

namespace {

const json kBuildersSchema = json::parse(R"({
  "type": "object",
  "properties": {
    "builders": {
      "type": "array",
      "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
          "name": {"type": "string", "minLength": 1},
          "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}}
        }
      }
    }
  },
  "definitions": {
    "step": {
      "type": "object",
      "properties": {
        "command": {"type": "string"},
        "timeout": {"type": "integer", "minimum": 1}
      }
    }
  }
})");

const json kGitStepSchema = json::parse(R"({
  "type": "object",
  "additionalProperties": false,
  "required": ["repourl"],
  "properties": {
    "repourl": {"type": "string"},
    "mode": {"enum": ["incremental", "full"], "default": "incremental"},
    "port": {"type": "integer"},
    "retries": {"type": "integer", "minimum": 1, "maximum": 10}
  }
})");

}  // namespace

TEST_CASE("a wrong type deep in the config is reported at its JSON pointer") {
  const json config = json::parse(R"({"builders": [
      {"name": "a", "steps": [{"command": "make"}]},
      {"name": "b", "steps": [{"command": 42}]}]})");
  const auto violations = validate_against_schema(kBuildersSchema, config);
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/builders/1/steps/0/command");
  CHECK(violations[0].message == "expected string, got integer");
}

TEST_CASE("a valid config has no violations") {
  const json config = json::parse(
      R"({"builders": [{"name": "a", "steps": [{"command": "make", "timeout": 5}]}]})");
  CHECK(validate_against_schema(kBuildersSchema, config).empty());
  CHECK(validate_against_schema(kGitStepSchema, json{{"repourl", "/srv/repo.git"}}).empty());
}

TEST_CASE("every violation is reported, not just the first") {
  const json config = json::parse(R"({"mode": "ful", "portt": 1, "retries": 0})");
  const auto violations = validate_against_schema(kGitStepSchema, config);
  INFO(describe(violations));
  CHECK(violations.size() == 4);
  CHECK(has_violation(violations, "", "missing required key 'repourl'"));
  CHECK(has_violation(violations, "/portt", "unknown key 'portt'; did you mean 'port'?"));
  CHECK(has_violation(violations, "/mode",
                      "must be one of 'incremental', 'full'; did you mean 'full'?"));
  CHECK(has_violation(violations, "/retries", "must be at least 1"));
}

TEST_CASE("an unknown key far from every known key gets no suggestion") {
  const auto violations =
      validate_against_schema(kGitStepSchema, json{{"repourl", "x"}, {"colour", "blue"}});
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/colour");
  CHECK(violations[0].message == "unknown key 'colour'");
}

TEST_CASE("bounds and lengths are told in words") {
  const json schema = json::parse(R"({"type": "object", "properties": {
      "n": {"type": "number", "maximum": 10, "multipleOf": 4},
      "x": {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
      "s": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
      "l": {"type": "array", "maxItems": 1, "uniqueItems": true},
      "o": {"type": "object", "minProperties": 1}}})");
  const json config = json::parse(R"({"n": 11, "x": 1, "s": "A", "l": [3, 3], "o": {}})");
  const auto violations = validate_against_schema(schema, config);
  INFO(describe(violations));
  CHECK(has_violation(violations, "/n", "must be at most 10"));
  CHECK(has_violation(violations, "/n", "must be a multiple of 4"));
  CHECK(has_violation(violations, "/x", "must be less than 1"));
  CHECK(has_violation(violations, "/s", "must be at least 2 characters long"));
  CHECK(has_violation(violations, "/s", "does not match the pattern '^[a-z]+$'"));
  CHECK(has_violation(violations, "/l", "must have at most 1 item, has 2"));
  CHECK(has_violation(violations, "/l/1", "repeats item 0; items must be unique"));
  CHECK(has_violation(violations, "/o", "must have at least 1 key, has 0"));
  CHECK(violations.size() == 8);
}

TEST_CASE("a value failing every anyOf alternative by type gets one merged message") {
  const json schema = json::parse(R"({"properties": {"command": {"anyOf": [
      {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}})");
  const auto violations = validate_against_schema(schema, json{{"command", 42}});
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/command");
  CHECK(violations[0].message == "expected string or array, got integer");
}

TEST_CASE("an anyOf failure deep inside one alternative is summarised at the anyOf") {
  const json schema = json::parse(R"({"properties": {"command": {"anyOf": [
      {"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}})");
  const auto violations =
      validate_against_schema(schema, json::parse(R"({"command": ["make", 3, 4]})"));
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/command");
  CHECK(violations[0].message ==
        "does not match any of the 2 allowed forms (closest: [1]: expected string, got integer)");
}

TEST_CASE("oneOf of constants reads like an enum, and a double match is explained") {
  const json schema = json::parse(R"({"properties": {
      "mode": {"oneOf": [{"const": "full"}, {"const": "incremental"}]},
      "n": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}}})");
  auto violations = validate_against_schema(schema, json{{"mode", "inc"}});
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/mode");
  CHECK(violations[0].message == "must be one of 'full', 'incremental'");

  violations = validate_against_schema(schema, json{{"n", 3}});
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/n");
  CHECK(violations[0].message ==
        "matches more than one of the allowed forms (1 and 2); it must match exactly one");
}

TEST_CASE("a type mismatch is not repeated as an enum mismatch") {
  const json schema = json::parse(R"({"type": "string", "enum": ["a", "b"]})");
  const auto violations = validate_against_schema(schema, json(5));
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].message == "expected string, got integer");
}

TEST_CASE("a malformed schema is reported as one violation at the root per problem") {
  const auto violations =
      validate_against_schema(json::parse(R"({"properties": {"a": {"type": "int"}}})"), json{{"a", 1}});
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer.empty());
  CHECK(violations[0].message ==
        "invalid schema: #/properties/a/type: unknown type 'int'; did you mean 'integer'?");
}

TEST_CASE("check_schema accepts the subset and ignores unknown keywords") {
  CHECK(check_schema(kBuildersSchema).empty());
  CHECK(check_schema(kGitStepSchema).empty());
  CHECK(check_schema(json(true)).empty());
  CHECK(check_schema(json::parse(R"({"x-secret": true, "format": "uri", "type": ["string", "null"]})"))
            .empty());
}

TEST_CASE("check_schema rejects a wrong type value") {
  auto problems = check_schema(json::parse(R"({"type": "strin"})"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "#/type: unknown type 'strin'; did you mean 'string'?");

  problems = check_schema(json::parse(R"({"items": {"type": ["string", 3]}})"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "#/items/type/1: a type must be a string naming a JSON type");

  problems = check_schema(json::parse(R"({"type": "whatever"})"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("unknown type 'whatever'; the types are null,") != std::string::npos);
}

TEST_CASE("check_schema rejects a required that is not an array of strings") {
  for (const char* bad : {R"({"required": "name"})", R"({"required": ["name", 1]})",
                          R"({"properties": {"a": {"required": true}}})"}) {
    INFO(bad);
    const auto problems = check_schema(json::parse(bad));
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("'required' must be an array of distinct key names") !=
          std::string::npos);
  }
}

TEST_CASE("check_schema rejects broken refs, patterns, bounds and sub-schemas") {
  const json schema = json::parse(R"({
    "properties": {
      "a": {"$ref": "#/definitions/missing"},
      "b": {"$ref": "http://example.org/schema"},
      "c": {"pattern": "("},
      "d": {"minLength": -1},
      "e": {"multipleOf": 0},
      "f": 7
    },
    "anyOf": [],
    "definitions": {"loop": {"$ref": "#/definitions/loop"}}
  })");
  const auto problems = check_schema(schema);
  std::string all;
  for (const auto& p : problems) all += p + "\n";
  INFO(all);
  CHECK(problems.size() == 8);
  auto mentions = [&](const std::string& text) { return all.find(text) != std::string::npos; };
  CHECK(mentions("#/properties/a/$ref: $ref '#/definitions/missing' points to nothing"));
  CHECK(mentions("#/properties/b/$ref: $ref 'http://example.org/schema' is not supported"));
  CHECK(mentions("#/properties/c/pattern: pattern '(' is not a valid"));
  CHECK(mentions("#/properties/d/minLength: 'minLength' must be a non-negative integer"));
  CHECK(mentions("#/properties/e/multipleOf: 'multipleOf' must be a number greater than 0"));
  CHECK(mentions("#/properties/f: a schema must be an object or a boolean, not integer"));
  CHECK(mentions("#/anyOf: 'anyOf' must be a non-empty array of schemas"));
  CHECK(mentions("#/definitions/loop/$ref: refers back to '#/definitions/loop' without going "
                 "into a key or an item"));
}

TEST_CASE("a self-referencing schema validates recursive data and stops on a loop") {
  const json tree = json::parse(R"({"type": "object", "additionalProperties": false,
      "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}}})");
  const json data = json::parse(
      R"({"name": "a", "children": [{"name": "b", "children": [{"name": 1}]}]})");
  const auto violations = validate_against_schema(tree, data);
  INFO(describe(violations));
  REQUIRE(violations.size() == 1);
  CHECK(violations[0].instance_pointer == "/children/0/children/0/name");

}

TEST_CASE("a schema that refers to itself without descending into the value is rejected") {
  // Validating with these would never end.
  auto problems = check_schema(json::parse(R"({"allOf": [{"$ref": "#"}]})"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "#/allOf/0/$ref: refers back to '#' without going into a key or an item, "
                       "which would never end");

  problems = check_schema(json::parse(R"({"definitions": {
      "a": {"anyOf": [{"type": "string"}, {"$ref": "#/definitions/b"}]},
      "b": {"not": {"$ref": "#/definitions/a"}}}})"));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("refers back to '#/definitions/a'") != std::string::npos);

  const auto violations =
      validate_against_schema(json::parse(R"({"oneOf": [{"$ref": "#"}, {"$ref": "#"}]})"), json(1));
  REQUIRE(violations.size() == 2);
  CHECK(violations[0].message.rfind("invalid schema: #/oneOf/0/$ref: refers back to '#'", 0) == 0);
}

TEST_CASE("defaults fill missing keys of nested objects and arrays of objects") {
  const json schema = json::parse(R"({
    "type": "object",
    "properties": {
      "mode": {"type": "string", "default": "incremental"},
      "retry": {
        "type": "object",
        "default": {},
        "properties": {"count": {"type": "integer", "default": 3}, "delay": {"default": 10}}
      },
      "steps": {
        "type": "array",
        "items": {"$ref": "#/definitions/step"}
      },
      "pair": {"type": "array", "items": [{"properties": {"x": {"default": 1}}}],
               "additionalItems": {"properties": {"y": {"default": 2}}}}
    },
    "definitions": {
      "step": {"type": "object", "properties": {
        "halt_on_failure": {"type": "boolean", "default": false},
        "env": {"type": "object", "default": {"LANG": "C"}}}}
    }
  })");
  json config = json::parse(R"({
    "retry": {"delay": 1},
    "steps": [{"halt_on_failure": true}, {}],
    "pair": [{}, {}, {}]
  })");
  apply_schema_defaults(schema, config);
  const json expected = json::parse(R"({
    "mode": "incremental",
    "retry": {"count": 3, "delay": 1},
    "steps": [{"halt_on_failure": true, "env": {"LANG": "C"}},
              {"halt_on_failure": false, "env": {"LANG": "C"}}],
    "pair": [{"x": 1}, {"y": 2}, {"y": 2}]
  })");
  CHECK(config == expected);

  json empty = json::object();
  apply_schema_defaults(schema, empty);
  CHECK(empty == json::parse(
                     R"({"mode": "incremental", "retry": {"count": 3, "delay": 10}})"));
}

TEST_CASE("defaults of an anyOf alternative apply only when the value is that alternative") {
  const json schema = json::parse(R"({"properties": {"source": {"anyOf": [
      {"type": "object", "required": ["git"], "properties": {"git": {}, "branch": {"default": "main"}}},
      {"type": "object", "required": ["svn"], "properties": {"svn": {}, "revision": {"default": "HEAD"}}}
  ]}}})");
  json config = json::parse(R"({"source": {"svn": "http://x"}})");
  apply_schema_defaults(schema, config);
  CHECK(config == json::parse(R"({"source": {"svn": "http://x", "revision": "HEAD"}})"));
}

TEST_CASE("defaults leave values of the wrong type alone") {
  const json schema = json::parse(
      R"({"properties": {"retry": {"properties": {"count": {"default": 3}}}}})");
  json config = json::parse(R"({"retry": 5})");
  apply_schema_defaults(schema, config);
  CHECK(config == json::parse(R"({"retry": 5})"));
}
