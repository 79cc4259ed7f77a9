#include "store/migrations.h"
#include "store/sqlite_db.h"
#include "store/sqlite_store.h"
#include "store/store.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <deque>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

using namespace kiln::store;
using kiln::testing::read_file;
using kiln::testing::TempDir;
using kiln::testing::write_file;

namespace {

std::vector<Migration> with_second_migration() {
  auto list = sqlite_migrations();
  list.push_back({2, "add master notes",
                  "ALTER TABLE masters ADD COLUMN notes TEXT NOT NULL DEFAULT '';"
                  "CREATE TABLE extra_things (id INTEGER PRIMARY KEY, label TEXT);"});
  return list;
}

OpenOptions file_options(const TempDir& dir, OpenMode mode,
                         std::vector<Migration> migrations = {}) {
  OpenOptions o;
  o.url = "sqlite:state.sqlite";
  o.base_dir = dir.path();
  o.mode = mode;
  o.migrations = std::move(migrations);
  return o;
}

std::unique_ptr<Store> open_ok(OpenOptions options) {
  auto r = open_store(std::move(options));
  INFO(r.status.message);
  REQUIRE(r.ok());
  return std::move(r.value);
}

// Everything in the folder with its bytes: proves a refused open wrote
// nothing, not even a -wal or -shm file beside the store.
std::map<std::string, std::string> snapshot(const TempDir& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    files[entry.path().filename().string()] = read_file(entry.path());
  }
  return files;
}

std::unique_ptr<Store> memory_store(PostFn post = {}) {
  OpenOptions o;
  o.url = "sqlite::memory:";
  o.mode = OpenMode::kCreate;
  o.post_to_loop = std::move(post);
  return open_ok(std::move(o));
}

SqliteDb raw_open(const std::filesystem::path& path) {
  auto db = SqliteDb::open(path.string(), SQLITE_OPEN_READONLY);
  REQUIRE(db.ok());
  return std::move(db.value);
}

std::set<std::string> tables_of(const std::filesystem::path& path) {
  auto db = raw_open(path);
  std::set<std::string> tables;
  auto q = db.query("SELECT name FROM sqlite_master WHERE type = 'table'");
  while (q.step() == SQLITE_ROW) tables.insert(q.text(0));
  return tables;
}

// A stand-in for the engine's loop: posted work waits until pump().
struct FakeLoop {
  std::mutex mutex;
  std::deque<std::function<void()>> queue;

  PostFn post() {
    return [this](std::function<void()> fn) {
      std::lock_guard lock(mutex);
      queue.push_back(std::move(fn));
    };
  }
  size_t size() {
    std::lock_guard lock(mutex);
    return queue.size();
  }
  size_t pump() {
    std::deque<std::function<void()>> ready;
    {
      std::lock_guard lock(mutex);
      ready.swap(queue);
    }
    for (auto& fn : ready) fn();
    return ready.size();
  }
};

}  // namespace

TEST_CASE("a new file store has every table of Buildbot's model and journals in WAL mode") {
  TempDir dir;
  std::vector<std::string> progress;
  auto options = file_options(dir, OpenMode::kCreate);
  options.progress = [&](std::string_view line) { progress.emplace_back(line); };
  auto store = open_ok(std::move(options));
  REQUIRE(store->schema_version() == 1);
  REQUIRE(store->latest_schema_version() == 1);
  REQUIRE(store->location() == (dir / "state.sqlite").string());
  REQUIRE(progress == std::vector<std::string>{"applying migration 1/1: initial schema"});
  store.reset();

  auto tables = tables_of(dir / "state.sqlite");
  for (const char* t :
       {"masters", "changes", "change_files", "change_properties", "change_users",
        "users", "users_info", "sourcestamps", "patches", "buildset_sourcestamps",
        "buildsets", "buildset_properties", "buildrequests", "buildrequest_claims",
        "builders", "builders_tags", "tags", "builder_masters", "workers",
        "configured_workers", "connected_workers", "builds", "build_properties",
        "build_data", "steps", "logs", "logchunks", "schedulers", "scheduler_masters",
        "scheduler_changes", "changesources", "changesource_masters", "objects",
        "object_state", "kiln_migrations"}) {
    INFO(t);
    REQUIRE(tables.count(t) == 1);
  }
  auto db = raw_open(dir / "state.sqlite");
  REQUIRE(db.scalar_text("PRAGMA journal_mode").value == "wal");
  REQUIRE(db.scalar_text("SELECT name FROM kiln_migrations WHERE version = 1").value ==
          "initial schema");
  // The engine's hot queries have their indexes.
  for (const char* index : {"buildrequests_pending", "builds_number", "logchunks_firstline"}) {
    INFO(index);
    REQUIRE(db.scalar_int(std::string("SELECT count(*) FROM sqlite_master WHERE "
                                      "type = 'index' AND name = '") +
                              index + "'",
                          0)
                .value == 1);
  }
}

