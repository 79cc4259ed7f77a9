#pragma once
// The data API: Buildbot's resource paths ("builders/3/builds",
// "builds/12/steps", "logs/7/contents", ...) read from the store, and
// control actions handed to whoever acts on them (the Engine). The same
// object serves the ABI's data_get/data_control, the control socket behind
// `kiln data`, and (later) the web plugin's REST API through the ABI.
// Paths and fields: ../shared/reference/buildbot-rest-api.md.

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <string_view>

namespace kiln::store {
class Store;
}

namespace kiln::engine {

// status KILN_OK with the result, or an error status with
// {"error": "message"} as the value.
using DataDone = std::function<void(kiln_status status, nlohmann::json value)>;

// Acts on control actions (force, stop, rebuild, cancel, ...). The Engine
// implements it.
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  // `path` is a data-API path ("builds/12", "buildrequests/5",
  // "forceschedulers/force", "workers/3", "changes"); `action` a Buildbot
  // JSON-RPC method name. Calls done exactly once, on the loop thread.
  virtual void control(std::string_view path, std::string_view action,
                       const nlohmann::json& args, DataDone done) = 0;
};

class DataApi {
 public:
  DataApi(store::Store& store, ControlTarget& control) : store_(store), control_(control) {}

  // Reads a path. query (may be null): {"filters": [[field, op, [values]]...],
  // "fields": [...], "order": [...], "limit": N, "offset": N, "property":
  // [...], "count": bool, "query_string": "limit=5&..."} as in
  // plugin_api.h's data_get. A single resource ("builds/12") answers an
  // object, a collection an array, or {"total": N} with "count": true.
  // Unknown paths answer KILN_ERR_NOT_FOUND with a message naming the path,
  // unknown fields and malformed queries KILN_ERR_INVALID_ARGUMENT.
  void get(std::string_view path, const nlohmann::json& query, DataDone done);

  // Parses a REST query string ("limit=10&order=-number&complete=false&
  // number__gt=3&field=buildid") into the JSON query form above.
  // Malformed input throws std::invalid_argument naming the parameter.
  static nlohmann::json query_from_url(std::string_view query_string);

  void control(std::string_view path, std::string_view action, const nlohmann::json& args,
               DataDone done) {
    control_.control(path, action, args, std::move(done));
  }

 private:
  store::Store& store_;
  ControlTarget& control_;
};

}  // namespace kiln::engine
