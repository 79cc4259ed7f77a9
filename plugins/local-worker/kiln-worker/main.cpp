// kiln-worker: Kiln's own worker program. Connects to a master's
// buildbot-worker port the way a Buildbot worker does (msgpack over
// WebSocket, HTTP Basic name/password), runs the master's commands with
// the local worker's command set, and reconnects with exponential backoff
// and jitter whenever the connection fails or drops. SIGTERM / SIGINT:
// kill the running commands' process groups, drop the connection, exit 0.
//
// Threads: the network thread (main) owns the connection and the timers;
// the command thread runs kiln_worker_commands (session.h).

#include "options.h"
#include "session.h"
#include "worker_info.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <thread>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace kw = kiln::kiln_worker;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// A master that does not complete the handshake in this time is retried.
constexpr auto kConnectTimeout = std::chrono::seconds(10);
// How long SIGTERM lets killed commands wind down before the process exits
// (their process groups are killed for good as the command thread ends).
constexpr auto kStopGrace = std::chrono::seconds(5);

void log_line(const std::string& text) {
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", std::gmtime(&now));
  std::cerr << stamp << " kiln-worker: " << text << std::endl;
}

class Worker {
 public:
  explicit Worker(kw::WorkerOptions options)
      : options_(std::move(options)),
        signals_(net_, SIGTERM, SIGINT),
        retry_timer_(net_),
        stop_timer_(net_),
        resolver_(net_),
        random_(std::random_device{}()) {
    settings_.basedir = options_.basedir;
    settings_.environ = kiln::worker::process_environment();
    settings_.shell = options_.shell;
    settings_.confine_transfers = true;
  }

  int run() {
    if (options_.tls) {
      // wss://: the master's certificate must chain to the CA file (or the
      // system's CAs) and name the host we connect to.
      auto& context = tls_.emplace(ssl::context::tls_client);
      context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                          ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      boost::system::error_code tls_error;
      if (options_.ca_file.empty()) {
        context.set_default_verify_paths(tls_error);
      } else {
        context.load_verify_file(options_.ca_file, tls_error);
      }
      if (tls_error) {
        log_line("cannot load the CA certificates " + options_.ca_file + ": " + tls_error.message());
        return 2;
      }
      context.set_verify_mode(ssl::verify_peer);
    }
    std::error_code ec;
    std::filesystem::create_directories(options_.basedir, ec);
    if (ec) {
      log_line("cannot create basedir " + options_.basedir + ": " + ec.message());
      return 1;
    }
    info_ = kw::worker_info(options_, settings_.environ);
    signals_.async_wait([this](boost::system::error_code error, int signal) {
      if (!error) on_signal(signal);
    });
    commands_guard_.emplace(commands_.get_executor());
    commands_thread_ = std::thread([this] { commands_.run(); });
    log_line("worker '" + options_.name + "' in " + options_.basedir + ", master " + options_.master_host + ":" +
             options_.master_port);
    connect();
    net_.run();
    // Ending the command thread destroys what is left of the commands,
    // which kills their process groups.
    commands_guard_.reset();
    commands_.stop();
    commands_thread_.join();
    return exit_code_;
  }

 private:
  void connect() {
    if (stopping_) return;
    ++attempt_;
    resolver_.async_resolve(options_.master_host, options_.master_port,
                            [this](beast::error_code ec, tcp::resolver::results_type results) {
                              if (stopping_) return;
                              if (ec) return retry("cannot resolve " + options_.master_host + ": " + ec.message());
                              if (tls_) {
                                ws_.emplace(std::in_place_type<kw::TlsWebSocket>, net_, *tls_);
                              } else {
                                ws_.emplace(std::in_place_type<kw::PlainWebSocket>, net_);
                              }
                              std::visit(
                                  [&](auto& ws) {
                                    beast::get_lowest_layer(ws).expires_after(kConnectTimeout);
                                    beast::get_lowest_layer(ws).async_connect(
                                        results, [this](beast::error_code error, const tcp::endpoint&) {
                                          on_connect(error);
                                        });
                                  },
                                  *ws_);
                            });
  }

  void on_connect(beast::error_code ec) {
    if (stopping_) return;
    if (ec) return retry("cannot connect to " + master() + ": " + ec.message());
    // As Buildbot's worker: a TCP connection that was made restarts the
    // backoff, whatever the handshake then says.
    attempt_ = 0;
    std::visit(
        [this](auto& ws) {
          auto& socket = beast::get_lowest_layer(ws).socket();
          socket.set_option(tcp::no_delay(true));
          socket.set_option(asio::socket_base::keep_alive(true));
          if constexpr (std::is_same_v<std::decay_t<decltype(ws)>, kw::TlsWebSocket>) {
            auto& stream = ws.next_layer();
            // SNI, and the name the certificate must carry.
            SSL_set_tlsext_host_name(stream.native_handle(), options_.master_host.c_str());
            stream.set_verify_callback(ssl::host_name_verification(options_.master_host));
            stream.async_handshake(ssl::stream_base::client, [this](beast::error_code error) {
              if (stopping_) return;
              if (error) return retry("TLS handshake with " + master() + " failed: " + error.message());
              upgrade();
            });
          } else {
            upgrade();
          }
        },
        *ws_);
  }

