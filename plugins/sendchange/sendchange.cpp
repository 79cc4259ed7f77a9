// kiln-sendchange: Buildbot's PBChangeSource (change source type
// `sendchange`) over HTTP instead of Perspective Broker. A listener on its
// own io_context thread takes POST /change with Basic authentication and a
// JSON change body (change_body.h), hands the change to the host's
// change_add on the loop, and answers {"changeid": N} once it is stored.
// `kiln sendchange --master HOST:PORT` is its client.
#include "change_body.h"

#include <kiln/sdk/base64.hpp>
#include <kiln/sdk/plugin.hpp>

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
#include <nlohmann/json.hpp>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace kiln::sendchange {
namespace {

namespace sdk = kiln::sdk;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;

constexpr const char* kSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": 9989,
      "description": "TCP port to listen on (Buildbot's sendchange default, 9989). 0 picks a free port, named in the master's log."},
    "interface": {"type": "string", "default": "127.0.0.1",
      "description": "Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 or :: for every interface."},
    "user": {"type": "string", "minLength": 1, "default": "change",
      "description": "User name clients authenticate with (HTTP Basic). Buildbot's default; change it."},
    "password": {"type": "string", "minLength": 1, "default": "changepw",
      "description": "Password clients authenticate with. Buildbot's default; change it, e.g. to ${env:SENDCHANGE_PW} or ${file:...}."},
    "prefix": {"type": ["string", "null"], "default": null,
      "description": "Keep only files under this path, with the prefix removed (PBChangeSource's prefix); a change with no file under it is ignored."}
  }
})json";

// A client that sends nothing for this long is dropped.
constexpr auto kIdleTimeout = std::chrono::seconds(30);
// Connections served at once; more are closed on accept.
constexpr size_t kMaxConnections = 64;

struct Settings {
  std::string interface;
  uint16_t port = 0;
  std::string user;
  std::string password;
  std::string prefix;
};

// Answers one request: called once, from any thread.
using Respond = std::function<void(http::status status, json body)>;
// Hands a checked change to the master (from the listener's thread).
using Submit = std::function<void(json change, Respond respond)>;
using Log = std::function<void(kiln_log_level level, std::string message)>;

bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

bool authorized(std::string_view header, const Settings& settings) {
  constexpr std::string_view kScheme = "basic ";
  if (header.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return false;
  }
  std::string_view token = header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  const std::string pair = sdk::base64_decode(token).value_or("");
  const auto colon = pair.find(':');
  if (colon == std::string::npos) return false;
  // Both compared, always, so the timing does not tell which one was wrong.
  const bool user_ok = equal_constant_time(std::string_view(pair).substr(0, colon), settings.user);
  const bool password_ok =
      equal_constant_time(std::string_view(pair).substr(colon + 1), settings.password);
  return user_ok && password_ok;
}

class Server;

// One client connection: requests one at a time, keep-alive as HTTP/1.1
// asks. While the master stores a change nothing reads, so the answer
// cannot overtake the next request.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}

  void start() { read_next(); }
  void close();

  void respond(http::status status, const json& body, bool close_after = false);

 private:
  void read_next();
  void on_read(const boost::system::error_code& ec);
  void handle();
  void linger();

  Server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  bool keep_alive_ = false;
  // The request was refused before its body was read: the client may still
  // be sending it.
  bool unread_body_ = false;
  bool closed_ = false;
  std::array<char, 16 * 1024> discard_{};
};

class Server {
 public:
  Server(Settings settings, Submit submit, Log log)
      : settings_(std::move(settings)), submit_(std::move(submit)), log_(std::move(log)) {}
  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts the listener's thread. An error message, or empty.
  std::string start() {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(settings_.interface, ec);
    if (ec) return "interface '" + settings_.interface + "' is not an IP address";
    const tcp::endpoint endpoint(address, settings_.port);
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

  // Stops serving and joins the thread. Answers still owed are dropped.
  void stop() {
    if (!thread_.joinable()) return;
    io_->stop();
    thread_.join();
    // The thread is gone: the sessions are this thread's to drop.
    sessions_.clear();
    acceptor_.reset();
  }

  uint16_t port() const { return port_; }
  const Settings& settings() const { return settings_; }
  void log(kiln_log_level level, std::string message) const { log_(level, std::move(message)); }

  // From a session, on the listener's thread.
  void submit(json change, const std::shared_ptr<Session>& session) {
    std::weak_ptr<Session> weak = session;
    // The answer may come after this server is gone (a restart of the
    // component): it holds the io_context, not the server.
    submit_(std::move(change), [io = io_, weak](http::status status, json body) {
      // From the loop: the answer is written on the listener's thread. A
      // client that went away meanwhile gets nothing; its change stays.
      boost::asio::post(*io, [weak, status, body = std::move(body)] {
        if (auto s = weak.lock()) s->respond(status, body);
      });
    });
  }
  void forget(Session* session) {
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->get() == session) {
        sessions_.erase(it);
        return;
      }
    }
  }

 private:
  void accept_next() {
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

  const Settings settings_;
  const Submit submit_;
  const Log log_;
  // Declared before everything that uses it, so it is destroyed last
  // (unless an answer still on its way holds it).
  std::shared_ptr<boost::asio::io_context> io_ = std::make_shared<boost::asio::io_context>();
  std::optional<tcp::acceptor> acceptor_;
  std::set<std::shared_ptr<Session>> sessions_;  // the listener's thread only
  uint16_t port_ = 0;
  std::thread thread_;
};

