// The pages: one shared script (the page kind and its key are data
// attributes of <body>), plain HTML tables, no build toolchain. The script
// reads /api/v2 and re-reads the page's data when /ws reports a change to
// what it shows.

#include "pages.h"

#include "rest.h"

#include <string>
#include <string_view>

namespace kiln::web {
namespace {

constexpr std::string_view kHead = R"html(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Kiln</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
.r0 { background: #8d4; } .r1 { background: #fa3; } .r2 { background: #e88; }
.r3 { background: #ddd; } .r4 { background: #c6f; } .r5 { background: #acf; }
.r6 { background: #fcc; } .running { background: #ff8; }
</style></head>
)html";

constexpr std::string_view kScript = R"html(
<h1 id="title">Kiln</h1>
<p><a href="/">builders</a> <span id="who"></span></p>
<div id="content">loading...</div>
<script>
const RESULTS = ["success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"];
const kind = document.body.dataset.kind, key = document.body.dataset.key;
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const api = p => fetch("/api/v2/" + p).then(r => r.json());
const state = b => b.complete ? `<td class="r${b.results}">${RESULTS[b.results] ?? b.results}</td>`
                              : `<td class="running">running</td>`;
const when = t => t ? new Date(t * 1000).toLocaleString() : "";
function table(head, rows) {
  return `<table><tr>${head.map(h => `<th>${h}</th>`).join("")}</tr>${rows.join("")}</table>`;
}
async function render() {
  const out = document.getElementById("content");
  if (kind === "builders") {
    const [builders, builds] = await Promise.all([api("builders"), api("builds?order=-buildid&limit=500")]);
    const last = {};
    for (const b of builds.builds) if (!(b.builderid in last)) last[b.builderid] = b;
    out.innerHTML = table(["builder", "tags", "last build", "state"], builders.builders.map(b => {
      const l = last[b.builderid];
      return `<tr><td><a href="/builders/${b.builderid}">${esc(b.name)}</a></td><td>${esc(b.tags.join(", "))}</td>` +
             (l ? `<td><a href="/builds/${l.buildid}">#${l.number}</a> ${esc(l.state_string)}</td>${state(l)}` : `<td></td><td></td>`) + `</tr>`;
    }));
  } else if (kind === "builder") {
    const [builder, builds] = await Promise.all([api("builders/" + key), api("builders/" + key + "/builds?order=-number&limit=50")]);
    document.getElementById("title").textContent = "Builder " + builder.builders[0].name;
    out.innerHTML = table(["build", "started", "state", "result"], builds.builds.map(b =>
      `<tr><td><a href="/builds/${b.buildid}">#${b.number}</a></td><td>${when(b.started_at)}</td><td>${esc(b.state_string)}</td>${state(b)}</tr>`));
  } else if (kind === "build") {
    const [build, steps] = await Promise.all([api("builds/" + key), api("builds/" + key + "/steps")]);
    const b = build.builds[0];
    document.getElementById("title").textContent = `Build #${b.number}: ${b.state_string}`;
    const rows = await Promise.all(steps.steps.map(async s => {
      const logs = await api("steps/" + s.stepid + "/logs");
      const links = logs.logs.map(l => `<a href="/api/v2/logs/${l.logid}/raw">${esc(l.name)}</a>`).join(" ");
      return `<tr><td>${s.number}</td><td>${esc(s.name)}</td><td>${esc(s.state_string)}</td>${state(s)}<td>${links}</td></tr>`;
    }));
    out.innerHTML = table(["#", "step", "state", "result", "logs"], rows);
  }
}
let pending = null;
function later() { if (!pending) pending = setTimeout(() => { pending = null; render(); }, 300); }
function live() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => ["builds/*/*", "steps/*/*"].forEach((path, i) =>
    ws.send(JSON.stringify({cmd: "startConsuming", path, _id: i + 1})));
  ws.onmessage = e => { if (JSON.parse(e.data).k) later(); };
  ws.onclose = () => setTimeout(live, 5000);
}
// Who is logged in; POSTs of a session carry its CSRF token.
async function who() {
  const me = await fetch("/auth/me").then(r => r.json());
  const span = document.getElementById("who");
  if (me.user) {
    span.innerHTML = `${esc(me.user)} <button id="logout">log out</button>`;
    document.getElementById("logout").onclick = () =>
      fetch("/auth/logout", {method: "POST", headers: {"X-CSRF-Token": me.csrf_token}}).then(() => location.reload());
  } else if (me.auth) {
    span.innerHTML = `<a href="/auth/login">log in</a>`;
  }
}
who().catch(() => {});
render().catch(e => document.getElementById("content").textContent = "error: " + e);
live();
</script></body></html>
)html";

std::string document(std::string_view kind, std::string_view key) {
  std::string html(kHead);
  html += "<body data-kind=\"";
  html += kind;
  html += "\" data-key=\"";
  // The key is a path segment: digits or a builder name, HTML-escaped here.
  for (char c : key) {
    switch (c) {
      case '&': html += "&amp;"; break;
      case '<': html += "&lt;"; break;
      case '>': html += "&gt;"; break;
      case '"': html += "&quot;"; break;
      default: html += c;
    }
  }
  html += "\">";
  html += kScript;
  return html;
}

Response html(std::string body) {
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = std::move(body);
  return r;
}

}  // namespace

Response page(const Request& request) {
  if (request.method != "GET") return error_response(405, "pages are read with GET");
  const std::string_view path = request.path;
  auto under = [&](std::string_view prefix) -> std::string_view {
    if (!path.starts_with(prefix) || path.size() == prefix.size()) return {};
    std::string_view rest = path.substr(prefix.size());
    return rest.find('/') == std::string_view::npos ? rest : std::string_view();
  };
  if (path == "/" || path == "/builders") return html(document("builders", ""));
  if (auto key = under("/builders/"); !key.empty()) return html(document("builder", key));
  if (auto key = under("/builds/"); !key.empty() &&
      key.find_first_not_of("0123456789") == std::string_view::npos) {
    return html(document("build", key));
  }
  return error_response(404, "no page at '" + std::string(path) + "'; the REST API is under /api/v2");
}

}  // namespace kiln::web
