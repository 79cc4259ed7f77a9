#pragma once
// Buildbot's master and worker locks. A build takes its builder's locks
// when it is given a worker (all at once, or it waits in the queue for
// them); a step takes its own before it runs, waiting as long as it must.
// Exclusive access wants the lock alone; counting access shares it up to
// max_count. Waiters are served first come, first served: a counting use
// never overtakes an exclusive one queued before it. What is taken is a
// LockClaim, released when it goes, so every exit path of a build or step
// gives its locks back. Internal to core/engine; loop thread only.

#include "config/master_config.h"
#include "util/event_loop.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::engine {

class LockTable;

// Locks held; given back when destroyed.
class LockClaim {
 public:
  ~LockClaim();
  LockClaim(const LockClaim&) = delete;
  LockClaim& operator=(const LockClaim&) = delete;

 private:
  friend class LockTable;
  struct Held {
    std::string key;
    bool exclusive = false;
    int count = 1;
  };
  LockClaim(std::weak_ptr<void> table_state, std::vector<Held> held)
      : state_(std::move(table_state)), held_(std::move(held)) {}
  std::weak_ptr<void> state_;
  std::vector<Held> held_;
};

// A place in the queue; leaving it (destroying this) gives up waiting.
class LockWait {
 public:
  ~LockWait();
  LockWait(const LockWait&) = delete;
  LockWait& operator=(const LockWait&) = delete;

 private:
  friend class LockTable;
  LockWait(std::weak_ptr<void> table_state, uint64_t id) : state_(std::move(table_state)), id_(id) {}
  std::weak_ptr<void> state_;
  uint64_t id_;
};

class LockTable {
 public:
  // `released` runs (from the loop) after locks were given back, so that
  // builds waiting in the queue for them can be served again.
  LockTable(util::EventLoop& loop, std::function<void()> released);
  ~LockTable();
  LockTable(const LockTable&) = delete;
  LockTable& operator=(const LockTable&) = delete;

  // The declared locks; at start and at every reconfig. Claims already held
  // stay; new limits apply to what is taken next.
  void configure(const std::vector<config::LockConfig>& locks);

  // Takes every use now, or none: nullptr, and `blocking` names the first
  // lock not free. Uses of unknown locks are ignored (config checks them).
  std::unique_ptr<LockClaim> try_take(const std::vector<config::LockAccess>& uses,
                                      const std::string& worker, std::string* blocking = nullptr);

  // Queues for every use; `granted` runs from the loop once all are taken.
  // `label` says who waits, for status().
  using Granted = std::function<void(std::unique_ptr<LockClaim>)>;
  std::unique_ptr<LockWait> wait_for(const std::vector<config::LockAccess>& uses,
                                     const std::string& worker, std::string label, Granted granted);

  // Each lock in use or waited for: name, worker (worker locks), max_count,
  // holders' counts, and who waits.
  nlohmann::json status() const;

 private:
  friend class LockClaim;
  friend class LockWait;
  struct State;
  static std::unique_ptr<LockClaim> make_claim(const std::shared_ptr<State>& state,
                                               std::vector<LockClaim::Held> held);
  std::shared_ptr<State> state_;
};

}  // namespace kiln::engine
