#include "authenticated_listener.h"

#include <kiln/sdk/base64.hpp>
#include <kiln/sdk/password.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <utility>

namespace kiln::http_listener {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;

namespace {

// A client that sends nothing for this long is dropped.
constexpr auto kIdleTimeout = std::chrono::seconds(30);
// Connections served at once; more are closed on accept.
constexpr size_t kMaxConnections = 64;
// Authorization headers recently accepted: a client polling every second
// (`kiln try --wait`) must not cost a password hash per poll.
constexpr size_t kRememberedLogins = 16;

// The user of an HTTP Basic header that matches one of `logins`, or empty.
std::string authenticated_user(std::string_view header, const std::vector<Login>& logins) {
  constexpr std::string_view kScheme = "basic ";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return {};
  }
  std::string_view token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  const std::string pair = sdk::base64_decode(token).value_or("");
  const auto colon = pair.find(':');
  if (colon == std::string::npos) return {};
  const std::string_view user = std::string_view(pair).substr(0, colon);
  const std::string_view password = std::string_view(pair).substr(colon + 1);
  std::string accepted;
  for (const Login& login : logins) {
    // Every login is looked at, so the timing does not tell which user exists.
    const bool user_ok = sdk::equal_constant_time(user, login.user);
    if (sdk::password_matches(password, login.password) && user_ok && accepted.empty()) {
      accepted = login.user;
    }
  }
  return accepted;
}

std::string methods_of(const std::vector<const Route*>& routes) {
  std::string out;
  for (const Route* r : routes) {
    if (out.find(r->method) != std::string::npos) continue;
    out += (out.empty() ? "" : ", ") + r->method;
  }
  return out;
}

std::string describe_routes(const std::vector<Route>& routes) {
  std::string out;
  for (const Route& r : routes) {
    out += (out.empty() ? "" : ", ") + r.method + " " + r.path + (r.prefix ? "..." : "");
  }
  return out;
}

}  // namespace

std::string interface_problem(const std::string& interface) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(interface, ec);
  if (ec) return "interface '" + interface + "' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)";
  return {};
}

std::string describe_size(size_t bytes) {
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

class Session;

class ListenerServer {
 public:
  ListenerServer(ListenerSettings settings, Handler handler, Log log)
      : settings_(std::move(settings)), handler_(std::move(handler)), log_(std::move(log)) {}
  ~ListenerServer() { stop(); }

  std::string start() {
    if (auto problem = interface_problem(settings_.interface); !problem.empty()) return problem;
    boost::system::error_code ec;
    const tcp::endpoint endpoint(boost::asio::ip::make_address(settings_.interface), settings_.port);
    tcp::acceptor acceptor(*io_);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return "cannot listen on " + settings_.interface + ":" + std::to_string(settings_.port) +
             ": " + ec.message();
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
          log(KILN_LOG_ERROR, std::string("listener error: ") + e.what());
        } catch (...) {
          log(KILN_LOG_ERROR, "listener error of unknown type");
        }
      }
    });
    return {};
  }

  void stop() {
    if (!thread_.joinable()) return;
    io_->stop();
    thread_.join();
    // The thread is gone: the sessions are this thread's to drop.
    sessions_.clear();
    acceptor_.reset();
  }

  uint16_t port() const { return port_; }
  const ListenerSettings& settings() const { return settings_; }
  void log(kiln_log_level level, std::string message) const { log_(level, std::move(message)); }

  // The routes whose path matches `path`.
  std::vector<const Route*> routes_for(std::string_view path) const {
    std::vector<const Route*> out;
    for (const Route& r : settings_.routes) {
      const bool match = r.prefix ? path.size() > r.path.size() && path.starts_with(r.path) : path == r.path;
      if (match) out.push_back(&r);
    }
    return out;
  }

  std::string user_of(std::string_view header) {
    {
      std::lock_guard lock(remembered_mutex_);
      for (const auto& [known, user] : remembered_) {
        if (sdk::equal_constant_time(header, known)) return user;
      }
    }
    std::string user = authenticated_user(header, settings_.logins);
    if (!user.empty()) {
      std::lock_guard lock(remembered_mutex_);
      remembered_.emplace_back(std::string(header), user);
      if (remembered_.size() > kRememberedLogins) remembered_.pop_front();
    }
    return user;
  }

  void handle(Request request, const std::shared_ptr<Session>& session);

  void forget(Session* session) {
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->get() == session) {
        sessions_.erase(it);
        return;
      }
    }
  }

 private:
  void accept_next();

  const ListenerSettings settings_;
  const Handler handler_;
  const Log log_;
  // Declared before everything that uses it, so it is destroyed last
  // (unless an answer still on its way holds it).
  std::shared_ptr<boost::asio::io_context> io_ = std::make_shared<boost::asio::io_context>();
  std::optional<tcp::acceptor> acceptor_;
  std::set<std::shared_ptr<Session>> sessions_;  // the listener's thread only
  std::mutex remembered_mutex_;
  std::deque<std::pair<std::string, std::string>> remembered_;
  uint16_t port_ = 0;
  std::thread thread_;
};

