#pragma once
// Kiln's persistent state: the abstract Store the engine talks to, how one is
// opened from a `master.db` URL, and the blocking wrappers the CLI and tests
// use. SQLite is the only backend today (sqlite_store.cpp); the interface is
// kept free of SQLite types so a PostgreSQL backend can implement it later.
// Schema, migrations and threading are described in docs/store.md.
//
// Threading: every call that touches the database is asynchronous. The Store
// runs its SQL on a thread of its own and hands each result to a Completion,
// which it calls through the `post_to_loop` function given at open time (so
// results arrive on the engine's event loop), in the order the calls were
// made. Calls may be made from any thread. Writes queued while the store
// thread is busy are committed together in one transaction (group commit);
// a completion runs only after the transaction holding its call committed,
// so whatever a caller learns from a completion is durable state.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln::store {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // a bad URL, invalid JSON, a malformed migration list
  kNotFound,         // no store file, no such row
  kNotADatabase,     // the file is not SQLite, or SQLite but not Kiln's
  kSchemaTooOld,     // normal open of a store that needs `kiln upgrade-master`
  kSchemaTooNew,     // written by a newer kiln; never touched
  kUnsupported,      // e.g. a postgresql:// URL before that backend exists
  kIo,               // SQLite or file-system failure
  kInternal,
};

struct Status {
  StatusCode code = StatusCode::kOk;
  std::string message;

  bool ok() const { return code == StatusCode::kOk; }
  static Status error(StatusCode code, std::string message) {
    return Status{code, std::move(message)};
  }
};

template <class T>
struct Result {
  Status status;
  T value{};

  bool ok() const { return status.ok(); }
};

// What a completion receives: a Status for calls that return nothing, a
// Result<T> otherwise.
template <class T>
struct OutcomeOf {
  using type = Result<T>;
};
template <>
struct OutcomeOf<void> {
  using type = Status;
};
template <class T>
using Outcome = typename OutcomeOf<T>::type;

// The callback of one asynchronous call. Any callable taking Outcome<T>
// converts to it, and then runs through the store's post_to_loop.
// on_store_thread() instead runs it on the store's own thread right after
// the commit: the blocking wrappers use that, because a completion posted to
// a loop that is blocked waiting for it would never run.
template <class T>
class Completion {
 public:
  using Arg = Outcome<T>;

  Completion() = default;
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, Completion> &&
             std::is_invocable_v<std::decay_t<F>&, Arg>)
  Completion(F&& fn) : fn_(std::forward<F>(fn)) {}  // NOLINT: implicit by design

  static Completion on_store_thread(std::function<void(Arg)> fn) {
    Completion c(std::move(fn));
    c.on_store_thread_ = true;
    return c;
  }

  bool runs_on_store_thread() const { return on_store_thread_; }
  void operator()(Arg outcome) const {
    if (fn_) fn_(std::move(outcome));
  }

 private:
  std::function<void(Arg)> fn_;
  bool on_store_thread_ = false;
};

// Hands a function to the engine's event loop (EventLoop::post, usually).
using PostFn = std::function<void(std::function<void()>)>;

enum class OpenMode {
  kNormal,   // the schema must be current; an older one is refused with a hint
  kUpgrade,  // the store must exist; pending migrations are applied
  kCreate,   // the file is created when missing; pending migrations are applied
};

// One step of the schema, applied in its own transaction. Versions run
// 1, 2, 3, ... without gaps; a released migration never changes (add another).
struct Migration {
  int version = 0;
  std::string name;  // shown by upgrade-master: "initial schema"
  std::string sql;   // one or more statements for the backend's dialect
};

struct OpenOptions {
  // "sqlite:state.sqlite" (relative to base_dir), "sqlite:/abs/path.sqlite",
  // SQLAlchemy's "sqlite:///rel" and "sqlite:////abs", "sqlite::memory:".
  std::string url = "sqlite:state.sqlite";
  // The master folder: relative paths resolve against it, and refusals name
  // it in their `kiln upgrade-master DIR` hint.
  std::filesystem::path base_dir;
  OpenMode mode = OpenMode::kNormal;
  // Where completions run. Empty: on the store thread (the CLI has no loop).
  PostFn post_to_loop;
  // The schema's migrations, oldest first; empty means the built-in list.
  // Tests pass their own to exercise upgrades past the shipped schema.
  std::vector<Migration> migrations;
  // Receives one line per migration applied ("applying migration 1/1: ...").
  std::function<void(std::string_view line)> progress;
};

