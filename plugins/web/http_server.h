#pragma once
// The web status target's HTTP/1.1 server (keep-alive, chunked streaming)
// and /ws WebSocket endpoint, on a thread of its own. Only http_server.cpp
// includes Beast; everything else talks to it through this interface and
// http_types.h.

#include "access_log.h"
#include "http_types.h"
#include "tls_server.h"

#include <kiln/plugin_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace kiln::web {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8010;  // 0 picks a free port
  // Serve HTTPS (and wss://) with these PEM files.
  std::optional<kiln::tls::TlsFiles> tls;
  // Called on the HTTP thread once each answer is written (or the
  // connection became a WebSocket).
  std::function<void(const AccessRecord&)> access;
};

using LogFn = std::function<void(kiln_log_level level, std::string message)>;
// Runs a function on the HTTP thread; callable from any thread.
using HttpPoster = std::function<void(std::function<void()>)>;

class HttpServer {
 public:
  // `handle` answers every request except the WebSocket upgrade of /ws; it
  // runs on the HTTP thread. `log` may be called from that thread.
  static std::unique_ptr<HttpServer> make(ServerOptions options, Handle handle, LogFn log);
  virtual ~HttpServer() = default;

  // Loads the TLS files, binds and starts the thread: an error message
  // naming the file or the address, or empty.
  virtual std::string start() = 0;
  // Closes every connection and joins the thread. Idempotent.
  virtual void stop() = 0;
  virtual uint16_t port() const = 0;
  // Posting keeps working (and does nothing) after the server is gone.
  virtual HttpPoster poster() const = 0;
  // From any thread: one data-API event, sent to the WebSocket clients
  // consuming a matching path.
  virtual void publish(std::string routing_key, std::string event_json) = 0;
  // Whether any WebSocket client is connected (events are dropped early
  // otherwise). Any thread.
  virtual bool has_live_clients() const = 0;
};

}  // namespace kiln::web
