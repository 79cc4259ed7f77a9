#pragma once
// A thin RAII layer over one sqlite3 connection: prepared statements cached
// by SQL text, errors as Status values. Used only by the SQLite backend; no
// SQLite type leaves the store area.
//
//   auto q = db.query("SELECT value_json FROM object_state WHERE objectid = ?");
//   q.bind(1, objectid);
//   if (q.step() == SQLITE_ROW) value = q.text(0);
//   // the statement is reset when q goes out of scope

#include "store/store.h"

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace kiln::store {

class SqliteDb;

// One use of a cached statement; resets it and clears bindings on
// destruction so the next use starts clean.
class Query {
 public:
  // `in_use` is the cache's flag for `stmt`, cleared again at the end.
  Query(SqliteDb& db, sqlite3_stmt* stmt, bool owned = false, bool* in_use = nullptr)
      : db_(&db), stmt_(stmt), owned_(owned), in_use_(in_use) {}
  Query(Query&& other) noexcept
      : db_(other.db_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        owned_(other.owned_),
        in_use_(std::exchange(other.in_use_, nullptr)) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  Query& operator=(Query&&) = delete;
  ~Query();

  // False when the statement failed to prepare; status() says why.
  bool valid() const { return stmt_ != nullptr; }

  Query& bind(int index, int64_t value);
  Query& bind(int index, std::string_view text);
  Query& bind_blob(int index, std::span<const uint8_t> bytes);
  Query& bind_null(int index);

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  // Steps to completion; an error as a Status naming `what`.
  Status run(std::string_view what);

  int64_t int64(int column) const;
  std::string text(int column) const;
  // Valid until the next step() or the end of the Query.
  std::span<const uint8_t> blob(int column) const;
  bool is_null(int column) const;

 private:
  SqliteDb* db_;
  sqlite3_stmt* stmt_;
  bool owned_ = false;  // finalized, not returned to the cache, at the end
  bool* in_use_ = nullptr;
};

class SqliteDb {
 public:
  SqliteDb() = default;
  SqliteDb(SqliteDb&&) noexcept = default;
  SqliteDb& operator=(SqliteDb&&) noexcept = default;
  ~SqliteDb();

  // flags: SQLITE_OPEN_READONLY / READWRITE / CREATE ...; a path of
  // ":memory:" opens a private in-memory database. The error message is
  // SQLite's alone: the caller knows what it was opening, and the path may
  // be a URI the user never wrote.
  static Result<SqliteDb> open(const std::string& path, int flags);

  sqlite3* handle() const { return db_.get(); }
  explicit operator bool() const { return db_ != nullptr; }

  // Runs one or more statements that return no rows of interest.
  Status exec(std::string_view sql, std::string_view what);
  // A cached prepared statement; check valid() or let step() fail. A
  // statement already in use (nested use of the same SQL) is prepared anew
  // for this use alone.
  Query query(std::string_view sql);
  // For SQL assembled per request (data API filters): cached too, but only
  // the kMaxTransient most recently used shapes are kept, so that the cache
  // cannot grow without bound.
  Query query_once(std::string_view sql);
  // One statement without rows of interest (BEGIN, SAVEPOINT ...) through
  // the cache: parsed once, not on every call as exec() does.
  Status run(std::string_view sql, std::string_view what);
  // The first column of the first row as an integer, or `fallback` when
  // there is no row.
  Result<int64_t> scalar_int(std::string_view sql, int64_t fallback);
  Result<std::string> scalar_text(std::string_view sql);
  // Rows changed by the last INSERT, UPDATE or DELETE.
  int64_t changes() const { return sqlite3_changes64(db_.get()); }

  // "what: <sqlite message>" with a status code matching the error.
  Status error(std::string_view what) const;
  // Drops the statement cache (before a schema change invalidates it).
  void clear_statement_cache();

 private:
  struct CloseDb {
    void operator()(sqlite3* db) const;
  };
  struct FinalizeStmt {
    void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
  };
  using StmtPtr = std::unique_ptr<sqlite3_stmt, FinalizeStmt>;
  struct Cached {
    StmtPtr stmt;
    bool in_use = false;
    uint64_t last_used = 0;  // transient statements only
  };
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const {
      return std::hash<std::string_view>{}(sql);
    }
  };
  using Cache = std::unordered_map<std::string, Cached, SqlHash, std::equal_to<>>;

  static constexpr size_t kMaxTransient = 64;

  sqlite3_stmt* prepare(std::string_view sql, bool persistent);
  Query use(Cache& cache, std::string_view sql, bool persistent);
  void evict_transient();

  // Statements are declared after the connection so they finalize first.
  std::unique_ptr<sqlite3, CloseDb> db_;
  Cache statements_;
  Cache transient_;
  uint64_t uses_ = 0;
};

}  // namespace kiln::store
