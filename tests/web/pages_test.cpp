// The server-rendered pages over real HTTP against a real master whose
// builds ran on local workers: every entity page, its query arguments,
// paged logs and their streamed /text, the fragment the live script
// fetches, public_html and the template override folder, the URL
// decorations of the config, and the errors (400 with the reason, 404).

#include "store/temp_dir.h"
#include "web/web_master.h"

#include <kiln/sdk/base64.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

using kiln::testing::HttpConnection;
using kiln::testing::HttpReply;
using kiln::testing::LiveConnection;
using kiln::testing::TempDir;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

std::string page_of(WebMaster& web, const std::string& target) {
  HttpReply reply = web.get(target);
  INFO(target << " -> " << reply.status << " " << reply.body.substr(0, 2000));
  REQUIRE(reply.status == 200);
  REQUIRE(reply.headers.at("content-type") == "text/html; charset=utf-8");
  return reply.body;
}

void require_page_error(WebMaster& web, const std::string& target, unsigned status,
                        const std::string& reason) {
  HttpReply reply = web.get(target);
  INFO(target << " -> " << reply.status << " " << reply.body.substr(0, 2000));
  REQUIRE(reply.status == status);
  REQUIRE_THAT(reply.body, Catch::Contains(reason));
}

std::string seq(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += std::to_string(i) + "\n";
  return out;
}

}  // namespace

TEST_CASE("the builder page shows recent builds pending requests and the force form") {
  WebMaster web;
  json unit = web.force_and_finish("unit");
  web.force_and_finish("unit");
  const std::string page = page_of(web, "/builders/unit");
  REQUIRE_THAT(page, Catch::Contains("<h1>Builder unit</h1>"));
  REQUIRE_THAT(page, Catch::Contains("Tags: fast"));
  REQUIRE_THAT(page, Catch::Contains("href=\"/builders/" + unit["builderid"].dump() + "/builds/1\">#1</a>"));
  REQUIRE_THAT(page, Catch::Contains("href=\"/builders/" + unit["builderid"].dump() + "/builds/2\">#2</a>"));
  REQUIRE_THAT(page, Catch::Contains("class=\"result-success\">success</td>"));
  // The force form of the scheduler that may build it, posting JSON-RPC.
  REQUIRE_THAT(page, Catch::Contains("data-rpc=\"/api/v2/forceschedulers/force\" data-method=\"force\""));
  REQUIRE_THAT(page, Catch::Contains("name=\"reason\" value=\"force build\""));
  REQUIRE_THAT(page, Catch::Contains("&quot;builderNames&quot;:[&quot;unit&quot;]"));
  REQUIRE_THAT(page, Catch::Contains("\">w1</a></td></tr>"));  // the worker of a build
  // One subscription to what changes the page, narrowed to this builder.
  REQUIRE_THAT(page, Catch::Contains("data-live=\"builds/*/*,buildrequests/*/*,workers/*/*\""));
  REQUIRE_THAT(
      page, Catch::Contains("data-live-match=\"{&quot;builderid&quot;:" + unit["builderid"].dump() + "}\""));
  // By id too, and numbuilds limits the list.
  const std::string by_id = page_of(web, "/builders/" + unit["builderid"].dump() + "?numbuilds=1");
  REQUIRE_THAT(by_id, Catch::Contains("/builds/2\">#2</a>"));
  REQUIRE_THAT(by_id, !Catch::Contains("/builds/1\">#1</a>"));
}

TEST_CASE("a pending request is listed with a cancel button that cancels it") {
  WebMaster web;
  // slow's worker takes one build at a time: the second request waits.
  for (int i = 0; i < 2; ++i) {
    REQUIRE(web.rpc("/api/v2/forceschedulers/force", "force", {{"builderNames", {"slow"}}}).status == 200);
  }
  auto waiting_request = [&] {
    for (const json& r : web.master().get("builders/slow/buildrequests")) {
      if (!r["claimed"].get<bool>()) return r;
    }
    return json();
  };
  REQUIRE(web.master().run_until(
      [&] { return !waiting_request().is_null() && web.master().get("builders/slow/builds").size() == 1; }));
  const json waiting = waiting_request();
  const std::string brid = waiting["buildrequestid"].dump();
  const std::string page = page_of(web, "/builders/slow");
  REQUIRE_THAT(page, Catch::Contains("<h2>Pending build requests</h2>"));
  REQUIRE_THAT(page,
               Catch::Contains("data-rpc=\"/api/v2/buildrequests/" + brid + "\" data-method=\"cancel\""));
  // What the button posts.
  REQUIRE(web.rpc("/api/v2/buildrequests/" + brid, "cancel", {{"reason", "x"}}).status == 200);
  REQUIRE_THAT(page_of(web, "/builders/slow?fragment=1"),
               !Catch::Contains("/api/v2/buildrequests/" + brid + "\""));
  const json running = web.master().get("builders/slow/builds")[0];
  const std::string build = page_of(web, "/builds/" + running["buildid"].dump());
  REQUIRE_THAT(build, Catch::Contains("data-method=\"stop\""));
  REQUIRE(web.rpc("/api/v2/builds/" + running["buildid"].dump(), "stop").status == 200);
}

