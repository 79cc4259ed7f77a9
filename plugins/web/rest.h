#pragma once
// Buildbot's REST API under /api/v2: GET of data-API paths answered in
// Buildbot's envelope ({"builds": [...], "meta": {"total": N}}), log
// contents and raw downloads streamed page by page, and JSON-RPC 2.0
// control calls POSTed to a resource (force, stop, rebuild, cancel). Every
// read and action goes to the master through a Backend (the ABI); every
// action, and reading users, is first checked against the Auth's rules.

#include "auth.h"
#include "backend.h"
#include "http_types.h"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::web {

class RestApi {
 public:
  RestApi(Backend& backend, Auth& auth) : backend_(backend), auth_(auth) {}

  // `api_path` is the request's path after "/api/v2" ("", "/builders/3");
  // `who` sent it. On the HTTP thread; respond is called once, on it too.
  void handle(const Request& request, std::string_view api_path, const Identity& who,
              Respond respond);

 private:
  Backend& backend_;
  Auth& auth_;
};

// The action a JSON-RPC call on `segs` performs, or nothing when the web
// API does not forward that method.
std::optional<Action> action_of(const std::vector<std::string>& segs, const std::string& method,
                                const nlohmann::json& params);

// A JSON response, and Buildbot's {"error": message} with an HTTP status.
Response json_response(unsigned status, const nlohmann::json& body);
Response error_response(unsigned status, std::string message);

// The HTTP status of a data-API answer's status (404 for KILN_ERR_NOT_FOUND ...).
unsigned http_status_of(kiln_status status);

// "%41b+c" -> "Ab c"; a malformed escape is kept as it is.
std::string url_decode(std::string_view text);

// The decoded name=value pairs of a query string or a form body, in order.
std::vector<std::pair<std::string, std::string>> form_fields(std::string_view text);

}  // namespace kiln::web
