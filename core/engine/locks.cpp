#include "engine/locks.h"

#include <algorithm>
#include <set>

namespace kiln::engine {

struct LockTable::State {
  struct Use {
    std::string key;  // the lock's name, plus the worker's for a worker lock
    std::string name, worker;
    bool exclusive = false;
    int count = 1;
  };
  struct Holders {
    bool exclusive = false;
    int counting = 0;
  };
  struct Waiter {
    uint64_t id = 0;
    std::vector<Use> uses;
    std::string label;
    Granted granted;
  };

  State(util::EventLoop& l, std::function<void()> r) : loop(l), released(std::move(r)) {}

  util::EventLoop& loop;
  std::function<void()> released;
  std::map<std::string, config::LockConfig> configs;
  std::map<std::string, Holders> held;
  std::list<Waiter> waiters;
  uint64_t next_waiter = 1;
  // Granted in the current pass, callback not yet run: a wait given up
  // meanwhile (its owner went) is dropped from here and never called.
  std::set<uint64_t> granting;
  bool pass_scheduled = false;
  // Something was given back (or a limit or queue changed) since the last
  // pass: only then may queued build requests have become startable.
  bool freed_since_pass = false;
  std::weak_ptr<State> self;

  int max_of(const Use& use) const {
    auto it = configs.find(use.name);
    if (it == configs.end()) return 1;
    if (auto w = it->second.max_count_for_worker.find(use.worker); w != it->second.max_count_for_worker.end()) {
      return w->second;
    }
    return it->second.max_count;
  }

  std::vector<Use> resolve(const std::vector<config::LockAccess>& accesses, const std::string& worker) const {
    std::vector<Use> uses;
    for (const auto& a : accesses) {
      auto it = configs.find(a.name);
      if (it == configs.end()) continue;
      Use use;
      use.name = a.name;
      use.exclusive = a.exclusive;
      use.count = a.exclusive ? 1 : a.count;
      if (it->second.per_worker) {
        use.worker = worker;
        use.key = a.name + '\x1f' + worker;
      } else {
        use.key = a.name;
      }
      uses.push_back(std::move(use));
    }
    return uses;
  }

  // Free for `use`, given what is held and what the waiters before `ahead_end` asked first.
  bool free_for(const Use& use, std::list<Waiter>::const_iterator ahead_end) const {
    Holders now;
    if (auto it = held.find(use.key); it != held.end()) now = it->second;
    if (now.exclusive) return false;
    int asked_before = 0;
    for (auto w = waiters.cbegin(); w != ahead_end; ++w) {
      for (const Use& other : w->uses) {
        if (other.key != use.key) continue;
        if (other.exclusive) return false;
        asked_before += other.count;
      }
    }
    if (use.exclusive) return now.counting == 0 && asked_before == 0;
    return now.counting + asked_before + use.count <= max_of(use);
  }

  const Use* first_busy(const std::vector<Use>& uses, std::list<Waiter>::const_iterator ahead_end) const {
    for (const Use& use : uses) {
      if (!free_for(use, ahead_end)) return &use;
    }
    return nullptr;
  }

  std::vector<LockClaim::Held> take(const std::vector<Use>& uses) {
    std::vector<LockClaim::Held> taken;
    for (const Use& use : uses) {
      Holders& h = held[use.key];
      if (use.exclusive) {
        h.exclusive = true;
      } else {
        h.counting += use.count;
      }
      taken.push_back({use.key, use.exclusive, use.count});
    }
    return taken;
  }

  void give_back(const std::vector<LockClaim::Held>& taken) {
    for (const auto& t : taken) {
      auto it = held.find(t.key);
      if (it == held.end()) continue;
      if (t.exclusive) {
        it->second.exclusive = false;
      } else {
        it->second.counting = std::max(0, it->second.counting - t.count);
      }
      if (!it->second.exclusive && it->second.counting == 0) held.erase(it);
    }
    freed_since_pass = true;
    schedule_pass();
  }

  // From the loop, never inside the caller that gave locks back: the
  // granted waiters start steps, and the caller may be tearing one down.
  void schedule_pass() {
    if (pass_scheduled) return;
    pass_scheduled = true;
    loop.post([weak = self] {
      if (auto state = weak.lock()) state->pass();
    });
  }