TEST_CASE("data written to a file store is there after reopening it in normal mode") {
  TempDir dir;
  int64_t id = 0;
  {
    auto store = open_ok(file_options(dir, OpenMode::kCreate));
    REQUIRE(store->put_state_sync("change_source", "poller", "rev", "\"abc123\"").ok());
    id = store->register_master_sync("host:/srv/master", 1'700'000'000).value;
  }
  auto store = open_ok(file_options(dir, OpenMode::kNormal));
  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value == "\"abc123\"");
  auto masters = store->list_masters_sync();
  REQUIRE(masters.ok());
  REQUIRE(masters.value.size() == 1);
  REQUIRE(masters.value[0].masterid == id);
  REQUIRE(masters.value[0].name == "host:/srv/master");
}

TEST_CASE("a store with a newer schema is refused in every mode and left byte for byte") {
  TempDir dir;
  {
    auto store = open_ok(file_options(dir, OpenMode::kCreate, with_second_migration()));
    REQUIRE(store->put_state_sync("scheduler", "nightly", "next", "42").ok());
  }
  const auto before = snapshot(dir);
  REQUIRE(before.count("state.sqlite") == 1);
  for (OpenMode mode : {OpenMode::kNormal, OpenMode::kUpgrade, OpenMode::kCreate}) {
    auto r = open_store(file_options(dir, mode));
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status.code == StatusCode::kSchemaTooNew);
    REQUIRE_THAT(r.status.message,
                 Catch::Contains("is at schema version 2, newer than this kiln's 1"));
    REQUIRE(snapshot(dir) == before);
  }
  std::ostringstream out;
  REQUIRE(upgrade_master("sqlite:state.sqlite", dir.path(), out).code ==
          StatusCode::kSchemaTooNew);
  REQUIRE(snapshot(dir) == before);
}

TEST_CASE("an older store is refused in normal mode with the upgrade-master hint") {
  TempDir dir;
  open_ok(file_options(dir, OpenMode::kCreate)).reset();
  const auto before = snapshot(dir);
  auto r = open_store(file_options(dir, OpenMode::kNormal, with_second_migration()));
  REQUIRE(r.status.code == StatusCode::kSchemaTooOld);
  REQUIRE(r.status.message == "store at " + (dir / "state.sqlite").string() +
                                  " is at schema version 1, this kiln needs 2: run "
                                  "`kiln upgrade-master " +
                                  dir.path().string() + "`");
  REQUIRE(snapshot(dir) == before);
}

TEST_CASE("upgrade mode applies the pending migrations and keeps existing data") {
  TempDir dir;
  int64_t id = 0;
  {
    auto store = open_ok(file_options(dir, OpenMode::kCreate));
    REQUIRE(store->put_state_sync("scheduler", "nightly", "next", "[1,2]").ok());
    id = store->register_master_sync("m1", 100).value;
  }
  std::vector<std::string> progress;
  auto options = file_options(dir, OpenMode::kUpgrade, with_second_migration());
  options.progress = [&](std::string_view line) { progress.emplace_back(line); };
  {
    auto store = open_ok(std::move(options));
    REQUIRE(store->schema_version() == 2);
    REQUIRE(progress == std::vector<std::string>{"applying migration 2/2: add master notes"});
    REQUIRE(store->get_state_sync("scheduler", "nightly", "next").value == "[1,2]");
    REQUIRE(store->list_masters_sync().value.at(0).masterid == id);
  }
  auto db = raw_open(dir / "state.sqlite");
  REQUIRE(db.scalar_text("SELECT notes FROM masters WHERE name = 'm1'").ok());
  REQUIRE(db.scalar_int("SELECT max(version) FROM kiln_migrations", 0).value == 2);
  // And now normal mode accepts it.
  REQUIRE(open_store(file_options(dir, OpenMode::kNormal, with_second_migration())).ok());
}

