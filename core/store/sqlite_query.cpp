// The data API's reads over SQLite: Store::query(resource, spec) turns a
// ResultSpec into one SELECT with bound parameters (filters, parent scope,
// order, limit, offset), then fills the list-valued fields (tags, files,
// properties, sourcestamps, ...) with one indexed query per row of the page.
// Field names and JSON types are Buildbot's REST ones (data/*.py EntityType).

#include "store/sqlite_helpers.h"
#include "store/sqlite_store.h"

#include <kiln/sdk/base64.hpp>

#include <algorithm>
#include <map>
#include <unordered_map>
#include <variant>

namespace kiln::store {

using nlohmann::json;
using namespace sqlite_helpers;

namespace {

enum class Kind {
  kInt,
  kIntOrNull,
  kText,
  kTextOrNull,
  kBool,
  kJsonText,  // a column of JSON text, returned parsed
  kIdList,    // a nullable id column returned as [] or [id]
  kComputed,  // no column: filled per row
  // A boolean test that is filtered on but never returned: its `sql` is a
  // WHERE condition (no column), so a page asking "the newest build of
  // every builder" is one indexed query, not one per builder.
  kFlag,
};

using Filler = Status (*)(SqliteDb& db, json& row, const ResultSpec& spec);

struct Field {
  std::string_view name;
  std::string_view sql;  // the column expression; empty for kComputed
  Kind kind;
  // For list fields: an EXISTS test of one member, with `?` for the value;
  // `contains` on the field matches rows whose list holds the value.
  std::string_view member = {};
  Kind member_kind = Kind::kInt;
  // Runs after the columns are read: turns an id column into an object, or
  // adds a list.
  Filler fill = nullptr;
  // Fills every row at once, for pages of many rows: one query in place of
  // one per row.
  Status (*fill_all)(SqliteDb& db, json& rows) = nullptr;
};

struct ScopeDef {
  std::string_view field;
  std::string_view sql;  // every `?` is the parent's id
};

struct Table {
  std::string_view from;
  std::string_view id;  // the last sort key, so pages are stable
  std::vector<Field> fields;
  std::vector<ScopeDef> scopes;
};

using Param = std::variant<int64_t, std::string>;

Status invalid(std::string message) {
  return Status::error(StatusCode::kInvalidArgument, std::move(message));
}

// Read as a column of the SELECT.
bool selected(const Field& f) { return !f.sql.empty() && f.kind != Kind::kFlag; }

bool scalar(const Field& f) {
  return f.fill == nullptr &&
         (f.kind == Kind::kInt || f.kind == Kind::kIntOrNull || f.kind == Kind::kText ||
          f.kind == Kind::kTextOrNull || f.kind == Kind::kBool);
}

// ---- Per-row fillers ---------------------------------------------------------

// JSON strings must be UTF-8 or dumping them throws; a binary patch is shown
// with U+FFFD for the bytes that are not (the raw bytes stay in the store).
std::string utf8_text(std::string bytes) {
  json j = std::move(bytes);
  return json::parse(j.dump(-1, ' ', false, json::error_handler_t::replace))
      .get<std::string>();
}

Result<json> patch_json(SqliteDb& db, int64_t patchid) {
  auto q = db.query(
      "SELECT patchlevel, patch_base64, subdir, patch_author, patch_comment "
      "FROM patches WHERE id = ?");
  q.bind(1, patchid);
  int rc = q.step();
  if (rc == SQLITE_DONE) return {{}, nullptr};
  if (rc != SQLITE_ROW) return {db.error("reading patch"), {}};
  json subdir = q.is_null(2) ? json() : json(q.text(2));
  return {{},
          {{"patchid", patchid},
           {"level", q.int64(0)},
           {"body", utf8_text(sdk::base64_decode(q.text(1)).value_or(""))},
           {"subdir", subdir},
           {"author", q.text(3)},
           {"comment", q.text(4)}}};
}

Result<json> sourcestamp_json(SqliteDb& db, int64_t ssid) {
  json ss;
  std::optional<int64_t> patchid;
  {
    auto q = db.query(
        "SELECT branch, revision, project, repository, codebase, created_at, patchid "
        "FROM sourcestamps WHERE id = ?");
    q.bind(1, ssid);
    int rc = q.step();
    if (rc == SQLITE_DONE) return {{}, nullptr};
    if (rc != SQLITE_ROW) return {db.error("reading sourcestamp"), {}};
    auto text_or_null = [&](int c) { return q.is_null(c) ? json() : json(q.text(c)); };
    ss = {{"ssid", ssid},
          {"branch", text_or_null(0)},
          {"revision", text_or_null(1)},
          {"project", q.text(2)},
          {"repository", q.text(3)},
          {"codebase", q.text(4)},
          {"created_at", q.int64(5)},
          {"patch", nullptr}};
    patchid = optional_int(q, 6);
  }
  if (patchid) {
    auto patch = patch_json(db, *patchid);
    if (!patch.ok()) return patch;
    ss["patch"] = std::move(patch.value);
  }
  return {{}, std::move(ss)};
}

// Rows of `sql` (one `?` for `id`) turned into a JSON array by `make`.
template <class Make>
Result<json> list_of(SqliteDb& db, const char* sql, int64_t id, Make make) {
  auto q = db.query(sql);
  q.bind(1, id);
  json out = json::array();
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(make(q));
  if (rc != SQLITE_DONE) return {db.error("reading " + std::string(sql)), {}};
  return {{}, std::move(out)};
}

Status set_list(SqliteDb& db, json& row, const char* key, const char* sql, int64_t id,
                json (*make)(const Query&)) {
  auto list = list_of(db, sql, id, make);
  if (!list.ok()) return list.status;
  row[key] = std::move(list.value);
  return {};
}

json int0(const Query& q) { return q.int64(0); }
json text0(const Query& q) { return q.text(0); }

// {name: [value, source]} from rows (name, "[value, source]").
Status set_properties(SqliteDb& db, json& row, const char* sql, int64_t id,
                      const std::vector<std::string>& wanted) {
  const bool all = std::find(wanted.begin(), wanted.end(), "*") != wanted.end();
  auto q = db.query(sql);
  q.bind(1, id);
  json props = json::object();
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    std::string name = q.text(0);
    if (!all && std::find(wanted.begin(), wanted.end(), name) == wanted.end()) continue;
    props[name] = json::parse(q.text(1), nullptr, false);
  }
  if (rc != SQLITE_DONE) return db.error("reading properties");
  row["properties"] = std::move(props);
  return {};
}

Status fill_builder_masterids(SqliteDb& db, json& row, const ResultSpec&) {
  return set_list(
      db, row, "masterids",
      "SELECT masterid FROM builder_masters WHERE builderid = ? ORDER BY masterid",
      row["builderid"].get<int64_t>(), int0);
}

Status fill_builder_tags(SqliteDb& db, json& row, const ResultSpec&) {
  return set_list(db, row, "tags",
                  "SELECT t.name FROM builders_tags bt JOIN tags t ON t.id = bt.tagid "
                  "WHERE bt.builderid = ? ORDER BY t.name",
                  row["builderid"].get<int64_t>(), text0);
}

// Every builder's tags in one pass over builders_tags: 4,000 builders are
// one query, not 4,000.
Status fill_all_builder_tags(SqliteDb& db, json& rows) {
  std::unordered_map<int64_t, json*> by_id;
  by_id.reserve(rows.size());
  for (auto& row : rows) {
    row["tags"] = json::array();
    by_id.emplace(row["builderid"].get<int64_t>(), &row["tags"]);
  }
  auto q = db.query(
      "SELECT bt.builderid, t.name FROM builders_tags bt JOIN tags t ON t.id = bt.tagid "
      "ORDER BY t.name");
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    if (auto it = by_id.find(q.int64(0)); it != by_id.end()) it->second->push_back(q.text(1));
  }
  return rc == SQLITE_DONE ? Status{} : db.error("reading builder tags");
}

