#include "server.h"

#include "wire.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <chrono>
#include <csignal>
#include <deque>
#include <thread>

#include <fcntl.h>
#include <pthread.h>

namespace kiln::buildbot_worker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using PlainWebSocket = websocket::stream<beast::tcp_stream>;
using TlsWebSocket = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

namespace {

// The worker gives up on a handshake after 5 s; ours must never be the
// slow side, but a client that sends nothing is dropped after this.
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
// Transfer chunks are `blocksize` bytes (256 KiB by default); anything this
// large is no protocol message.
constexpr size_t kMaxMessage = 64u * 1024 * 1024;
// Messages handed to the loop but not yet handled: reading stops above
// this, so a worker printing faster than the master stores stays bounded.
constexpr size_t kMaxBacklog = 4u * 1024 * 1024;

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::weak_ptr<Server>>& registry() {
  static std::map<std::string, std::weak_ptr<Server>> servers;
  return servers;
}

std::string endpoint_text(const tcp::endpoint& e) {
  const auto address = e.address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  return host + ":" + std::to_string(e.port());
}

// Commands the master spawns (local workers, master-shell steps) must not
// inherit the listener or a worker's connection.
template <class Socket>
void close_on_exec(Socket& socket) {
  ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
}

bool same_secret(const std::string& a, const std::string& b) {
  // Length leaks, content does not.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

// One accepted TCP connection, from the TLS handshake (over TlsWebSocket)
// or the upgrade request to its end. Server thread only.
template <class WebSocket>
class BasicConnection final : public Connection, public std::enable_shared_from_this<BasicConnection<WebSocket>> {
 public:
  BasicConnection(Server& server, WebSocket ws) : server_(server), ws_(std::move(ws)) {
    beast::error_code ec;
    const auto remote = beast::get_lowest_layer(ws_).socket().remote_endpoint(ec);
    peer_ = ec ? std::string("?") : endpoint_text(remote);
  }

  void run() {
    beast::get_lowest_layer(ws_).expires_after(kHandshakeTimeout);
    if constexpr (std::is_same_v<WebSocket, TlsWebSocket>) {
      ws_.next_layer().async_handshake(ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) return self->abort("TLS handshake failed: " + ec.message());
        self->read_request();
      });
    } else {
      read_request();
    }
  }

  void start_reading() override {
    started_ = true;
    read();
  }

  void read() override {
    if (!started_ || reading_ || closed_) return;
    reading_ = true;
    ws_.async_read(in_, [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void send(std::string payload) override {
    if (closed_) return;
    out_.push_back(std::move(payload));
    if (!writing_) write_next();
  }

  void abort(const std::string& reason) override {
    if (closed_) return;
    closed_ = true;
    beast::get_lowest_layer(ws_).close();
    if (link_) link_->deliver({LinkEvent::Kind::kClosed, reason});
    server_.untrack(this);
  }

 private:
  void read_request() {
    http::async_read(ws_.next_layer(), buffer_, request_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_request(ec); });
  }

  void on_request(beast::error_code ec) {
    if (ec) return abort("no upgrade request: " + ec.message());
    if (!websocket::is_upgrade(request_)) return refuse(http::status::bad_request);
    std::optional<std::string_view> header;
    if (auto it = request_.find(http::field::authorization); it != request_.end()) {
      header = std::string_view(it->value().data(), it->value().size());
    }
    auto credentials = parse_basic_auth(header);
    if (const int* status = std::get_if<int>(&credentials)) {
      return refuse(*status == 400 ? http::status::bad_request : http::status::unauthorized);
    }
    auto& c = std::get<Credentials>(credentials);
    if (server_.check(c.name, c.password) != Server::Auth::kOk) return refuse(http::status::unauthorized);
    name_ = c.name;

    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = kHandshakeTimeout;
    timeouts.idle_timeout = websocket::stream_base::none();
    timeouts.keep_alive_pings = false;
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "Kiln buildbot-worker"); }));
    ws_.read_message_max(kMaxMessage);
    ws_.auto_fragment(false);
    ws_.binary(true);
    ws_.async_accept(request_, [self = this->shared_from_this()](beast::error_code ec) { self->on_accept(ec); });
  }

  void refuse(http::status status) {
    auto res = std::make_shared<http::response<http::empty_body>>(status, 11);
    res->keep_alive(false);
    res->prepare_payload();
    http::async_write(ws_.next_layer(), *res, [self = this->shared_from_this(), res](beast::error_code, size_t) {
      self->abort("refused: " + std::string(res->reason()));
    });
  }

  void on_accept(beast::error_code ec) {
    if (ec) return abort("WebSocket handshake failed: " + ec.message());
    link_ = std::make_shared<Link>(server_.weak_from_this(), peer_);
    link_->bind(this->weak_from_this());
    if (!server_.dispatch(name_, link_)) abort("no worker '" + name_ + "' is configured any more");
  }

  void on_read(beast::error_code ec) {
    reading_ = false;
    if (ec) {
      if (ec == websocket::error::closed) return abort("the worker closed the connection");
      if (ec == beast::http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset) {
        return abort("the worker dropped the connection");
      }
      return abort(ec.message());
    }
    // Text frames carry nothing in this protocol; Buildbot ignores them too.
    if (ws_.got_binary()) {
      std::string payload = beast::buffers_to_string(in_.data());
      in_.consume(in_.size());
      link_->deliver({LinkEvent::Kind::kMessage, std::move(payload)});
    } else {
      in_.consume(in_.size());
    }
    if (link_->may_read()) read();
  }

  void write_next() {
    writing_ = true;
    ws_.async_write(asio::buffer(out_.front()), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->abort("cannot write to the worker: " + ec.message());
      self->out_.pop_front();
      if (!self->out_.empty() && !self->closed_) self->write_next();
    });
  }

  Server& server_;
  WebSocket ws_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  beast::flat_buffer in_;
  std::deque<std::string> out_;
  std::shared_ptr<Link> link_;
  std::string peer_, name_;
  bool started_ = false, reading_ = false, writing_ = false, closed_ = false;
};

