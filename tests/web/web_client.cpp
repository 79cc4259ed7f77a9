// The tests' HTTP and WebSocket client over Boost.Beast.

#include "web/web_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <cctype>

namespace kiln::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;

namespace {
tcp::endpoint loopback(uint16_t port) {
  return tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port);
}
}  // namespace

struct HttpConnection::State {
  boost::asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  bool open = true;
};

HttpConnection::HttpConnection(uint16_t port) : state_(std::make_unique<State>()) {
  state_->stream.expires_after(std::chrono::seconds(20));
  state_->stream.connect(loopback(port));
}

HttpConnection::~HttpConnection() {
  boost::system::error_code ignored;
  state_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

HttpReply HttpConnection::request(const std::string& method, const std::string& target,
                                  const std::string& body,
                                  const std::map<std::string, std::string>& headers) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(true);
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() && headers.find("Content-Type") == headers.end()) {
    req.set(http::field::content_type, "application/json");
  }
  req.body() = body;
  req.prepare_payload();
  state_->stream.expires_after(std::chrono::seconds(20));
  http::write(state_->stream, req);
  return read_reply();
}

HttpReply HttpConnection::raw(const std::string& bytes) {
  state_->stream.expires_after(std::chrono::seconds(20));
  boost::asio::write(state_->stream, boost::asio::buffer(bytes));
  return read_reply();
}

HttpReply HttpConnection::read_reply() {
  http::response_parser<http::string_body> parser;
  parser.body_limit(512 * 1024 * 1024);
  http::read(state_->stream, state_->buffer, parser);
  auto& res = parser.get();
  HttpReply reply;
  reply.status = res.result_int();
  reply.body = res.body();
  reply.chunked = parser.chunked();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    reply.headers[name] = std::string(field.value());
  }
  state_->open = res.keep_alive();
  return reply;
}

bool HttpConnection::open() const { return state_->open; }

struct LiveConnection::State {
  boost::asio::io_context io;
  websocket::stream<beast::tcp_stream> ws{io};
  beast::flat_buffer buffer;
};

LiveConnection::LiveConnection(uint16_t port) : state_(std::make_unique<State>()) {
  auto& lowest = beast::get_lowest_layer(state_->ws);
  lowest.expires_after(std::chrono::seconds(20));
  lowest.connect(loopback(port));
  lowest.expires_never();
  state_->ws.handshake("127.0.0.1:" + std::to_string(port), "/ws");
}

LiveConnection::~LiveConnection() {
  boost::system::error_code ignored;
  beast::get_lowest_layer(state_->ws).socket().shutdown(tcp::socket::shutdown_both, ignored);
}

void LiveConnection::send(const nlohmann::json& frame) {
  state_->ws.text(true);
  state_->ws.write(boost::asio::buffer(frame.dump()));
}

std::optional<nlohmann::json> LiveConnection::receive(std::chrono::milliseconds limit) {
  std::optional<nlohmann::json> out;
  bool done = false;
  state_->ws.async_read(state_->buffer, [&](const boost::system::error_code& ec, size_t) {
    done = true;
    if (ec) return;
    out = nlohmann::json::parse(beast::buffers_to_string(state_->buffer.data()), nullptr, false);
    state_->buffer.consume(state_->buffer.size());
  });
  state_->io.restart();
  state_->io.run_for(limit);
  if (!done) {
    // Nothing came: cancel the read, and let it finish cancelled.
    beast::get_lowest_layer(state_->ws).socket().cancel();
    state_->io.restart();
    state_->io.run();
  }
  return out;
}

}  // namespace kiln::testing