TEST_CASE("the build page shows steps logs properties blamelist changes and rebuild") {
  WebMaster web;
  web.master().add_change({{"author", "dev <dev@example.org>"},
                           {"comments", "make it faster"},
                           {"revision", "0123456789abcdef"},
                           {"branch", "main"},
                           {"repository", "https://git.example.org/r"},
                           {"project", "proj"}});
  json build = web.force_and_finish("unit");
  const std::string id = build["buildid"].dump();
  const std::string bid = build["builderid"].dump();
  for (const std::string& target : std::vector<std::string>{"/builds/" + id, "/builders/unit/builds/1",
                                                            "/builders/" + bid + "/builds/1"}) {
    const std::string page = page_of(web, target);
    INFO(target);
    REQUIRE_THAT(page, Catch::Contains(">unit</a> build #1</h1>"));
    REQUIRE_THAT(page, Catch::Contains("href=\"/builders/" + bid + "/builds/1/steps/0\">hello</a>"));
    REQUIRE_THAT(page, Catch::Contains("href=\"/builders/" + bid + "/builds/1/steps/1\">count</a>"));
    REQUIRE_THAT(page,
                 Catch::Contains("href=\"/builders/" + bid + "/builds/1/steps/0/logs/stdio\">stdio</a>"));
    REQUIRE_THAT(page, Catch::Contains("data-method=\"rebuild\""));
    REQUIRE_THAT(page, Catch::Contains("<h2>Properties</h2>"));
    REQUIRE_THAT(page, Catch::Contains("<td>owner</td><td>ann</td><td>"));
    REQUIRE_THAT(page, Catch::Contains("<h2>Blamelist</h2>"));
    REQUIRE_THAT(page, Catch::Contains("<th>reason</th><td>A build was forced by &#39;ann&#39;: test</td>"));
    REQUIRE_THAT(page, Catch::Contains("data-live=\"builds/" + id + "/*,steps/*/*\""));
  }
  require_page_error(web, "/builds/999", 404, "999");
  require_page_error(web, "/builders/unit/builds/77", 404, "");
  require_page_error(web, "/builders/nosuch", 404, "nosuch");
  require_page_error(web, "/builds/x", 404, "not a number");
}

TEST_CASE("step and log pages colour the streams and the text form strips headers") {
  WebMaster web;
  json build = web.force_and_finish("unit");
  const std::string bid = build["builderid"].dump();
  const std::string base = "/builders/" + bid + "/builds/1/steps/hello";
  const std::string step = page_of(web, base);
  REQUIRE_THAT(step, Catch::Contains("Step hello of"));
  REQUIRE_THAT(step, Catch::Contains("/logs/stdio\">stdio</a>"));
  REQUIRE_THAT(step, Catch::Contains("/raw\">download</a>"));

  const std::string log = page_of(web, base + "/logs/stdio");
  REQUIRE_THAT(log,
               Catch::Contains("<span class=\"o\">line 1\nline 2\n</span><span class=\"e\">oops\n</span>"));
  REQUIRE_THAT(log, Catch::Contains("<span class=\"h\">"));
  HttpReply text = web.get(base + "/logs/stdio/text");
  REQUIRE(text.status == 200);
  REQUIRE(text.headers.at("content-type") == "text/plain; charset=utf-8");
  REQUIRE(text.body == "line 1\nline 2\noops\n");
}

