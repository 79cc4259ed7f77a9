#include "store/sqlite_store.h"

#include "store/migrations.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <system_error>

namespace kiln::store {
namespace {

namespace fs = std::filesystem;

// Bounds how long the first call of a burst waits behind the others.
constexpr size_t kMaxBatch = 10'000;
// Another process (a second kiln, the sqlite3 shell) holding the write lock
// is waited for this long before a call fails with "database is locked".
constexpr int kBusyTimeoutMs = 5'000;

Status too_old(const std::string& where, int version, int latest,
               const fs::path& base_dir) {
  std::string dir = base_dir.empty() ? "DIR" : base_dir.string();
  return Status::error(StatusCode::kSchemaTooOld,
                       "store at " + where + " is at schema version " +
                           std::to_string(version) + ", this kiln needs " +
                           std::to_string(latest) + ": run `kiln upgrade-master " +
                           dir + "`");
}

Status too_new(const std::string& where, int version, int latest) {
  return Status::error(
      StatusCode::kSchemaTooNew,
      "store at " + where + " is at schema version " + std::to_string(version) +
          ", newer than this kiln's " + std::to_string(latest) +
          ": it was written by a newer kiln; run that kiln (a store is never "
          "downgraded, and this one was left untouched)");
}

Status describe_open_error(const std::string& where, Status s) {
  if (s.code == StatusCode::kNotADatabase) {
    if (s.message.find("not a Kiln store") != std::string::npos) {
      return Status::error(s.code, where + ": " + s.message);
    }
    return Status::error(s.code, where + " is not an SQLite database");
  }
  return Status::error(s.code, "cannot open store at " + where + ": " + s.message);
}

std::string file_uri(const std::string& path) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c == 0x7f) {
      static const char* kHex = "0123456789ABCDEF";
      uri += '%';
      uri += kHex[c >> 4];
      uri += kHex[c & 0xf];
    } else {
      uri += static_cast<char>(c);
    }
  }
  return uri;
}

