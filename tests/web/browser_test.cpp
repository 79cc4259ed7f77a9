// The web plugin's pages in a real headless Chromium (browser.h) against a
// real master: every page loads with no console errors; a build forced from
// the builder page's form runs and the page shows it without a reload; a
// log page streams; a build page's stop button stops its build; a force
// without a login is refused.

#include "web/browser.h"
#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using kiln::testing::Browser;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

// A page: its path, with {placeholders} for ids of real objects, and a text
// the page shows once rendered.
struct Page {
  std::string path;
  std::string shows;
};

// Every page the web plugin serves. A new page goes here.
std::vector<Page> served_pages() {
  return {
      {"/", "unit"},
      {"/builders", "lint"},
      {"/builders/unit", "Builder unit"},
      {"/builders/{builderid}", "Builder unit"},
      {"/builders/{builderid}/builds/{number}", "hello"},
      {"/builds/{buildid}", "hello"},
      {"/builders/{builderid}/builds/{number}/steps/hello", "stdio"},
      {"/builders/{builderid}/builds/{number}/steps/hello/logs/stdio", "line 2"},
      {"/builders/{builderid}/builds/{number}/steps/hello/logs/stdio/text", "line 2"},
      {"/logs/{logid}", "line 2"},
      {"/logs/{logid}/text", "line 2"},
      {"/buildstatus?builder=unit&number={number}", "hello"},
      {"/changes", "alice"},
      {"/changes/{changeid}", "alice"},
      {"/workers", "w2"},
      {"/workers/{workerid}", "w1"},
      {"/buildslaves", "w2"},
      {"/users", "Users"},
      {"/about", "Kiln"},
      {"/json/help", "REST API"},
      {"/robots.txt", "User-agent"},
      {"/builders?tag=fast", "unit"},
      {"/waterfall", "unit"},
      {"/waterfall?builder=unit&show_events=false&num_events=5", "unit"},
      {"/grid", "unit"},
      {"/grid?width=3&branch=main", "unit"},
      {"/tgrid?length=2&rev_order=asc", "unit"},
      {"/console", "alice"},
      {"/console?branch=main&builder=unit", "alice"},
      {"/one_line_per_build", "unit"},
      {"/one_line_per_build?numbuilds=5&builder=unit", "unit"},
      {"/rss", "rss"},
      {"/atom", "feed"},
  };
}

// The web options the pages are tried with: the base hook, for a change.
constexpr const char* kPagesOptions = "change_hook_dialects: {base: true}";

// The ids the placeholders stand for, from a finished `unit` build and a
// change added through the base hook.
std::vector<std::pair<std::string, std::string>> real_ids(WebMaster& web) {
  const auto hook = web.request("POST", "/change_hook/base",
                                json{{"author", "alice"}, {"comments", "fix"}, {"branch", "main"},
                                     {"files", {"a.c"}}}
                                    .dump(),
                                {{"Content-Type", "application/json"}});
  REQUIRE(hook.status == 200);
  const json build = web.force_and_finish("unit");
  const json step = web.get("/api/v2/builds/" + build["buildid"].dump() + "/steps").json()["steps"][0];
  const json log = web.get("/api/v2/steps/" + step["stepid"].dump() + "/logs").json()["logs"][0];
  const json worker = web.get("/api/v2/workers/w1").json()["workers"][0];
  return {{"{buildid}", build["buildid"].dump()},
          {"{builderid}", build["builderid"].dump()},
          {"{number}", build["number"].dump()},
          {"{logid}", log["logid"].dump()},
          {"{changeid}", hook.json()["changeids"][0].dump()},
          {"{workerid}", worker["workerid"].dump()}};
}

std::string expand(std::string path, const std::vector<std::pair<std::string, std::string>>& ids) {
  for (const auto& [name, value] : ids) {
    for (size_t at = path.find(name); at != std::string::npos; at = path.find(name)) {
      path.replace(at, name.size(), value);
    }
  }
  return path;
}