struct MasterRecord {
  int64_t masterid = 0;
  std::string name;  // Buildbot's convention: "hostname:basedir"
  bool active = false;
  int64_t last_active = 0;  // Unix seconds
};

struct StoreStats {
  uint64_t write_transactions = 0;  // commits that held at least one write
  uint64_t writes = 0;              // write calls executed
  uint64_t reads = 0;               // read calls executed
};

class Store {
 public:
  virtual ~Store() = default;

  // A file path or ":memory:", for messages.
  virtual std::string location() const = 0;
  virtual int schema_version() const = 0;
  virtual int latest_schema_version() const = 0;
  virtual StoreStats stats() const = 0;

  // Completes once every call queued before it has been committed.
  virtual void flush(Completion<void> done) = 0;

  // State a component keeps across restarts (a poller's last revision, a
  // scheduler's timer), one JSON text value per (component kind, component
  // name, key). A key never written reads as "null"; writing "null" removes
  // the key. put_state refuses text that is not JSON.
  virtual void get_state(std::string kind, std::string name, std::string key,
                         Completion<std::string> done) = 0;
  virtual void put_state(std::string kind, std::string name, std::string key,
                         std::string value_json, Completion<void> done) = 0;

  // Masters sharing this store. register_master creates the row if needed,
  // marks it active at `now` (Unix seconds) and returns its masterid.
  virtual void register_master(std::string name, int64_t now,
                               Completion<int64_t> done) = 0;
  // kNotFound when no master has that id.
  virtual void set_master_active(int64_t masterid, bool active, int64_t now,
                                 Completion<void> done) = 0;
  virtual void list_masters(Completion<std::vector<MasterRecord>> done) = 0;

  // Blocking wrappers over the calls above, for the CLI, start-up and tests.
  // They are safe on any thread, the loop's included: their completions run
  // on the store thread, not through post_to_loop. wait() returns once the
  // calls queued before it are committed and their completions handed to
  // post_to_loop (not necessarily run yet). Never call one from a completion
  // that runs on the store thread (on_store_thread(), or any completion when
  // post_to_loop is empty): that thread would wait for itself.
  Status wait();
  Result<std::string> get_state_sync(std::string kind, std::string name,
                                     std::string key);
  Status put_state_sync(std::string kind, std::string name, std::string key,
                        std::string value_json);
  Result<int64_t> register_master_sync(std::string name, int64_t now);
  Status set_master_active_sync(int64_t masterid, bool active, int64_t now);
  Result<std::vector<MasterRecord>> list_masters_sync();
};

// Runs `start` with a store-thread completion and blocks for its outcome:
//   auto r = wait_for<std::string>([&](auto done) {
//     store.get_state("scheduler", "nightly", "last", std::move(done)); });
template <class T, class Start>
Outcome<T> wait_for(Start&& start) {
  std::promise<Outcome<T>> promise;
  auto future = promise.get_future();
  start(Completion<T>::on_store_thread(
      [&promise](Outcome<T> outcome) { promise.set_value(std::move(outcome)); }));
  return future.get();
}

// Where a URL points. Relative SQLite paths are resolved against base_dir.
struct StoreLocation {
  enum class Backend { kSqliteFile, kSqliteMemory };
  Backend backend = Backend::kSqliteFile;
  std::filesystem::path path;  // empty for kSqliteMemory
};
Result<StoreLocation> parse_store_url(std::string_view url,
                                      const std::filesystem::path& base_dir);

// Opens (and, by mode, creates or upgrades) a store. Synchronous: it runs at
// start-up or in the CLI, before the loop serves anything. A store whose
// schema is newer than this binary is refused in every mode and never written
// to; a file that is not a Kiln SQLite store is refused likewise.
Result<std::unique_ptr<Store>> open_store(OpenOptions options);

// `kiln upgrade-master DIR`: brings the store at db_url (relative to
// master_dir) to this binary's schema, creating it when the file does not
// exist, and prints one line per step to `out`. `migrations` empty means the
// built-in list.
Status upgrade_master(const std::string& db_url,
                      const std::filesystem::path& master_dir, std::ostream& out,
                      std::vector<Migration> migrations = {});

}  // namespace kiln::store
