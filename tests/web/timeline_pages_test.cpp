// The seeds' timeline pages over real HTTP, from builds that ran on local
// workers: the builders summary, waterfall, grid, tgrid, console,
// one_line_per_build and the RSS/Atom feeds, their query arguments, 400s
// for bad ones, and the feeds read by a real XML parser (python3's).

#include "store/temp_dir.h"
#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <regex>
#include <string>

using kiln::testing::HttpReply;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

constexpr const char* kBaseHook = "change_hook_dialects:\n  base: true\n";

std::string page(WebMaster& web, const std::string& target) {
  HttpReply reply = web.get(target);
  INFO(target << " -> " << reply.status << " " << reply.body.substr(0, 800));
  REQUIRE(reply.status == 200);
  return reply.body;
}

void require_bad(WebMaster& web, const std::string& target, const std::string& reason) {
  HttpReply reply = web.get(target);
  INFO(target << " -> " << reply.status << " " << reply.body.substr(0, 800));
  REQUIRE(reply.status == 400);
  // The page shows the reason HTML-escaped.
  REQUIRE_THAT(reply.body, Catch::Contains(std::regex_replace(reason, std::regex("'"), "&#39;")));
}

std::string build_href(const json& build) { return "/builds/" + build["buildid"].dump() + "\""; }

// Adds a change through the base hook; returns its id.
int64_t add_change(WebMaster& web, const std::string& revision, const std::string& author,
                   const std::string& branch = "main") {
  HttpReply reply = web.request(
      "POST", "/change_hook/base",
      json{{"author", author}, {"revision", revision}, {"branch", branch},
           {"repository", "https://example.org/app.git"}, {"project", "app"},
           {"comments", "change " + revision}}
          .dump(),
      {{"Content-Type", "application/json"}});
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  return reply.json()["changeids"][0].get<int64_t>();
}

// Forces `builder` on the change's source stamp (the same stamp, so the
// build is one of the change's builds) and, unless `wait` is false, waits
// for it to finish. Returns the build's id.
json force_on(WebMaster& web, const std::string& builder, const std::string& revision,
              bool wait = true, const std::string& branch = "main") {
  const size_t finished = web.master().finished_builds().size();
  HttpReply reply = web.rpc("/api/v2/forceschedulers/force", "force",
                            {{"builderNames", {builder}},
                             {"reason", "test"},
                             {"owner", "ann"},
                             {"branch", branch},
                             {"revision", revision},
                             {"repository", "https://example.org/app.git"},
                             {"project", "app"}});
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  if (!wait) return nullptr;
  REQUIRE(web.master().run_until([&] { return web.master().finished_builds().size() > finished; }));
  const auto buildid = web.master().finished_builds().back()["buildid"];
  return web.get("/api/v2/builds/" + buildid.dump()).json()["builds"][0];
}

