// The seeds' pages of single things and their lists: a builder (recent
// builds, pending requests, the force form), a build, a step, a log (paged,
// and its /text form streamed), buildstatus, changes, workers, users, about,
// the API help and robots.txt. Each is a few data-API reads issued at once
// (gather), rendered to HTML on the HTTP thread.

#include "html.h"
#include "pages.h"
#include "rest.h"

#include <boost/version.hpp>
#include <kiln/plugin_api.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#ifndef KILN_WEB_KILN_VERSION
#define KILN_WEB_KILN_VERSION "unknown"
#endif

namespace kiln::web {
namespace {

using nlohmann::json;
namespace h = html;

constexpr int64_t kMaxListed = 1000;     // numbuilds, num ... at most
constexpr int64_t kLogPageLines = 1000;  // a log page's default length
constexpr int64_t kMaxLogPageLines = 20000;
constexpr int64_t kTextPieceLines = 2000;  // lines per read of a streamed /text

// The list an answer holds (a single object as a list of one).
json list_of(const Answer& a) {
  if (!a.ok() || a.value.is_null()) return json::array();
  return a.value.is_array() ? a.value : json::array({a.value});
}
// The object an answer holds (the first of a list).
json object_of(const Answer& a) {
  if (!a.ok()) return json::object();
  if (a.value.is_array()) return a.value.empty() ? json::object() : a.value[0];
  return a.value.is_object() ? a.value : json::object();
}

std::string num(const json& v) { return v.is_number_integer() ? std::to_string(v.get<int64_t>()) : ""; }

std::string builder_href(const json& builderid) { return "/builders/" + num(builderid); }
std::string build_href(const json& builderid, const json& number) {
  return builder_href(builderid) + "/builds/" + num(number);
}
std::string step_href(const std::string& build, const json& step_number) {
  return build + "/steps/" + num(step_number);
}
std::string log_href(const std::string& step, const json& slug) {
  return step + "/logs/" + h::url_encode(slug.is_string() ? slug.get<std::string>() : "");
}

// The path of a build in the data API from a page's arguments: by id
// (/builds/ID) or by builder and number (/builders/B/builds/N).
std::string build_path(const PageRequest& call) {
  if (call.args.size() == 1) return "builds/" + call.args[0];
  return "builders/" + h::url_encode(call.args[0]) + "/builds/" + call.args[1];
}

bool is_number(const std::string& s) {
  return !s.empty() && s.size() < 18 && s.find_first_not_of("0123456789") == std::string::npos;
}

// A numeric path argument, or a 404 page answered.
bool need_number(const PageCall& call, size_t index, const char* what) {
  if (is_number(call->args[index])) return true;
  call->done(error_page(404, std::string(what) + " '" + call->args[index] + "' is not a number"));
  return false;
}

std::string worker_link(const std::map<int64_t, std::string>& names, const json& workerid) {
  if (!workerid.is_number_integer()) return "";
  auto it = names.find(workerid.get<int64_t>());
  const std::string name = it == names.end() ? "#" + num(workerid) : it->second;
  return h::link("/workers/" + num(workerid), h::escape(name));
}

std::map<int64_t, std::string> names_by_id(const json& list, const char* id_field) {
  std::map<int64_t, std::string> out;
  for (const json& item : list) {
    const json id = item.value(id_field, json());
    if (id.is_number_integer()) out[id.get<int64_t>()] = item.value("name", std::string());
  }
  return out;
}

// The names of the builders `ids` names, read only for those (a master may
// have thousands of builders), then `then(names)`.
void with_builder_names(const PageCall& call, const std::set<int64_t>& ids,
                        std::function<void(std::map<int64_t, std::string>)> then) {
  if (ids.empty()) return then({});
  std::string list;
  for (int64_t id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  call->gather({{"builders", "field=builderid&field=name&builderid__in=" + list}},
               [then = std::move(then)](Answers a) { then(names_by_id(list_of(a[0]), "builderid")); });
}

void add_builderids(std::set<int64_t>& ids, const json& items) {
  for (const json& item : items) {
    const json id = item.value("builderid", json());
    if (id.is_number_integer()) ids.insert(id.get<int64_t>());
  }
}

// ---------------------------------------------------------------- lists

std::string builds_table(const json& builds, const std::map<int64_t, std::string>& workers,
                         const std::map<int64_t, std::string>& builders) {
  if (builds.empty()) return "<p>No builds.</p>";
  std::string out = h::table_head(
      {builders.empty() ? "" : "builder", "build", "result", "state", "started", "duration", "worker"},
      "builds");
  for (const json& b : builds) {
    out += "<tr>";
    if (!builders.empty()) {
      auto it = builders.find(b.value("builderid", int64_t{0}));
      out += "<td>" +
             h::link(builder_href(b["builderid"]), h::escape(it == builders.end() ? "?" : it->second)) +
             "</td>";
    } else {
      out += "<td></td>";
    }
    out += "<td>" + h::link(build_href(b["builderid"], b["number"]), "#" + num(b["number"])) + "</td>" +
           h::result_cell(b) + "<td>" + h::text(b.value("state_string", json())) + "</td><td>" +
           h::time_text(b.value("started_at", json())) + "</td><td>" +
           h::duration_text(b.value("started_at", json()), b.value("complete_at", json())) + "</td><td>" +
           worker_link(workers, b.value("workerid", json())) + "</td></tr>";
  }
  return out + "</table>";
}

std::string properties_table(const json& properties) {
  if (!properties.is_object() || properties.empty()) return "<p>No properties.</p>";
  std::string out = h::table_head({"name", "value", "source"}, "properties");
  for (const auto& [name, pair] : properties.items()) {
    const json value = pair.is_array() && !pair.empty() ? pair[0] : pair;
    const json source = pair.is_array() && pair.size() > 1 ? pair[1] : json();
    out += "<tr><td>" + h::escape(name) + "</td><td>" +
           (value.is_string() ? h::escape(value.get<std::string>()) : h::text(value)) + "</td><td>" +
           h::text(source) + "</td></tr>";
  }
  return out + "</table>";
}

std::string changes_table(const PageSettings& s, const json& changes) {
  if (changes.empty()) return "<p>No changes.</p>";
  std::string out = h::table_head(
      {"change", "author", "revision", "branch", "repository", "project", "when", "comments"}, "changes");
  for (const json& c : changes) {
    out += "<tr><td>" + h::link("/changes/" + num(c["changeid"]), num(c["changeid"])) + "</td><td>" +
           h::text(c.value("author", json())) + "</td><td>" +
           h::revision(s, c.value("revision", json()), c.value("repository", json())) + "</td><td>" +
           h::text(c.value("branch", json())) + "</td><td>" +
           h::repository(s, c.value("repository", json())) + "</td><td>" +
           h::project(s, c.value("project", json())) + "</td><td>" +
           h::time_text(c.value("when_timestamp", json())) + "</td><td>" +
           h::comments(s, c.value("comments", json())) + "</td></tr>";
  }
  return out + "</table>";
}

// ---------------------------------------------------------------- home

// A plain list of builders; the timeline pages' fuller builders summary
// replaces it when registered.
void builders_list(PageCall call) {
  call->gather({{"builders", "order=name"}}, [call](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    Page page;
    page.title = "Builders";
    page.content = "<h1>Builders</h1>" + h::table_head({"builder", "tags", "description"}, "builders");
    for (const json& b : list_of(a[0])) {
      std::string tags;
      for (const json& t : b.value("tags", json::array())) tags += (tags.empty() ? "" : ", ") + h::text(t);
      page.content += "<tr><td>" + h::link(builder_href(b["builderid"]), h::text(b["name"])) + "</td><td>" +
                      tags + "</td><td>" + h::text(b.value("description", json())) + "</td></tr>";
    }
    page.content += "</table>";
    call->done(std::move(page));
  });
}

// ---------------------------------------------------------------- builder

std::string force_form(const json& form, const json& builder, const Identity& who) {
  if (!form.is_object() || !form.contains("name")) return "";
  const std::string name = form.value("name", std::string());
  std::string out =
      "<h2>" + h::text(form.value("label", json(name))) + "</h2>" +
      "<form class=\"force\" data-rpc=\"/api/v2/forceschedulers/" + h::escape(h::url_encode(name)) +
      "\" data-method=\"force\" data-params=\"" +
      h::escape(json{{"builderNames", json::array({builder.value("name", std::string())})}}.dump()) + "\">";
  for (const json& p : form.value("parameters", json::array())) {
    if (p.value("hide", false)) continue;
    const std::string field = p.value("name", std::string());
    const std::string type = p.value("type", std::string("string"));
    json def = p.value("default", json(""));
    if (type == "username" && who.authenticated()) def = who.user;
    const std::string label = "<label>" + h::text(p.value("label", json(field))) + " ";
    const std::string required = p.value("required", false) ? " required" : "";
    if (type == "choice") {
      out += label + "<select name=\"" + h::escape(field) + "\"" +
             (p.value("multiple", false) ? " multiple" : "") + ">";
      for (const json& c : p.value("choices", json::array())) {
        const std::string v = c.is_string() ? c.get<std::string>() : c.dump();
        const bool selected = def.is_string() ? def.get<std::string>() == v : def == c;
        out += "<option" + std::string(selected ? " selected" : "") + " value=\"" + h::escape(v) + "\">" +
               h::escape(v) + "</option>";
      }
      out += "</select></label>";
    } else if (type == "bool" || type == "boolean") {
      out += label + "<input type=\"checkbox\" name=\"" + h::escape(field) + "\"" +
             (def == true ? " checked" : "") + "></label>";
    } else {
      const std::string input = type == "int" || type == "integer" ? "number" : "text";
      out += label + "<input type=\"" + input + "\" name=\"" + h::escape(field) + "\" value=\"" +
             (def.is_string() ? h::escape(def.get<std::string>()) : h::text(def)) + "\"" + required +
             "></label>";
    }
  }
  out += "<button type=\"submit\">" + h::text(form.value("button_name", json("Force"))) +
         "</button><span class=\"rpc-result\"></span></form>";
  return out;
}

void builder_page(PageCall call) {
  const auto numbuilds = call->int_arg("numbuilds", 20, kMaxListed);
  if (!numbuilds) return;
  const std::string base = "builders/" + h::url_encode(call->args[0]);
  call->gather({{base, ""}}, [call, base, numbuilds = *numbuilds](Answers first) {
    if (auto bad = first_error(first)) return call->done(std::move(*bad));
    const json builder = object_of(first[0]);
    const std::string id = num(builder["builderid"]);
    call->gather({{base + "/builds", "order=-number&limit=" + std::to_string(numbuilds)},
                  {base + "/buildrequests", "complete=false&order=buildrequestid"},
                  {base + "/workers", ""},
                  {"forceschedulers", "", "describe", {{"builderNames", json::array({builder["name"]})}}},
                  {"workers", "field=workerid&field=name"}},
                 [call, builder, id](Answers a) {
                   // No force scheduler for this builder is no error: no form.
                   if (auto bad = first_error({a[0], a[1], a[2]})) return call->done(std::move(*bad));
                   const json workers = list_of(a[2]);
                   // Builds name the workers that ran them, configured here or not.
                   const auto worker_names = names_by_id(list_of(a[4]), "workerid");
                   Page page;
                   page.title = "Builder " + builder.value("name", std::string());
                   page.live = {"builds/*/*", "buildrequests/*/*", "workers/*/*"};
                   page.live_match = {{"builderid", builder["builderid"]}};
                   std::string tags;
                   for (const json& t : builder.value("tags", json::array()))
                     tags += (tags.empty() ? "" : ", ") + h::text(t);
                   page.fixed = "<h1>Builder " + h::text(builder["name"]) + "</h1>" +
                                (builder.value("description", json()).is_string()
                                     ? "<p class=\"description\">" + h::text(builder["description"]) + "</p>"
                                     : "") +
                                (tags.empty() ? "" : "<p>Tags: " + tags + "</p>") +
                                force_form(object_of(a[3]), builder, call->who);

                   std::string& out = page.content;
                   const json requests = list_of(a[1]);
                   out += "<h2>Pending build requests</h2>";
                   if (requests.empty()) {
                     out += "<p>None.</p>";
                   } else {
                     out += h::table_head({"request", "submitted", "claimed", "priority", ""}, "requests");
                     for (const json& r : requests) {
                       const std::string rid = num(r["buildrequestid"]);
                       out += "<tr><td>" + rid + "</td><td>" + h::time_text(r.value("submitted_at", json())) +
                              "</td><td>" + (r.value("claimed", false) ? "yes" : "no") + "</td><td>" +
                              h::text(r.value("priority", json())) + "</td><td>" +
                              h::rpc_button("/api/v2/buildrequests/" + rid, "cancel", "Cancel",
                                            {{"reason", "cancelled from the builder page"}}) +
                              "</td></tr>";
                     }
                     out += "</table>";
                   }
                   out += "<h2>Recent builds</h2>" + builds_table(list_of(a[0]), worker_names, {});
                   out += "<h2>Workers</h2>";
                   if (workers.empty()) out += "<p>None.</p>";
                   for (const json& w : workers) {
                     const bool connected = !w.value("connected_to", json::array()).empty();
                     out += "<p>" + h::link("/workers/" + num(w["workerid"]), h::text(w["name"])) + " " +
                            (connected ? "<span class=\"result-success\">connected</span>"
                                       : "<span class=\"result-failure\">not connected</span>") +
                            "</p>";
                   }
                   call->done(std::move(page));
                 });
  });
}

// ---------------------------------------------------------------- build

void build_page(PageCall call) {
  if (call->args.size() == 2 && !need_number(call, 1, "build number")) return;
  if (call->args.size() == 1 && !need_number(call, 0, "build id")) return;
  call->gather({{build_path(*call), ""}}, [call](Answers first) {
    if (auto bad = first_error(first)) return call->done(std::move(*bad));
    const json build = object_of(first[0]);
    const std::string id = num(build["buildid"]);
    call->gather(
        {{"builds/" + id + "/steps", "order=number"},
         {"builds/" + id + "/properties", ""},
         {"builds/" + id + "/changes", ""},
         {"builders/" + num(build["builderid"]), ""},
         {"workers/" + num(build["workerid"]), ""},
         {"buildrequests/" + num(build["buildrequestid"]), ""}},
        [call, build, id](Answers a) {
          if (auto bad = first_error({a[0], a[1], a[2], a[3]})) return call->done(std::move(*bad));
          const json steps = list_of(a[0]);
          std::vector<Get> logs;
          for (const json& s : steps) logs.push_back({"steps/" + num(s["stepid"]) + "/logs", ""});
          // The reason is the buildset's; read with the logs, last.
          const json bsid = object_of(a[5]).value("buildsetid", json());
          if (bsid.is_number_integer()) logs.push_back({"buildsets/" + num(bsid), ""});
          call->gather(std::move(logs), [call, build, id, a = std::move(a), steps](Answers step_logs) {
            const json reason =
                step_logs.size() > steps.size() ? object_of(step_logs.back()).value("reason", json()) : json();
            const json builder = object_of(a[3]);
            const json properties = object_of(a[1]);
            const json changes = list_of(a[2]);
            const std::string href = build_href(build["builderid"], build["number"]);
            Page page;
            page.title = builder.value("name", std::string()) + " #" + num(build["number"]);
            page.live = {"builds/" + id + "/*", "steps/*/*"};
            page.live_match = {{"buildid", build["buildid"]}};
            std::string& out = page.content;
            out += "<h1>" +
                   h::link(builder_href(build["builderid"]), h::text(builder.value("name", json()))) +
                   " build #" + num(build["number"]) + "</h1>";
            out += "<table class=\"summary\"><tr><th>result</th>" + h::result_cell(build) +
                   "</tr><tr><th>state</th><td>" + h::text(build.value("state_string", json())) +
                   "</td></tr><tr><th>reason</th><td>" + h::text(reason) + "</td></tr><tr><th>worker</th><td>" +
                   (a[4].ok() ? h::link("/workers/" + num(build["workerid"]),
                                        h::text(object_of(a[4]).value("name", json())))
                              : "") +
                   "</td></tr><tr><th>started</th><td>" + h::time_text(build.value("started_at", json())) +
                   "</td></tr><tr><th>finished</th><td>" + h::time_text(build.value("complete_at", json())) +
                   "</td></tr><tr><th>duration</th><td>" +
                   h::duration_text(build.value("started_at", json()), build.value("complete_at", json())) +
                   "</td></tr><tr><th>build id</th><td>" + id + "</td></tr></table>";
            out += build.value("complete", false)
                       ? h::rpc_button("/api/v2/builds/" + id, "rebuild", "Rebuild",
                                       {{"reason", "rebuilt from the build page"}})
                       : h::rpc_button("/api/v2/builds/" + id, "stop", "Stop build",
                                       {{"reason", "stopped from the build page"}});

            out += "<h2>Steps</h2>" +
                   h::table_head({"#", "step", "result", "state", "duration", "logs"}, "steps");
            for (size_t i = 0; i < steps.size(); ++i) {
              const json& s = steps[i];
              if (s.value("hidden", false)) continue;
              const std::string shref = step_href(href, s["number"]);
              std::string links;
              for (const json& l : list_of(step_logs[i])) {
                links += h::link(log_href(shref, l["slug"]), h::text(l["name"])) + " (" +
                         h::link(log_href(shref, l["slug"]) + "/text", "text") + ") ";
              }
              for (const json& u : s.value("urls", json::array())) {
                if (u.is_object() && u.value("url", json()).is_string()) {
                  links += h::link(u["url"].get<std::string>(), h::text(u.value("name", u["url"]))) + " ";
                }
              }
              out += "<tr><td>" + num(s["number"]) + "</td><td>" + h::link(shref, h::text(s["name"])) +
                     "</td>" + h::result_cell(s) + "<td>" + h::text(s.value("state_string", json())) +
                     "</td><td>" +
                     h::duration_text(s.value("started_at", json()), s.value("complete_at", json())) +
                     "</td><td>" + links + "</td></tr>";
            }
            out += "</table>";

            std::set<std::string> blamed;
            for (const json& c : changes) blamed.insert(c.value("author", std::string()));
            out += "<h2>Blamelist</h2>";
            if (blamed.empty())
              out += "<p>No one.</p>";
            else {
              out += "<ul class=\"blamelist\">";
              for (const std::string& who : blamed) out += "<li>" + h::escape(who) + "</li>";
              out += "</ul>";
            }
            out += "<h2>Changes</h2>" + changes_table(call->settings, changes);
            out += "<h2>Properties</h2>" + properties_table(properties);
            call->done(std::move(page));
          });
        });
  });
}

// buildstatus?builder=NAME&number=N: a build's steps in one small table,
// for embedding.
void buildstatus_page(PageCall call) {
  const auto builder = call->arg("builder");
  if (!builder || builder->empty())
    return call->bad_argument("builder= is required (a builder's name or id)");
  const auto number = call->int_arg("number", -1);
  if (!number) return;
  if (*number < 0) return call->bad_argument("number= is required (a build number)");
  const std::string path = "builders/" + h::url_encode(*builder) + "/builds/" + std::to_string(*number);
  call->gather({{path, ""}, {path + "/steps", "order=number"}}, [call](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    const json build = object_of(a[0]);
    const std::string href = build_href(build["builderid"], build["number"]);
    Page page;
    page.title = "Build status";
    page.live = {"builds/" + num(build["buildid"]) + "/*", "steps/*/*"};
    page.live_match = {{"buildid", build["buildid"]}};
    page.content = "<table class=\"buildstatus\"><tr>" + h::result_cell(build) + "<td>" +
                   h::link(href, "#" + num(build["number"])) + " " +
                   h::text(build.value("state_string", json())) + "</td></tr>";
    for (const json& s : list_of(a[1])) {
      if (s.value("hidden", false)) continue;
      page.content += "<tr>" + h::result_cell(s) + "<td>" +
                      h::link(step_href(href, s["number"]), h::text(s["name"])) + " " +
                      h::text(s.value("state_string", json())) + "</td></tr>";
    }
    page.content += "</table>";
    call->done(std::move(page));
  });
}

// ---------------------------------------------------------------- step

void step_page(PageCall call) {
  if (!need_number(call, 1, "build number")) return;
  const std::string build = "builders/" + h::url_encode(call->args[0]) + "/builds/" + call->args[1];
  const std::string path = build + "/steps/" + h::url_encode(call->args[2]);
  call->gather({{build, ""}, {path, ""}}, [call](Answers first) {
    if (auto bad = first_error(first)) return call->done(std::move(*bad));
    const json b = object_of(first[0]);
    const json s = object_of(first[1]);
    call->gather({{"steps/" + num(s["stepid"]) + "/logs", ""}}, [call, b, s](Answers a) {
      if (auto bad = first_error(a)) return call->done(std::move(*bad));
      const std::string bhref = build_href(b["builderid"], b["number"]);
      const std::string shref = step_href(bhref, s["number"]);
      Page page;
      page.title = s.value("name", std::string()) + " of #" + num(b["number"]);
      page.live = {"steps/" + num(s["stepid"]) + "/*", "logs/*/*"};
      page.live_match = {{"stepid", s["stepid"]}};
      std::string& out = page.content;
      out +=
          "<h1>Step " + h::text(s["name"]) + " of " + h::link(bhref, "build #" + num(b["number"])) + "</h1>";
      out += "<table class=\"summary\"><tr><th>result</th>" + h::result_cell(s) +
             "</tr><tr><th>state</th><td>" + h::text(s.value("state_string", json())) +
             "</td></tr><tr><th>started</th><td>" + h::time_text(s.value("started_at", json())) +
             "</td></tr><tr><th>finished</th><td>" + h::time_text(s.value("complete_at", json())) +
             "</td></tr><tr><th>duration</th><td>" +
             h::duration_text(s.value("started_at", json()), s.value("complete_at", json())) +
             "</td></tr></table>";
      out += "<h2>Logs</h2>" + h::table_head({"log", "lines", "", ""}, "logs");
      for (const json& l : list_of(a[0])) {
        const std::string lhref = log_href(shref, l["slug"]);
        out += "<tr><td>" + h::link(lhref, h::text(l["name"])) + "</td><td>" +
               h::text(l.value("num_lines", json())) + "</td><td>" + h::link(lhref + "/text", "text") +
               "</td><td>" + h::link("/api/v2/logs/" + num(l["logid"]) + "/raw", "download") + "</td></tr>";
      }
      out += "</table>";
      const json urls = s.value("urls", json::array());
      if (!urls.empty()) {
        out += "<h2>URLs</h2><ul>";
        for (const json& u : urls) {
          if (u.is_object() && u.value("url", json()).is_string()) {
            out +=
                "<li>" + h::link(u["url"].get<std::string>(), h::text(u.value("name", u["url"]))) + "</li>";
          }
        }
        out += "</ul>";
      }
      call->done(std::move(page));
    });
  });
}

// ---------------------------------------------------------------- logs

std::string log_path(const PageRequest& call) {
  if (call.args.size() == 1) return "logs/" + call.args[0];
  return "builders/" + h::url_encode(call.args[0]) + "/builds/" + call.args[1] + "/steps/" +
         h::url_encode(call.args[2]) + "/logs/" + h::url_encode(call.args[3]);
}

// Log lines as HTML: stdio lines by their stream letter (h header, o
// stdout, e stderr), a run of lines of one stream in one span.
std::string log_html(const std::string& content, bool stdio) {
  if (!stdio) return "<pre class=\"log\">" + h::escape(content) + "</pre>";
  std::string out = "<pre class=\"log\">";
  char open = 0;
  size_t pos = 0;
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    if (end == std::string::npos) end = content.size();
    const std::string_view line = std::string_view(content).substr(pos, end - pos);
    const char stream = line.empty() ? 'o' : line[0];
    const char cls = stream == 'h' || stream == 'e' ? stream : 'o';
    if (cls != open) {
      if (open) out += "</span>";
      out += std::string("<span class=\"") + cls + "\">";
      open = cls;
    }
    out += h::escape(line.empty() ? line : line.substr(1));
    out += '\n';
    pos = end + 1;
  }
  if (open) out += "</span>";
  return out + "</pre>";
}

void log_page(PageCall call) {
  if (call->args.size() == 4 && !need_number(call, 1, "build number")) return;
  if (call->args.size() == 1 && !need_number(call, 0, "log id")) return;
  const auto limit = call->int_arg("limit", kLogPageLines, kMaxLogPageLines);
  if (!limit) return;
  if (*limit == 0) return call->bad_argument("limit=0: a page has at least one line");
  const auto offset_arg = call->int_arg("offset", -1);
  if (!offset_arg) return;
  call->gather({{log_path(*call), ""}}, [call, limit = *limit, offset_arg = *offset_arg](Answers first) {
    if (auto bad = first_error(first)) return call->done(std::move(*bad));
    const json log = object_of(first[0]);
    const int64_t lines = log.value("num_lines", int64_t{0});
    // Without an offset a running log shows its end, a finished one its start.
    const int64_t offset = offset_arg >= 0               ? offset_arg
                           : log.value("complete", true) ? 0
                                                         : std::max<int64_t>(0, lines - limit);
    const std::string id = num(log["logid"]);
    call->gather(
        {{"logs/" + id + "/contents", "offset=" + std::to_string(offset) + "&limit=" + std::to_string(limit)},
         {"steps/" + num(log["stepid"]), ""}},
        [call, log, id, lines, offset, limit](Answers a) {
          if (auto bad = first_error({a[0]})) return call->done(std::move(*bad));
          const json step = object_of(a[1]);
          const std::string self = call->request.path;
          auto page_link = [&](int64_t at, const std::string& label) {
            return h::link(self + "?offset=" + std::to_string(at) + "&limit=" + std::to_string(limit), label);
          };
          Page page;
          page.title = "Log " + log.value("name", std::string());
          page.live = {"logs/" + id + "/*"};
          std::string nav = "<p class=\"pages\">lines " +
                            std::to_string(std::min(offset + 1, std::max<int64_t>(lines, 1))) + "&ndash;" +
                            std::to_string(std::min(offset + limit, lines)) + " of " + std::to_string(lines) +
                            (log.value("complete", true) ? "" : " (still running)") + " ";
          if (offset > 0)
            nav += page_link(0, "first") + " " + page_link(std::max<int64_t>(0, offset - limit), "previous") +
                   " ";
          if (offset + limit < lines) {
            nav += page_link(offset + limit, "next") + " " +
                   page_link(std::max<int64_t>(0, lines - limit), "last") + " ";
          }
          nav += h::link(self + "/text", "text") + " " + h::link("/api/v2/logs/" + id + "/raw", "download") +
                 "</p>";
          page.content =
              "<h1>Log " + h::text(log["name"]) + " of step " + h::text(step.value("name", json())) +
              "</h1>" + nav +
              log_html(object_of(a[0]).value("content", std::string()), log.value("type", "s") == "s") + nav;
          call->done(std::move(page));
        });
  });
}

// The log as plain text, header lines dropped and stream letters
// stripped, read and sent a page at a time.
struct TextStream : std::enable_shared_from_this<TextStream> {
  Backend& backend;
  std::string contents;
  bool stdio = true;
  int64_t next = 0;