Status fill_build_properties(SqliteDb& db, json& row, const ResultSpec& spec) {
  if (spec.properties.empty()) return {};
  return set_properties(db, row,
                        "SELECT name, json_array(json(value), source) FROM "
                        "build_properties WHERE buildid = ? ORDER BY name",
                        row["buildid"].get<int64_t>(), spec.properties);
}

Status fill_request_properties(SqliteDb& db, json& row, const ResultSpec& spec) {
  if (spec.properties.empty()) return {};
  return set_properties(db, row,
                        "SELECT property_name, property_value FROM buildset_properties "
                        "WHERE buildsetid = ? ORDER BY property_name",
                        row["buildsetid"].get<int64_t>(), spec.properties);
}

Status fill_buildset_properties(SqliteDb& db, json& row, const ResultSpec& spec) {
  if (spec.properties.empty()) return {};
  return set_properties(db, row,
                        "SELECT property_name, property_value FROM buildset_properties "
                        "WHERE buildsetid = ? ORDER BY property_name",
                        row["bsid"].get<int64_t>(), spec.properties);
}

Status fill_change_files(SqliteDb& db, json& row, const ResultSpec&) {
  return set_list(db, row, "files",
                  "SELECT filename FROM change_files WHERE changeid = ? ORDER BY rowid",
                  row["changeid"].get<int64_t>(), text0);
}

Status fill_change_properties(SqliteDb& db, json& row, const ResultSpec&) {
  return set_properties(db, row,
                        "SELECT property_name, property_value FROM change_properties "
                        "WHERE changeid = ? ORDER BY property_name",
                        row["changeid"].get<int64_t>(), {"*"});
}