// One client connection: requests one at a time, keep-alive as HTTP/1.1
// asks. While the handler works nothing reads, so the answer cannot
// overtake the next request.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ListenerServer& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void start() { read_next(); }
  void close();
  void respond(http::status status, const json& body, bool close_after = false);

 private:
  void read_next();
  void on_read(const boost::system::error_code& ec);
  void dispatch();
  void linger();

  ListenerServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::string allow_;  // for a 405
  bool keep_alive_ = false;
  // The request was refused before its body was read: the client may still
  // be sending it.
  bool unread_body_ = false;
  bool closed_ = false;
  std::array<char, 16 * 1024> discard_{};
};

void ListenerServer::accept_next() {
  acceptor_->async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
    if (!acceptor_ || !acceptor_->is_open()) return;
    if (ec) {
      log(KILN_LOG_WARN, "accept failed: " + ec.message());
    } else if (sessions_.size() >= kMaxConnections) {
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      auto session = std::make_shared<Session>(*this, std::move(socket));
      sessions_.insert(session);
      session->start();
    }
    accept_next();
  });
}

void ListenerServer::handle(Request request, const std::shared_ptr<Session>& session) {
  std::weak_ptr<Session> weak = session;
  // The answer may come after this server is gone (a restart of the
  // component): it holds the io_context, not the server.
  auto answered = std::make_shared<std::atomic<bool>>(false);
  handler_(std::move(request), [io = io_, weak, answered](unsigned status, json body) {
    // One answer per request, whatever the handler does.
    if (answered->exchange(true)) return;
    // From any thread: the answer is written on the listener's thread. A
    // client that went away meanwhile gets nothing.
    boost::asio::post(*io, [weak, status, body = std::move(body)] {
      if (auto s = weak.lock()) s->respond(static_cast<http::status>(status), body);
    });
  });
}

void Session::read_next() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(server_.settings().max_body_bytes);
  parser_->header_limit(16 * 1024);
  stream_.expires_after(kIdleTimeout);
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                     self->on_read(ec);
                   });
}

void Session::on_read(const boost::system::error_code& ec) {
  if (closed_) return;
  if (ec == http::error::body_limit) {
    unread_body_ = true;
    const size_t limit = server_.settings().max_body_bytes;
    return respond(http::status::bad_request,
                   {{"error", "the body is larger than " + std::to_string(limit) + " bytes (" +
                                  describe_size(limit) + ")"}},
                   true);
  }
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == boost::asio::error::operation_aborted || ec == boost::asio::error::connection_reset ||
      ec == boost::asio::error::eof) {
    return close();
  }
  if (ec) {
    return respond(http::status::bad_request, {{"error", "malformed HTTP request: " + ec.message()}},
                   true);
  }
  dispatch();
}

