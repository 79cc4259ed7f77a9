// kiln-chat-webhook: a complete third-party notifier, written only against
// the installed SDK. Which builds, the report, the template check and the
// delivery thread with retries are sdk::Notifier's and sdk::Delivery's;
// this file adds the settings, the chat line, and the transport: one
// HTTP/1.1 POST of {"text": ..., "username": ...} over a plain socket.

#include <kiln/sdk/notifier.hpp>
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace webhook {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema =
    R"json({"type": "object", "additionalProperties": false, "required": ["url"], "properties": {)json"
    KILN_NOTIFIER_SCHEMA_PROPERTIES R"json(,
      "url": {"type": "string", "minLength": 8, "description": "The webhook: http://host[:port]/path"},
      "text": {"type": "string", "minLength": 1,
        "default": "{{builder}} #{{number}}: {{result}} ({{status_detected}}) {{build_url}}",
        "description": "The chat line, a template with the notifier fields ({{builder}}, {{result}}, ...)"},
      "username": {"type": "string", "default": "kiln", "description": "Who the message is from"},
      "timeout": {"type": "number", "minimum": 0.1, "maximum": 600, "default": 10,
        "description": "Seconds the webhook may take to answer"}}})json";

constexpr const char* kDefaultText = "{{builder}} #{{number}}: {{result}} ({{status_detected}}) {{build_url}}";

struct Target {
  std::string host, port = "80", path = "/";
};

// "http://host[:port]/path"; nothing if it is not one.
std::optional<Target> parse_url(const std::string& url) {
  if (url.rfind("http://", 0) != 0) return std::nullopt;
  Target t;
  std::string rest = url.substr(7);
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) t.path = rest.substr(slash);
  rest = rest.substr(0, slash);
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    t.port = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (t.port.empty() || t.port.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  }
  if (rest.empty()) return std::nullopt;
  t.host = rest;
  return t;
}

sdk::MessageTemplate text_template(const std::string& text) {
  return sdk::MessageTemplate(text, sdk::notifier::message_fields());
}

// One POST at a time, on the delivery thread. abort() (from the loop, when
// the master stops) shuts the socket so a silent server cannot hold it.
class Poster {
 public:
  Poster(Target target, double timeout_s) : target_(std::move(target)), timeout_s_(timeout_s) {}

  sdk::Status post(const std::string& body) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (int rc = ::getaddrinfo(target_.host.c_str(), target_.port.c_str(), &hints, &found); rc != 0) {
      return {KILN_ERR_RETRY, "cannot resolve " + target_.host + ": " + ::gai_strerror(rc)};
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> addresses(found, &::freeaddrinfo);
    int fd = -1;
    for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
      fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      timeval tv{static_cast<time_t>(timeout_s_), static_cast<suseconds_t>((timeout_s_ - static_cast<time_t>(timeout_s_)) * 1e6)};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        ::close(fd);
        fd = -1;
      }
    }
    if (fd < 0) return {KILN_ERR_RETRY, "cannot connect to " + target_.host + ":" + target_.port + ": " + std::strerror(errno)};
    fd_ = fd;
    const std::string request = "POST " + target_.path + " HTTP/1.1\r\nHost: " + target_.host + ":" + target_.port +
                                "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                                "\r\nConnection: close\r\nUser-Agent: kiln-chat-webhook/0.1\r\n\r\n" + body;
    sdk::Status outcome = exchange(fd, request);
    fd_ = -1;
    ::close(fd);
    return outcome;
  }

  void abort() {
    const int fd = fd_.load();
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  static sdk::Status exchange(int fd, const std::string& request) {
    for (size_t sent = 0; sent < request.size();) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return {KILN_ERR_RETRY, std::string("cannot send: ") + std::strerror(errno)};
      sent += static_cast<size_t>(n);
    }
    std::string answer;
    char chunk[1024];
    while (answer.find("\r\n") == std::string::npos && answer.size() < 8192) {
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return {KILN_ERR_RETRY, "no answer from the webhook"};
      answer.append(chunk, static_cast<size_t>(n));
    }
    // "HTTP/1.1 200 OK"
    const std::string status_line = answer.substr(0, answer.find("\r\n"));
    const size_t space = status_line.find(' ');
    const int status = space == std::string::npos ? 0 : std::atoi(status_line.c_str() + space + 1);
    if (status >= 200 && status < 300) return {};
    // 4xx will not get better (a wrong URL or payload); 5xx may.
    return {status >= 400 && status < 500 ? KILN_ERR_REFUSED : KILN_ERR_RETRY, "the webhook answered " + status_line};
  }

  Target target_;
  double timeout_s_;
  std::atomic<int> fd_{-1};
};

class ChatWebhook : public sdk::Notifier {
 public:
  ChatWebhook(sdk::Context ctx, const json& config)
      : Notifier(std::move(ctx), config),
        text_(text_template(this->config().value("text", std::string(kDefaultText)))),
        username_(this->config().value("username", std::string("kiln"))) {}

  static sdk::Status validate(const json& config) {
    if (auto s = sdk::NotifierOptions::check(config); !s.ok()) return s;
    if (!parse_url(config.at("url").get<std::string>())) {
      return {KILN_ERR_INVALID_CONFIG, "url: '" + config.at("url").get<std::string>() + "' is not http://host[:port]/path"};
    }
    try {
      text_template(config.value("text", std::string(kDefaultText)));
    } catch (const sdk::TemplateError& e) {
      return {KILN_ERR_INVALID_CONFIG, std::string("text: ") + e.what()};
    }
    return {};
  }

  sdk::Status start() override {
    if (auto s = Notifier::start(); !s.ok()) return s;
    poster_ = std::make_shared<Poster>(*parse_url(config().at("url").get<std::string>()), config().value("timeout", 10.0));
    delivery_ = std::make_unique<sdk::Delivery<std::string>>(
        context(), [poster = poster_](const std::string& body) { return poster->post(body); },
        options().retry_attempts, options().retry_delay_s, [poster = poster_] { poster->abort(); });
    return {};
  }

  void stop() override { delivery_.reset(); }

 protected:
  void notify(sdk::NotifierMessage message) override {
    if (!delivery_) return;
    const json body = {{"text", text_.render(message.context)}, {"username", username_}};
    delivery_->submit(body.dump(), "chat message for " + message.context.value("builder", std::string()) + " #" +
                                       message.context.value("number", json(0)).dump());
  }

 private:
  sdk::MessageTemplate text_;
  std::string username_;
  std::shared_ptr<Poster> poster_;
  std::unique_ptr<sdk::Delivery<std::string>> delivery_;
};

}  // namespace webhook

KILN_PLUGIN("kiln-chat-webhook", "0.1.0", "Posts build results to a chat webhook", "MIT",
            kiln::sdk::component<webhook::ChatWebhook>(KILN_KIND_REPORTER, "chat-webhook", "0.1.0",
                                                       "Posts a chat line per reported build", webhook::kSchema));
