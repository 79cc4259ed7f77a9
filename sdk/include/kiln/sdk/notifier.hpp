#pragma once
// kiln::sdk::Notifier: what every notifier (mail, chat, push) shares, on top
// of sdk::Reporter, so a third-party notifier plugin writes only its
// delivery. It owns:
//  - the common settings (KILN_NOTIFIER_SCHEMA_PROPERTIES, NotifierOptions):
//    builders/tags filters, the modes (all, change, failing, warnings,
//    passing, problem, exception) judged against the builder's previous
//    finished build, the address lookup, the template file, retries;
//  - reading a finished build through the data API into a report: the JSON
//    context templates render (builder, result, URLs, reason, worker,
//    source stamps with patches, blamelist, changes with files, steps, log
//    tails, properties), plus the interested users' addresses;
//  - Delivery<M>: a queue drained by a thread of its own, so sending never
//    blocks the engine's loop, with retries and backoff scheduled on the
//    master's clock, and every failure logged.
// Header-only; the plugin ABI, the SDK and nlohmann/json are all it needs.

#include <kiln/sdk/components.hpp>
#include <kiln/sdk/message_template.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

// The settings every notifier has, as JSON Schema "properties" members to
// splice into a component's schema literal:
//   R"({"type": "object", "additionalProperties": false, "properties": {)"
//   KILN_NOTIFIER_SCHEMA_PROPERTIES R"(, "webhook": {...}}})"
#define KILN_NOTIFIER_SCHEMA_PROPERTIES \
  R"~("mode": {"type": ["string", "array"], "items": {"type": "string", "enum": ["all", "change", "failing", "warnings", "passing", "problem", "exception"]}, "default": "all", )~" \
  R"~("description": "Which finished builds notify, judged against the builder's previous finished build: all, change (result differs), failing, warnings (warnings or failure), passing, problem (failure after a non-failure), exception; or a list of them"}, )~" \
  R"~("builders": {"type": "array", "items": {"type": "string"}, "default": [], )~" \
  R"~("description": "Only builds of these builders (empty: every builder). Use builders or tags, not both"}, )~" \
  R"~("tags": {"type": "array", "items": {"type": "string"}, "default": [], )~" \
  R"~("description": "Only builds of builders with one of these tags (Buildbot's categories)"}, )~" \
  R"~("lookup": {"type": ["string", "null"], "default": null, )~" \
  R"~("description": "Domain appended to user names that are not addresses (Buildbot's lookup='example.org'). Without it and without lookup_policy, addresses come from user objects (an email attribute, or an address in the author)"}, )~" \
  R"~("lookup_policy": {"type": ["string", "null"], "default": null, )~" \
  R"~("description": "Name of an email_lookup policy that maps a change author (and owners) to an address"}, )~" \
  R"~("log_lines": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 40, )~" \
  R"~("description": "How many of the last lines of each log the message templates get"}, )~" \
  R"~("template": {"type": ["string", "null"], "default": null, )~" \
  R"~("description": "The message body template itself; \"${file:templates/body.txt}\" reads it from a file when the configuration is read, so kiln checkconfig checks its fields. Not with template_file"}, )~" \
  R"~("template_file": {"type": ["string", "null"], "default": null, )~" \
  R"~("description": "The message body template, a file relative to the master folder (replaces the built-in one)"}, )~" \
  R"~("template_type": {"type": "string", "enum": ["plain", "html"], "default": "plain", )~" \
  R"~("description": "Whether template_file is plain text or HTML (HTML escapes the fields it prints)"}, )~" \
  R"~("message_formatter": {"type": ["string", "null"], "default": null, )~" \
  R"~("description": "Name of a message_formatter policy that writes the message instead of the templates"}, )~" \
  R"~("buildset_summary": {"type": "boolean", "default": false, )~" \
  R"~("description": "One message per buildset, when it completes, covering all its builds"}, )~" \
  R"~("retry_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5, )~" \
  R"~("description": "Delivery attempts per message before it is dropped (with an error in the log)"}, )~" \
  R"~("retry_delay": {"type": "number", "minimum": 0, "default": 30, )~" \
  R"~("description": "Seconds before the first retry; each next retry waits twice as long, at most an hour"} )~"

namespace kiln::sdk {

namespace notifier {

inline const nlohmann::json& message_fields();

inline const char* result_name(int results) {
  static const char* const kNames[] = {"success", "warnings", "failure", "skipped",
                                       "exception", "retry", "cancelled"};
  return results >= 0 && results <= 6 ? kNames[results] : "unknown";
}

// Whether one mode wants a build whose result is `results`, given the
// previous finished build's result (none for a builder's first build).
// Buildbot 0.8.5: a first build counts as a change, and as a problem when
// it fails.
inline bool mode_wants(std::string_view mode, int results, std::optional<int> previous) {
  if (mode == "all") return true;
  if (mode == "failing") return results == KILN_FAILURE;
  if (mode == "warnings") return results == KILN_WARNINGS || results == KILN_FAILURE;
  if (mode == "passing") return results == KILN_SUCCESS;
  if (mode == "exception") return results == KILN_EXCEPTION;
  if (mode == "change") return !previous || *previous != results;
  if (mode == "problem") return results == KILN_FAILURE && (!previous || *previous != KILN_FAILURE);
  return false;
}

// Buildbot's "status detected" words for the default messages.
inline std::string detected_status(int results, std::optional<int> previous) {
  if (results == KILN_FAILURE) {
    return previous && *previous != KILN_FAILURE ? "new failure" : "failed build";
  }
  if (results == KILN_SUCCESS) {
    return previous && *previous == KILN_FAILURE ? "restored build" : "passing build";
  }
  if (results == KILN_WARNINGS) return "build with warnings";
  if (results == KILN_EXCEPTION) return "build exception";
  return std::string(result_name(results)) + " build";
}

// "Ann <ann@example.org>" -> "ann@example.org"; "ann@example.org" as is;
// nothing when the text holds no address.
inline std::optional<std::string> address_in(std::string_view text) {
  const size_t open = text.rfind('<');
  const size_t close = text.rfind('>');
  if (open != std::string_view::npos && close != std::string_view::npos && close > open + 1) {
    std::string inner(text.substr(open + 1, close - open - 1));
    if (inner.find('@') != std::string::npos) return inner;
  }
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.find('@') != std::string_view::npos &&
      std::none_of(text.begin(), text.end(), [&](char c) { return is_space(c) || c == '<' || c == '>'; })) {
    return std::string(text);
  }
  return std::nullopt;
}

}  // namespace notifier

// The common settings, read from a validated config (defaults filled in).
struct NotifierOptions {
  std::vector<std::string> modes;
  std::set<std::string> builders;
  std::set<std::string> tags;
  std::string lookup_domain;
  std::string lookup_policy;
  int log_lines = 40;
  std::string template_text;  // `template`, when given
  std::string template_file;
  bool template_html = false;
  std::string message_formatter;
  bool buildset_summary = false;
  int retry_attempts = 5;
  double retry_delay_s = 30;

  static NotifierOptions from_config(const nlohmann::json& config) {
    NotifierOptions o;
    const nlohmann::json mode = config.value("mode", nlohmann::json("all"));
    if (mode.is_string()) {
      o.modes.push_back(mode.get<std::string>());
    } else if (mode.is_array()) {
      for (const auto& m : mode) o.modes.push_back(m.get<std::string>());
    }
    for (const auto& b : config.value("builders", nlohmann::json::array())) o.builders.insert(b.get<std::string>());
    for (const auto& t : config.value("tags", nlohmann::json::array())) o.tags.insert(t.get<std::string>());
    auto text = [&](const char* key) {
      auto it = config.find(key);
      return it != config.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    o.lookup_domain = text("lookup");
    o.lookup_policy = text("lookup_policy");
    o.template_text = text("template");
    o.template_file = text("template_file");
    o.template_html = text("template_type") == "html";
    o.message_formatter = text("message_formatter");
    o.log_lines = config.value("log_lines", 40);
    o.buildset_summary = config.value("buildset_summary", false);
    o.retry_attempts = config.value("retry_attempts", 5);
    o.retry_delay_s = config.value("retry_delay", 30.0);
    return o;
  }

  // Checks the schema cannot express; call from the component's validate().
  static Status check(const nlohmann::json& config) {
    NotifierOptions o = from_config(config);
    if (!o.builders.empty() && !o.tags.empty()) {
      return Status(KILN_ERR_INVALID_CONFIG, "give builders or tags, not both");
    }
    if (config.value("template", nlohmann::json()).is_string() && !o.template_file.empty()) {
      return Status(KILN_ERR_INVALID_CONFIG, "give template or template_file, not both");
    }
    if (config.value("template", nlohmann::json()).is_string()) {
      try {
        MessageTemplate(o.template_text, notifier::message_fields(),
                        o.template_html ? MessageTemplate::Escape::kHtml : MessageTemplate::Escape::kNone);
      } catch (const TemplateError& e) {
        return Status(KILN_ERR_INVALID_CONFIG, std::string("template: ") + e.what());
      }
    }
    if (!o.lookup_domain.empty() && !o.lookup_policy.empty()) {
      return Status(KILN_ERR_INVALID_CONFIG, "give lookup or lookup_policy, not both");
    }
    if (config.contains("mode") && config["mode"].is_array() && o.modes.empty()) {
      return Status(KILN_ERR_INVALID_CONFIG, "mode: the list names no mode");
    }
    for (const auto& m : o.modes) {
      static const std::set<std::string> kModes = {"all",     "change",  "failing",  "warnings",
                                                   "passing", "problem", "exception"};
      if (kModes.count(m) == 0) {
        return Status(KILN_ERR_INVALID_CONFIG, "mode: unknown mode '" + m +
                                                   "' (all, change, failing, warnings, passing, problem, exception)");
      }
    }
    if (!o.lookup_domain.empty() &&
        (o.lookup_domain.find('@') != std::string::npos || o.lookup_domain.find(' ') != std::string::npos)) {
      return Status(KILN_ERR_INVALID_CONFIG,
                    "lookup: '" + o.lookup_domain + "' is not a domain (write example.org, not an address)");
    }
    return {};
  }

  bool selects(const std::string& builder, const nlohmann::json& builder_tags) const {
    if (!builders.empty()) return builders.count(builder) > 0;
    if (!tags.empty()) {
      for (const auto& t : builder_tags) {
        if (t.is_string() && tags.count(t.get<std::string>()) > 0) return true;
      }
      return false;
    }
    return true;
  }

  // The first mode that wants the build, or empty.
  std::string wanted_by(int results, std::optional<int> previous) const {
    for (const auto& m : modes) {
      if (notifier::mode_wants(m, results, previous)) return m;
    }
    return {};
  }
};

namespace notifier {

// The fields of a build report (NotifierBuild::report), in the shape
// MessageTemplate checks templates against.
inline const nlohmann::json& report_fields() {
  static const nlohmann::json fields = [] {
    nlohmann::json any_map = {{"*", ""}};
    nlohmann::json patch = {{"level", ""}, {"body", ""}, {"subdir", ""}, {"author", ""}, {"comment", ""}};
    nlohmann::json sourcestamp = {{"codebase", ""}, {"repository", ""}, {"project", ""}, {"branch", ""},
                                  {"revision", ""}, {"patch", patch}};
    nlohmann::json change = {{"changeid", ""}, {"author", ""}, {"committer", ""}, {"revision", ""},
                             {"branch", ""}, {"comments", ""}, {"files", nlohmann::json::array({""})},
                             {"repository", ""}, {"project", ""}, {"codebase", ""}, {"category", ""},
                             {"revlink", ""}, {"when", ""}};
    nlohmann::json step = {{"number", ""}, {"name", ""}, {"result", ""}, {"results", ""},
                           {"state_string", ""}, {"failed", ""}, {"url", ""}};
    nlohmann::json log = {{"step", ""}, {"step_number", ""}, {"step_result", ""}, {"name", ""},
                          {"slug", ""}, {"num_lines", ""}, {"url", ""}, {"tail", ""},
                          {"tail_lines", ""}, {"failed", ""}};
    nlohmann::json f = {{"title", ""}, {"master_url", ""}, {"builder", ""}, {"builderid", ""},
                        {"tags", nlohmann::json::array({""})}, {"number", ""}, {"buildid", ""},
                        {"build_url", ""}, {"result", ""}, {"results", ""}, {"previous_result", ""},
                        {"status_detected", ""}, {"mode", ""}, {"state_string", ""}, {"reason", ""},
                        {"worker", ""}, {"started_at", ""}, {"complete_at", ""}, {"duration", ""},
                        {"branch", ""}, {"revision", ""}, {"patch", patch},
                        {"sourcestamps", nlohmann::json::array({sourcestamp})},
                        {"blamelist", nlohmann::json::array({""})}, {"changes", nlohmann::json::array({change})},
                        {"steps", nlohmann::json::array({step})}, {"logs", nlohmann::json::array({log})},
                        {"failed_logs", nlohmann::json::array({log})},
                        {"properties", any_map}, {"prop", any_map},
                        {"interested", nlohmann::json::array({""})}, {"bsid", ""}};
    return f;
  }();
  return fields;
}

// The fields of a message's context: a build report's, plus "builds" (the
// reports of every build of the buildset, for buildset_summary) and
// "buildset_result".
inline const nlohmann::json& message_fields() {
  static const nlohmann::json fields = [] {
    nlohmann::json f = report_fields();
    f["builds"] = nlohmann::json::array({report_fields()});
    f["buildset_result"] = "";
    return f;
  }();
  return fields;
}

inline const char* default_text_template() {
  return R"({{#builds}}
The Buildbot has detected a {{status_detected}} on builder {{builder}}.
Full details are available at:
    {{build_url}}

Build state: {{state_string}}
Worker: {{worker}}
Build Reason: {{reason}}
{{#sourcestamps}}
Build Source Stamp: {{#branch}}[branch {{branch}}] {{/branch}}{{#revision}}{{revision}}{{/revision}}{{^revision}}HEAD{{/revision}}{{#patch}} (plus patch){{/patch}}
{{/sourcestamps}}
Blamelist: {{blamelist}}

Steps:
{{#steps}}
- {{number}}: {{name}} ( {{result}} ) {{state_string}}
{{/steps}}
{{#changes}}

Change {{changeid}} by {{author}}{{#revision}} (revision {{revision}}){{/revision}}:
{{comments}}
{{#files}}
    {{.}}
{{/files}}
{{/changes}}
{{#failed_logs}}

Last {{tail_lines}} lines of {{step}}.{{name}} ({{url}}):
{{tail}}
{{/failed_logs}}

{{/builds}}
Sincerely,
 -The Buildbot
)";
}

inline const char* default_html_template() {
  return R"(<html><body>
{{#builds}}
<h4>Build status: {{result}}</h4>
<p>The Buildbot has detected a {{status_detected}} on builder <b>{{builder}}</b>:
<a href="{{build_url}}">{{build_url}}</a></p>
<table cellspacing="10">
<tr><td>Worker:</td><td>{{worker}}</td></tr>
<tr><td>Build Reason:</td><td>{{reason}}</td></tr>
<tr><td>Branch / revision:</td><td>{{branch}} {{revision}}</td></tr>
<tr><td>Blamelist:</td><td>{{blamelist}}</td></tr>
</table>
<ul>
{{#steps}}
<li>{{number}}: {{name}} ({{result}}) {{state_string}}</li>
{{/steps}}
</ul>
{{#failed_logs}}
<h4>Last {{tail_lines}} lines of "{{step}}.{{name}}"</h4>
<pre>{{tail}}</pre>
{{/failed_logs}}
{{/builds}}
<p><b>-The Buildbot</b></p>
</body></html>
)";
}

// The output lines of a stored stdio log (each starts with its stream
// letter 'o', 'e' or 'h'), without the letters and without the header
// lines (the command, its environment, the exit code), which would fill a
// short tail with the environment.
inline std::string output_lines(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    if (end > pos + 1 && text[pos] != 'h') out.append(text.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  return out;
}

}  // namespace notifier

// What a notifier gets for each message: the context for its templates
// (the reports, `fields`), the addresses of the interested users, and the
// logs it asked to attach (NotifierBuild::attach_logs).
struct NotifierMessage {
  struct Attachment {
    std::string filename;
    std::string content_type;
    std::string content;
  };
  nlohmann::json context;                // notifier::message_fields()
  std::vector<std::string> interested;   // addresses, sorted, unique
  std::vector<Attachment> logs;          // add_logs
  std::vector<Attachment> patches;       // the source stamps' patches
  std::string mode;                      // the mode that wanted it
  int results = KILN_SUCCESS;            // the build's (the buildset's for a summary)
};

namespace notifier {

// Reads one finished build through the data API into a report. Loop
// thread only; done(report or failure) once.
class BuildReader : public std::enable_shared_from_this<BuildReader> {
 public:
  struct Request {
    int64_t buildid = 0;
    int log_lines = 40;
    // Which logs to fetch whole: all, or those named "log" or "step.log".
    bool all_logs = false;
    std::set<std::string> log_names;
    std::string master_url;
    std::string title;
  };
  // The report (report_fields() plus "_logs": the fetched logs' contents
  // as [{"step", "name", "type", "content"}], and "_user_attributes": the
  // change authors' user attributes {author: {attr: value}}).
  using Done = std::function<void(Result<nlohmann::json>)>;

  static void read(const Context& ctx, Request request, Done done) {
    auto reader = std::shared_ptr<BuildReader>(new BuildReader(ctx, std::move(request), std::move(done)));
    reader->start();
  }

 private:
  BuildReader(const Context& ctx, Request request, Done done)
      : ctx_(ctx), request_(std::move(request)), done_(std::move(done)) {}

  // Issues a data_get whose answer `use` folds into the report; when the
  // last outstanding answer is in, the report is done.
  void get(const std::string& path, const nlohmann::json& query,
           std::function<void(nlohmann::json)> use) {
    ++pending_;
    auto self = shared_from_this();
    Status s = ctx_.data_get(path, query, [self, path, use = std::move(use)](Result<nlohmann::json> r) {
      if (!r.ok()) {
        self->fail("reading " + path + ": " + r.status().message());
      } else if (!self->failed_) {
        try {
          use(std::move(*r));
        } catch (const std::exception& e) {
          self->fail("reading " + path + ": " + e.what());
        }
      }
      self->settle();
    });
    if (!s.ok()) {
      fail("reading " + path + ": " + s.message());
      settle();
    }
  }

  void fail(std::string message) {
    if (!failed_) error_ = std::move(message);
    failed_ = true;
  }

  void settle() {
    if (--pending_ > 0) return;
    if (failed_) return done_(Status(KILN_ERR_NOT_FOUND, error_));
    finish();
  }

  void start() {
    ++pending_;  // held until the first answers have issued what follows them
    const std::string id = std::to_string(request_.buildid);
    get("builds/" + id, {{"property", {"*"}}}, [this](nlohmann::json build) { on_build(std::move(build)); });
    get("builds/" + id + "/changes", nullptr, [this](nlohmann::json changes) { on_changes(std::move(changes)); });
    get("builds/" + id + "/steps", nullptr, [this](nlohmann::json steps) { on_steps(std::move(steps)); });
    settle();
  }

  void on_build(nlohmann::json build) {
    auto& r = report_;
    r["buildid"] = build.at("buildid");
    r["number"] = build.at("number");
    r["builderid"] = build.at("builderid");
    r["results"] = build.value("results", nlohmann::json());
    r["result"] = build["results"].is_number() ? result_name(build["results"].get<int>()) : "unknown";
    r["state_string"] = build.value("state_string", "");
    r["started_at"] = build.value("started_at", nlohmann::json());
    r["complete_at"] = build.value("complete_at", nlohmann::json());
    r["duration"] = build["complete_at"].is_number() && build["started_at"].is_number()
                        ? nlohmann::json(build["complete_at"].get<int64_t>() - build["started_at"].get<int64_t>())
                        : nlohmann::json();
    r["master_url"] = request_.master_url;
    r["title"] = request_.title;
    nlohmann::json props = nlohmann::json::object();
    const nlohmann::json build_properties = build.value("properties", nlohmann::json::object());
    for (const auto& [name, pair] : build_properties.items()) {
      props[name] = pair.is_array() && !pair.empty() ? pair[0] : pair;
    }
    r["properties"] = props;
    r["prop"] = props;
    const int64_t builderid = build.at("builderid").get<int64_t>();
    r["build_url"] = request_.master_url + "#/builders/" + std::to_string(builderid) + "/builds/" +
                     build.at("number").dump();
    get("builders/" + std::to_string(builderid), nullptr, [this](nlohmann::json builder) {
      report_["builder"] = builder.value("name", "");
      report_["tags"] = builder.value("tags", nlohmann::json::array());
    });
    if (build.value("workerid", nlohmann::json()).is_number()) {
      get("workers/" + build["workerid"].dump(), nullptr,
          [this](nlohmann::json worker) { report_["worker"] = worker.value("name", ""); });
    }
    // The previous finished build of the builder; RETRY builds run again, so
    // they do not count.
    nlohmann::json query = {{"filters",
                             {{"number", "lt", {build.at("number")}},
                              {"complete", "eq", {true}},
                              {"results", "ne", {KILN_RETRY}}}},
                            {"order", {"-number"}},
                            {"limit", 1}};
    get("builders/" + std::to_string(builderid) + "/builds", query, [this](nlohmann::json previous) {
      report_["previous_result"] = nullptr;
      if (!previous.empty() && previous[0]["results"].is_number()) {
        report_["previous_results"] = previous[0]["results"];
        report_["previous_result"] = result_name(previous[0]["results"].get<int>());
      }
    });
    get("buildrequests/" + build.at("buildrequestid").dump(), nullptr, [this](nlohmann::json request) {
      report_["bsid"] = request.at("buildsetid");
      get("buildsets/" + request.at("buildsetid").dump(), nullptr,
          [this](nlohmann::json buildset) { on_buildset(std::move(buildset)); });
    });
  }

  void on_buildset(nlohmann::json buildset) {
    auto& r = report_;
    r["reason"] = buildset.value("reason", nlohmann::json(""));
    nlohmann::json stamps = nlohmann::json::array();
    for (const auto& ss : buildset.value("sourcestamps", nlohmann::json::array())) {
      nlohmann::json patch = ss.value("patch", nlohmann::json());
      stamps.push_back({{"codebase", ss.value("codebase", "")},
                        {"repository", ss.value("repository", "")},
                        {"project", ss.value("project", "")},
                        {"branch", ss.value("branch", nlohmann::json())},
                        {"revision", ss.value("revision", nlohmann::json())},
                        {"patch", patch}});
    }
    r["sourcestamps"] = stamps;
    r["branch"] = stamps.empty() ? nlohmann::json() : stamps[0]["branch"];
    r["revision"] = stamps.empty() ? nlohmann::json() : stamps[0]["revision"];
    r["patch"] = stamps.empty() ? nlohmann::json() : stamps[0]["patch"];
  }

  void on_changes(nlohmann::json changes) {
    nlohmann::json list = nlohmann::json::array();
    nlohmann::json blamelist = nlohmann::json::array();
    for (const auto& c : changes) {
      const std::string author = c.value("author", "");
      list.push_back({{"changeid", c.at("changeid")}, {"author", author},
                      {"committer", c.value("committer", nlohmann::json())},
                      {"revision", c.value("revision", nlohmann::json())},
                      {"branch", c.value("branch", nlohmann::json())}, {"comments", c.value("comments", "")},
                      {"files", c.value("files", nlohmann::json::array())},
                      {"repository", c.value("repository", "")}, {"project", c.value("project", "")},
                      {"codebase", c.value("codebase", "")}, {"category", c.value("category", nlohmann::json())},
                      {"revlink", c.value("revlink", nlohmann::json())},
                      {"when", c.value("when_timestamp", nlohmann::json())}});
      if (!author.empty() && std::find(blamelist.begin(), blamelist.end(), author) == blamelist.end()) {
        blamelist.push_back(author);
      }
      get("changes/" + c.at("changeid").dump() + "/users", nullptr, [this, author](nlohmann::json users) {
        for (const auto& u : users) {
          const nlohmann::json attributes = u.value("attributes", nlohmann::json::object());
          for (const auto& [type, value] : attributes.items()) {
            report_["_user_attributes"][author][type] = value;
          }
        }
      });
    }
    report_["changes"] = list;
    report_["blamelist"] = blamelist;
  }

  void on_steps(nlohmann::json steps) {
    report_["steps"] = nlohmann::json::array();
    report_["logs"] = nlohmann::json::array();
    for (const auto& s : steps) {
      const int results = s["results"].is_number() ? s["results"].get<int>() : KILN_SUCCESS;
      const bool failed = results != KILN_SUCCESS && results != KILN_SKIPPED && results != KILN_WARNINGS;
      report_["steps"].push_back({{"number", s.at("number")}, {"name", s.value("name", "")},
                                  {"results", s.value("results", nlohmann::json())},
                                  {"result", result_name(results)},
                                  {"state_string", s.value("state_string", "")}, {"failed", failed}});
      const size_t index = report_["steps"].size() - 1;
      get("steps/" + s.at("stepid").dump() + "/logs", nullptr,
          [this, index](nlohmann::json logs) { on_logs(index, std::move(logs)); });
    }
  }

  void on_logs(size_t step_index, nlohmann::json logs) {
    const nlohmann::json& step = report_["steps"][step_index];
    for (const auto& l : logs) {
      const std::string name = l.value("name", "");
      const std::string slug = l.value("slug", name);
      const std::string type = l.value("type", "s");
      const int64_t num_lines = l.value("num_lines", int64_t{0});
      nlohmann::json entry = {{"step", step["name"]}, {"step_number", step["number"]},
                              {"step_result", step["result"]}, {"failed", step["failed"]},
                              {"name", name}, {"slug", slug}, {"num_lines", num_lines},
                              {"tail", ""}, {"tail_lines", 0}, {"_logid", l.at("logid")},
                              {"_type", type}};
      report_["logs"].push_back(entry);
      const size_t index = report_["logs"].size() - 1;
      const std::string logid = l.at("logid").dump();
      if (request_.log_lines > 0 && num_lines > 0 && type != "h") {
        const int64_t first = std::max<int64_t>(0, num_lines - request_.log_lines);
        get("logs/" + logid + "/contents", {{"offset", first}, {"limit", request_.log_lines}},
            [this, index, type](nlohmann::json contents) {
              std::string text = contents.value("content", "");
              if (type == "s") text = output_lines(text);
              while (!text.empty() && text.back() == '\n') text.pop_back();
              auto& log = report_["logs"][index];
              log["tail"] = text;
              log["tail_lines"] = text.empty() ? 0 : std::count(text.begin(), text.end(), '\n') + 1;
            });
      }
      const std::string step_name = step["name"].get<std::string>();
      if (request_.all_logs || request_.log_names.count(name) || request_.log_names.count(step_name + "." + name)) {
        get("logs/" + logid + "/raw", nullptr, [this, step_name, name, type](nlohmann::json raw) {
          report_["_logs"].push_back(
              {{"step", step_name}, {"name", name}, {"type", type}, {"content", raw.value("content", "")}});
        });
      }
    }
  }

  void finish() {
    auto& r = report_;
    // Step order as the build ran; logs as their steps.
    std::string url = r.value("build_url", "");
    for (auto& log : r["logs"]) {
      log["url"] = url + "/steps/" + log["step_number"].dump() + "/logs/" + log["slug"].get<std::string>();
    }
    for (auto& step : r["steps"]) step["url"] = url + "/steps/" + step["number"].dump();
    nlohmann::json failed_logs = nlohmann::json::array();
    for (const auto& log : r["logs"]) {
      if (log["failed"].get<bool>() && log["tail_lines"].get<int64_t>() > 0) failed_logs.push_back(log);
    }
    r["failed_logs"] = failed_logs;
    std::optional<int> previous;
    if (r.contains("previous_results")) previous = r["previous_results"].get<int>();
    if (r["results"].is_number()) r["status_detected"] = detected_status(r["results"].get<int>(), previous);
    for (const char* key : {"builder", "worker", "reason"}) {
      if (!r.contains(key)) r[key] = "";
    }
    if (!r.contains("_logs")) r["_logs"] = nlohmann::json::array();
    if (!r.contains("_user_attributes")) r["_user_attributes"] = nlohmann::json::object();
    done_(std::move(report_));
  }

  Context ctx_;
  Request request_;
  Done done_;
  nlohmann::json report_ = nlohmann::json::object();
  int pending_ = 0;
  bool failed_ = false;
  std::string error_;
};

}  // namespace notifier

// A queue of messages delivered by a thread of its own, so that a slow or
// unreachable server never holds up the engine's loop. A failed attempt is
// retried after `retry_delay`, doubling up to an hour, on the master's
// clock (host timers), `attempts` times in all; failures are logged with
// the message's description. Create and submit on the loop thread.
template <class Message>
class Delivery {
 public:
  // Runs on the delivery thread; may block. An error Status means "try
  // again later" (its message is logged), KILN_ERR_REFUSED "this will
  // never work" (logged, not retried).
  using Send = std::function<Status(const Message&)>;
  // Called from the loop thread when the queue is being destroyed, to make
  // a blocked Send return early (close its socket, stop its io_context).
  using Abort = std::function<void()>;

  Delivery(Context ctx, Send send, int attempts, double retry_delay_s, Abort abort = {})
      : shared_(std::make_shared<Shared>()),
        ctx_(std::move(ctx)),
        attempts_(std::max(1, attempts)),
        retry_delay_ms_(static_cast<uint64_t>(std::max(0.0, retry_delay_s) * 1000)),
        abort_(std::move(abort)) {
    shared_->send = std::move(send);
    thread_ = std::thread([shared = shared_, ctx = ctx_] { run(shared, ctx); });
  }
  ~Delivery() {
    {
      std::lock_guard lock(shared_->mutex);
      shared_->stopping = true;
    }
    shared_->wake.notify_all();
    if (abort_) abort_();
    if (thread_.joinable()) thread_.join();
    for (uint64_t id : retry_timers_) ctx_.cancel_timer(id);
  }
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;

  // `what` names the message in the log ("mail for build unit #3").
  void submit(Message message, std::string what) {
    enqueue(std::make_shared<Item>(Item{std::move(message), std::move(what), 1, this}));
  }

  // Messages waiting or being sent (loop thread).
  size_t pending() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->queue.size() + shared_->in_flight;
  }

 private:
  struct Item {
    Message message;
    std::string what;
    int attempt;
    Delivery* owner;
  };
  struct Shared {
    mutable std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::shared_ptr<Item>> queue;
    size_t in_flight = 0;
    bool stopping = false;
    Send send;
  };

  void enqueue(std::shared_ptr<Item> item) {
    {
      std::lock_guard lock(shared_->mutex);
      shared_->queue.push_back(std::move(item));
    }
    shared_->wake.notify_one();
  }

  static void run(std::shared_ptr<Shared> shared, Context ctx) {
    for (;;) {
      std::shared_ptr<Item> item;
      {
        std::unique_lock lock(shared->mutex);
        shared->wake.wait(lock, [&] { return shared->stopping || !shared->queue.empty(); });
        if (shared->stopping) return;
        item = shared->queue.front();
        shared->queue.pop_front();
        ++shared->in_flight;
      }
      Status status;
      try {
        status = shared->send(item->message);
      } catch (const std::exception& e) {
        status = Status(KILN_ERR_INTERNAL, e.what());
      }
      {
        std::lock_guard lock(shared->mutex);
        --shared->in_flight;
        if (shared->stopping) return;
      }
      // Back to the loop; dropped by the SDK if the instance is gone, and
      // here if the queue is (both go away on the loop, so no race).
      ctx.post([item, status, alive = std::weak_ptr<Shared>(shared)] {
        if (auto live = alive.lock(); live && !live->stopping) item->owner->after_attempt(item, status);
      });
    }
  }

  void after_attempt(const std::shared_ptr<Item>& item, const Status& status) {
    if (status.ok()) {
      ctx_.info("delivered " + item->what + (item->attempt > 1 ? " at attempt " + std::to_string(item->attempt) : ""));
      return;
    }
    if (status.code() == KILN_ERR_REFUSED) {
      ctx_.error("cannot deliver " + item->what + ", not retrying: " + status.message());
      return;
    }
    if (item->attempt >= attempts_) {
      ctx_.error("giving up on " + item->what + " after " + std::to_string(item->attempt) +
                 (item->attempt == 1 ? " attempt: " : " attempts: ") + status.message());
      return;
    }
    uint64_t delay = retry_delay_ms_;
    for (int i = 1; i < item->attempt && delay < kMaxDelayMs; ++i) delay = std::max<uint64_t>(1, delay) * 2;
    delay = std::min(delay, kMaxDelayMs);
    ctx_.warn("could not deliver " + item->what + " (attempt " + std::to_string(item->attempt) + " of " +
              std::to_string(attempts_) + "): " + status.message() + "; retrying in " +
              std::to_string(delay / 1000) + "." + std::to_string(delay % 1000 / 100) + " s");
    item->attempt += 1;
    auto timer = std::make_shared<uint64_t>(0);
    auto id = ctx_.start_timer(delay, [this, item, timer] {
      retry_timers_.erase(*timer);
      enqueue(item);
    });
    if (id.ok()) {
      *timer = *id;
      retry_timers_.insert(*id);
    } else {
      ctx_.error("cannot schedule a retry of " + item->what + ": " + id.status().message());
    }
  }

  static constexpr uint64_t kMaxDelayMs = 3600 * 1000;

  std::shared_ptr<Shared> shared_;
  Context ctx_;
  int attempts_;
  uint64_t retry_delay_ms_;
  Abort abort_;
  std::set<uint64_t> retry_timers_;
  std::thread thread_;
};

// A reporter that turns finished builds (or, with buildset_summary,
// completed buildsets) into NotifierMessages for notify(). It subscribes
// in start(), reads each build, applies the filters and modes, resolves the
// interested users' addresses and calls notify() on the loop thread.
// Derived classes call Notifier's start() from theirs and implement
// notify(), typically by rendering templates and handing the result to a
// Delivery.
class Notifier : public Reporter {
 public:
  Notifier(Context ctx, const nlohmann::json& config)
      : Reporter(std::move(ctx), config), options_(NotifierOptions::from_config(config)) {}

  Status start() override {
    auto info = context().info();
    if (info.ok()) {
      master_dir_ = info->value("master_dir", "");
      master_url_ = info->value("master_url", "");
      title_ = info->value("master_title", "");
    }
    if (auto s = load_template(); !s.ok()) return s;
    // Policies are pure, so asking one with empty arguments is harmless; it
    // tells a misspelt name now rather than at every message.
    for (const auto& [key, name] : {std::pair{"lookup_policy", options_.lookup_policy},
                                    std::pair{"message_formatter", options_.message_formatter}}) {
      if (name.empty()) continue;
      auto probe = context().call_policy(name, nlohmann::json::object());
      if (probe.status().code() == KILN_ERR_NOT_FOUND) {
        return Status(KILN_ERR_INVALID_CONFIG, std::string(key) + ": no policy named '" + name + "'");
      }
    }
    const char* pattern = options_.buildset_summary ? "buildsets/+/complete" : "builds/+/finished";
    auto sub = context().subscribe(pattern, [this](std::string_view, const nlohmann::json& event) {
      if (options_.buildset_summary) {
        on_buildset_complete(event.value("bsid", int64_t{0}));
      } else {
        on_build_finished(event.value("buildid", int64_t{0}));
      }
    });
    return sub.ok() ? Status() : sub.status();
  }

  const NotifierOptions& options() const { return options_; }
  const std::string& master_dir() const { return master_dir_; }

  // The message body as the templates (or the message_formatter policy)
  // make it: {"body", "type": "plain"|"html", "subject" (formatter only)}.
  nlohmann::json format_body(const NotifierMessage& message) const {
    if (!options_.message_formatter.empty()) {
      nlohmann::json args = {{"mode", message.mode}, {"build", message.context},
                             {"reporter", context().label()}};
      auto answer = context().call_policy(options_.message_formatter, args);
      if (answer.ok() && answer->is_object() && answer->contains("body")) return *answer;
      context().warn("message_formatter '" + options_.message_formatter + "' gave no message (" +
                     (answer.ok() ? answer->dump() : answer.status().message()) + "); using the template");
    }
    return {{"body", body_template_.render(message.context)},
            {"type", options_.template_html ? "html" : "plain"}};
  }

 protected:
  // One message to deliver (loop thread). Must not block.
  virtual void notify(NotifierMessage message) = 0;

  // Which logs to fetch whole for notify(): override for add_logs.
  virtual bool wants_all_logs() const { return false; }
  virtual std::set<std::string> wanted_logs() const { return {}; }

 private:
  Status load_template() {
    std::string text = options_.template_html ? notifier::default_html_template() : notifier::default_text_template();
    std::string where = "the built-in template";
    if (config().value("template", nlohmann::json()).is_string()) {
      text = options_.template_text;
      where = "template";
    } else if (!options_.template_file.empty()) {
      std::string path = options_.template_file;
      if (path.front() != '/' && !master_dir_.empty()) path = master_dir_ + "/" + path;
      std::ifstream in(path, std::ios::binary);
      if (!in) return Status(KILN_ERR_INVALID_CONFIG, "template_file: cannot read '" + path + "'");
      std::ostringstream buffer;
      buffer << in.rdbuf();
      text = buffer.str();
      where = "template_file " + options_.template_file;
    }
    try {
      body_template_ = MessageTemplate(text, notifier::message_fields(),
                                       options_.template_html ? MessageTemplate::Escape::kHtml
                                                              : MessageTemplate::Escape::kNone);
    } catch (const TemplateError& e) {
      return Status(KILN_ERR_INVALID_CONFIG, where + ": " + e.what());
    }
    return {};
  }

  notifier::BuildReader::Request read_request(int64_t buildid) const {
    notifier::BuildReader::Request r;
    r.buildid = buildid;
    r.log_lines = options_.log_lines;
    r.all_logs = wants_all_logs();
    r.log_names = wanted_logs();
    r.master_url = master_url_;
    r.title = title_;
    return r;
  }

  void on_build_finished(int64_t buildid) {
    notifier::BuildReader::read(context(), read_request(buildid), [this, buildid](Result<nlohmann::json> report) {
      if (!report.ok()) {
        context().warn("cannot report build " + std::to_string(buildid) + ": " + report.status().message());
        return;
      }
      std::string mode = wanted_mode(*report);
      if (mode.empty()) return;
      deliver({*report}, mode, (*report)["results"].get<int>());
    });
  }

  void on_buildset_complete(int64_t bsid) {
    context().data_get("buildrequests", {{"filters", {{"buildsetid", "eq", {bsid}}}}}, [this, bsid](Result<nlohmann::json> requests) {
      if (!requests.ok()) {
        context().warn("cannot report buildset " + std::to_string(bsid) + ": " + requests.status().message());
        return;
      }
      auto state = std::make_shared<SummaryState>();
      state->pending = requests->size() + 1;
      for (const auto& request : *requests) {
        Status issued = context().data_get("buildrequests/" + request.at("buildrequestid").dump() + "/builds",
                           {{"order", {"-number"}}, {"limit", 1}}, [this, state, bsid](Result<nlohmann::json> builds) {
                             if (builds.ok() && !builds->empty()) {
                               ++state->pending;
                               notifier::BuildReader::read(context(), read_request((*builds)[0].at("buildid").get<int64_t>()),
                                                           [this, state, bsid](Result<nlohmann::json> report) {
                                                             if (report.ok()) state->reports.push_back(std::move(*report));
                                                             summary_step(state, bsid);
                                                           });
                             }
                             summary_step(state, bsid);
                           });
        if (!issued.ok()) summary_step(state, bsid);
      }
      summary_step(state, bsid);
    });
  }

  struct SummaryState {
    size_t pending = 0;
    std::vector<nlohmann::json> reports;
  };

  void summary_step(const std::shared_ptr<SummaryState>& state, int64_t bsid) {
    if (--state->pending > 0) return;
    std::sort(state->reports.begin(), state->reports.end(),
              [](const nlohmann::json& a, const nlohmann::json& b) { return a["buildid"] < b["buildid"]; });
    std::string mode;
    int worst = KILN_SUCCESS;
    std::vector<nlohmann::json> wanted;
    for (auto& report : state->reports) {
      const std::string m = wanted_mode(report);
      if (m.empty()) continue;
      if (mode.empty()) mode = m;
      worst = std::max(worst, report["results"].get<int>());
      wanted.push_back(report);
    }
    if (wanted.empty()) return;
    (void)bsid;
    deliver(std::move(wanted), mode, worst);
  }

  std::string wanted_mode(nlohmann::json& report) const {
    if (!options_.selects(report.value("builder", ""), report.value("tags", nlohmann::json::array()))) return {};
    if (!report["results"].is_number()) return {};
    std::optional<int> previous;
    if (report.contains("previous_results")) previous = report["previous_results"].get<int>();
    std::string mode = options_.wanted_by(report["results"].get<int>(), previous);
    report["mode"] = mode;
    return mode;
  }

  // An interested user's address, or nothing (logged at debug level).
  std::optional<std::string> address_of(const std::string& who, const nlohmann::json& attributes) const {
    if (!options_.lookup_policy.empty()) {
      auto answer = context().call_policy(options_.lookup_policy, {{"user", who}});
      if (!answer.ok()) {
        context().warn("lookup_policy '" + options_.lookup_policy + "': " + answer.status().message());
        return std::nullopt;
      }
      if (answer->is_string() && !answer->get<std::string>().empty()) return answer->get<std::string>();
      return std::nullopt;
    }
    if (auto address = notifier::address_in(who)) return address;
    if (!options_.lookup_domain.empty()) {
      if (who.empty() || who.find(' ') != std::string::npos) return std::nullopt;
      return who + "@" + options_.lookup_domain;
    }
    // User objects: an email attribute, or an address in another attribute.
    if (attributes.is_object()) {
      if (auto it = attributes.find("email"); it != attributes.end() && it->is_string()) {
        if (auto address = notifier::address_in(it->get<std::string>())) return address;
      }
      for (const auto& [type, value] : attributes.items()) {
        if (!value.is_string()) continue;
        if (auto address = notifier::address_in(value.get<std::string>())) return address;
      }
    }
    return std::nullopt;
  }

  std::vector<std::string> interested_of(const nlohmann::json& report) const {
    std::set<std::string> out;
    const nlohmann::json& attributes = report.value("_user_attributes", nlohmann::json::object());
    std::vector<std::string> who;
    for (const auto& author : report.value("blamelist", nlohmann::json::array())) who.push_back(author.get<std::string>());
    const nlohmann::json& props = report.value("properties", nlohmann::json::object());
    if (auto it = props.find("owner"); it != props.end() && it->is_string()) who.push_back(it->get<std::string>());
    if (auto it = props.find("owners"); it != props.end() && it->is_array()) {
      for (const auto& o : *it) {
        if (o.is_string()) who.push_back(o.get<std::string>());
      }
    }
    for (const auto& w : who) {
      auto address = address_of(w, attributes.value(w, nlohmann::json::object()));
      if (address) {
        out.insert(*address);
      } else {
        context().debug("no address for interested user '" + w + "'");
      }
    }
    return {out.begin(), out.end()};
  }

  void deliver(std::vector<nlohmann::json> reports, const std::string& mode, int results) {
    NotifierMessage message;
    message.mode = mode;
    message.results = results;
    std::set<std::string> interested;
    nlohmann::json builds = nlohmann::json::array();
    for (auto& report : reports) {
      for (auto& a : interested_of(report)) interested.insert(a);
      for (const auto& log : report["_logs"]) {
        std::string name = log["step"].get<std::string>() + "." + log["name"].get<std::string>();
        message.logs.push_back({name, log["type"] == "h" ? "text/html" : "text/plain", log["content"].get<std::string>()});
      }
      for (const auto& ss : report.value("sourcestamps", nlohmann::json::array())) {
        if (ss["patch"].is_object()) {
          message.patches.push_back({"source patch", "text/x-diff", ss["patch"].value("body", "")});
        }
      }
      report.erase("_logs");
      report.erase("_user_attributes");
      report.erase("previous_results");
      for (auto& log : report["logs"]) {
        log.erase("_logid");
        log.erase("_type");
      }
      for (auto& log : report["failed_logs"]) {
        log.erase("_logid");
        log.erase("_type");
      }
      builds.push_back(report);
    }
    message.interested.assign(interested.begin(), interested.end());
    message.context = builds[0];
    message.context["builds"] = builds;
    message.context["interested"] = message.interested;
    message.context["buildset_result"] = notifier::result_name(results);
    if (builds.size() > 1) message.context["result"] = notifier::result_name(results);
    notify(std::move(message));
  }

  NotifierOptions options_;
  std::string master_dir_, master_url_, title_;
  MessageTemplate body_template_;
};

}  // namespace kiln::sdk