Status fill_change_sourcestamp(SqliteDb& db, json& row, const ResultSpec&) {
  auto ss = sourcestamp_json(db, row["sourcestamp"].get<int64_t>());
  if (!ss.ok()) return ss.status;
  row["sourcestamp"] = std::move(ss.value);
  return {};
}

Status fill_buildset_sourcestamps(SqliteDb& db, json& row, const ResultSpec&) {
  auto ids =
      list_of(db,
              "SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid = ? "
              "ORDER BY id",
              row["bsid"].get<int64_t>(), int0);
  if (!ids.ok()) return ids.status;
  json out = json::array();
  for (const auto& id : ids.value) {
    auto ss = sourcestamp_json(db, id.get<int64_t>());
    if (!ss.ok()) return ss.status;
    out.push_back(std::move(ss.value));
  }
  row["sourcestamps"] = std::move(out);
  return {};
}

Status fill_worker_connected_to(SqliteDb& db, json& row, const ResultSpec&) {
  return set_list(db, row, "connected_to",
                  "SELECT masterid FROM connected_workers WHERE workerid = ? "
                  "ORDER BY masterid",
                  row["workerid"].get<int64_t>(), [](const Query& q) {
                    return json{{"masterid", q.int64(0)}};
                  });
}

Status fill_worker_configured_on(SqliteDb& db, json& row, const ResultSpec&) {
  return set_list(
      db, row, "configured_on",
      "SELECT bm.builderid, bm.masterid FROM configured_workers cw JOIN "
      "builder_masters bm ON bm.id = cw.buildermasterid WHERE cw.workerid = ? "
      "ORDER BY bm.builderid, bm.masterid",
      row["workerid"].get<int64_t>(), [](const Query& q) {
        return json{{"builderid", q.int64(0)}, {"masterid", q.int64(1)}};
      });
}

Status fill_sourcestamp_patch(SqliteDb& db, json& row, const ResultSpec&) {
  if (row["patch"].is_null()) return {};
  auto patch = patch_json(db, row["patch"].get<int64_t>());
  if (!patch.ok()) return patch.status;
  row["patch"] = std::move(patch.value);
  return {};
}

Status fill_user_attributes(SqliteDb& db, json& row, const ResultSpec&) {
  auto q = db.query("SELECT attr_type, attr_data FROM users_info WHERE uid = ?");
  q.bind(1, row["uid"].get<int64_t>());
  json attrs = json::object();
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) attrs[q.text(0)] = q.text(1);
  if (rc != SQLITE_DONE) return db.error("reading user attributes");
  row["attributes"] = std::move(attrs);
  return {};
}

// ---- The resources -------------------------------------------------------------

// The buildsets a build ran for, as a subquery on `?` = buildid.
#define KILN_BUILD_BUILDSET                                             \
  "(SELECT r.buildsetid FROM builds b2 JOIN buildrequests r ON r.id = " \
  "b2.buildrequestid "                                                  \
  "WHERE b2.id = ?)"