// ---------------------------------------------------------------------------
// Link

void Link::set_sink(Sink sink) {
  std::lock_guard lock(sink_mutex_);
  sink_ = std::move(sink);
}

template <class Fn>
void Link::on_server(Fn fn) {
  auto server = server_.lock();
  if (!server) return;
  asio::post(server->executor(), [connection = connection_, fn = std::move(fn)]() mutable {
    if (auto c = connection.lock()) fn(*c);
  });
}

void Link::send(std::string payload) {
  on_server([payload = std::move(payload)](Connection& c) mutable { c.send(std::move(payload)); });
}

void Link::start_reading() {
  on_server([](Connection& c) { c.start_reading(); });
}

void Link::close(std::string reason) {
  on_server([reason = std::move(reason)](Connection& c) { c.abort(reason); });
}

void Link::consumed(size_t bytes) {
  const size_t left = backlog_.fetch_sub(bytes) - bytes;
  if (left <= kMaxBacklog && paused_.exchange(false)) on_server([](Connection& c) { c.read(); });
}

bool Link::deliver(LinkEvent event) {
  std::lock_guard lock(sink_mutex_);
  if (!sink_) return false;
  if (event.kind == LinkEvent::Kind::kMessage) backlog_ += event.data.size();
  sink_(std::move(event));
  return true;
}

bool Link::may_read() {
  if (backlog_ <= kMaxBacklog) return true;
  paused_ = true;
  // consumed() may have drained the backlog between the check and the
  // flag: whoever clears the flag resumes.
  return backlog_ <= kMaxBacklog && paused_.exchange(false);
}

// ---------------------------------------------------------------------------
// Server

struct Server::Impl {
  asio::io_context io{1};
  std::optional<ssl::context> tls;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io};
  std::thread thread;
  std::map<const Connection*, std::shared_ptr<Connection>> connections;
};

Server::Server(std::string key, std::optional<TlsFiles> tls)
    : key_(std::move(key)), tls_(std::move(tls)), impl_(std::make_unique<Impl>()) {}

