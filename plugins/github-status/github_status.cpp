// kiln-github-status: Buildbot's GitHubStatusPush as reporter type
// `github-status`. When a build starts it sets a `pending` commit status on
// every revision the build's source stamps name, and when it finishes
// `success`, `failure` or `error`, through GitHub's REST API:
//   POST {base_url}/repos/{owner}/{repo}/statuses/{sha}
//   Authorization: token <token>
//   {"state", "target_url", "description", "context"}
// The owner and repository come from each source stamp's repository URL
// (https://github.com/o/r.git, git@github.com:o/r.git, ssh://...), or its
// project when that reads "owner/repo". Requests go out on sdk::Delivery's
// thread with retries and backoff; a status older than the last one sent
// for the same commit and context is dropped, so a retried `pending` never
// lands on top of the final result.

#include "http_post.h"

#include <kiln/sdk/notifier.hpp>
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kiln::github_status {
namespace {

namespace sdk = kiln::sdk;
using http_push::HttpPoster;
using http_push::PostOutcome;
using http_push::PostRequest;
using http_push::Url;
using nlohmann::json;

constexpr const char* kDefaultContext = "buildbot/%(prop:buildername)s";
constexpr const char* kDefaultStart = "Build started.";
constexpr const char* kDefaultEnd = "Build done.";

constexpr const char* kSchema = R"json({"type": "object", "additionalProperties": false,
  "required": ["token"], "properties": {
    "token": {"type": "string", "minLength": 1,
      "description": "A GitHub token allowed to write commit statuses (repo:status); use ${env:...} or ${file:...}"},
    "base_url": {"type": "string", "minLength": 8, "default": "https://api.github.com",
      "description": "The API's root: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise"},
    "context": {"type": "string", "minLength": 1, "default": "buildbot/%(prop:buildername)s",
      "description": "The status's context (its name on the commit), a template with the notifier fields"},
    "start_description": {"type": "string", "default": "Build started.",
      "description": "The description of the pending status set when a build starts (a template)"},
    "end_description": {"type": "string", "default": "Build done.",
      "description": "The description of the status set when a build finishes (a template)"},
    "builders": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only builds of these builders (empty: every builder). Use builders or tags, not both"},
    "tags": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only builds of builders with one of these tags"},
    "retry_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
      "description": "Attempts per status before it is dropped (with an error in the log)"},
    "retry_delay": {"type": "number", "minimum": 0, "default": 30,
      "description": "Seconds before the first retry; each next retry waits twice as long, at most an hour"},
    "timeout": {"type": "number", "minimum": 0.1, "maximum": 3600, "default": 30,
      "description": "Seconds a request may take before it counts as failed"},
    "tls_verify": {"type": "boolean", "default": true, "description": "Check the server's certificate and name"},
    "tls_ca_file": {"type": ["string", "null"], "default": null,
      "description": "PEM file of the certificates to trust instead of the system's (relative to the master folder)"}
  }})json";

sdk::MessageTemplate field_template(const std::string& text) {
  return sdk::MessageTemplate(text, sdk::notifier::report_fields());
}

// Buildbot's mapping of results to commit states; RETRY builds run again,
// so their commit is still pending.
const char* state_of(const json& results) {
  if (!results.is_number_integer()) return "error";
  switch (results.get<int>()) {
    case KILN_SUCCESS:
    case KILN_WARNINGS:
    case KILN_SKIPPED:
      return "success";
    case KILN_FAILURE:
      return "failure";
    case KILN_RETRY:
      return "pending";
    default:
      return "error";
  }
}

bool repo_word(const std::string& word) {
  return !word.empty() && word != "." && word != ".." &&
         word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") ==
             std::string::npos;
}

struct RepoId {
  std::string owner, name;
};

// The last two parts of a repository URL's path: https://github.com/o/r(.git),
// http://, git://, ssh://git@github.com[:port]/o/r.git, git@github.com:o/r.git,
// and the same on a GitHub Enterprise host. Local paths and file:// name no
// GitHub repository.
std::optional<RepoId> repo_of_url(const std::string& url) {
  std::string path;
  if (const size_t scheme = url.find("://"); scheme != std::string::npos) {
    if (url.compare(0, scheme, "file") == 0) return std::nullopt;
    const size_t slash = url.find('/', scheme + 3);
    if (slash == std::string::npos) return std::nullopt;
    path = url.substr(slash + 1);
  } else if (const size_t colon = url.find(':'); colon != std::string::npos && colon > 0 && url.find('/') > colon) {
    path = url.substr(colon + 1);  // scp-like user@host:owner/repo
  } else {
    return std::nullopt;
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".git") == 0) path.resize(path.size() - 4);
  std::vector<std::string> parts;
  for (size_t begin = 0; begin <= path.size();) {
    size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    if (end > begin) parts.push_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  if (parts.size() < 2) return std::nullopt;
  RepoId id{parts[parts.size() - 2], parts.back()};
  if (!repo_word(id.owner) || !repo_word(id.name)) return std::nullopt;
  return id;
}

