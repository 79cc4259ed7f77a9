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
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::store {

class SqliteDb;

// One use of a cached statement; resets it and clears bindings on
// destruction so the next use starts clean.
class Query {
 public:
  Query(SqliteDb& db, sqlite3_stmt* stmt, bool owned = false)
      : db_(&db), stmt_(stmt), owned_(owned) {}
  Query(Query&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), owned_(other.owned_) {}
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
  // A cached prepared statement; check valid() or let step() fail.
  Query query(const std::string& sql);
  // A statement finalized after use: for SQL assembled per request (data
  // API filters), whose shapes would otherwise grow the cache without bound.
  Query query_once(const std::string& sql);
  // The first column of the first row as an integer, or `fallback` when
  // there is no row.
  Result<int64_t> scalar_int(const std::string& sql, int64_t fallback);
  Result<std::string> scalar_text(const std::string& sql);
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

  // Statements are declared after the connection so they finalize first.
  std::unique_ptr<sqlite3, CloseDb> db_;
  std::map<std::string, StmtPtr, std::less<>> statements_;
};

}  // namespace kiln::store