  // The WebSocket upgrade, with the worker's Basic credentials.
  void upgrade() {
    std::visit(
        [this](auto& ws) {
          ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
            req.set(http::field::user_agent, std::string("kiln-worker/") + kw::kVersion);
            req.set(http::field::authorization, kiln::worker_wire::basic_auth({options_.name, options_.password}));
          }));
          ws.async_handshake(response_, master(), "/", [this](beast::error_code error) { on_handshake(error); });
        },
        *ws_);
  }

  void on_handshake(beast::error_code ec) {
    if (stopping_) return;
    if (ec) {
      if (ec == websocket::error::upgrade_declined) {
        const unsigned status = response_.result_int();
        const std::string why = status == 401 ? " (wrong worker name or password?)" : "";
        return retry("the master refused the connection: " + std::to_string(status) + " " +
                     std::string(response_.reason()) + why);
      }
      return retry("WebSocket handshake with " + master() + " failed: " + ec.message());
    }
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = kConnectTimeout;
    if (options_.keepalive_seconds > 0) {
      // A ping after half of it with nothing heard; the connection is
      // dropped when nothing at all came for the whole of it.
      timeouts.idle_timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.keepalive_seconds * 2000));
      timeouts.keep_alive_pings = true;
    } else {
      timeouts.idle_timeout = websocket::stream_base::none();
      timeouts.keep_alive_pings = false;
    }
    std::visit(
        [&](auto& ws) {
          beast::get_lowest_layer(ws).expires_never();
          ws.set_option(timeouts);
          ws.read_message_max(64u * 1024 * 1024);
        },
        *ws_);
    log_line(std::string("connected to ") + (tls_ ? "wss://" : "") + master());
    session_ = std::make_shared<kw::Session>(
        net_, std::move(*ws_), commands_, settings_, info_, log_line,
        [this](const std::string& reason, bool shutdown) { on_session_closed(reason, shutdown); });
    ws_.reset();
    session_->start();
  }

  void on_session_closed(const std::string& reason, bool shutdown) {
    log_line("disconnected: " + reason);
    // Not destroyed here: this runs inside the session.
    asio::post(net_, [old = std::move(session_)] {});
    if (shutdown) {
      log_line("shutting down as the master asked");
      stop();
      return;
    }
    if (!stopping_) {
      attempt_ = 0;
      retry("reconnecting");
    }
  }

  void retry(const std::string& why) {
    ws_.reset();
    if (options_.max_retries > 0 && attempt_ >= options_.max_retries) {
      log_line(why + "; giving up after " + std::to_string(attempt_) + " attempts");
      exit_code_ = 1;
      stop();
      return;
    }
    const double delay = std::min(options_.reconnect_min_seconds * std::pow(2.0, std::max(0, attempt_ - 1)),
                                  options_.reconnect_max_seconds);
    // Half fixed, half random: workers that lost one master together do
    // not all come back in the same instant.
    const double wait = delay / 2 + std::uniform_real_distribution<double>(0, delay / 2)(random_);
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", wait);
    log_line(why + "; retrying in " + text + " s");
    retry_timer_.expires_after(std::chrono::microseconds(static_cast<int64_t>(wait * 1e6)));
    retry_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) connect();
    });
  }

  void on_signal(int signal) {
    log_line(std::string("got ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") + ", stopping");
    stop();
  }

  void stop() {
    if (stopping_) return;
    stopping_ = true;
    signals_.cancel();
    retry_timer_.cancel();
    resolver_.cancel();
    if (ws_) std::visit([](auto& ws) { beast::get_lowest_layer(ws).close(); }, *ws_);
    const bool busy = session_ && session_->running_commands() > 0;
    if (session_) session_->close("kiln-worker is stopping");
    if (!busy) return;
    // The commands were interrupted (their process groups signalled): give
    // them a moment to end before the command thread is torn down.
    stop_deadline_ = std::chrono::steady_clock::now() + kStopGrace;
    wait_for_commands();
  }

  void wait_for_commands() {
    if (kw::live_commands() == 0 || std::chrono::steady_clock::now() >= stop_deadline_) return;
    stop_timer_.expires_after(std::chrono::milliseconds(50));
    stop_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) wait_for_commands();
    });
  }

  std::string master() const { return options_.master_host + ":" + options_.master_port; }

  kw::WorkerOptions options_;
  kiln::worker::WorkerSettings settings_;
  kw::Value info_;
  asio::io_context net_{1};
  asio::io_context commands_{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> commands_guard_;
  std::thread commands_thread_;
  asio::signal_set signals_;
  asio::steady_timer retry_timer_, stop_timer_;
  tcp::resolver resolver_;
  std::optional<ssl::context> tls_;  // for wss:// masters
  std::optional<kw::WebSocket> ws_;
  http::response<http::string_body> response_;
  std::shared_ptr<kw::Session> session_;
  std::mt19937 random_;
  int attempt_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point stop_deadline_;
  int exit_code_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  // A master that vanishes mid-write must not kill the worker; commands
  // get default signal dispositions back when they are spawned.
  std::signal(SIGPIPE, SIG_IGN);
  auto parsed = kw::parse_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.options) {
    (parsed.exit_code == 0 ? std::cout : std::cerr) << parsed.message;
    return parsed.exit_code;
  }
  Worker worker(std::move(*parsed.options));
  return worker.run();
}
