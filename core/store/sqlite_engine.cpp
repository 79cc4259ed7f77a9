// The SQLite backend of the engine's calls (store.h "The build engine's
// calls"): changes, buildsets and requests, builders and workers, builds,
// steps, logs, crash recovery and retention. Each call is one job of the
// group-commit queue, so everything it writes commits or rolls back together.

#include "store/log_chunks.h"
#include "store/sqlite_helpers.h"
#include "store/sqlite_store.h"

#include <kiln/sdk/base64.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <set>

namespace kiln::store {

using nlohmann::json;
using namespace sqlite_helpers;

namespace {

// Buildbot's MAX_CHUNK_SIZE: a log chunk row holds at most this much text
// (a longer single line gets a chunk of its own).
constexpr size_t kMaxChunkBytes = 64 * 1024;
// Below this a chunk is stored raw: zstd's frame would eat most of the gain,
// and reading a raw chunk costs nothing.
constexpr size_t kCompressAbove = 256;
// finish_log merges runs of chunks stored smaller than this (a step that
// printed a line at a time) into chunks of up to kMaxChunkBytes.
constexpr int64_t kSmallChunkBytes = 4096;
// Buildbot's identifier length limit for step names and log slugs.
constexpr size_t kMaxIdentifier = 50;

Status invalid(std::string message) {
  return Status::error(StatusCode::kInvalidArgument, std::move(message));
}

// {name: [value, "source"]}, as Buildbot's properties columns hold them.
Status check_properties(const json& properties, std::string_view owner) {
  if (properties.is_null()) return {};
  if (!properties.is_object()) {
    return invalid(std::string(owner) + " properties must be a JSON object");
  }
  for (const auto& [name, entry] : properties.items()) {
    if (!entry.is_array() || entry.size() != 2 || !entry[1].is_string()) {
      return invalid(std::string(owner) + " property '" + name +
                     "' must be [value, \"source\"]");
    }
  }
  return {};
}

// Buildbot's identifiers.forceIdentifier: characters outside
// [A-Za-z0-9_-] (and non-ASCII) become '_', a leading digit too.
std::string force_identifier(std::string_view name) {
  std::string out;
  for (unsigned char c : name) {
    bool ok = std::isalnum(c) != 0 || c == '_' || c == '-' || c >= 0x80;
    if (out.empty() && std::isdigit(c) != 0) ok = false;
    out += ok ? static_cast<char>(c) : '_';
  }
  if (out.empty()) out = "_";
  return out;
}

// At most kMaxIdentifier bytes, not cutting a UTF-8 sequence.
std::string clip_identifier(std::string s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  s.resize(n);
  return s;
}

// Buildbot's incrementIdentifier: "name", then "name_2", "name_3", ...,
// shortening the base so the suffix fits.
template <class Taken>
Result<std::string> first_free_identifier(const std::string& base, Taken taken) {
  std::string candidate = clip_identifier(base, kMaxIdentifier);
  for (int n = 2;; ++n) {
    auto t = taken(candidate);
    if (!t.ok()) return {t.status, {}};
    if (!t.value) return {{}, candidate};
    std::string suffix = "_" + std::to_string(n);
    candidate = clip_identifier(base, kMaxIdentifier - suffix.size()) + suffix;
  }
}

Result<bool> name_taken(SqliteDb& db, const std::string& sql, int64_t owner,
                        const std::string& name, std::string_view what) {
  auto q = db.query(sql);
  q.bind(1, owner).bind(2, name);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {{}, true};
  if (rc == SQLITE_DONE) return {{}, false};
  return {db.error(what), false};
}

Status insert_properties(SqliteDb& db, const std::string& sql, int64_t owner,
                         const json& properties, std::string_view what) {
  if (!properties.is_object()) return {};
  for (const auto& [name, entry] : properties.items()) {
    auto q = db.query(sql);
    q.bind(1, owner).bind(2, name).bind(3, entry.dump());
    if (auto s = q.run(what); !s.ok()) return s;
  }
  return {};
}

// Buildbot's findSourceStampId: one row per distinct stamp. ss_hash is the
// stamp's canonical JSON text rather than a sha1 of it: exact, and SQLite
// indexes long text without a length limit.
Result<int64_t> find_or_create_sourcestamp(SqliteDb& db, const SourceStampSpec& ss,
                                           int64_t created_at) {
  auto opt = [](const std::optional<std::string>& v) { return v ? json(*v) : json(); };
  json patch;
  if (ss.patch) {
    // base64: a patch may be binary, and JSON text must be UTF-8.
    patch = json::array({ss.patch->level, sdk::base64_encode(ss.patch->body),
                         opt(ss.patch->subdir), ss.patch->author, ss.patch->comment});
  }
  const std::string hash = json::array({opt(ss.branch), opt(ss.revision), ss.repository,
                                        ss.project, ss.codebase, patch})
                               .dump();
  {
    auto q = db.query("SELECT id FROM sourcestamps WHERE ss_hash = ?");
    q.bind(1, hash);
    int rc = q.step();
    if (rc == SQLITE_ROW) return {{}, q.int64(0)};
    if (rc != SQLITE_DONE) return {db.error("finding sourcestamp"), 0};
  }
  std::optional<int64_t> patchid;
  if (ss.patch) {
    auto q = db.query(
        "INSERT INTO patches(patchlevel, patch_base64, patch_author, patch_comment, "
        "subdir) VALUES (?, ?, ?, ?, ?) RETURNING id");
    q.bind(1, ss.patch->level)
        .bind(2, sdk::base64_encode(ss.patch->body))
        .bind(3, ss.patch->author)
        .bind(4, ss.patch->comment);
    bind_optional(q, 5, ss.patch->subdir);
    auto id = single_int(db, q, "adding patch");
    if (!id.ok()) return id;
    patchid = id.value;
  }
  auto q = db.query(
      "INSERT INTO sourcestamps(ss_hash, branch, revision, patchid, repository, "
      "codebase, project, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id");
  q.bind(1, hash);
  bind_optional(q, 2, ss.branch);
  bind_optional(q, 3, ss.revision);
  bind_optional(q, 4, patchid);
  q.bind(5, ss.repository).bind(6, ss.codebase).bind(7, ss.project).bind(8, created_at);
  return single_int(db, q, "adding sourcestamp");
}

struct ChunkRow {
  int64_t first_line = 0;
  int64_t last_line = 0;
  std::string text;
};

Status insert_chunk(SqliteDb& db, int64_t logid, int64_t first_line, int64_t last_line,
                    std::string_view text) {
  EncodedChunk chunk;
  if (text.size() > kCompressAbove) {
    chunk = encode_log_chunk(text);
  } else {
    chunk.bytes.assign(text.begin(), text.end());
  }
  auto q = db.query(
      "INSERT INTO logchunks(logid, first_line, last_line, content, compressed) "
      "VALUES (?, ?, ?, ?, ?)");
  q.bind(1, logid).bind(2, first_line).bind(3, last_line);
  q.bind_blob(4, chunk.bytes).bind(5, static_cast<int64_t>(chunk.compression));
  return q.run("appending to log");
}

// The chunks of log `logid` holding lines from `from_line` on, oldest first.
// The lower bound is the first_line of the chunk holding from_line, so
// SQLite walks logchunks_firstline from there and reads nothing before it.
constexpr const char* kChunksFrom =
    "SELECT first_line, last_line, content, compressed FROM logchunks "
    "WHERE logid = ?1 AND first_line >= coalesce((SELECT max(first_line) FROM "
    "logchunks WHERE logid = ?1 AND first_line <= ?2), 0) AND first_line <= ?3 "
    "ORDER BY first_line";

Result<std::string> decode_row(const Query& q) {
  auto code = static_cast<ChunkCompression>(q.int64(3));
  return decode_log_chunk(q.blob(2), code);
}

// The text of lines [from, to] of a chunk starting at chunk_first.
std::string_view slice_lines(std::string_view text, int64_t chunk_first, int64_t from,
                             int64_t to) {
  size_t begin = 0;
  for (int64_t line = chunk_first; line < from && begin < text.size(); ++line) {
    size_t nl = text.find('\n', begin);
    begin = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  size_t end = begin;
  for (int64_t line = std::max(from, chunk_first); line <= to && end < text.size();
       ++line) {
    size_t nl = text.find('\n', end);
    end = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return text.substr(begin, end - begin);
}

// Up to `limit` log chunks of `builderid`'s builds completed before
// `older_than`, deleted; returns how many, and the logs they belonged to.
Result<int64_t> delete_old_chunks(SqliteDb& db, int64_t builderid, int64_t older_than,
                                  int64_t limit, std::set<int64_t>* logids) {
  std::vector<std::pair<int64_t, int64_t>> rows;  // rowid, logid
  {
    auto q = db.query(
        "SELECT c.rowid, c.logid FROM builds b JOIN steps s ON s.buildid = b.id "
        "JOIN logs l ON l.stepid = s.id JOIN logchunks c ON c.logid = l.id "
        "WHERE b.builderid = ? AND b.complete_at < ? AND l.type != 'd' LIMIT ?");
    q.bind(1, builderid).bind(2, older_than).bind(3, limit);
    int rc;
    while ((rc = q.step()) == SQLITE_ROW) rows.emplace_back(q.int64(0), q.int64(1));
    if (rc != SQLITE_DONE) return {db.error("finding old log chunks"), 0};
  }
  for (const auto& [rowid, logid] : rows) {
    auto q = db.query("DELETE FROM logchunks WHERE rowid = ?");
    q.bind(1, rowid);
    if (auto s = q.run("deleting old log chunks"); !s.ok()) return {s, 0};
    if (logids != nullptr) logids->insert(logid);
  }
  return {{}, static_cast<int64_t>(rows.size())};
}

Status check_results(int results) {
  if (results < results::kSuccess || results > results::kCancelled) {
    return invalid("results " + std::to_string(results) + " is not a result code (0-6)");
  }
  return {};
}

// An UPDATE of one row by id: kNotFound when the id matches nothing.
Status update_one(SqliteDb& db, Query& q, std::string_view what, int64_t id) {
  if (auto s = q.run(std::string("updating ") + std::string(what)); !s.ok()) return s;
  if (db.changes() == 0) return not_found(what, id);
  return {};
}

std::vector<int64_t> unique_ids(std::vector<int64_t> ids) {
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  for (int64_t id : ids) {
    if (seen.insert(id).second) out.push_back(id);
  }
  return out;
}

}  // namespace

// ---- Changes and users -----------------------------------------------------

void SqliteStore::add_change(ChangeRecord change, Completion<int64_t> done) {
  if (auto s = check_properties(change.properties, "change"); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<int64_t>(
      true,
      [c = std::move(change)](SqliteDb& db) -> Result<int64_t> {
        SourceStampSpec ss;
        ss.branch = c.branch;
        ss.revision = c.revision;
        ss.repository = c.repository;
        ss.project = c.project;
        ss.codebase = c.codebase;
        auto ssid = find_or_create_sourcestamp(db, ss, c.when_timestamp);
        if (!ssid.ok()) return ssid;

        std::optional<int64_t> parent = c.parent_changeid;
        if (!parent) {
          auto q = db.query(
              "SELECT changeid FROM changes WHERE branch IS ? AND repository = ? AND "
              "project = ? AND codebase = ? ORDER BY changeid DESC LIMIT 1");
          bind_optional(q, 1, c.branch);
          q.bind(2, c.repository).bind(3, c.project).bind(4, c.codebase);
          int rc = q.step();
          if (rc == SQLITE_ROW)
            parent = q.int64(0);
          else if (rc != SQLITE_DONE)
            return {db.error("finding parent change"), 0};
        }

        auto q = db.query(
            "INSERT INTO changes(author, committer, comments, branch, revision, revlink, "
            "when_timestamp, category, repository, codebase, project, sourcestampid, "
            "parent_changeids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING changeid");
        q.bind(1, c.author);
        bind_optional(q, 2, c.committer);
        q.bind(3, c.comments);
        bind_optional(q, 4, c.branch);
        bind_optional(q, 5, c.revision);
        bind_optional(q, 6, c.revlink);
        q.bind(7, c.when_timestamp);
        bind_optional(q, 8, c.category);
        q.bind(9, c.repository).bind(10, c.codebase).bind(11, c.project);
        q.bind(12, ssid.value);
        bind_optional(q, 13, parent);
        auto changeid = single_int(db, q, "adding change");
        if (!changeid.ok()) return changeid;

        for (const auto& file : c.files) {
          auto f = db.query("INSERT INTO change_files(changeid, filename) VALUES (?, ?)");
          f.bind(1, changeid.value).bind(2, file);
          if (auto s = f.run("adding change files"); !s.ok()) return {s, 0};
        }
        if (auto s = insert_properties(
                db,
                "INSERT INTO change_properties(changeid, property_name, property_value) "
                "VALUES (?, ?, ?)",
                changeid.value, c.properties, "adding change properties");
            !s.ok()) {
          return {s, 0};
        }
        for (int64_t uid : unique_ids(c.uids)) {
          if (auto s = require_row(db, "SELECT 1 FROM users WHERE uid = ?", uid, "user");
              !s.ok()) {
            return {s, 0};
          }
          auto u = db.query("INSERT INTO change_users(changeid, uid) VALUES (?, ?)");
          u.bind(1, changeid.value).bind(2, uid);
          if (auto s = u.run("linking change user"); !s.ok()) return {s, 0};
        }
        return changeid;
      },
      std::move(done));
}

void SqliteStore::find_or_create_user(std::string identifier, std::string attr_type,
                                      std::string attr_data, Completion<int64_t> done) {
  submit<int64_t>(
      true,
      [identifier = std::move(identifier), attr_type = std::move(attr_type),
       attr_data = std::move(attr_data)](SqliteDb& db) -> Result<int64_t> {
        {
          auto q = db.query(
              "SELECT uid FROM users_info WHERE attr_type = ? AND attr_data = ?");
          q.bind(1, attr_type).bind(2, attr_data);
          int rc = q.step();
          if (rc == SQLITE_ROW) return {{}, q.int64(0)};
          if (rc != SQLITE_DONE) return {db.error("finding user"), 0};
        }
        // Two people may share a display name; the identifier stays unique.
        std::string candidate = identifier;
        for (int n = 2;; ++n) {
          auto q = db.query("SELECT 1 FROM users WHERE identifier = ?");
          q.bind(1, candidate);
          int rc = q.step();
          if (rc == SQLITE_DONE) break;
          if (rc != SQLITE_ROW) return {db.error("finding user"), 0};
          candidate = identifier + "_" + std::to_string(n);
        }
        auto q = db.query("INSERT INTO users(identifier) VALUES (?) RETURNING uid");
        q.bind(1, candidate);
        auto uid = single_int(db, q, "adding user");
        if (!uid.ok()) return uid;
        auto i = db.query(
            "INSERT INTO users_info(uid, attr_type, attr_data) VALUES (?, ?, ?)");
        i.bind(1, uid.value).bind(2, attr_type).bind(3, attr_data);
        if (auto s = i.run("adding user"); !s.ok()) return {s, 0};
        return uid;
      },
      std::move(done));
}

// ---- Buildsets -------------------------------------------------------------

void SqliteStore::add_buildset(BuildsetRequest request, Completion<BuildsetIds> done) {
  if (auto s = check_properties(request.properties, "buildset"); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<BuildsetIds>(
      true,
      [r = std::move(request)](SqliteDb& db) -> Result<BuildsetIds> {
        BuildsetIds out;
        auto q = db.query(
            "INSERT INTO buildsets(external_idstring, reason, submitted_at, complete, "
            "parent_buildid, parent_relationship) VALUES (?, ?, ?, 0, ?, ?) RETURNING "
            "id");
        bind_optional(q, 1, r.external_idstring);
        q.bind(2, r.reason).bind(3, r.submitted_at);
        bind_optional(q, 4, r.parent_buildid);
        bind_optional(q, 5, r.parent_relationship);
        auto bsid = single_int(db, q, "adding buildset");
        if (!bsid.ok()) return {bsid.status, {}};
        out.bsid = bsid.value;

        if (auto s = insert_properties(
                db,
                "INSERT INTO buildset_properties(buildsetid, property_name, "
                "property_value) VALUES (?, ?, ?)",
                out.bsid, r.properties, "adding buildset properties");
            !s.ok()) {
          return {s, {}};
        }
        for (const auto& ss : r.sourcestamps) {
          auto ssid = find_or_create_sourcestamp(db, ss, r.submitted_at);
          if (!ssid.ok()) return {ssid.status, {}};
          auto l = db.query(
              "INSERT INTO buildset_sourcestamps(buildsetid, sourcestampid) "
              "VALUES (?, ?) ON CONFLICT DO NOTHING");
          l.bind(1, out.bsid).bind(2, ssid.value);
          if (auto s = l.run("adding buildset sourcestamps"); !s.ok()) return {s, {}};
          for (int64_t changeid : ss.changeids) {
            if (auto s = require_row(db, "SELECT 1 FROM changes WHERE changeid = ?",
                                     changeid, "change");
                !s.ok()) {
              return {s, {}};
            }
            auto c = db.query(
                "INSERT INTO buildset_changes(buildsetid, changeid) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING");
            c.bind(1, out.bsid).bind(2, changeid);
            if (auto s = c.run("adding buildset changes"); !s.ok()) return {s, {}};
          }
        }
        for (int64_t builderid : unique_ids(r.builderids)) {
          if (auto s = require_row(db, "SELECT 1 FROM builders WHERE id = ?", builderid,
                                   "builder");
              !s.ok()) {
            return {s, {}};
          }
          auto b = db.query(
              "INSERT INTO buildrequests(buildsetid, builderid, priority, complete, "
              "submitted_at, waited_for) VALUES (?, ?, ?, 0, ?, ?) RETURNING id");
          b.bind(1, out.bsid).bind(2, builderid).bind(3, r.priority);
          b.bind(4, r.submitted_at).bind(5, int64_t{r.waited_for});
          auto brid = single_int(db, b, "adding build request");
          if (!brid.ok()) return {brid.status, {}};
          out.brids[builderid] = brid.value;
        }
        return {{}, std::move(out)};
      },
      std::move(done));
}

void SqliteStore::complete_buildset(int64_t bsid, int results, int64_t complete_at,
                                    Completion<void> done) {
  if (auto s = check_results(results); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<void>(
      true,
      [bsid, results, complete_at](SqliteDb& db) -> Status {
        auto q = db.query(
            "UPDATE buildsets SET complete = 1, results = ?, complete_at = ? "
            "WHERE id = ? AND complete = 0");
        q.bind(1, int64_t{results}).bind(2, complete_at).bind(3, bsid);
        if (auto s = q.run("completing buildset"); !s.ok()) return s;
        if (db.changes() == 1) return {};
        if (auto s =
                require_row(db, "SELECT 1 FROM buildsets WHERE id = ?", bsid, "buildset");
            !s.ok()) {
          return s;
        }
        return invalid("buildset " + std::to_string(bsid) + " is already complete");
      },
      std::move(done));
}

// ---- Builders and workers ----------------------------------------------------

void SqliteStore::ensure_builder(std::string name, std::optional<std::string> description,
                                 std::vector<std::string> tags,
                                 Completion<int64_t> done) {
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  submit<int64_t>(
      true,
      [name = std::move(name), description = std::move(description),
       tags = std::move(tags)](SqliteDb& db) -> Result<int64_t> {
        auto q = db.query(
            "INSERT INTO builders(name, description) VALUES (?, ?) ON CONFLICT(name) "
            "DO UPDATE SET description = excluded.description RETURNING id");
        q.bind(1, name);
        bind_optional(q, 2, description);
        auto id = single_int(db, q, "adding builder");
        if (!id.ok()) return id;
        auto clear = db.query("DELETE FROM builders_tags WHERE builderid = ?");
        clear.bind(1, id.value);
        if (auto s = clear.run("updating builder tags"); !s.ok()) return {s, 0};
        for (const auto& tag : tags) {
          auto t = db.query("INSERT INTO tags(name) VALUES (?) ON CONFLICT DO NOTHING");
          t.bind(1, tag);
          if (auto s = t.run("adding tag"); !s.ok()) return {s, 0};
          auto l = db.query(
              "INSERT INTO builders_tags(builderid, tagid) SELECT ?, id FROM tags "
              "WHERE name = ?");
          l.bind(1, id.value).bind(2, tag);
          if (auto s = l.run("updating builder tags"); !s.ok()) return {s, 0};
        }
        return id;
      },
      std::move(done));
}

void SqliteStore::list_builders(Completion<std::vector<BuilderRecord>> done) {
  submit<std::vector<BuilderRecord>>(
      false,
      [](SqliteDb& db) -> Result<std::vector<BuilderRecord>> {
        std::vector<BuilderRecord> out;
        std::map<int64_t, size_t> index;
        auto q = db.query("SELECT id, name, description FROM builders ORDER BY name");
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          BuilderRecord b;
          b.builderid = q.int64(0);
          b.name = q.text(1);
          if (!q.is_null(2)) b.description = q.text(2);
          index[b.builderid] = out.size();
          out.push_back(std::move(b));
        }
        if (rc != SQLITE_DONE) return {db.error("listing builders"), {}};
        auto t = db.query(
            "SELECT bt.builderid, t.name FROM builders_tags bt JOIN tags t "
            "ON t.id = bt.tagid ORDER BY t.name");
        while ((rc = t.step()) == SQLITE_ROW) {
          if (auto it = index.find(t.int64(0)); it != index.end()) {
            out[it->second].tags.push_back(t.text(1));
          }
        }
        if (rc != SQLITE_DONE) return {db.error("listing builder tags"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

void SqliteStore::ensure_worker(std::string name, json info, Completion<int64_t> done) {
  if (info.is_null()) info = json::object();
  if (!info.is_object()) {
    return submit_error(invalid("worker info must be a JSON object"), std::move(done));
  }
  // An existing worker keeps its info: that is what the worker itself
  // reported (set_worker_info), which a reconfig must not wipe.
  submit<int64_t>(
      true,
      [name = std::move(name), info = info.dump()](SqliteDb& db) -> Result<int64_t> {
        auto q = db.query(
            "INSERT INTO workers(name, info) VALUES (?, ?) ON CONFLICT(name) "
            "DO UPDATE SET name = excluded.name RETURNING id");
        q.bind(1, name).bind(2, info);
        return single_int(db, q, "adding worker");
      },
      std::move(done));
}

void SqliteStore::set_worker_connected(int64_t workerid, int64_t masterid, bool connected,
                                       Completion<void> done) {
  submit<void>(
      true,
      [workerid, masterid, connected](SqliteDb& db) -> Status {
        if (auto s =
                require_row(db, "SELECT 1 FROM workers WHERE id = ?", workerid, "worker");
            !s.ok()) {
          return s;
        }
        if (connected) {
          if (auto s = require_row(db, "SELECT 1 FROM masters WHERE id = ?", masterid,
                                   "master");
              !s.ok()) {
            return s;
          }
          auto q = db.query(
              "INSERT INTO connected_workers(masterid, workerid) VALUES (?, ?) "
              "ON CONFLICT DO NOTHING");
          q.bind(1, masterid).bind(2, workerid);
          return q.run("connecting worker");
        }
        auto q =
            db.query("DELETE FROM connected_workers WHERE masterid = ? AND workerid = ?");
        q.bind(1, masterid).bind(2, workerid);
        return q.run("disconnecting worker");
      },
      std::move(done));
}

void SqliteStore::set_worker_info(int64_t workerid, json info, Completion<void> done) {
  if (info.is_null()) info = json::object();
  if (!info.is_object()) {
    return submit_error(invalid("worker info must be a JSON object"), std::move(done));
  }
  submit<void>(
      true,
      [workerid, info = info.dump()](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE workers SET info = ? WHERE id = ?");
        q.bind(1, info).bind(2, workerid);
        return update_one(db, q, "worker", workerid);
      },
      std::move(done));
}

void SqliteStore::set_worker_state(int64_t workerid, bool paused, bool graceful, Completion<void> done) {
  submit<void>(
      true,
      [workerid, paused, graceful](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE workers SET paused = ?, graceful = ? WHERE id = ?");
        q.bind(1, int64_t{paused}).bind(2, int64_t{graceful}).bind(3, workerid);
        return update_one(db, q, "worker", workerid);
      },
      std::move(done));
}

// ---- Build requests --------------------------------------------------------

void SqliteStore::pending_requests(std::optional<int64_t> builderid, int64_t limit,
                                   Completion<std::vector<BuildRequestRecord>> done) {
  submit<std::vector<BuildRequestRecord>>(
      false,
      [builderid, limit](SqliteDb& db) -> Result<std::vector<BuildRequestRecord>> {
        // Two texts rather than `? IS NULL OR builderid = ?`, which would keep
        // SQLite from using buildrequests_pending.
        const std::string head =
            "SELECT r.id, r.buildsetid, r.builderid, r.priority, r.submitted_at, "
            "r.waited_for FROM buildrequests r WHERE r.complete = 0 ";
        const std::string tail =
            "AND NOT EXISTS (SELECT 1 FROM buildrequest_claims c WHERE c.brid = r.id) "
            "ORDER BY r.priority DESC, r.submitted_at, r.id LIMIT ?";
        auto q = db.query(builderid ? head + "AND r.builderid = ? " + tail : head + tail);
        int i = 1;
        if (builderid) q.bind(i++, *builderid);
        q.bind(i, limit > 0 ? limit : int64_t{-1});
        std::vector<BuildRequestRecord> out;
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          out.push_back({q.int64(0), q.int64(1), q.int64(2), q.int64(3), q.int64(4),
                         q.int64(5) != 0});
        }
        if (rc != SQLITE_DONE) return {db.error("listing pending requests"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

void SqliteStore::claim_requests(std::vector<int64_t> brids, int64_t masterid,
                                 int64_t now, Completion<std::vector<int64_t>> done) {
  submit<std::vector<int64_t>>(
      true,
      [brids = unique_ids(std::move(brids)), masterid,
       now](SqliteDb& db) -> Result<std::vector<int64_t>> {
        if (auto s =
                require_row(db, "SELECT 1 FROM masters WHERE id = ?", masterid, "master");
            !s.ok()) {
          return {s, {}};
        }
        std::vector<int64_t> got;
        for (int64_t brid : brids) {
          // The claim row's primary key is the request: a second claim by
          // anyone is a conflict and inserts nothing.
          auto q = db.query(
              "INSERT INTO buildrequest_claims(brid, masterid, claimed_at) "
              "SELECT id, ?, ? FROM buildrequests WHERE id = ? AND complete = 0 "
              "ON CONFLICT(brid) DO NOTHING");
          q.bind(1, masterid).bind(2, now).bind(3, brid);
          if (auto s = q.run("claiming build requests"); !s.ok()) return {s, {}};
          if (db.changes() == 1) got.push_back(brid);
        }
        return {{}, std::move(got)};
      },
      std::move(done));
}

void SqliteStore::unclaim_requests(std::vector<int64_t> brids, Completion<void> done) {
  submit<void>(
      true,
      [brids = std::move(brids)](SqliteDb& db) -> Status {
        for (int64_t brid : brids) {
          // A completed request keeps its claim: it says who ran it.
          auto q = db.query(
              "DELETE FROM buildrequest_claims WHERE brid = ? AND brid IN "
              "(SELECT id FROM buildrequests WHERE complete = 0)");
          q.bind(1, brid);
          if (auto s = q.run("unclaiming build requests"); !s.ok()) return s;
        }
        return {};
      },
      std::move(done));
}

void SqliteStore::complete_requests(std::vector<int64_t> brids, int results,
                                    int64_t complete_at, Completion<void> done) {
  if (auto s = check_results(results); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<void>(
      true,
      [brids = unique_ids(std::move(brids)), results,
       complete_at](SqliteDb& db) -> Status {
        for (int64_t brid : brids) {
          auto q = db.query(
              "UPDATE buildrequests SET complete = 1, results = ?, complete_at = ? "
              "WHERE id = ? AND complete = 0");
          q.bind(1, int64_t{results}).bind(2, complete_at).bind(3, brid);
          if (auto s = q.run("completing build requests"); !s.ok()) return s;
          if (db.changes() == 0) {
            return invalid("build request " + std::to_string(brid) +
                           " does not exist or is already complete");
          }
        }
        return {};
      },
      std::move(done));
}

void SqliteStore::cancel_request(int64_t brid, int64_t now, Completion<bool> done) {
  submit<bool>(
      true,
      [brid, now](SqliteDb& db) -> Result<bool> {
        if (auto s = require_row(db, "SELECT 1 FROM buildrequests WHERE id = ?", brid,
                                 "build request");
            !s.ok()) {
          return {s, false};
        }
        auto q = db.query(
            "UPDATE buildrequests SET complete = 1, results = ?, complete_at = ? "
            "WHERE id = ? AND complete = 0 AND NOT EXISTS "
            "(SELECT 1 FROM buildrequest_claims c WHERE c.brid = buildrequests.id)");
        q.bind(1, int64_t{results::kCancelled}).bind(2, now).bind(3, brid);
        if (auto s = q.run("cancelling build request"); !s.ok()) return {s, false};
        return {{}, db.changes() == 1};
      },
      std::move(done));
}

// ---- Builds ----------------------------------------------------------------

void SqliteStore::add_build(int64_t builderid, int64_t buildrequestid,
                            std::optional<int64_t> workerid, int64_t masterid,
                            int64_t started_at, std::string state_string,
                            Completion<BuildIds> done) {
  submit<BuildIds>(
      true,
      [=, state_string = std::move(state_string)](SqliteDb& db) -> Result<BuildIds> {
        if (auto s = require_row(db, "SELECT 1 FROM builders WHERE id = ?", builderid,
                                 "builder");
            !s.ok()) {
          return {s, {}};
        }
        if (auto s = require_row(db, "SELECT 1 FROM buildrequests WHERE id = ?",
                                 buildrequestid, "build request");
            !s.ok()) {
          return {s, {}};
        }
        // The only writer is this thread, so max + 1 cannot race; the unique
        // builds_number index would refuse a duplicate anyway.
        auto n = db.query(
            "SELECT coalesce(max(number), 0) + 1 FROM builds WHERE builderid = ?");
        n.bind(1, builderid);
        auto number = single_int(db, n, "numbering build");
        if (!number.ok()) return {number.status, {}};
        auto q = db.query(
            "INSERT INTO builds(number, builderid, buildrequestid, workerid, masterid, "
            "started_at, state_string) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id");
        q.bind(1, number.value).bind(2, builderid).bind(3, buildrequestid);
        bind_optional(q, 4, workerid);
        q.bind(5, masterid).bind(6, started_at).bind(7, state_string);
        auto id = single_int(db, q, "adding build");
        if (!id.ok()) return {id.status, {}};
        return {{}, {id.value, number.value}};
      },
      std::move(done));
}

void SqliteStore::set_build_state_string(int64_t buildid, std::string state_string,
                                         Completion<void> done) {
  submit<void>(
      true,
      [buildid, state_string = std::move(state_string)](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE builds SET state_string = ? WHERE id = ?");
        q.bind(1, state_string).bind(2, buildid);
        return update_one(db, q, "build", buildid);
      },
      std::move(done));
}

void SqliteStore::finish_build(int64_t buildid, int results, int64_t complete_at,
                               Completion<void> done) {
  if (auto s = check_results(results); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<void>(
      true,
      [buildid, results, complete_at](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE builds SET results = ?, complete_at = ? WHERE id = ?");
        q.bind(1, int64_t{results}).bind(2, complete_at).bind(3, buildid);
        return update_one(db, q, "build", buildid);
      },
      std::move(done));
}

void SqliteStore::set_build_property(int64_t buildid, std::string name, json value,
                                     std::string source, Completion<void> done) {
  submit<void>(
      true,
      [buildid, name = std::move(name), value = value.dump(),
       source = std::move(source)](SqliteDb& db) -> Status {
        if (auto s =
                require_row(db, "SELECT 1 FROM builds WHERE id = ?", buildid, "build");
            !s.ok()) {
          return s;
        }
        auto q = db.query(
            "INSERT INTO build_properties(buildid, name, value, source) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(buildid, name) DO UPDATE SET "
            "value = excluded.value, source = excluded.source");
        q.bind(1, buildid).bind(2, name).bind(3, value).bind(4, source);
        return q.run("setting build property");
      },
      std::move(done));
}

void SqliteStore::build_properties(int64_t buildid, Completion<json> done) {
  submit<json>(
      false,
      [buildid](SqliteDb& db) -> Result<json> {
        if (auto s =
                require_row(db, "SELECT 1 FROM builds WHERE id = ?", buildid, "build");
            !s.ok()) {
          return {s, {}};
        }
        auto q = db.query(
            "SELECT name, value, source FROM build_properties WHERE buildid = ? "
            "ORDER BY name");
        q.bind(1, buildid);
        json out = json::object();
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          out[q.text(0)] = json::array({json::parse(q.text(1)), q.text(2)});
        }
        if (rc != SQLITE_DONE) return {db.error("reading build properties"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

// ---- Steps -----------------------------------------------------------------

void SqliteStore::add_step(int64_t buildid, std::string name, Completion<StepIds> done) {
  submit<StepIds>(
      true,
      [buildid, name = std::move(name)](SqliteDb& db) -> Result<StepIds> {
        if (auto s =
                require_row(db, "SELECT 1 FROM builds WHERE id = ?", buildid, "build");
            !s.ok()) {
          return {s, {}};
        }
        auto unique = first_free_identifier(name, [&](const std::string& candidate) {
          return name_taken(db, "SELECT 1 FROM steps WHERE buildid = ? AND name = ?",
                            buildid, candidate, "naming step");
        });
        if (!unique.ok()) return {unique.status, {}};
        auto n =
            db.query("SELECT coalesce(max(number) + 1, 0) FROM steps WHERE buildid = ?");
        n.bind(1, buildid);
        auto number = single_int(db, n, "numbering step");
        if (!number.ok()) return {number.status, {}};
        auto q = db.query(
            "INSERT INTO steps(number, name, buildid, state_string) "
            "VALUES (?, ?, ?, 'pending') RETURNING id");
        q.bind(1, number.value).bind(2, unique.value).bind(3, buildid);
        auto id = single_int(db, q, "adding step");
        if (!id.ok()) return {id.status, {}};
        return {{}, {id.value, number.value, unique.value}};
      },
      std::move(done));
}

void SqliteStore::start_step(int64_t stepid, int64_t started_at, Completion<void> done) {
  submit<void>(
      true,
      [stepid, started_at](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE steps SET started_at = ? WHERE id = ?");
        q.bind(1, started_at).bind(2, stepid);
        return update_one(db, q, "step", stepid);
      },
      std::move(done));
}

void SqliteStore::set_step_state_string(int64_t stepid, std::string state_string,
                                        Completion<void> done) {
  submit<void>(
      true,
      [stepid, state_string = std::move(state_string)](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE steps SET state_string = ? WHERE id = ?");
        q.bind(1, state_string).bind(2, stepid);
        return update_one(db, q, "step", stepid);
      },
      std::move(done));
}

void SqliteStore::add_step_url(int64_t stepid, std::string name, std::string url,
                               Completion<void> done) {
  submit<void>(
      true,
      [stepid, name = std::move(name), url = std::move(url)](SqliteDb& db) -> Status {
        json urls;
        {
          auto q = db.query("SELECT urls_json FROM steps WHERE id = ?");
          q.bind(1, stepid);
          int rc = q.step();
          if (rc == SQLITE_DONE) return not_found("step", stepid);
          if (rc != SQLITE_ROW) return db.error("reading step urls");
          urls = json::parse(q.text(0), nullptr, false);
        }
        if (!urls.is_array()) urls = json::array();
        json entry = {{"name", name}, {"url", url}};
        // As Buildbot: the same link added twice is listed once.
        if (std::find(urls.begin(), urls.end(), entry) != urls.end()) return {};
        urls.push_back(std::move(entry));
        auto q = db.query("UPDATE steps SET urls_json = ? WHERE id = ?");
        q.bind(1, urls.dump()).bind(2, stepid);
        return q.run("adding step url");
      },
      std::move(done));
}

void SqliteStore::finish_step(int64_t stepid, int results, bool hidden,
                              int64_t complete_at, Completion<void> done) {
  if (auto s = check_results(results); !s.ok()) {
    return submit_error(std::move(s), std::move(done));
  }
  submit<void>(
      true,
      [=](SqliteDb& db) -> Status {
        auto q = db.query(
            "UPDATE steps SET results = ?, hidden = ?, complete_at = ? WHERE id = ?");
        q.bind(1, int64_t{results}).bind(2, int64_t{hidden}).bind(3, complete_at);
        q.bind(4, stepid);
        return update_one(db, q, "step", stepid);
      },
      std::move(done));
}

// ---- Logs ------------------------------------------------------------------

void SqliteStore::add_log(int64_t stepid, std::string name, char type,
                          Completion<int64_t> done) {
  if (type != 's' && type != 't' && type != 'h') {
    return submit_error(invalid(std::string("log type '") + type +
                                "' is not one of 's' (stdio), 't' (text), 'h' (html)"),
                        std::move(done));
  }
  submit<int64_t>(
      true,
      [stepid, name = std::move(name), type](SqliteDb& db) -> Result<int64_t> {
        if (auto s = require_row(db, "SELECT 1 FROM steps WHERE id = ?", stepid, "step");
            !s.ok()) {
          return {s, 0};
        }
        auto dup = name_taken(db, "SELECT 1 FROM logs WHERE stepid = ? AND name = ?",
                              stepid, name, "adding log");
        if (!dup.ok()) return {dup.status, 0};
        if (dup.value) {
          return {invalid("step " + std::to_string(stepid) +
                          " already has a log named '" + name + "'"),
                  0};
        }
        auto slug =
            first_free_identifier(force_identifier(name), [&](const std::string& c) {
              return name_taken(db, "SELECT 1 FROM logs WHERE stepid = ? AND slug = ?",
                                stepid, c, "adding log");
            });
        if (!slug.ok()) return {slug.status, 0};
        auto q = db.query(
            "INSERT INTO logs(name, slug, stepid, complete, num_lines, type) "
            "VALUES (?, ?, ?, 0, 0, ?) RETURNING id");
        q.bind(1, name).bind(2, slug.value).bind(3, stepid).bind(4, std::string(1, type));
        return single_int(db, q, "adding log");
      },
      std::move(done));
}

void SqliteStore::append_log(int64_t logid, std::string lines,
                             Completion<LineRange> done) {
  if (!lines.empty() && lines.back() != '\n') {
    return submit_error(invalid("log " + std::to_string(logid) +
                                ": appended text must end with a newline (whole lines)"),
                        std::move(done));
  }
  submit<LineRange>(
      true,
      [logid, lines = std::move(lines)](SqliteDb& db) -> Result<LineRange> {
        int64_t num_lines = 0;
        std::string type;
        {
          auto q = db.query("SELECT num_lines, type, complete FROM logs WHERE id = ?");
          q.bind(1, logid);
          int rc = q.step();
          if (rc == SQLITE_DONE) return {not_found("log", logid), {}};
          if (rc != SQLITE_ROW) return {db.error("appending to log"), {}};
          num_lines = q.int64(0);
          type = q.text(1);
          if (q.int64(2) != 0) {
            return {invalid("log " + std::to_string(logid) + " is finished"), {}};
          }
        }
        const int64_t first = num_lines;
        std::string_view rest = lines;
        while (!rest.empty()) {
          // Whole lines up to kMaxChunkBytes (a longer line alone).
          size_t end = 0;
          int64_t count = 0;
          while (end < rest.size()) {
            size_t nl = rest.find('\n', end);
            if (count > 0 && nl + 1 > kMaxChunkBytes) break;
            if (type == "s" && rest[end] != 'o' && rest[end] != 'e' && rest[end] != 'h') {
              return {invalid("stdio log " + std::to_string(logid) + " line " +
                              std::to_string(num_lines + count) +
                              " does not start with a stream letter (o, e, h)"),
                      {}};
            }
            end = nl + 1;
            ++count;
          }
          std::string_view chunk = rest.substr(0, end);
          if (auto s = insert_chunk(db, logid, num_lines, num_lines + count - 1, chunk);
              !s.ok()) {
            return {s, {}};
          }
          num_lines += count;
          rest.remove_prefix(end);
        }
        auto u = db.query("UPDATE logs SET num_lines = ? WHERE id = ?");
        u.bind(1, num_lines).bind(2, logid);
        if (auto s = u.run("appending to log"); !s.ok()) return {s, {}};
        return {{}, {first, num_lines - 1}};
      },
      std::move(done));
}

void SqliteStore::finish_log(int64_t logid, Completion<void> done) {
  submit<void>(
      true,
      [logid](SqliteDb& db) -> Status {
        auto q = db.query("UPDATE logs SET complete = 1 WHERE id = ?");
        q.bind(1, logid);
        if (auto s = update_one(db, q, "log", logid); !s.ok()) return s;
        // Like Buildbot's compressLog: a log appended a line at a time is
        // folded into few large chunks, which compress far better and read
        // in fewer rows. Only chunks stored small AND raw are read (a small
        // compressed blob may hold 64 KiB of text), so finishing a log
        // streamed in large batches costs one index scan and no memory.
        std::vector<ChunkRow> run;
        size_t run_bytes = 0;
        auto flush_run = [&]() -> Status {
          if (run.size() >= 2) {
            auto del = db.query(
                "DELETE FROM logchunks WHERE logid = ? AND first_line BETWEEN ? AND ?");
            del.bind(1, logid)
                .bind(2, run.front().first_line)
                .bind(3, run.back().first_line);
            if (auto s = del.run("merging log chunks"); !s.ok()) return s;
            std::string text;
            text.reserve(run_bytes);
            for (const auto& c : run) text += c.text;
            if (auto s = insert_chunk(db, logid, run.front().first_line,
                                      run.back().last_line, text);
                !s.ok()) {
              return s;
            }
          }
          run.clear();
          run_bytes = 0;
          return {};
        };
        auto small = db.query(
            "SELECT first_line, last_line, content, compressed FROM logchunks "
            "WHERE logid = ? AND compressed = 0 AND length(content) < ? ORDER BY first_line");
        small.bind(1, logid).bind(2, kSmallChunkBytes);
        std::vector<ChunkRow> rows;
        int rc;
        while ((rc = small.step()) == SQLITE_ROW) {
          auto text = decode_row(small);
          if (!text.ok()) return text.status;
          rows.push_back({small.int64(0), small.int64(1), std::move(text.value)});
        }
        if (rc != SQLITE_DONE) return db.error("merging log chunks");
        for (auto& row : rows) {
          bool adjacent = !run.empty() && run.back().last_line + 1 == row.first_line;
          if (!adjacent || run_bytes + row.text.size() > kMaxChunkBytes) {
            if (auto s = flush_run(); !s.ok()) return s;
          }
          run_bytes += row.text.size();
          run.push_back(std::move(row));
        }
        return flush_run();
      },
      std::move(done));
}

void SqliteStore::log_lines(int64_t logid, int64_t first_line, int64_t last_line,
                            Completion<std::string> done) {
  submit<std::string>(
      false,
      [this, logid, first_line, last_line](SqliteDb& db) -> Result<std::string> {
        if (auto s = require_row(db, "SELECT 1 FROM logs WHERE id = ?", logid, "log");
            !s.ok()) {
          return {s, {}};
        }
        const int64_t from = std::max<int64_t>(first_line, 0);
        if (last_line < from) return {{}, {}};
        auto q = db.query(kChunksFrom);
        q.bind(1, logid).bind(2, from).bind(3, last_line);
        std::string out;
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          log_chunks_read_.fetch_add(1, std::memory_order_relaxed);
          auto text = decode_row(q);
          if (!text.ok()) return {text.status, {}};
          out.append(slice_lines(text.value, q.int64(0), from, last_line));
        }
        if (rc != SQLITE_DONE) return {db.error("reading log"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

void SqliteStore::log_page(int64_t logid, int64_t from_line, size_t max_bytes,
                           Completion<LogPage> done) {
  submit<LogPage>(
      false,
      [this, logid, from_line, max_bytes](SqliteDb& db) -> Result<LogPage> {
        if (auto s = require_row(db, "SELECT 1 FROM logs WHERE id = ?", logid, "log");
            !s.ok()) {
          return {s, {}};
        }
        LogPage page;
        const int64_t from = std::max<int64_t>(from_line, 0);
        page.next_line = from;
        auto q = db.query(kChunksFrom);
        q.bind(1, logid).bind(2, from).bind(3, std::numeric_limits<int64_t>::max());
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          if (!page.text.empty() && page.text.size() >= max_bytes)
            return {{}, std::move(page)};
          log_chunks_read_.fetch_add(1, std::memory_order_relaxed);
          auto text = decode_row(q);
          if (!text.ok()) return {text.status, {}};
          const int64_t last = q.int64(1);
          page.text.append(slice_lines(text.value, q.int64(0), from, last));
          page.next_line = std::max(page.next_line, last + 1);
        }
        if (rc != SQLITE_DONE) return {db.error("reading log"), {}};
        page.end = true;
        return {{}, std::move(page)};
      },
      std::move(done));
}

// ---- Crash recovery and retention -------------------------------------------

void SqliteStore::recover_after_crash(int64_t masterid, int64_t now,
                                      Completion<RecoveryCounts> done) {
  submit<RecoveryCounts>(
      true,
      [masterid, now](SqliteDb& db) -> Result<RecoveryCounts> {
        RecoveryCounts counts;
        auto run = [&](const std::string& sql, bool with_now, int64_t* count) -> Status {
          auto q = db.query(sql);
          int i = 1;
          if (with_now) q.bind(i++, now);
          q.bind(i, masterid);
          if (auto s = q.run("recovering after a crash"); !s.ok()) return s;
          if (count != nullptr) *count = db.changes();
          return {};
        };
        // Children first: they are found through their unfinished build.
        const std::string unfinished_builds =
            "SELECT id FROM builds WHERE masterid = ? AND complete_at IS NULL";
        if (auto s = run("UPDATE logs SET complete = 1 WHERE complete = 0 AND stepid IN "
                         "(SELECT id FROM steps WHERE buildid IN (" +
                             unfinished_builds + "))",
                         false, &counts.logs);
            !s.ok()) {
          return {s, {}};
        }
        if (auto s =
                run("UPDATE steps SET results = " + std::to_string(results::kException) +
                        ", complete_at = ? WHERE complete_at IS NULL AND buildid IN (" +
                        unfinished_builds + ")",
                    true, &counts.steps);
            !s.ok()) {
          return {s, {}};
        }
        if (auto s =
                run("UPDATE builds SET results = " + std::to_string(results::kRetry) +
                        ", complete_at = ? WHERE masterid = ? AND complete_at IS NULL",
                    true, &counts.builds);
            !s.ok()) {
          return {s, {}};
        }
        // RETRY, as Buildbot: the request was never completed, so dropping
        // the claim puts it back in its builder's queue.
        if (auto s = run("DELETE FROM buildrequest_claims WHERE masterid = ? AND brid IN "
                         "(SELECT id FROM buildrequests WHERE complete = 0)",
                         false, &counts.requests);
            !s.ok()) {
          return {s, {}};
        }
        // No worker is attached to a master that just started.
        if (auto s =
                run("DELETE FROM connected_workers WHERE masterid = ?", false, nullptr);
            !s.ok()) {
          return {s, {}};
        }
        return {{}, counts};
      },
      std::move(done));
}

void SqliteStore::delete_old_logs(int64_t builderid, int64_t older_than,
                                  int64_t batch_size, Completion<int64_t> done) {
  submit<int64_t>(
      true,
      [=](SqliteDb& db) -> Result<int64_t> {
        std::set<int64_t> logids;
        auto deleted = delete_old_chunks(db, builderid, older_than,
                                         std::max<int64_t>(batch_size, 1), &logids);
        if (!deleted.ok()) return deleted;
        for (int64_t logid : logids) {
          auto q = db.query(
              "UPDATE logs SET type = 'd' WHERE id = ? AND NOT EXISTS "
              "(SELECT 1 FROM logchunks WHERE logid = ?)");
          q.bind(1, logid).bind(2, logid);
          if (auto s = q.run("marking deleted logs"); !s.ok()) return {s, 0};
        }
        return deleted;
      },
      std::move(done));
}

void SqliteStore::delete_old_builds(int64_t builderid, int64_t older_than,
                                    int64_t batch_size, Completion<int64_t> done) {
  submit<int64_t>(
      true,
      [=](SqliteDb& db) -> Result<int64_t> {
        const int64_t limit = std::max<int64_t>(batch_size, 1);
        // Log chunks are the bulk of a build: removed in batches of their
        // own first, so deleting a build never cascades into thousands of
        // chunk rows in one call.
        auto chunks = delete_old_chunks(db, builderid, older_than, limit, nullptr);
        if (!chunks.ok() || chunks.value > 0) return chunks;
        auto q = db.query(
            "DELETE FROM builds WHERE id IN (SELECT id FROM builds WHERE builderid = ? "
            "AND complete_at < ? ORDER BY complete_at LIMIT ?)");
        q.bind(1, builderid).bind(2, older_than).bind(3, limit);
        if (auto s = q.run("deleting old builds"); !s.ok()) return {s, 0};
        return {{}, db.changes()};
      },
      std::move(done));
}

}  // namespace kiln::store
