#pragma once
// Buildbot's REST API under /api/v2: GET of data-API paths answered in
// Buildbot's envelope ({"builds": [...], "meta": {"total": N}}), log
// contents and raw downloads streamed page by page, and JSON-RPC 2.0
// control calls POSTed to a resource (force, stop, rebuild, cancel). Every
// read and action goes to the master through a Backend (the ABI).

#include "backend.h"
#include "http_types.h"

#include <string>
#include <string_view>

namespace kiln::web {

class RestApi {
 public:
  explicit RestApi(Backend& backend) : backend_(backend) {}

  // `api_path` is the request's path after "/api/v2" ("", "/builders/3").
  // On the HTTP thread; respond is called once, on it too.
  void handle(const Request& request, std::string_view api_path, Respond respond);

 private:
  Backend& backend_;
};

// A JSON response, and Buildbot's {"error": message} with an HTTP status.
Response json_response(unsigned status, const nlohmann::json& body);
Response error_response(unsigned status, std::string message);

// "%41b+c" -> "Ab c"; a malformed escape is kept as it is.
std::string url_decode(std::string_view text);

}  // namespace kiln::web
