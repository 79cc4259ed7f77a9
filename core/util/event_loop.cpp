#include "util/event_loop.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace kiln::util {

uint64_t SystemClock::now_ms() const {
  using namespace std::chrono;
  return static_cast<uint64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

struct EventLoop::Timer {
  uint64_t due_ms;
  uint64_t interval_ms;
  std::function<void()> fn;
};

// One asio timer armed for the earliest due time; with a ManualClock none is
// armed and time moves only through advance_manual_clock().
struct RealTimer {
  explicit RealTimer(boost::asio::io_context& io) : timer(io) {}
  boost::asio::steady_timer timer;
};

EventLoop::EventLoop()
    : clock_(std::make_shared<SystemClock>()),
      real_timer_(std::make_unique<RealTimer>(io_)),
      loop_thread_(std::this_thread::get_id()) {}

EventLoop::EventLoop(std::shared_ptr<ManualClock> manual_clock)
    : clock_(manual_clock),
      manual_clock_(std::move(manual_clock)),
      loop_thread_(std::this_thread::get_id()) {}

EventLoop::~EventLoop() {
  timers_.clear();
  due_.clear();
  real_timer_.reset();
}

void EventLoop::post(std::function<void()> fn) {
  boost::asio::post(io_, std::move(fn));
}

EventLoop::TimerId EventLoop::start_timer(uint64_t delay_ms, uint64_t interval_ms,
                                          std::function<void()> fn) {
  TimerId id = next_timer_id_++;
  uint64_t due = now_ms() + delay_ms;
  timers_.emplace(id, std::make_unique<Timer>(Timer{due, interval_ms, std::move(fn)}));
  due_.emplace(due, id);
  arm_real_timer();
  return id;
}

bool EventLoop::cancel_timer(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  auto [first, last] = due_.equal_range(it->second->due_ms);
  for (auto d = first; d != last; ++d) {
    if (d->second == id) {
      due_.erase(d);
      break;
    }
  }
  timers_.erase(it);
  arm_real_timer();
  return true;
}

void EventLoop::run() {
  loop_thread_ = std::this_thread::get_id();
  if (io_.stopped()) io_.restart();
  auto guard = boost::asio::make_work_guard(io_);
  arm_real_timer();
  io_.run();
}

void EventLoop::stop() { io_.stop(); }

size_t EventLoop::poll() {
  if (io_.stopped()) io_.restart();
  return io_.poll();
}

bool EventLoop::on_loop_thread() const {
  return std::this_thread::get_id() == loop_thread_;
}

void EventLoop::advance_manual_clock(uint64_t ms) {
  if (!manual_clock_) return;
  const uint64_t target = manual_clock_->now_ms() + ms;
  poll();
  while (!due_.empty() && due_.begin()->first <= target) {
    manual_clock_->set(std::max(manual_clock_->now_ms(), due_.begin()->first));
    fire_due_timers();
    poll();
  }
  manual_clock_->set(target);
}

void EventLoop::fire_due_timers() {
  const uint64_t now = now_ms();
  while (!due_.empty() && due_.begin()->first <= now) {
    auto [due, id] = *due_.begin();
    due_.erase(due_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    Timer& timer = *it->second;
    if (timer.interval_ms > 0) {
      // Re-queued before running so the callback can cancel its own timer.
      timer.due_ms = due + timer.interval_ms;
      due_.emplace(timer.due_ms, id);
      auto fn = timer.fn;
      fn();
    } else {
      auto fn = std::move(timer.fn);
      timers_.erase(it);
      fn();
    }
  }
}

void EventLoop::arm_real_timer() {
  if (!real_timer_) return;
  auto& timer = real_timer_->timer;
  if (due_.empty()) {
    timer.cancel();
    return;
  }
  const uint64_t now = now_ms();
  const uint64_t first = due_.begin()->first;
  timer.expires_after(std::chrono::milliseconds(first > now ? first - now : 0));
  timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // re-armed or cancelled
    fire_due_timers();
    arm_real_timer();
  });
}

}  // namespace kiln::util
