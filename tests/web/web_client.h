#pragma once
// A small blocking HTTP/1.1 and WebSocket client for the web plugin's
// tests, over loopback. Beast stays in web_client.cpp. Calls block the
// calling thread, so a test runs them off the master's loop (WebMaster in
// web_master.h pumps the loop meanwhile).

#include "util/free_port.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace kiln::testing {

struct HttpReply {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool chunked = false;
  nlohmann::json json() const { return nlohmann::json::parse(body, nullptr, false); }
};

// One keep-alive connection: requests go one after the other over it.
class HttpConnection {
 public:
  explicit HttpConnection(uint16_t port);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  HttpReply request(const std::string& method, const std::string& target,
                    const std::string& body = {},
                    const std::map<std::string, std::string>& headers = {});
  HttpReply get(const std::string& target) { return request("GET", target); }
  // Sends `bytes` as they are (a request the client would not write, such
  // as a Content-Length with no body) and reads one answer.
  HttpReply raw(const std::string& bytes);
  // Whether the server kept the connection open after the last answer.
  bool open() const;

 private:
  HttpReply read_reply();

  struct State;
  std::unique_ptr<State> state_;
};

// A WebSocket client of /ws.
class LiveConnection {
 public:
  explicit LiveConnection(uint16_t port);
  ~LiveConnection();
  void send(const nlohmann::json& frame);
  // The next frame, or nullopt when none comes within `limit` (a bound for
  // a loaded machine, not a timing check; the connection is unusable then).
  std::optional<nlohmann::json> receive(std::chrono::milliseconds limit = std::chrono::seconds(20));

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln::testing
