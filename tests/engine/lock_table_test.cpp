// LockTable's rules on its own: who may take a lock, in which order the
// waiters are served, and that a claim or a wait going away gives back.

#include "engine/locks.h"
#include "util/event_loop.h"
#include "util/pump_loop.h"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

using kiln::config::LockAccess;
using kiln::config::LockConfig;
using kiln::engine::LockClaim;
using kiln::engine::LockTable;
using kiln::engine::LockWait;

namespace {

LockConfig master_lock(const std::string& name, int max_count = 1) {
  LockConfig c;
  c.name = name;
  c.max_count = max_count;
  return c;
}

const std::vector<LockAccess> kExclusive{{"db", true, 1}};
const std::vector<LockAccess> kCounting{{"db", false, 1}};

void drain(kiln::util::EventLoop& loop) {
  while (loop.poll() > 0) {
  }
}

}  // namespace

TEST_CASE("lock table: exclusive access excludes all; counting shares up to max_count") {
  kiln::util::EventLoop loop;
  LockTable table(loop, [] {});
  table.configure({master_lock("db", 2)});
  auto one = table.try_take(kCounting, "w1");
  auto two = table.try_take(kCounting, "w1");
  REQUIRE(one);
  REQUIRE(two);
  std::string blocking;
  CHECK_FALSE(table.try_take(kCounting, "w1", &blocking));
  CHECK(blocking == "db");
  CHECK_FALSE(table.try_take(kExclusive, "w1"));
  one.reset();
  two.reset();
  auto alone = table.try_take(kExclusive, "w1");
  REQUIRE(alone);
  CHECK_FALSE(table.try_take(kCounting, "w1"));
}

TEST_CASE("lock table: a counting use never overtakes an exclusive use queued before it") {
  kiln::util::EventLoop loop;
  std::vector<std::string> order;
  LockTable table(loop, [] {});
  table.configure({master_lock("db", 3)});
  auto holder = table.try_take(kCounting, "w1");
  REQUIRE(holder);
  std::unique_ptr<LockClaim> exclusive_claim, counting_claim;
  auto exclusive_wait = table.wait_for(kExclusive, "w1", "exclusive", [&](std::unique_ptr<LockClaim> c) {
    order.push_back("exclusive");
    exclusive_claim = std::move(c);
  });
  auto counting_wait = table.wait_for(kCounting, "w1", "counting", [&](std::unique_ptr<LockClaim> c) {
    order.push_back("counting");
    counting_claim = std::move(c);
  });
  drain(loop);
  // Room for two more counting uses, but the exclusive one asked first.
  CHECK(order.empty());
  CHECK_FALSE(table.try_take(kCounting, "w1"));
  const auto status = table.status();
  REQUIRE(status.size() == 1);
  CHECK(status[0]["counting"] == 1);
  CHECK(status[0]["waiting"] == nlohmann::json{"exclusive", "counting"});

  holder.reset();
  drain(loop);
  CHECK(order == std::vector<std::string>{"exclusive"});
  exclusive_claim.reset();
  drain(loop);
  CHECK(order == std::vector<std::string>{"exclusive", "counting"});
  counting_claim.reset();
  CHECK(table.status().empty());
}

TEST_CASE("lock table: a wait given up leaves the queue, and those behind it move on") {
  kiln::util::EventLoop loop;
  int released = 0;
  LockTable table(loop, [&] { ++released; });
  table.configure({master_lock("db")});
  auto holder = table.try_take(kCounting, "w1");
  bool first_called = false, second_called = false;
  std::unique_ptr<LockClaim> second_claim;
  auto first = table.wait_for(kExclusive, "w1", "first", [&](std::unique_ptr<LockClaim>) { first_called = true; });
  auto second = table.wait_for(kCounting, "w1", "second", [&](std::unique_ptr<LockClaim> c) {
    second_called = true;
    second_claim = std::move(c);
  });
  holder.reset();
  first.reset();  // before the loop runs the pass that would have granted it
  drain(loop);
  CHECK_FALSE(first_called);
  CHECK(second_called);
  CHECK(released > 0);
}

TEST_CASE("lock table: a worker lock is one lock per worker, with max_count_for_worker") {
  kiln::util::EventLoop loop;
  LockTable table(loop, [] {});
  LockConfig disk = master_lock("disk");
  disk.per_worker = true;
  disk.max_count_for_worker["big"] = 2;
  table.configure({disk});
  const std::vector<LockAccess> use{{"disk", false, 1}};
  auto a = table.try_take(use, "w1");
  auto b = table.try_take(use, "w2");
  REQUIRE(a);
  REQUIRE(b);
  CHECK_FALSE(table.try_take(use, "w1"));
  auto c = table.try_take(use, "big");
  auto d = table.try_take(use, "big");
  REQUIRE(c);
  REQUIRE(d);
  CHECK_FALSE(table.try_take(use, "big"));
  // A claim outliving its table gives back nothing and does not crash.
  auto orphan = std::make_unique<LockTable>(loop, [] {});
  orphan->configure({disk});
  auto kept = orphan->try_take(use, "w1");
  orphan.reset();
  kept.reset();
}
