#include "util/event_loop.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using kiln::util::EventLoop;
using kiln::util::ManualClock;

TEST_CASE("timers on a manual clock fire in due order when the clock advances") {
  auto clock = std::make_shared<ManualClock>(1000);
  EventLoop loop(clock);
  std::vector<std::pair<int, uint64_t>> fired;
  loop.start_timer(300, 0, [&] { fired.emplace_back(3, loop.now_ms()); });
  loop.start_timer(100, 0, [&] { fired.emplace_back(1, loop.now_ms()); });
  loop.start_timer(200, 0, [&] { fired.emplace_back(2, loop.now_ms()); });

  loop.advance_manual_clock(150);
  REQUIRE(fired == std::vector<std::pair<int, uint64_t>>{{1, 1100}});
  loop.advance_manual_clock(1000);
  REQUIRE(fired == std::vector<std::pair<int, uint64_t>>{{1, 1100}, {2, 1200}, {3, 1300}});
  REQUIRE(loop.now_ms() == 2150);
}

TEST_CASE("an interval timer repeats until it cancels itself") {
  auto clock = std::make_shared<ManualClock>(0);
  EventLoop loop(clock);
  int count = 0;
  EventLoop::TimerId id = 0;
  id = loop.start_timer(10, 10, [&] {
    if (++count == 3) loop.cancel_timer(id);
  });
  loop.advance_manual_clock(1000);
  REQUIRE(count == 3);
}

TEST_CASE("a cancelled timer never fires") {
  auto clock = std::make_shared<ManualClock>(0);
  EventLoop loop(clock);
  bool fired = false;
  auto id = loop.start_timer(10, 0, [&] { fired = true; });
  REQUIRE(loop.cancel_timer(id));
  REQUIRE_FALSE(loop.cancel_timer(id));
  loop.advance_manual_clock(100);
  REQUIRE_FALSE(fired);
}

TEST_CASE("work posted from another thread runs on the loop thread") {
  EventLoop loop;
  std::thread::id ran_on;
  std::thread::id loop_id;
  std::thread loop_thread([&] { loop.run(); });
  loop_id = loop_thread.get_id();
  std::thread poster([&] {
    loop.post([&] {
      ran_on = std::this_thread::get_id();
      loop.stop();
    });
  });
  poster.join();
  loop_thread.join();
  REQUIRE(ran_on == loop_id);
}

TEST_CASE("a real timer fires on the system clock") {
  EventLoop loop;
  uint64_t started = loop.now_ms();
  uint64_t fired_at = 0;
  loop.start_timer(20, 0, [&] {
    fired_at = loop.now_ms();
    loop.stop();
  });
  loop.run();
  REQUIRE(fired_at >= started + 20);
}
