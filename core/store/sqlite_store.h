#pragma once
// The SQLite backend of Store: one connection owned by one store thread,
// which takes every queued call at once and runs the batch in a single
// transaction (group commit). Each call runs inside its own SAVEPOINT, so a
// call that fails is undone alone while the rest of its batch commits.
// Completions are handed out only after the COMMIT; if the COMMIT fails,
// every call of the batch completes with that error.

#include "store/sqlite_db.h"
#include "store/store.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace kiln::store {

// open_store() for sqlite: URLs, once the URL is parsed.
Result<std::unique_ptr<Store>> open_sqlite_store(const StoreLocation& location,
                                                 OpenOptions options);

class SqliteStore final : public Store {
 public:
  // Takes an open, migrated connection; starts the store thread.
  SqliteStore(SqliteDb db, std::string location, int schema_version,
              int latest_schema_version, PostFn post_to_loop);
  // Runs everything still queued, delivers its completions, then stops.
  ~SqliteStore() override;

  std::string location() const override { return location_; }
  int schema_version() const override { return schema_version_; }
  int latest_schema_version() const override { return latest_schema_version_; }
  StoreStats stats() const override;

  void flush(Completion<void> done) override;
  void get_state(std::string kind, std::string name, std::string key,
                 Completion<std::string> done) override;
  void put_state(std::string kind, std::string name, std::string key,
                 std::string value_json, Completion<void> done) override;
  void register_master(std::string name, int64_t now,
                       Completion<int64_t> done) override;
  void set_master_active(int64_t masterid, bool active, int64_t now,
                         Completion<void> done) override;
  void list_masters(Completion<std::vector<MasterRecord>> done) override;

  // The engine's calls, in sqlite_engine.cpp.
  void add_change(ChangeRecord change, Completion<int64_t> done) override;
  void find_or_create_user(std::string identifier, std::string attr_type,
                           std::string attr_data, Completion<int64_t> done) override;
  void add_buildset(BuildsetRequest request, Completion<BuildsetIds> done) override;
  void complete_buildset(int64_t bsid, int results, int64_t complete_at,
                         Completion<void> done) override;
  void ensure_builder(std::string name, std::optional<std::string> description,
                      std::vector<std::string> tags, Completion<int64_t> done) override;
  void list_builders(Completion<std::vector<BuilderRecord>> done) override;
  void ensure_worker(std::string name, nlohmann::json info,
                     Completion<int64_t> done) override;
  void set_worker_connected(int64_t workerid, int64_t masterid, bool connected,
                            Completion<void> done) override;
  void set_worker_info(int64_t workerid, nlohmann::json info,
                       Completion<void> done) override;
  void set_worker_state(int64_t workerid, bool paused, bool graceful, Completion<void> done) override;
  void pending_requests(std::optional<int64_t> builderid, int64_t limit,
                        Completion<std::vector<BuildRequestRecord>> done) override;
  void claim_requests(std::vector<int64_t> brids, int64_t masterid, int64_t now,
                      Completion<std::vector<int64_t>> done) override;
  void unclaim_requests(std::vector<int64_t> brids, Completion<void> done) override;
  void complete_requests(std::vector<int64_t> brids, int results, int64_t complete_at,
                         Completion<void> done) override;
  void cancel_request(int64_t brid, int64_t now, Completion<bool> done) override;
  void add_build(int64_t builderid, int64_t buildrequestid,
                 std::optional<int64_t> workerid, int64_t masterid, int64_t started_at,
                 std::string state_string, Completion<BuildIds> done) override;
  void set_build_state_string(int64_t buildid, std::string state_string,
                              Completion<void> done) override;
  void finish_build(int64_t buildid, int results, int64_t complete_at,
                    Completion<void> done) override;
  void set_build_property(int64_t buildid, std::string name, nlohmann::json value,
                          std::string source, Completion<void> done) override;
  void build_properties(int64_t buildid, Completion<nlohmann::json> done) override;
  void add_step(int64_t buildid, std::string name, Completion<StepIds> done) override;
  void start_step(int64_t stepid, int64_t started_at, Completion<void> done) override;
  void set_step_state_string(int64_t stepid, std::string state_string,
                             Completion<void> done) override;
  void add_step_url(int64_t stepid, std::string name, std::string url,
                    Completion<void> done) override;
  void finish_step(int64_t stepid, int results, bool hidden, int64_t complete_at,
                   Completion<void> done) override;
  void add_log(int64_t stepid, std::string name, char type,
               Completion<int64_t> done) override;
  void append_log(int64_t logid, std::string lines, Completion<LineRange> done) override;
  void finish_log(int64_t logid, Completion<void> done) override;
  void log_lines(int64_t logid, int64_t first_line, int64_t last_line,
                 Completion<std::string> done) override;
  void log_page(int64_t logid, int64_t from_line, size_t max_bytes,
                Completion<LogPage> done) override;
  void recover_after_crash(int64_t masterid, int64_t now,
                           Completion<RecoveryCounts> done) override;
  void delete_old_logs(int64_t builderid, int64_t older_than, int64_t batch_size,
                       Completion<int64_t> done) override;
  void delete_old_builds(int64_t builderid, int64_t older_than, int64_t batch_size,
                         Completion<int64_t> done) override;
  void query(Resource resource, ResultSpec spec, Completion<nlohmann::json> done) override;
  void count(Resource resource, ResultSpec spec, Completion<int64_t> done) override;

