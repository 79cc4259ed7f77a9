#pragma once
// Small pieces shared by the SQLite backend's engine calls
// (sqlite_engine.cpp) and data API reads (sqlite_query.cpp): optional
// binding, row lookups, (patch_base64 goes through kiln/sdk/base64.hpp).

#include "store/sqlite_db.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::store::sqlite_helpers {

inline Query& bind_optional(Query& q, int index, const std::optional<std::string>& v) {
  return v ? q.bind(index, *v) : q.bind_null(index);
}
inline Query& bind_optional(Query& q, int index, const std::optional<int64_t>& v) {
  return v ? q.bind(index, *v) : q.bind_null(index);
}

inline std::optional<int64_t> optional_int(const Query& q, int column) {
  if (q.is_null(column)) return std::nullopt;
  return q.int64(column);
}

inline Status not_found(std::string_view what, int64_t id) {
  return Status::error(StatusCode::kNotFound,
                       "no " + std::string(what) + " with id " + std::to_string(id));
}

// Steps a statement expected to return one row (INSERT ... RETURNING id,
// SELECT of one value) and gives its first column.
inline Result<int64_t> single_int(SqliteDb& db, Query& q, std::string_view what) {
  int rc = q.step();
  if (rc != SQLITE_ROW) {
    if (rc == SQLITE_DONE) {
      return {Status::error(StatusCode::kNotFound, std::string(what) + ": no row"), 0};
    }
    return {db.error(what), 0};
  }
  int64_t v = q.int64(0);
  if (q.step() != SQLITE_DONE) return {db.error(what), 0};
  return {{}, v};
}

// kOk when `sql` (one `?` for the id) finds a row, kNotFound naming `what`.
inline Status require_row(SqliteDb& db, const std::string& sql, int64_t id,
                          std::string_view what) {
  auto q = db.query(sql);
  q.bind(1, id);
  int rc = q.step();
  if (rc == SQLITE_ROW) return {};
  if (rc == SQLITE_DONE) return not_found(what, id);
  return db.error(what);
}

}  // namespace kiln::store::sqlite_helpers
