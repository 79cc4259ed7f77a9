// try: Buildbot's Try_Userpass over HTTP instead of Perspective Broker. The
// shared authenticated listener (plugins/http-listener) takes a job from
// `kiln try` (POST /try: a patch against a base revision and the builders
// to try it on), which becomes one buildset whose source stamp carries the
// patch; `kiln try --wait` follows it with GET /buildsets/N.
#include "schedulers.h"

#include "authenticated_listener.h"

#include <algorithm>

namespace kiln::schedulers {

namespace listener = kiln::http_listener;

namespace {

constexpr unsigned kOk = 200, kBadRequest = 400, kForbidden = 403, kNotFound = 404,
                   kInternalError = 500, kUnavailable = 503;

std::string type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "number";
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

const std::string& try_schema() {
  static const std::string schema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["port", "userpass"],
  "properties": {
    "port": {"type": "integer", "minimum": 0, "maximum": 65535,
      "description": "TCP port `kiln try --master HOST:PORT` connects to. 0 picks a free port, named in the master's log."},
    "interface": {"type": "string", "default": "127.0.0.1",
      "description": "Address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 or :: for every interface."},
    "userpass": {"type": "array", "minItems": 1,
      "description": "Who may send try jobs (Buildbot's userpass): each user's password, or its crypt(3) hash (`openssl passwd -6`).",
      "items": {"type": "object", "additionalProperties": false, "required": ["user", "password"],
        "properties": {"user": {"type": "string", "minLength": 1}, "password": {"type": "string", "minLength": 1}}}},
    "max_patch_bytes": {"type": "integer", "minimum": 1024, "default": 10485760,
      "description": "The largest job accepted, patch included (10 MiB by default); a bigger one is refused unread."}
  }
})json";
  return schema;
}

TryJob parse_try_job(std::string_view body, const std::vector<std::string>& allowed) {
  TryJob job;
  auto refuse = [&](std::string why) {
    job.error = std::move(why);
    return job;
  };
  const json in = json::parse(body, nullptr, false);
  if (in.is_discarded()) return refuse("the body is not valid JSON");
  if (!in.is_object()) return refuse("the body must be a JSON object");
  static const std::vector<std::string> kFields = {"builders", "branch",  "baserev", "repository",
                                                   "project",  "codebase", "patch",  "who",
                                                   "comment",  "properties"};
  for (const auto& [key, value] : in.items()) {
    if (std::find(kFields.begin(), kFields.end(), key) == kFields.end()) {
      return refuse("unknown field '" + key + "'");
    }
  }
  for (const char* key : {"branch", "baserev", "repository", "project", "codebase", "who", "comment"}) {
    const json value = in.value(key, json());
    if (!value.is_null() && !value.is_string()) {
      return refuse(std::string("field '") + key + "' must be a string, not " + type_name(value));
    }
  }
  auto text = [&](const char* key) { return in.value(key, json()).is_string() ? in[key].get<std::string>() : std::string(); };

  const json builders = in.value("builders", json::array());
  if (!builders.is_array()) return refuse("field 'builders' must be a list of builder names, not " + type_name(builders));
  std::vector<std::string> unknown;
  for (const auto& b : builders) {
    if (!b.is_string()) return refuse("field 'builders' must be a list of builder names");
    const std::string name = b.get<std::string>();
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      if (std::find(unknown.begin(), unknown.end(), name) == unknown.end()) unknown.push_back(name);
    } else if (std::find(job.builders.begin(), job.builders.end(), name) == job.builders.end()) {
      job.builders.push_back(name);
    }
  }
  if (!unknown.empty()) {
    return refuse(std::string(unknown.size() == 1 ? "builder '" : "builders '") + joined(unknown) +
                  "' cannot be tried here: this try scheduler builds " + joined(allowed));
  }
  // Buildbot's filterBuilderList: no builders named means all of them.
  if (job.builders.empty()) job.builders = allowed;

  const json patch = in.value("patch", json::object());
  if (!patch.is_object()) return refuse("field 'patch' must be an object {level, body, subdir}, not " + type_name(patch));
  for (const auto& [key, value] : patch.items()) {
    if (key != "level" && key != "body" && key != "subdir") return refuse("unknown field 'patch." + key + "'");
  }
  const json level = patch.value("level", json(1));
  if (!level.is_number_integer() || level.get<int64_t>() < 0 || level.get<int64_t>() > 100) {
    return refuse("field 'patch.level' must be a whole number from 0 to 100 (patch -pN)");
  }
  for (const char* key : {"body", "subdir"}) {
    const json value = patch.value(key, json());
    if (!value.is_null() && !value.is_string()) {
      return refuse(std::string("field 'patch.") + key + "' must be a string, not " + type_name(value));
    }
  }
  const json properties = in.value("properties", json::object());
  if (!properties.is_object()) return refuse("field 'properties' must be an object, not " + type_name(properties));

  json stamp = {{"codebase", text("codebase")},
                {"repository", text("repository")},
                {"project", text("project")},
                {"branch", in.value("branch", json()).is_string() ? in["branch"] : json()},
                {"revision", in.value("baserev", json()).is_string() ? in["baserev"] : json()}};
  const std::string body_text = patch.value("body", json()).is_string() ? patch["body"].get<std::string>() : "";
  if (!body_text.empty()) {
    stamp["patch"] = {{"level", level},
                      {"body", body_text},
                      {"subdir", patch.value("subdir", json()).is_string() ? patch["subdir"] : json()},
                      {"author", text("who")},
                      {"comment", text("comment")}};
  }
  // Buildbot's reason for a try job.
  job.reason = "'try' job";
  if (!text("who").empty()) job.reason += " by user " + text("who");
  if (!text("comment").empty()) job.reason += " (" + text("comment") + ")";
  job.stamp = std::move(stamp);
  job.properties = properties;
  return job;
}