  void pass() {
    pass_scheduled = false;
    struct Ready {
      uint64_t id;
      Granted granted;
      std::vector<LockClaim::Held> taken;
    };
    std::vector<Ready> ready;
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (first_busy(it->uses, it) == nullptr) {
        granting.insert(it->id);
        ready.push_back({it->id, std::move(it->granted), take(it->uses)});
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
    auto state = self.lock();
    for (auto& r : ready) {
      auto claim = LockTable::make_claim(state, std::move(r.taken));
      if (granting.erase(r.id) != 0) r.granted(std::move(claim));
    }
    if (freed_since_pass && released) {
      freed_since_pass = false;
      released();
    }
  }
};

LockClaim::~LockClaim() {
  if (auto state = std::static_pointer_cast<LockTable::State>(state_.lock())) state->give_back(held_);
}

LockWait::~LockWait() {
  auto state = std::static_pointer_cast<LockTable::State>(state_.lock());
  if (!state) return;
  auto& waiters = state->waiters;
  if (state->granting.erase(id_) != 0) return;  // its claim goes back unused
  auto it = std::find_if(waiters.begin(), waiters.end(), [this](const auto& w) { return w.id == id_; });
  if (it == waiters.end()) return;
  waiters.erase(it);
  // Those queued behind it may be free now.
  state->freed_since_pass = true;
  state->schedule_pass();
}

LockTable::LockTable(util::EventLoop& loop, std::function<void()> released)
    : state_(std::make_shared<State>(loop, std::move(released))) {
  state_->self = state_;
}

LockTable::~LockTable() = default;

std::unique_ptr<LockClaim> LockTable::make_claim(const std::shared_ptr<State>& state,
                                                 std::vector<LockClaim::Held> held) {
  return std::unique_ptr<LockClaim>(new LockClaim(std::weak_ptr<void>(state), std::move(held)));
}

void LockTable::configure(const std::vector<config::LockConfig>& locks) {
  state_->configs.clear();
  for (const auto& l : locks) state_->configs[l.name] = l;
  state_->freed_since_pass = true;  // a raised max_count may free waiters
  state_->schedule_pass();
}

std::unique_ptr<LockClaim> LockTable::try_take(const std::vector<config::LockAccess>& uses,
                                               const std::string& worker, std::string* blocking) {
  auto resolved = state_->resolve(uses, worker);
  if (const auto* busy = state_->first_busy(resolved, state_->waiters.cend())) {
    if (blocking) *blocking = busy->name;
    return nullptr;
  }
  return make_claim(state_, state_->take(resolved));
}

std::unique_ptr<LockWait> LockTable::wait_for(const std::vector<config::LockAccess>& uses,
                                              const std::string& worker, std::string label,
                                              Granted granted) {
  const uint64_t id = state_->next_waiter++;
  state_->waiters.push_back({id, state_->resolve(uses, worker), std::move(label), std::move(granted)});
  state_->schedule_pass();
  return std::unique_ptr<LockWait>(new LockWait(std::weak_ptr<void>(state_), id));
}

nlohmann::json LockTable::status() const {
  struct Row {
    std::string name, worker;
    int max_count = 1;
    State::Holders holders;
    nlohmann::json waiting = nlohmann::json::array();
  };
  std::map<std::string, Row> rows;
  auto row = [&](const State::Use& use) -> Row& {
    Row& r = rows[use.key];
    r.name = use.name;
    r.worker = use.worker;
    r.max_count = state_->max_of(use);
    return r;
  };
  for (const auto& w : state_->waiters) {
    for (const auto& use : w.uses) row(use).waiting.push_back(w.label);
  }
  for (const auto& [key, holders] : state_->held) {
    auto sep = key.find('\x1f');
    State::Use use;
    use.key = key;
    use.name = key.substr(0, sep);
    if (sep != std::string::npos) use.worker = key.substr(sep + 1);
    row(use).holders = holders;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [key, r] : rows) {
    nlohmann::json entry = {{"name", r.name},
                            {"max_count", r.max_count},
                            {"exclusive", r.holders.exclusive},
                            {"counting", r.holders.counting},
                            {"waiting", r.waiting}};
    if (!r.worker.empty()) entry["worker"] = r.worker;
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace kiln::engine
