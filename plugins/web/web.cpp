// kiln-web: the `web` status target. An HTTP server on its own thread
// (http_server.h) serves Buildbot's REST API (rest.h), live updates over
// /ws (live.h) and server-rendered pages (pages.h, html.h). It reaches the master only
// through the ABI: a request becomes a host post to the loop, a data_get,
// data_control, change_add or policy_call there, and the answer is posted back to the
// HTTP thread, so neither thread waits for the other. One subscription to
// every event feeds the WebSocket clients. Every request is first
// identified (auth.h); change hooks (hooks.h) carry their own secrets.

#include "auth.h"
#include "backend.h"
#include "hooks.h"
#include "http_server.h"
#include "pages.h"
#include "rest.h"

#include <kiln/sdk/plugin.hpp>

#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kiln::web {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "port": {"type": ["integer", "string"], "default": 8010,
      "description": "Where to listen: a port number (on 127.0.0.1, this machine only), or \"HOST:PORT\" such as \"0.0.0.0:8010\" or \"[::]:8010\" (Buildbot's \"tcp:8010:interface=ADDR\" is read too). Port 0 picks a free port, named in the master's log."},
    "auth": {"type": "object",
      "description": "Who can log in: users (a list of {username, password, groups}; the password plain or a crypt hash such as $6$... or $2y$...), htpasswd (a file of bcrypt or sha-crypt hashes, relative to the master's folder), kiln_users (true: the users of `kiln user`), groups ({group: [users]}), session_secret (signs session cookies; random per start when absent), session_lifetime (seconds, 604800)."},
    "authz": {"type": "object",
      "description": "Who may do what: force_build, force_all_builds, ping_worker, graceful_shutdown, stop_build, stop_all_builds, cancel_pending_build, stop_change, clean_shutdown, show_users_page, each never, always, authenticated, a list of users and group:NAME, or {policy: NAME} (an authz_check policy). Unlisted actions are always allowed without an auth section and need a login with one."},
    "change_hook_dialects": {"type": "object",
      "description": "Change hooks on /change_hook/DIALECT, each enabled by name: base (true), github ({secret} checks X-Hub-Signature-256), gitlab ({secret} checks X-Gitlab-Token), or a plugin's dialect ({policy: NAME}, a change_hook policy function); any of them may set a codebase."},
    "change_hook_auth": {"type": "boolean", "default": false,
      "description": "Buildbot's change_hook_auth: change hooks need the HTTP Basic credentials of a user of the auth section."},
    "tls": {"type": "object", "required": ["cert", "key"], "additionalProperties": false,
      "description": "Serve HTTPS (and wss:// live updates) instead of plain HTTP: PEM files, relative to the master folder. Session cookies are then Secure.",
      "properties": {"cert": {"type": "string", "minLength": 1, "description": "The certificate (chain) file."},
                     "key": {"type": "string", "minLength": 1, "description": "Its private key file."}}},
    "rotate_length": {"type": "integer", "minimum": 0, "default": 10000000,
      "description": "Buildbot's rotateLength: the access log http.log (in the master folder) is rotated when it reaches this many bytes (0: never)."},
    "max_rotated_files": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 10,
      "description": "Buildbot's maxRotatedFiles: rotated access logs kept (http.log.1 is the newest)."},
    "title": {"type": "string", "default": "Kiln",
      "description": "The name at the left of every page's navigation bar (Buildbot's title)."},
    "title_url": {"type": "string",
      "description": "Where the title links (Buildbot's titleURL); the home page when absent."},
    "templates": {"type": "string",
      "description": "A template override folder (relative to the master's folder; templates/ there is used when it exists): layout.html replaces the page shell ({{head}} {{title}} {{nav}} {{content}} {{script}}), style.css is added to the style."},
    "public_html": {"type": "string",
      "description": "A folder of static files served at /NAME (relative to the master's folder; public_html/ there is used when it exists). '..' and encoded variants answer 404."},
    "revlink": {"type": ["string", "object"],
      "description": "Links revisions: a format with %s (\"https://github.com/o/r/commit/%s\"), or a map of repository to such a format."},
    "changecommentlink": {"type": ["object", "array"],
      "description": "Links text in change comments: {regex, url, title} (or a list), url and title with \\1 or \\g<1> for the match's groups."},
    "projects": {"type": "object", "description": "A map of project name to URL: projects shown in pages link there."},
    "repositories": {"type": "object", "description": "A map of repository to URL: repositories shown in pages link there."}
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

