// kiln-sendchange: Buildbot's PBChangeSource (change source type
// `sendchange`) over HTTP instead of Perspective Broker. The shared
// authenticated listener (plugins/http-listener) takes POST /change with
// Basic authentication and a JSON change body (change_body.h); the change
// goes to the host's change_add on the loop, and the answer {"changeid": N}
// once it is stored.
// `kiln sendchange --master HOST:PORT` is its client.
#include "change_body.h"

#include "authenticated_listener.h"

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <utility>

namespace kiln::sendchange {
namespace {

namespace sdk = kiln::sdk;
namespace listener = kiln::http_listener;
using nlohmann::json;

constexpr unsigned kOk = 200, kBadRequest = 400, kInternalError = 500, kUnavailable = 503;

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
      "description": "Password clients authenticate with, or its crypt(3) hash (`openssl passwd -6`). Buildbot's default; change it, e.g. to ${env:SENDCHANGE_PW} or ${file:...}."},
    "prefix": {"type": ["string", "null"], "default": null,
      "description": "Keep only files under this path, with the prefix removed (PBChangeSource's prefix); a change with no file under it is ignored."}
  }
})json";

class SendchangeSource : public sdk::ChangeSource {
 public:
  SendchangeSource(sdk::Context ctx, const json& config) : ChangeSource(std::move(ctx), config) {}
  ~SendchangeSource() override { stop(); }

  static sdk::Status validate(const json& config) {
    if (auto problem = listener::interface_problem(config.value("interface", "127.0.0.1")); !problem.empty()) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG, problem);
    }
    return {};
  }

  sdk::Status start() override {
    stop();
    listener::ListenerSettings settings;
    settings.interface = config().value("interface", "127.0.0.1");
    settings.port = static_cast<uint16_t>(config().value("port", 9989));
    settings.logins = {{config().value("user", "change"), config().value("password", "changepw")}};
    settings.routes = {{"POST", "/change"}};
    settings.name = "kiln sendchange";
    settings.max_body_bytes = kMaxBodyBytes;
    const bool default_login = settings.logins[0].user == "change" && settings.logins[0].password == "changepw";
    const json prefix = config().value("prefix", json());
    prefix_ = prefix.is_string() ? prefix.get<std::string>() : std::string();

    auto started = listener::start_listener(
        std::move(settings),
        [this](listener::Request request, listener::Respond respond) {
          receive(std::move(request), std::move(respond));
        },
        context());
    if (!started) return started.status();
    listener_ = std::move(*started);
    context().info("listening for changes on http://" + config().value("interface", "") + ":" +
                   std::to_string(listener_->port()) + "/change");
    if (default_login) {
      context().warn("using Buildbot's default login change/changepw: set user and password");
    }
    return {};
  }

  void stop() override {
    if (listener_) listener_->stop();
  }

 private:
  // On the listener's thread, for an authenticated POST /change.
  void receive(listener::Request request, listener::Respond respond) {
    ParsedChange parsed = parse_change_body(request.body, prefix_);
    if (!parsed.error.empty()) return respond(kBadRequest, {{"error", parsed.error}});
    if (!parsed.ignored.empty()) return respond(kOk, {{"changeid", nullptr}, {"ignored", parsed.ignored}});
    submit(std::move(parsed.change), std::move(respond));
  }

  // The change goes to the loop, and the answer comes back when the host
  // has stored it.
  void submit(json change, listener::Respond respond) {
    sdk::Status posted =
        context().post([this, change = std::move(change), respond]() mutable {
          sdk::Status added = add_change(change, [respond](sdk::Result<json> r) {
            if (r) {
              respond(kOk, {{"changeid", r->value("changeid", json())}});
            } else {
              respond(r.status().code() == KILN_ERR_INVALID_ARGUMENT ? kBadRequest : kInternalError,
                      {{"error", r.status().message()}});
            }
          });
          if (!added) respond(kUnavailable, {{"error", added.message()}});
        });
    if (!posted) respond(kUnavailable, {{"error", posted.message()}});
  }

  // Written in start(), read on the listener's thread, which start() starts.
  std::string prefix_;
  std::unique_ptr<listener::AuthenticatedListener> listener_;
};

}  // namespace
}  // namespace kiln::sendchange

KILN_PLUGIN("kiln-sendchange", "0.1.0",
            "Buildbot's sendchange listener (PBChangeSource) over HTTP", "MIT",
            kiln::sdk::component<kiln::sendchange::SendchangeSource>(
                KILN_KIND_CHANGE_SOURCE, "sendchange", "0.1.0",
                "Takes changes POSTed by `kiln sendchange --master HOST:PORT`",
                kiln::sendchange::kSchema));
