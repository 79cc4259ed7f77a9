// The shell of every page and the one shared script. The script does
// three things: follows the page's routing keys over ONE /ws subscription
// and re-fetches the live part (`fragment=1`) after a burst of events,
// posts the JSON-RPC calls of buttons and forms with the CSRF token, and
// logs out. Everything else is server-side HTML.

#include "html.h"

#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>

namespace kiln::web::html {
namespace {

using nlohmann::json;

constexpr std::string_view kStyle = R"css(
body { font-family: sans-serif; margin: 0; font-size: 14px; }
nav { background: #2f3b4c; padding: 0.4em 1em; }
nav a { color: #fff; margin-right: 1em; text-decoration: none; }
nav a.current { font-weight: bold; text-decoration: underline; }
nav .who { float: right; color: #ddd; }
nav .who a, nav .who button { color: #fff; }
main { margin: 1em 1.5em; }
h1 { font-size: 1.4em; }
table { border-collapse: collapse; margin-bottom: 1em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.result-success { background: #8d4; } .result-warnings { background: #fa3; }
.result-failure { background: #e88; } .result-skipped { background: #ade; }
.result-exception { background: #c6f; } .result-retry { background: #ecc; }
.result-cancelled { background: #ecc; } .running { background: #e7d100; }
.pending { background: #eee; }
.error { color: #b00; font-weight: bold; }
.log { font-family: monospace; white-space: pre-wrap; margin: 0; }
.log .h { color: #00b; } .log .e { color: #c00; } .log .o { color: #000; }
.rpc-result { margin-left: 0.5em; }
form.force label { display: block; margin: 0.2em 0; }
)css";

// One subscription, one refresh at a time: events arriving while a
// refresh is in flight cause one more refresh after it, never a pile-up.
constexpr std::string_view kScript = R"js(
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const live = document.getElementById("live");
  const say = (where, text, bad) => {
    if (!where) return;
    where.textContent = text;
    where.className = "rpc-result" + (bad ? " error" : "");
  };
  async function rpc(url, method, params) {
    const headers = {"Content-Type": "application/json"};
    if (csrf) headers["X-CSRF-Token"] = csrf;
    const r = await fetch(url, {method: "POST", headers, credentials: "same-origin",
      body: JSON.stringify({jsonrpc: "2.0", method, params, id: 1})});
    const answer = await r.json().catch(() => ({error: {message: "HTTP " + r.status}}));
    if (answer.error) throw new Error(answer.error.message || String(answer.error));
    return answer.result;
  }
  function describe(result) {
    if (result && result.bsid !== undefined) return "buildset " + result.bsid + " submitted";
    return "done";
  }
  // Buttons and forms carry data-rpc (the resource) and data-method.
  document.addEventListener("click", e => {
    const b = e.target.closest("button[data-rpc]");
    if (!b) return;
    e.preventDefault();
    const out = b.nextElementSibling?.classList.contains("rpc-result") ? b.nextElementSibling : null;
    b.disabled = true;
    rpc(b.dataset.rpc, b.dataset.method, JSON.parse(b.dataset.params || "{}"))
      .then(r => say(out, describe(r)), err => say(out, err.message, true))
      .finally(() => { b.disabled = false; refresh(); });
  });
  document.addEventListener("submit", e => {
    const f = e.target.closest("form[data-rpc]");
    if (!f) return;
    e.preventDefault();
    const params = JSON.parse(f.dataset.params || "{}");
    for (const el of f.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "checkbox") params[el.name] = el.checked;
      else if (el.multiple) params[el.name] = [...el.selectedOptions].map(o => o.value);
      else if (el.type === "number" && el.value !== "") params[el.name] = Number(el.value);
      else params[el.name] = el.value;
    }
    const out = f.querySelector(".rpc-result");
    rpc(f.dataset.rpc, f.dataset.method, params)
      .then(r => say(out, describe(r)), err => say(out, err.message, true));
  });
  document.getElementById("logout")?.addEventListener("click", () =>
    fetch("/auth/logout", {method: "POST", headers: {"X-CSRF-Token": csrf}}).then(() => location.reload()));

  let busy = false, again = false, timer = null;
  async function refresh() {
    if (!live) return;
    if (busy) { again = true; return; }
    busy = true;
    try {
      const url = new URL(location.href);
      url.searchParams.set("fragment", "1");
      const r = await fetch(url, {credentials: "same-origin"});
      if (r.ok) {
        live.innerHTML = await r.text();
        document.dispatchEvent(new Event("kiln:refreshed"));
      }
    } catch (e) { /* the next event retries */ }
    busy = false;
    if (again) { again = false; later(); }
  }
  function later() { if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 400); }
  function follow(patterns) {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => patterns.forEach((path, i) =>
      ws.send(JSON.stringify({cmd: "startConsuming", path, _id: i + 1})));
    ws.onmessage = e => {
      const f = JSON.parse(e.data);
      if (f.k && Object.entries(match).every(([k, v]) => !(f.m && k in f.m) || f.m[k] === v)) later();
    };
    ws.onclose = () => setTimeout(() => follow(patterns), 5000);
  }
  const patterns = (live?.dataset.live || "").split(",").filter(p => p);
  const match = JSON.parse(live?.dataset.liveMatch || "{}");
  if (patterns.length) follow(patterns);
  window.kiln = {rpc, refresh, csrf};
})();
)js";

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void replace_all(std::string& text, std::string_view from, std::string_view to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
}

std::string nav_html(const PageRequest& call) {
  const PageSettings& s = call.settings;
  std::string out = "<nav>" + link(s.title_url.empty() ? "/" : s.title_url, "<b>" + escape(s.title) + "</b>");
  for (const auto& [label, href] : nav_entries()) {
    const bool current = call.request.path == href;
    out += "<a href=\"" + escape(href) + "\"" + (current ? " class=\"current\"" : "") + ">" + escape(label) +
           "</a>";
  }
  out += "<span class=\"who\">";
  if (call.who.authenticated()) {
    out += escape(call.who.user) + " <button id=\"logout\">log out</button>";
  } else if (call.auth.enabled()) {
    out += "<a href=\"/auth/login\">log in</a>";
  }
  out += "</span></nav>";
  return out;
}

std::string two_digits(int n) { return (n < 10 ? "0" : "") + std::to_string(n); }

}  // namespace

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string text(const json& value) {
  if (value.is_null()) return {};
  if (value.is_string()) return escape(value.get_ref<const std::string&>());
  return escape(value.dump(-1, ' ', false, json::error_handler_t::replace));
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool safe_href(std::string_view href) {
  // A scheme is what comes before the first ':' when no '/', '?' or '#'
  // does: "javascript:..." from a change hook's revlink must not become a link.
  const size_t colon = href.find(':');
  if (colon == std::string_view::npos || href.find_first_of("/?#") < colon) return true;
  std::string scheme(href.substr(0, colon));
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return scheme == "http" || scheme == "https" || scheme == "mailto" || scheme == "ftp";
}

std::string link(std::string_view href, std::string_view label_html) {
  if (!safe_href(href)) return std::string(label_html);
  return "<a href=\"" + escape(href) + "\">" + std::string(label_html) + "</a>";
}

std::string result_name(const json& results) {
  static constexpr const char* kNames[] = {"success",   "warnings", "failure",  "skipped",
                                           "exception", "retry",    "cancelled"};
  if (!results.is_number_integer()) return "running";
  const auto n = results.get<int64_t>();
  return n >= 0 && n < 7 ? kNames[n] : "result " + std::to_string(n);
}

std::string result_class(const json& object) {
  if (!object.is_object()) return "pending";
  if (!object.value("complete", false)) {
    return object.value("started_at", json()).is_null() && object.contains("claimed") ? "pending" : "running";
  }
  return "result-" + result_name(object.value("results", json()));
}

std::string result_cell(const json& object) {
  const std::string cls = result_class(object);
  const std::string name =
      object.value("complete", false) ? result_name(object.value("results", json())) : cls;
  return "<td class=\"" + cls + "\">" + escape(name) + "</td>";
}

std::string time_text(const json& epoch) {
  if (!epoch.is_number()) return {};
  const auto t = static_cast<std::time_t>(epoch.get<double>());
  std::tm tm{};
  gmtime_r(&t, &tm);
  return std::to_string(tm.tm_year + 1900) + "-" + two_digits(tm.tm_mon + 1) + "-" + two_digits(tm.tm_mday) +
         " " + two_digits(tm.tm_hour) + ":" + two_digits(tm.tm_min) + ":" + two_digits(tm.tm_sec);
}

double now_epoch() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string duration_text(const json& from, const json& to) {
  if (!from.is_number()) return {};
  const double end = to.is_number() ? to.get<double>() : now_epoch();
  auto s = static_cast<int64_t>(std::llround(std::max(0.0, end - from.get<double>())));
  if (s >= 3600) return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
  if (s >= 60) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  return std::to_string(s) + " s";
}

std::string revision(const PageSettings& settings, const json& rev, const json& repository) {
  if (!rev.is_string() || rev.get_ref<const std::string&>().empty()) return {};
  const std::string& full = rev.get_ref<const std::string&>();
  const std::string shown = escape(full.size() > 12 ? full.substr(0, 12) : full);
  std::string format = settings.revlink;
  if (repository.is_string()) {
    if (auto it = settings.revlinks.find(repository.get<std::string>()); it != settings.revlinks.end()) {
      format = it->second;
    }
  }
  if (format.empty()) return "<span title=\"" + escape(full) + "\">" + shown + "</span>";
  std::string href = format;
  replace_all(href, "%s", url_encode(full));
  if (!safe_href(href)) return "<span title=\"" + escape(full) + "\">" + shown + "</span>";
  return "<a href=\"" + escape(href) + "\" title=\"" + escape(full) + "\">" + shown + "</a>";
}

std::string comments(const PageSettings& settings, const json& value) {
  const std::string raw = value.is_string() ? value.get<std::string>() : std::string();
  if (settings.comment_links.empty()) return escape(raw);
  // Link the earliest match of any pattern, then go on after it.
  std::string out;
  size_t pos = 0;
  while (pos < raw.size()) {
    std::smatch best;
    const CommentLink* which = nullptr;
    for (const CommentLink& cl : settings.comment_links) {
      std::smatch m;
      if (std::regex_search(raw.cbegin() + static_cast<std::ptrdiff_t>(pos), raw.cend(), m, cl.regex) &&
          m.length(0) > 0 && (!which || m.position(0) < best.position(0))) {
        best = m;
        which = &cl;
      }
    }
    if (!which) break;
    out += escape(raw.substr(pos, static_cast<size_t>(best.position(0))));
    const std::string href = best.format(which->url);
    out += safe_href(href) ? "<a href=\"" + escape(href) + "\" title=\"" + escape(best.format(which->title)) +
                                 "\">" + escape(best.str(0)) + "</a>"
                           : escape(best.str(0));
    pos += static_cast<size_t>(best.position(0) + best.length(0));
  }
  return out + escape(raw.substr(std::min(pos, raw.size())));
}

namespace {
std::string mapped(const std::map<std::string, std::string>& urls, const json& name) {
  if (!name.is_string()) return {};
  const std::string& n = name.get_ref<const std::string&>();
  auto it = urls.find(n);
  return it == urls.end() ? escape(n) : link(it->second, escape(n));
}
}  // namespace

std::string project(const PageSettings& settings, const json& name) {
  return mapped(settings.projects, name);
}
std::string repository(const PageSettings& settings, const json& name) {
  return mapped(settings.repositories, name);
}

std::string table_head(std::initializer_list<std::string_view> headings, std::string_view css_class) {
  std::string out = css_class.empty() ? "<table><tr>" : "<table class=\"" + escape(css_class) + "\"><tr>";
  for (std::string_view h : headings) {
    out += "<th>";
    out += h;
    out += "</th>";
  }
  return out + "</tr>";
}

std::string rpc_button(std::string_view api_path, std::string_view method, std::string_view label,
                       const json& params) {
  return "<button data-rpc=\"" + escape(api_path) + "\" data-method=\"" + escape(method) +
         "\" data-params=\"" + escape(params.dump()) + "\">" + escape(label) +
         "</button><span class=\"rpc-result\"></span>";
}

std::string document(const PageRequest& call, const Page& page) {
  std::string live_keys;
  for (const std::string& key : page.live) live_keys += (live_keys.empty() ? "" : ",") + key;
  const std::string csrf = call.who.by_session ? call.auth.csrf_token(call.who.session) : "";

  std::string style(kStyle);
  std::string layout;
  if (!call.settings.templates.empty()) {
    style += read_file(call.settings.templates / "style.css");
    layout = read_file(call.settings.templates / "layout.html");
  }
  const std::string title =
      escape(page.title.empty() ? call.settings.title : page.title + " - " + call.settings.title);
  const std::string head = "<meta name=\"csrf-token\" content=\"" + escape(csrf) + "\">";
  const std::string content = "<main>" + page.fixed + "<div id=\"live\" data-live=\"" + escape(live_keys) +
                              "\" data-live-match=\"" + escape(page.live_match.dump()) + "\">" +
                              page.content + "</div></main>";
  const std::string script = "<script>" + std::string(kScript) + "</script>" +
                             (page.script.empty() ? "" : "<script>" + page.script + "</script>");
  if (layout.empty()) {
    return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title + "</title>" + head +
           "<style>" + style + "</style></head><body>" + nav_html(call) + content + script +
           "</body></html>\n";
  }
  // An override layout names where the parts go; one pass, so a part's
  // own text is never read as a placeholder.
  const std::pair<std::string_view, std::string> parts[] = {
      {"{{head}}", head + "<style>" + style + "</style>"},
      {"{{title}}", title},
      {"{{nav}}", nav_html(call)},
      {"{{content}}", content},
      {"{{script}}", script},
  };
  std::string out;
  size_t pos = 0;
  while (pos < layout.size()) {
    const size_t open = layout.find("{{", pos);
    if (open == std::string::npos) break;
    out.append(layout, pos, open - pos);
    pos = open + 2;
    bool known = false;
    for (const auto& [name, value] : parts) {
      if (std::string_view(layout).substr(open, name.size()) == name) {
        out += value;
        pos = open + name.size();
        known = true;
        break;
      }
    }
    if (!known) out += "{{";
  }
  out.append(layout, std::min(pos, layout.size()));
  layout = std::move(out);
  return layout;
}

}  // namespace kiln::web::html
