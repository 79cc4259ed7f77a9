#pragma once
// A real headless Chromium for tests, driven through chromedriver with the
// W3C WebDriver protocol (JSON over HTTP on loopback). Debian's `chromium`
// and `chromium-driver` packages (scripts/setup.sh --test).
//
// Every call blocks the calling thread until chromedriver answers; a test
// of the web plugin runs them off the master's loop (WebMaster::off_loop),
// since the page's requests need the loop turning. Calls report failures by
// throwing WebDriverError (Catch's REQUIRE is not for other threads), whose
// message names the call and chromedriver's reason.

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::testing {

struct WebDriverError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One line of the browser's console (or a failed load, an uncaught error).
struct ConsoleEntry {
  std::string level;  // "SEVERE", "WARNING", "INFO", "DEBUG"
  std::string source;  // "console-api", "javascript", "network", ...
  std::string message;
};

// What is missing to run a browser, or empty when chromium and
// chromedriver are installed.
std::string browser_missing();

struct BrowserOptions {
  // Accept any server certificate (a test's self-signed one over https).
  bool accept_insecure_certs = false;
};

class Browser {
 public:
  // Starts chromedriver on a free port and opens one headless Chromium
  // session with a user-data-dir of its own. Throws WebDriverError when
  // either does not start (browser_missing() says what to install).
  explicit Browser(BrowserOptions options = {});
  // Ends the session (Chromium exits) and chromedriver.
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Loads `url` and returns once the document has loaded (its scripts may
  // still be fetching).
  void navigate(const std::string& url);
  std::string current_url();

  // The first element matching the CSS selector: its WebDriver id, or empty
  // when none matches now.
  std::string find(const std::string& css);
  // As find, but an element must match: throws naming the selector.
  std::string element(const std::string& css);
  void click(const std::string& css);
  // Clears the field and types `text` into it.
  void fill(const std::string& css, const std::string& text);
  // The element's rendered text (its innerText).
  std::string text(const std::string& css);
  // Runs `script` as the body of a function (`return ...;` gives the
  // answer) with `args` as its arguments.
  nlohmann::json script(const std::string& script, nlohmann::json args = nlohmann::json::array());

  // Polls `condition` (every 25 ms) until it holds; false when `limit`
  // passes first. The limit is a bound for a loaded machine, not a timing
  // check.
  bool wait_until(const std::function<bool()>& condition,
                  std::chrono::milliseconds limit = std::chrono::seconds(15));
  // Whether an element matching `css` has text containing `needle`, within
  // `limit`.
  bool wait_for_text(const std::string& css, const std::string& needle,
                     std::chrono::milliseconds limit = std::chrono::seconds(15));

  // The console entries logged since the last call (chromedriver hands
  // each out once).
  std::vector<ConsoleEntry> console();
  // Of those, the errors: SEVERE entries (console.error, uncaught
  // exceptions and rejections, failed loads such as a 404).
  std::vector<ConsoleEntry> console_errors();

  // chromedriver's own log, for a failure's message.
  std::string driver_log() const;

 private:
  nlohmann::json call(const std::string& method, const std::string& path,
                      const nlohmann::json& body = nullptr);
  nlohmann::json session_call(const std::string& method, const std::string& path,
                              const nlohmann::json& body = nullptr);

  struct State;
  std::unique_ptr<State> state_;
};

// Entries as lines, one per entry, for a failure's message.
std::string describe(const std::vector<ConsoleEntry>& entries);

}  // namespace kiln::testing