std::optional<tcp::endpoint> Server::parse_listen(const std::string& listen, std::string& error) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    error = "listen address '" + listen + "' is not host:port";
    return std::nullopt;
  }
  std::string host = listen.substr(0, colon);
  const std::string port_text = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  unsigned long port = 0;
  try {
    size_t used = 0;
    port = std::stoul(port_text, &used);
    if (used != port_text.size() || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    error = "listen address '" + listen + "' has no valid port";
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    error = "listen address '" + listen + "': '" + host + "' is not an IP address";
    return std::nullopt;
  }
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

std::shared_ptr<Server> Server::acquire(const std::string& listen, const std::optional<TlsFiles>& tls,
                                        std::string& error) {
  auto endpoint = parse_listen(listen, error);
  if (!endpoint) return nullptr;
  const std::string key = endpoint_text(*endpoint);
  std::shared_ptr<Server> failed;  // destroyed after the lock: ~Server takes it
  {
    std::lock_guard lock(registry_mutex());
    if (auto it = registry().find(key); it != registry().end()) {
      if (auto existing = it->second.lock()) {
        if (existing->tls_ == tls) return existing;
        error = "the workers listening on " + key + " must agree on tls (the same cert and key, or none)";
        return nullptr;
      }
    }
    std::shared_ptr<Server> server(new Server(key, tls));
    if (server->listen(*endpoint, error)) {
      registry()[key] = server;
      return server;
    }
    failed = std::move(server);
  }
  return nullptr;
}

bool Server::listen(const tcp::endpoint& endpoint, std::string& error) {
  auto& acceptor = impl_->acceptor;
  boost::system::error_code ec;
  if (tls_) {
    error = kiln::tls::load_server_context(impl_->tls.emplace(ssl::context::tls_server), *tls_);
    if (!error.empty()) return false;
  }
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) close_on_exec(acceptor);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error = "cannot listen on " + key_ + ": " + ec.message();
    return false;
  }
  port_ = acceptor.local_endpoint(ec).port();
  impl_->guard.emplace(impl_->io.get_executor());
  accept_next();
  impl_->thread = std::thread([io = &impl_->io] {
    // Writes to a vanished worker must not kill the master.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    io->run();
  });
  return true;
}

void Server::accept_next() {
  impl_->acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !impl_->acceptor.is_open()) return;
    if (ec) {
      // Out of descriptors and the like: try again shortly, do not spin.
      impl_->retry.expires_after(std::chrono::milliseconds(200));
      impl_->retry.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec) accept_next();
      });
      return;
    }
    close_on_exec(socket);
    boost::system::error_code ignored;
    socket.set_option(asio::socket_base::keep_alive(true), ignored);
    socket.set_option(tcp::no_delay(true), ignored);
    if (impl_->tls) {
      auto c = std::make_shared<BasicConnection<TlsWebSocket>>(*this, TlsWebSocket(std::move(socket), *impl_->tls));
      track(c);
      c->run();
    } else {
      auto c = std::make_shared<BasicConnection<PlainWebSocket>>(*this, PlainWebSocket(std::move(socket)));
      track(c);
      c->run();
    }
    accept_next();
  });
}

Server::~Server() {
  {
    std::lock_guard lock(registry_mutex());
    auto it = registry().find(key_);
    if (it != registry().end() && it->second.expired()) registry().erase(it);
  }
  if (impl_->thread.joinable()) {
    asio::post(impl_->io, [this] {
      boost::system::error_code ignored;
      impl_->acceptor.close(ignored);
      impl_->retry.cancel();
      auto connections = impl_->connections;
      for (auto& [_, c] : connections) c->abort("the master stopped listening");
      impl_->io.stop();
    });
    impl_->guard.reset();
    impl_->thread.join();
  }
}

bool Server::add_endpoint(const std::string& name, std::string password, OnConnect on_connect,
                          std::string& error) {
  std::lock_guard lock(endpoints_mutex_);
  if (endpoints_.count(name) != 0) {
    error = "a worker named '" + name + "' already listens on " + key_;
    return false;
  }
  endpoints_[name] = Endpoint{std::move(password), std::move(on_connect)};
  return true;
}

void Server::remove_endpoint(const std::string& name) {
  std::lock_guard lock(endpoints_mutex_);
  endpoints_.erase(name);
}

Server::Auth Server::check(const std::string& name, const std::string& password) {
  std::lock_guard lock(endpoints_mutex_);
  auto it = endpoints_.find(name);
  if (it == endpoints_.end() || !same_secret(it->second.password, password)) return Auth::kUnknown;
  return Auth::kOk;
}

bool Server::dispatch(const std::string& name, std::shared_ptr<Link> link) {
  std::lock_guard lock(endpoints_mutex_);
  auto it = endpoints_.find(name);
  if (it == endpoints_.end()) return false;
  it->second.on_connect(std::move(link));
  return true;
}

void Server::track(const std::shared_ptr<Connection>& c) { impl_->connections[c.get()] = c; }

void Server::untrack(const Connection* c) { impl_->connections.erase(c); }

boost::asio::any_io_executor Server::executor() { return impl_->io.get_executor(); }

}  // namespace kiln::buildbot_worker