// A browser for the test, or the test fails saying what to install.
std::unique_ptr<Browser> open_browser() {
  if (auto missing = kiln::testing::browser_missing(); !missing.empty()) FAIL(missing);
  try {
    return std::make_unique<Browser>();
  } catch (const std::exception& e) {
    FAIL(e.what());
  }
  return nullptr;
}

std::string url(const WebMaster& web, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(web.port()) + path;
}

// Throws (failing the test with `what`) unless `ok`: for use off the loop,
// where Catch's REQUIRE may not run.
void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what);
}

void require_no_console_errors(WebMaster& web, Browser& browser) {
  const auto errors = web.off_loop([&] { return browser.console_errors(); });
  INFO("console errors:\n" << kiln::testing::describe(errors));
  REQUIRE(errors.empty());
}

// The first build of `builder` that has not finished, once one runs.
json running_build(WebMaster& web, const std::string& builder) {
  json running;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    running = web.get("/api/v2/builders/" + builder + "/builds?complete=false").json();  // turns the loop
  } while (running["builds"].empty() && std::chrono::steady_clock::now() < deadline);
  REQUIRE(!running["builds"].empty());
  return running["builds"][0];
}

}  // namespace

TEST_CASE("every page loads in a real browser with no console errors") {
  WebMaster web(kPagesOptions);
  const auto ids = real_ids(web);
  auto browser = open_browser();
  for (const auto& page : served_pages()) {
    const std::string path = expand(page.path, ids);
    INFO("page " << path);
    const bool rendered = web.off_loop([&] {
      browser->navigate(url(web, path));
      return browser->wait_for_text("body", page.shows);
    });
    const auto errors = web.off_loop([&] { return browser->console_errors(); });
    INFO("it shows:\n" << web.off_loop([&] { return browser->text("body"); }).substr(0, 2000));
    INFO("console errors:\n" << kiln::testing::describe(errors));
    CHECK(rendered);
    CHECK(errors.empty());
  }
}

TEST_CASE("a build forced from the builder page's form runs and the page shows it without a reload") {
  WebMaster web;
  auto browser = open_browser();
  web.off_loop([&] {
    browser->navigate(url(web, "/builders/unit"));
    expect(!browser->find("form.force").empty(), "the builder page has no force form");
    browser->script("window.kilnNoReload = true;");
    if (!browser->find("form.force input[name=reason]").empty()) {
      browser->fill("form.force input[name=reason]", "forced from a browser");
    }
    browser->click("form.force button[type=submit]");
    expect(browser->wait_for_text("form.force .rpc-result", "submitted"),
           "the form did not report the buildset: " + browser->text("form.force"));
  });
  REQUIRE(web.master().run_until([&] { return !web.master().finished_builds().empty(); }));
  const json build = web.get("/api/v2/builders/unit/builds").json()["builds"][0];
  REQUIRE(build["results"] == 0);
  const bool shown = web.off_loop([&] { return browser->wait_for_text("#live", "success"); });
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(shown);
  REQUIRE(web.off_loop([&] { return browser->script("return window.kilnNoReload === true;"); }) == true);
  const json buildset = web.get("/api/v2/buildsets").json()["buildsets"][0];
  REQUIRE(buildset["reason"].get<std::string>().find("forced from a browser") != std::string::npos);
  require_no_console_errors(web, *browser);
}

TEST_CASE("a log page shows the lines of a running step as they come without a reload") {
  WebMaster web;
  auto browser = open_browser();
  REQUIRE(web.rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}}).status == 200);
  const json build = running_build(web, "slow");
  json logs;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    logs = web.get("/api/v2/builds/" + build["buildid"].dump() + "/steps/wait/logs").json();
  } while ((!logs.contains("logs") || logs["logs"].empty()) && std::chrono::steady_clock::now() < deadline);
  REQUIRE(!logs["logs"].empty());
  const std::string page = "/logs/" + logs["logs"][0]["logid"].dump();
  // The master's clock is the test's: it moves while the browser waits, so
  // the engine's timed log flushes happen.
  auto streaming = std::async(std::launch::async, [&] {
    browser->navigate(url(web, page));
    browser->script("window.kilnNoReload = true;");
    expect(browser->wait_for_text("#live", "tick"), "the log page shows no line: " + browser->text("body"));
    // A line the page did not have when it loaded.
    const std::string first = browser->text("#live");
    const size_t at = first.rfind("tick ");
    const int shown = std::stoi(first.substr(at + 5));
    return browser->wait_for_text("#live", "tick " + std::to_string(shown + 3));
  });
  while (streaming.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) web.master().advance_s(1);
  const bool streams = streaming.get();
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(streams);
  REQUIRE(web.off_loop([&] { return browser->script("return window.kilnNoReload === true;"); }) == true);
  REQUIRE(web.rpc("/api/v2/builds/" + build["buildid"].dump(), "stop", json::object()).status == 200);
  require_no_console_errors(web, *browser);
}

