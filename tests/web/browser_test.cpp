// The web plugin's pages in a real headless Chromium (browser.h) against a
// real master: every page loads with no console errors, and pages follow a
// build live, without a reload.

#include "web/browser.h"
#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using kiln::testing::Browser;
using kiln::testing::ConsoleEntry;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

// Ids of real objects a page's path may name: {buildid}, {builderid},
// {number}, {stepid}, {logid}.
struct Ids {
  json build;
  json step;
  json log;
};

// One page: its path (with {placeholders}), and a text a selector shows
// once the page has rendered from the API.
struct Page {
  std::string path;
  std::string selector;
  std::string shows;
};

// Every page the web plugin serves. A new page goes here.
std::vector<Page> served_pages() {
  return {
      {"/", "#content", "unit"},
      {"/builders", "#content", "lint"},
      {"/builders/unit", "#title", "Builder unit"},
      {"/builders/{builderid}", "#title", "Builder unit"},
      {"/builds/{buildid}", "#content", "hello"},
  };
}

std::string expand(std::string path, const Ids& ids) {
  const std::vector<std::pair<std::string, json>> values = {
      {"{buildid}", ids.build["buildid"]},   {"{builderid}", ids.build["builderid"]},
      {"{number}", ids.build["number"]},     {"{stepid}", ids.step["stepid"]},
      {"{logid}", ids.log["logid"]}};
  for (const auto& [name, value] : values) {
    for (size_t at = path.find(name); at != std::string::npos; at = path.find(name)) {
      path.replace(at, name.size(), value.dump());
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

Ids finished_unit_build(WebMaster& web) {
  Ids ids;
  ids.build = web.force_and_finish("unit");
  ids.step = web.get("/api/v2/builds/" + ids.build["buildid"].dump() + "/steps").json()["steps"][0];
  ids.log = web.get("/api/v2/steps/" + ids.step["stepid"].dump() + "/logs").json()["logs"][0];
  return ids;
}

}  // namespace

TEST_CASE("every page loads in a real browser with no console errors") {
  WebMaster web;
  const Ids ids = finished_unit_build(web);
  auto browser = open_browser();
  for (const auto& page : served_pages()) {
    const std::string path = expand(page.path, ids);
    INFO("page " << path);
    const bool rendered = web.off_loop([&] {
      browser->navigate(url(web, path));
      return browser->wait_for_text(page.selector, page.shows);
    });
    const auto errors = web.off_loop([&] { return browser->console_errors(); });
    INFO("console errors:\n" << kiln::testing::describe(errors));
    CHECK(rendered);
    CHECK(errors.empty());
  }
}

TEST_CASE("a builder page shows a build forced meanwhile without a reload") {
  WebMaster web;
  auto browser = open_browser();
  web.off_loop([&] {
    browser->navigate(url(web, "/builders/unit"));
    if (!browser->wait_for_text("#title", "Builder unit")) throw std::runtime_error("no builder page");
    // Gone if the page reloads.
    browser->script("window.kilnNoReload = true;");
  });
  const json build = web.force_and_finish("unit");
  const std::string number = "#" + build["number"].dump();
  const bool shown = web.off_loop([&] { return browser->wait_for_text("#content", number); });
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(shown);
  REQUIRE(web.off_loop([&] { return browser->script("return window.kilnNoReload === true;"); }) == true);
  const auto errors = web.off_loop([&] { return browser->console_errors(); });
  INFO(kiln::testing::describe(errors));
  REQUIRE(errors.empty());
}

TEST_CASE("a build page follows its build from running to finished without a reload") {
  WebMaster web;
  auto browser = open_browser();
  // `slow` runs until stopped, so the page sees it running first.
  auto forced = web.rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}});
  REQUIRE(forced.status == 200);
  json running;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    running = web.get("/api/v2/builders/slow/builds?complete=false").json();  // turns the loop
  } while (running["builds"].empty() && std::chrono::steady_clock::now() < deadline);
  REQUIRE(!running["builds"].empty());
  const std::string buildid = running["builds"][0]["buildid"].dump();
  const bool shows_running = web.off_loop([&] {
    browser->navigate(url(web, "/builds/" + buildid));
    browser->script("window.kilnNoReload = true;");
    return browser->wait_for_text("#content", "running");
  });
  REQUIRE(shows_running);
  auto stopped = web.rpc("/api/v2/builds/" + buildid, "stop", {{"reason", "enough"}});
  REQUIRE(stopped.status == 200);
  const bool shows_cancelled = web.off_loop([&] { return browser->wait_for_text("#content", "cancelled"); });
  INFO(web.off_loop([&] { return browser->text("body"); }));
  REQUIRE(shows_cancelled);
  REQUIRE(web.off_loop([&] { return browser->script("return window.kilnNoReload === true;"); }) == true);
  const auto errors = web.off_loop([&] { return browser->console_errors(); });
  INFO(kiln::testing::describe(errors));
  REQUIRE(errors.empty());
}

TEST_CASE("a force from a page without a login is refused and starts nothing") {
  WebMaster web("auth:\n  users: [{username: ann, password: secret}]\nauthz:\n  force_build: [ann]");
  auto browser = open_browser();
  const json answer = web.off_loop([&] {
    browser->navigate(url(web, "/"));
    // What a page's force button sends.
    return browser->script(R"js(
      return fetch("/api/v2/forceschedulers/force", {method: "POST",
          headers: {"Content-Type": "application/json"},
          body: JSON.stringify({jsonrpc: "2.0", method: "force", id: 1,
                                params: {builderNames: ["unit"], reason: "from a page"}})})
        .then(async r => ({status: r.status, body: await r.json()}));)js");
  });
  INFO(answer.dump());
  REQUIRE(answer["status"] == 401);
  REQUIRE(web.get("/api/v2/buildrequests").json()["buildrequests"].empty());
}

TEST_CASE("a browser that logs in with the form may force a build") {
  WebMaster web("auth:\n  users: [{username: ann, password: secret}]\nauthz:\n  force_build: [ann]");
  auto browser = open_browser();
  const bool logged_in = web.off_loop([&] {
    browser->navigate(url(web, "/auth/login"));
    browser->fill("input[name=username]", "ann");
    browser->fill("input[name=password]", "secret");
    browser->click("button[type=submit]");
    return browser->wait_for_text("#who", "ann");
  });
  REQUIRE(logged_in);
  const json answer = web.off_loop([&] {
    return browser->script(R"js(
      return fetch("/auth/me").then(r => r.json()).then(me =>
        fetch("/api/v2/forceschedulers/force", {method: "POST",
            headers: {"Content-Type": "application/json", "X-CSRF-Token": me.csrf_token},
            body: JSON.stringify({jsonrpc: "2.0", method: "force", id: 1,
                                  params: {builderNames: ["lint"], reason: "from a page"}})}))
        .then(async r => ({status: r.status, body: await r.json()}));)js");
  });
  INFO(answer.dump());
  REQUIRE(answer["status"] == 200);
  REQUIRE(web.master().run_until([&] { return !web.master().finished_builds().empty(); }));
  const auto errors = web.off_loop([&] { return browser->console_errors(); });
  INFO(kiln::testing::describe(errors));
  REQUIRE(errors.empty());
}