const Table& table_of(Resource resource) {
  static const Table kBuilders{
      "builders b",
      "b.id",
      {{"builderid", "b.id", Kind::kInt},
       {"name", "b.name", Kind::kText},
       {"description", "b.description", Kind::kTextOrNull},
       {"description_format", "b.description_format", Kind::kTextOrNull},
       {"description_html", "b.description_html", Kind::kTextOrNull},
       {"projectid", "NULL", Kind::kIntOrNull},
       {"masterids", "", Kind::kComputed,
        "EXISTS (SELECT 1 FROM builder_masters bm WHERE bm.builderid = b.id AND "
        "bm.masterid = ?)",
        Kind::kInt, fill_builder_masterids},
       {"tags", "", Kind::kComputed,
        "EXISTS (SELECT 1 FROM builders_tags bt JOIN tags t ON t.id = bt.tagid WHERE "
        "bt.builderid = b.id AND t.name = ?)",
        Kind::kText, fill_builder_tags, fill_all_builder_tags}},
      {{"builderid", "b.id = ?"},
       {"masterid",
        "EXISTS (SELECT 1 FROM builder_masters bm WHERE bm.builderid = b.id AND "
        "bm.masterid = ?)"}}};
  static const Table kBuilds{
      "builds b",
      "b.id",
      {{"buildid", "b.id", Kind::kInt},
       {"number", "b.number", Kind::kInt},
       {"builderid", "b.builderid", Kind::kInt},
       {"buildrequestid", "b.buildrequestid", Kind::kInt},
       {"workerid", "b.workerid", Kind::kIntOrNull},
       {"masterid", "b.masterid", Kind::kInt},
       {"started_at", "b.started_at", Kind::kInt},
       {"complete", "b.complete_at IS NOT NULL", Kind::kBool},
       {"complete_at", "b.complete_at", Kind::kIntOrNull},
       {"results", "b.results", Kind::kIntOrNull},
       {"state_string", "b.state_string", Kind::kText},
       {"properties", "", Kind::kComputed, {}, Kind::kInt, fill_build_properties},
       // Filters only (never returned): the newest build of each builder,
       // and its newest finished one; an uncorrelated IN is computed once
       // per statement and drives rowid lookups.
       {"latest", "b.id IN (SELECT MAX(id) FROM builds GROUP BY builderid)", Kind::kFlag},
       {"latest_complete",
        "b.id IN (SELECT MAX(id) FROM builds WHERE complete_at IS NOT NULL GROUP BY builderid)",
        Kind::kFlag}},
      {{"builderid", "b.builderid = ?"},
       {"buildrequestid", "b.buildrequestid = ?"},
       {"workerid", "b.workerid = ?"},
       {"masterid", "b.masterid = ?"},
       {"changeid",
        "b.buildrequestid IN (SELECT r.id FROM buildrequests r WHERE r.buildsetid IN "
        "(SELECT buildsetid FROM buildset_changes WHERE changeid = ? UNION SELECT "
        "bss.buildsetid FROM buildset_sourcestamps bss JOIN changes c ON "
        "c.sourcestampid = bss.sourcestampid WHERE c.changeid = ?))"}}};
  static const Table kSteps{
      "steps s",
      "s.id",
      {{"stepid", "s.id", Kind::kInt},
       {"number", "s.number", Kind::kInt},
       {"name", "s.name", Kind::kText},
       {"buildid", "s.buildid", Kind::kInt},
       {"started_at", "s.started_at", Kind::kIntOrNull},
       {"locks_acquired_at", "s.locks_acquired_at", Kind::kIntOrNull},
       {"complete", "s.complete_at IS NOT NULL", Kind::kBool},
       {"complete_at", "s.complete_at", Kind::kIntOrNull},
       {"results", "s.results", Kind::kIntOrNull},
       {"state_string", "s.state_string", Kind::kText},
       {"urls", "s.urls_json", Kind::kJsonText},
       {"hidden", "s.hidden", Kind::kBool}},
      {{"buildid", "s.buildid = ?"}}};
  static const Table kLogs{"logs l",
                           "l.id",
                           {{"logid", "l.id", Kind::kInt},
                            {"name", "l.name", Kind::kText},
                            {"slug", "l.slug", Kind::kText},
                            {"stepid", "l.stepid", Kind::kInt},
                            {"complete", "l.complete", Kind::kBool},
                            {"num_lines", "l.num_lines", Kind::kInt},
                            {"type", "l.type", Kind::kText}},
                           {{"stepid", "l.stepid = ?"}}};
  static const Table kChanges{
      "changes c",
      "c.changeid",
      {{"changeid", "c.changeid", Kind::kInt},
       {"parent_changeids", "c.parent_changeids", Kind::kIdList, "c.parent_changeids = ?",
        Kind::kInt},
       {"author", "c.author", Kind::kText},
       {"committer", "c.committer", Kind::kTextOrNull},
       {"files", "", Kind::kComputed,
        "EXISTS (SELECT 1 FROM change_files f WHERE f.changeid = c.changeid AND "
        "f.filename = ?)",
        Kind::kText, fill_change_files},
       {"comments", "c.comments", Kind::kText},
       {"revision", "c.revision", Kind::kTextOrNull},
       {"when_timestamp", "c.when_timestamp", Kind::kInt},
       {"branch", "c.branch", Kind::kTextOrNull},
       {"category", "c.category", Kind::kTextOrNull},
       {"revlink", "c.revlink", Kind::kTextOrNull},
       {"properties", "", Kind::kComputed, {}, Kind::kInt, fill_change_properties},
       {"repository", "c.repository", Kind::kText},
       {"project", "c.project", Kind::kText},
       {"codebase", "c.codebase", Kind::kText},
       {"sourcestamp",
        "c.sourcestampid",
        Kind::kInt,
        {},
        Kind::kInt,
        fill_change_sourcestamp}},
      {{"sourcestampid", "c.sourcestampid = ?"},
       {"buildid",
        "(c.changeid IN (SELECT changeid FROM buildset_changes WHERE buildsetid "
        "IN " KILN_BUILD_BUILDSET ") OR c.sourcestampid IN (SELECT sourcestampid FROM "
        "buildset_sourcestamps WHERE buildsetid IN " KILN_BUILD_BUILDSET "))"}}};
  static const Table kBuildsets{
      "buildsets bs",
      "bs.id",
      {{"bsid", "bs.id", Kind::kInt},
       {"external_idstring", "bs.external_idstring", Kind::kTextOrNull},
       {"reason", "bs.reason", Kind::kTextOrNull},
       {"submitted_at", "bs.submitted_at", Kind::kInt},
       {"complete", "bs.complete", Kind::kBool},
       {"complete_at", "bs.complete_at", Kind::kIntOrNull},
       {"results", "bs.results", Kind::kIntOrNull},
       {"parent_buildid", "bs.parent_buildid", Kind::kIntOrNull},
       {"parent_relationship", "bs.parent_relationship", Kind::kTextOrNull},
       {"sourcestamps", "", Kind::kComputed, {}, Kind::kInt, fill_buildset_sourcestamps},
       {"properties", "", Kind::kComputed, {}, Kind::kInt, fill_buildset_properties}},
      {{"parent_buildid", "bs.parent_buildid = ?"}}};
  static const Table kBuildrequests{
      "buildrequests r LEFT JOIN buildrequest_claims cl ON cl.brid = r.id",
      "r.id",
      {{"buildrequestid", "r.id", Kind::kInt},
       {"buildsetid", "r.buildsetid", Kind::kInt},
       {"builderid", "r.builderid", Kind::kInt},
       {"priority", "r.priority", Kind::kInt},
       {"claimed", "cl.brid IS NOT NULL", Kind::kBool},
       {"claimed_at", "cl.claimed_at", Kind::kIntOrNull},
       {"claimed_by_masterid", "cl.masterid", Kind::kIntOrNull},
       {"complete", "r.complete", Kind::kBool},
       {"results", "r.results", Kind::kIntOrNull},
       {"submitted_at", "r.submitted_at", Kind::kInt},
       {"complete_at", "r.complete_at", Kind::kIntOrNull},
       {"waited_for", "r.waited_for", Kind::kBool},
       {"properties", "", Kind::kComputed, {}, Kind::kInt, fill_request_properties}},
      {{"builderid", "r.builderid = ?"},
       {"buildsetid", "r.buildsetid = ?"},
       // the requests whose buildset carries the change (changes/N stop)
       {"changeid",
        "r.buildsetid IN (SELECT buildsetid FROM buildset_changes WHERE changeid = ? UNION SELECT "
        "bss.buildsetid FROM buildset_sourcestamps bss JOIN changes c ON "
        "c.sourcestampid = bss.sourcestampid WHERE c.changeid = ?)"}}};
  static const Table kWorkers{
      "workers w",
      "w.id",
      {{"workerid", "w.id", Kind::kInt},
       {"name", "w.name", Kind::kText},
       {"workerinfo", "w.info", Kind::kJsonText},
       {"paused", "w.paused", Kind::kBool},
       {"graceful", "w.graceful", Kind::kBool},
       {"connected_to", "", Kind::kComputed, {}, Kind::kInt, fill_worker_connected_to},
       {"configured_on", "", Kind::kComputed, {}, Kind::kInt, fill_worker_configured_on}},
      {{"masterid",
        "EXISTS (SELECT 1 FROM configured_workers cw JOIN builder_masters bm ON "
        "bm.id = cw.buildermasterid WHERE cw.workerid = w.id AND bm.masterid = ?)"},
       {"builderid",
        "EXISTS (SELECT 1 FROM configured_workers cw JOIN builder_masters bm ON "
        "bm.id = cw.buildermasterid WHERE cw.workerid = w.id AND bm.builderid = ?)"}}};
  static const Table kMasters{
      "masters m",
      "m.id",
      {{"masterid", "m.id", Kind::kInt},
       {"name", "m.name", Kind::kText},
       {"active", "m.active", Kind::kBool},
       {"last_active", "m.last_active", Kind::kInt}},
      {{"builderid",
        "EXISTS (SELECT 1 FROM builder_masters bm WHERE bm.masterid = m.id AND "
        "bm.builderid = ?)"}}};
  static const Table kSourcestamps{
      "sourcestamps ss",
      "ss.id",
      {{"ssid", "ss.id", Kind::kInt},
       {"branch", "ss.branch", Kind::kTextOrNull},
       {"revision", "ss.revision", Kind::kTextOrNull},
       {"project", "ss.project", Kind::kText},
       {"repository", "ss.repository", Kind::kText},
       {"codebase", "ss.codebase", Kind::kText},
       {"created_at", "ss.created_at", Kind::kInt},
       {"patch", "ss.patchid", Kind::kIntOrNull, {}, Kind::kInt, fill_sourcestamp_patch}},
      {{"buildsetid",
        "ss.id IN (SELECT sourcestampid FROM buildset_sourcestamps WHERE buildsetid = "
        "?)"}}};
  static const Table kUsers{
      "users u",
      "u.uid",
      {{"uid", "u.uid", Kind::kInt},
       {"identifier", "u.identifier", Kind::kText},
       {"bb_username", "u.bb_username", Kind::kTextOrNull},
       {"attributes", "", Kind::kComputed, {}, Kind::kInt, fill_user_attributes}},
      {{"changeid", "u.uid IN (SELECT uid FROM change_users WHERE changeid = ?)"}}};

  switch (resource) {
    case Resource::kBuilders:
      return kBuilders;
    case Resource::kBuilds:
      return kBuilds;
    case Resource::kSteps:
      return kSteps;
    case Resource::kLogs:
      return kLogs;
    case Resource::kChanges:
      return kChanges;
    case Resource::kBuildsets:
      return kBuildsets;
    case Resource::kBuildrequests:
      return kBuildrequests;
    case Resource::kWorkers:
      return kWorkers;
    case Resource::kMasters:
      return kMasters;
    case Resource::kSourcestamps:
      return kSourcestamps;
    case Resource::kUsers:
      return kUsers;
  }
  return kBuilds;
}

