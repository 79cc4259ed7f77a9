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
  std::thread thread_;
};

}  // namespace kiln::store
