#pragma once
// The HTML pages: rendered on the HTTP thread from data-API answers, so a
// page view costs ONE request (the page) and ONE /ws subscription (opened
// by the shared script for the routing keys the page declares). On a
// matching event the script re-fetches the same URL with `fragment=1` and
// swaps in the page's live part; nothing else is ever fetched.
//
// How to add pages (the contract; keep it stable):
//
//   // my_pages.cpp (and one line in CMakeLists.txt's SOURCES)
//   #include "html.h"
//   #include "pages.h"
//   namespace kiln::web {
//   namespace {
//   void waterfall(PageCall call) {
//     call->gather({{"builders", ""}, {"builds", "order=-buildid&limit=200"}},
//                  [call](Answers a) {
//       if (auto bad = first_error(a)) return call->done(std::move(*bad));
//       Page page;
//       page.title = "Waterfall";
//       page.live = {"builds/*/*", "steps/*/*"};
//       page.content = "<table>...</table>";    // html::escape every value
//       call->done(std::move(page));
//     });
//   }
//   const bool registered = register_pages({
//       {"/waterfall", waterfall, "Waterfall", 10},
//   });
//   }  // namespace
//   }  // namespace kiln::web
//
// A route's pattern is literal segments and "{}" (one segment, handed
// decoded in call->args). Query arguments come from call->arg("name");
// a bad one is answered with call->bad_argument("why") (400, the reason in
// the page). `fragment` is the framework's own argument: never a page's.
// Routes in the nav bar are ordered by nav_order (0 home, 10 waterfall,
// 20 grid, 25 tgrid, 30 console, 40 one_line_per_build, 50 builders,
// 60 changes, 70 workers, 80 users, 90 about, 95 API help).

#include "auth.h"
#include "backend.h"
#include "http_types.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::web {

// changecommentlink: text matching `regex` in a change's comments becomes
// a link to `url` (with \1 or \g<1> references to the match's groups),
// titled `title` (same references).
struct CommentLink {
  std::regex regex;
  std::string url;    // std::regex format ($1, $&)
  std::string title;  // std::regex format
};

// The page keys of the web reporter's configuration.
struct PageSettings {
  std::string title = "Kiln";                   // the nav bar's first entry
  std::string title_url;                        // where that entry links; empty: "/"
  std::filesystem::path templates;              // an override folder (layout.html, style.css); empty: none
  std::filesystem::path public_html;            // static files served at /NAME; empty: none
  std::string revlink;                          // "https://.../commit/%s"; empty: none
  std::map<std::string, std::string> revlinks;  // repository -> format (first choice)
  std::vector<CommentLink> comment_links;
  std::map<std::string, std::string> projects;      // project -> URL
  std::map<std::string, std::string> repositories;  // repository -> URL
};

// Reads title, title_url, templates, public_html, revlink,
// changecommentlink, projects and repositories; relative folders are
// resolved against `master_dir`. Errors name the key.
sdk::Result<PageSettings> parse_page_settings(const nlohmann::json& config,
                                              const std::filesystem::path& master_dir);

// What a page function produces. The shell (head, style, nav bar, who is
// logged in, the script) is added around it by the framework.
struct Page {
  unsigned status = 200;
  std::string title;
  // Routing-key patterns of /ws events that change this page ("builds/*/*",
  // "builds/7/*"); `*` is one segment. Empty: the page does not follow events.
  std::vector<std::string> live;
  // Narrows `live`: an event whose body has one of these fields with
  // another value is ignored ({"buildid": 7}); a body without it counts.
  nlohmann::json live_match = nlohmann::json::object();
  // HTML before the live part, sent once and never replaced (forms being
  // filled in must not be swapped away).
  std::string fixed;
  // The live part: sent with the page, and alone for `fragment=1`.
  std::string content;
  // A page-specific script, run once after the shared one (its helpers are
  // on window.kiln); keep it small.
  std::string script;
  // A non-HTML answer (robots.txt, a log's /text): sent as it is, no shell.
  std::optional<Response> raw;
};

using Answers = std::vector<Answer>;
using PageDone = std::function<void(Page)>;