TEST_CASE("a failing migration is rolled back and the store stays at its previous version") {
  TempDir dir;
  {
    auto store = open_ok(file_options(dir, OpenMode::kCreate));
    REQUIRE(store->put_state_sync("worker", "w1", "seen", "true").ok());
  }
  auto broken = sqlite_migrations();
  broken.push_back({2, "half done",
                    "CREATE TABLE half_done (x INTEGER);"
                    "INSERT INTO no_such_table VALUES (1);"});
  auto r = open_store(file_options(dir, OpenMode::kUpgrade, broken));
  REQUIRE(r.status.code == StatusCode::kIo);
  REQUIRE_THAT(r.status.message, Catch::Contains("migration 2/2 (half done)"));
  REQUIRE_THAT(r.status.message, Catch::Contains("unchanged at schema version 1"));

  REQUIRE(tables_of(dir / "state.sqlite").count("half_done") == 0);
  auto store = open_ok(file_options(dir, OpenMode::kNormal));
  REQUIRE(store->schema_version() == 1);
  REQUIRE(store->get_state_sync("worker", "w1", "seen").value == "true");
}

TEST_CASE("a migration list with a gap in its versions is refused before any change") {
  TempDir dir;
  auto list = sqlite_migrations();
  list.push_back({3, "skips two", "SELECT 1;"});
  auto r = open_store(file_options(dir, OpenMode::kCreate, list));
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_FALSE(std::filesystem::exists(dir / "state.sqlite"));
}

TEST_CASE("a file that is not an SQLite database is refused with a clear error and left alone") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 100; ++i) text += "master: {title: not a database}\n";
  write_file(dir / "state.sqlite", text);
  for (OpenMode mode : {OpenMode::kNormal, OpenMode::kUpgrade, OpenMode::kCreate}) {
    auto r = open_store(file_options(dir, mode));
    REQUIRE(r.status.code == StatusCode::kNotADatabase);
    REQUIRE(r.status.message ==
            (dir / "state.sqlite").string() + " is not an SQLite database");
  }
  REQUIRE(snapshot(dir) == std::map<std::string, std::string>{{"state.sqlite", text}});
}

TEST_CASE("an SQLite database of another program is refused as not a Kiln store") {
  TempDir dir;
  {
    auto db = SqliteDb::open((dir / "state.sqlite").string(),
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    REQUIRE(db.ok());
    REQUIRE(db.value.exec("CREATE TABLE notes (body TEXT)", "create").ok());
  }
  auto r = open_store(file_options(dir, OpenMode::kCreate));
  REQUIRE(r.status.code == StatusCode::kNotADatabase);
  REQUIRE_THAT(r.status.message, Catch::Contains("not a Kiln store"));
}

TEST_CASE("normal and upgrade mode on a missing file report it and create nothing") {
  TempDir dir;
  for (OpenMode mode : {OpenMode::kNormal, OpenMode::kUpgrade}) {
    auto r = open_store(file_options(dir, mode));
    REQUIRE(r.status.code == StatusCode::kNotFound);
    REQUIRE_THAT(r.status.message, Catch::Contains("no store at"));
  }
  REQUIRE(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("store URLs resolve relative files against the master folder") {
  const std::filesystem::path base = "/srv/master";
  auto file = [&](std::string_view url) {
    auto r = parse_store_url(url, base);
    INFO(url << ": " << r.status.message);
    REQUIRE(r.ok());
    REQUIRE(r.value.backend == StoreLocation::Backend::kSqliteFile);
    return r.value.path.string();
  };
  REQUIRE(file("sqlite:state.sqlite") == "/srv/master/state.sqlite");
  REQUIRE(file("sqlite:db/../state.sqlite") == "/srv/master/state.sqlite");
  REQUIRE(file("sqlite:/var/lib/kiln/state.sqlite") == "/var/lib/kiln/state.sqlite");
  REQUIRE(file("sqlite:///state.sqlite") == "/srv/master/state.sqlite");
  REQUIRE(file("sqlite:////var/state.sqlite") == "/var/state.sqlite");
  REQUIRE(parse_store_url("sqlite::memory:", base).value.backend ==
          StoreLocation::Backend::kSqliteMemory);
  REQUIRE(parse_store_url("postgresql://ci@db/kiln", base).status.code ==
          StatusCode::kUnsupported);
  REQUIRE(parse_store_url("mysql://db/kiln", base).status.code ==
          StatusCode::kInvalidArgument);
  REQUIRE(parse_store_url("sqlite:", base).status.code == StatusCode::kInvalidArgument);
}

TEST_CASE("an in-memory store must be opened in create mode") {
  OpenOptions o;
  o.url = "sqlite::memory:";
  o.mode = OpenMode::kNormal;
  REQUIRE(open_store(o).status.code == StatusCode::kSchemaTooOld);
  o.mode = OpenMode::kCreate;
  auto store = open_ok(o);
  REQUIRE(store->location() == ":memory:");
  REQUIRE(store->schema_version() == 1);
}

TEST_CASE("component state round-trips JSON text and reads unknown keys as null") {
  auto store = memory_store();

  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value == "null");
  REQUIRE(store->put_state_sync("change_source", "poller", "rev",
                                R"({"main":"abc","dev":null})")
              .ok());
  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value ==
          R"({"main":"abc","dev":null})");
  // The same key of another component, or of the same name in another kind,
  // is separate.
  REQUIRE(store->get_state_sync("change_source", "other", "rev").value == "null");
  REQUIRE(store->get_state_sync("scheduler", "poller", "rev").value == "null");
  REQUIRE(store->get_state_sync("change_source", "poller", "other").value == "null");

  REQUIRE(store->put_state_sync("change_source", "poller", "rev", "7").ok());
  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value == "7");

  auto bad = store->put_state_sync("change_source", "poller", "rev", "{not json");
  REQUIRE(bad.code == StatusCode::kInvalidArgument);
  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value == "7");

  REQUIRE(store->put_state_sync("change_source", "poller", "rev", " null ").ok());
  REQUIRE(store->get_state_sync("change_source", "poller", "rev").value == "null");
}

