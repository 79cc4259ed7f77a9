#pragma once
// The small pieces every page is made of: escaping, Buildbot's result
// names and colours, times, links, and the URL decorations of the config
// (revlink, changecommentlink, projects, repositories). The page shell and
// the one shared script are here too; page functions (pages.h) produce
// only their own HTML.

#include "pages.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace kiln::web::html {

// Text and attribute values: & < > " ' escaped.
std::string escape(std::string_view text);
// The text of a JSON value as a page shows it (strings unquoted, null empty), escaped.
std::string text(const nlohmann::json& value);
// A path segment or query value, percent-encoded ("a b/c" -> "a%20b%2Fc").
std::string url_encode(std::string_view text);
// Whether `href` is relative or http(s)/mailto/ftp (not javascript:, data:, ...).
bool safe_href(std::string_view href);
// <a href="href">label</a>; `href` is escaped, `label_html` is HTML already.
// An unsafe href gives the label alone.
std::string link(std::string_view href, std::string_view label_html);

// Buildbot's result names: 0 success ... 6 cancelled; "running" for an
// incomplete one, "pending" for a request.
std::string result_name(const nlohmann::json& results);
// The CSS class of a build/step: "result-success" ... "running".
std::string result_class(const nlohmann::json& object);
// <td class="result-...">name</td> for a build or step object.
std::string result_cell(const nlohmann::json& object);

// "2026-12-08 01:14:55" (UTC) of seconds since the epoch; empty for null.
std::string time_text(const nlohmann::json& epoch);
// "1 h 2 min", "3 min 4 s", "5 s" between two epochs (to now when null).
std::string duration_text(const nlohmann::json& from, const nlohmann::json& to);
double now_epoch();

// A revision, shortened to 12 characters, linked by revlink (per
// repository first) when one is configured.
std::string revision(const PageSettings& settings, const nlohmann::json& revision,
                     const nlohmann::json& repository);
// Change comments, escaped, with changecommentlink's matches linked.
std::string comments(const PageSettings& settings, const nlohmann::json& comments);
// A project or repository, linked when the projects / repositories map names it.
std::string project(const PageSettings& settings, const nlohmann::json& project);
std::string repository(const PageSettings& settings, const nlohmann::json& repository);

// <table><tr><th>..</th></tr> with the given headings (already HTML);
// close it with "</table>".
std::string table_head(std::initializer_list<std::string_view> headings, std::string_view css_class = "");

// A button that POSTs a JSON-RPC call with the session's CSRF token
// (handled by the shared script): `method` on `api_path` ("/api/v2/builds/7").
std::string rpc_button(std::string_view api_path, std::string_view method, std::string_view label,
                       const nlohmann::json& params = nlohmann::json::object());

// The whole document: the shell around a page. `fragment` answers only
// the live part (for the script's refresh).
std::string document(const PageRequest& call, const Page& page);

}  // namespace kiln::web::html