// Reads the schema version without writing anything, so a store we are about
// to refuse is left exactly as it was. A plain read-only connection is not
// enough: on a WAL database it creates the -wal and -shm files. When no -wal
// exists the last writer checkpointed and closed cleanly, the main file is
// complete, and `immutable` reads it without creating either; when one
// exists (a running or crashed master), reading through it is needed and
// creates nothing new.
Result<int> probe_version(const std::string& path) {
  std::error_code ec;
  const bool has_wal = fs::exists(path + "-wal", ec);
  auto db = SqliteDb::open(file_uri(path) + (has_wal ? "?mode=ro" : "?immutable=1"),
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
  if (!db.ok()) return {db.status, 0};
  sqlite3_busy_timeout(db.value.handle(), kBusyTimeoutMs);
  return read_schema_version(db.value);
}

Status set_pragmas(SqliteDb& db, bool file) {
  sqlite3_busy_timeout(db.handle(), kBusyTimeoutMs);
  if (file) {
    auto mode = db.scalar_text("PRAGMA journal_mode = WAL");
    if (!mode.ok()) return mode.status;
    if (mode.value != "wal") {
      return Status::error(StatusCode::kIo,
                           "cannot switch to WAL journaling (got '" + mode.value +
                               "'); is the folder on a network file system?");
    }
  }
  // NORMAL is durable in WAL mode except for the last commits before a power
  // loss, and saves an fsync per transaction.
  if (auto s = db.exec("PRAGMA synchronous = NORMAL", "set synchronous"); !s.ok()) {
    return s;
  }
  return db.exec("PRAGMA foreign_keys = ON", "enable foreign keys");
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const StoreLocation& location,
                                                 OpenOptions options) {
  const std::vector<Migration>& migrations =
      options.migrations.empty() ? sqlite_migrations() : options.migrations;
  if (auto s = check_migration_list(migrations); !s.ok()) return {s, nullptr};
  const int latest = static_cast<int>(migrations.size());
  const bool file = location.backend == StoreLocation::Backend::kSqliteFile;
  const std::string where = file ? location.path.string() : ":memory:";

  if (file) {
    std::error_code ec;
    auto status = fs::status(location.path, ec);
    if (fs::is_directory(status)) {
      return {Status::error(StatusCode::kInvalidArgument,
                            where + " is a folder, not a store file"),
              nullptr};
    }
    if (!fs::exists(status)) {
      if (options.mode != OpenMode::kCreate) {
        std::string dir = options.base_dir.empty() ? "DIR" : options.base_dir.string();
        return {Status::error(StatusCode::kNotFound,
                              "no store at " + where + ": run `kiln upgrade-master " +
                                  dir + "` to create it"),
                nullptr};
      }
    } else {
      auto probed = probe_version(where);
      if (!probed.ok()) return {describe_open_error(where, probed.status), nullptr};
      if (probed.value > latest) return {too_new(where, probed.value, latest), nullptr};
      if (probed.value < latest && options.mode == OpenMode::kNormal) {
        return {too_old(where, probed.value, latest, options.base_dir), nullptr};
      }
    }
  }

  int flags = SQLITE_OPEN_READWRITE;
  if (options.mode == OpenMode::kCreate || !file) flags |= SQLITE_OPEN_CREATE;
  auto opened = SqliteDb::open(file ? where : ":memory:", flags);
  if (!opened.ok()) return {describe_open_error(where, opened.status), nullptr};
  SqliteDb db = std::move(opened.value);

  // Checked again on the connection we keep: another process may have
  // migrated the file since the probe.
  auto version = read_schema_version(db);
  if (!version.ok()) return {describe_open_error(where, version.status), nullptr};
  if (version.value > latest) return {too_new(where, version.value, latest), nullptr};
  if (version.value < latest && options.mode == OpenMode::kNormal) {
    return {too_old(where, version.value, latest, options.base_dir), nullptr};
  }
  if (auto s = set_pragmas(db, file); !s.ok()) {
    return {describe_open_error(where, s), nullptr};
  }
  if (version.value < latest) {
    if (auto s = apply_migrations(db, migrations, options.progress); !s.ok()) {
      return {Status::error(s.code, "upgrading store at " + where + ": " + s.message),
              nullptr};
    }
    version = read_schema_version(db);
    if (!version.ok()) return {describe_open_error(where, version.status), nullptr};
  }
  return {{},
          std::make_unique<SqliteStore>(std::move(db), where, version.value, latest,
                                        std::move(options.post_to_loop))};
}

SqliteStore::SqliteStore(SqliteDb db, std::string location, int schema_version,
                         int latest_schema_version, PostFn post_to_loop)
    : db_(std::move(db)),
      location_(std::move(location)),
      schema_version_(schema_version),
      latest_schema_version_(latest_schema_version),
      post_(std::move(post_to_loop)),
      thread_([this] { thread_main(); }) {}

SqliteStore::~SqliteStore() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

StoreStats SqliteStore::stats() const {
  std::lock_guard lock(mutex_);
  StoreStats s = stats_;
  s.log_chunks_read = log_chunks_read_.load();
  return s;
}

void SqliteStore::hold() {
  std::lock_guard lock(mutex_);
  held_ = true;
}

void SqliteStore::release() {
  {
    std::lock_guard lock(mutex_);
    held_ = false;
  }
  wake_.notify_all();
}

void SqliteStore::enqueue(Job job) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void SqliteStore::thread_main() {
  for (;;) {
    std::deque<Job> batch;
    {
      std::unique_lock lock(mutex_);
      // Stopping overrides a hold, so destruction never waits on a test.
      wake_.wait(lock, [&] { return stopping_ || (!held_ && !queue_.empty()); });
      if (queue_.empty()) return;  // only reached when stopping
      size_t n = std::min(queue_.size(), kMaxBatch);
      auto end = queue_.begin() + static_cast<std::ptrdiff_t>(n);
      batch.insert(batch.end(), std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(end));
      queue_.erase(queue_.begin(), end);
    }
    run_batch(batch);
  }
}

void SqliteStore::run_batch(std::deque<Job>& batch) {
  const bool any_write =
      std::any_of(batch.begin(), batch.end(), [](const Job& j) { return j.writes; });
  // A lone read needs no transaction; several reads share one snapshot.
  // The transaction statements go through the statement cache: parsing
  // them per call was an eighth of the store thread's instructions.
  const bool in_transaction = any_write || batch.size() > 1;
  if (in_transaction) {
    Status begun = db_.run(any_write ? "BEGIN IMMEDIATE" : "BEGIN", "begin transaction");
    if (!begun.ok()) {
      for (auto& job : batch) deliver(job, job.fail(begun));
      return;
    }
  }

  std::vector<Executed> executed;
  executed.reserve(batch.size());
  uint64_t writes = 0;
  uint64_t reads = 0;
  for (auto& job : batch) {
    if (job.writes) {
      ++writes;
      if (auto s = db_.run("SAVEPOINT kiln_call", "savepoint"); !s.ok()) {
        executed.push_back({false, job.fail(s)});
        continue;
      }
    } else {
      ++reads;
    }
    Executed e = job.run(db_);
    if (job.writes) {
      if (!e.ok) db_.run("ROLLBACK TO kiln_call", "rollback call");
      db_.run("RELEASE kiln_call", "release call");
    }
    executed.push_back(std::move(e));
  }

  if (in_transaction) {
    Status committed = db_.run("COMMIT", "commit");
    if (!committed.ok()) {
      db_.run("ROLLBACK", "rollback");
      for (auto& job : batch) deliver(job, job.fail(committed));
      return;
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (any_write) ++stats_.write_transactions;
    stats_.writes += writes;
    stats_.reads += reads;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    deliver(batch[i], std::move(executed[i].deliver));
  }
}

void SqliteStore::deliver(const Job& job, std::function<void()> fn) {
  if (!fn) return;
  if (job.deliver_on_store_thread || !post_) {
    try {
      fn();
    } catch (const std::exception& e) {
      // Nobody above this thread could catch it; the store carries on.
      spdlog::error("store: a completion threw: {}", e.what());
    }
    return;
  }
  post_(std::move(fn));
}

void SqliteStore::flush(Completion<void> done) {
  submit<void>(false, [](SqliteDb&) { return Status{}; }, std::move(done));
}

void SqliteStore::get_state(std::string kind, std::string name, std::string key,
                            Completion<std::string> done) {
  submit<std::string>(
      false,
      [kind = std::move(kind), name = std::move(name),
       key = std::move(key)](SqliteDb& db) -> Result<std::string> {
        auto q = db.query(
            "SELECT s.value_json FROM object_state s JOIN objects o "
            "ON o.id = s.objectid WHERE o.class_name = ? AND o.name = ? "
            "AND s.name = ?");
        q.bind(1, kind).bind(2, name).bind(3, key);
        int rc = q.step();
        if (rc == SQLITE_ROW) return {{}, q.text(0)};
        if (rc == SQLITE_DONE) return {{}, "null"};
        return {db.error("reading state"), {}};
      },
      std::move(done));
}

void SqliteStore::put_state(std::string kind, std::string name, std::string key,
                            std::string value_json, Completion<void> done) {
  // Parsed here, on the caller's thread, to keep the store thread for SQL.
  auto parsed = nlohmann::json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    Status bad = Status::error(StatusCode::kInvalidArgument,
                               "state value for " + kind + " '" + name + "' key '" +
                                   key + "' is not JSON");
    submit<void>(true, [bad](SqliteDb&) { return bad; }, std::move(done));
    return;
  }
  const bool erase = parsed.is_null();
  submit<void>(
      true,
      [kind = std::move(kind), name = std::move(name), key = std::move(key),
       value = std::move(value_json), erase](SqliteDb& db) -> Status {
        if (erase) {
          auto q = db.query(
              "DELETE FROM object_state WHERE name = ? AND objectid = "
              "(SELECT id FROM objects WHERE name = ? AND class_name = ?)");
          q.bind(1, key).bind(2, name).bind(3, kind);
          return q.run("deleting state");
        }
        {
          auto q = db.query(
              "INSERT INTO objects(name, class_name) VALUES (?, ?) "
              "ON CONFLICT(name, class_name) DO NOTHING");
          q.bind(1, name).bind(2, kind);
          if (auto s = q.run("writing state"); !s.ok()) return s;
        }
        auto q = db.query(
            "INSERT INTO object_state(objectid, name, value_json) "
            "SELECT id, ?, ? FROM objects WHERE name = ? AND class_name = ? "
            "ON CONFLICT(objectid, name) DO UPDATE SET value_json = excluded.value_json");
        q.bind(1, key).bind(2, value).bind(3, name).bind(4, kind);
        return q.run("writing state");
      },
      std::move(done));
}

void SqliteStore::register_master(std::string name, int64_t now,
                                  Completion<int64_t> done) {
  submit<int64_t>(
      true,
      [name = std::move(name), now](SqliteDb& db) -> Result<int64_t> {
        auto q = db.query(
            "INSERT INTO masters(name, active, last_active) VALUES (?, 1, ?) "
            "ON CONFLICT(name) DO UPDATE SET active = 1, "
            "last_active = excluded.last_active RETURNING id");
        q.bind(1, name).bind(2, now);
        if (q.step() != SQLITE_ROW) return {db.error("registering master"), 0};
        int64_t id = q.int64(0);
        if (q.step() != SQLITE_DONE) return {db.error("registering master"), 0};
        return {{}, id};
      },
      std::move(done));
}

void SqliteStore::set_master_active(int64_t masterid, bool active, int64_t now,
                                    Completion<void> done) {
  submit<void>(
      true,
      [masterid, active, now](SqliteDb& db) -> Status {
        // As Buildbot: last_active records when a master was last seen
        // alive, so going inactive leaves it alone.
        auto q = db.query(
            "UPDATE masters SET active = ?, "
            "last_active = CASE WHEN ? THEN ? ELSE last_active END WHERE id = ?");
        q.bind(1, int64_t{active}).bind(2, int64_t{active}).bind(3, now).bind(4, masterid);
        if (auto s = q.run("updating master"); !s.ok()) return s;
        if (db.changes() == 0) {
          return Status::error(StatusCode::kNotFound,
                               "no master with id " + std::to_string(masterid));
        }
        return {};
      },
      std::move(done));
}

void SqliteStore::list_masters(Completion<std::vector<MasterRecord>> done) {
  submit<std::vector<MasterRecord>>(
      false,
      [](SqliteDb& db) -> Result<std::vector<MasterRecord>> {
        auto q = db.query(
            "SELECT id, name, active, last_active FROM masters ORDER BY id");
        std::vector<MasterRecord> out;
        int rc;
        while ((rc = q.step()) == SQLITE_ROW) {
          out.push_back({q.int64(0), q.text(1), q.int64(2) != 0, q.int64(3)});
        }
        if (rc != SQLITE_DONE) return {db.error("listing masters"), {}};
        return {{}, std::move(out)};
      },
      std::move(done));
}

}  // namespace kiln::store