TEST_CASE("a master registers once per name and records when it was last active") {
  auto store = memory_store();
  auto a = store->register_master_sync("a:/m", 100);
  auto b = store->register_master_sync("b:/m", 110);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a.value != b.value);
  REQUIRE(store->set_master_active_sync(a.value, false, 200).ok());
  REQUIRE(store->register_master_sync("a:/m", 300).value == a.value);
  REQUIRE(store->set_master_active_sync(b.value, false, 400).ok());

  auto masters = store->list_masters_sync().value;
  REQUIRE(masters.size() == 2);
  REQUIRE(masters[0].name == "a:/m");
  REQUIRE(masters[0].active);
  REQUIRE(masters[0].last_active == 300);
  REQUIRE(masters[1].name == "b:/m");
  REQUIRE_FALSE(masters[1].active);
  REQUIRE(masters[1].last_active == 110);

  REQUIRE(store->set_master_active_sync(9999, true, 1).code == StatusCode::kNotFound);
}

TEST_CASE("a burst of 1,000 writes queued while the store is busy commits in one transaction") {
  TempDir dir;
  auto store = open_ok(file_options(dir, OpenMode::kCreate));
  auto* sqlite = dynamic_cast<SqliteStore*>(store.get());
  REQUIRE(sqlite != nullptr);
  const auto before = store->stats();

  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  sqlite->hold();
  for (int i = 0; i < 1000; ++i) {
    store->put_state("scheduler", "s", "k" + std::to_string(i), std::to_string(i),
                     [&](Status s) { (s.ok() ? ok : failed)++; });
  }
  sqlite->release();
  REQUIRE(store->wait().ok());
  REQUIRE(ok == 1000);
  REQUIRE(failed == 0);
  const auto after = store->stats();
  REQUIRE(after.writes - before.writes == 1000);
  REQUIRE(after.write_transactions - before.write_transactions == 1);
  store.reset();

  auto db = raw_open(dir / "state.sqlite");
  REQUIRE(db.scalar_int("SELECT count(*) FROM object_state", 0).value == 1000);
  REQUIRE(db.scalar_text("SELECT value_json FROM object_state WHERE name = 'k999'").value ==
          "999");
}

TEST_CASE("writes issued without waiting complete in the order they were made and are all visible") {
  TempDir dir;
  auto store = open_ok(file_options(dir, OpenMode::kCreate));
  std::mutex mutex;
  std::vector<int> order;
  for (int i = 0; i < 1000; ++i) {
    store->put_state("worker", "w", "k" + std::to_string(i % 100), std::to_string(i),
                     [&, i](Status s) {
                       REQUIRE(s.ok());
                       std::lock_guard lock(mutex);
                       order.push_back(i);
                     });
  }
  REQUIRE(store->wait().ok());
  std::vector<int> expected(1000);
  for (int i = 0; i < 1000; ++i) expected[i] = i;
  REQUIRE(order == expected);
  // The last write of each key wins.
  REQUIRE(store->get_state_sync("worker", "w", "k0").value == "900");
  REQUIRE(store->get_state_sync("worker", "w", "k99").value == "999");
}

