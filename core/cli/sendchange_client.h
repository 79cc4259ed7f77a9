#pragma once
// `kiln sendchange --master HOST:PORT`: the HTTP client of the `sendchange`
// change source (plugins/sendchange), Buildbot's `buildbot sendchange`
// over HTTP instead of Perspective Broker. One POST /change with Basic
// authentication and the change as a JSON body.

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace kiln::cli {

struct HttpAnswer {
  unsigned status = 0;  // 200, 400, 401, ...
  std::string body;
};

// POSTs `change` to http://HOST:PORT/change (`master` is "HOST:PORT";
// `auth` is "USER:PASS"). Throws ControlError (control_client.h) when the
// listener cannot be reached or does not answer within `timeout`.
HttpAnswer post_change(const std::string& master, const std::string& auth,
                       const nlohmann::json& change,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace kiln::cli