TryScheduler::TryScheduler(sdk::Context ctx, const json& config)
    : Scheduler(std::move(ctx), config), id_(Identity::read(context(), "try")) {}

TryScheduler::~TryScheduler() { stop(); }

sdk::Status TryScheduler::validate(const json& config) {
  if (auto problem = listener::interface_problem(config.value("interface", "127.0.0.1")); !problem.empty()) {
    return sdk::Status(KILN_ERR_INVALID_CONFIG, problem);
  }
  std::set<std::string> users;
  for (const auto& login : config.value("userpass", json::array())) {
    const std::string user = login.value("user", "");
    if (!users.insert(user).second) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG, "userpass lists user '" + user + "' twice");
    }
  }
  return {};
}

sdk::Status TryScheduler::start() {
  stop();
  listener::ListenerSettings settings;
  settings.interface = config().value("interface", "127.0.0.1");
  settings.port = static_cast<uint16_t>(config().value("port", 0));
  for (const auto& login : config().value("userpass", json::array())) {
    settings.logins.push_back({login.value("user", ""), login.value("password", "")});
  }
  settings.routes = {{"POST", "/try"}, {"GET", "/builders"}, {"GET", "/buildsets/", true}};
  settings.name = "kiln try";
  settings.max_body_bytes = static_cast<size_t>(config().value("max_patch_bytes", int64_t{10} << 20));
  auto started = listener::start_listener(
      std::move(settings),
      [this](listener::Request request, listener::Respond respond) {
        receive(std::move(request), std::move(respond));
      },
      context());
  if (!started) return started.status();
  listener_ = std::move(*started);
  context().info("listening for try jobs on http://" + config().value("interface", "") + ":" +
                 std::to_string(listener_->port()) + "/try (builders: " + joined(id_.builders) + ")");
  return {};
}

void TryScheduler::stop() {
  if (listener_) listener_->stop();
}

// On the listener's thread; everything that touches the master is posted
// to the loop.
void TryScheduler::receive(listener::Request request, listener::Respond respond) {
  auto on_loop = [this, respond](std::function<void()> fn) {
    sdk::Status posted = context().post(std::move(fn));
    if (!posted) respond(kUnavailable, {{"error", posted.message()}});
  };
  const std::string path = request.target.substr(0, request.target.find('?'));
  if (request.method == "GET" && path == "/builders") {
    return respond(kOk, {{"builders", id_.builders}});
  }
  if (request.method == "GET") {
    const std::string id = path.substr(std::string("/buildsets/").size());
    if (id.empty() || id.size() > 18 || !std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return respond(kNotFound, {{"error", "no buildset '" + id + "' (buildsets are named by number)"}});
    }
    return on_loop([this, bsid = std::stoll(id), respond] { describe_buildset(bsid, respond); });
  }
  TryJob job = parse_try_job(request.body, id_.builders);
  if (!job.error.empty()) {
    context().warn("refused a try job from " + request.user + " at " + request.peer + ": " + job.error);
    return respond(kBadRequest, {{"error", job.error}});
  }
  on_loop([this, job = std::move(job), user = request.user, respond]() mutable { submit(std::move(job), user, respond); });
}