TEST_CASE("a long log is shown a page at a time and its text form streams it whole") {
  WebMaster web;
  json build = web.force_and_finish("unit");
  const json log = web.master().get("builders/unit/builds/1/steps/count/logs/stdio");
  const std::string logid = log["logid"].dump();
  const int64_t lines = log["num_lines"].get<int64_t>();
  // Header lines come before seq's output (and after it).
  const std::string head =
      web.master().get("logs/" + logid + "/contents", {{"offset", 0}, {"limit", 200}})["content"];
  const size_t at = head.find("\no1\n");
  REQUIRE(at != std::string::npos);
  const auto header = static_cast<int64_t>(
      std::count(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(at), '\n') + 1);

  const std::string first = page_of(web, "/logs/" + logid + "?limit=100");
  REQUIRE_THAT(first, Catch::Contains(" of " + std::to_string(lines)));
  REQUIRE_THAT(first, Catch::Contains("?offset=100&amp;limit=100\">next</a>"));
  // The page ends at line 100: the header's lines, then seq's first ones.
  REQUIRE_THAT(first, Catch::Contains("\n" + std::to_string(100 - header) + "\n</span></pre>"));

  const std::string middle =
      page_of(web, "/logs/" + logid + "?offset=" + std::to_string(header + 2000) + "&limit=3");
  REQUIRE_THAT(middle, Catch::Contains("<span class=\"o\">2001\n2002\n2003\n</span>"));
  REQUIRE_THAT(middle, Catch::Contains("\">previous</a>"));

  HttpReply text = web.get("/builders/unit/builds/1/steps/count/logs/stdio/text");
  REQUIRE(text.status == 200);
  REQUIRE(text.chunked);
  REQUIRE(text.body == seq(1, 5000));
}

TEST_CASE("bad page arguments answer 400 with the reason") {
  WebMaster web;
  web.force_and_finish("lint");
  require_page_error(web, "/builders/lint?numbuilds=x", 400, "numbuilds=x: must be a whole number");
  require_page_error(web, "/builders/lint?numbuilds=-1", 400, "numbuilds");
  require_page_error(web, "/builders/lint?numbuilds=100000", 400, "1000");
  require_page_error(web, "/logs/1?limit=0", 400, "limit=0");
  require_page_error(web, "/logs/1?offset=abc", 400, "offset=abc");
  require_page_error(web, "/buildstatus?number=1", 400, "builder= is required");
  require_page_error(web, "/buildstatus?builder=lint", 400, "number= is required");
  require_page_error(web, "/workers?no_builders=2", 400, "no_builders=2");
  require_page_error(web, "/changes?num=x", 400, "num=x");
}

TEST_CASE("buildstatus changes workers about API help and robots.txt answer their pages") {
  WebMaster web;
  const int64_t changeid = web.master().add_change({{"author", "dev"},
                                                    {"comments", "a <b>bold</b> claim"},
                                                    {"revision", "abc"},
                                                    {"branch", "main"},
                                                    {"repository", "r"},
                                                    {"project", "p"},
                                                    {"files", {"src/a.c"}}});
  web.force_and_finish("lint");

  const std::string status = page_of(web, "/buildstatus?builder=lint&number=1");
  REQUIRE_THAT(status, Catch::Contains("class=\"result-failure\""));
  REQUIRE_THAT(status, Catch::Contains(">check</a>"));

  const std::string changes = page_of(web, "/changes");
  REQUIRE_THAT(changes, Catch::Contains("href=\"/changes/" + std::to_string(changeid) + "\""));
  REQUIRE_THAT(changes, Catch::Contains("a &lt;b&gt;bold&lt;/b&gt; claim"));
  REQUIRE_THAT(page_of(web, "/changes?branch=other"), Catch::Contains("No changes."));
  const std::string change = page_of(web, "/changes/" + std::to_string(changeid));
  REQUIRE_THAT(change, Catch::Contains("src/a.c"));
  require_page_error(web, "/changes/4242", 404, "");

  const std::string workers = page_of(web, "/workers");
  REQUIRE_THAT(workers, Catch::Contains(">w1</a>"));
  REQUIRE_THAT(workers, Catch::Contains("<th>builders</th>"));
  // (Which builders a worker serves comes from configured_on, which the
  // core does not record yet: the column is there, empty.)
  const std::string bare = page_of(web, "/workers?no_builders=1");
  REQUIRE_THAT(bare, !Catch::Contains("<th>builders</th>"));
  const std::string worker = page_of(web, "/workers/w1");
  REQUIRE_THAT(worker, Catch::Contains("<h1>Worker w1</h1>"));
  REQUIRE_THAT(worker, Catch::Contains("/builds/1\">#1</a>"));
  REQUIRE_THAT(worker, Catch::Contains("data-method=\"ping\""));
  REQUIRE_THAT(worker, Catch::Contains("data-method=\"graceful_shutdown\""));

  const std::string about = page_of(web, "/about");
  REQUIRE_THAT(about, Catch::Contains("<td>Kiln</td>"));
  REQUIRE_THAT(about, Catch::Contains("OpenSSL"));
  REQUIRE_THAT(about, Catch::Contains("Boost"));
  REQUIRE_THAT(page_of(web, "/json/help"), Catch::Contains("href=\"/api/v2/builders\""));

  HttpReply robots = web.get("/robots.txt");
  REQUIRE(robots.status == 200);
  REQUIRE(robots.headers.at("content-type") == "text/plain; charset=utf-8");
  REQUIRE_THAT(robots.body, Catch::Contains("Disallow: /waterfall"));

  // Every page has the nav bar linking the others.
  for (const char* link :
       {"href=\"/changes\"", "href=\"/workers\"", "href=\"/about\"", "href=\"/json/help\""}) {
    REQUIRE_THAT(about, Catch::Contains(link));
  }
}

