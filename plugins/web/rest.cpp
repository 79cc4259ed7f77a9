// RestApi: a REST path is a data-API path segment for segment
// (collection, id, collection, id, ...), so a GET is one data_get of the
// decoded path with the query string handed to the host as it came (the
// host parses REST parameters for every front end alike). The answer's
// resource type, the envelope's key, is the last collection segment.

#include "rest.h"

#include <charconv>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace kiln::web {
namespace {

using nlohmann::json;

// Lines per page of a streamed log: big enough that a page is one store
// read of a few chunks, small enough that a page stays small in memory.
constexpr int64_t kLogPageLines = 2000;

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string> path_segments(std::string_view path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out.push_back(url_decode(path.substr(pos, slash - pos)));
    pos = slash + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& segs, size_t count) {
  std::string out;
  for (size_t i = 0; i < count && i < segs.size(); ++i) {
    if (i) out += '/';
    out += segs[i];
  }
  return out;
}

// The raw value of the first `name=` parameter of a query string.
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    std::string_view item = query.substr(pos, amp - pos);
    size_t eq = item.find('=');
    if (item.substr(0, eq) == name) {
      return url_decode(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
    }
    pos = amp + 1;
  }
  return std::nullopt;
}

std::optional<int64_t> non_negative(const std::string& text) {
  int64_t value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

// The resource type a path answers: its last collection segment, with
// Buildbot's name for log contents.
std::string type_of(const std::vector<std::string>& segs) {
  const std::string& last_collection = segs[(segs.size() - 1) & ~size_t{1}];
  return last_collection == "contents" ? "logchunks" : last_collection;
}

// How each resource names its id, for control calls on nested paths.
const char* id_field_of(const std::string& type) {
  static const std::pair<const char*, const char*> kIds[] = {
      {"builds", "buildid"},   {"buildrequests", "buildrequestid"}, {"workers", "workerid"},
      {"builders", "builderid"}, {"steps", "stepid"},               {"logs", "logid"},
      {"changes", "changeid"}, {"buildsets", "bsid"},              {"masters", "masterid"},
  };
  for (const auto& [name, field] : kIds) {
    if (type == name) return field;
  }
  return nullptr;
}

// Buildbot's envelope: a collection's meta has its total, a single
// resource's (a one-element list) an empty meta.
json envelope(const std::string& type, json items, std::optional<int64_t> total) {
  return json{{type, std::move(items)},
              {"meta", total ? json{{"total", *total}} : json::object()}};
}

// The JSON text of a string without its quotes, for a body that is
// streamed in pieces.
std::string json_string_body(const std::string& text) {
  std::string quoted = dump(json(text));
  return quoted.substr(1, quoted.size() - 2);
}

size_t count_lines(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// Reads a log page after page through the data API; `path` is a log's
// "contents" or "raw" path. Lives as long as the response streams.
struct LogPager : std::enable_shared_from_this<LogPager> {
  Backend& backend;
  std::string path;
  int64_t next_line = 0;
  std::optional<int64_t> remaining;  // lines still wanted; empty: to the end
  bool end = false;

  LogPager(Backend& b, std::string p, int64_t first, std::optional<int64_t> limit)
      : backend(b), path(std::move(p)), next_line(first), remaining(limit) {}

  // Fetches the next page; done gets the page's answer (text under
  // "content"). Sets `end` once nothing more is wanted or there.
  void fetch(std::function<void(Answer)> done) {
    int64_t want = remaining ? std::min(*remaining, kLogPageLines) : kLogPageLines;
    backend.get(path, json{{"offset", next_line}, {"limit", want}},
                [self = shared_from_this(), want, done = std::move(done)](Answer a) {
                  if (a.ok()) {
                    const auto lines = static_cast<int64_t>(
                        count_lines(a.value.value("content", std::string())));
                    self->next_line += lines;
                    if (self->remaining) *self->remaining -= lines;
                    self->end = lines < want || (self->remaining && *self->remaining <= 0);
                  } else {
                    self->end = true;
                  }
                  done(std::move(a));
                });
  }

  // Streams the rest of the pages, each through `wrap`, then `suffix`.
  std::function<void(Piece)> rest(std::function<std::string(const json&)> wrap,
                                  std::string suffix) {
    if (end) return {};
    return [self = shared_from_this(), wrap = std::move(wrap), suffix](Piece deliver) {
      self->fetch([self, wrap, suffix, deliver](Answer a) {
        // A page that fails halfway ends the body early: the status line
        // is long gone.
        if (!a.ok()) return deliver(suffix, false);
        std::string piece = wrap(a.value);
        if (self->end) return deliver(piece + suffix, false);
        deliver(std::move(piece), true);
      });
    };
  }
};

class Call {
 public:
  Call(Backend& backend, Auth& auth, Identity who, Respond respond)
      : backend_(backend), auth_(auth), who_(std::move(who)), respond_(std::move(respond)) {}

  void get(std::vector<std::string> segs, const std::string& query) {
    if (segs.empty()) return root();
    // Buildbot's showUsersPage guards users wherever they are nested.
    for (size_t i = 0; i < segs.size(); i += 2) {
      if (segs[i] != "users") continue;
      auto self = std::make_shared<Call>(*this);
      std::string path = join(segs, segs.size());
      return auth_.authorize(Action::kShowUsersPage, who_, std::move(path),
                             [self, segs = std::move(segs), query](Verdict v) mutable {
                               if (v != Verdict::kAllowed) {
                                 return self->respond_(self->auth_.refusal(v, Action::kShowUsersPage, self->who_));
                               }
                               self->read(std::move(segs), query);
                             });
    }
    read(std::move(segs), query);
  }

 private:
  void read(std::vector<std::string> segs, const std::string& query) {
    const std::string path = join(segs, segs.size());
    // The same read answered lately, the data unchanged since: its
    // response again, serialized once (authorization was checked above).
    std::string key = "rest:" + path + "?" + query;
    if (auto kept = backend_.kept_response(key)) return respond_(std::move(*kept));
    respond_ = [&backend = backend_, key = std::move(key), version = backend_.data_version(),
                respond = std::move(respond_)](Response r) {
      if (r.status == 200) backend.keep_response(key, version, r);
      respond(std::move(r));
    };
    if (segs.size() % 2 == 1 && segs.size() >= 3 && segs.back() == "contents") {
      return contents(path, query);
    }
    if (segs.size() % 2 == 1 && segs.size() >= 3 && segs.back() == "raw") return raw(path);
    if (segs.size() == 2 && segs[0] == "forceschedulers") return force_form(segs[1]);

    const std::string type = type_of(segs);
    const bool collection = segs.size() % 2 == 1 && type != "properties";
    json q = query.empty() ? json() : json{{"query_string", query}};
    // meta.total counts what the filters select; a page of it needs a count.
    const bool paged = query_param(query, "limit") || query_param(query, "offset");
    auto respond = respond_;
    Backend& backend = backend_;
    backend_.get(path, q, [=, &backend](Answer a) {
      if (!a.ok()) return respond(error_response(http_status_of(a.status), a.error));
      json items = a.value.is_array() ? std::move(a.value) : json::array({std::move(a.value)});
      if (!collection) return respond(json_response(200, envelope(type, std::move(items), {})));
      if (!paged) {
        const auto total = static_cast<int64_t>(items.size());
        return respond(json_response(200, envelope(type, std::move(items), total)));
      }
      json count_query = q;
      count_query["count"] = true;
      // Shared, not captured: the callback is copied on its way through the
      // loop, and a page of builds is not worth copying each time.
      auto page = std::make_shared<json>(std::move(items));
      backend.get(path, count_query, [respond, type, page](Answer counted) {
        if (!counted.ok()) return respond(error_response(http_status_of(counted.status), counted.error));
        respond(json_response(200, envelope(type, std::move(*page), counted.value.value("total", int64_t{0}))));
      });
    });
  }

 public:
  void post(std::vector<std::string> segs, const std::string& body, std::string_view content_type) {
    json request = json::parse(body, nullptr, false);
    if (request.is_discarded()) return rpc_error(400, -32700, "the body is not JSON", nullptr);
    if (!request.is_object()) {
      return rpc_error(400, -32600, "a JSON-RPC request is one object (no batches)", nullptr);
    }
    id_ = request.value("id", json());
    if (request.value("jsonrpc", json()) != "2.0") {
      return rpc_error(400, -32600, "jsonrpc must be \"2.0\"", id_);
    }
    if (!request.contains("method") || !request["method"].is_string()) {
      return rpc_error(400, -32600, "method must be a string", id_);
    }
    json params = request.value("params", json::object());
    if (!params.is_object()) return rpc_error(400, -32602, "params must be an object", id_);
    if (segs.size() < 2) {
      return rpc_error(404, -32600, "control calls go to one resource, such as builds/12", id_);
    }
    const std::string method = request["method"].get<std::string>();
    const auto action = action_of(segs, method, params);
    if (!action) {
      return rpc_error(501, -32601,
                       "'" + method + "' on '" + join(segs, segs.size()) +
                           "' is not a control call of the web API",
                       id_);
    }
    // A browser sends remembered Basic credentials along with a forged
    // cross-site form, but such a form cannot send application/json.
    if (who_.by_basic && !content_type.starts_with("application/json")) {
      return rpc_error(400, -32600, "Invalid content-type (use application/json)", id_);
    }
    auto self = std::make_shared<Call>(*this);
    std::string path = join(segs, segs.size()) + "/" + method;
    auth_.authorize(*action, who_, std::move(path),
                    [self, action = *action, segs = std::move(segs), method,
                     params = std::move(params)](Verdict v) mutable {
                      if (v != Verdict::kAllowed) {
                        return self->respond_(self->auth_.refusal(v, action, self->who_, &self->id_));
                      }
                      self->act(std::move(segs), method, std::move(params));
                    });
  }

 private:
  // A call that passed its authz rule.
  void act(std::vector<std::string> segs, const std::string& method, json params) {
    const std::string& collection = segs[0];
    const bool by_name = collection == "forceschedulers" || collection == "schedulers";
    if (segs.size() == 2 && (by_name || all_digits(segs[1]))) {
      if (collection == "forceschedulers") return force(join(segs, 2), method, std::move(params));
      return control(join(segs, 2), method, std::move(params));
    }
    // A nested or named path ("builders/unit/builds/3"): find the object,
    // then act on it by id.
    const std::string type = type_of(segs);
    const char* id_field = id_field_of(type);
    if (segs.size() % 2 == 1 || id_field == nullptr) {
      return rpc_error(404, -32600, "no resource to control at '" + join(segs, segs.size()) + "'",
                       id_);
    }
    auto self = std::make_shared<Call>(*this);
    backend_.get(join(segs, segs.size()), json(),
                 [self, type, id_field, method, params = std::move(params)](Answer a) mutable {
                   if (!a.ok()) return self->rpc_answer(std::move(a));
                   const json id = a.value.is_object() ? a.value.value(id_field, json()) : json();
                   if (!id.is_number_integer()) {
                     return self->rpc_error(500, -32603, "the resource has no " +
                                                             std::string(id_field), self->id_);
                   }
                   self->control(type + "/" + id.dump(), method, std::move(params));
                 });
  }

  void root() {
    json names = json::array();
    for (const char* name : {"builders", "builds", "buildrequests", "buildsets", "changes",
                             "logs", "masters", "sourcestamps", "steps", "users", "workers",
                             "forceschedulers"}) {
      names.push_back({{"name", name}});
    }
    const auto total = static_cast<int64_t>(names.size());
    respond_(json_response(200, envelope("root", std::move(names), total)));
  }

  // Buildbot's logchunks, {"logid", "firstline", "content"}, with `offset`
  // and `limit` in lines; the content is streamed a page at a time.
  void contents(const std::string& path, const std::string& query) {
    int64_t offset = 0;
    std::optional<int64_t> limit;
    if (auto text = query_param(query, "offset")) {
      auto n = non_negative(*text);
      if (!n) return respond_(error_response(400, "offset must be a non-negative integer"));
      offset = *n;
    }
    if (auto text = query_param(query, "limit")) {
      limit = non_negative(*text);
      if (!limit) return respond_(error_response(400, "limit must be a non-negative integer"));
    }
    auto pager = std::make_shared<LogPager>(backend_, path, offset, limit);
    pager->fetch([pager, offset, respond = respond_](Answer a) {
      if (!a.ok()) return respond(error_response(http_status_of(a.status), a.error));
      const json logid = a.value.value("logid", json());
      const std::string suffix = "\"}], \"meta\": {}}";
      Response r;
      r.body = "{\"logchunks\": [{\"logid\": " + logid.dump() +
               ", \"firstline\": " + std::to_string(offset) + ", \"content\": \"" +
               json_string_body(a.value.value("content", std::string()));
      r.next_piece = pager->rest(
          [](const json& page) { return json_string_body(page.value("content", std::string())); },
          suffix);
      if (!r.next_piece) r.body += suffix;
      respond(std::move(r));
    });
  }

  // The whole log as a download, stream letters stripped, read page by
  // page so it is never in memory whole.
  void raw(const std::string& path) {
    auto pager = std::make_shared<LogPager>(backend_, path, 0, std::nullopt);
    pager->fetch([pager, respond = respond_](Answer a) {
      if (!a.ok()) return respond(error_response(http_status_of(a.status), a.error));
      Response r;
      r.content_type = a.value.value("mime-type", std::string("text/plain")) + "; charset=utf-8";
      // The core's file names hold only [A-Za-z0-9_.-], so no quoting.
      r.headers.emplace_back("Content-Disposition",
                             "attachment; filename=" +
                                 a.value.value("filename", std::string("log.txt")));
      r.body = a.value.value("content", std::string());
      r.next_piece = pager->rest(
          [](const json& page) { return page.value("content", std::string()); }, "");
      respond(std::move(r));
    });
  }

  // A force scheduler as Buildbot's forceschedulers resource shows it,
  // from the scheduler's own "describe" (the data API has no schedulers).
  void force_form(const std::string& name) {
    backend_.control("schedulers/" + name, "describe", json::object(),
                     [name, respond = respond_](Answer a) {
                       if (!a.ok()) return respond(error_response(http_status_of(a.status), a.error));
                       const json& d = a.value;
                       if (!d.is_object() || !d.contains("button_name") || !d.contains("builders")) {
                         return respond(error_response(404, "no force scheduler named '" + name + "'"));
                       }
                       json form = {{"name", d.value("name", name)},
                                    {"label", d.value("label", name)},
                                    {"button_name", d["button_name"]},
                                    {"builder_names", d["builders"]},
                                    {"enabled", true},
                                    {"all_fields", d.value("parameters", json::array())}};
                       respond(json_response(200, envelope("forceschedulers", json::array({form}), {})));
                     });
  }

  // Buildbot's force form sends builderid; the force scheduler wants names.
  void force(const std::string& path, const std::string& method, json params) {
    if (params.contains("builderNames") || !params.contains("builderid")) {
      return control(path, method, std::move(params));
    }
    auto self = std::make_shared<Call>(*this);
    const std::string builder = "builders/" + params["builderid"].dump();
    backend_.get(builder, json(),
                 [self, path, method, params = std::move(params)](Answer a) mutable {
                   if (!a.ok()) return self->rpc_answer(std::move(a));
                   params["builderNames"] = json::array({a.value.value("name", std::string())});
                   params.erase("builderid");
                   self->control(path, method, std::move(params));
                 });
  }

  void control(const std::string& path, const std::string& method, json params) {
    auto self = std::make_shared<Call>(*this);
    backend_.control(path, method, std::move(params),
                     [self](Answer a) { self->rpc_answer(std::move(a)); });
  }

  void rpc_answer(Answer a) {
    if (a.ok()) {
      return respond_(
          json_response(200, json{{"jsonrpc", "2.0"}, {"result", std::move(a.value)}, {"id", id_}}));
    }
    // Buildbot's mapping: no such resource is an invalid request (404), an
    // action the target does not have "method not found" (501).
    int code = -32603;
    switch (a.status) {
      case KILN_ERR_NOT_FOUND:
        code = -32600;
        break;
      case KILN_ERR_UNSUPPORTED:
        code = -32601;
        break;
      case KILN_ERR_INVALID_ARGUMENT:
        code = -32602;
        break;
      default:
        break;
    }
    rpc_error(http_status_of(a.status), code, a.error, id_);
  }

  void rpc_error(unsigned status, int code, const std::string& message, const json& id) {
    respond_(json_response(status, json{{"jsonrpc", "2.0"},
                                        {"error", {{"code", code}, {"message", message}}},
                                        {"id", id}}));
  }

  Backend& backend_;
  Auth& auth_;
  Identity who_;
  Respond respond_;
  json id_;
};

}  // namespace

unsigned http_status_of(kiln_status status) {
  switch (status) {
    case KILN_OK:
      return 200;
    case KILN_ERR_NOT_FOUND:
      return 404;
    case KILN_ERR_INVALID_ARGUMENT:
    case KILN_ERR_INVALID_CONFIG:
      return 400;
    case KILN_ERR_UNSUPPORTED:
      return 501;
    case KILN_ERR_RETRY:
    case KILN_ERR_CANCELLED:
      return 503;
    default:
      return 500;
  }
}

std::string url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
               hex_value(text[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> form_fields(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t amp = text.find('&', pos);
    if (amp == std::string_view::npos) amp = text.size();
    const std::string_view item = text.substr(pos, amp - pos);
    if (!item.empty()) {
      const size_t eq = item.find('=');
      out.emplace_back(url_decode(item.substr(0, eq)),
                       eq == std::string_view::npos ? std::string() : url_decode(item.substr(eq + 1)));
    }
    pos = amp + 1;
  }
  return out;
}

Response json_response(unsigned status, const json& body) {
  Response r;
  r.status = status;
  r.body = dump(body);
  return r;
}

Response error_response(unsigned status, std::string message) {
  return json_response(status, json{{"error", std::move(message)}});
}

std::optional<Action> action_of(const std::vector<std::string>& segs, const std::string& method,
                                const json& params) {
  if (segs.empty()) return std::nullopt;
  if (segs[0] == "forceschedulers" && method == "force") {
    const json names = params.value("builderNames", json());
    const bool one = params.contains("builderid") || (names.is_array() && names.size() == 1);
    return one ? Action::kForceBuild : Action::kForceAllBuilds;
  }
  const std::string type = type_of(segs);
  if (type == "builds" && method == "stop") return Action::kStopBuild;
  if (type == "builds" && method == "rebuild") return Action::kForceBuild;
  if (type == "buildrequests" && method == "cancel") return Action::kCancelPendingBuild;
  if (type == "workers" && method == "ping") return Action::kPingWorker;
  if (type == "workers" && (method == "graceful_shutdown" || method == "stop" || method == "kill" ||
                            method == "pause" || method == "unpause")) {
    return Action::kGracefulShutdown;
  }
  if (type == "changes" && method == "stop") return Action::kStopChange;
  if (type == "builders" && method == "stop") return Action::kStopAllBuilds;
  if (type == "masters" && (method == "stop" || method == "shutdown")) return Action::kCleanShutdown;
  return std::nullopt;
}

void RestApi::handle(const Request& request, std::string_view api_path, const Identity& who,
                     Respond respond) {
  auto segs = path_segments(api_path);
  if (request.method == "GET") {
    return Call(backend_, auth_, who, std::move(respond)).get(std::move(segs), request.query);
  }
  if (request.method == "POST") {
    return Call(backend_, auth_, who, std::move(respond))
        .post(std::move(segs), request.body, request.header("content-type"));
  }
  Response r = error_response(405, "the REST API takes GET, and POST for JSON-RPC control calls");
  r.headers.emplace_back("Allow", "GET, POST");
  respond(std::move(r));
}

}  // namespace kiln::web