  // ---- Users, in users.cpp ----
  void add_user(UserChanges user, Completion<int64_t> done) override;
  void update_user(UserRef user, UserChanges changes, Completion<void> done) override;
  void remove_user(UserRef user, Completion<void> done) override;
  void get_user(UserRef user, Completion<UserRecord> done) override;
  void list_users(std::string match, Completion<std::vector<UserRecord>> done) override;
  void user_login(std::string bb_username, Completion<UserLogin> done) override;

  // While held, the store thread starts no new batch: tests queue a burst
  // and release it to see it committed as one transaction.
  void hold();
  void release();

 private:
  struct Executed {
    bool ok = false;
    std::function<void()> deliver;  // the completion, bound to its outcome
  };
  struct Job {
    bool writes = false;
    bool deliver_on_store_thread = false;
    std::function<Executed(SqliteDb&)> run;
    std::function<std::function<void()>(const Status&)> fail;
  };

  template <class T, class Work>
  void submit(bool writes, Work work, Completion<T> done);
  // A call refused before it reaches SQL still completes in call order.
  template <class T>
  void submit_error(Status status, Completion<T> done);
  void enqueue(Job job);
  void thread_main();
  void run_batch(std::deque<Job>& batch);
  void deliver(const Job& job, std::function<void()> fn);

  SqliteDb db_;
  const std::string location_;
  const int schema_version_;
  const int latest_schema_version_;
  const PostFn post_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  bool held_ = false;
  StoreStats stats_;  // guarded by mutex_
  // Counted by the log readers on the store thread; read by stats().
  std::atomic<uint64_t> log_chunks_read_{0};
  std::thread thread_;
};

namespace detail {

template <class T>
Outcome<T> failed(Status status) {
  if constexpr (std::is_void_v<T>) {
    return status;
  } else {
    return Result<T>{std::move(status), {}};
  }
}

inline const Status& status_of(const Status& s) { return s; }
template <class T>
const Status& status_of(const Result<T>& r) {
  return r.status;
}

}  // namespace detail

// Defined here so the engine's calls (sqlite_engine.cpp, sqlite_query.cpp)
// queue their work the same way.
template <class T, class Work>
void SqliteStore::submit(bool writes, Work work, Completion<T> done) {
  auto completion = std::make_shared<Completion<T>>(std::move(done));
  Job job;
  job.writes = writes;
  job.deliver_on_store_thread = completion->runs_on_store_thread();
  job.run = [work = std::move(work), completion](SqliteDb& db) mutable -> Executed {
    Outcome<T> outcome;
    try {
      outcome = work(db);
    } catch (const std::exception& e) {
      outcome = detail::failed<T>(Status::error(StatusCode::kInternal, e.what()));
    }
    bool ok = detail::status_of(outcome).ok();
    return {ok, [completion, outcome = std::move(outcome)]() mutable {
              (*completion)(std::move(outcome));
            }};
  };
  job.fail = [completion](const Status& s) -> std::function<void()> {
    return [completion, s] { (*completion)(detail::failed<T>(s)); };
  };
  enqueue(std::move(job));
}

template <class T>
void SqliteStore::submit_error(Status status, Completion<T> done) {
  submit<T>(
      false, [status = std::move(status)](SqliteDb&) { return detail::failed<T>(status); },
      std::move(done));
}

}  // namespace kiln::store