#undef KILN_BUILD_BUILDSET

// ---- Assembling the SELECT ------------------------------------------------------

class SqlBuilder {
 public:
  SqlBuilder(const Table& table, std::string_view resource)
      : table_(table), resource_(resource) {}

  Status add_scope(const Scope& scope) {
    for (const auto& s : table_.scopes) {
      if (s.field == scope.field) {
        add_condition(std::string(s.sql), Param{scope.id});
        return {};
      }
    }
    return invalid(std::string(resource_) + " cannot be listed under a parent '" +
                   scope.field + "'");
  }

  Status add_filter(const Filter& filter) {
    const Field* field = find(filter.field);
    if (field == nullptr) return unknown(filter.field);
    if (filter.values.empty()) {
      return invalid("filter on '" + filter.field + "' of " + std::string(resource_) +
                     " has no value");
    }
    if (!field->member.empty()) return add_member_filter(*field, filter);
    if (field->kind == Kind::kFlag) return add_flag_filter(*field, filter);
    if (!scalar(*field)) {
      return invalid("field '" + filter.field + "' of " + std::string(resource_) +
                     " cannot be filtered");
    }
    std::vector<Param> values;
    bool has_null = false;
    for (const auto& v : filter.values) {
      if (v.is_null()) {
        has_null = true;
        continue;
      }
      auto p = convert(*field, field->kind, v);
      if (!p.ok()) return p.status;
      values.push_back(std::move(p.value));
    }
    const std::string expr = "(" + std::string(field->sql) + ")";
    switch (filter.op) {
      case FilterOp::kEq:
      case FilterOp::kIn:
        where_.push_back(equality(expr, values.size(), has_null));
        break;
      case FilterOp::kNe:
        // NULL differs from any value, as in Buildbot's Python comparison.
        where_.push_back("NOT coalesce(" + equality(expr, values.size(), has_null) +
                         ", 0)");
        break;
      case FilterOp::kLt:
      case FilterOp::kLe:
      case FilterOp::kGt:
      case FilterOp::kGe: {
        if (values.size() != 1 || has_null) {
          return invalid("filter on '" + filter.field +
                         "' with lt/le/gt/ge takes one value");
        }
        static const std::map<FilterOp, const char*> kSql{{FilterOp::kLt, " < ?"},
                                                          {FilterOp::kLe, " <= ?"},
                                                          {FilterOp::kGt, " > ?"},
                                                          {FilterOp::kGe, " >= ?"}};
        where_.push_back(expr + kSql.at(filter.op));
        break;
      }
      case FilterOp::kContains: {
        if (field->kind != Kind::kText && field->kind != Kind::kTextOrNull) {
          return invalid("filter 'contains' on '" + filter.field +
                         "' needs a text or list field");
        }
        if (has_null)
          return invalid("filter 'contains' on '" + filter.field + "' with null");
        std::string any;
        for (size_t i = 0; i < values.size(); ++i) {
          any += (i ? " OR " : "") + ("instr(" + expr + ", ?) > 0");
        }
        where_.push_back("(" + any + ")");
        break;
      }
    }
    params_.insert(params_.end(), values.begin(), values.end());
    return {};
  }

