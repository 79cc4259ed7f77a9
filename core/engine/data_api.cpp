// DataApi::get: Buildbot's REST paths resolved segment by segment into store
// queries. A nested path ("builders/unit/builds/3/steps/test/logs/stdio")
// looks up each parent in turn (builder by id or name, build by number, step
// by number or name, log by slug), so every level answers its own "no ..."
// message; the last segment picks a collection, one object, or one of the
// special answers (log contents, raw log, properties).

#include "engine/data_api.h"

#include "store/store.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

namespace kiln::engine {

using nlohmann::json;
using store::Filter;
using store::FilterOp;
using store::Resource;
using store::ResultSpec;
using store::Scope;

namespace {

// A raw download reads the log this many bytes at a time (log_page).
constexpr size_t kRawPageBytes = 256 * 1024;

std::optional<int64_t> parse_int(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// Path ids are plain digits: "3" is an id, "-3" or "3x" are names.
bool is_id(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         parse_int(s).has_value();
}

kiln_status status_of(store::StatusCode code) {
  switch (code) {
    case store::StatusCode::kOk:
      return KILN_OK;
    case store::StatusCode::kNotFound:
      return KILN_ERR_NOT_FOUND;
    case store::StatusCode::kInvalidArgument:
      return KILN_ERR_INVALID_ARGUMENT;
    case store::StatusCode::kUnsupported:
      return KILN_ERR_UNSUPPORTED;
    default:
      return KILN_ERR_INTERNAL;
  }
}

// The JSON query form of data_api.h, checked.
struct ParsedQuery {
  std::vector<Filter> filters;
  std::vector<std::string> fields;
  std::vector<std::string> order;
  std::optional<int64_t> limit;
  int64_t offset = 0;
  std::vector<std::string> properties;
  // A collection answers {"total": N} instead of its rows.
  bool count = false;
};

std::vector<std::string> string_list(const json& value, const char* key) {
  std::vector<std::string> out;
  if (value.is_string()) {
    out.push_back(value.get<std::string>());
    return out;
  }
  if (!value.is_array()) {
    throw std::invalid_argument(std::string("query '") + key + "' must be a list of strings");
  }
  for (const auto& v : value) {
    if (!v.is_string()) {
      throw std::invalid_argument(std::string("query '") + key + "' must be a list of strings");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

int64_t non_negative(const json& value, const char* key) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0) {
    throw std::invalid_argument(std::string("query '") + key +
                                "' must be a non-negative integer, not " + value.dump());
  }
  return value.get<int64_t>();
}

ParsedQuery parse_query(const json& query) {
  ParsedQuery q;
  if (query.is_null()) return q;
  if (!query.is_object()) throw std::invalid_argument("query must be a JSON object");
  for (const auto& [key, value] : query.items()) {
    if (key == "filters") {
      if (!value.is_array()) throw std::invalid_argument("query 'filters' must be a list");
      for (const auto& f : value) {
        if (!f.is_array() || f.size() < 2 || f.size() > 3 || !f[0].is_string() ||
            !f[1].is_string()) {
          throw std::invalid_argument("query filter " + f.dump() + " is not [field, op, [values]]");
        }
        Filter filter;
        filter.field = f[0].get<std::string>();
        auto op = store::filter_op_from_name(f[1].get<std::string>());
        if (!op) {
          throw std::invalid_argument("query filter on '" + filter.field + "': unknown operator '" +
                                      f[1].get<std::string>() + "'");
        }
        filter.op = *op;
        if (f.size() == 3) {
          if (f[2].is_array()) {
            filter.values.assign(f[2].begin(), f[2].end());
          } else {
            filter.values.push_back(f[2]);
          }
        }
        q.filters.push_back(std::move(filter));
      }
    } else if (key == "fields" || key == "field") {
      q.fields = string_list(value, "fields");
    } else if (key == "order") {
      q.order = string_list(value, "order");
    } else if (key == "property" || key == "properties") {
      q.properties = string_list(value, "property");
    } else if (key == "limit") {
      if (!value.is_null()) q.limit = non_negative(value, "limit");
    } else if (key == "offset") {
      if (!value.is_null()) q.offset = non_negative(value, "offset");
    } else if (key == "count") {
      if (!value.is_boolean()) throw std::invalid_argument("query 'count' must be true or false");
      q.count = value.get<bool>();
    } else {
      throw std::invalid_argument("unknown query key '" + key + "'");
    }
  }
  return q;
}

json keep_fields(json value, const std::vector<std::string>& fields) {
  if (fields.empty()) return value;
  auto project = [&](json& object) {
    if (!object.is_object()) return;
    json kept = json::object();
    for (const auto& f : fields) {
      auto it = object.find(f);
      if (it != object.end()) kept[f] = std::move(*it);
    }
    object = std::move(kept);
  };
  if (value.is_array()) {
    for (auto& item : value) project(item);
  } else {
    project(value);
  }
  return value;
}

Filter eq(std::string field, json value) {
  return Filter{std::move(field), FilterOp::kEq, {std::move(value)}};
}

// Buildbot's download name: builder_build_N_step_S_log_L.txt, with anything
// a file system or a Content-Disposition header would choke on replaced.
std::string raw_filename(const std::string& builder, int64_t number, const std::string& step,
                         const std::string& slug) {
  std::string name =
      builder + "_build_" + std::to_string(number) + "_step_" + step + "_log_" + slug;
  for (char& c : name) {
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || c == '.';
    if (!safe) c = '_';
  }
  return name + ".txt";
}

// A raw stdio log drops the stream letter each line starts with, as
// Buildbot's raw endpoint does; the contents endpoint keeps them.
std::string strip_stream_letters(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    if (end > pos + 1) out.append(text.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  return out;
}

// One get() in flight. Each store completion moves it one step along the
// path; it lives as long as a completion holds it.
class GetOp : public std::enable_shared_from_this<GetOp> {
 public:
  GetOp(store::Store& store, std::string_view path, ParsedQuery query, DataDone done)
      : store_(store), path_(path), query_(std::move(query)), done_(std::move(done)) {
    size_t pos = 0;
    while (pos <= path.size()) {
      size_t slash = path.find('/', pos);
      if (slash == std::string_view::npos) slash = path.size();
      if (slash > pos) segs_.emplace_back(path.substr(pos, slash - pos));
      pos = slash + 1;
    }
  }

  void start() {
    guarded([&] { route(); });
  }

 private:
  using Row = std::function<void(json row)>;

  size_t n() const { return segs_.size(); }
  const std::string& seg(size_t i) const {
    static const std::string kNone;
    return i < segs_.size() ? segs_[i] : kNone;
  }

  void fail(kiln_status status, std::string message) {
    if (answered_) return;
    answered_ = true;
    done_(status, json{{"error", std::move(message)}});
  }
  void answer(json value, bool project = true) {
    if (answered_) return;
    answered_ = true;
    done_(KILN_OK, project ? keep_fields(std::move(value), query_.fields) : std::move(value));
  }
  void no_path() { fail(KILN_ERR_NOT_FOUND, "no data path '" + path_ + "'"); }

  template <class F>
  void guarded(F&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      fail(KILN_ERR_INTERNAL, "data API: " + std::string(e.what()));
    }
  }

  // ---- store calls ---------------------------------------------------------

  void query(Resource resource, ResultSpec spec, std::function<void(json rows)> next) {
    store_.query(resource, std::move(spec),
                 [self = shared_from_this(), next = std::move(next)](store::Result<json> r) {
                   if (!r.ok()) return self->fail(status_of(r.status.code), r.status.message);
                   self->guarded([&] { next(std::move(r.value)); });
                 });
  }

  // The one row the filters pick, or KILN_ERR_NOT_FOUND with `missing`.
  void lookup(Resource resource, std::vector<Filter> filters, std::optional<Scope> parent,
              std::string missing, Row next, bool with_properties = false) {
    ResultSpec spec;
    spec.filters = std::move(filters);
    spec.parent = std::move(parent);
    spec.limit = 1;
    if (with_properties) {
      spec.properties = query_.properties;
      spec.fields = query_.fields;
    }
    query(resource, std::move(spec),
          [self = shared_from_this(), missing = std::move(missing),
           next = std::move(next)](json rows) {
            if (rows.empty()) return self->fail(KILN_ERR_NOT_FOUND, missing);
            next(std::move(rows[0]));
          });
  }

  // The object a path ends on: only the query's fields and properties apply,
  // as for Buildbot's single-entity endpoints.
  void single(Resource resource, std::vector<Filter> filters, std::optional<Scope> parent,
              std::string missing) {
    lookup(
        resource, std::move(filters), std::move(parent), std::move(missing),
        [self = shared_from_this()](json row) { self->answer(std::move(row)); }, true);
  }

  void collection(Resource resource, std::optional<Scope> parent = std::nullopt) {
    ResultSpec spec;
    spec.filters = query_.filters;
    spec.order = query_.order;
    spec.limit = query_.limit;
    spec.offset = query_.offset;
    spec.properties = query_.properties;
    spec.fields = query_.fields;
    spec.parent = std::move(parent);
    if (query_.count) {
      return store_.count(resource, std::move(spec),
                          [self = shared_from_this()](store::Result<int64_t> r) {
                            if (!r.ok()) return self->fail(status_of(r.status.code), r.status.message);
                            self->answer(json{{"total", r.value}}, false);
                          });
    }
    query(resource, std::move(spec),
          [self = shared_from_this()](json rows) { self->answer(std::move(rows)); });
  }

  // ---- routing ---------------------------------------------------------------

  void route() {
    if (segs_.empty()) return no_path();
    const std::string& root = seg(0);
    auto resource = store::resource_from_name(root);
    if (!resource) return no_path();
    if (n() == 1) return collection(*resource);

    const std::string& key = seg(1);
    const bool terminal = n() == 2;
    auto self = shared_from_this();
    switch (*resource) {
      case Resource::kBuilders:
        return by_id_or_name(Resource::kBuilders, "builderid", "builder", key, terminal,
                             [self](json b) { self->builder_rest(std::move(b), 2); });
      case Resource::kWorkers:
        return by_id_or_name(Resource::kWorkers, "workerid", "worker", key, terminal,
                             [self](json w) { self->worker_rest(std::move(w), 2); });
      case Resource::kBuilds:
        return by_id(Resource::kBuilds, "buildid", "build", key, terminal,
                     [self](json b) { self->build_rest(std::move(b), 2); });
      case Resource::kSteps:
        return by_id(Resource::kSteps, "stepid", "step", key, terminal,
                     [self](json s) { self->step_rest(std::move(s), 2); });
      case Resource::kLogs:
        return by_id(Resource::kLogs, "logid", "log", key, terminal,
                     [self](json l) { self->log_rest(std::move(l), 2); });
      case Resource::kChanges:
        return by_id(Resource::kChanges, "changeid", "change", key, terminal,
                     [self](json c) { self->change_rest(std::move(c), 2); });
      case Resource::kBuildsets:
        return by_id(Resource::kBuildsets, "bsid", "buildset", key, terminal,
                     [self](json bs) { self->buildset_rest(std::move(bs), 2); });
      case Resource::kBuildrequests:
        return by_id(Resource::kBuildrequests, "buildrequestid", "build request", key, terminal,
                     [self](json r) {
                       self->child_collection(r, 2, "builds", Resource::kBuilds, "buildrequestid");
                     });
      case Resource::kMasters:
        return by_id(Resource::kMasters, "masterid", "master", key, terminal,
                     [self](json m) { self->master_rest(std::move(m), 2); });
      case Resource::kSourcestamps:
        return by_id(
            Resource::kSourcestamps, "ssid", "sourcestamp", key, terminal, [self](json ss) {
              self->child_collection(ss, 2, "changes", Resource::kChanges, "sourcestampid", "ssid");
            });
      case Resource::kUsers:
        return by_id(Resource::kUsers, "uid", "user", key, terminal,
                     [](json) {});  // users have no sub-paths: `terminal` or no_path
    }
    no_path();
  }

  // "builds/12": the object itself when the path ends here, else `next`.
  void by_id(Resource resource, const char* id_field, const char* what, const std::string& key,
             bool terminal, Row next) {
    auto id = is_id(key) ? parse_int(key) : std::nullopt;
    if (!id) {
      return fail(KILN_ERR_NOT_FOUND,
                  std::string("no ") + what + " '" + key + "' (" + what + "s are named by id)");
    }
    std::string missing = std::string("no ") + what + " " + key;
    if (terminal) return single(resource, {eq(id_field, *id)}, std::nullopt, missing);
    if (resource == Resource::kUsers) return no_path();
    lookup(resource, {eq(id_field, *id)}, std::nullopt, std::move(missing), std::move(next));
  }

  // Builders and workers answer to their name as well as their id.
  void by_id_or_name(Resource resource, const char* id_field, const char* what,
                     const std::string& key, bool terminal, Row next) {
    if (is_id(key)) return by_id(resource, id_field, what, key, terminal, std::move(next));
    std::string missing = std::string("no ") + what + " named '" + key + "'";
    if (terminal) return single(resource, {eq("name", key)}, std::nullopt, missing);
    lookup(resource, {eq("name", key)}, std::nullopt, std::move(missing), std::move(next));
  }

  // ".../changes/12/builds" style: one collection below an object.
  // `scope_field` is the parent's id as the child knows it; the parent
  // object may call it otherwise (a sourcestamp's "ssid").
  void child_collection(const json& parent, size_t i, const char* child, Resource resource,
                        const char* scope_field, const char* parent_id = nullptr) {
    if (n() == i + 1 && seg(i) == child) {
      const char* id_key = parent_id ? parent_id : scope_field;
      return collection(resource, Scope{scope_field, parent.at(id_key).get<int64_t>()});
    }
    no_path();
  }

  void builder_rest(json builder, size_t i) {
    const int64_t builderid = builder.at("builderid").get<int64_t>();
    const std::string& part = seg(i);
    if (part == "builds") {
      if (n() == i + 1) return collection(Resource::kBuilds, Scope{"builderid", builderid});
      const std::string& number = seg(i + 1);
      std::string missing =
          "no build " + number + " on builder '" + builder.at("name").get<std::string>() + "'";
      if (!is_id(number)) return fail(KILN_ERR_NOT_FOUND, missing);
      std::vector<Filter> filters{eq("builderid", builderid), eq("number", *parse_int(number))};
      if (n() == i + 2) return single(Resource::kBuilds, filters, std::nullopt, missing);
      return lookup(Resource::kBuilds, filters, std::nullopt, missing,
                    [self = shared_from_this(), i](json build) {
                      self->build_rest(std::move(build), i + 2);
                    });
    }
    if (n() != i + 1) return no_path();
    if (part == "buildrequests") {
      return collection(Resource::kBuildrequests, Scope{"builderid", builderid});
    }
    if (part == "workers") return collection(Resource::kWorkers, Scope{"builderid", builderid});
    if (part == "masters") return collection(Resource::kMasters, Scope{"builderid", builderid});
    no_path();
  }

  // A change's builds, and its users (the user objects of its author, as
  // notifiers need them to find an address).
  void change_rest(json change, size_t i) {
    if (seg(i) == "users") {
      return child_collection(change, i, "users", Resource::kUsers, "changeid");
    }
    child_collection(change, i, "builds", Resource::kBuilds, "changeid");
  }

  void worker_rest(json worker, size_t i) {
    child_collection(worker, i, "builds", Resource::kBuilds, "workerid");
  }

  void master_rest(json master, size_t i) {
    const int64_t masterid = master.at("masterid").get<int64_t>();
    if (n() != i + 1) return no_path();
    if (seg(i) == "builders") return collection(Resource::kBuilders, Scope{"masterid", masterid});
    if (seg(i) == "workers") return collection(Resource::kWorkers, Scope{"masterid", masterid});
    no_path();
  }

  void build_rest(json build, size_t i) {
    const int64_t buildid = build.at("buildid").get<int64_t>();
    const std::string& part = seg(i);
    if (part == "steps") {
      if (n() == i + 1) return collection(Resource::kSteps, Scope{"buildid", buildid});
      const std::string& key = seg(i + 1);
      // A step is named by its number or its name, as in Buildbot.
      Filter filter = is_id(key) ? eq("number", *parse_int(key)) : eq("name", key);
      std::string missing = "no step '" + key + "' in build " + std::to_string(buildid);
      if (n() == i + 2) {
        return single(Resource::kSteps, {filter}, Scope{"buildid", buildid}, missing);
      }
      return lookup(
          Resource::kSteps, {filter}, Scope{"buildid", buildid}, missing,
          [self = shared_from_this(), i](json step) { self->step_rest(std::move(step), i + 2); });
    }
    if (n() != i + 1) return no_path();
    if (part == "changes") return collection(Resource::kChanges, Scope{"buildid", buildid});
    if (part == "properties") {
      return store_.build_properties(buildid, [self = shared_from_this()](store::Result<json> r) {
        if (!r.ok()) return self->fail(status_of(r.status.code), r.status.message);
        self->answer(std::move(r.value), false);
      });
    }
    no_path();
  }

  void step_rest(json step, size_t i) {
    const int64_t stepid = step.at("stepid").get<int64_t>();
    if (seg(i) != "logs") return no_path();
    if (n() == i + 1) return collection(Resource::kLogs, Scope{"stepid", stepid});
    const std::string& slug = seg(i + 1);
    std::string missing = "no log '" + slug + "' in step " + std::to_string(stepid);
    if (n() == i + 2) {
      return single(Resource::kLogs, {eq("slug", slug)}, Scope{"stepid", stepid}, missing);
    }
    lookup(Resource::kLogs, {eq("slug", slug)}, Scope{"stepid", stepid}, missing,
           [self = shared_from_this(), i](json log) { self->log_rest(std::move(log), i + 2); });
  }

  void log_rest(json log, size_t i) {
    if (n() != i + 1) return no_path();
    if (seg(i) == "contents") return contents(std::move(log));
    if (seg(i) == "raw") return raw(std::move(log));
    no_path();
  }

  void buildset_rest(json buildset, size_t i) {
    if (n() != i + 1 || seg(i) != "properties") return no_path();
    // The store has no buildset-properties read; a build request carries
    // its buildset's properties, and every buildset has at least one
    // request (one per builder), so read them through the first request.
    ResultSpec spec;
    spec.filters = {eq("buildsetid", buildset.at("bsid").get<int64_t>())};
    spec.limit = 1;
    spec.properties = {"*"};
    query(Resource::kBuildrequests, std::move(spec), [self = shared_from_this()](json rows) {
      json props = rows.empty() ? json::object() : rows[0].value("properties", json::object());
      self->answer(std::move(props), false);
    });
  }

  // ---- logs ----------------------------------------------------------------

  // Buildbot's logchunks: `offset` and `limit` count lines.
  void contents(json log) {
    const int64_t logid = log.at("logid").get<int64_t>();
    const int64_t first = query_.offset;
    if (query_.limit && *query_.limit == 0) {
      return answer(json{{"logid", logid}, {"firstline", first}, {"content", ""}});
    }
    // Without a limit, read to the end even if lines were appended since
    // the log row was read.
    int64_t last = std::numeric_limits<int64_t>::max();
    if (query_.limit && *query_.limit <= last - first) last = first + *query_.limit - 1;
    store_.log_lines(
        logid, first, last,
        [self = shared_from_this(), logid, first](store::Result<std::string> r) {
          if (!r.ok()) {
            return self->fail(status_of(r.status.code), r.status.message);
          }
          self->answer(
              json{{"logid", logid}, {"firstline", first}, {"content", std::move(r.value)}});
        });
  }

  // The whole log in one answer. The web server streams a download page by
  // page (log_page) instead of using this one-shot form, so a large log is
  // never held in memory whole; this form serves the ABI and `kiln data`.
  void raw(json log) {
    raw_log_ = std::move(log);
    auto self = shared_from_this();
    lookup(Resource::kSteps, {eq("stepid", raw_log_.at("stepid"))}, std::nullopt,
           "no step for log " + raw_log_.at("logid").dump(), [self](json step) {
             self->raw_step_ = std::move(step);
             self->lookup(
                 Resource::kBuilds, {eq("buildid", self->raw_step_.at("buildid"))}, std::nullopt,
                 "no build for step " + self->raw_step_.at("stepid").dump(), [self](json build) {
                   self->raw_build_ = std::move(build);
                   self->lookup(Resource::kBuilders,
                                {eq("builderid", self->raw_build_.at("builderid"))}, std::nullopt,
                                "no builder for build", [self](json builder) {
                                  self->raw_builder_ = std::move(builder);
                                  self->raw_start();
                                });
                 });
           });
  }

  void raw_page(int64_t from_line) {
    const int64_t logid = raw_log_.at("logid").get<int64_t>();
    store_.log_page(logid, from_line, kRawPageBytes,
                    [self = shared_from_this(), from_line](store::Result<store::LogPage> r) {
                      if (!r.ok()) return self->fail(status_of(r.status.code), r.status.message);
                      self->guarded([&] { self->raw_next(from_line, std::move(r.value)); });
                    });
  }

  // With a limit, only lines offset..offset+limit-1: a web server streams
  // a download through the ABI page by page this way.
  void raw_start() {
    if (!query_.limit) return raw_page(0);
    const int64_t logid = raw_log_.at("logid").get<int64_t>();
    const int64_t first = query_.offset;
    if (*query_.limit == 0) return raw_answer(std::string());
    const int64_t last = *query_.limit <= std::numeric_limits<int64_t>::max() - first
                             ? first + *query_.limit - 1
                             : std::numeric_limits<int64_t>::max();
    store_.log_lines(logid, first, last,
                     [self = shared_from_this()](store::Result<std::string> r) {
                       if (!r.ok()) return self->fail(status_of(r.status.code), r.status.message);
                       self->guarded([&] { self->raw_answer(std::move(r.value)); });
                     });
  }

  void raw_next(int64_t from_line, store::LogPage page) {
    raw_text_ += raw_log_.at("type") == "s" ? strip_stream_letters(page.text) : page.text;
    if (!page.end && page.next_line > from_line) return raw_page(page.next_line);
    raw_answer(std::move(raw_text_), false);
  }

  // `lines` as the store keeps them, or with their stream letters stripped
  // already when `strip` is false.
  void raw_answer(std::string lines, bool strip = true) {
    const bool stdio = strip && raw_log_.at("type") == "s";
    const bool html = raw_log_.at("type") == "h";
    answer(json{{"filename", raw_filename(raw_builder_.at("name").get<std::string>(),
                                          raw_build_.at("number").get<int64_t>(),
                                          raw_step_.at("name").get<std::string>(),
                                          raw_log_.at("slug").get<std::string>())},
                {"mime-type", html ? "text/html" : "text/plain"},
                {"content", stdio ? strip_stream_letters(lines) : std::move(lines)}},
           false);
  }

  store::Store& store_;
  std::string path_;
  std::vector<std::string> segs_;
  ParsedQuery query_;
  DataDone done_;
  bool answered_ = false;
  json raw_log_, raw_step_, raw_build_, raw_builder_;
  std::string raw_text_;
};

// ---- query strings ------------------------------------------------------------

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s, std::string_view param) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
      int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        throw std::invalid_argument("query parameter '" + std::string(param) +
                                    "': bad percent escape");
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// "a,b" -> ["a", "b"]; empty items are dropped.
std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

json url_value(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  if (auto n = parse_int(s)) return *n;
  return s;
}

int64_t url_count(const std::string& name, const std::string& value) {
  auto n = parse_int(value);
  if (!n || *n < 0) {
    throw std::invalid_argument("query parameter '" + name + "': '" + value +
                                "' is not a non-negative integer");
  }
  return *n;
}

}  // namespace

namespace {

// A "query_string" key (a REST query, as query_from_url parses it) gives
// the keys the JSON form does not set itself.
json with_query_string(const json& query) {
  if (!query.is_object() || !query.contains("query_string")) return query;
  const json& text = query["query_string"];
  if (!text.is_string()) throw std::invalid_argument("query 'query_string' must be a string");
  json merged = DataApi::query_from_url(text.get<std::string>());
  for (const auto& [key, value] : query.items()) {
    if (key != "query_string") merged[key] = value;
  }
  return merged;
}

}  // namespace

void DataApi::get(std::string_view path, const json& query, DataDone done) {
  ParsedQuery parsed;
  try {
    parsed = parse_query(with_query_string(query));
  } catch (const std::exception& e) {
    done(KILN_ERR_INVALID_ARGUMENT, json{{"error", e.what()}});
    return;
  }
  std::make_shared<GetOp>(store_, path, std::move(parsed), std::move(done))->start();
}

json DataApi::query_from_url(std::string_view query_string) {
  std::vector<std::string> fields, order, properties;
  std::optional<int64_t> limit, offset;
  // (field, op) -> values, in first-seen order so the result is stable.
  std::vector<std::pair<std::pair<std::string, std::string>, json>> filters;

  size_t pos = 0;
  while (pos <= query_string.size()) {
    size_t amp = query_string.find('&', pos);
    if (amp == std::string_view::npos) amp = query_string.size();
    std::string_view item = query_string.substr(pos, amp - pos);
    pos = amp + 1;
    if (item.empty()) continue;
    size_t eq_pos = item.find('=');
    std::string_view raw_name = item.substr(0, eq_pos);
    std::string name = url_decode(raw_name, raw_name);
    std::string value =
        eq_pos == std::string_view::npos ? "" : url_decode(item.substr(eq_pos + 1), name);
    if (name.empty())
      throw std::invalid_argument("query parameter with no name: '" + std::string(item) + "'");

    if (name == "field") {
      for (auto& f : split_commas(value)) fields.push_back(std::move(f));
    } else if (name == "order") {
      for (auto& o : split_commas(value)) order.push_back(std::move(o));
    } else if (name == "property") {
      for (auto& p : split_commas(value)) properties.push_back(std::move(p));
    } else if (name == "limit") {
      limit = url_count(name, value);
    } else if (name == "offset") {
      offset = url_count(name, value);
    } else {
      std::string field = name;
      std::string op = "eq";
      if (size_t sep = name.rfind("__"); sep != std::string::npos) {
        field = name.substr(0, sep);
        op = name.substr(sep + 2);
        if (!store::filter_op_from_name(op)) {
          throw std::invalid_argument("query parameter '" + name + "': unknown operator '" + op +
                                      "' (eq ne lt le gt ge contains in)");
        }
        if (field.empty()) {
          throw std::invalid_argument("query parameter '" + name + "' names no field");
        }
      }
      auto key = std::make_pair(field, op);
      auto it = std::find_if(filters.begin(), filters.end(),
                             [&](const auto& f) { return f.first == key; });
      if (it == filters.end()) {
        filters.push_back({key, json::array()});
        it = std::prev(filters.end());
      }
      // `in` takes a comma list; other operators take the value whole, and
      // repeating a parameter adds values (Buildbot: "repeated => in").
      if (op == "in") {
        for (const auto& v : split_commas(value)) it->second.push_back(url_value(v));
      } else {
        it->second.push_back(url_value(value));
      }
    }
  }

  json out = json::object();
  if (!filters.empty()) {
    json list = json::array();
    for (auto& [key, values] : filters) {
      list.push_back(json::array({key.first, key.second, std::move(values)}));
    }
    out["filters"] = std::move(list);
  }
  if (!fields.empty()) out["fields"] = fields;
  if (!order.empty()) out["order"] = order;
  if (!properties.empty()) out["property"] = properties;
  if (limit) out["limit"] = *limit;
  if (offset) out["offset"] = *offset;
  return out;
}

}  // namespace kiln::engine
