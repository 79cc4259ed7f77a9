#pragma once
// Flow control between command output and the store. The engine counts the
// log bytes it has handed to the store and the store has not yet committed;
// past kPauseBytes, workers that ask (the ABI's output_throttle) are told to
// pause their pipe or socket, and are resumed once the store is back under
// kResumeBytes. Without it a step writing faster than SQLite commits grows
// the master's memory by the difference.

#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace kiln::engine {

class OutputThrottle {
 public:
  static constexpr size_t kPauseBytes = 8u << 20;
  static constexpr size_t kResumeBytes = 2u << 20;

  void queued(size_t bytes) {
    queued_ += bytes;
    if (queued_ > peak_) peak_ = queued_;
  }

  // Runs the waiting resumes once the backlog is small again.
  void committed(size_t bytes) {
    queued_ = bytes > queued_ ? 0 : queued_ - bytes;
    if (queued_ > kResumeBytes || waiting_.empty()) return;
    // A resume may queue output and register again: run a detached list.
    auto resumes = std::exchange(waiting_, {});
    for (auto& resume : resumes) resume();
  }

  // True when the caller should pause; resume then runs once, later.
  bool should_pause(std::function<void()> resume) {
    if (queued_ < kPauseBytes && waiting_.empty()) return false;
    waiting_.push_back(std::move(resume));
    return true;
  }

  size_t queued_bytes() const { return queued_; }
  size_t peak_bytes() const { return peak_; }
  size_t paused_workers() const { return waiting_.size(); }

 private:
  size_t queued_ = 0;
  size_t peak_ = 0;
  std::vector<std::function<void()>> waiting_;
};

}  // namespace kiln::engine
