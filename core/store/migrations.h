#pragma once
// The SQLite schema's numbered migrations, and the runner that applies them.
// The version of a store is the highest version recorded in its
// kiln_migrations table (0 when the table does not exist). To add a
// migration, append it to sqlite_migrations() in migrations.cpp; see
// docs/store.md "Adding a migration".

#include "store/store.h"

#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace kiln::store {

class SqliteDb;

// Every migration this binary knows, oldest first.
const std::vector<Migration>& sqlite_migrations();

// kInvalidArgument unless versions run 1, 2, ... N without gaps and each has
// a name and SQL.
Status check_migration_list(std::span<const Migration> migrations);

// The store's schema version: 0 for an empty database. kNotADatabase when
// the file is not SQLite, or is an SQLite database with tables but no
// kiln_migrations (someone else's database).
Result<int> read_schema_version(SqliteDb& db);

// Applies every migration above the store's version, each in its own
// IMMEDIATE transaction together with its kiln_migrations row; a failure
// rolls that migration back and stops, leaving the store at the last
// version that committed. Foreign keys are off while migrations run (so a
// migration may rebuild a table) and checked before each commit.
// `progress` gets "applying migration 2/3: name" before each one.
Status apply_migrations(SqliteDb& db, std::span<const Migration> migrations,
                        const std::function<void(std::string_view)>& progress);

}  // namespace kiln::store