  TextStream(Backend& b, std::string c, bool s) : backend(b), contents(std::move(c)), stdio(s) {}

  void read(std::function<void(std::string, bool more)> done) {
    json query = {{"offset", next}, {"limit", kTextPieceLines}};
    backend.get(contents, query, [self = shared_from_this(), done = std::move(done)](Answer a) {
      if (!a.ok()) return done("", false);
      const std::string content = a.value.value("content", std::string());
      std::string out;
      int64_t count = 0;
      size_t pos = 0;
      while (pos < content.size()) {
        size_t end = content.find('\n', pos);
        if (end == std::string::npos) end = content.size();
        ++count;
        if (!self->stdio) {
          out.append(content, pos, end - pos);
          out += '\n';
        } else if (end > pos && content[pos] != 'h') {
          out.append(content, pos + 1, end - pos - 1);
          out += '\n';
        }
        pos = end + 1;
      }
      self->next += count;
      done(std::move(out), count == kTextPieceLines);
    });
  }
};

void log_text(PageCall call) {
  if (call->args.size() == 4 && !need_number(call, 1, "build number")) return;
  if (call->args.size() == 1 && !need_number(call, 0, "log id")) return;
  call->gather({{log_path(*call), ""}}, [call](Answers first) {
    if (auto bad = first_error(first)) return call->done(std::move(*bad));
    const json log = object_of(first[0]);
    auto stream = std::make_shared<TextStream>(call->backend, "logs/" + num(log["logid"]) + "/contents",
                                               log.value("type", "s") == "s");
    stream->read([call, stream](std::string text, bool more) {
      Response r;
      r.content_type = "text/plain; charset=utf-8";
      r.body = std::move(text);
      if (more) {
        r.next_piece = [stream](Piece deliver) {
          stream->read([deliver](std::string piece, bool again) { deliver(std::move(piece), again); });
        };
      }
      Page page;
      page.raw = std::move(r);
      call->done(std::move(page));
    });
  });
}

// ---------------------------------------------------------------- changes

void changes_page(PageCall call) {
  const auto count = call->int_arg("num", 50, kMaxListed);
  if (!count) return;
  std::string query = "order=-changeid&limit=" + std::to_string(*count);
  for (const char* filter : {"branch", "project", "repository", "author", "category", "codebase"}) {
    for (const std::string& v : call->arg_all(filter))
      query += std::string("&") + filter + "=" + h::url_encode(v);
  }
  call->gather({{"changes", query}}, [call](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    Page page;
    page.title = "Changes";
    page.live = {"changes/*/*"};
    page.content = "<h1>Changes</h1>" + changes_table(call->settings, list_of(a[0]));
    call->done(std::move(page));
  });
}

void change_page(PageCall call) {
  if (!need_number(call, 0, "change")) return;
  const std::string path = "changes/" + call->args[0];
  call->gather({{path, ""}, {path + "/builds", "order=-buildid"}}, [call](Answers a) {
    if (auto bad = first_error({a[0]})) return call->done(std::move(*bad));
    std::set<int64_t> ids;
    add_builderids(ids, list_of(a[1]));
    with_builder_names(call, ids, [call, a](std::map<int64_t, std::string> builders) {
      const json c = object_of(a[0]);
      const PageSettings& s = call->settings;
      Page page;
      page.title = "Change " + num(c["changeid"]);
      page.live = {"builds/*/*"};
      std::string& out = page.content;
      out += "<h1>Change " + num(c["changeid"]) + "</h1><table class=\"summary\">";
      auto row = [&](const char* name, const std::string& value_html) {
        out += std::string("<tr><th>") + name + "</th><td>" + value_html + "</td></tr>";
      };
      row("author", h::text(c.value("author", json())));
      row("committer", h::text(c.value("committer", json())));
      row("revision", h::revision(s, c.value("revision", json()), c.value("repository", json())));
      if (c.value("revlink", json()).is_string() && !c["revlink"].get<std::string>().empty()) {
        row("revlink", h::link(c["revlink"].get<std::string>(), h::text(c["revlink"])));
      }
      row("branch", h::text(c.value("branch", json())));
      row("repository", h::repository(s, c.value("repository", json())));
      row("project", h::project(s, c.value("project", json())));
      row("codebase", h::text(c.value("codebase", json())));
      row("category", h::text(c.value("category", json())));
      row("when", h::time_text(c.value("when_timestamp", json())));
      row("comments", "<pre>" + h::comments(s, c.value("comments", json())) + "</pre>");
      std::string files;
      for (const json& f : c.value("files", json::array())) files += h::text(f) + "<br>";
      row("files", files);
      out += "</table><h2>Properties</h2>" + properties_table(c.value("properties", json::object()));
      out += "<h2>Builds</h2>" + builds_table(list_of(a[1]), {}, builders);
      call->done(std::move(page));
    });
  });
}

// ---------------------------------------------------------------- workers

std::string info_text(const json& info, const char* key) {
  return info.is_object() && info.contains(key) ? h::text(info[key]) : "";
}

void workers_page(PageCall call) {
  const auto no_builders = call->int_arg("no_builders", 0, 1);
  if (!no_builders) return;
  call->gather({{"workers", "order=name"}}, [call, no_builders = *no_builders](Answers a) {
    if (auto bad = first_error(a)) return call->done(std::move(*bad));
    std::set<int64_t> ids;
    if (!no_builders) {
      for (const json& w : list_of(a[0])) add_builderids(ids, w.value("configured_on", json::array()));
    }
    with_builder_names(call, ids, [call, a, no_builders](std::map<int64_t, std::string> builders) {
      Page page;
      page.title = "Workers";
      page.live = {"workers/*/*"};
      std::string& out = page.content;
      out += "<h1>Workers</h1>" +
             (no_builders ? h::table_head({"worker", "state", "host", "admin", "version", "os"}, "workers")
                          : h::table_head({"worker", "state", "host", "admin", "version", "os", "builders"},
                                          "workers"));
      for (const json& w : list_of(a[0])) {
        const json info = w.value("workerinfo", json::object());
        const bool connected = !w.value("connected_to", json::array()).empty();
        std::string state = connected ? "connected" : "not connected";
        if (w.value("paused", false)) state += ", paused";
        if (w.value("graceful", false)) state += ", shutting down";
        out += "<tr><td>" + h::link("/workers/" + num(w["workerid"]), h::text(w["name"])) +
               "</td><td class=\"" + (connected ? "result-success" : "result-failure") + "\">" + state +
               "</td><td>" + info_text(info, "host") + "</td><td>" + info_text(info, "admin") + "</td><td>" +
               info_text(info, "version") + "</td><td>" + info_text(info, "os") + "</td>";
        if (!no_builders) {
          std::string names;
          for (const json& c : w.value("configured_on", json::array())) {
            const json bid = c.value("builderid", json());
            auto it = bid.is_number_integer() ? builders.find(bid.get<int64_t>()) : builders.end();
            if (it != builders.end()) names += h::link(builder_href(bid), h::escape(it->second)) + " ";
          }
          out += "<td>" + names + "</td>";
        }
        out += "</tr>";
      }
      out += "</table>";
      call->done(std::move(page));
    });
  });
}

void worker_page(PageCall call) {
  const auto numbuilds = call->int_arg("numbuilds", 20, kMaxListed);
  if (!numbuilds) return;
  const std::string path = "workers/" + h::url_encode(call->args[0]);
  call->gather(
      {{path, ""}, {path + "/builds", "order=-buildid&limit=" + std::to_string(*numbuilds)}},
      [call](Answers a) {
        if (auto bad = first_error(a)) return call->done(std::move(*bad));
        std::set<int64_t> ids;
        add_builderids(ids, object_of(a[0]).value("configured_on", json::array()));
        add_builderids(ids, list_of(a[1]));
        with_builder_names(call, ids, [call, a](std::map<int64_t, std::string> builders) {
          const json w = object_of(a[0]);
          const bool connected = !w.value("connected_to", json::array()).empty();
          Page page;
          page.title = "Worker " + w.value("name", std::string());
          page.live = {"workers/" + num(w["workerid"]) + "/*", "builds/*/*"};
          page.live_match = {{"workerid", w["workerid"]}};
          // The seeds' worker actions (authz ping_worker, graceful_shutdown);
          // outside the live part so their answers stay shown.
          const std::string api = "/api/v2/workers/" + num(w["workerid"]);
          page.fixed = "<p class=\"actions\">" + h::rpc_button(api, "ping", "Ping") + " " +
                       h::rpc_button(api, "graceful_shutdown", "Graceful shutdown") + "</p>";
          std::string& out = page.content;
          out += "<h1>Worker " + h::text(w["name"]) + "</h1><p class=\"" +
                 (connected ? "result-success\">connected" : "result-failure\">not connected") + "</p>";
          out += "<h2>Host information</h2><table class=\"info\">";
          for (const auto& [key, value] : w.value("workerinfo", json::object()).items()) {
            out += "<tr><th>" + h::escape(key) + "</th><td>" +
                   (value.is_object() ? "<pre>" + h::text(value.dump(1)) + "</pre>" : h::text(value)) +
                   "</td></tr>";
          }
          out += "</table><h2>Builders</h2><ul>";
          for (const json& c : w.value("configured_on", json::array())) {
            const json bid = c.value("builderid", json());
            auto it = bid.is_number_integer() ? builders.find(bid.get<int64_t>()) : builders.end();
            if (it != builders.end())
              out += "<li>" + h::link(builder_href(bid), h::escape(it->second)) + "</li>";
          }
          out += "</ul><h2>Recent builds</h2>" +
                 builds_table(list_of(a[1]),
                              {{w.value("workerid", int64_t{0}), w.value("name", std::string())}}, builders);
          call->done(std::move(page));
        });
      });
}

// ---------------------------------------------------------------- users

// Users are shown only to whom show_users_page allows.
void with_users_allowed(const PageCall& call, std::function<void()> then) {
  call->auth.authorize(Action::kShowUsersPage, call->who, "users", [call, then = std::move(then)](Verdict v) {
    if (v == Verdict::kAllowed) return then();
    Page page = error_page(v == Verdict::kUnauthenticated ? 401 : 403,
                           v == Verdict::kUnauthenticated ? "log in to see the users (show_users_page)"
                                                          : "you may not see the users (show_users_page)");
    call->done(std::move(page));
  });
}

std::string attributes_text(const json& attributes) {
  std::string out;
  if (!attributes.is_object()) return out;
  for (const auto& [type, value] : attributes.items()) {
    out += h::escape(type) + ": " + h::text(value) + "<br>";
  }
  return out;
}

void users_page(PageCall call) {
  with_users_allowed(call, [call] {
    call->gather({{"users", ""}}, [call](Answers a) {
      if (auto bad = first_error(a)) return call->done(std::move(*bad));
      Page page;
      page.title = "Users";
      page.content = "<h1>Users</h1>" + h::table_head({"user", "identifier", "attributes"}, "users");
      for (const json& u : list_of(a[0])) {
        page.content += "<tr><td>" + h::link("/users/" + num(u["uid"]), num(u["uid"])) + "</td><td>" +
                        h::text(u.value("identifier", json())) + "</td><td>" +
                        attributes_text(u.value("attributes", json())) + "</td></tr>";
      }
      page.content += "</table>";
      call->done(std::move(page));
    });
  });
}

void user_page(PageCall call) {
  if (!need_number(call, 0, "user id")) return;
  with_users_allowed(call, [call] {
    call->gather({{"users/" + call->args[0], ""}}, [call](Answers a) {
      if (auto bad = first_error(a)) return call->done(std::move(*bad));
      const json u = object_of(a[0]);
      Page page;
      page.title = "User " + u.value("identifier", std::string());
      page.content = "<h1>User " + h::text(u.value("identifier", json())) +
                     "</h1><table class=\"summary\"><tr><th>uid</th><td>" + num(u["uid"]) +
                     "</td></tr><tr><th>attributes</th><td>" +
                     attributes_text(u.value("attributes", json())) + "</td></tr></table>";
      call->done(std::move(page));
    });
  });
}

// ---------------------------------------------------------------- about, help, robots

void about_page(PageCall call) {
  call->gather({{"masters", ""}}, [call](Answers a) {
    Page page;
    page.title = "About";
    std::string& out = page.content;
    const std::string boost = std::to_string(BOOST_VERSION / 100000) + "." +
                              std::to_string(BOOST_VERSION / 100 % 1000) + "." +
                              std::to_string(BOOST_VERSION % 100);
    out += "<h1>About this Kiln</h1>" + h::table_head({"component", "version"}, "versions");
    auto row = [&](const std::string& name, const std::string& version) {
      out += "<tr><td>" + h::escape(name) + "</td><td>" + h::escape(version) + "</td></tr>";
    };
    row("Kiln", KILN_WEB_KILN_VERSION);
    row("plugin ABI", std::to_string(KILN_ABI_MAJOR) + "." + std::to_string(KILN_ABI_MINOR));
    row("kiln-web", "0.1.0");
    row("Boost (Beast, Asio)", boost);
    row("OpenSSL", OpenSSL_version(OPENSSL_VERSION));
    row("nlohmann/json", std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                             std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." +
                             std::to_string(NLOHMANN_JSON_VERSION_PATCH));
#if defined(__clang__)
    row("compiler", "clang " __clang_version__);
#elif defined(__GNUC__)
    row("compiler", "GCC " __VERSION__);
#endif
    out += "</table><h2>Masters</h2>" + h::table_head({"master", "active", "last active"}, "masters");
    for (const json& m : list_of(a[0])) {
      out += "<tr><td>" + h::text(m.value("name", json())) + "</td><td>" +
             (m.value("active", false) ? "yes" : "no") + "</td><td>" +
             h::time_text(m.value("last_active", json())) + "</td></tr>";
    }
    out +=
        "</table><p>Kiln re-creates Buildbot's master as a C++ plugin framework; these pages follow "
        "Buildbot 0.8.5's web status.</p>";
    call->done(std::move(page));
  });
}

// The /json/help analog: every REST resource with what it answers.
void api_help_page(PageCall call) {
  struct Resource {
    const char* path;
    const char* what;
  };
  static constexpr Resource kResources[] = {
      {"builders", "every builder: builderid, name, description, tags, masterids"},
      {"builders/{id|name}", "one builder"},
      {"builders/{id|name}/builds", "a builder's builds (also /builds/{number})"},
      {"builders/{id|name}/buildrequests", "a builder's build requests"},
      {"builders/{id|name}/workers", "the workers configured for a builder"},
      {"builds",
       "every build: buildid, number, builderid, workerid, started_at, complete_at, results, state_string"},
      {"builds/{id}", "one build (JSON-RPC stop, rebuild)"},
      {"builds/{id}/steps", "a build's steps (also /steps/{number|name})"},
      {"builds/{id}/changes", "the changes a build is made of"},
      {"builds/{id}/properties", "a build's properties: {name: [value, source]}"},
      {"steps/{id}/logs", "a step's logs (also /logs/{slug})"},
      {"logs/{id}", "one log: logid, name, slug, type, num_lines, complete"},
      {"logs/{id}/contents", "lines of a log (offset, limit), stream letters kept"},
      {"logs/{id}/raw", "the whole log as a download"},
      {"buildrequests", "every build request (JSON-RPC cancel on one)"},
      {"buildsets", "every buildset (also /{id}/properties)"},
      {"changes", "every change (also /{id}, /{id}/builds)"},
      {"sourcestamps", "every source stamp (also /{id}/changes)"},
      {"workers", "every worker: workerid, name, workerinfo, connected_to, configured_on"},
      {"masters", "the masters"},
      {"users", "users (show_users_page)"},
      {"forceschedulers/{name}", "a force scheduler's form (JSON-RPC force)"},
  };
  Page page;
  page.title = "API help";
  std::string& out = page.content;
  out +=
      "<h1>REST API</h1><p>Every resource is under " + h::link("/api/v2", "/api/v2") +
      ". Query parameters: <code>field</code>, <code>limit</code>, <code>offset</code>, <code>order</code> "
      "(<code>-</code> for descending), <code>property</code>, filters <code>FIELD=value</code> and "
      "<code>FIELD__op=value</code> (eq ne lt le gt ge contains in). Live updates: the <code>/ws</code> "
      "WebSocket (startConsuming a routing-key path such as <code>builds/*/*</code>).</p>" +
      h::table_head({"resource", "answers"}, "api");
  for (const Resource& r : kResources) {
    const std::string path = r.path;
    const bool plain = path.find('{') == std::string::npos;
    out += "<tr><td><code>" + (plain ? h::link("/api/v2/" + path, h::escape(path)) : h::escape(path)) +
           "</code></td><td>" + h::escape(r.what) + "</td></tr>";
  }
  out += "</table>";
  call->done(std::move(page));
}

// public_html/robots.txt wins; otherwise the costly pages are kept from crawlers.
void robots_txt(PageCall call) {
  Response r;
  r.content_type = "text/plain; charset=utf-8";
  if (!call->settings.public_html.empty()) {
    std::ifstream in(call->settings.public_html / "robots.txt", std::ios::binary);
    if (in) {
      std::ostringstream text;
      text << in.rdbuf();
      r.body = text.str();
    }
  }
  if (r.body.empty()) {
    r.body = "User-agent: *\n";
    for (const char* path :
         {"/waterfall", "/grid", "/tgrid", "/console", "/one_line_per_build", "/builders/", "/builds/",
          "/changes", "/workers", "/buildstatus", "/json", "/api/", "/logs/"}) {
      r.body += std::string("Disallow: ") + path + "\n";
    }
  }
  Page page;
  page.raw = std::move(r);
  call->done(std::move(page));
}

const bool registered = register_pages({
    {"/", builders_list, "", 0, true},
    {"/builders", builders_list, "Builders", 50, true},
    {"/builders/{}", builder_page},
    {"/builders/{}/builds/{}", build_page},
    {"/builds/{}", build_page},
    {"/builders/{}/builds/{}/steps/{}", step_page},
    {"/builders/{}/builds/{}/steps/{}/logs/{}", log_page},
    {"/builders/{}/builds/{}/steps/{}/logs/{}/text", log_text},
    {"/logs/{}", log_page},
    {"/logs/{}/text", log_text},
    {"/buildstatus", buildstatus_page},
    {"/changes", changes_page, "Changes", 60},
    {"/changes/{}", change_page},
    {"/workers", workers_page, "Workers", 70},
    {"/workers/{}", worker_page},
    {"/buildslaves", workers_page},
    {"/buildslaves/{}", worker_page},
    {"/users", users_page, "Users", 80},
    {"/users/{}", user_page},
    {"/about", about_page, "About", 90},
    {"/json/help", api_help_page, "API", 95},
    {"/robots.txt", robots_txt},
});

}  // namespace
}  // namespace kiln::web