// The repository of a source stamp: its URL, else a project "owner/repo".
std::optional<RepoId> repo_of(const json& sourcestamp) {
  if (auto id = repo_of_url(sourcestamp.value("repository", std::string()))) return id;
  const json project = sourcestamp.value("project", json());
  if (project.is_string()) {
    const std::string p = project.get<std::string>();
    const size_t slash = p.find('/');
    if (slash != std::string::npos && p.find('/', slash + 1) == std::string::npos) {
      RepoId id{p.substr(0, slash), p.substr(slash + 1)};
      if (repo_word(id.owner) && repo_word(id.name)) return id;
    }
  }
  return std::nullopt;
}

std::string path_encoded(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
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

// GitHub refuses descriptions over 140 characters; cut at a character
// boundary (UTF-8 continuation bytes are 10xxxxxx).
std::string description_cut(std::string text) {
  size_t characters = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (++characters > 140) {
      text.resize(i);
      break;
    }
  }
  return text;
}

// One commit status to send. `key` names the commit and context; `order`
// is the place of the build event it reports among all events seen.
struct StatusPost {
  PostRequest request;
  std::string key;
  uint64_t order = 0;
};

// What was sent last per commit and context, so that a status older than
// one GitHub already has (a `pending` retried after the final result went
// out, or read after it) is not sent on top of it. Delivery thread.
class SentOrder {
 public:
  bool outdated(const StatusPost& post) const {
    std::lock_guard lock(mutex_);
    auto it = sent_.find(post.key);
    return it != sent_.end() && it->second > post.order;
  }
  void sent(const StatusPost& post) {
    std::lock_guard lock(mutex_);
    uint64_t& last = sent_[post.key];
    last = std::max(last, post.order);
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, uint64_t> sent_;
};

sdk::Status send_status(HttpPoster& poster, SentOrder& sent, const StatusPost& post) {
  if (sent.outdated(post)) return {};
  PostOutcome outcome = poster.post(post.request);
  if (outcome.ok()) {
    sent.sent(post);
    return {};
  }
  // A request GitHub rejects (a bad token, an unknown commit or repository,
  // a malformed body) stays rejected; rate limits and server errors pass.
  const bool rate_limited =
      outcome.status == 429 || (outcome.status == 403 && outcome.error.find("rate limit") != std::string::npos);
  if (outcome.status >= 400 && outcome.status < 500 && outcome.status != 408 && !rate_limited) {
    return {KILN_ERR_REFUSED, outcome.error};
  }
  return {KILN_ERR_RETRY, outcome.error};
}

class GitHubStatusPush : public sdk::Reporter {
 public:
  GitHubStatusPush(sdk::Context ctx, const json& config)
      : Reporter(std::move(ctx), config),
        filter_(sdk::NotifierOptions::from_config(this->config())),
        status_context_(field_template(this->config().value("context", std::string(kDefaultContext)))),
        start_description_(field_template(this->config().value("start_description", std::string(kDefaultStart)))),
        end_description_(field_template(this->config().value("end_description", std::string(kDefaultEnd)))) {
    const json& c = this->config();
    std::string error;
    std::string base = c.value("base_url", std::string("https://api.github.com"));
    while (!base.empty() && base.back() == '/') base.pop_back();
    request_.url = Url::parse(base, error);
    base_target_ = request_.url.target == "/" ? "" : request_.url.target;
    request_.content_type = "application/json";
    request_.timeout_s = c.value("timeout", 30.0);
    request_.tls_verify = c.value("tls_verify", true);
    request_.headers = {{"Authorization", "token " + c.at("token").get<std::string>()},
                        {"Accept", "application/vnd.github+json"},
                        {"User-Agent", "Kiln"}};
  }
  ~GitHubStatusPush() override { stop(); }

  static sdk::Status validate(const json& c) {
    if (auto s = sdk::NotifierOptions::check(c); !s.ok()) return s;
    std::string error;
    const std::string base = c.value("base_url", std::string("https://api.github.com"));
    const Url url = Url::parse(base, error);
    if (!error.empty()) return {KILN_ERR_INVALID_CONFIG, "base_url: " + error};
    if (url.target.find_first_of("?#") != std::string::npos) {
      return {KILN_ERR_INVALID_CONFIG, "base_url: '" + base + "' has a query or fragment; give the API's root"};
    }
    const std::string token = c.at("token").get<std::string>();
    if (token.find_first_of("\r\n ") != std::string::npos) {
      return {KILN_ERR_INVALID_CONFIG, "token: a token is one word (no spaces or line breaks)"};
    }
    for (const auto& [key, fallback] : {std::pair{"context", kDefaultContext}, std::pair{"start_description", kDefaultStart},
                                        std::pair{"end_description", kDefaultEnd}}) {
      try {
        field_template(c.value(key, std::string(fallback)));
      } catch (const sdk::TemplateError& e) {
        return {KILN_ERR_INVALID_CONFIG, std::string(key) + ": " + e.what()};
      }
    }
    return {};
  }

