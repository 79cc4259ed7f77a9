// HttpServer over Boost.Beast: one io_context thread runs the acceptor,
// every HTTP session and every WebSocket session. A session reads one
// request at a time (HTTP/1.1 keep-alive), hands it to the handler, and
// writes the answer when the handler responds (later, from the master's
// loop, through the poster); a streamed body goes out as chunks, one piece
// fetched after the previous one is written. The /ws upgrade becomes a
// LiveSession speaking Buildbot's subscription frames (live.h).

#include "http_server.h"

#include "live.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <optional>
#include <set>
#include <thread>
#include <utility>

namespace kiln::web {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;

// A client that sends nothing for this long is dropped.
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr size_t kMaxBodyBytes = 1024 * 1024;
constexpr size_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxConnections = 512;
// A live client this many frames behind is too slow to follow: dropped.
constexpr size_t kMaxQueuedFrames = 10000;

class Server;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Server& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}
  void start() { read_next(); }
  void close();

 private:
  void read_next();
  void on_read(const error_code& ec);
  void handle();
  void refuse(http::status status, const std::string& message);
  void write(Response response);
  template <class Message>
  void set_header(Message& message, const Response& r) const;
  void write_piece(std::string piece, bool more);
  void next_piece();
  void after_write(const error_code& ec);

  Server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  // A chunked answer in progress.
  http::response<http::empty_body> stream_header_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  std::function<void(Piece)> next_;
  std::string piece_;
  bool keep_alive_ = false;
  bool closed_ = false;
};

class LiveSession : public std::enable_shared_from_this<LiveSession> {
 public:
  LiveSession(Server& server, beast::tcp_stream stream)
      : server_(server), ws_(std::move(stream)) {}
  void start(http::request<http::string_body> upgrade);
  void event(std::string_view routing_key, const std::string& event_json);
  void close();

 private:
  void read_next();
  void send(std::string frame);
  void write_next();

  Server& server_;
  websocket::stream<beast::tcp_stream> ws_;
  http::request<http::string_body> upgrade_;  // read by the accept
  beast::flat_buffer buffer_;
  LiveClient client_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool closed_ = false;
};

class Server final : public HttpServer {
 public:
  Server(ServerOptions options, Handle handle, LogFn log)
      : options_(std::move(options)), handle_(std::move(handle)), log_(std::move(log)) {}
  ~Server() override { stop(); }

