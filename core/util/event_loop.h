#pragma once
// The engine's single event loop, and the clock everything schedules by.
//
// All engine state is touched only on the loop thread. Other threads hand
// work over with post(). Timers run on the loop's Clock, which tests replace
// with a ManualClock they advance by hand, so nothing ever sleeps for real
// minutes in a test.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

namespace kiln::util {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual uint64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  uint64_t now_ms() const override;
};

// A clock that moves only when told to. EventLoop::advance_manual_clock()
// moves it and runs the timers that fall due, in order.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(uint64_t start_ms = 1'700'000'000'000ull) : now_(start_ms) {}
  uint64_t now_ms() const override { return now_; }
  void set(uint64_t ms) { now_ = ms; }

 private:
  uint64_t now_;
};

class EventLoop {
 public:
  using TimerId = uint64_t;

  // With no clock given, the loop uses the system clock and real timers.
  EventLoop();
  explicit EventLoop(std::shared_ptr<ManualClock> manual_clock);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& io() { return io_; }
  const Clock& clock() const { return *clock_; }
  uint64_t now_ms() const { return clock_->now_ms(); }

  // Thread-safe: runs fn on the loop thread.
  void post(std::function<void()> fn);

  // Loop thread only. Runs fn after delay_ms, then every interval_ms when
  // that is non-zero, until cancelled.
  TimerId start_timer(uint64_t delay_ms, uint64_t interval_ms,
                      std::function<void()> fn);
  // Loop thread only; true when the timer existed.
  bool cancel_timer(TimerId id);

  // Runs until stop(); the calling thread becomes the loop thread.
  void run();
  // Thread-safe.
  void stop();
  // Runs ready handlers without blocking; returns how many ran.
  size_t poll();
  bool on_loop_thread() const;

  // Tests with a ManualClock: move the clock forward by ms, firing due
  // timers in time order (each sees now_ms() equal to its due time).
  void advance_manual_clock(uint64_t ms);

 private:
  struct Timer;
  void arm_real_timer();
  void fire_due_timers();

  boost::asio::io_context io_;
  std::shared_ptr<Clock> clock_;
  std::shared_ptr<ManualClock> manual_clock_;
  std::multimap<uint64_t, TimerId> due_;       // due time -> timer
  std::map<TimerId, std::unique_ptr<Timer>> timers_;
  TimerId next_timer_id_ = 1;
  std::unique_ptr<struct RealTimer> real_timer_;
  std::thread::id loop_thread_;
};

}  // namespace kiln::util
