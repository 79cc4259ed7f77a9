// Master and worker locks taken by builds and steps, over real local
// workers: a step that holds a lock waits for a gate file the test creates,
// so what waits and what runs can be looked at while the lock is held.

#include "util/build_master.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <string>
#include <vector>

using kiln::testing::BuildMaster;
using kiln::testing::pump_until;
using kiln::testing::TempDir;
using nlohmann::json;

namespace {

constexpr int kSuccess = 0;
constexpr int kFailure = 2;
constexpr int kCancelled = 6;

// Gate files the steps wait for, in a folder of their own.
struct Gates {
  TempDir dir{"kiln-lock-gates"};
  std::string wait_command(const std::string& gate, const std::string& then = "true") const {
    return "[sh, -c, 'while [ ! -f " + (dir.path() / gate).string() + " ]; do sleep 0.02; done; " + then + "']";
  }
  void open(const std::string& gate) const { std::ofstream(dir.path() / gate) << "open\n"; }
};

// Watches builds start and end, by builder name.
struct BuildLog {
  explicit BuildLog(BuildMaster& m) : master(m) {
    for (const auto& b : m.get("builders")) names[b["builderid"].get<int64_t>()] = b["name"];
    m.engine().events().subscribe("builds/+/new", [this](const std::string&, const json& e) {
      started.push_back(names[e["builderid"].get<int64_t>()]);
      buildids[started.back()] = e["buildid"].get<int64_t>();
      order.push_back("start " + started.back());
    });
    m.engine().events().subscribe("builds/+/finished", [this](const std::string&, const json& e) {
      const std::string name = names[e["builderid"].get<int64_t>()];
      results[name] = e["results"].get<int>();
      order.push_back("end " + name);
    });
  }
  BuildMaster& master;
  std::map<int64_t, std::string> names;
  std::vector<std::string> started;
  std::map<std::string, int64_t> buildids;
  std::map<std::string, int> results;
  std::vector<std::string> order;
};

// The workers section: w1..wN, local, each with max_builds.
std::string local_workers(int count, int max_builds) {
  std::string yaml = "workers:\n";
  for (int i = 1; i <= count; ++i) {
    yaml += "  - {name: w" + std::to_string(i) + ", type: local, max_builds: " + std::to_string(max_builds) + "}\n";
  }
  return yaml;
}

json builder_status(BuildMaster& m, const std::string& name) {
  const json status = m.engine().status();
  for (const auto& b : status["builders"]) {
    if (b["name"] == name) return b;
  }
  return nullptr;
}

json lock_status(BuildMaster& m) { return m.engine().status()["locks"]; }

bool waits_for(BuildMaster& m, const std::string& builder, const std::string& lock) {
  return builder_status(m, builder).value("waiting_for_lock", "") == lock;
}

}  // namespace

TEST_CASE("a build waits in the queue for its builder's exclusive lock and gets it when the holder fails") {
  Gates gates;
  BuildMaster m(
      local_workers(2, 1) +
      "locks:\n"
      "  - {name: db}\n"
      "builders:\n"
      "  - {name: b1, workers: [w1], locks: [{name: db, access: exclusive}],\n"
      "     steps: [{type: shell, command: " + gates.wait_command("g1", "exit 1") + "}]}\n"
      "  - {name: b2, workers: [w2], locks: [{name: db, access: exclusive}],\n"
      "     steps: [{type: shell, command: [\"true\"]}]}\n");
  BuildLog log(m);
  m.submit("b1");
  REQUIRE(pump_until(m.loop(), [&] { return log.started.size() == 1; }));
  m.submit("b2");
  // Its worker w2 is idle: only the lock keeps it in the queue.
  REQUIRE(pump_until(m.loop(), [&] { return waits_for(m, "b2", "db"); }));
  CHECK(log.started == std::vector<std::string>{"b1"});
  CHECK(builder_status(m, "b2")["pending"] == 1);
  const json locks = lock_status(m);
  REQUIRE(locks.size() == 1);
  CHECK(locks[0]["name"] == "db");
  CHECK(locks[0]["exclusive"] == true);

  gates.open("g1");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.size() == 2; }));
  CHECK(log.results["b1"] == kFailure);
  CHECK(log.results["b2"] == kSuccess);
  CHECK(log.order == std::vector<std::string>{"start b1", "end b1", "start b2", "end b2"});
  CHECK(lock_status(m).empty());
}

TEST_CASE("a counting lock lets max_count builds hold it at once and queues the next") {
  Gates gates;
  BuildMaster m(
      local_workers(3, 1) +
      "locks:\n"
      "  - {name: slots, max_count: 2}\n"
      "builders:\n"
      "  - {name: b1, workers: [w1], locks: [slots], steps: [{type: shell, command: " + gates.wait_command("g") + "}]}\n"
      "  - {name: b2, workers: [w2], locks: [slots], steps: [{type: shell, command: " + gates.wait_command("g") + "}]}\n"
      "  - {name: b3, workers: [w3], locks: [slots], steps: [{type: shell, command: " + gates.wait_command("g") + "}]}\n");
  BuildLog log(m);
  for (const char* b : {"b1", "b2", "b3"}) m.submit(b);
  REQUIRE(pump_until(m.loop(), [&] {
    return log.started.size() == 2 &&
           (waits_for(m, "b1", "slots") || waits_for(m, "b2", "slots") || waits_for(m, "b3", "slots"));
  }));
  const json locks = lock_status(m);
  REQUIRE(locks.size() == 1);
  CHECK(locks[0]["counting"] == 2);
  CHECK(locks[0]["max_count"] == 2);
  CHECK(locks[0]["exclusive"] == false);

  gates.open("g");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.size() == 3; }));
  for (const char* b : {"b1", "b2", "b3"}) CHECK(log.results[b] == kSuccess);
  CHECK(log.started.size() == 3);
}