void Session::dispatch() {
  auto& request = parser_->get();
  keep_alive_ = request.keep_alive();
  const std::string target(request.target());
  const std::string_view path = std::string_view(target).substr(0, target.find('?'));
  const auto routes = server_.routes_for(path);
  if (routes.empty()) {
    return respond(http::status::not_found,
                   {{"error", "no such resource: " + std::string(path) + " (this listener serves " +
                                  describe_routes(server_.settings().routes) + ")"}});
  }
  const std::string method(request.method_string());
  const Route* route = nullptr;
  for (const Route* r : routes) {
    if (r->method == method) route = r;
  }
  if (route == nullptr) {
    allow_ = methods_of(routes);
    return respond(http::status::method_not_allowed,
                   {{"error", "use " + allow_ + " " + std::string(path)}});
  }
  boost::system::error_code ignored;
  const std::string peer = stream_.socket().remote_endpoint(ignored).address().to_string();
  const auto header = request[http::field::authorization];
  std::string user = server_.user_of(std::string_view(header.data(), header.size()));
  if (user.empty()) {
    server_.log(KILN_LOG_WARN, "refused " + method + " " + std::string(path) + " from " + peer +
                                   ": wrong user or password");
    return respond(http::status::unauthorized, {{"error", "wrong user or password"}});
  }
  server_.handle(Request{method, target, std::move(user), peer, std::move(request.body())},
                 shared_from_this());
}

void Session::respond(http::status status, const json& body, bool close_after) {
  if (closed_) return;
  if (close_after) keep_alive_ = false;
  response_ = {};
  response_.version(11);
  response_.result(status);
  response_.set(http::field::server, server_.settings().name);
  response_.set(http::field::content_type, "application/json");
  if (status == http::status::unauthorized) {
    response_.set(http::field::www_authenticate, "Basic realm=\"" + server_.settings().name + "\"");
  }
  if (status == http::status::method_not_allowed) response_.set(http::field::allow, allow_);
  response_.keep_alive(keep_alive_);
  response_.body() = body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  response_.prepare_payload();
  stream_.expires_after(kIdleTimeout);
  http::async_write(stream_, response_,
                    [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                      if (!ec && self->unread_body_) return self->linger();
                      if (ec || !self->keep_alive_) return self->close();
                      self->read_next();
                    });
}

// Closing with unread data would reset the connection, and the client
// could lose the answer before reading it: say we are done sending, then
// read and drop what still comes, for a while.
void Session::linger() {
  if (closed_) return;
  if (unread_body_) {
    unread_body_ = false;
    boost::system::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(5));
  }
  stream_.async_read_some(boost::asio::buffer(discard_),
                          [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                            if (ec) return self->close();
                            self->linger();
                          });
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
  server_.forget(this);  // may drop the last reference: nothing after this
}

AuthenticatedListener::AuthenticatedListener(ListenerSettings settings, Handler handler, Log log)
    : server_(std::make_unique<ListenerServer>(std::move(settings), std::move(handler), std::move(log))) {}

AuthenticatedListener::~AuthenticatedListener() = default;

std::string AuthenticatedListener::start() { return server_->start(); }
void AuthenticatedListener::stop() { server_->stop(); }
uint16_t AuthenticatedListener::port() const { return server_->port(); }

sdk::Result<std::unique_ptr<AuthenticatedListener>> start_listener(ListenerSettings settings, Handler handler,
                                                                   const sdk::Context& context) {
  auto listener = std::make_unique<AuthenticatedListener>(
      std::move(settings), std::move(handler),
      [context](kiln_log_level level, std::string message) { context.log(level, message); });
  if (auto error = listener->start(); !error.empty()) return sdk::Status(KILN_ERR_RETRY, error);
  return listener;
}

}  // namespace kiln::http_listener
