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

#include "store/records.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
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
  uint64_t log_chunks_read = 0;     // logchunks rows fetched by log reads
};

// ---- Users (users.cpp) -------------------------------------------------
// Buildbot's user objects: a unique identifier, attributes by type (one
// value per type; a value belongs to one user: git "Name <email>", email,
// irc nick, ...), and an optional web/IRC login whose password is kept only
// as a crypt(3) hash (hash_password below).

struct UserRecord {
  int64_t uid = 0;
  std::string identifier;
  std::optional<std::string> bb_username;
  bool has_password = false;  // the hash itself leaves the store only via user_login
  std::map<std::string, std::string> attributes;  // attr_type -> attr_data
};

// A new user, or the changes to one: unset fields stay as they are. An
// attribute given an empty value is removed; bb_username "" removes the
// login, password included.
struct UserChanges {
  std::optional<std::string> identifier;
  std::map<std::string, std::string> attributes;
  std::optional<std::string> bb_username;
  std::optional<std::string> bb_password_hash;  // hash_password()'s output, never a password
};

// Which user: by uid when it is nonzero, else by identifier.
struct UserRef {
  int64_t uid = 0;
  std::string identifier;

  std::string describe() const;  // "user 3", "user 'alice'"
};

// What a login check needs (verify_password).
struct UserLogin {
  int64_t uid = 0;
  std::string identifier;
  std::string bb_password_hash;
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

  // ---- The build engine's calls (docs/store.md "The engine's calls") ----
  // Each is one call in the group-commit queue: a call that writes several
  // tables is atomic. kNotFound names a missing row; kInvalidArgument a bad
  // argument or a constraint broken.

  // Changes and users. add_change also finds or creates the change's
  // sourcestamp and links change_users for change.uids.
  virtual void add_change(ChangeRecord change, Completion<int64_t> done) = 0;
  // The user whose (attr_type, attr_data) is given, created with
  // `identifier` (made unique with "_2", ...) when no user has that attribute.
  virtual void find_or_create_user(std::string identifier, std::string attr_type,
                                   std::string attr_data, Completion<int64_t> done) = 0;

  // Buildsets: one request per builder in request.builderids.
  virtual void add_buildset(BuildsetRequest request, Completion<BuildsetIds> done) = 0;
  virtual void complete_buildset(int64_t bsid, int results, int64_t complete_at,
                                 Completion<void> done) = 0;

  // Builders and workers. ensure_* create the row or update it in place.
  virtual void ensure_builder(std::string name, std::optional<std::string> description,
                              std::vector<std::string> tags,
                              Completion<int64_t> done) = 0;
  virtual void list_builders(Completion<std::vector<BuilderRecord>> done) = 0;
  virtual void ensure_worker(std::string name, nlohmann::json info,
                             Completion<int64_t> done) = 0;
  virtual void set_worker_connected(int64_t workerid, int64_t masterid, bool connected,
                                    Completion<void> done) = 0;
  virtual void set_worker_info(int64_t workerid, nlohmann::json info,
                               Completion<void> done) = 0;
  // The worker's `paused` and `graceful` flags (the data API's worker
  // record): no new builds while either is set.
  virtual void set_worker_state(int64_t workerid, bool paused, bool graceful,
                                Completion<void> done) = 0;

  // Build requests. Pending = neither claimed nor complete; highest priority
  // first, then oldest. limit 0 = all.
  virtual void pending_requests(std::optional<int64_t> builderid, int64_t limit,
                                Completion<std::vector<BuildRequestRecord>> done) = 0;
  // The subset of brids this master now holds: requests already claimed (by
  // anyone), complete or missing are left out.
  virtual void claim_requests(std::vector<int64_t> brids, int64_t masterid, int64_t now,
                              Completion<std::vector<int64_t>> done) = 0;
  virtual void unclaim_requests(std::vector<int64_t> brids, Completion<void> done) = 0;
  // All or nothing: kInvalidArgument when one is missing or already complete.
  virtual void complete_requests(std::vector<int64_t> brids, int results,
                                 int64_t complete_at, Completion<void> done) = 0;
  // true: it was unclaimed and is now complete with CANCELLED. false: it is
  // claimed (the engine stops its build instead) or already complete.
  virtual void cancel_request(int64_t brid, int64_t now, Completion<bool> done) = 0;

