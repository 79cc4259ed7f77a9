// kiln-web: the `web` status target. An HTTP server on its own thread
// (http_server.h) serves Buildbot's REST API (rest.h), live updates over
// /ws (live.h) and a few plain pages (pages.h). It reaches the master only
// through the ABI: a request becomes a host post to the loop, a data_get
// or data_control there, and the answer is posted back to the HTTP thread,
// so neither thread waits for the other. One subscription to every event
// feeds the WebSocket clients.

#include "backend.h"
#include "http_server.h"
#include "pages.h"
#include "rest.h"

#include <kiln/sdk/plugin.hpp>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::web {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "port": {"type": ["integer", "string"], "default": 8010,
      "description": "Where to listen: a port number (on 127.0.0.1, this machine only), or \"HOST:PORT\" such as \"0.0.0.0:8010\" or \"[::]:8010\" (Buildbot's \"tcp:8010:interface=ADDR\" is read too). Port 0 picks a free port, named in the master's log."}
  }
})json";

struct Listen {
  std::string host = "127.0.0.1";
  uint16_t port = 8010;
};

std::optional<uint16_t> port_number(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value > 65535) {
    return std::nullopt;
  }
  return static_cast<uint16_t>(value);
}

// `port` as configured, or the reason it is not an address to listen on.
sdk::Result<Listen> parse_listen(const json& port) {
  Listen listen;
  auto bad = [&](const std::string& why) {
    return sdk::Status(KILN_ERR_INVALID_CONFIG, "port " + port.dump() + ": " + why);
  };
  if (port.is_number_integer()) {
    const auto n = port.get<int64_t>();
    if (n < 0 || n > 65535) return bad("not a port number (0 to 65535)");
    listen.port = static_cast<uint16_t>(n);
    return listen;
  }
  if (!port.is_string()) return bad("must be a number or \"HOST:PORT\"");
  std::string text = port.get<std::string>();
  if (text.starts_with("tcp:")) {
    // Buildbot's strport: tcp:PORT[:interface=ADDR]
    text.erase(0, 4);
    const size_t colon = text.find(':');
    std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
    text = text.substr(0, colon);
    if (!rest.empty()) {
      if (!rest.starts_with("interface=")) return bad("only tcp:PORT:interface=ADDR is understood");
      listen.host = rest.substr(10);
    }
  } else if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    listen.host = text.substr(0, colon);
    text = text.substr(colon + 1);
    if (listen.host.size() >= 2 && listen.host.front() == '[' && listen.host.back() == ']') {
      listen.host = listen.host.substr(1, listen.host.size() - 2);
    }
  }
  auto number = port_number(text);
  if (!number) return bad("'" + text + "' is not a port number (0 to 65535)");
  listen.port = *number;
  if (listen.host.empty()) return bad("names no host before the ':'");
  if (listen.host == "localhost") listen.host = "127.0.0.1";
  boost::system::error_code ec;
  boost::asio::ip::make_address(listen.host, ec);
  if (ec) return bad("'" + listen.host + "' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::)");
  return listen;
}

Answer answer_of(sdk::Result<json> r) {
  if (r) return Answer{KILN_OK, std::move(*r), {}};
  return Answer{r.status().code(), nullptr, r.status().message()};
}

// The Backend of the HTTP side: each call goes to the loop through the
// host's post, and its answer comes back through the server's poster.
class LoopBackend final : public Backend {
 public:
  LoopBackend(sdk::Context ctx, HttpPoster to_http)
      : ctx_(std::move(ctx)), to_http_(std::move(to_http)) {}

  void get(std::string path, json query, AnswerFn done) override {
    on_loop(std::move(done), [path = std::move(path), query = std::move(query)](
                                 const sdk::Context& ctx, sdk::JsonCallback answered) {
      return ctx.data_get(path, query, std::move(answered));
    });
  }

