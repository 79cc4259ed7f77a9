#include "store/sqlite_db.h"

namespace kiln::store {

Query::~Query() {
  if (stmt_ == nullptr) return;
  if (owned_) {
    sqlite3_finalize(stmt_);
    return;
  }
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  if (in_use_ != nullptr) *in_use_ = false;
}

Query& Query::bind(int index, int64_t value) {
  if (stmt_ != nullptr) sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Query& Query::bind(int index, std::string_view text) {
  if (stmt_ != nullptr) {
    sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT,
                        SQLITE_UTF8);
  }
  return *this;
}

Query& Query::bind_blob(int index, std::span<const uint8_t> bytes) {
  if (stmt_ != nullptr) {
    // A zero-length blob must stay a blob, not become NULL.
    static const uint8_t kEmpty = 0;
    sqlite3_bind_blob64(stmt_, index, bytes.empty() ? &kEmpty : bytes.data(),
                        bytes.size(), SQLITE_TRANSIENT);
  }
  return *this;
}

Query& Query::bind_null(int index) {
  if (stmt_ != nullptr) sqlite3_bind_null(stmt_, index);
  return *this;
}

int Query::step() {
  if (stmt_ == nullptr) return SQLITE_MISUSE;
  return sqlite3_step(stmt_);
}

Status Query::run(std::string_view what) {
  if (stmt_ == nullptr) return db_->error(what);
  int rc;
  while ((rc = sqlite3_step(stmt_)) == SQLITE_ROW) {
  }
  if (rc != SQLITE_DONE) return db_->error(what);
  return {};
}

int64_t Query::int64(int column) const {
  return sqlite3_column_int64(stmt_, column);
}

std::string Query::text(int column) const {
  const auto* p = sqlite3_column_text(stmt_, column);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(stmt_, column)));
}

std::span<const uint8_t> Query::blob(int column) const {
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, column));
  if (p == nullptr) return {};
  return {p, static_cast<size_t>(sqlite3_column_bytes(stmt_, column))};
}

bool Query::is_null(int column) const {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

void SqliteDb::CloseDb::operator()(sqlite3* db) const {
  // _v2 defers the close until any statement still alive is finalized.
  sqlite3_close_v2(db);
}

SqliteDb::~SqliteDb() {
  statements_.clear();
  transient_.clear();
}

Result<SqliteDb> SqliteDb::open(const std::string& path, int flags) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  SqliteDb db;
  db.db_.reset(raw);
  if (rc != SQLITE_OK) {
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    return {Status::error(rc == SQLITE_CANTOPEN ? StatusCode::kNotFound
                                                : StatusCode::kIo,
                          message),
            {}};
  }
  sqlite3_extended_result_codes(raw, 1);
  return {{}, std::move(db)};
}

Status SqliteDb::exec(std::string_view sql, std::string_view what) {
  std::string text(sql);
  char* message = nullptr;
  int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return {};
  std::string detail = message != nullptr ? message : sqlite3_errstr(rc);
  sqlite3_free(message);
  StatusCode code =
      (rc & 0xff) == SQLITE_NOTADB ? StatusCode::kNotADatabase : StatusCode::kIo;
  return Status::error(code, std::string(what) + ": " + detail);
}

sqlite3_stmt* SqliteDb::prepare(std::string_view sql, bool persistent) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                         persistent ? SQLITE_PREPARE_PERSISTENT : 0, &stmt,
                         nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return nullptr;
  }
  return stmt;
}

Query SqliteDb::use(Cache& cache, std::string_view sql, bool persistent) {
  auto it = cache.find(sql);
  if (it == cache.end()) {
    sqlite3_stmt* stmt = prepare(sql, persistent);
    if (stmt == nullptr) return Query(*this, nullptr);
    it = cache.emplace(std::string(sql), Cached{StmtPtr(stmt)}).first;
  } else if (it->second.in_use) {
    // Resetting it here would pull the rows from under its first user.
    return Query(*this, prepare(sql, false), /*owned=*/true);
  }
  it->second.in_use = true;
  it->second.last_used = ++uses_;
  return Query(*this, it->second.stmt.get(), /*owned=*/false, &it->second.in_use);
}

Query SqliteDb::query(std::string_view sql) { return use(statements_, sql, true); }

Query SqliteDb::query_once(std::string_view sql) {
  if (transient_.size() >= kMaxTransient && !transient_.contains(sql)) evict_transient();
  return use(transient_, sql, false);
}

void SqliteDb::evict_transient() {
  auto oldest = transient_.end();
  for (auto it = transient_.begin(); it != transient_.end(); ++it) {
    if (it->second.in_use) continue;
    if (oldest == transient_.end() || it->second.last_used < oldest->second.last_used) {
      oldest = it;
    }
  }
  if (oldest != transient_.end()) transient_.erase(oldest);
}

Status SqliteDb::run(std::string_view sql, std::string_view what) {
  return query(sql).run(what);
}

Result<int64_t> SqliteDb::scalar_int(std::string_view sql, int64_t fallback) {
  auto q = query(sql);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {{}, q.is_null(0) ? fallback : q.int64(0)};
  if (rc == SQLITE_DONE) return {{}, fallback};
  return {error(sql), 0};
}

Result<std::string> SqliteDb::scalar_text(std::string_view sql) {
  auto q = query(sql);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {{}, q.text(0)};
  if (rc == SQLITE_DONE) return {{}, {}};
  return {error(sql), {}};
}

Status SqliteDb::error(std::string_view what) const {
  int rc = sqlite3_errcode(db_.get());
  StatusCode code = StatusCode::kIo;
  if ((rc & 0xff) == SQLITE_NOTADB) code = StatusCode::kNotADatabase;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) code = StatusCode::kInvalidArgument;
  return Status::error(code, std::string(what) + ": " + sqlite3_errmsg(db_.get()));
}

void SqliteDb::clear_statement_cache() {
  statements_.clear();
  transient_.clear();
}

}  // namespace kiln::store
