#pragma once
// The HTTP client of the plugins' authenticated listeners
// (plugins/http-listener): `kiln sendchange --master HOST:PORT` posts to a
// `sendchange` change source, `kiln try --master HOST:PORT` to a `try`
// scheduler. One request per call, HTTP Basic authentication, JSON bodies.

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>

namespace kiln::cli {

struct HttpAnswer {
  unsigned status = 0;  // 200, 400, 401, ...
  std::string body;

  // The body's "error" when it has one, else the body itself.
  std::string error() const;
};

// `method` `target` on http://HOST:PORT (`master` is "HOST:PORT" or
// "[::1]:PORT"; `auth` is "USER:PASS"). `listener` names what should be
// listening there, for messages ("a `try` scheduler"). Throws ControlError
// (control_client.h) when it cannot be reached or does not answer within
// `timeout`.
HttpAnswer http_call(const std::string& master, const std::string& auth, const std::string& method,
                     const std::string& target, const std::string& body, const std::string& listener,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

// POSTs `change` to a sendchange listener's /change.
HttpAnswer post_change(const std::string& master, const std::string& auth,
                       const nlohmann::json& change,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace kiln::cli