  // Builds: number is the builder's next, starting at 1.
  virtual void add_build(int64_t builderid, int64_t buildrequestid,
                         std::optional<int64_t> workerid, int64_t masterid,
                         int64_t started_at, std::string state_string,
                         Completion<BuildIds> done) = 0;
  virtual void set_build_state_string(int64_t buildid, std::string state_string,
                                      Completion<void> done) = 0;
  virtual void finish_build(int64_t buildid, int results, int64_t complete_at,
                            Completion<void> done) = 0;
  virtual void set_build_property(int64_t buildid, std::string name, nlohmann::json value,
                                  std::string source, Completion<void> done) = 0;
  // {name: [value, source]}
  virtual void build_properties(int64_t buildid, Completion<nlohmann::json> done) = 0;

  // Steps: a name already used in the build gets "_2", "_3", ... appended.
  virtual void add_step(int64_t buildid, std::string name, Completion<StepIds> done) = 0;
  virtual void start_step(int64_t stepid, int64_t started_at, Completion<void> done) = 0;
  virtual void set_step_state_string(int64_t stepid, std::string state_string,
                                     Completion<void> done) = 0;
  virtual void add_step_url(int64_t stepid, std::string name, std::string url,
                            Completion<void> done) = 0;
  virtual void finish_step(int64_t stepid, int results, bool hidden, int64_t complete_at,
                           Completion<void> done) = 0;

  // Logs. type: 's' stdio, 't' text, 'h' html. The slug is the name made an
  // identifier, unique per step; a name already used in the step is refused.
  virtual void add_log(int64_t stepid, std::string name, char type,
                       Completion<int64_t> done) = 0;
  // `lines` is whole lines, each ending in '\n'; in a stdio log each line
  // starts with its stream letter ('o', 'e', 'h'; see prefix_stdio_lines).
  // Returns the line numbers they received.
  virtual void append_log(int64_t logid, std::string lines, Completion<LineRange> done) = 0;
  virtual void finish_log(int64_t logid, Completion<void> done) = 0;
  // Lines first_line..last_line (inclusive, from 0, clipped to the log),
  // reading only the chunks that hold them.
  virtual void log_lines(int64_t logid, int64_t first_line, int64_t last_line,
                         Completion<std::string> done) = 0;
  // Whole chunks from the one holding from_line, up to about max_bytes (at
  // least one chunk): a raw download reads page after page, so neither the
  // memory nor the store thread is held for the whole log.
  virtual void log_page(int64_t logid, int64_t from_line, size_t max_bytes,
                        Completion<LogPage> done) = 0;

  // At start-up, before anything else of this master runs: its unfinished
  // builds become RETRY, their unfinished steps EXCEPTION, their logs
  // complete, and every request it claimed but did not complete goes back
  // to the queue.
  virtual void recover_after_crash(int64_t masterid, int64_t now,
                                   Completion<RecoveryCounts> done) = 0;

  // Retention, one small batch per call (the engine calls again from a timer
  // until 0 comes back). delete_old_logs deletes up to batch_size log chunks
  // of the builder's builds completed before older_than and marks emptied
  // logs type 'd'. delete_old_builds first removes such builds' remaining
  // chunks (up to batch_size), then up to batch_size builds with everything
  // under them. Both return the rows deleted.
  virtual void delete_old_logs(int64_t builderid, int64_t older_than, int64_t batch_size,
                               Completion<int64_t> done) = 0;
  virtual void delete_old_builds(int64_t builderid, int64_t older_than,
                                 int64_t batch_size, Completion<int64_t> done) = 0;

  // The data API's reads: a JSON array of objects with Buildbot's REST field
  // names and types. kInvalidArgument names an unknown field or scope.
  virtual void query(Resource resource, ResultSpec spec,
                     Completion<nlohmann::json> done) = 0;
  // How many rows query() would find without limit and offset (REST's
  // meta.total); order and fields are checked but do not matter.
  virtual void count(Resource resource, ResultSpec spec, Completion<int64_t> done) = 0;

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

