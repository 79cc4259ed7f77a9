// The change hook dialects, after Buildbot's www/hooks: base.py (fields of
// one change), github.py (push: one change per commit of a branch or tag;
// pull_request: one change for the PR's head when opened, reopened or
// synchronized) and gitlab.py (push and tag_push per commit, merge_request
// when opened, reopened or updated with new code).

#include "hooks.h"

#include "auth.h"
#include "rest.h"

#include <kiln/sdk/base64.hpp>

#include <cstdio>
#include <ctime>
#include <optional>
#include <utility>

namespace kiln::web {
namespace {

using nlohmann::json;

HookOutcome refuse(unsigned status, std::string error) {
  HookOutcome out;
  out.status = status;
  out.error = std::move(error);
  return out;
}

std::string string_at(const json& object, std::initializer_list<const char*> path) {
  const json* at = &object;
  for (const char* key : path) {
    if (!at->is_object() || !at->contains(key)) return {};
    at = &(*at)[key];
  }
  return at->is_string() ? at->get<std::string>() : std::string();
}

std::optional<std::string> query_value(const Request& request, std::string_view name) {
  for (auto& [key, value] : form_fields(request.query)) {
    if (key == name) return value;
  }
  return std::nullopt;
}

// "refs/heads/main" -> "main" (tags too, as Buildbot 3 does); nothing for
// other refs.
std::optional<std::string> branch_of(const std::string& ref) {
  for (std::string_view prefix : {"refs/heads/", "refs/tags/"}) {
    if (ref.starts_with(prefix)) return ref.substr(prefix.size());
  }
  return std::nullopt;
}

json when_of(const std::string& timestamp) {
  const int64_t when = parse_iso8601(timestamp);
  return when >= 0 ? json(when) : json();
}

std::string person(const json& who) {
  const std::string name = string_at(who, {"name"}), email = string_at(who, {"email"});
  return email.empty() ? name : name + " <" + email + ">";
}

json files_of(const json& commit) {
  json files = json::array();
  for (const char* kind : {"added", "modified", "removed"}) {
    for (const auto& f : commit.value(kind, json::array())) {
      if (f.is_string()) files.push_back(f);
    }
  }
  return files;
}

// The JSON a code host posted: the body, or the `payload` field of a form.
std::optional<json> payload_of(const Request& request) {
  std::string text = request.body;
  if (request.header("content-type").starts_with("application/x-www-form-urlencoded")) {
    text.clear();
    for (auto& [name, value] : form_fields(request.body)) {
      if (name == "payload") text = std::move(value);
    }
  }
  json payload = json::parse(text, nullptr, false);
  if (payload.is_discarded() || !payload.is_object()) return std::nullopt;
  return payload;
}

// ---- base ---------------------------------------------------------------------

HookOutcome base_hook(const Request& request) {
  json fields = json::object();
  if (request.header("content-type").starts_with("application/json")) {
    fields = json::parse(request.body, nullptr, false);
    if (fields.is_discarded() || !fields.is_object()) {
      return refuse(400, "the body is not a JSON object of change fields");
    }
  } else {
    for (auto& [name, value] : form_fields(request.body)) fields[name] = std::move(value);
    // A form carries lists and mappings as JSON text, as Buildbot's does.
    for (const char* key : {"files", "properties"}) {
      if (!fields.contains(key)) continue;
      json parsed = json::parse(fields[key].get<std::string>(), nullptr, false);
      if (parsed.is_discarded()) return refuse(400, std::string(key) + " is not JSON");
      fields[key] = std::move(parsed);
    }
    for (const char* key : {"when_timestamp", "when"}) {
      if (!fields.contains(key)) continue;
      json parsed = json::parse(fields[key].get<std::string>(), nullptr, false);
      if (!parsed.is_number()) return refuse(400, std::string(key) + " is not a Unix timestamp");
      fields[key] = std::move(parsed);
    }
  }
  json change = json::object();
  for (const char* key : {"author", "who", "committer", "files", "comments", "revision", "when",
                          "when_timestamp", "branch", "category", "revlink", "properties",
                          "repository", "project", "codebase"}) {
    if (fields.contains(key)) change[key] = fields[key];
  }
  HookOutcome out;
  out.changes.push_back(std::move(change));
  return out;
}

// ---- github ---------------------------------------------------------------------

HookOutcome github_hook(const HookDialect& dialect, const Request& request) {
  if (!dialect.secret.empty()) {
    const std::string_view signature = request.header("x-hub-signature-256");
    if (signature.empty()) return refuse(403, "the request has no X-Hub-Signature-256");
    if (!signature.starts_with("sha256=") ||
        !constant_time_equal(signature.substr(7), hmac_sha256_hex(dialect.secret, request.body))) {
      return refuse(403, "X-Hub-Signature-256 does not match the body and the hook's secret");
    }
  }
  const std::string event(request.header("x-github-event"));
  auto payload = payload_of(request);
  if (!payload) return refuse(400, "the payload is not a JSON object");
  HookOutcome out;
  if (event == "ping") return out;
  const auto project = query_value(request, "project");
  const auto category = query_value(request, "category");
  if (event == "push") {
    const json& p = *payload;
    auto branch = branch_of(string_at(p, {"ref"}));
    if (!branch || p.value("deleted", false)) return out;
    const std::string repository = string_at(p, {"repository", "html_url"});
    for (const auto& commit : p.value("commits", json::array())) {
      json change = {{"author", person(commit.value("author", json::object()))},
                     {"files", files_of(commit)},
                     {"comments", string_at(commit, {"message"})},
                     {"revision", string_at(commit, {"id"})},
                     {"when_timestamp", when_of(string_at(commit, {"timestamp"}))},
                     {"branch", *branch},
                     {"revlink", string_at(commit, {"url"})},
                     {"repository", repository},
                     {"project", project.value_or(string_at(p, {"repository", "full_name"}))},
                     {"properties", {{"github_distinct", commit.value("distinct", true)},
                                     {"event", "push"}}}};
      if (commit.contains("committer")) change["committer"] = person(commit["committer"]);
      if (category) change["category"] = *category;
      out.changes.push_back(std::move(change));
    }
    return out;
  }
  if (event == "pull_request") {
    const json& p = *payload;
    const std::string action = string_at(p, {"action"});
    if (action != "opened" && action != "reopened" && action != "synchronize") return out;
    const json pr = p.value("pull_request", json::object());
    const int64_t number = p.value("number", int64_t{0});
    const int64_t commits = pr.value("commits", int64_t{0});
    std::string comments = "GitHub Pull Request #" + std::to_string(number) + " (" +
                           std::to_string(commits) + " commit" + (commits == 1 ? "" : "s") + ")";
    if (auto title = string_at(pr, {"title"}); !title.empty()) comments += "\n" + title;
    if (auto body = string_at(pr, {"body"}); !body.empty()) comments += "\n" + body;
    json change = {{"author", string_at(p, {"sender", "login"})},
                   {"comments", comments},
                   {"revision", string_at(pr, {"head", "sha"})},
                   {"when_timestamp", when_of(string_at(pr, {"created_at"}))},
                   {"branch", "refs/pull/" + std::to_string(number) + "/merge"},
                   {"revlink", string_at(pr, {"html_url"})},
                   {"repository", string_at(p, {"repository", "html_url"})},
                   {"project", project.value_or(string_at(pr, {"base", "repo", "full_name"}))},
                   {"category", category.value_or("pull")},
                   {"properties", {{"event", "pull_request"},
                                   {"basename", string_at(pr, {"base", "ref"})},
                                   {"branch", string_at(pr, {"head", "ref"})},
                                   {"pr_number", number}}}};
    out.changes.push_back(std::move(change));
    return out;
  }
  return refuse(400, "unknown X-GitHub-Event '" + event + "' (push, pull_request, ping)");
}

// ---- gitlab -----------------------------------------------------------------------

HookOutcome gitlab_hook(const HookDialect& dialect, const Request& request) {
  if (!dialect.secret.empty() &&
      !constant_time_equal(request.header("x-gitlab-token"), dialect.secret)) {
    return refuse(403, "X-Gitlab-Token does not match the hook's secret");
  }
  auto payload = payload_of(request);
  if (!payload) return refuse(400, "the payload is not a JSON object");
  const json& p = *payload;
  std::string event = string_at(p, {"object_kind"});
  if (event.empty()) event = std::string(request.header("x-gitlab-event"));
  const auto project = query_value(request, "project");
  HookOutcome out;
  if (event == "push" || event == "tag_push" || event == "Push Hook") {
    auto branch = branch_of(string_at(p, {"ref"}));
    if (!branch || p.value("deleted", false)) return out;
    for (const auto& commit : p.value("commits", json::array())) {
      if (!commit.value("distinct", true)) continue;
      out.changes.push_back(
          {{"author", person(commit.value("author", json::object()))},
           {"files", files_of(commit)},
           {"comments", string_at(commit, {"message"})},
           {"revision", string_at(commit, {"id"})},
           {"when_timestamp", when_of(string_at(commit, {"timestamp"}))},
           {"branch", *branch},
           {"revlink", string_at(commit, {"url"})},
           {"repository", string_at(p, {"repository", "url"})},
           {"project", project.value_or(string_at(p, {"repository", "name"}))},
           {"category", event},
           {"properties", {{"event", event}}}});
    }
    return out;
  }
  if (event == "merge_request") {
    const json attrs = p.value("object_attributes", json::object());
    const std::string state = string_at(attrs, {"state"}), action = string_at(attrs, {"action"});
    if (state == "closed" || state == "merged" || state == "approved") return out;
    if (action != "open" && action != "reopen" && !(action == "update" && attrs.contains("oldrev"))) {
      return out;
    }
    const json commit = attrs.value("last_commit", json::object());
    const int64_t iid = attrs.value("iid", int64_t{0});
    out.changes.push_back(
        {{"author", person(commit.value("author", json::object()))},
         {"files", json::array()},
         {"comments", "MR#" + std::to_string(iid) + ": " + string_at(attrs, {"title"}) + "\n\n" +
                          string_at(attrs, {"description"})},
         {"revision", string_at(commit, {"id"})},
         {"when_timestamp", when_of(string_at(commit, {"timestamp"}))},
         {"branch", string_at(attrs, {"target_branch"})},
         {"repository", string_at(attrs, {"target", "git_http_url"})},
         {"project", project.value_or(string_at(attrs, {"target", "name"}))},
         {"category", event},
         {"revlink", string_at(attrs, {"url"})},
         {"properties", {{"event", event},
                         {"source_branch", string_at(attrs, {"source_branch"})},
                         {"source_repository", string_at(attrs, {"source", "git_http_url"})},
                         {"target_branch", string_at(attrs, {"target_branch"})},
                         {"target_repository", string_at(attrs, {"target", "git_http_url"})}}}});
    return out;
  }
  // Buildbot ignores other events (notes without a merge request, ...).
  return out;
}

// ?codebase= or the dialect's codebase, on every change.
void set_codebase(HookOutcome& out, const HookDialect& dialect, const Request& request) {
  std::optional<std::string> codebase = query_value(request, "codebase");
  if (!codebase && !dialect.codebase.empty()) codebase = dialect.codebase;
  if (codebase) {
    for (auto& change : out.changes) change["codebase"] = *codebase;
  }
}

}  // namespace

sdk::Result<HookDialects> parse_hook_dialects(const json& config) {
  HookDialects out;
  const json dialects = config.value("change_hook_dialects", json::object());
  if (!dialects.is_object()) {
    return sdk::invalid_config("change_hook_dialects: a mapping of dialect: options");
  }
  for (const auto& [name, options] : dialects.items()) {
    const std::string where = "change_hook_dialects." + name;
    const bool builtin = name == "base" || name == "github" || name == "gitlab";
    if (!builtin && (!options.is_object() || !options.value("policy", json()).is_string())) {
      return sdk::invalid_config(where + ": not a dialect of the web plugin (base, github, gitlab); "
                                 "a plugin's dialect names its change_hook policy: {policy: NAME}");
    }
    if (options.is_boolean()) {
      if (options.get<bool>()) out[name] = {};
      continue;
    }
    if (!options.is_object()) {
      return sdk::invalid_config(where + ": true, or a mapping of options");
    }
    HookDialect d;
    for (const auto& [key, value] : options.items()) {
      const bool known = key == "codebase" ||
                         (key == "secret" && (name == "github" || name == "gitlab")) ||
                         (key == "policy" && !builtin);
      if (!known) {
        return sdk::invalid_config(where + ": unknown option '" + key + "' (" +
                                   (name == "base" ? "codebase"
                                    : builtin      ? "secret, codebase"
                                                   : "policy, codebase") +
                                   ")");
      }
      if (!value.is_string() || (key == "policy" && value.get<std::string>().empty())) {
        return sdk::invalid_config(where + "." + key + ": a string");
      }
      (key == "secret" ? d.secret : key == "codebase" ? d.codebase : d.policy) =
          value.get<std::string>();
    }
    out[name] = std::move(d);
  }
  return out;
}

HookOutcome parse_change_hook(const HookDialects& dialects, std::string_view dialect,
                              const Request& request) {
  auto it = dialects.find(std::string(dialect));
  if (it == dialects.end()) {
    return refuse(404, "no change hook dialect '" + std::string(dialect) + "' is enabled");
  }
  if (request.method != "POST") return refuse(405, "change hooks take a POST");
  HookOutcome out = dialect == "base"     ? base_hook(request)
                    : dialect == "github" ? github_hook(it->second, request)
                                          : gitlab_hook(it->second, request);
  set_codebase(out, it->second, request);
  return out;
}

json policy_hook_args(std::string_view dialect, const Request& request) {
  json headers = json::object();
  for (const auto& [name, value] : request.headers) {
    if (!headers.contains(name)) headers[name] = value;
  }
  json args = {{"dialect", dialect},     {"method", request.method}, {"path", request.path},
               {"query", request.query},  {"headers", std::move(headers)}};
  // JSON text must be UTF-8: any other body goes as base64.
  try {
    (void)json(request.body).dump();
    args["body"] = request.body;
  } catch (const json::exception&) {
    args["body_base64"] = sdk::base64_encode(request.body);
  }
  return args;
}

HookOutcome policy_hook_outcome(const HookDialects& dialects, std::string_view dialect,
                                const Request& request, kiln_status status, const json& answer,
                                const std::string& error) {
  if (status != KILN_OK) {
    return refuse(500, "change_hook policy of dialect '" + std::string(dialect) + "': " + error);
  }
  HookOutcome out;
  if (answer.is_object() && answer.contains("error")) {
    const json code = answer.value("status", json(400));
    const int64_t status_code = code.is_number_integer() ? code.get<int64_t>() : 400;
    out.status = status_code >= 400 && status_code <= 599 ? static_cast<unsigned>(status_code) : 400;
    out.error = answer["error"].is_string() ? answer["error"].get<std::string>() : answer["error"].dump();
    return out;
  }
  const json list = answer.is_object() ? answer.value("changes", json()) : answer;
  if (!list.is_array()) {
    return refuse(500, "the change_hook policy of dialect '" + std::string(dialect) +
                           "' answered neither a list of changes nor {status, error}");
  }
  for (const auto& change : list) {
    if (!change.is_object()) return refuse(500, "the change_hook policy answered a change that is no object");
    out.changes.push_back(change);
  }
  set_codebase(out, dialects.at(std::string(dialect)), request);
  return out;
}

int64_t parse_iso8601(std::string_view text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  size_t used = 0;
  const std::string s(text);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%zn", &year, &month, &day, &hour, &minute,
                  &second, &used) != 6 ||
      month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return -1;
  }
  std::string_view rest = text.substr(used);
  if (rest.starts_with('.')) {
    rest.remove_prefix(1);
    while (!rest.empty() && rest.front() >= '0' && rest.front() <= '9') rest.remove_prefix(1);
  }
  int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &oh, &om) != 2) return -1;
    offset = (oh * 3600 + om * 60) * (rest[0] == '-' ? -1 : 1);
  } else {
    return -1;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

}  // namespace kiln::web