// One data-API read: path ("builders/3/builds") and a REST query string
// ("order=-number&limit=20"), parsed by the host as /api/v2 does. With an
// action it is a control call instead (path "forceschedulers", action
// "describe", args {...}): for the few reads the data API answers that way.
struct Get {
  Get(std::string path_, std::string query_ = {}) : path(std::move(path_)), query(std::move(query_)) {}
  Get(std::string path_, std::string query_, std::string action_, nlohmann::json args_)
      : path(std::move(path_)),
        query(std::move(query_)),
        action(std::move(action_)),
        args(std::move(args_)) {}
  std::string path;
  std::string query;
  std::string action;
  nlohmann::json args = nlohmann::json::object();
};

// Issues every read at once and calls `done` once, on the HTTP thread, with
// the answers in the order of `gets`.
void gather(Backend& backend, std::vector<Get> gets, std::function<void(Answers)> done);

// An error page for the first failed answer, or nothing when all are ok.
std::optional<Page> first_error(const Answers& answers);
Page error_page(unsigned status, std::string message);

// One page request as a page function sees it. Shared, so a page's
// callbacks keep it alive.
struct PageRequest {
  PageRequest(Request r, Identity w, Backend& b, Auth& a, const PageSettings& s, PageDone d)
      : request(std::move(r)), who(std::move(w)), backend(b), auth(a), settings(s), done(std::move(d)) {}

  Request request;
  Identity who;
  Backend& backend;
  Auth& auth;
  const PageSettings& settings;
  std::vector<std::string> args;  // the route's "{}" segments, decoded
  // Answers the page; call it once.
  PageDone done;

  // The first value of a query argument, decoded; nothing when absent.
  std::optional<std::string> arg(std::string_view name) const;
  // Every value of a repeated query argument ("builder=a&builder=b").
  std::vector<std::string> arg_all(std::string_view name) const;
  // A non-negative integer argument: its value, `fallback` when absent, or
  // nothing after answering 400 naming the argument (then just return).
  std::optional<int64_t> int_arg(std::string_view name, int64_t fallback, int64_t max = INT64_MAX) const;
  // Answers 400 with the reason shown in the page.
  void bad_argument(std::string why) const { done(error_page(400, std::move(why))); }
  // gather() on this request's backend.
  void gather(std::vector<Get> gets, std::function<void(Answers)> then) const {
    kiln::web::gather(backend, std::move(gets), std::move(then));
  }
};
using PageCall = std::shared_ptr<PageRequest>;
using PageFn = std::function<void(PageCall)>;

struct PageRoute {
  PageRoute(std::string pattern_, PageFn render_, std::string nav_label_ = {}, int nav_order_ = 0,
            bool fallback_ = false)
      : pattern(std::move(pattern_)),
        render(std::move(render_)),
        nav_label(std::move(nav_label_)),
        nav_order(nav_order_),
        fallback(fallback_) {}
  std::string pattern;  // "/builders/{}/builds/{}"
  PageFn render;
  std::string nav_label;  // non-empty: in the nav bar, linking to the pattern
  int nav_order = 0;
  // A fallback gives way to a route of the same pattern registered by
  // another file (so a fuller page can replace a simple one).
  bool fallback = false;
};

// Adds routes to the table; call it from a namespace-scope initializer
// (`const bool registered = register_pages({...});`). Returns true.
bool register_pages(std::vector<PageRoute> routes);
// The nav bar entries (label, href), in nav_order.
std::vector<std::pair<std::string, std::string>> nav_entries();

// Serves every path that is not /api/v2, /auth/ or a change hook: a
// registered page, else a file of public_html, else 404. On the HTTP
// thread; `respond` is called once.
class Pages {
 public:
  Pages(Backend& backend, Auth& auth, PageSettings settings)
      : backend_(backend), auth_(auth), settings_(std::move(settings)) {}
  void serve(const Request& request, const Identity& who, Respond respond);

 private:
  Backend& backend_;
  Auth& auth_;
  PageSettings settings_;
};

}  // namespace kiln::web