  Status add_order(const std::string& key) {
    const bool descending = key.starts_with('-');
    std::string name = descending ? key.substr(1) : key;
    const Field* field = find(name);
    if (field == nullptr) return unknown(name);
    if (!scalar(*field)) {
      return invalid("field '" + name + "' of " + std::string(resource_) +
                     " cannot be ordered by");
    }
    order_.push_back("(" + std::string(field->sql) + ")" + (descending ? " DESC" : ""));
    return {};
  }

  Status check_field(const std::string& name) const {
    return find(name) == nullptr ? unknown(name) : Status{};
  }

  Status set_page(std::optional<int64_t> limit, int64_t offset) {
    if ((limit && *limit < 0) || offset < 0) {
      return invalid("limit and offset must not be negative");
    }
    limit_ = limit.value_or(-1);
    offset_ = offset;
    return {};
  }

  std::string sql() const {
    std::string s = "SELECT ";
    bool first = true;
    for (const auto& f : table_.fields) {
      if (!selected(f)) continue;
      s += (first ? "" : ", ") + std::string(f.sql);
      first = false;
    }
    s += " FROM " + std::string(table_.from);
    for (size_t i = 0; i < where_.size(); ++i) {
      s += (i == 0 ? " WHERE " : " AND ") + where_[i];
    }
    s += " ORDER BY ";
    for (const auto& o : order_) s += o + ", ";
    s += std::string(table_.id) + " LIMIT ? OFFSET ?";
    return s;
  }