// Data-API answers, and whole REST responses, kept for repeated reads (a
// dashboard polling, a page many people watch): reused until the next
// data-API event (every change the core publishes bumps the generation, on
// the loop) and for at most kCacheLifetime, which bounds how stale what the
// core changes without an event (a reconfigured builder, a master's
// last_active) can be. A read that raced with an event is not kept.
template <class Value>
class ReadCache {
 public:
  static constexpr auto kCacheLifetime = std::chrono::seconds(1);
  static constexpr size_t kMaxEntries = 512;

  explicit ReadCache(const std::atomic<uint64_t>& generation) : generation_(generation) {}

  std::optional<Value> find(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    if (it->second.generation != generation_.load(std::memory_order_acquire) ||
        std::chrono::steady_clock::now() - it->second.at > kCacheLifetime) {
      entries_.erase(it);
      return std::nullopt;
    }
    return *it->second.value;
  }

  // `asked_at`: the generation when the read was sent.
  void keep(const std::string& key, uint64_t asked_at, const Value& value) {
    if (asked_at != generation_.load(std::memory_order_acquire)) return;
    std::lock_guard lock(mutex_);
    if (entries_.size() >= kMaxEntries) entries_.clear();
    entries_[key] = Entry{asked_at, std::chrono::steady_clock::now(), std::make_shared<const Value>(value)};
  }

 private:
  struct Entry {
    uint64_t generation = 0;
    std::chrono::steady_clock::time_point at;
    std::shared_ptr<const Value> value;
  };
  const std::atomic<uint64_t>& generation_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

// The Backend of the HTTP side: each call goes to the loop through the
// host's post, and its answer comes back through the server's poster.
// Reads answered lately come from the cache without the trip.
class LoopBackend final : public Backend {
 public:
  LoopBackend(sdk::Context ctx, HttpPoster to_http)
      : ctx_(std::move(ctx)), to_http_(std::move(to_http)) {}

  void get(std::string path, json query, AnswerFn done) override {
    std::string key = path + "?" + query.dump();
    if (auto cached = answers_.find(key)) return done(Answer{KILN_OK, std::move(*cached), {}});
    const uint64_t asked_at = data_version();
    auto keep = [this, key = std::move(key), asked_at, done = std::move(done)](Answer a) {
      if (a.ok()) answers_.keep(key, asked_at, a.value);
      done(std::move(a));
    };
    on_loop(std::move(keep), [path = std::move(path), query = std::move(query)](
                                 const sdk::Context& ctx, sdk::JsonCallback answered) {
      return ctx.data_get(path, query, std::move(answered));
    });
  }

  // On the loop: the data changed.
  void changed() { generation_.fetch_add(1, std::memory_order_acq_rel); }

  uint64_t data_version() const override { return generation_.load(std::memory_order_acquire); }
  std::optional<Response> kept_response(const std::string& key) override { return responses_.find(key); }
  void keep_response(const std::string& key, uint64_t version, const Response& r) override {
    if (!r.next_piece) responses_.keep(key, version, r);
  }

  void add_change(json change, AnswerFn done) override {
    on_loop(std::move(done), [change = std::move(change)](const sdk::Context& ctx,
                                                          sdk::JsonCallback answered) {
      return ctx.change_add(change, std::move(answered));
    });
  }

