#pragma once
// What passes between the HTTP server (http_server.cpp, the plugin's only
// Beast code) and the code that answers requests (REST, JSON-RPC, pages):
// plain structs, so that code compiles without Beast.

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::web {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // as sent, still percent-encoded: "/api/v2/builders/a%20b"
  std::string query;   // after '?', still encoded; empty when none
  std::string body;
  // Names in lower case ("authorization", "cookie", "x-hub-signature-256").
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header of that (lower-case) name, or empty.
  std::string_view header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return {};
  }
};

// Hands over one piece of a streamed body; `more` is false on the last one.
using Piece = std::function<void(std::string piece, bool more)>;

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // Set for a body sent in chunks: the server calls it for each next piece
  // once the previous one is written, so only one piece is in memory at a
  // time. It answers through the Piece, on the HTTP thread. `body`, when
  // not empty, goes first.
  std::function<void(Piece deliver)> next_piece;
};

// Answers one request, once, on the HTTP thread.
using Respond = std::function<void(Response)>;
using Handle = std::function<void(Request, Respond)>;

}  // namespace kiln::web