  std::string start() override {
    error_code ec;
    const auto address = boost::asio::ip::make_address(options_.host, ec);
    if (ec) return "'" + options_.host + "' is not an IP address";
    const tcp::endpoint endpoint(address, options_.port);
    tcp::acceptor acceptor(*io_);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return "cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " +
             ec.message();
    }
    port_ = acceptor.local_endpoint().port();
    acceptor_.emplace(std::move(acceptor));
    accept_next();
    thread_ = std::thread([this] {
      // A handler that throws must not end the thread (and the master).
      for (;;) {
        try {
          io_->run();
          return;
        } catch (const std::exception& e) {
          log(KILN_LOG_ERROR, std::string("HTTP server error: ") + e.what());
        } catch (...) {
          log(KILN_LOG_ERROR, "HTTP server error of unknown type");
        }
      }
    });
    return {};
  }

  void stop() override {
    if (!thread_.joinable()) return;
    io_->stop();
    thread_.join();
    // The thread is gone: the sessions are this thread's to drop.
    http_sessions_.clear();
    live_sessions_.clear();
    live_count_ = 0;
    acceptor_.reset();
  }

  uint16_t port() const override { return port_; }

  HttpPoster poster() const override {
    return [io = io_](std::function<void()> fn) { boost::asio::post(*io, std::move(fn)); };
  }

  void publish(std::string routing_key, std::string event_json) override {
    boost::asio::post(*io_, [this, key = std::move(routing_key), event = std::move(event_json)] {
      // Copied: a session that fails while sending leaves the set.
      auto sessions = live_sessions_;
      for (const auto& s : sessions) s->event(key, event);
    });
  }

  bool has_live_clients() const override { return live_count_.load() > 0; }

  void log(kiln_log_level level, std::string message) const { log_(level, std::move(message)); }
  const Handle& handler() const { return handle_; }

  void upgrade(beast::tcp_stream stream, http::request<http::string_body> request) {
    auto session = std::make_shared<LiveSession>(*this, std::move(stream));
    live_sessions_.insert(session);
    ++live_count_;
    session->start(std::move(request));
  }
  void forget(HttpSession* session) { erase(http_sessions_, session); }
  void forget(LiveSession* session) {
    if (erase(live_sessions_, session)) --live_count_;
  }

 private:
  template <class T>
  static bool erase(std::set<std::shared_ptr<T>>& set, T* session) {
    for (auto it = set.begin(); it != set.end(); ++it) {
      if (it->get() == session) {
        set.erase(it);
        return true;
      }
    }
    return false;
  }

  void accept_next() {
    acceptor_->async_accept([this](const error_code& ec, tcp::socket socket) {
      if (!acceptor_ || !acceptor_->is_open()) return;
      if (ec) {
        log(KILN_LOG_WARN, "accept failed: " + ec.message());
      } else if (http_sessions_.size() + live_sessions_.size() >= kMaxConnections) {
        error_code ignored;
        socket.close(ignored);
      } else {
        auto session = std::make_shared<HttpSession>(*this, std::move(socket));
        http_sessions_.insert(session);
        session->start();
      }
      accept_next();
    });
  }

  const ServerOptions options_;
  const Handle handle_;
  const LogFn log_;
  // Declared before everything that uses it, so it is destroyed last
  // (unless a poster still holds it).
  std::shared_ptr<boost::asio::io_context> io_ = std::make_shared<boost::asio::io_context>();
  std::optional<tcp::acceptor> acceptor_;
  std::set<std::shared_ptr<HttpSession>> http_sessions_;  // the HTTP thread's
  std::set<std::shared_ptr<LiveSession>> live_sessions_;  // the HTTP thread's
  std::atomic<size_t> live_count_{0};
  uint16_t port_ = 0;
  std::thread thread_;
};

// ---- HTTP ---------------------------------------------------------------------

void HttpSession::read_next() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(kMaxBodyBytes);
  parser_->header_limit(kMaxHeaderBytes);
  stream_.expires_after(kIdleTimeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](const error_code& ec, size_t) { self->on_read(ec); });
}

void HttpSession::on_read(const error_code& ec) {
  if (closed_) return;
  if (ec == http::error::body_limit) {
    return refuse(http::status::payload_too_large,
                  "the body is larger than " + std::to_string(kMaxBodyBytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    return refuse(http::status::request_header_fields_too_large,
                  "the request's header is larger than " + std::to_string(kMaxHeaderBytes) +
                      " bytes");
  }
  if (ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == boost::asio::error::operation_aborted ||
        ec == boost::asio::error::connection_reset || ec == boost::asio::error::eof ||
        ec == http::error::partial_message) {
      return close();
    }
    return refuse(http::status::bad_request, "malformed HTTP request: " + ec.message());
  }
  handle();
}

void HttpSession::handle() {
  auto& request = parser_->get();
  keep_alive_ = request.keep_alive();
  const std::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  if (path == "/ws" && websocket::is_upgrade(request)) {
    // The session hands its connection over and ends.
    stream_.expires_never();
    server_.upgrade(std::move(stream_), parser_->release());
    closed_ = true;
    server_.forget(this);
    return;
  }
  Request r;
  r.method = std::string(request.method_string());
  r.path = std::string(path);
  if (question != std::string_view::npos) r.query = std::string(target.substr(question + 1));
  for (const auto& field : request) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  r.body = std::move(request.body());
  // The handler answers later (after a trip to the master's loop): no
  // timeout meanwhile, so a slow answer is not mistaken for an idle client.
  stream_.expires_never();
  std::weak_ptr<HttpSession> weak = shared_from_this();
  server_.handler()(std::move(r), [weak](Response response) {
    if (auto self = weak.lock()) self->write(std::move(response));
  });
}

void HttpSession::refuse(http::status status, const std::string& message) {
  keep_alive_ = false;
  Response r;
  r.status = static_cast<unsigned>(status);
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  r.body = "{\"error\": \"" + escaped + "\"}";
  write(std::move(r));
}

template <class Message>
void HttpSession::set_header(Message& message, const Response& r) const {
  message.version(11);
  message.result(r.status);
  message.set(http::field::server, "kiln");
  message.set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) message.insert(name, value);
  message.keep_alive(keep_alive_);
}

