#pragma once
// Driving an EventLoop from a test: the one pump every test area uses.

#include "util/event_loop.h"

#include <chrono>
#include <functional>
#include <thread>

namespace kiln::testing {

// Pumps `loop` until pred() holds or `limit` of real time passes (generous
// for a loaded machine; the work itself takes milliseconds).
inline bool pump_until(kiln::util::EventLoop& loop, const std::function<bool()>& pred,
                       std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    if (loop.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace kiln::testing
