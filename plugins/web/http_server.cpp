// HttpServer over Boost.Beast: one io_context thread runs the acceptor,
// every HTTP session and every WebSocket session. A session reads one
// request at a time (HTTP/1.1 keep-alive), hands it to the handler, and
// writes the answer when the handler responds (later, from the master's
// loop, through the poster); a streamed body goes out as chunks, one piece
// fetched after the previous one is written. The /ws upgrade becomes a
// LiveSession speaking Buildbot's subscription frames (live.h). With TLS,
// both run over an ssl_stream after the handshake (HttpSession and
// LiveSession are templates of the stream). Each answer, once written, is
// reported to the access log callback.

#include "http_server.h"

#include "live.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
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
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "tls_server.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <type_traits>
#include <optional>
#include <set>
#include <thread>
#include <utility>

namespace kiln::web {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
template <class Stream>
constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

// A client that sends nothing for this long is dropped.
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr size_t kMaxBodyBytes = 1024 * 1024;
constexpr size_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxConnections = 512;
// A live client this many frames behind is too slow to follow: dropped.
constexpr size_t kMaxQueuedFrames = 10000;

class Server;

// What the server holds of a connection, plain or TLS.
class Session {
 public:
  virtual ~Session() = default;
  virtual void close() = 0;
};

class LiveSessionBase : public Session {
 public:
  virtual void event(std::string_view routing_key, const std::string& event_json) = 0;
};

template <class Stream>
class HttpSession : public Session, public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Server& server, Stream stream) : server_(server), stream_(std::move(stream)) {}
  void start();
  void close() override;

 private:
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }
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
  void log_access();

  Server& server_;
  Stream stream_;
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
  // The request being answered, for the access log.
  AccessRecord access_;
};

template <class Stream>
class LiveSession : public LiveSessionBase, public std::enable_shared_from_this<LiveSession<Stream>> {
 public:
  LiveSession(Server& server, Stream stream) : server_(server), ws_(std::move(stream)) {}
  void start(http::request<http::string_body> upgrade);
  void event(std::string_view routing_key, const std::string& event_json) override;
  void close() override;

 private:
  void read_next();
  void send(std::string frame);
  void write_next();

  Server& server_;
  websocket::stream<Stream> ws_;
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
    if (options_.tls) {
      auto error = kiln::tls::load_server_context(tls_.emplace(ssl::context::tls_server), *options_.tls);
      if (!error.empty()) return error;
    }
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

  template <class Stream>
  void upgrade(Stream stream, http::request<http::string_body> request) {
    auto session = std::make_shared<LiveSession<Stream>>(*this, std::move(stream));
    live_sessions_.insert(session);
    ++live_count_;
    session->start(std::move(request));
  }
  void forget_http(Session* session) { erase(http_sessions_, session); }
  void forget_live(Session* session) {
    if (erase(live_sessions_, session)) --live_count_;
  }
  void access(const AccessRecord& record) const {
    if (options_.access) options_.access(record);
  }

 private:
  template <class T>
  static bool erase(std::set<std::shared_ptr<T>>& set, Session* session) {
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
        if (tls_) {
          auto session = std::make_shared<HttpSession<TlsStream>>(*this, TlsStream(std::move(socket), *tls_));
          http_sessions_.insert(session);
          session->start();
        } else {
          auto session = std::make_shared<HttpSession<PlainStream>>(*this, PlainStream(std::move(socket)));
          http_sessions_.insert(session);
          session->start();
        }
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
  std::optional<ssl::context> tls_;
  std::optional<tcp::acceptor> acceptor_;
  std::set<std::shared_ptr<Session>> http_sessions_;          // the HTTP thread's
  std::set<std::shared_ptr<LiveSessionBase>> live_sessions_;  // the HTTP thread's
  std::atomic<size_t> live_count_{0};
  uint16_t port_ = 0;
  std::thread thread_;
};

// ---- HTTP ---------------------------------------------------------------------

template <class Stream>
void HttpSession<Stream>::start() {
  error_code ec;
  const auto peer = lowest().socket().remote_endpoint(ec);
  if (!ec) access_.peer = peer.address().to_string();
  if constexpr (kTls<Stream>) {
    lowest().expires_after(kIdleTimeout);
    stream_.async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](const error_code& e) {
      if (e) return self->close();  // not a TLS client, or gone
      self->read_next();
    });
  } else {
    read_next();
  }
}

template <class Stream>
void HttpSession<Stream>::read_next() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(kMaxBodyBytes);
  parser_->header_limit(kMaxHeaderBytes);
  lowest().expires_after(kIdleTimeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = this->shared_from_this()](const error_code& ec, size_t) { self->on_read(ec); });
}

template <class Stream>
void HttpSession<Stream>::on_read(const error_code& ec) {
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
        ec == http::error::partial_message || ec == ssl::error::stream_truncated) {
      return close();
    }
    return refuse(http::status::bad_request, "malformed HTTP request: " + ec.message());
  }
  handle();
}

template <class Stream>
void HttpSession<Stream>::handle() {
  auto& request = parser_->get();
  keep_alive_ = request.keep_alive();
  const std::string_view target(request.target().data(), request.target().size());
  access_.method = std::string(request.method_string());
  access_.target = std::string(target);
  access_.version = request.version();
  access_.referer = std::string(request[http::field::referer]);
  access_.user_agent = std::string(request[http::field::user_agent]);
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  if (path == "/ws" && websocket::is_upgrade(request)) {
    // The session hands its connection over and ends.
    access_.status = 101;
    access_.bytes = 0;
    log_access();
    lowest().expires_never();
    server_.upgrade(std::move(stream_), parser_->release());
    closed_ = true;
    server_.forget_http(this);
    return;
  }
  Request r;
  r.method = access_.method;
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
  lowest().expires_never();
  std::weak_ptr<HttpSession> weak = this->shared_from_this();
  server_.handler()(std::move(r), [weak](Response response) {
    if (auto self = weak.lock()) self->write(std::move(response));
  });
}