  void control(std::string path, std::string action, json args, AnswerFn done) override {
    on_loop(std::move(done), [path = std::move(path), action = std::move(action),
                              args = std::move(args)](const sdk::Context& ctx,
                                                      sdk::JsonCallback answered) {
      return ctx.data_control(path, action, args, std::move(answered));
    });
  }

 private:
  template <class Call>
  void on_loop(AnswerFn done, Call call) {
    HttpPoster to_http = to_http_;
    auto reply = [to_http, done](Answer a) {
      to_http([done, a = std::move(a)]() mutable { done(std::move(a)); });
    };
    sdk::Status posted = ctx_.post([ctx = ctx_, call = std::move(call), reply]() {
      sdk::Status started =
          call(ctx, [reply](sdk::Result<json> r) { reply(answer_of(std::move(r))); });
      if (!started) reply(Answer{started.code(), nullptr, started.message()});
    });
    if (!posted) done(Answer{posted.code(), nullptr, posted.message()});
  }

  const sdk::Context ctx_;
  const HttpPoster to_http_;
};

class WebStatus : public sdk::Reporter {
 public:
  WebStatus(sdk::Context ctx, const json& config) : Reporter(std::move(ctx), config) {}
  ~WebStatus() override { stop(); }

  static sdk::Status validate(const json& config) {
    auto listen = parse_listen(config.value("port", json(8010)));
    return listen ? sdk::Status() : listen.status();
  }

  sdk::Status start() override {
    stop();
    auto listen = parse_listen(config().value("port", json(8010)));
    if (!listen) return listen.status();
    const sdk::Context ctx = context();
    server_ = HttpServer::make(
        ServerOptions{listen->host, listen->port},
        [this](Request request, Respond respond) { route(std::move(request), std::move(respond)); },
        // Host logging is safe from any thread.
        [ctx](kiln_log_level level, std::string message) { ctx.log(level, message); });
    backend_ = std::make_unique<LoopBackend>(context(), server_->poster());
    rest_ = std::make_unique<RestApi>(*backend_);
    if (auto error = server_->start(); !error.empty()) {
      server_.reset();
      return sdk::Status(KILN_ERR_RETRY, error);
    }
    auto sub = context().subscribe("#", [this](std::string_view key, const json& event) {
      if (server_ && server_->has_live_clients()) server_->publish(std::string(key), event.dump());
    });
    if (!sub) {
      stop();
      return sub.status();
    }
    subscription_ = *sub;
    context().info("serving http://" + listen->host + ":" + std::to_string(server_->port()) +
                   "/ (REST API under /api/v2, live updates on /ws)");
    return {};
  }

  void stop() override {
    if (subscription_) {
      context().unsubscribe(*subscription_);
      subscription_.reset();
    }
    // The server first: its thread uses the REST API and the backend.
    if (server_) server_->stop();
    server_.reset();
    rest_.reset();
    backend_.reset();
  }

 private:
  // On the HTTP thread.
  void route(Request request, Respond respond) {
    constexpr std::string_view kApi = "/api/v2";
    const std::string_view path = request.path;
    if (path == kApi || (path.starts_with(kApi) && path[kApi.size()] == '/')) {
      const std::string rest_path(path.substr(kApi.size()));
      return rest_->handle(request, rest_path, std::move(respond));
    }
    respond(page(request));
  }

  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<LoopBackend> backend_;
  std::unique_ptr<RestApi> rest_;
  std::optional<uint64_t> subscription_;
};

}  // namespace
}  // namespace kiln::web

KILN_PLUGIN("kiln-web", "0.1.0",
            "The web status target: Buildbot's REST API, live updates and pages", "MIT",
            kiln::sdk::component<kiln::web::WebStatus>(
                KILN_KIND_REPORTER, "web", "0.1.0",
                "Serves Buildbot's /api/v2 REST API, JSON-RPC control calls, /ws live "
                "updates and plain HTML pages",
                kiln::web::kSchema));
