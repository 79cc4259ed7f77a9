#pragma once
// The subset of JSON Schema (draft-07) that component configuration schemas
// use. Debian ships no C++ validator, so Kiln carries this one; it is checked
// against the relevant files of Debian's json-schema-test-suite package.
//
// Supported keywords: type (string or array), properties, required,
// additionalProperties (bool or schema), patternProperties, items (schema or
// array of schemas), additionalItems, enum, const, default, description,
// title, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
// minLength, maxLength, pattern, minItems, maxItems, uniqueItems,
// minProperties, maxProperties, anyOf, oneOf, allOf, not, and $ref to local
// definitions ("#/definitions/x", "#"). Unknown keywords are ignored, as the
// standard says.

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace kiln::config {

struct SchemaViolation {
  // JSON Pointer (RFC 6901) to the offending value in the instance, "" for
  // the root: "/builders/1/workers/0". An unknown key points at that member
  // ("/reporters/0/portt"); a missing required key at the object that lacks
  // it; a value matching no anyOf/oneOf alternative gets one summarised
  // violation at that value.
  std::string instance_pointer;
  // What is wrong, for a person: "unknown key 'portt'", "expected integer,
  // got string", "missing required key 'repourl'".
  std::string message;
};

// Checks `instance` against `schema`. Returns every violation found (empty
// when valid). A malformed schema yields a violation at "" describing it.
std::vector<SchemaViolation> validate_against_schema(
    const nlohmann::json& schema, const nlohmann::json& instance);

// Fills in `default` values of properties missing from objects, recursively
// through properties and items, as a component sees its config after
// validation.
void apply_schema_defaults(const nlohmann::json& schema,
                           nlohmann::json& instance);

// Checks that `schema` itself is a well-formed schema of the supported
// subset (used when a plugin registers). Returns problems, empty when fine.
std::vector<std::string> check_schema(const nlohmann::json& schema);

}  // namespace kiln::config