void Session::read_next() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(kMaxBodyBytes);
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
    return respond(http::status::bad_request,
                   {{"error", "the body is larger than " + std::to_string(kMaxBodyBytes) +
                                  " bytes (1 MiB)"}},
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
  handle();
}

void Session::handle() {
  const auto& request = parser_->get();
  keep_alive_ = request.keep_alive();
  if (request.target() != "/change") {
    return respond(http::status::not_found,
                   {{"error", "no such resource; changes are POSTed to /change"}});
  }
  if (request.method() != http::verb::post) {
    return respond(http::status::method_not_allowed, {{"error", "use POST /change"}});
  }
  const Settings& settings = server_.settings();
  const auto header = request[http::field::authorization];
  if (!authorized(std::string_view(header.data(), header.size()), settings)) {
    boost::system::error_code ignored;
    const auto peer = stream_.socket().remote_endpoint(ignored);
    server_.log(KILN_LOG_WARN, "refused a change from " + peer.address().to_string() +
                                   ": wrong user or password");
    return respond(http::status::unauthorized, {{"error", "wrong user or password"}});
  }
  ParsedChange parsed = parse_change_body(request.body(), settings.prefix);
  if (!parsed.error.empty()) {
    return respond(http::status::bad_request, {{"error", parsed.error}});
  }
  if (!parsed.ignored.empty()) {
    return respond(http::status::ok, {{"changeid", nullptr}, {"ignored", parsed.ignored}});
  }
  server_.submit(std::move(parsed.change), shared_from_this());
}

void Session::respond(http::status status, const json& body, bool close_after) {
  if (closed_) return;
  if (close_after) keep_alive_ = false;
  response_ = {};
  response_.version(11);
  response_.result(status);
  response_.set(http::field::server, "kiln-sendchange");
  response_.set(http::field::content_type, "application/json");
  if (status == http::status::unauthorized) {
    response_.set(http::field::www_authenticate, "Basic realm=\"kiln sendchange\"");
  }
  if (status == http::status::method_not_allowed) response_.set(http::field::allow, "POST");
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

class SendchangeSource : public sdk::ChangeSource {
 public:
  SendchangeSource(sdk::Context ctx, const json& config) : ChangeSource(std::move(ctx), config) {}
  ~SendchangeSource() override { stop(); }

  static sdk::Status validate(const json& config) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(config.value("interface", "127.0.0.1"), ec);
    if (ec) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG,
                         "interface '" + config.value("interface", "") +
                             "' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)");
    }
    return {};
  }

  sdk::Status start() override {
    stop();
    Settings settings;
    settings.interface = config().value("interface", "127.0.0.1");
    settings.port = static_cast<uint16_t>(config().value("port", 9989));
    settings.user = config().value("user", "change");
    settings.password = config().value("password", "changepw");
    const json prefix = config().value("prefix", json());
    if (prefix.is_string()) settings.prefix = prefix.get<std::string>();
    const bool default_login = settings.user == "change" && settings.password == "changepw";

    const sdk::Context ctx = context();
    server_ = std::make_unique<Server>(
        std::move(settings),
        [this](json change, Respond respond) { submit(std::move(change), std::move(respond)); },
        // Host logging is safe from any thread.
        [ctx](kiln_log_level level, std::string message) { ctx.log(level, message); });
    if (auto error = server_->start(); !error.empty()) {
      server_.reset();
      // Transient as a rule: a master that just stopped may still hold it.
      return sdk::Status(KILN_ERR_RETRY, error);
    }
    context().info("listening for changes on http://" + config().value("interface", "") + ":" +
                   std::to_string(server_->port()) + "/change");
    if (default_login) {
      context().warn("using Buildbot's default login change/changepw: set user and password");
    }
    return {};
  }

  void stop() override {
    if (server_) server_->stop();
  }

 private:
  // On the listener's thread: the change goes to the loop, and the answer
  // comes back when the host has stored it.
  void submit(json change, Respond respond) {
    sdk::Status posted =
        context().post([this, change = std::move(change), respond]() mutable {
          sdk::Status added = add_change(change, [respond](sdk::Result<json> r) {
            if (r) {
              respond(http::status::ok, {{"changeid", r->value("changeid", json())}});
            } else {
              respond(r.status().code() == KILN_ERR_INVALID_ARGUMENT
                          ? http::status::bad_request
                          : http::status::internal_server_error,
                      {{"error", r.status().message()}});
            }
          });
          if (!added) respond(http::status::service_unavailable, {{"error", added.message()}});
        });
    if (!posted) respond(http::status::service_unavailable, {{"error", posted.message()}});
  }

  std::unique_ptr<Server> server_;
};

}  // namespace
}  // namespace kiln::sendchange

KILN_PLUGIN("kiln-sendchange", "0.1.0",
            "Buildbot's sendchange listener (PBChangeSource) over HTTP", "MIT",
            kiln::sdk::component<kiln::sendchange::SendchangeSource>(
                KILN_KIND_CHANGE_SOURCE, "sendchange", "0.1.0",
                "Takes changes POSTed by `kiln sendchange --master HOST:PORT`",
                kiln::sendchange::kSchema));