  // The rows sql() would find without LIMIT and OFFSET.
  std::string count_sql() const {
    std::string s = "SELECT COUNT(*) FROM " + std::string(table_.from);
    for (size_t i = 0; i < where_.size(); ++i) {
      s += (i == 0 ? " WHERE " : " AND ") + where_[i];
    }
    return s;
  }

  void bind(Query& q, bool with_page = true) const {
    int i = 1;
    for (const auto& p : params_) {
      if (const auto* n = std::get_if<int64_t>(&p)) {
        q.bind(i++, *n);
      } else {
        q.bind(i++, std::get<std::string>(p));
      }
    }
    if (!with_page) return;
    q.bind(i++, limit_);
    q.bind(i, offset_);
  }

 private:
  const Field* find(std::string_view name) const {
    for (const auto& f : table_.fields) {
      if (f.name == name) return &f;
    }
    return nullptr;
  }

  Status unknown(std::string_view name) const {
    return invalid("unknown field '" + std::string(name) + "' for " +
                   std::string(resource_));
  }

  // `sql` with every `?` bound to `value`.
  void add_condition(std::string sql, const Param& value) {
    for (char c : sql) {
      if (c == '?') params_.push_back(value);
    }
    where_.push_back("(" + std::move(sql) + ")");
  }

  static std::string equality(const std::string& expr, size_t n, bool has_null) {
    std::vector<std::string> parts;
    if (n == 1) parts.push_back(expr + " = ?");
    if (n > 1) {
      std::string list;
      for (size_t i = 0; i < n; ++i) list += i ? ", ?" : "?";
      parts.push_back(expr + " IN (" + list + ")");
    }
    if (has_null) parts.push_back(expr + " IS NULL");
    std::string out = "(";
    for (size_t i = 0; i < parts.size(); ++i) out += (i ? " OR " : "") + parts[i];
    return out + ")";
  }

  // The condition itself rather than `(condition) = 1`, so SQLite can
  // drive the lookup from it.
  Status add_flag_filter(const Field& field, const Filter& filter) {
    if ((filter.op != FilterOp::kEq && filter.op != FilterOp::kNe) ||
        filter.values.size() != 1) {
      return invalid("filter on '" + filter.field + "' of " + std::string(resource_) +
                     " takes one true or false with eq or ne");
    }
    auto p = convert(field, Kind::kBool, filter.values[0]);
    if (!p.ok()) return p.status;
    const bool wanted = (std::get<int64_t>(p.value) != 0) == (filter.op == FilterOp::kEq);
    where_.push_back((wanted ? "(" : "NOT (") + std::string(field.sql) + ")");
    return {};
  }

  Status add_member_filter(const Field& field, const Filter& filter) {
    if (filter.op != FilterOp::kContains) {
      return invalid("field '" + filter.field + "' of " + std::string(resource_) +
                     " is a list: filter it with 'contains'");
    }
    std::string any;
    std::vector<Param> values;
    for (const auto& v : filter.values) {
      auto p = convert(field, field.member_kind, v);
      if (!p.ok()) return p.status;
      any += (any.empty() ? "" : " OR ") + std::string(field.member);
      values.push_back(std::move(p.value));
    }
    where_.push_back("(" + any + ")");
    params_.insert(params_.end(), values.begin(), values.end());
    return {};
  }

  // A filter value as the column's type; URLs hand every value over as text.
  Result<Param> convert(const Field& field, Kind kind, const json& v) const {
    auto bad = [&](std::string_view want) -> Result<Param> {
      return {invalid("filter on '" + std::string(field.name) + "' of " +
                      std::string(resource_) + ": " + v.dump() + " is not " +
                      std::string(want)),
              {}};
    };
    switch (kind) {
      case Kind::kBool:
        if (v.is_boolean()) return {{}, Param{int64_t{v.get<bool>()}}};
        if (v.is_number_integer() && (v == 0 || v == 1))
          return {{}, Param{v.get<int64_t>()}};
        if (v.is_string()) {
          const auto& s = v.get_ref<const std::string&>();
          if (s == "true" || s == "1" || s == "yes") return {{}, Param{int64_t{1}}};
          if (s == "false" || s == "0" || s == "no") return {{}, Param{int64_t{0}}};
        }
        return bad("a boolean");
      case Kind::kText:
      case Kind::kTextOrNull:
        if (v.is_string()) return {{}, Param{v.get<std::string>()}};
        if (v.is_number() || v.is_boolean()) return {{}, Param{v.dump()}};
        return bad("text");
      default:
        if (v.is_number_integer()) return {{}, Param{v.get<int64_t>()}};
        if (v.is_string()) {
          const auto& s = v.get_ref<const std::string&>();
          try {
            size_t used = 0;
            int64_t n = std::stoll(s, &used);
            if (used == s.size()) return {{}, Param{n}};
          } catch (const std::exception&) {
          }
        }
        return bad("an integer");
    }
  }

