// The WebDriver client over Boost.Beast: one HTTP request per call to
// chromedriver on loopback, which it answers with {"value": ...} (an error
// being {"value": {"error", "message"}} with a 4xx/5xx status).

#include "web/browser.h"

#include "store/temp_dir.h"
#include "util/child_process.h"
#include "util/free_port.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <fstream>
#include <sstream>
#include <thread>

namespace kiln::testing {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;

namespace {

constexpr const char* kChromium = "/usr/bin/chromium";
constexpr const char* kChromedriver = "/usr/bin/chromedriver";
// The W3C name of an element reference in answers.
constexpr const char* kElementKey = "element-6066-11e4-a52e-4f735466cecf";

}  // namespace

std::string browser_missing() {
  std::string missing;
  if (!std::filesystem::exists(kChromium)) missing += std::string(kChromium) + " (Debian package chromium) ";
  if (!std::filesystem::exists(kChromedriver)) {
    missing += std::string(kChromedriver) + " (Debian package chromium-driver) ";
  }
  if (missing.empty()) return {};
  return "the browser tests need " + missing +
         "- install them with `apt-get install chromium chromium-driver` or `scripts/setup.sh --test`";
}

struct Browser::State {
  TempDir dir{"kiln-browser"};
  uint16_t port = 0;
  pid_t driver = -1;
  std::string session;
};

Browser::Browser(BrowserOptions browser_options) : state_(std::make_unique<State>()) {
  if (auto missing = browser_missing(); !missing.empty()) throw WebDriverError(missing);
  state_->port = free_port();
  state_->driver = spawn_process({kChromedriver, "--port=" + std::to_string(state_->port)},
                                 state_->dir / "chromedriver.log");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!listening(state_->port)) {
    if (process_exited(state_->driver)) throw WebDriverError("chromedriver ended: " + driver_log());
    if (std::chrono::steady_clock::now() > deadline) {
      kill_process(state_->driver);
      throw WebDriverError("chromedriver did not listen within 20 s: " + driver_log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const json options = {
      {"binary", kChromium},
      {"args",
       {"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-extensions", "--no-first-run",
        "--window-size=1280,1024", "--user-data-dir=" + (state_->dir / "profile").string()}}};
  const json capabilities = {
      {"browserName", "chrome"},
      {"goog:chromeOptions", options},
      {"goog:loggingPrefs", {{"browser", "ALL"}}},
      {"acceptInsecureCerts", browser_options.accept_insecure_certs},
      {"timeouts", {{"pageLoad", 20000}, {"script", 20000}}}};
  try {
    auto answer = call("POST", "/session", {{"capabilities", {{"alwaysMatch", capabilities}}}});
    state_->session = answer.at("sessionId").get<std::string>();
  } catch (const std::exception& e) {
    kill_process(state_->driver);
    throw WebDriverError(std::string("no browser session: ") + e.what() + "\nchromedriver: " +
                         driver_log());
  }
}

Browser::~Browser() {
  if (!state_->session.empty()) {
    try {
      call("DELETE", "/session/" + state_->session);
    } catch (...) {
      // Chromium goes with chromedriver below.
    }
  }
  stop_process(state_->driver);
}

json Browser::call(const std::string& method, const std::string& path, const json& body) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(std::chrono::seconds(60));
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), state_->port));
  http::request<http::string_body> request{http::string_to_verb(method), path, 11};
  request.set(http::field::host, "127.0.0.1");
  if (method == "POST") {
    request.set(http::field::content_type, "application/json");
    request.body() = body.is_null() ? "{}" : body.dump();
  }
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  const json answer = json::parse(response.body(), nullptr, false);
  if (answer.is_discarded() || !answer.contains("value")) {
    throw WebDriverError(method + " " + path + ": not a WebDriver answer (HTTP " +
                         std::to_string(response.result_int()) + "): " + response.body());
  }
  const json& value = answer["value"];
  if (response.result_int() >= 400 || (value.is_object() && value.contains("error"))) {
    throw WebDriverError(method + " " + path + ": " + value.value("error", std::string("error")) + ": " +
                         value.value("message", std::string()));
  }
  return value;
}

json Browser::session_call(const std::string& method, const std::string& path, const json& body) {
  return call(method, "/session/" + state_->session + path, body);
}

void Browser::navigate(const std::string& url) { session_call("POST", "/url", {{"url", url}}); }

std::string Browser::current_url() { return session_call("GET", "/url").get<std::string>(); }

std::string Browser::find(const std::string& css) {
  auto found = session_call("POST", "/elements", {{"using", "css selector"}, {"value", css}});
  if (!found.is_array() || found.empty()) return {};
  return found[0].at(kElementKey).get<std::string>();
}

std::string Browser::element(const std::string& css) {
  std::string id = find(css);
  if (id.empty()) throw WebDriverError("no element matches '" + css + "'");
  return id;
}

void Browser::click(const std::string& css) {
  session_call("POST", "/element/" + element(css) + "/click", json::object());
}

void Browser::fill(const std::string& css, const std::string& text) {
  const std::string id = element(css);
  session_call("POST", "/element/" + id + "/clear", json::object());
  session_call("POST", "/element/" + id + "/value", {{"text", text}});
}

std::string Browser::text(const std::string& css) {
  // One script, so a page re-rendering between a find and a read cannot
  // leave a stale element.
  auto value = script("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                      json::array({css}));
  if (value.is_null()) throw WebDriverError("no element matches '" + css + "'");
  return value.get<std::string>();
}

json Browser::script(const std::string& body, json args) {
  return session_call("POST", "/execute/sync", {{"script", body}, {"args", std::move(args)}});
}

bool Browser::wait_until(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

bool Browser::wait_for_text(const std::string& css, const std::string& needle,
                            std::chrono::milliseconds limit) {
  return wait_until(
      [&] {
        auto value = script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json::array({css}));
        return value.is_string() && value.get<std::string>().find(needle) != std::string::npos;
      },
      limit);
}

std::vector<ConsoleEntry> Browser::console() {
  json entries;
  try {
    entries = session_call("POST", "/se/log", {{"type", "browser"}});
  } catch (const WebDriverError&) {
    entries = session_call("POST", "/log", {{"type", "browser"}});  // older chromedrivers
  }
  std::vector<ConsoleEntry> out;
  for (const auto& e : entries) {
    out.push_back({e.value("level", std::string()), e.value("source", std::string()),
                   e.value("message", std::string())});
  }
  return out;
}

std::vector<ConsoleEntry> Browser::console_errors() {
  std::vector<ConsoleEntry> errors;
  for (auto& e : console()) {
    if (e.level == "SEVERE") errors.push_back(std::move(e));
  }
  return errors;
}

std::string Browser::driver_log() const {
  std::ifstream in(state_->dir / "chromedriver.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string describe(const std::vector<ConsoleEntry>& entries) {
  std::string out;
  for (const auto& e : entries) out += e.level + " [" + e.source + "] " + e.message + "\n";
  return out;
}

}  // namespace kiln::testing
