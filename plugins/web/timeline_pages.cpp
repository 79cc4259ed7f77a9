// The seeds' timeline pages: the builders summary (also "/"), waterfall,
// grid, tgrid, console, one_line_per_build and the RSS/Atom feeds of
// failed builds. Each page is a handful of data-API reads issued at once
// (two or three rounds at most, never one per builder), joined and rendered
// here on the HTTP thread. The newest build of every builder is one read
// (`builds?latest=true`), so the builders page costs the same two reads at
// 4,000 builders as at 4. Empty stretches of a row are one cell with a
// colspan, so a waterfall or console row costs its builds, not its builders.

#include "html.h"
#include "pages.h"
#include "rest.h"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kiln::web {
namespace {

using nlohmann::json;

// Buildbot's results.
constexpr int64_t kSuccess = 0;
constexpr int64_t kWarnings = 1;
constexpr int64_t kFailure = 2;
constexpr int64_t kException = 4;

constexpr int64_t kDefaultEvents = 200;  // the seeds' num_events default
constexpr int64_t kMaxEvents = 2000;     // num_events_max can only lower it
constexpr int64_t kMaxRevisions = 100;   // grid width, tgrid length, console length

// A grid or console cell needs no times: fewer fields are less JSON per
// row, which is most of a 4,000-builder page's cost.
constexpr const char* kCellFields =
    "field=buildid&field=number&field=builderid&field=complete&field=results&field=state_string";
constexpr const char* kBuildFields =
    "field=buildid&field=number&field=builderid&field=complete&field=results&"
    "field=state_string&field=started_at&field=complete_at";

// ---- query arguments -----------------------------------------------------------

// A query string for a data-API read, values percent-encoded.
class Query {
 public:
  Query& raw(std::string_view text) {
    if (!text.empty()) sep() += text;
    return *this;
  }
  Query& add(std::string_view name, std::string_view value) {
    sep() += std::string(name) + "=" + html::url_encode(value);
    return *this;
  }
  Query& add(std::string_view name, int64_t value) { return add(name, std::to_string(value)); }
  Query& each(std::string_view name, const std::vector<std::string>& values) {
    for (const auto& v : values) add(name, v);
    return *this;
  }
  // `name__in=1,2,3`: ids need no encoding.
  Query& in(std::string_view name, const std::vector<int64_t>& ids) {
    std::string list;
    for (int64_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    sep() += std::string(name) + "__in=" + list;
    return *this;
  }
  std::string str() const { return text_; }

 private:
  std::string& sep() {
    if (!text_.empty()) text_ += '&';
    return text_;
  }
  std::string text_;
};

// The arguments a page reads; any other is a 400 naming them, so a typo
// (`?bulder=x`) does not silently show everything.
bool only_known(const PageCall& call, std::initializer_list<std::string_view> known) {
  for (const auto& [name, value] : form_fields(call->request.query)) {
    if (name == "fragment") continue;
    if (std::find(known.begin(), known.end(), name) != known.end()) continue;
    std::string list;
    for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    call->bad_argument("unknown query argument '" + name + "' for " + call->request.path +
                       " (it reads " + (list.empty() ? "none" : list) + ")");
    return false;
  }
  return true;
}

// true/false (also 1/0, yes/no, on/off); `fallback` when absent; nothing
// after answering 400.
std::optional<bool> bool_arg(const PageCall& call, std::string_view name, bool fallback) {
  auto value = call->arg(name);
  if (!value) return fallback;
  for (const char* yes : {"true", "1", "yes", "on"}) {
    if (*value == yes) return true;
  }
  for (const char* no : {"false", "0", "no", "off"}) {
    if (*value == no) return false;
  }
  call->bad_argument("query argument '" + std::string(name) + "' must be true or false, not '" +
                     *value + "'");
  return std::nullopt;
}

// Builder tags: the seeds' `category=`, Buildbot 3's `tag=`, either repeated.
std::vector<std::string> tags_of(const PageCall& call) {
  auto tags = call->arg_all("category");
  for (auto& t : call->arg_all("tag")) tags.push_back(std::move(t));
  return tags;
}

// ---- reading answers ------------------------------------------------------------

int64_t id_of(const json& object, const char* field) {
  auto it = object.find(field);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}

std::optional<int64_t> results_of(const json& build) {
  auto it = build.find("results");
  if (it == build.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

bool complete(const json& build) { return build.value("complete", false); }

bool good(const json& build) {
  auto r = results_of(build);
  return r && (*r == kSuccess || *r == kWarnings);
}

// A build's `branch` property (from its first sourcestamp); null when none.
json branch_of(const json& build) {
  auto props = build.find("properties");
  if (props == build.end() || !props->is_object()) return nullptr;
  auto b = props->find("branch");
  if (b == props->end() || !b->is_array() || b->empty()) return nullptr;
  return (*b)[0];
}

json property_of(const json& build, const char* name) {
  auto props = build.find("properties");
  if (props == build.end() || !props->is_object()) return nullptr;
  auto p = props->find(name);
  if (p == props->end() || !p->is_array() || p->empty()) return nullptr;
  return (*p)[0];
}

// `branch=` as the seeds read it: any of the values; "trunk" also matches
// a build or change with no branch (the default branch).
bool branch_matches(const json& branch, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return true;
  for (const auto& w : wanted) {
    if (branch.is_string() && branch.get<std::string>() == w) return true;
    if (branch.is_null() && w == "trunk") return true;
  }
  return false;
}

std::string build_link(const json& build, std::string_view label_html) {
  return html::link("/builds/" + std::to_string(id_of(build, "buildid")), label_html);
}

std::string builder_link(const json& builder) {
  return html::link("/builders/" + std::to_string(id_of(builder, "builderid")),
                    html::text(builder.value("name", json())));
}

// The builders of a page, in name order, and their ids.
struct Builders {
  std::vector<json> list;
  std::unordered_map<int64_t, size_t> index;  // builderid -> position in list

  explicit Builders(json answer) {
    if (answer.is_array()) {
      list.reserve(answer.size());
      for (auto& b : answer) list.push_back(std::move(b));
    }
    for (size_t i = 0; i < list.size(); ++i) index.emplace(id_of(list[i], "builderid"), i);
  }
  std::vector<int64_t> ids() const {
    std::vector<int64_t> out;
    out.reserve(list.size());
    for (const auto& b : list) out.push_back(id_of(b, "builderid"));
    return out;
  }
  const json* find(int64_t builderid) const {
    auto it = index.find(builderid);
    return it == index.end() ? nullptr : &list[it->second];
  }
};

// The builders read for the filters every timeline page shares: exact
// names (`builder=`), tags (`category=`/`tag=`, any of) and a name
// fragment (`search=`). Only the summary shows tags: a page that does
// not leaves them unread.
Get builders_get(const std::vector<std::string>& names, const std::vector<std::string>& tags,
                 const std::optional<std::string>& search = std::nullopt,
                 bool with_tags = false) {
  Query q;
  q.raw("field=builderid&field=name&order=name");
  if (with_tags) q.raw("field=tags");
  q.each("name", names).each("tags__contains", tags);
  if (search && !search->empty()) q.add("name__contains", *search);
  return {"builders", q.str()};
}

bool narrowed(const std::vector<std::string>& names, const std::vector<std::string>& tags) {
  return !names.empty() || !tags.empty();
}

// A row of cells over `columns` builder columns where only some hold
// something: each run of empty columns is one cell.
class SparseRow {
 public:
  explicit SparseRow(size_t columns) : columns_(columns) {}
  void put(size_t column, std::string cell_html) { cells_[column] += std::move(cell_html); }
  bool empty() const { return cells_.empty(); }
  std::string html(std::string_view empty_class = "") const {
    std::string out;
    size_t next = 0;
    auto gap = [&](size_t until) {
      if (until <= next) return;
      out += "<td";
      if (until - next > 1) out += " colspan=\"" + std::to_string(until - next) + "\"";
      if (!empty_class.empty()) out += " class=\"" + std::string(empty_class) + "\"";
      out += "></td>";
    };
    for (const auto& [column, cell] : cells_) {
      gap(column);
      out += cell;
      next = column + 1;
    }
    gap(columns_);
    return out;
  }

 private:
  size_t columns_;
  std::map<size_t, std::string> cells_;  // column -> "<td ...>...</td>" (one or more builds)
};

// A build as a small box: "#12 failure" coloured by its result, linked.
std::string build_box(const json& build) {
  return build_link(build, "#" + std::to_string(id_of(build, "number"))) + " " +
         html::text(build.value("state_string", json()));
}

std::string build_cell(const json& build) {
  return "<td class=\"" + html::result_class(build) + "\">" + build_box(build) + "</td>";
}

// Several builds in one cell (a waterfall row where a builder started two).
std::string builds_cell(const std::vector<const json*>& builds) {
  if (builds.size() == 1) return build_cell(*builds[0]);
  std::string out = "<td class=\"" + html::result_class(*builds[0]) + "\">";
  for (size_t i = 0; i < builds.size(); ++i) out += (i ? "<br>" : "") + build_box(*builds[i]);
  return out + "</td>";
}

std::string th(std::string_view inner_html) { return "<th>" + std::string(inner_html) + "</th>"; }

// ---- /builders and / ---------------------------------------------------------------

void builders_page(PageCall call) {
  if (!only_known(call, {"builder", "branch", "category", "tag", "search"})) return;
  const auto names = call->arg_all("builder");
  const auto branches = call->arg_all("branch");
  const auto tags = tags_of(call);
  const auto search = call->arg("search");
  Query latest;
  latest.raw("latest=true").raw(kBuildFields);
  if (!branches.empty()) latest.raw("field=properties&property=branch");
  call->gather(
      {builders_get(names, tags, search, true),
       {"builds", latest.str()},
       {"buildrequests", "complete=false&claimed=false&field=builderid"}},
      [call, branches, tags, search](Answers a) {
        if (auto bad = first_error(a)) return call->done(std::move(*bad));
        Builders builders(std::move(a[0].value));
        std::unordered_map<int64_t, const json*> last;
        for (const auto& b : a[1].value) last[id_of(b, "builderid")] = &b;
        std::unordered_map<int64_t, int> pending;
        for (const auto& r : a[2].value) ++pending[id_of(r, "builderid")];

        int counts[3] = {0, 0, 0};  // passing, failing, building
        std::string rows;
        rows.reserve(builders.list.size() * 240);
        for (const auto& builder : builders.list) {
          const int64_t id = id_of(builder, "builderid");
          rows += "<tr><td>" + builder_link(builder) + "</td><td>";
          for (const auto& tag : builder.value("tags", json::array())) {
            rows += html::link("/builders?tag=" + html::url_encode(tag.get<std::string>()),
                               html::text(tag)) + " ";
          }
          rows += "</td>";
          auto it = last.find(id);
          const json* build = it == last.end() ? nullptr : it->second;
          if (build && !branch_matches(branch_of(*build), branches)) build = nullptr;
          if (build) {
            rows += build_cell(*build) + "<td>" +
                    html::time_text(complete(*build) ? build->value("complete_at", json())
                                                     : build->value("started_at", json())) +
                    "</td>";
            ++counts[!complete(*build) ? 2 : good(*build) ? 0 : 1];
          } else {
            rows += "<td class=\"pending\">no build</td><td></td>";
          }
          auto p = pending.find(id);
          rows += "<td>" + (p == pending.end() ? std::string() : std::to_string(p->second)) +
                  "</td></tr>";
        }
        Page page;
        page.title = "Builders";
        page.live = {"builds/*/new", "builds/*/finished", "buildrequests/*/*"};
        page.fixed =
            "<h1>Builders</h1><form method=\"get\" action=\"/builders\" class=\"filter\">"
            "<label>name contains <input name=\"search\" value=\"" +
            html::escape(search.value_or("")) +
            "\"></label> <label>tag <input name=\"tag\" value=\"" +
            html::escape(tags.empty() ? "" : tags[0]) +
            "\"></label> <button>filter</button></form>";
        page.content = "<p>" + std::to_string(builders.list.size()) + " builders: " +
                       std::to_string(counts[0]) + " passing, " + std::to_string(counts[1]) +
                       " failing, " + std::to_string(counts[2]) + " building</p>" +
                       html::table_head({"builder", "tags", "last build", "when", "pending"},
                                        "builders") +
                       rows + "</table>";
        call->done(std::move(page));
      });
}

// ---- /waterfall -------------------------------------------------------------------

struct WaterfallArgs {
  std::vector<std::string> names, branches, tags;
  bool show_events = true;
  bool failures_only = false;
  std::optional<int64_t> first_time, last_time;
  int64_t events = kDefaultEvents;
};

// The waterfall's arguments (shared by the feeds), or nothing after a 400.
std::optional<WaterfallArgs> waterfall_args(const PageCall& call, int64_t default_events) {
  WaterfallArgs w;
  w.names = call->arg_all("builder");
  w.branches = call->arg_all("branch");
  w.tags = tags_of(call);
  auto show = bool_arg(call, "show_events", true);
  if (!show) return std::nullopt;
  w.show_events = *show;
  auto failures = bool_arg(call, "failures_only", false);
  if (!failures) return std::nullopt;
  w.failures_only = *failures;
  auto cap = call->int_arg("num_events_max", kMaxEvents);
  if (!cap) return std::nullopt;
  auto events = call->int_arg("num_events", default_events);
  if (!events) return std::nullopt;
  w.events = std::clamp<int64_t>(*events, 1, std::min(*cap, kMaxEvents));
  std::optional<int64_t> show_time;
  for (auto [name, slot] : {std::pair{"first_time", &w.first_time}, std::pair{"last_time", &w.last_time},
                            std::pair{"show_time", &show_time}}) {
    if (!call->arg(name)) continue;
    auto value = call->int_arg(name, 0);
    if (!value) return std::nullopt;
    *slot = *value;
  }
  if (show_time) {
    // show_time is the length of the window ending at last_time (now
    // when absent), as in Buildbot's waterfall.
    const int64_t end = w.last_time.value_or(static_cast<int64_t>(html::now_epoch()));
    if (!w.first_time) w.first_time = end - *show_time;
  }
  if (w.first_time && w.last_time && *w.first_time > *w.last_time) {
    call->bad_argument("first_time (" + std::to_string(*w.first_time) + ") is after last_time (" +
                       std::to_string(*w.last_time) + ")");
    return std::nullopt;
  }
  return w;
}

// Builds of the waterfall's window, newest first; branch filtering reads
// each build's branch property, so it over-reads and trims.
Get window_builds(const WaterfallArgs& w, const std::vector<int64_t>* builderids,
                  const std::vector<int64_t>& results = {}) {
  Query q;
  q.raw(kBuildFields).raw("order=-started_at&order=-buildid");
  if (builderids) q.in("builderid", *builderids);
  if (!results.empty()) q.in("results", results);
  if (w.first_time) q.add("started_at__ge", *w.first_time);
  if (w.last_time) q.add("started_at__le", *w.last_time);
  if (!w.branches.empty()) q.raw("field=properties&property=branch&property=revision");
  q.add("limit", w.branches.empty() ? w.events : w.events * 4);
  return {"builds", q.str()};
}

Get window_changes(const WaterfallArgs& w) {
  Query q;
  q.raw(
      "field=changeid&field=author&field=when_timestamp&field=revision&field=branch&"
      "field=repository&field=comments&order=-when_timestamp&order=-changeid");
  if (w.first_time) q.add("when_timestamp__ge", *w.first_time);
  if (w.last_time) q.add("when_timestamp__le", *w.last_time);
  q.add("limit", w.events);
  return {"changes", q.str()};
}

// Builders failing by the seeds' rule: the last finished build did not
// succeed, or the running one already failed. (The seeds' third case, a
// builder with no worker connected, needs the builder-worker records the
// store does not keep yet: `configured_on` is always empty.)
std::set<int64_t> failing_builders(const json& last_finished, const json& running) {
  std::set<int64_t> failing;
  for (const json* list : {&last_finished, &running}) {
    for (const auto& b : *list) {
      if (results_of(b) && *results_of(b) != kSuccess) failing.insert(id_of(b, "builderid"));
    }
  }
  return failing;
}

void render_waterfall(const PageCall& call, const WaterfallArgs& w, const Builders& builders,
                      const json& builds, const json& changes) {
  // Events newest first, one row per distinct second.
  struct Row {
    std::map<size_t, std::vector<const json*>> builds;  // column -> builds
    std::vector<const json*> changes;
  };
  std::map<int64_t, Row, std::greater<>> rows;
  int64_t shown = 0;
  int64_t oldest_build = INT64_MAX;
  for (const auto& b : builds) {
    if (shown >= w.events) break;
    const json* builder = builders.find(id_of(b, "builderid"));
    if (!builder || !branch_matches(branch_of(b), w.branches)) continue;
    oldest_build = std::min(oldest_build, id_of(b, "started_at"));
    rows[id_of(b, "started_at")].builds[builders.index.at(id_of(b, "builderid"))].push_back(&b);
    ++shown;
  }
  if (w.show_events) {
    for (const auto& c : changes) {
      if (!branch_matches(c.value("branch", json()), w.branches)) continue;
      rows[id_of(c, "when_timestamp")].changes.push_back(&c);
    }
  }
  std::string out = "<table class=\"waterfall\"><tr><th>time</th>";
  if (w.show_events) out += th("changes");
  for (const auto& builder : builders.list) out += th(builder_link(builder));
  out += "</tr>";
  // When num_events cut the builds short, changes older than the oldest
  // build shown are cut too, so the page ends where its builds do.
  for (const auto& [when, row] : rows) {
    if (shown >= w.events && when < oldest_build) break;
    out += "<tr><td>" + html::time_text(when) + "</td>";
    if (w.show_events) {
      out += "<td>";
      for (const json* c : row.changes) {
        out += html::link("/changes/" + std::to_string(id_of(*c, "changeid")),
                          html::text(c->value("author", json()))) +
               " " + html::revision(call->settings, c->value("revision", json()),
                                    c->value("repository", json())) +
               "<br>";
      }
      out += "</td>";
    }
    SparseRow cells(builders.list.size());
    for (const auto& [column, list] : row.builds) cells.put(column, builds_cell(list));
    out += cells.html() + "</tr>";
  }
  out += "</table>";

  Page page;
  page.title = "Waterfall";
  page.live = {"builds/*/new", "builds/*/finished"};
  if (w.show_events) page.live.push_back("changes/*/new");
  page.fixed = "<h1>Waterfall</h1>";
  page.content = "<p>" + std::to_string(builders.list.size()) + " builders" +
                 (w.failures_only ? " failing" : "") + ", " + std::to_string(shown) +
                 " builds</p>" + out;
  call->done(std::move(page));
}

void waterfall_page(PageCall call) {
  if (!only_known(call, {"builder", "branch", "category", "tag", "show_events", "failures_only",
                         "last_time", "first_time", "show_time", "num_events",
                         "num_events_max"})) {
    return;
  }
  auto args = waterfall_args(call, kDefaultEvents);
  if (!args) return;
  const WaterfallArgs w = std::move(*args);
  std::vector<Get> first{builders_get(w.names, w.tags)};
  if (w.failures_only) {
    first.push_back({"builds", "latest_complete=true&field=builderid&field=results"});
    first.push_back({"builds", "latest=true&complete=false&field=builderid&field=results"});
  }
  // Unfiltered, the builds need no builder ids: one round.
  const bool two_rounds = narrowed(w.names, w.tags) || w.failures_only;
  if (!two_rounds) {
    first.push_back(window_builds(w, nullptr));
    first.push_back(window_changes(w));
  }
  call->gather(std::move(first), [call, w, two_rounds](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    auto builders = std::make_shared<Builders>(std::move(a[0].value));
    if (w.failures_only) {
      const auto failing = failing_builders(a[1].value, a[2].value);
      json kept = json::array();
      for (auto& b : builders->list) {
        if (failing.count(id_of(b, "builderid"))) kept.push_back(std::move(b));
      }
      builders = std::make_shared<Builders>(std::move(kept));
    }
    if (!two_rounds) {
      return render_waterfall(call, w, *builders, a[a.size() - 2].value, a.back().value);
    }
    const auto ids = builders->ids();
    call->gather({window_builds(w, &ids), window_changes(w)}, [call, w, builders](Answers b) {
      if (auto bad = first_error(b)) return call->done(std::move(*bad));
      render_waterfall(call, w, *builders, b[0].value, b[1].value);
    });
  });
}

// ---- /grid and /tgrid ---------------------------------------------------------------

struct Revision {
  json change;
  std::unordered_map<int64_t, json> builds;  // builderid -> its newest build of the change
};

// Changes newest first and, per change, the builds that ran it: one read
// for the builders and changes, one per change for their builds.
void gather_revisions(const PageCall& call, std::vector<Get> first, Get changes,
                      std::function<void(std::shared_ptr<Builders>, std::vector<Revision>)> then) {
  first.push_back(std::move(changes));
  call->gather(std::move(first), [call, then = std::move(then)](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    auto builders = std::make_shared<Builders>(std::move(a[0].value));
    auto changes = std::make_shared<json>(std::move(a.back().value));
    std::vector<Get> per_change;
    for (const auto& c : *changes) {
      per_change.push_back({"changes/" + std::to_string(id_of(c, "changeid")) + "/builds",
                            std::string(kCellFields) + "&order=number"});
    }
    call->gather(std::move(per_change), [call, builders, changes, then](Answers b) {
      if (auto bad = first_error(b)) return call->done(std::move(*bad));
      std::vector<Revision> revisions;
      for (size_t i = 0; i < changes->size(); ++i) {
        Revision r;
        r.change = std::move((*changes)[i]);
        // Ordered by number: the last one kept is the builder's newest.
        for (auto& build : b[i].value) {
          const int64_t builderid = id_of(build, "builderid");
          if (builders->find(builderid)) r.builds[builderid] = std::move(build);
        }
        revisions.push_back(std::move(r));
      }
      then(builders, std::move(revisions));
    });
  });
}

Get revision_changes(const std::vector<std::string>& branches, int64_t count) {
  Query q;
  q.raw("field=changeid&field=author&field=when_timestamp&field=revision&field=branch&"
        "field=repository&field=comments&order=-changeid");
  q.each("branch", branches);
  q.add("limit", count);
  return {"changes", q.str()};
}

std::string change_heading(const PageCall& call, const json& change) {
  return html::link("/changes/" + std::to_string(id_of(change, "changeid")),
                    html::text(change.value("author", json()))) +
         "<br>" +
         html::revision(call->settings, change.value("revision", json()),
                        change.value("repository", json()));
}

void grid_page(PageCall call, bool transposed) {
  const char* count_name = transposed ? "length" : "width";
  const bool known = transposed
                         ? only_known(call, {"category", "tag", "branch", "length", "rev_order"})
                         : only_known(call, {"category", "tag", "branch", "width"});
  if (!known) return;
  auto count = call->int_arg(count_name, 5, kMaxRevisions);
  if (!count) return;
  bool ascending = false;
  if (transposed) {
    auto order = call->arg("rev_order").value_or("desc");
    if (order != "asc" && order != "desc") {
      return call->bad_argument("rev_order must be asc or desc, not '" + order + "'");
    }
    ascending = order == "asc";
  }
  const auto tags = tags_of(call);
  const auto branches = call->arg_all("branch");
  gather_revisions(
      call, {builders_get({}, tags)}, revision_changes(branches, *count),
      [call, transposed, ascending](std::shared_ptr<Builders> builders,
                                    std::vector<Revision> revisions) {
        if (ascending) std::reverse(revisions.begin(), revisions.end());
        std::string out;
        if (!transposed) {
          // Builders down the left, revisions across the top.
          out = "<table class=\"grid\"><tr><th>builder</th>";
          for (const auto& r : revisions) out += th(change_heading(call, r.change));
          out += "</tr>";
          for (const auto& builder : builders->list) {
            out += "<tr><td>" + builder_link(builder) + "</td>";
            for (const auto& r : revisions) {
              auto it = r.builds.find(id_of(builder, "builderid"));
              out += it == r.builds.end() ? std::string("<td></td>") : build_cell(it->second);
            }
            out += "</tr>";
          }
        } else {
          // Revisions down the left, builders across the top.
          out = "<table class=\"tgrid\"><tr><th>revision</th>";
          for (const auto& builder : builders->list) out += th(builder_link(builder));
          out += "</tr>";
          for (const auto& r : revisions) {
            out += "<tr><td>" + change_heading(call, r.change) + "</td>";
            SparseRow cells(builders->list.size());
            for (const auto& [builderid, build] : r.builds) {
              cells.put(builders->index.at(builderid), build_cell(build));
            }
            out += cells.html() + "</tr>";
          }
        }
        out += "</table>";
        Page page;
        page.title = transposed ? "Transposed grid" : "Grid";
        page.live = {"builds/*/new", "builds/*/finished", "changes/*/new"};
        page.fixed = "<h1>" + page.title + "</h1>";
        page.content = std::move(out);
        call->done(std::move(page));
      });
}

// ---- /console ----------------------------------------------------------------------

// The seeds' colours: green passed, red a new failure (the builder's
// previous finished build passed), orange failing already before, yellow
// still running.
std::string console_colour(const json& build, const std::optional<bool>& previous_good) {
  if (!complete(build)) return "console-yellow";
  if (good(build)) return "console-green";
  return previous_good.value_or(true) ? "console-red" : "console-orange";
}

constexpr std::string_view kConsoleStyle =
    "<style>.console-green{background:#8d4}.console-red{background:#e55}"
    ".console-orange{background:#fa3}.console-yellow{background:#e7d100}"
    "table.console td.box{min-width:1.2em;text-align:center}</style>";

void console_page(PageCall call) {
  if (!only_known(call, {"builder", "repository", "branch", "category", "tag", "project", "name",
                         "length"})) {
    return;
  }
  auto length = call->int_arg("length", 20, kMaxRevisions);
  if (!length) return;
  Query changes;
  changes.raw(
      "field=changeid&field=author&field=when_timestamp&field=revision&field=branch&"
      "field=repository&field=project&field=comments&order=-when_timestamp&order=-changeid");
  changes.each("branch", call->arg_all("branch"))
      .each("repository", call->arg_all("repository"))
      .each("project", call->arg_all("project"))
      .each("author__contains", call->arg_all("name"))
      .add("limit", *length);
  gather_revisions(
      call, {builders_get(call->arg_all("builder"), tags_of(call))}, {"changes", changes.str()},
      [call](std::shared_ptr<Builders> builders, std::vector<Revision> revisions) {
        // A failed first build is red or orange by the builder's build
        // before it. Build 1 has none; the one numbered just before is
        // often in the table already (the builder's build of an older
        // change); the rest are one read each, at once.
        std::map<std::pair<int64_t, int64_t>, const json*> known;  // (builderid, number)
        for (const auto& r : revisions) {
          for (const auto& [builderid, build] : r.builds) known[{builderid, id_of(build, "number")}] = &build;
        }
        struct Cell {
          size_t revision;
          int64_t builderid;
        };
        std::vector<Cell> failed;
        std::vector<Get> previous;
        std::map<std::pair<size_t, int64_t>, bool> previous_good;
        for (size_t i = 0; i < revisions.size(); ++i) {
          for (const auto& [builderid, build] : revisions[i].builds) {
            if (!complete(build) || good(build)) continue;
            const int64_t number = id_of(build, "number");
            if (number <= 1) continue;
            auto before = known.find({builderid, number - 1});
            if (before != known.end() && complete(*before->second)) {
              previous_good[{i, builderid}] = good(*before->second);
              continue;
            }
            failed.push_back({i, builderid});
            previous.push_back({"builders/" + std::to_string(builderid) + "/builds",
                                "complete=true&field=results&order=-number&limit=1&number__lt=" +
                                    std::to_string(number)});
          }
        }
        auto shared = std::make_shared<std::vector<Revision>>(std::move(revisions));
        call->gather(std::move(previous), [call, builders, shared, failed,
                                           previous_good](Answers a) mutable {
          if (auto bad = first_error(a)) return call->done(std::move(*bad));
          for (size_t i = 0; i < failed.size(); ++i) {
            if (!a[i].value.empty()) {
              previous_good[{failed[i].revision, failed[i].builderid}] = good(a[i].value[0]);
            }
          }
          std::string out = std::string(kConsoleStyle) +
                            "<table class=\"console\"><tr><th>change</th><th>when</th>";
          for (const auto& builder : builders->list) out += th(builder_link(builder));
          out += "</tr>";
          for (size_t i = 0; i < shared->size(); ++i) {
            const Revision& r = (*shared)[i];
            out += "<tr><td>" + change_heading(call, r.change) + "<br>" +
                   html::comments(call->settings, r.change.value("comments", json())) +
                   "</td><td>" + html::time_text(r.change.value("when_timestamp", json())) +
                   "</td>";
            SparseRow cells(builders->list.size());
            for (const auto& [builderid, build] : r.builds) {
              std::optional<bool> before;
              if (auto it = previous_good.find({i, builderid}); it != previous_good.end()) {
                before = it->second;
              }
              cells.put(builders->index.at(builderid),
                        "<td class=\"box " + console_colour(build, before) + "\">" +
                            build_link(build, "#" + std::to_string(id_of(build, "number"))) +
                            "</td>");
            }
            out += cells.html() + "</tr>";
          }
          out += "</table>";
          Page page;
          page.title = "Console";
          page.live = {"builds/*/new", "builds/*/finished", "changes/*/new"};
          page.fixed = "<h1>Console</h1>";
          page.content = std::move(out);
          call->done(std::move(page));
        });
      });
}

// ---- /one_line_per_build --------------------------------------------------------------

void one_line_page(PageCall call) {
  if (!only_known(call, {"numbuilds", "builder", "branch"})) return;
  auto numbuilds = call->int_arg("numbuilds", 20, 1000);
  if (!numbuilds) return;
  const auto names = call->arg_all("builder");
  const auto branches = call->arg_all("branch");
  auto builds_get = [count = *numbuilds, branches](const std::vector<int64_t>* ids) {
    Query q;
    q.raw(kBuildFields).raw("field=properties&property=branch&property=revision&complete=true&"
                            "order=-complete_at&order=-buildid");
    if (ids) q.in("builderid", *ids);
    q.add("limit", branches.empty() ? count : count * 4);
    return Get{"builds", q.str()};
  };
  auto render = [call, count = *numbuilds, branches](const Builders& builders, const json& builds) {
    std::string out = "<ul class=\"one-line\">";
    int64_t shown = 0;
    for (const auto& b : builds) {
      if (shown >= count) break;
      const json* builder = builders.find(id_of(b, "builderid"));
      if (!builder || !branch_matches(branch_of(b), branches)) continue;
      ++shown;
      const json rev = property_of(b, "revision");
      out += "<li><span class=\"" + html::result_class(b) + "\">" + builder_link(*builder) + " " +
             build_link(b, "#" + std::to_string(id_of(b, "number"))) +
             "</span> rev " + (rev.is_null() ? std::string("(none)") : html::text(rev)) + ": " +
             html::result_name(b.value("results", json())) + " (" +
             html::text(b.value("state_string", json())) + ") " +
             html::time_text(b.value("complete_at", json())) + "</li>";
    }
    out += "</ul>";
    Page page;
    page.title = "One line per build";
    page.live = {"builds/*/finished"};
    page.fixed = "<h1>Last " + std::to_string(count) + " finished builds</h1>";
    page.content = std::move(out);
    call->done(std::move(page));
  };
  if (names.empty()) {
    return call->gather({{"builders", "field=builderid&field=name"}, builds_get(nullptr)},
                        [call, render](Answers a) {
                          if (auto bad = first_error(a)) return call->done(std::move(*bad));
                          render(Builders(std::move(a[0].value)), a[1].value);
                        });
  }
  call->gather({builders_get(names, {})}, [call, render, builds_get](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    auto builders = std::make_shared<Builders>(std::move(a[0].value));
    const auto ids = builders->ids();
    call->gather({builds_get(&ids)}, [call, render, builders](Answers b) {
      if (auto bad = first_error(b)) return call->done(std::move(*bad));
      render(*builders, b[0].value);
    });
  });
}

// ---- /rss and /atom -----------------------------------------------------------------

std::string utc(int64_t epoch, const char* format) {
  const std::time_t t = epoch;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[64];
  return std::string(text, std::strftime(text, sizeof text, format, &tm));
}

// Absolute links for feed readers, from the Host the reader asked.
std::string base_url(const PageCall& call) {
  std::string host(call->request.header("host"));
  if (host.empty()) host = "localhost";
  return "http://" + host;
}

void feed_page(PageCall call, bool atom) {
  if (!only_known(call, {"builder", "branch", "category", "tag", "show_events", "failures_only",
                         "last_time", "first_time", "show_time", "num_events",
                         "num_events_max"})) {
    return;
  }
  auto args = waterfall_args(call, 20);
  if (!args) return;
  const WaterfallArgs w = std::move(*args);
  call->gather({builders_get(w.names, w.tags)}, [call, w, atom](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    auto builders = std::make_shared<Builders>(std::move(a[0].value));
    const auto ids = builders->ids();
    // Failed builds: FAILURE and EXCEPTION.
    Get builds = window_builds(w, narrowed(w.names, w.tags) ? &ids : nullptr, {kFailure, kException});
    call->gather({builds}, [call, w, atom, builders](Answers b) {
      if (auto bad = first_error(b)) return call->done(std::move(*bad));
      const std::string base = base_url(call);
      std::string items;
      int64_t newest = 0;
      int64_t shown = 0;
      for (const auto& build : b[0].value) {
        if (shown >= w.events) break;
        const json* builder = builders->find(id_of(build, "builderid"));
        if (!builder || !branch_matches(branch_of(build), w.branches)) continue;
        ++shown;
        const int64_t when = build.value("complete_at", json()).is_number_integer()
                                 ? build["complete_at"].get<int64_t>()
                                 : id_of(build, "started_at");
        newest = std::max(newest, when);
        const std::string url = base + "/builds/" + std::to_string(id_of(build, "buildid"));
        const std::string title = html::escape(builder->value("name", std::string())) + " build #" +
                                  std::to_string(id_of(build, "number")) + " " +
                                  html::result_name(build.value("results", json()));
        const std::string summary = html::text(build.value("state_string", json()));
        if (atom) {
          items += "<entry><title>" + title + "</title><id>" + html::escape(url) +
                   "</id><link href=\"" + html::escape(url) + "\"/><updated>" +
                   utc(when, "%Y-%m-%dT%H:%M:%SZ") + "</updated><summary>" + summary +
                   "</summary></entry>\n";
        } else {
          items += "<item><title>" + title + "</title><link>" + html::escape(url) +
                   "</link><guid isPermaLink=\"true\">" + html::escape(url) + "</guid><pubDate>" +
                   utc(when, "%a, %d %b %Y %H:%M:%S +0000") + "</pubDate><description>" +
                   summary + "</description></item>\n";
        }
      }
      const std::string title = html::escape(call->settings.title) + " failed builds";
      const std::string self = base + call->request.path;
      Response r;
      if (atom) {
        r.content_type = "application/atom+xml; charset=utf-8";
        r.body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                 "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>" + title + "</title><id>" +
                 html::escape(self) + "</id><link rel=\"self\" href=\"" + html::escape(self) +
                 "\"/><link href=\"" + html::escape(base) + "/waterfall\"/><updated>" +
                 utc(newest, "%Y-%m-%dT%H:%M:%SZ") + "</updated>\n" + items + "</feed>\n";
      } else {
        r.content_type = "application/rss+xml; charset=utf-8";
        r.body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                 "<rss version=\"2.0\"><channel><title>" + title + "</title><link>" +
                 html::escape(base) + "/waterfall</link><description>Builds that failed" +
                 "</description>\n" + items + "</channel></rss>\n";
      }
      Page page;
      page.raw = std::move(r);
      call->done(std::move(page));
    });
  });
}

const bool registered = register_pages({
    {"/", builders_page, "", 0},
    {"/builders", builders_page, "Builders", 50},
    {"/waterfall", waterfall_page, "Waterfall", 10},
    {"/grid", [](PageCall c) { grid_page(std::move(c), false); }, "Grid", 20},
    {"/tgrid", [](PageCall c) { grid_page(std::move(c), true); }, "T-Grid", 25},
    {"/console", console_page, "Console", 30},
    {"/one_line_per_build", one_line_page, "One line per build", 40},
    {"/rss", [](PageCall c) { feed_page(std::move(c), false); }, "", 0},
    {"/atom", [](PageCall c) { feed_page(std::move(c), true); }, "", 0},
});

}  // namespace
}  // namespace kiln::web