TEST_CASE("a fragment request answers only the live part of the page") {
  WebMaster web;
  web.force_and_finish("lint");
  const std::string whole = page_of(web, "/builders/lint");
  REQUIRE_THAT(whole, Catch::Contains("<!DOCTYPE html>"));
  REQUIRE_THAT(whole, Catch::Contains("new WebSocket"));
  const std::string part = page_of(web, "/builders/lint?fragment=1");
  REQUIRE_THAT(part, !Catch::Contains("<html"));
  REQUIRE_THAT(part, !Catch::Contains("<form"));  // the force form stays put
  REQUIRE_THAT(part, Catch::Contains("<h2>Recent builds</h2>"));
}

TEST_CASE("public_html files are served and traversal out of it answers 404") {
  TempDir dir("kiln-web-public");
  dir.write("public_html/hello.txt", "hello from public_html\n");
  dir.write("public_html/css/site.css", "body { color: red; }\n");
  dir.write("public_html/robots.txt", "User-agent: *\nDisallow: /secret\n");
  dir.write("secret.txt", "root:x:0:0\n");
  std::filesystem::create_symlink(dir / "secret.txt", dir / "public_html" / "link.txt");
  WebMaster web("public_html: " + (dir / "public_html").string());

  HttpReply hello = web.get("/hello.txt");
  REQUIRE(hello.status == 200);
  REQUIRE(hello.body == "hello from public_html\n");
  REQUIRE(hello.headers.at("content-type") == "text/plain; charset=utf-8");
  REQUIRE(web.get("/css/site.css").headers.at("content-type") == "text/css; charset=utf-8");
  REQUIRE(web.get("/robots.txt").body == "User-agent: *\nDisallow: /secret\n");
  for (const char* target :
       {"/../secret.txt", "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/css/..%2F..%2Fsecret.txt",
        "/%2E%2E%5Csecret.txt", "/link.txt", "/nothing.txt", "/css"}) {
    INFO(target);
    HttpReply reply = web.get(target);
    REQUIRE(reply.status == 404);
    REQUIRE(reply.body.find("root:") == std::string::npos);
  }
}

TEST_CASE("a template override folder replaces the page shell and adds to the style") {
  TempDir dir("kiln-web-templates");
  dir.write("templates/layout.html",
            "<!DOCTYPE html><html><head>{{head}}<title>{{title}}</title></head>"
            "<body><div class=\"banner\">ACME CI</div>{{nav}}{{content}}{{script}}</body></html>");
  dir.write("templates/style.css", ".banner { color: purple; }");
  WebMaster web("templates: " + (dir / "templates").string() + "\ntitle: ACME");
  const std::string page = page_of(web, "/about");
  REQUIRE_THAT(page, Catch::Contains("<div class=\"banner\">ACME CI</div><nav>"));
  REQUIRE_THAT(page, Catch::Contains(".banner { color: purple; }"));
  REQUIRE_THAT(page, Catch::Contains("<title>About - ACME</title>"));
  REQUIRE_THAT(page, Catch::Contains("<td>Kiln</td>"));
}