void HttpSession::write(Response r) {
  if (closed_) return;
  stream_.expires_after(kIdleTimeout);
  if (!r.next_piece) {
    response_ = {};
    set_header(response_, r);
    response_.body() = std::move(r.body);
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](const error_code& ec, size_t) {
                        self->after_write(ec);
                      });
    return;
  }
  stream_header_ = {};
  set_header(stream_header_, r);
  stream_header_.chunked(true);
  serializer_.emplace(stream_header_);
  next_ = std::move(r.next_piece);
  http::async_write_header(stream_, *serializer_,
                           [self = shared_from_this(), first = std::move(r.body)](
                               const error_code& ec, size_t) mutable {
                             if (ec) return self->close();
                             self->write_piece(std::move(first), true);
                           });
}

// Writes one chunk (none for an empty piece), then asks for the next piece
// or ends the body.
void HttpSession::write_piece(std::string piece, bool more) {
  if (closed_) return;
  piece_ = std::move(piece);
  auto then = [self = shared_from_this(), more](const error_code& ec, size_t) {
    if (ec) return self->close();
    if (more) return self->next_piece();
    self->piece_.clear();
    self->next_ = nullptr;
    boost::asio::async_write(self->stream_, http::make_chunk_last(),
                             [self](const error_code& ec2, size_t) { self->after_write(ec2); });
  };
  stream_.expires_after(kIdleTimeout);
  if (piece_.empty()) return then({}, 0);
  boost::asio::async_write(stream_, http::make_chunk(boost::asio::buffer(piece_)), std::move(then));
}

void HttpSession::next_piece() {
  if (closed_) return;
  stream_.expires_never();
  std::weak_ptr<HttpSession> weak = shared_from_this();
  next_([weak](std::string piece, bool more) {
    if (auto self = weak.lock()) self->write_piece(std::move(piece), more);
  });
}

void HttpSession::after_write(const error_code& ec) {
  if (ec || !keep_alive_) return close();
  read_next();
}

void HttpSession::close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  server_.forget(this);  // may drop the last reference: nothing after this
}

// ---- WebSocket ------------------------------------------------------------------

void LiveSession::start(http::request<http::string_body> upgrade) {
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "kiln"); }));
  upgrade_ = std::move(upgrade);
  ws_.async_accept(upgrade_, [self = shared_from_this()](const error_code& ec) {
    if (ec) return self->close();
    self->read_next();
  });
}

void LiveSession::read_next() {
  if (closed_) return;
  ws_.async_read(buffer_, [self = shared_from_this()](const error_code& ec, size_t) {
    if (ec) return self->close();
    const auto data = self->buffer_.data();
    std::string_view text(static_cast<const char*>(data.data()), data.size());
    std::string reply = self->client_.on_frame(text);
    self->buffer_.consume(self->buffer_.size());
    self->send(std::move(reply));
    self->read_next();
  });
}

void LiveSession::event(std::string_view routing_key, const std::string& event_json) {
  if (closed_ || !client_.wants(routing_key)) return;
  if (queue_.size() >= kMaxQueuedFrames) {
    server_.log(KILN_LOG_WARN, "a live client fell " + std::to_string(kMaxQueuedFrames) +
                                   " events behind: dropped");
    return close();
  }
  send(event_frame(routing_key, event_json));
}

void LiveSession::send(std::string frame) {
  queue_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void LiveSession::write_next() {
  if (closed_ || queue_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(queue_.front()),
                  [self = shared_from_this()](const error_code& ec, size_t) {
                    if (ec) return self->close();
                    self->queue_.pop_front();
                    self->write_next();
                  });
}

void LiveSession::close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).close();
  server_.forget(this);  // may drop the last reference: nothing after this
}

}  // namespace

std::unique_ptr<HttpServer> HttpServer::make(ServerOptions options, Handle handle, LogFn log) {
  return std::make_unique<Server>(std::move(options), std::move(handle), std::move(log));
}

}  // namespace kiln::web