TEST_CASE("a build page's stop button stops its build and the page shows it without a reload") {
  WebMaster web;
  auto browser = open_browser();
  REQUIRE(web.rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}}).status == 200);
  const json build = running_build(web, "slow");
  web.off_loop([&] {
    browser->navigate(url(web, "/builds/" + build["buildid"].dump()));
    browser->script("window.kilnNoReload = true;");
    browser->click("button[data-method=stop]");
  });
  REQUIRE(web.master().run_until([&] { return !web.master().finished_builds().empty(); }));
  REQUIRE(web.master().finished_builds().back()["results"] == 6);
  const bool shown = web.off_loop([&] { return browser->wait_for_text("#live", "cancelled"); });
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(shown);
  REQUIRE(web.off_loop([&] { return browser->script("return window.kilnNoReload === true;"); }) == true);
  require_no_console_errors(web, *browser);
}

TEST_CASE("a worker page's ping button pings the worker and says so") {
  WebMaster web;
  auto browser = open_browser();
  web.off_loop([&] {
    browser->navigate(url(web, "/workers/w1"));
    browser->click("button[data-method=ping]");
  });
  const bool answered = web.off_loop([&] { return browser->wait_for_text(".rpc-result", "done"); });
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(answered);
  require_no_console_errors(web, *browser);
}

TEST_CASE("a force from the page without a login is refused and starts nothing") {
  WebMaster web("auth:\n  users: [{username: ann, password: secret}]\nauthz:\n  force_build: [ann]");
  auto browser = open_browser();
  const std::string said = web.off_loop([&] {
    browser->navigate(url(web, "/builders/unit"));
    expect(!browser->find("form.force").empty(), "the builder page has no force form");
    browser->click("form.force button[type=submit]");
    expect(browser->wait_until([&] { return !browser->text("form.force .rpc-result").empty(); }),
           "the form said nothing");
    return browser->text("form.force .rpc-result");
  });
  INFO(said);
  REQUIRE_THAT(said, Catch::Contains("login"));
  REQUIRE(web.get("/api/v2/buildrequests").json()["buildrequests"].empty());
  // The refusal is the console's only error: the 401 of the force call.
  const auto errors = web.off_loop([&] { return browser->console_errors(); });
  INFO(kiln::testing::describe(errors));
  REQUIRE(errors.size() == 1);
  REQUIRE_THAT(errors[0].message, Catch::Contains("401"));
}

TEST_CASE("a browser that logs in with the form may force from the builder page") {
  WebMaster web("auth:\n  users: [{username: ann, password: secret}]\nauthz:\n  force_build: [ann]");
  auto browser = open_browser();
  web.off_loop([&] {
    browser->navigate(url(web, "/auth/login"));
    browser->fill("input[name=username]", "ann");
    browser->fill("input[name=password]", "secret");
    browser->click("button[type=submit]");
    expect(browser->wait_for_text("body", "ann"), "not logged in: " + browser->text("body"));
    browser->navigate(url(web, "/builders/lint"));
    browser->click("form.force button[type=submit]");
    expect(browser->wait_for_text("form.force .rpc-result", "submitted"),
           "the force was not submitted: " + browser->text("form.force"));
  });
  REQUIRE(web.master().run_until([&] { return !web.master().finished_builds().empty(); }));
  require_no_console_errors(web, *browser);
}