template <class Stream>
void HttpSession<Stream>::refuse(http::status status, const std::string& message) {
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

template <class Stream>
template <class Message>
void HttpSession<Stream>::set_header(Message& message, const Response& r) const {
  message.version(11);
  message.result(r.status);
  message.set(http::field::server, "kiln");
  message.set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) message.insert(name, value);
  message.keep_alive(keep_alive_);
}

template <class Stream>
void HttpSession<Stream>::write(Response r) {
  if (closed_) return;
  lowest().expires_after(kIdleTimeout);
  access_.status = r.status;
  access_.bytes = r.body.size();
  if (!r.next_piece) {
    response_ = {};
    set_header(response_, r);
    response_.body() = std::move(r.body);
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = this->shared_from_this()](const error_code& ec, size_t) {
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
                           [self = this->shared_from_this(), first = std::move(r.body)](
                               const error_code& ec, size_t) mutable {
                             if (ec) return self->close();
                             self->write_piece(std::move(first), true);
                           });
}

// Writes one chunk (none for an empty piece), then asks for the next piece
// or ends the body.
template <class Stream>
void HttpSession<Stream>::write_piece(std::string piece, bool more) {
  if (closed_) return;
  piece_ = std::move(piece);
  auto then = [self = this->shared_from_this(), more](const error_code& ec, size_t) {
    if (ec) return self->close();
    if (more) return self->next_piece();
    self->piece_.clear();
    self->next_ = nullptr;
    boost::asio::async_write(self->stream_, http::make_chunk_last(),
                             [self](const error_code& ec2, size_t) { self->after_write(ec2); });
  };
  lowest().expires_after(kIdleTimeout);
  if (piece_.empty()) return then({}, 0);
  boost::asio::async_write(stream_, http::make_chunk(boost::asio::buffer(piece_)), std::move(then));
}

template <class Stream>
void HttpSession<Stream>::next_piece() {
  if (closed_) return;
  lowest().expires_never();
  std::weak_ptr<HttpSession> weak = this->shared_from_this();
  next_([weak](std::string piece, bool more) {
    if (auto self = weak.lock()) {
      self->access_.bytes += piece.size();
      self->write_piece(std::move(piece), more);
    }
  });
}

template <class Stream>
void HttpSession<Stream>::after_write(const error_code& ec) {
  log_access();
  if (ec || !keep_alive_) return close();
  read_next();
}

template <class Stream>
void HttpSession<Stream>::log_access() {
  access_.when = std::chrono::system_clock::now();
  server_.access(access_);
}

template <class Stream>
void HttpSession<Stream>::close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest().close();
  server_.forget_http(this);  // may drop the last reference: nothing after this
}

// ---- WebSocket ------------------------------------------------------------------

template <class Stream>
void LiveSession<Stream>::start(http::request<http::string_body> upgrade) {
  ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  ws_.set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "kiln"); }));
  upgrade_ = std::move(upgrade);
  ws_.async_accept(upgrade_, [self = this->shared_from_this()](const error_code& ec) {
    if (ec) return self->close();
    self->read_next();
  });
}

template <class Stream>
void LiveSession<Stream>::read_next() {
  if (closed_) return;
  ws_.async_read(buffer_, [self = this->shared_from_this()](const error_code& ec, size_t) {
    if (ec) return self->close();
    const auto data = self->buffer_.data();
    std::string_view text(static_cast<const char*>(data.data()), data.size());
    std::string reply = self->client_.on_frame(text);
    self->buffer_.consume(self->buffer_.size());
    self->send(std::move(reply));
    self->read_next();
  });
}

template <class Stream>
void LiveSession<Stream>::event(std::string_view routing_key, const std::string& event_json) {
  if (closed_ || !client_.wants(routing_key)) return;
  if (queue_.size() >= kMaxQueuedFrames) {
    server_.log(KILN_LOG_WARN, "a live client fell " + std::to_string(kMaxQueuedFrames) +
                                   " events behind: dropped");
    return close();
  }
  send(event_frame(routing_key, event_json));
}

template <class Stream>
void LiveSession<Stream>::send(std::string frame) {
  queue_.push_back(std::move(frame));
  if (!writing_) write_next();
}

template <class Stream>
void LiveSession<Stream>::write_next() {
  if (closed_ || queue_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  ws_.text(true);
  ws_.async_write(boost::asio::buffer(queue_.front()),
                  [self = this->shared_from_this()](const error_code& ec, size_t) {
                    if (ec) return self->close();
                    self->queue_.pop_front();
                    self->write_next();
                  });
}

template <class Stream>
void LiveSession<Stream>::close() {
  if (closed_) return;
  closed_ = true;
  error_code ignored;
  beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
  beast::get_lowest_layer(ws_).close();
  server_.forget_live(this);  // may drop the last reference: nothing after this
}

}  // namespace

std::unique_ptr<HttpServer> HttpServer::make(ServerOptions options, Handle handle, LogFn log) {
  return std::make_unique<Server>(std::move(options), std::move(handle), std::move(log));
}

}  // namespace kiln::web