TEST_CASE("a worker lock limits the builds on each worker, not across workers") {
  Gates gates;
  BuildMaster m(
      local_workers(2, 2) +
      "locks:\n"
      "  - {name: disk, type: worker}\n"
      "builders:\n"
      "  - {name: b1, workers: [w1], locks: [disk], steps: [{type: shell, command: " + gates.wait_command("g") + "}]}\n"
      "  - {name: b2, workers: [w2], locks: [disk], steps: [{type: shell, command: " + gates.wait_command("g") + "}]}\n"
      "  - {name: b3, workers: [w1], locks: [disk], steps: [{type: shell, command: [\"true\"]}]}\n");
  BuildLog log(m);
  m.submit("b1");
  REQUIRE(pump_until(m.loop(), [&] { return log.started.size() == 1; }));
  m.submit("b2");
  m.submit("b3");
  // w1 has room for a second build, but its copy of the lock is taken.
  REQUIRE(pump_until(m.loop(), [&] { return log.started.size() == 2 && waits_for(m, "b3", "disk"); }));
  CHECK(log.started == std::vector<std::string>{"b1", "b2"});
  const json locks = lock_status(m);
  REQUIRE(locks.size() == 2);
  CHECK(locks[0]["worker"] == "w1");
  CHECK(locks[1]["worker"] == "w2");

  gates.open("g");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.size() == 3; }));
  for (const char* b : {"b1", "b2", "b3"}) CHECK(log.results[b] == kSuccess);
}

TEST_CASE("a step waits for its lock with the build running, and runs when the holding step ends") {
  Gates gates;
  BuildMaster m(
      local_workers(2, 1) +
      "locks:\n"
      "  - {name: db}\n"
      "builders:\n"
      "  - name: b1\n"
      "    workers: [w1]\n"
      "    steps:\n"
      "      - {type: shell, name: migrate, command: " + gates.wait_command("g1") + ", locks: [{name: db, access: exclusive}]}\n"
      "      - {type: shell, name: after, command: " + gates.wait_command("g2") + "}\n"
      "  - name: b2\n"
      "    workers: [w2]\n"
      "    steps:\n"
      "      - {type: shell, name: query, command: [\"true\"], locks: [{name: db, access: exclusive}]}\n");
  BuildLog log(m);
  m.submit("b1");
  REQUIRE(pump_until(m.loop(), [&] {
    const json locks = lock_status(m);
    return locks.size() == 1 && locks[0]["exclusive"] == true;
  }));
  m.submit("b2");
  // The build starts (step locks do not hold it in the queue); its step waits.
  REQUIRE(pump_until(m.loop(), [&] {
    const json locks = lock_status(m);
    return log.started.size() == 2 && locks.size() == 1 && locks[0]["waiting"].size() == 1;
  }));
  CHECK(lock_status(m)[0]["waiting"][0] == "b2/1/query");
  const json steps = m.get("builds/" + std::to_string(log.buildids["b2"]) + "/steps");
  REQUIRE(steps.size() == 1);
  CHECK(steps[0]["state_string"] == "waiting for lock 'db'");
  CHECK(steps[0]["complete"] == false);

  // b1's first step gives the lock back; b2 runs while b1 is still busy.
  gates.open("g1");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.count("b2") == 1; }));
  CHECK(log.results["b2"] == kSuccess);
  CHECK(log.results.count("b1") == 0);
  gates.open("g2");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.size() == 2; }));
  CHECK(log.results["b1"] == kSuccess);
}

TEST_CASE("stopping a build whose step waits for a lock cancels it and leaves the holder alone") {
  Gates gates;
  BuildMaster m(
      local_workers(2, 1) +
      "locks:\n"
      "  - {name: db}\n"
      "builders:\n"
      "  - {name: b1, workers: [w1], steps: [{type: shell, command: " + gates.wait_command("g") + ", locks: [db]}]}\n"
      "  - {name: b2, workers: [w2], steps: [{type: shell, command: [\"true\"], locks: [{name: db, access: exclusive}]}]}\n");
  BuildLog log(m);
  m.submit("b1");
  REQUIRE(pump_until(m.loop(), [&] { return lock_status(m).size() == 1; }));
  m.submit("b2");
  REQUIRE(pump_until(m.loop(), [&] {
    const json locks = lock_status(m);
    return locks.size() == 1 && locks[0]["waiting"].size() == 1;
  }));
  bool answered = false;
  m.engine().control("builds/" + std::to_string(log.buildids["b2"]), "stop", {{"reason", "not now"}},
                     [&](kiln_status status, json value) {
                       INFO(value.dump());
                       CHECK(status == KILN_OK);
                       answered = true;
                     });
  REQUIRE(pump_until(m.loop(), [&] { return answered && log.results.count("b2") == 1; }));
  CHECK(log.results["b2"] == kCancelled);
  json locks = lock_status(m);
  REQUIRE(locks.size() == 1);
  CHECK(locks[0]["counting"] == 1);
  CHECK(locks[0]["waiting"].empty());

  gates.open("g");
  REQUIRE(pump_until(m.loop(), [&] { return log.results.size() == 2; }));
  CHECK(log.results["b1"] == kSuccess);
  REQUIRE(pump_until(m.loop(), [&] { return lock_status(m).empty(); }));
}