  const Table& table_;
  std::string_view resource_;
  std::vector<std::string> where_;
  std::vector<std::string> order_;
  std::vector<Param> params_;
  int64_t limit_ = -1;
  int64_t offset_ = 0;
};

json read_column(const Query& q, int column, Kind kind) {
  switch (kind) {
    case Kind::kInt:
      return q.int64(column);
    case Kind::kIntOrNull:
      return q.is_null(column) ? json() : json(q.int64(column));
    case Kind::kText:
      return q.text(column);
    case Kind::kTextOrNull:
      return q.is_null(column) ? json() : json(q.text(column));
    case Kind::kBool:
      return q.int64(column) != 0;
    case Kind::kJsonText:
      return q.is_null(column) ? json() : json::parse(q.text(column), nullptr, false);
    case Kind::kIdList:
      return q.is_null(column) ? json::array() : json::array({q.int64(column)});
    case Kind::kComputed:
    case Kind::kFlag:
      break;
  }
  return nullptr;
}

}  // namespace

namespace {

// Checked and assembled on the caller's thread; the store thread only runs
// the statement.
Status build_query(SqlBuilder& builder, const ResultSpec& spec) {
  Status status;
  if (spec.parent) status = builder.add_scope(*spec.parent);
  for (size_t i = 0; status.ok() && i < spec.filters.size(); ++i) {
    status = builder.add_filter(spec.filters[i]);
  }
  for (size_t i = 0; status.ok() && i < spec.order.size(); ++i) {
    status = builder.add_order(spec.order[i]);
  }
  for (size_t i = 0; status.ok() && i < spec.fields.size(); ++i) {
    status = builder.check_field(spec.fields[i]);
  }
  if (status.ok()) status = builder.set_page(spec.limit, spec.offset);
  return status;
}

}  // namespace

void SqliteStore::count(Resource resource, ResultSpec spec, Completion<int64_t> done) {
  SqlBuilder builder(table_of(resource), resource_name(resource));
  if (Status status = build_query(builder, spec); !status.ok()) {
    return submit_error(std::move(status), std::move(done));
  }
  submit<int64_t>(
      false,
      [builder = std::move(builder)](SqliteDb& db) -> Result<int64_t> {
        auto q = db.query_once(builder.count_sql());
        if (!q.valid()) return {db.error("preparing data API count"), 0};
        builder.bind(q, false);
        if (q.step() != SQLITE_ROW) return {db.error("running data API count"), 0};
        return {{}, q.int64(0)};
      },
      std::move(done));
}

void SqliteStore::query(Resource resource, ResultSpec spec, Completion<json> done) {
  const Table& table = table_of(resource);
  SqlBuilder builder(table, resource_name(resource));
  if (Status status = build_query(builder, spec); !status.ok()) {
    return submit_error(std::move(status), std::move(done));
  }

  submit<json>(
      false,
      [&table, builder = std::move(builder),
       spec = std::move(spec)](SqliteDb& db) -> Result<json> {
        auto q = db.query_once(builder.sql());
        if (!q.valid()) return {db.error("preparing data API query"), {}};
        builder.bind(q);
        json rows = json::array();
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          json row = json::object();
          int column = 0;
          for (const auto& f : table.fields) {
            if (!selected(f)) continue;
            row[std::string(f.name)] = read_column(q, column++, f.kind);
          }
          rows.push_back(std::move(row));
        }
        if (rc != SQLITE_DONE) return {db.error("running data API query"), {}};
        // A list field the caller's `fields` leaves out is not read at
        // all: 4,000 builders without their masterids are 4,000 queries
        // fewer.
        auto wanted = [&spec](const Field& f) {
          return spec.fields.empty() ||
                 std::find(spec.fields.begin(), spec.fields.end(), f.name) != spec.fields.end();
        };
        // Past this many rows a whole-table pass beats a query per row.
        constexpr size_t kFillAllRows = 64;
        for (const auto& f : table.fields) {
          if (f.fill_all == nullptr || rows.size() < kFillAllRows || !wanted(f)) continue;
          if (auto s = f.fill_all(db, rows); !s.ok()) return {s, {}};
        }
        for (auto& row : rows) {
          for (const auto& f : table.fields) {
            if (f.fill == nullptr || !wanted(f)) continue;
            if (f.fill_all != nullptr && rows.size() >= kFillAllRows) continue;
            if (auto s = f.fill(db, row, spec); !s.ok()) return {s, {}};
          }
        }
        return {{}, std::move(rows)};
      },
      std::move(done));
}

}  // namespace kiln::store