  Result<int64_t> add_change_sync(ChangeRecord change);
  Result<int64_t> find_or_create_user_sync(std::string identifier, std::string attr_type,
                                           std::string attr_data);
  Result<BuildsetIds> add_buildset_sync(BuildsetRequest request);
  Status complete_buildset_sync(int64_t bsid, int results, int64_t complete_at);
  Result<int64_t> ensure_builder_sync(std::string name,
                                      std::optional<std::string> description,
                                      std::vector<std::string> tags);
  Result<std::vector<BuilderRecord>> list_builders_sync();
  Result<int64_t> ensure_worker_sync(std::string name, nlohmann::json info);
  Status set_worker_connected_sync(int64_t workerid, int64_t masterid, bool connected);
  Status set_worker_info_sync(int64_t workerid, nlohmann::json info);
  Result<std::vector<BuildRequestRecord>> pending_requests_sync(
      std::optional<int64_t> builderid, int64_t limit = 0);
  Result<std::vector<int64_t>> claim_requests_sync(std::vector<int64_t> brids,
                                                   int64_t masterid, int64_t now);
  Status unclaim_requests_sync(std::vector<int64_t> brids);
  Status complete_requests_sync(std::vector<int64_t> brids, int results,
                                int64_t complete_at);
  Result<bool> cancel_request_sync(int64_t brid, int64_t now);
  Result<BuildIds> add_build_sync(int64_t builderid, int64_t buildrequestid,
                                  std::optional<int64_t> workerid, int64_t masterid,
                                  int64_t started_at, std::string state_string);
  Status set_build_state_string_sync(int64_t buildid, std::string state_string);
  Status finish_build_sync(int64_t buildid, int results, int64_t complete_at);
  Status set_build_property_sync(int64_t buildid, std::string name, nlohmann::json value,
                                 std::string source);
  Result<nlohmann::json> build_properties_sync(int64_t buildid);
  Result<StepIds> add_step_sync(int64_t buildid, std::string name);
  Status start_step_sync(int64_t stepid, int64_t started_at);
  Status set_step_state_string_sync(int64_t stepid, std::string state_string);
  Status add_step_url_sync(int64_t stepid, std::string name, std::string url);
  Status finish_step_sync(int64_t stepid, int results, bool hidden, int64_t complete_at);
  Result<int64_t> add_log_sync(int64_t stepid, std::string name, char type);
  Result<LineRange> append_log_sync(int64_t logid, std::string lines);
  Status finish_log_sync(int64_t logid);
  Result<std::string> log_lines_sync(int64_t logid, int64_t first_line, int64_t last_line);
  Result<LogPage> log_page_sync(int64_t logid, int64_t from_line, size_t max_bytes);
  Result<RecoveryCounts> recover_after_crash_sync(int64_t masterid, int64_t now);
  Result<int64_t> delete_old_logs_sync(int64_t builderid, int64_t older_than,
                                       int64_t batch_size);
  Result<int64_t> delete_old_builds_sync(int64_t builderid, int64_t older_than,
                                         int64_t batch_size);
  Result<nlohmann::json> query_sync(Resource resource, ResultSpec spec);
  Result<int64_t> count_sync(Resource resource, ResultSpec spec);

  // ---- Users (users.cpp) ----------------------------------------------
  // One call each, atomic. kInvalidArgument when an identifier, username
  // or attribute value already belongs to another user (the message names
  // that user) or a field is malformed; kNotFound when the user is missing.
  // add_user needs an identifier.
  virtual void add_user(UserChanges user, Completion<int64_t> done) = 0;
  virtual void update_user(UserRef user, UserChanges changes, Completion<void> done) = 0;
  // Its attributes and change links go with it; its changes stay.
  virtual void remove_user(UserRef user, Completion<void> done) = 0;
  virtual void get_user(UserRef user, Completion<UserRecord> done) = 0;
  // By uid. A non-empty `match` keeps the users whose identifier, username
  // or one attribute value equals it.
  virtual void list_users(std::string match, Completion<std::vector<UserRecord>> done) = 0;
  // kNotFound when no user has this username or that user has no password.
  virtual void user_login(std::string bb_username, Completion<UserLogin> done) = 0;

  Result<int64_t> add_user_sync(UserChanges user);
  Status update_user_sync(UserRef user, UserChanges changes);
  Status remove_user_sync(UserRef user);
  Result<UserRecord> get_user_sync(UserRef user);
  Result<std::vector<UserRecord>> list_users_sync(std::string match = {});
  Result<UserLogin> user_login_sync(std::string bb_username);
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

// Buildbot's StreamLog framing for stdio logs: every line of `text` gets
// `stream` ('o' stdout, 'e' stderr, 'h' header) in front. A last line
// without '\n' gets one, so the result is always whole lines.
std::string prefix_stdio_lines(char stream, std::string_view text);

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

// ---- Passwords (users.cpp) ---------------------------------------------
// A crypt(3) hash of `password`: yescrypt ("$y$...") with a fresh salt from
// /dev/urandom. kInvalidArgument for an empty password or one holding a NUL
// byte; kIo when no random bytes or no hash could be had. Costs tens of
// milliseconds of CPU on purpose: keep it off the event loop.
Result<std::string> hash_password(std::string_view password);
// Whether `password` hashes to `hash` (any scheme libcrypt knows), compared
// in constant time. False for a malformed hash. As costly as hash_password.
bool verify_password(std::string_view password, std::string_view hash);
// Whether `text` looks like a hash this store writes or accepts ("$y$",
// "$6$" sha512-crypt, "$2b$" bcrypt, "$7$" scrypt), not a plain password.
bool is_password_hash(std::string_view text);

}  // namespace kiln::store
