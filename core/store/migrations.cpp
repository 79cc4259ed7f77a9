#include "store/migrations.h"

#include "store/sqlite_db.h"

#include <string>

namespace kiln::store {
namespace {

// Buildbot's model (master/buildbot/db/model.py) with its table and column
// names, so the data API can mirror /api/v2 field for field. Differences,
// each on purpose:
//  - names are UNIQUE columns, not sha1 `name_hash` columns (those exist in
//    Buildbot only for MySQL's index length limit);
//  - objects.class_name holds the component kind ("scheduler", ...);
//  - logchunks.compressed uses Buildbot's codes: 0 raw, 4 zstd (log_chunks.h);
//  - partial indexes serve the engine's hot queries (pending requests);
//  - buildset_changes (Kiln's) records the changes a buildset covers;
//  - logs are unique by name as well as by slug per step;
//  - test results tables are left for a later migration.
// Times are Unix seconds in INTEGER columns, as in Buildbot.
constexpr const char* kInitialSchema = R"sql(
CREATE TABLE masters (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  active INTEGER NOT NULL DEFAULT 0,
  last_active INTEGER NOT NULL
);
CREATE UNIQUE INDEX masters_name ON masters(name);

CREATE TABLE users (
  uid INTEGER PRIMARY KEY,
  identifier TEXT NOT NULL,
  bb_username TEXT,
  bb_password TEXT
);
CREATE UNIQUE INDEX users_identifier ON users(identifier);
CREATE UNIQUE INDEX users_bb_user ON users(bb_username);

CREATE TABLE users_info (
  uid INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE,
  attr_type TEXT NOT NULL,
  attr_data TEXT NOT NULL
);
CREATE UNIQUE INDEX users_info_uid_attr_type ON users_info(uid, attr_type);
CREATE UNIQUE INDEX users_info_attrs ON users_info(attr_type, attr_data);

CREATE TABLE patches (
  id INTEGER PRIMARY KEY,
  patchlevel INTEGER NOT NULL,
  patch_base64 TEXT NOT NULL,
  patch_author TEXT NOT NULL,
  patch_comment TEXT NOT NULL,
  subdir TEXT
);

CREATE TABLE sourcestamps (
  id INTEGER PRIMARY KEY,
  ss_hash TEXT NOT NULL,
  branch TEXT,
  revision TEXT,
  patchid INTEGER REFERENCES patches(id) ON DELETE CASCADE,
  repository TEXT NOT NULL DEFAULT '',
  codebase TEXT NOT NULL DEFAULT '',
  project TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX sourcestamps_ss_hash_key ON sourcestamps(ss_hash);
CREATE INDEX sourcestamps_patchid ON sourcestamps(patchid);

CREATE TABLE changes (
  changeid INTEGER PRIMARY KEY,
  author TEXT NOT NULL,
  committer TEXT,
  comments TEXT NOT NULL,
  branch TEXT,
  revision TEXT,
  revlink TEXT,
  when_timestamp INTEGER NOT NULL,
  category TEXT,
  repository TEXT NOT NULL DEFAULT '',
  codebase TEXT NOT NULL DEFAULT '',
  project TEXT NOT NULL DEFAULT '',
  sourcestampid INTEGER NOT NULL REFERENCES sourcestamps(id) ON DELETE CASCADE,
  parent_changeids INTEGER REFERENCES changes(changeid) ON DELETE SET NULL
);
CREATE INDEX changes_branch ON changes(branch);
CREATE INDEX changes_revision ON changes(revision);
CREATE INDEX changes_author ON changes(author);
CREATE INDEX changes_category ON changes(category);
CREATE INDEX changes_when_timestamp ON changes(when_timestamp);
CREATE INDEX changes_sourcestampid ON changes(sourcestampid);
CREATE INDEX changes_parent_changeids ON changes(parent_changeids);

CREATE TABLE change_files (
  changeid INTEGER NOT NULL REFERENCES changes(changeid) ON DELETE CASCADE,
  filename TEXT NOT NULL
);
CREATE INDEX change_files_changeid ON change_files(changeid);

CREATE TABLE change_properties (
  changeid INTEGER NOT NULL REFERENCES changes(changeid) ON DELETE CASCADE,
  property_name TEXT NOT NULL,
  property_value TEXT NOT NULL  -- JSON [value, source]
);
CREATE UNIQUE INDEX change_properties_changeid ON change_properties(changeid, property_name);

CREATE TABLE change_users (
  changeid INTEGER NOT NULL REFERENCES changes(changeid) ON DELETE CASCADE,
  uid INTEGER NOT NULL REFERENCES users(uid) ON DELETE CASCADE
);
CREATE INDEX change_users_changeid ON change_users(changeid);
CREATE INDEX change_users_uid ON change_users(uid);

CREATE TABLE builders (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  description TEXT,
  description_format TEXT,
  description_html TEXT
);
CREATE UNIQUE INDEX builders_name ON builders(name);

CREATE TABLE tags (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL
);
CREATE UNIQUE INDEX tags_name ON tags(name);

CREATE TABLE builders_tags (
  id INTEGER PRIMARY KEY,
  builderid INTEGER NOT NULL REFERENCES builders(id) ON DELETE CASCADE,
  tagid INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX builders_tags_unique ON builders_tags(builderid, tagid);
CREATE INDEX builders_tags_tagid ON builders_tags(tagid);

CREATE TABLE builder_masters (
  id INTEGER PRIMARY KEY,
  builderid INTEGER NOT NULL REFERENCES builders(id) ON DELETE CASCADE,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX builder_masters_identity ON builder_masters(builderid, masterid);
CREATE INDEX builder_masters_masterid ON builder_masters(masterid);

CREATE TABLE workers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  info TEXT NOT NULL DEFAULT '{}',  -- JSON object; the API's `workerinfo`
  paused INTEGER NOT NULL DEFAULT 0,
  graceful INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX workers_name ON workers(name);

CREATE TABLE configured_workers (
  id INTEGER PRIMARY KEY,
  buildermasterid INTEGER NOT NULL REFERENCES builder_masters(id) ON DELETE CASCADE,
  workerid INTEGER NOT NULL REFERENCES workers(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX configured_workers_identity ON configured_workers(buildermasterid, workerid);
CREATE INDEX configured_workers_workerid ON configured_workers(workerid);

CREATE TABLE connected_workers (
  id INTEGER PRIMARY KEY,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE,
  workerid INTEGER NOT NULL REFERENCES workers(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX connected_workers_identity ON connected_workers(masterid, workerid);
CREATE INDEX connected_workers_workerid ON connected_workers(workerid);

CREATE TABLE buildsets (
  id INTEGER PRIMARY KEY,
  external_idstring TEXT,
  reason TEXT,
  submitted_at INTEGER NOT NULL,
  complete INTEGER NOT NULL DEFAULT 0,
  complete_at INTEGER,
  results INTEGER,
  parent_buildid INTEGER REFERENCES builds(id) ON DELETE SET NULL,
  parent_relationship TEXT
);
CREATE INDEX buildsets_submitted_at ON buildsets(submitted_at);
CREATE INDEX buildsets_incomplete ON buildsets(submitted_at) WHERE complete = 0;
CREATE INDEX buildsets_parent_buildid ON buildsets(parent_buildid);

CREATE TABLE buildset_properties (
  buildsetid INTEGER NOT NULL REFERENCES buildsets(id) ON DELETE CASCADE,
  property_name TEXT NOT NULL,
  property_value TEXT NOT NULL  -- JSON [value, source]
);
CREATE UNIQUE INDEX buildset_properties_buildsetid ON buildset_properties(buildsetid, property_name);

CREATE TABLE buildset_sourcestamps (
  id INTEGER PRIMARY KEY,
  buildsetid INTEGER NOT NULL REFERENCES buildsets(id) ON DELETE CASCADE,
  sourcestampid INTEGER NOT NULL REFERENCES sourcestamps(id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX buildset_sourcestamps_unique ON buildset_sourcestamps(buildsetid, sourcestampid);
CREATE INDEX buildset_sourcestamps_sourcestampid ON buildset_sourcestamps(sourcestampid);

-- Kiln's own: the changes a buildset was made for (a tree-stable timer folds
-- several into one build), so /builds/N/changes lists every one of them, not
-- only the change whose sourcestamp the buildset carries.
CREATE TABLE buildset_changes (
  buildsetid INTEGER NOT NULL REFERENCES buildsets(id) ON DELETE CASCADE,
  changeid INTEGER NOT NULL REFERENCES changes(changeid) ON DELETE CASCADE,
  PRIMARY KEY (buildsetid, changeid)
);
CREATE INDEX buildset_changes_changeid ON buildset_changes(changeid);

CREATE TABLE buildrequests (
  id INTEGER PRIMARY KEY,
  buildsetid INTEGER NOT NULL REFERENCES buildsets(id) ON DELETE CASCADE,
  builderid INTEGER NOT NULL REFERENCES builders(id) ON DELETE CASCADE,
  priority INTEGER NOT NULL DEFAULT 0,
  complete INTEGER NOT NULL DEFAULT 0,
  results INTEGER,
  submitted_at INTEGER NOT NULL,
  complete_at INTEGER,
  waited_for INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX buildrequests_buildsetid ON buildrequests(buildsetid);
CREATE INDEX buildrequests_builderid ON buildrequests(builderid);
-- The engine's queue: pending requests of a builder, oldest first. Partial,
-- so 25,000 pending requests cost an index of 25,000 entries, not of every
-- request ever made.
CREATE INDEX buildrequests_pending ON buildrequests(builderid, priority DESC, submitted_at, id)
  WHERE complete = 0;

CREATE TABLE buildrequest_claims (
  brid INTEGER PRIMARY KEY REFERENCES buildrequests(id) ON DELETE CASCADE,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE,
  claimed_at INTEGER NOT NULL
);
CREATE INDEX buildrequest_claims_masterid ON buildrequest_claims(masterid);

CREATE TABLE builds (
  id INTEGER PRIMARY KEY,
  number INTEGER NOT NULL,
  builderid INTEGER NOT NULL REFERENCES builders(id) ON DELETE CASCADE,
  buildrequestid INTEGER NOT NULL REFERENCES buildrequests(id) ON DELETE CASCADE,
  workerid INTEGER REFERENCES workers(id) ON DELETE SET NULL,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE,
  started_at INTEGER NOT NULL,
  complete_at INTEGER,
  state_string TEXT NOT NULL DEFAULT '',
  results INTEGER
);
CREATE UNIQUE INDEX builds_number ON builds(builderid, number);
CREATE INDEX builds_buildrequestid ON builds(buildrequestid);
CREATE INDEX builds_workerid ON builds(workerid);
CREATE INDEX builds_masterid ON builds(masterid);
-- Per-builder retention walks a builder's finished builds by age.
CREATE INDEX builds_complete_at ON builds(builderid, complete_at);

CREATE TABLE build_properties (
  buildid INTEGER NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value TEXT NOT NULL,  -- JSON
  source TEXT NOT NULL,
  PRIMARY KEY (buildid, name)
);

CREATE TABLE build_data (
  id INTEGER PRIMARY KEY,
  buildid INTEGER NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value BLOB NOT NULL,
  length INTEGER NOT NULL,
  source TEXT NOT NULL
);
CREATE UNIQUE INDEX build_data_buildid_name ON build_data(buildid, name);

CREATE TABLE steps (
  id INTEGER PRIMARY KEY,
  number INTEGER NOT NULL,
  name TEXT NOT NULL,
  buildid INTEGER NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
  started_at INTEGER,
  locks_acquired_at INTEGER,
  complete_at INTEGER,
  state_string TEXT NOT NULL DEFAULT '',
  results INTEGER,
  urls_json TEXT NOT NULL DEFAULT '[]',
  hidden INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX steps_number ON steps(buildid, number);
CREATE UNIQUE INDEX steps_name ON steps(buildid, name);
CREATE INDEX steps_started_at ON steps(started_at);

CREATE TABLE logs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  slug TEXT NOT NULL,
  stepid INTEGER NOT NULL REFERENCES steps(id) ON DELETE CASCADE,
  complete INTEGER NOT NULL DEFAULT 0,
  num_lines INTEGER NOT NULL DEFAULT 0,
  type TEXT NOT NULL CHECK (type IN ('s', 't', 'h', 'd'))  -- stdio text html deleted
);
CREATE UNIQUE INDEX logs_slug ON logs(stepid, slug);
CREATE UNIQUE INDEX logs_name ON logs(stepid, name);

CREATE TABLE logchunks (
  logid INTEGER NOT NULL REFERENCES logs(id) ON DELETE CASCADE,
  first_line INTEGER NOT NULL,  -- 0-based, inclusive
  last_line INTEGER NOT NULL,   -- inclusive
  content BLOB,
  compressed INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX logchunks_firstline ON logchunks(logid, first_line);
CREATE INDEX logchunks_lastline ON logchunks(logid, last_line);

CREATE TABLE schedulers (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  enabled INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX schedulers_name ON schedulers(name);

CREATE TABLE scheduler_masters (
  schedulerid INTEGER PRIMARY KEY REFERENCES schedulers(id) ON DELETE CASCADE,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE
);
CREATE INDEX scheduler_masters_masterid ON scheduler_masters(masterid);

CREATE TABLE scheduler_changes (
  schedulerid INTEGER NOT NULL REFERENCES schedulers(id) ON DELETE CASCADE,
  changeid INTEGER NOT NULL REFERENCES changes(changeid) ON DELETE CASCADE,
  important INTEGER
);
CREATE UNIQUE INDEX scheduler_changes_unique ON scheduler_changes(schedulerid, changeid);
CREATE INDEX scheduler_changes_changeid ON scheduler_changes(changeid);

CREATE TABLE changesources (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL
);
CREATE UNIQUE INDEX changesources_name ON changesources(name);

CREATE TABLE changesource_masters (
  changesourceid INTEGER PRIMARY KEY REFERENCES changesources(id) ON DELETE CASCADE,
  masterid INTEGER NOT NULL REFERENCES masters(id) ON DELETE CASCADE
);
CREATE INDEX changesource_masters_masterid ON changesource_masters(masterid);

CREATE TABLE objects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,        -- the component's name
  class_name TEXT NOT NULL   -- the component's kind
);
CREATE UNIQUE INDEX object_identity ON objects(name, class_name);

CREATE TABLE object_state (
  objectid INTEGER NOT NULL REFERENCES objects(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value_json TEXT NOT NULL,
  PRIMARY KEY (objectid, name)
);
)sql";

constexpr const char* kCreateBookkeeping = R"sql(
CREATE TABLE IF NOT EXISTS kiln_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at INTEGER NOT NULL
);
)sql";

Status rollback(SqliteDb& db, Status why) {
  db.exec("ROLLBACK", "rollback");
  return why;
}

// One migration, all or nothing.
Status apply_one(SqliteDb& db, const Migration& m, int latest) {
  if (auto s = db.exec("BEGIN IMMEDIATE", "start migration"); !s.ok()) return s;
  // Another process may have migrated while we waited for the write lock.
  auto current = read_schema_version(db);
  if (!current.ok()) return rollback(db, current.status);
  if (current.value >= m.version) {
    return db.exec("COMMIT", "commit");
  }
  std::string label = "migration " + std::to_string(m.version) + "/" +
                      std::to_string(latest) + " (" + m.name + ")";
  if (auto s = db.exec(m.sql, label); !s.ok()) return rollback(db, s);
  if (auto s = db.exec(kCreateBookkeeping, label); !s.ok()) return rollback(db, s);
  {
    auto q = db.query(
        "INSERT INTO kiln_migrations(version, name, applied_at) "
        "VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER))");
    q.bind(1, static_cast<int64_t>(m.version)).bind(2, m.name);
    if (auto s = q.run(label); !s.ok()) return rollback(db, s);
  }
  {
    auto q = db.query("PRAGMA foreign_key_check");
    int rc = q.step();
    if (rc == SQLITE_ROW) {
      std::string table = q.text(0);
      return rollback(db, Status::error(StatusCode::kInternal,
                                        label + " leaves rows in " + table +
                                            " whose foreign key points nowhere"));
    }
    if (rc != SQLITE_DONE) return rollback(db, db.error(label));
  }
  if (auto s = db.exec("COMMIT", label); !s.ok()) return rollback(db, s);
  return {};
}

}  // namespace

const std::vector<Migration>& sqlite_migrations() {
  static const std::vector<Migration> list = {
      {1, "initial schema", kInitialSchema},
  };
  return list;
}

Status check_migration_list(std::span<const Migration> migrations) {
  if (migrations.empty()) {
    return Status::error(StatusCode::kInvalidArgument, "no migrations given");
  }
  for (size_t i = 0; i < migrations.size(); ++i) {
    const auto& m = migrations[i];
    if (m.version != static_cast<int>(i) + 1) {
      return Status::error(StatusCode::kInvalidArgument,
                           "migration at position " + std::to_string(i + 1) +
                               " has version " + std::to_string(m.version) +
                               "; versions must run 1, 2, 3, ... without gaps");
    }
    if (m.name.empty() || m.sql.empty()) {
      return Status::error(StatusCode::kInvalidArgument,
                           "migration " + std::to_string(m.version) +
                               " needs a name and SQL");
    }
  }
  return {};
}

Result<int> read_schema_version(SqliteDb& db) {
  auto has_table = db.scalar_int(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
      "'kiln_migrations'",
      0);
  if (!has_table.ok()) return {has_table.status, 0};
  if (has_table.value == 0) {
    auto others = db.scalar_int(
        "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%'",
        0);
    if (!others.ok()) return {others.status, 0};
    if (others.value > 0) {
      return {Status::error(StatusCode::kNotADatabase,
                            "it is an SQLite database but not a Kiln store "
                            "(it has tables but no kiln_migrations)"),
              0};
    }
    return {{}, 0};
  }
  auto version = db.scalar_int("SELECT max(version) FROM kiln_migrations", 0);
  if (!version.ok()) return {version.status, 0};
  return {{}, static_cast<int>(version.value)};
}

Status apply_migrations(SqliteDb& db, std::span<const Migration> migrations,
                        const std::function<void(std::string_view)>& progress) {
  if (auto s = check_migration_list(migrations); !s.ok()) return s;
  auto current = read_schema_version(db);
  if (!current.ok()) return current.status;
  const int latest = static_cast<int>(migrations.size());
  if (current.value >= latest) return {};

  // Outside any transaction, as SQLite requires for this pragma; restored
  // whatever happens below.
  if (auto s = db.exec("PRAGMA foreign_keys = OFF", "disable foreign keys"); !s.ok()) {
    return s;
  }
  Status result;
  for (const auto& m : migrations) {
    if (m.version <= current.value) continue;
    if (progress) {
      progress("applying migration " + std::to_string(m.version) + "/" +
               std::to_string(latest) + ": " + m.name);
    }
    result = apply_one(db, m, latest);
    if (!result.ok()) {
      auto now = read_schema_version(db);
      result.message += "; the store is unchanged at schema version " +
                        std::to_string(now.ok() ? now.value : m.version - 1);
      break;
    }
  }
  db.clear_statement_cache();
  if (auto s = db.exec("PRAGMA foreign_keys = ON", "enable foreign keys"); !s.ok() &&
      result.ok()) {
    result = s;
  }
  return result;
}

}  // namespace kiln::store