void TryScheduler::submit(TryJob job, const std::string& user, listener::Respond respond) {
  // Buildbot: the scheduler's properties, then the job's ("try build").
  json properties = id_.properties.is_object() ? id_.properties : json::object();
  for (const auto& [name, value] : job.properties.items()) properties[name] = value;
  properties["scheduler"] = id_.name;
  json request = {{"builders", job.builders},
                  {"reason", job.reason},
                  {"sourcestamps", json::array({job.stamp})},
                  {"properties", properties}};
  const std::vector<std::string> builders = job.builders;
  sdk::Status added = add_buildset(request, [this, respond, builders, user](sdk::Result<json> r) {
    if (!r.ok()) {
      return respond(r.status().code() == KILN_ERR_INVALID_ARGUMENT ? kBadRequest : kInternalError,
                     {{"error", r.status().message()}});
    }
    context().info("try job from " + user + ": buildset " + r->value("bsid", json()).dump() + " on " +
                   joined(builders));
    respond(kOk, {{"bsid", r->value("bsid", json())}, {"brids", r->value("brids", json::object())}});
  });
  if (!added) respond(kUnavailable, {{"error", added.message()}});
}

// {"bsid", "complete", "results", "builds": [{"builder", "buildrequestid",
// "complete", "results", "buildid", "number", "state_string"}]}, for a
// buildset this scheduler made.
void TryScheduler::describe_buildset(int64_t bsid, listener::Respond respond) {
  const std::string path = "buildsets/" + std::to_string(bsid);
  auto failed = [respond, bsid](const sdk::Status& s) {
    if (s.code() == KILN_ERR_NOT_FOUND) return respond(kNotFound, {{"error", "no buildset " + std::to_string(bsid)}});
    respond(kInternalError, {{"error", s.message()}});
  };
  auto get = [this, failed](const std::string& p, const json& query, std::function<void(json)> next) {
    sdk::Status s = context().data_get(p, query, [failed, next](sdk::Result<json> r) {
      if (!r.ok()) return failed(r.status());
      next(std::move(*r));
    });
    if (!s) failed(s);
  };
  get(path + "/properties", json(), [this, get, path, bsid, respond](json props) {
    const json entry = props.value("scheduler", json());
    const json scheduler = entry.is_array() && !entry.empty() ? entry[0] : entry;
    if (scheduler != json(id_.name)) {
      return respond(kForbidden, {{"error", "buildset " + std::to_string(bsid) + " is not a try job of scheduler '" +
                                                id_.name + "'"}});
    }
    get(path, json(), [this, get, bsid, respond](json buildset) {
      const json query = {{"filters", json::array({json::array({"buildsetid", "eq", json::array({bsid})})})}};
      get("buildrequests", query, [get, buildset, bsid, respond](json requests) {
        get("builders", json(), [get, buildset, bsid, requests, respond](json builders) {
          std::map<int64_t, std::string> names;
          for (const auto& b : builders) names[b.value("builderid", int64_t{0})] = b.value("name", "");
          json answer = {{"bsid", bsid},
                         {"complete", buildset.value("complete", false)},
                         {"results", buildset.value("results", json())},
                         {"builds", json::array()}};
          auto pending = std::make_shared<size_t>(requests.size());
          auto shared = std::make_shared<json>(std::move(answer));
          if (requests.empty()) return respond(kOk, *shared);
          for (size_t i = 0; i < requests.size(); ++i) {
            const json& r = requests[i];
            const int64_t brid = r.value("buildrequestid", int64_t{0});
            (*shared)["builds"].push_back({{"builder", names[r.value("builderid", int64_t{0})]},
                                          {"buildrequestid", brid},
                                          {"complete", r.value("complete", false)},
                                          {"results", r.value("results", json())},
                                          {"buildid", nullptr},
                                          {"number", nullptr},
                                          {"state_string", nullptr}});
            // The latest build of the request says how far it got.
            get("buildrequests/" + std::to_string(brid) + "/builds", json(),
                [shared, pending, i, respond](json builds) {
                  if (!builds.empty()) {
                    const json& b = builds.back();
                    json& entry = (*shared)["builds"][i];
                    entry["buildid"] = b.value("buildid", json());
                    entry["number"] = b.value("number", json());
                    entry["state_string"] = b.value("state_string", json());
                    if (!entry["complete"].get<bool>() && b.value("complete", false)) entry["results"] = b.value("results", json());
                  }
                  if (--*pending == 0) respond(kOk, *shared);
                });
          }
        });
      });
    });
  });
}

}  // namespace kiln::schedulers