TEST_CASE("a failing call is undone alone while the rest of its batch commits") {
  auto store = memory_store();
  auto* sqlite = dynamic_cast<SqliteStore*>(store.get());
  std::vector<StatusCode> codes(3);
  sqlite->hold();
  store->put_state("scheduler", "s", "a", "1", [&](Status s) { codes[0] = s.code; });
  store->set_master_active(12345, true, 1, [&](Status s) { codes[1] = s.code; });
  store->put_state("scheduler", "s", "b", "2", [&](Status s) { codes[2] = s.code; });
  sqlite->release();
  REQUIRE(store->wait().ok());
  REQUIRE(codes == std::vector<StatusCode>{StatusCode::kOk, StatusCode::kNotFound,
                                           StatusCode::kOk});
  REQUIRE(store->get_state_sync("scheduler", "s", "a").value == "1");
  REQUIRE(store->get_state_sync("scheduler", "s", "b").value == "2");
}

TEST_CASE("completions arrive through the post function, in call order, when the loop runs them") {
  FakeLoop loop;
  auto store = memory_store(loop.post());

  std::vector<std::string> seen;
  std::set<std::thread::id> threads;
  store->put_state("reporter", "mail", "sent", "3", [&](Status s) {
    seen.push_back("put " + std::string(s.ok() ? "ok" : s.message));
    threads.insert(std::this_thread::get_id());
  });
  store->get_state("reporter", "mail", "sent", [&](Result<std::string> r) {
    seen.push_back("get " + r.value);
    threads.insert(std::this_thread::get_id());
  });
  store->register_master("m", 5, [&](Result<int64_t> r) {
    seen.push_back("master " + std::to_string(r.value));
    threads.insert(std::this_thread::get_id());
  });
  // wait() itself completes on the store thread, so it returns even though
  // the loop is not running; the three completions are queued, not run.
  REQUIRE(store->wait().ok());
  REQUIRE(seen.empty());
  REQUIRE(loop.size() == 3);

  REQUIRE(loop.pump() == 3);
  REQUIRE(seen == std::vector<std::string>{"put ok", "get 3", "master 1"});
  REQUIRE(threads == std::set<std::thread::id>{std::this_thread::get_id()});
}

TEST_CASE("blocking wrappers return while the loop that receives completions is not running") {
  FakeLoop loop;
  auto store = memory_store(loop.post());
  REQUIRE(store->put_state_sync("step", "compile", "warnings", "12").ok());
  REQUIRE(store->get_state_sync("step", "compile", "warnings").value == "12");
  REQUIRE(loop.size() == 0);
}

TEST_CASE("destroying a store first runs every call still queued") {
  TempDir dir;
  std::atomic<int> completed{0};
  {
    auto store = open_ok(file_options(dir, OpenMode::kCreate));
    auto* sqlite = dynamic_cast<SqliteStore*>(store.get());
    sqlite->hold();
    for (int i = 0; i < 50; ++i) {
      store->put_state("scheduler", "s", "k" + std::to_string(i), "true",
                       [&](Status s) { completed += s.ok() ? 1 : 0; });
    }
  }
  REQUIRE(completed == 50);
  auto store = open_ok(file_options(dir, OpenMode::kNormal));
  REQUIRE(store->get_state_sync("scheduler", "s", "k49").value == "true");
}

TEST_CASE("upgrade-master prints each migration it applies, then reports the store current") {
  TempDir dir;
  open_ok(file_options(dir, OpenMode::kCreate)).reset();
  const std::string path = (dir / "state.sqlite").string();

  std::ostringstream first;
  REQUIRE(upgrade_master("sqlite:state.sqlite", dir.path(), first, with_second_migration())
              .ok());
  REQUIRE(first.str() == "upgrading store at " + path +
                             "\napplying migration 2/2: add master notes\n"
                             "store is at schema version 2\n");

  std::ostringstream second;
  REQUIRE(upgrade_master("sqlite:state.sqlite", dir.path(), second, with_second_migration())
              .ok());
  REQUIRE(second.str() == "upgrading store at " + path +
                              "\nstore is already at schema version 2; nothing to do\n");
}

TEST_CASE("upgrade-master creates a missing store with the built-in schema") {
  TempDir dir;
  std::ostringstream out;
  REQUIRE(upgrade_master("sqlite:state.sqlite", dir.path(), out).ok());
  REQUIRE(out.str() == "creating store at " + (dir / "state.sqlite").string() +
                           "\napplying migration 1/1: initial schema\n"
                           "store is at schema version 1\n");
  REQUIRE(open_store(file_options(dir, OpenMode::kNormal)).ok());
}