  void policy(std::string name, json args, AnswerFn done) override {
    on_loop(std::move(done), [name = std::move(name), args = std::move(args)](
                                 const sdk::Context& ctx, sdk::JsonCallback answered) {
      answered(ctx.call_policy(name, args));
      return sdk::Status();
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
    // Shared: std::function copies what it holds, and `done` may hold a
    // page of JSON.
    auto shared_done = std::make_shared<AnswerFn>(std::move(done));
    auto reply = [to_http, shared_done](Answer a) {
      auto answer = std::make_shared<Answer>(std::move(a));
      to_http([shared_done, answer] { (*shared_done)(std::move(*answer)); });
    };
    sdk::Status posted = ctx_.post([ctx = ctx_, call = std::move(call), reply]() {
      sdk::Status started =
          call(ctx, [reply](sdk::Result<json> r) { reply(answer_of(std::move(r))); });
      if (!started) reply(Answer{started.code(), nullptr, started.message()});
    });
    if (!posted) (*shared_done)(Answer{posted.code(), nullptr, posted.message()});
  }

  const sdk::Context ctx_;
  const HttpPoster to_http_;
  std::atomic<uint64_t> generation_{0};
  ReadCache<json> answers_{generation_};
  ReadCache<Response> responses_{generation_};
};

class WebStatus : public sdk::Reporter {
 public:
  WebStatus(sdk::Context ctx, const json& config) : Reporter(std::move(ctx), config) {}
  ~WebStatus() override { stop(); }

  static sdk::Status validate(const json& config) {
    auto listen = parse_listen(config.value("port", json(8010)));
    if (!listen) return listen.status();
    auto auth = parse_auth_settings(config, {});
    if (!auth) return auth.status();
    if (config.value("change_hook_auth", false) && !auth->any_source()) {
      return sdk::invalid_config("change_hook_auth needs an auth section (users, htpasswd or kiln_users)");
    }
    if (auto hooks = parse_hook_dialects(config); !hooks) return hooks.status();
    if (auto pages = parse_page_settings(config, {}); !pages) return pages.status();
    return {};
  }

  sdk::Status start() override {
    stop();
    auto listen = parse_listen(config().value("port", json(8010)));
    if (!listen) return listen.status();
    auto info = context().info();
    const std::filesystem::path master_dir =
        info.ok() ? std::filesystem::path(info->value("master_dir", "")) : std::filesystem::path();
    auto settings = parse_auth_settings(config(), master_dir);
    if (!settings) return settings.status();
    auto page_settings = parse_page_settings(config(), master_dir);
    if (!page_settings) return page_settings.status();
    auto hooks = parse_hook_dialects(config());
    if (!hooks) return hooks.status();
    hooks_ = std::move(*hooks);
    hooks_need_login_ = config().value("change_hook_auth", false);
    // A policy named but not configured is a configuration error now, not
    // a refusal on the first request.
    std::vector<std::pair<std::string, std::string>> policies;  // (where, name)
    for (size_t i = 0; i < kActionCount; ++i) {
      if (settings->rules[i].kind == Rule::Kind::kPolicy) {
        policies.emplace_back(std::string("authz.") + action_key(static_cast<Action>(i)),
                              settings->rules[i].policy);
      }
    }
    for (const auto& [dialect, options] : hooks_) {
      if (!options.policy.empty()) policies.emplace_back("change_hook_dialects." + dialect, options.policy);
    }
    for (const auto& [where, name] : policies) {
      if (context().call_policy(name, json::object()).status().code() == KILN_ERR_NOT_FOUND) {
        return sdk::invalid_config(where + ": no policy named '" + name + "' (see policies:)");
      }
    }
    const sdk::Context ctx = context();
    ServerOptions options{listen->host, listen->port, kiln::tls::tls_files(config(), master_dir), {}};
    settings->secure_cookie = tls_ = options.tls.has_value();
    access_log_ = std::make_unique<AccessLog>(AccessLogOptions{
        master_dir / "http.log", config().value("rotate_length", uint64_t{10'000'000}),
        config().value("max_rotated_files", 10u),
        [ctx](std::string problem) { ctx.log(KILN_LOG_WARN, problem); }});
    if (auto error = access_log_->open(); !error.empty()) {
      access_log_.reset();
      return sdk::Status(KILN_ERR_RETRY, error);
    }
    options.access = [log = access_log_.get()](const AccessRecord& record) { log->add(access_line(record)); };
    server_ = HttpServer::make(
        std::move(options),
        [this](Request request, Respond respond) { route(std::move(request), std::move(respond)); },
        // Host logging is safe from any thread.
        [ctx](kiln_log_level level, std::string message) { ctx.log(level, message); });
    backend_ = std::make_unique<LoopBackend>(context(), server_->poster());
    auth_ = std::make_unique<Auth>(std::move(*settings), *backend_);
    if (auto loaded = auth_->load(); !loaded) {
      stop();
      return loaded;
    }
    rest_ = std::make_unique<RestApi>(*backend_, *auth_);
    pages_ = std::make_unique<Pages>(*backend_, *auth_, std::move(*page_settings));
    if (auto error = server_->start(); !error.empty()) {
      const bool tls_problem = error.starts_with("tls:");
      stop();
      return sdk::Status(tls_problem ? KILN_ERR_INVALID_CONFIG : KILN_ERR_RETRY, error);
    }
    auto sub = context().subscribe("#", [this](std::string_view key, const json& event) {
      if (backend_) backend_->changed();
      if (server_ && server_->has_live_clients()) server_->publish(std::string(key), event.dump());
    });
    if (!sub) {
      stop();
      return sub.status();
    }
    subscription_ = *sub;
    context().info(std::string("serving ") + (tls_ ? "https://" : "http://") + listen->host + ":" +
                   std::to_string(server_->port()) + "/ (REST API under /api/v2, live updates on /ws)");
    if (!auth_->enabled() && listen->host != "127.0.0.1" && listen->host != "::1") {
      context().warn("no auth section: anyone reaching " + listen->host +
                     " may force and stop builds (see authz)");
    }
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
    pages_.reset();
    rest_.reset();
    auth_.reset();
    backend_.reset();
    // Last: the server's thread wrote to it.
    access_log_.reset();
  }

 private:
  // On the HTTP thread.
  void route(Request request, Respond respond) {
    // A page's script (fetch) gets no Basic challenge: the browser would
    // hold the request and ask for a password in a dialog, instead of the
    // page saying that the action needs a login. Scripts and navigations
    // keep it.
    if (const auto mode = request.header("sec-fetch-mode"); !mode.empty() && mode != "navigate") {
      respond = [respond = std::move(respond)](Response r) {
        std::erase_if(r.headers, [](const auto& h) { return h.first == "WWW-Authenticate"; });
        respond(std::move(r));
      };
    }
    if (has_dot_segment(request.path)) {
      return respond(error_response(404, "no such path: '.' and '..' segments are refused"));
    }
    const bool hook = request.path == "/change_hook" || request.path.starts_with("/change_hook/");
    if (hook && !hooks_need_login_) return serve_hook(std::move(request), std::move(respond));
    auth_->identify(request, [this, hook, request, respond = std::move(respond)](
                                 Identity who, std::string problem) mutable {
      if (!problem.empty() || (hook && !who.by_basic)) {
        Response r = error_response(
            401, problem.empty() ? "change hooks need HTTP Basic credentials (change_hook_auth)" : problem);
        r.headers.emplace_back("WWW-Authenticate", "Basic realm=\"kiln\", charset=\"UTF-8\"");
        return respond(std::move(r));
      }
      if (hook) return serve_hook(std::move(request), std::move(respond));
      // The cookie comes with any request the browser sends, a forged
      // cross-site one too; the token only with the pages' own.
      if (request.method == "POST" && who.by_session && request.path != "/auth/login" &&
          !constant_time_equal(request.header("x-csrf-token"), auth_->csrf_token(who.session))) {
        return respond(error_response(
            403, "a POST with a session cookie needs the X-CSRF-Token header (from /auth/me)"));
      }
      dispatch(request, who, std::move(respond));
    });
  }

  void serve_hook(Request request, Respond respond) {
    const std::string dialect = request.path.size() > 13 ? request.path.substr(13) : "base";
    auto it = hooks_.find(dialect);
    if (it == hooks_.end() || it->second.policy.empty() || request.method != "POST") {
      return change_hook(parse_change_hook(hooks_, dialect, request), std::move(respond));
    }
    // A plugin's dialect: its change_hook policy reads the request.
    backend_->policy(it->second.policy, policy_hook_args(dialect, request),
                     [this, dialect, request, respond = std::move(respond)](Answer a) mutable {
                       change_hook(policy_hook_outcome(hooks_, dialect, request, a.status, a.value,
                                                       a.error),
                                   std::move(respond));
                     });
  }

  void dispatch(const Request& request, const Identity& who, Respond respond) {
    constexpr std::string_view kApi = "/api/v2";
    const std::string_view path = request.path;
    if (path == kApi || (path.starts_with(kApi) && path[kApi.size()] == '/')) {
      const std::string rest_path(path.substr(kApi.size()));
      return rest_->handle(request, rest_path, who, std::move(respond));
    }
    if (path.starts_with("/auth/")) return auth_->handle(request, who, std::move(respond));
    if (path == "/favicon.ico") {
      // Browsers ask for it on every site: without one in public_html, an
      // empty answer rather than a 404 in every page's console.
      return pages_->serve(request, who, [respond = std::move(respond)](Response r) {
        if (r.status == 404) r = Response{204, "image/x-icon", {}, {}, {}};
        respond(std::move(r));
      });
    }
    pages_->serve(request, who, std::move(respond));
  }

  // Adds the changes one after the other, so their ids keep their order.
  void change_hook(HookOutcome outcome, Respond respond) {
    if (outcome.status != 200) return respond(error_response(outcome.status, outcome.error));
    struct Adding {
      std::vector<json> changes;
      json ids = json::array();
      Respond respond;
    };
    auto adding = std::make_shared<Adding>(Adding{std::move(outcome.changes), json::array(), std::move(respond)});
    auto next = std::make_shared<std::function<void()>>();
    *next = [this, adding, weak_next = std::weak_ptr(next)] {
      if (adding->ids.size() == adding->changes.size()) {
        return adding->respond(json_response(200, json{{"changeids", adding->ids}}));
      }
      auto again = weak_next.lock();
      backend_->add_change(adding->changes[adding->ids.size()], [adding, again](Answer a) {
        if (!a.ok()) {
          return adding->respond(error_response(a.status == KILN_ERR_INVALID_ARGUMENT ? 400 : 500,
                                                "change " + std::to_string(adding->ids.size() + 1) +
                                                    ": " + a.error));
        }
        adding->ids.push_back(a.value.value("changeid", json()));
        (*again)();
      });
    };
    (*next)();
  }

  static bool has_dot_segment(std::string_view path) {
    const std::string decoded = url_decode(path);
    size_t pos = 0;
    while (pos <= decoded.size()) {
      size_t slash = decoded.find_first_of("/\\", pos);
      if (slash == std::string::npos) slash = decoded.size();
      const std::string_view segment = std::string_view(decoded).substr(pos, slash - pos);
      if (segment == ".." || segment == ".") return true;
      pos = slash + 1;
    }
    return false;
  }

  std::unique_ptr<AccessLog> access_log_;
  bool tls_ = false;  // HTTPS
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<LoopBackend> backend_;
  std::unique_ptr<Auth> auth_;
  HookDialects hooks_;
  bool hooks_need_login_ = false;
  std::unique_ptr<RestApi> rest_;
  std::unique_ptr<Pages> pages_;
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