TEST_CASE("revlink changecommentlink projects and repositories decorate what pages show") {
  WebMaster web(
      "revlink:\n"
      "  https://git.example.org/r: \"https://git.example.org/r/commit/%s\"\n"
      "changecommentlink: {regex: \"#(\\\\d+)\", url: \"https://bugs.example.org/\\\\1\", title: \"Bug "
      "\\\\1\"}\n"
      "projects: {proj: \"https://proj.example.org/\"}\n"
      "repositories: {\"https://git.example.org/r\": \"https://git.example.org/r/browse\"}\n");
  const int64_t changeid = web.master().add_change({{"author", "dev"},
                                                    {"comments", "fixes #42 and #7"},
                                                    {"revision", "0123456789abcdef"},
                                                    {"repository", "https://git.example.org/r"},
                                                    {"project", "proj"}});
  const int64_t other = web.master().add_change({{"author", "dev"},
                                                 {"comments", "x"},
                                                 {"revision", "fedcba"},
                                                 {"repository", "elsewhere"},
                                                 {"project", "q"}});
  const std::string page = page_of(web, "/changes/" + std::to_string(changeid));
  REQUIRE_THAT(page, Catch::Contains("<a href=\"https://git.example.org/r/commit/0123456789abcdef\" "
                                     "title=\"0123456789abcdef\">0123456789ab</a>"));
  REQUIRE_THAT(page,
               Catch::Contains("fixes <a href=\"https://bugs.example.org/42\" title=\"Bug 42\">#42</a> and "
                               "<a href=\"https://bugs.example.org/7\" title=\"Bug 7\">#7</a>"));
  REQUIRE_THAT(page, Catch::Contains("<a href=\"https://proj.example.org/\">proj</a>"));
  REQUIRE_THAT(page,
               Catch::Contains("<a href=\"https://git.example.org/r/browse\">https://git.example.org/r</a>"));
  const std::string plain = page_of(web, "/changes/" + std::to_string(other));
  REQUIRE_THAT(plain, Catch::Contains("<span title=\"fedcba\">fedcba</span>"));
  // A change's own revlink is a link only when it is http(s).
  const int64_t evil = web.master().add_change(
      {{"author", "x"}, {"comments", "x"}, {"revision", "1"}, {"revlink", "javascript:alert(1)"}});
  REQUIRE_THAT(page_of(web, "/changes/" + std::to_string(evil)), !Catch::Contains("href=\"javascript:"));
}

TEST_CASE("the users pages follow show_users_page") {
  WebMaster web(
      "auth:\n"
      "  users:\n"
      "    - {username: ann, password: pw}\n"
      "    - {username: bob, password: pw}\n"
      "authz:\n"
      "  show_users_page: [ann]\n");
  auto basic = [](const std::string& user) {
    return std::map<std::string, std::string>{
        {"Authorization", "Basic " + kiln::sdk::base64_encode(user + ":pw")}};
  };
  REQUIRE(web.get("/users").status == 401);
  REQUIRE(web.request("GET", "/users", "", basic("bob")).status == 403);
  HttpReply ann = web.request("GET", "/users", "", basic("ann"));
  INFO(ann.body);
  REQUIRE(ann.status == 200);
  REQUIRE_THAT(ann.body, Catch::Contains("<h1>Users</h1>"));
  REQUIRE_THAT(ann.body, Catch::Contains("ann <button id=\"logout\">"));
  // Logging in is offered to the anonymous.
  REQUIRE_THAT(page_of(web, "/about"), Catch::Contains("href=\"/auth/login\""));
}

TEST_CASE("the routing keys a page declares are what /ws delivers when the page changes") {
  WebMaster web;
  web.force_and_finish("lint");
  const std::string page = page_of(web, "/builders/lint");
  const std::string marker = "data-live=\"";
  const size_t at = page.find(marker);
  REQUIRE(at != std::string::npos);
  std::string keys = page.substr(at + marker.size(), page.find('"', at + marker.size()) - at - marker.size());
  auto live = web.off_loop([&] { return std::make_shared<LiveConnection>(web.port()); });
  int id = 0;
  for (size_t start = 0; start <= keys.size();) {
    const size_t comma = std::min(keys.find(',', start), keys.size());
    const std::string path = keys.substr(start, comma - start);
    start = comma + 1;
    auto answer = web.off_loop([&] {
      live->send({{"cmd", "startConsuming"}, {"path", path}, {"_id", ++id}});
      return live->receive();
    });
    INFO(path);
    REQUIRE(answer);
    REQUIRE((*answer)["code"] == 200);
  }
  REQUIRE(id == 3);
  // A build of the page's builder is an event the script acts on, and the
  // fragment it then fetches shows the build.
  json build = web.force_and_finish("lint");
  auto event = web.off_loop([&] { return live->receive(); });
  REQUIRE(event);
  REQUIRE((*event)["m"]["builderid"] == build["builderid"]);
  REQUIRE_THAT(page_of(web, "/builders/lint?fragment=1"), Catch::Contains("/builds/2\">#2</a>"));
}