// The root element's tag and the number of its `item` (RSS) or `entry`
// (Atom) elements, as Python's XML parser reads the document.
std::string parse_feed(const std::string& xml) {
  kiln::testing::TempDir dir;
  const auto file = dir.path() / "feed.xml";
  std::ofstream(file) << xml;
  const std::string command =
      "python3 -c \"import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); "
      "a = '{http://www.w3.org/2005/Atom}'; "
      "print(r.tag, len(r.findall('channel/item')) + len(r.findall(a + 'entry')))\" " +
      file.string() + " 2>&1";
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  ::pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("the builders page lists every builder with its last build and filters by name and tag") {
  WebMaster web;
  const json unit = web.force_and_finish("unit");
  const json lint = web.force_and_finish("lint");

  const std::string all = page(web, "/builders");
  for (const char* name : {">unit<", ">lint<", ">slow<"}) CHECK_THAT(all, Catch::Contains(name));
  CHECK_THAT(all, Catch::Contains(build_href(unit)));
  CHECK_THAT(all, Catch::Contains(build_href(lint)));
  CHECK_THAT(all, Catch::Contains("result-success"));
  CHECK_THAT(all, Catch::Contains("result-failure"));
  CHECK_THAT(all, Catch::Contains("3 builders: 1 passing, 1 failing, 0 building"));
  const std::string home = page(web, "/");
  CHECK_THAT(home, Catch::Contains(build_href(unit)));
  CHECK_THAT(home, Catch::Contains("3 builders: 1 passing, 1 failing, 0 building"));

  const std::string fast = page(web, "/builders?tag=fast");
  CHECK_THAT(fast, Catch::Contains(">unit<"));
  CHECK_THAT(fast, !Catch::Contains(">lint<"));
  const std::string searched = page(web, "/builders?search=lin");
  CHECK_THAT(searched, Catch::Contains(">lint<"));
  CHECK_THAT(searched, !Catch::Contains(">unit<"));
  const std::string named = page(web, "/builders?builder=slow&builder=unit");
  CHECK_THAT(named, Catch::Contains("2 builders"));
  // A branch no build was on: the builders stay, their last build does not.
  const std::string other = page(web, "/builders?branch=nowhere");
  CHECK_THAT(other, !Catch::Contains(build_href(unit)));

  require_bad(web, "/builders?color=red", "unknown query argument 'color'");
}

TEST_CASE("the waterfall shows each builder's builds and honours its query arguments") {
  WebMaster web;
  const json unit = web.force_and_finish("unit");
  const json lint = web.force_and_finish("lint");

  const std::string all = page(web, "/waterfall");
  CHECK_THAT(all, Catch::Contains(build_href(unit)));
  CHECK_THAT(all, Catch::Contains(build_href(lint)));
  CHECK_THAT(all, Catch::Contains("<th>changes</th>"));
  // The page follows builds over one /ws subscription of the shared script.
  CHECK_THAT(all, Catch::Contains("builds/*/finished"));

  const std::string only_unit = page(web, "/waterfall?builder=unit");
  CHECK_THAT(only_unit, Catch::Contains(build_href(unit)));
  CHECK_THAT(only_unit, !Catch::Contains(build_href(lint)));
  CHECK_THAT(page(web, "/waterfall?category=fast"), !Catch::Contains(build_href(lint)));

  // lint's last build failed; unit passed; slow has no build.
  const std::string failing = page(web, "/waterfall?failures_only=true");
  CHECK_THAT(failing, Catch::Contains(build_href(lint)));
  CHECK_THAT(failing, !Catch::Contains(build_href(unit)));
  CHECK_THAT(failing, !Catch::Contains(">slow<"));

  const std::string newest = page(web, "/waterfall?num_events=1");
  CHECK_THAT(newest, Catch::Contains(build_href(lint)));
  CHECK_THAT(newest, !Catch::Contains(build_href(unit)));
  CHECK_THAT(page(web, "/waterfall?num_events=5&num_events_max=1"), !Catch::Contains(build_href(unit)));

  const int64_t started = unit["started_at"].get<int64_t>();
  const std::string before = page(web, "/waterfall?last_time=" + std::to_string(started - 1));
  CHECK_THAT(before, !Catch::Contains(build_href(unit)));
  CHECK_THAT(page(web, "/waterfall?first_time=" + std::to_string(started)),
             Catch::Contains(build_href(unit)));
  CHECK_THAT(page(web, "/waterfall?show_time=3600&last_time=" + std::to_string(started - 7200)),
             !Catch::Contains(build_href(unit)));
  CHECK_THAT(page(web, "/waterfall?show_events=false"), !Catch::Contains("<th>changes</th>"));
  CHECK_THAT(page(web, "/waterfall?branch=nowhere"), !Catch::Contains(build_href(unit)));

  require_bad(web, "/waterfall?num_events=many", "num_events");
  require_bad(web, "/waterfall?failures_only=maybe", "'failures_only' must be true or false");
  require_bad(web, "/waterfall?show_events=", "show_events");
  require_bad(web, "/waterfall?first_time=20&last_time=10", "first_time (20) is after last_time (10)");
  require_bad(web, "/waterfall?bulder=unit", "unknown query argument 'bulder'");
}

TEST_CASE("grid tgrid and console show the builds of each change") {
  WebMaster web(kBaseHook);
  const int64_t first = add_change(web, "aaaa1111", "Ann <ann@example.org>");
  const json unit = force_on(web, "unit", "aaaa1111");
  const json lint = force_on(web, "lint", "aaaa1111");
  const int64_t second = add_change(web, "bbbb2222", "Bob <bob@example.org>");
  const json lint2 = force_on(web, "lint", "bbbb2222");

  const std::string grid = page(web, "/grid");
  CHECK_THAT(grid, Catch::Contains("/changes/" + std::to_string(first) + "\""));
  CHECK_THAT(grid, Catch::Contains("/changes/" + std::to_string(second) + "\""));
  for (const json* b : {&unit, &lint, &lint2}) CHECK_THAT(grid, Catch::Contains(build_href(*b)));
  const std::string narrow = page(web, "/grid?width=1");
  CHECK_THAT(narrow, !Catch::Contains(build_href(unit)));
  CHECK_THAT(narrow, Catch::Contains(build_href(lint2)));
  CHECK_THAT(page(web, "/grid?category=fast"), !Catch::Contains(build_href(lint)));
  CHECK_THAT(page(web, "/grid?branch=other"), !Catch::Contains(build_href(unit)));

  // tgrid: newest revision first unless rev_order=asc.
  const std::string desc = page(web, "/tgrid");
  const std::string asc = page(web, "/tgrid?rev_order=asc");
  CHECK(desc.find(build_href(lint2)) < desc.find(build_href(unit)));
  CHECK(asc.find(build_href(lint2)) > asc.find(build_href(unit)));
  CHECK_THAT(page(web, "/tgrid?length=1"), !Catch::Contains(build_href(unit)));

  // Console: unit green; lint red on the first change (nothing passed or
  // failed before it), orange on the second (it was failing already).
  const std::string console = page(web, "/console");
  auto colour_of = [&](const std::string& html, const json& build) {
    std::smatch m;
    const std::regex cell("<td class=\"box (console-[a-z]+)\"><a href=\"/builds/" +
                          build["buildid"].dump() + "\"");
    return std::regex_search(html, m, cell) ? m[1].str() : std::string("none");
  };
  CHECK(colour_of(console, unit) == "console-green");
  CHECK(colour_of(console, lint) == "console-red");
  CHECK(colour_of(console, lint2) == "console-orange");
  // Ordered by time: the newer change first.
  CHECK(console.find(build_href(lint2)) < console.find(build_href(unit)));
  CHECK(colour_of(page(web, "/console?name=Bob"), unit) == "none");
  CHECK(colour_of(page(web, "/console?name=Ann"), unit) == "console-green");
  CHECK(colour_of(page(web, "/console?builder=lint"), unit) == "none");
  CHECK(colour_of(page(web, "/console?repository=https://example.org/app.git"), unit) ==
        "console-green");
  CHECK(colour_of(page(web, "/console?project=other"), unit) == "none");
  CHECK(colour_of(page(web, "/console?branch=main"), lint) == "console-red");

  // A build still running is yellow.
  add_change(web, "cccc3333", "Cy <cy@example.org>");
  force_on(web, "slow", "cccc3333", false);
  REQUIRE(web.master().run_until([&] {
    return web.get("/api/v2/builds?complete=false").json()["builds"].size() == 1;
  }));
  CHECK_THAT(page(web, "/console"), Catch::Contains("console-yellow"));

  require_bad(web, "/grid?width=wide", "width");
  require_bad(web, "/tgrid?rev_order=sideways", "rev_order must be asc or desc, not 'sideways'");
  require_bad(web, "/tgrid?width=3", "unknown query argument 'width'");
  require_bad(web, "/console?length=-2", "length");
}

TEST_CASE("one_line_per_build lists finished builds newest first with numbuilds builder and branch") {
  WebMaster web(kBaseHook);
  const json unit = force_on(web, "unit", "aaaa1111");
  const json lint = force_on(web, "lint", "bbbb2222", true, "release");

  const std::string all = page(web, "/one_line_per_build");
  REQUIRE(count(all, "<li>") == 2);
  CHECK(all.find(build_href(lint)) < all.find(build_href(unit)));
  CHECK_THAT(all, Catch::Contains("rev aaaa1111"));
  CHECK(count(page(web, "/one_line_per_build?numbuilds=1"), "<li>") == 1);
  const std::string only_unit = page(web, "/one_line_per_build?builder=unit");
  CHECK_THAT(only_unit, Catch::Contains(build_href(unit)));
  CHECK_THAT(only_unit, !Catch::Contains(build_href(lint)));
  const std::string release = page(web, "/one_line_per_build?branch=release");
  CHECK_THAT(release, Catch::Contains(build_href(lint)));
  CHECK_THAT(release, !Catch::Contains(build_href(unit)));

  require_bad(web, "/one_line_per_build?numbuilds=-1", "numbuilds");
}

TEST_CASE("the RSS and Atom feeds list failed builds as well-formed XML with the waterfall's filters") {
  WebMaster web;
  const json unit = web.force_and_finish("unit");
  const json lint = web.force_and_finish("lint");

  HttpReply rss = web.get("/rss");
  REQUIRE(rss.status == 200);
  CHECK_THAT(rss.headers.at("content-type"), Catch::StartsWith("application/rss+xml"));
  REQUIRE(parse_feed(rss.body) == "rss 1");
  CHECK_THAT(rss.body, Catch::Contains("/builds/" + lint["buildid"].dump() + "<"));
  CHECK_THAT(rss.body, !Catch::Contains("/builds/" + unit["buildid"].dump() + "<"));

  HttpReply atom = web.get("/atom");
  REQUIRE(atom.status == 200);
  CHECK_THAT(atom.headers.at("content-type"), Catch::StartsWith("application/atom+xml"));
  REQUIRE(parse_feed(atom.body) == "{http://www.w3.org/2005/Atom}feed 1");

  REQUIRE(parse_feed(web.get("/rss?builder=unit").body) == "rss 0");
  REQUIRE(parse_feed(web.get("/atom?category=fast").body) == "{http://www.w3.org/2005/Atom}feed 0");
  require_bad(web, "/rss?num_events=x", "num_events");
}

TEST_CASE("a page's live fragment shows a build that finished after the page was loaded") {
  WebMaster web;
  const std::string before = page(web, "/waterfall?fragment=1");
  const json unit = web.force_and_finish("unit");
  CHECK_THAT(before, !Catch::Contains(build_href(unit)));
  const std::string after = page(web, "/waterfall?fragment=1");
  CHECK_THAT(after, Catch::Contains(build_href(unit)));
  // The fragment is the live part alone, without the page's shell.
  CHECK_THAT(after, !Catch::Contains("<html"));
}