  sdk::Status start() override {
    auto info = context().info();
    if (info.ok()) {
      master_url_ = info->value("master_url", "");
      title_ = info->value("master_title", "");
    }
    const json& c = config();
    if (c.value("tls_ca_file", json()).is_string()) {
      request_.tls_ca_file = c["tls_ca_file"].get<std::string>();
      const std::string dir = info.ok() ? info->value("master_dir", "") : "";
      if (!request_.tls_ca_file.empty() && request_.tls_ca_file.front() != '/' && !dir.empty()) {
        request_.tls_ca_file = dir + "/" + request_.tls_ca_file;
      }
    }
    auto started = context().subscribe("builds/+/new", [this](std::string_view, const json& e) {
      on_build(e.value("buildid", int64_t{0}), false, ++events_);
    });
    if (!started.ok()) return started.status();
    auto finished = context().subscribe("builds/+/finished", [this](std::string_view, const json& e) {
      on_build(e.value("buildid", int64_t{0}), true, ++events_);
    });
    if (!finished.ok()) return finished.status();
    poster_ = std::make_shared<HttpPoster>();
    sent_ = std::make_shared<SentOrder>();
    delivery_ = std::make_unique<sdk::Delivery<StatusPost>>(
        context(),
        [poster = poster_, sent = sent_](const StatusPost& p) { return send_status(*poster, *sent, p); },
        c.value("retry_attempts", 5), c.value("retry_delay", 30.0), [poster = poster_] { poster->abort(); });
    return {};
  }

  void stop() override { delivery_.reset(); }

 private:
  void on_build(int64_t buildid, bool finished, uint64_t order) {
    sdk::notifier::BuildReader::Request r;
    r.buildid = buildid;
    r.log_lines = 0;  // the statuses say nothing of logs
    r.master_url = master_url_;
    r.title = title_;
    sdk::notifier::BuildReader::read(context(), r, [this, buildid, finished, order](sdk::Result<json> report) {
      if (!report.ok()) {
        context().warn("cannot set the commit status of build " + std::to_string(buildid) + ": " +
                       report.status().message());
        return;
      }
      if (!delivery_) return;
      if (!filter_.selects(report->value("builder", ""), report->value("tags", json::array()))) return;
      post_statuses(*report, finished, order);
    });
  }

  void post_statuses(const json& report, bool finished, uint64_t order) {
    const std::string what = report.value("builder", "") + " #" + report.value("number", json(0)).dump();
    const std::string state = finished ? state_of(report.value("results", json())) : "pending";
    json body = {{"state", state},
                 {"context", status_context_.render(report)},
                 {"description", description_cut((finished ? end_description_ : start_description_).render(report))}};
    if (!master_url_.empty()) body["target_url"] = report.value("build_url", "");
    const json stamps = report.value("sourcestamps", json::array());
    if (stamps.empty()) context().info("build " + what + " has no source stamp: no commit status to set");
    for (const auto& ss : stamps) {
      const std::string codebase = ss.value("codebase", "");
      const std::string named = codebase.empty() ? "its source stamp" : "codebase '" + codebase + "'";
      const json revision = ss.value("revision", json());
      if (!revision.is_string() || revision.get<std::string>().empty()) {
        context().info("no commit status for build " + what + ": " + named + " has no revision (it built the branch's head)");
        continue;
      }
      auto repo = repo_of(ss);
      if (!repo) {
        context().info("no commit status for build " + what + ": " + named + "'s repository '" +
                       ss.value("repository", "") + "' is not a GitHub repository URL (https://HOST/OWNER/REPO or git@HOST:OWNER/REPO)");
        continue;
      }
      const std::string sha = revision.get<std::string>();
      StatusPost post;
      post.request = request_;
      post.request.url.target = base_target_ + "/repos/" + repo->owner + "/" + repo->name + "/statuses/" + path_encoded(sha);
      post.request.body = body.dump();
      post.key = repo->owner + "/" + repo->name + "@" + sha + " " + body["context"].get<std::string>();
      post.order = order;
      delivery_->submit(std::move(post), state + " status of " + repo->owner + "/" + repo->name + "@" +
                                             sha.substr(0, 12) + " for build " + what);
    }
  }

  sdk::NotifierOptions filter_;
  sdk::MessageTemplate status_context_, start_description_, end_description_;
  PostRequest request_;
  std::string base_target_;
  std::string master_url_, title_;
  std::shared_ptr<HttpPoster> poster_;
  std::shared_ptr<SentOrder> sent_;
  uint64_t events_ = 0;
  std::unique_ptr<sdk::Delivery<StatusPost>> delivery_;
};

}  // namespace
}  // namespace kiln::github_status

KILN_PLUGIN("kiln-github-status", "0.1.0", "Sets GitHub commit statuses for builds (Buildbot's GitHubStatusPush)", "MIT",
            kiln::sdk::component<kiln::github_status::GitHubStatusPush>(
                KILN_KIND_REPORTER, "github-status", "0.1.0",
                "POSTs pending/success/failure/error commit statuses to GitHub's REST API",
                kiln::github_status::kSchema));
