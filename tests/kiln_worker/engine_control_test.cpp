// Control actions through the engine (core/engine/worker_control.cpp), as
// the control socket and the web's JSON-RPC call them, against real
// workers: kiln-worker on the buildbot-worker type, and the local worker.

#include "buildbot_worker/worker_scenarios.h"
#include "kiln_worker_process.h"

namespace {

using namespace bbw_test;
using kiln_worker_test::KilnWorkerProcess;

// Builder `wait` on `worker`: its step waits until `go` exists.
std::string wait_builder(const std::string& worker, const fs::path& go) {
  return "builders:\n  - {name: wait, workers: [" + worker +
         "], steps: [{type: shell, name: wait, command: \"while [ ! -e " + go.string() +
         " ]; do sleep 0.05; done\"}]}\n";
}

std::string remote_yaml(uint16_t port, const fs::path& go) {
  return "workers:\n  - {name: bw1, type: buildbot-worker, password: pw, listen: \"127.0.0.1:" +
         std::to_string(port) + "\"}\n" + wait_builder("bw1", go);
}

std::string local_yaml(const fs::path& go) {
  return "master: {collapse_requests: false}\nworkers:\n  - {name: lw, type: local, max_builds: 1}\n" +
         wait_builder("lw", go);
}

json record(EngineFixture& f, const std::string& worker) {
  const json w = f.get("workers/" + worker);
  return w.is_array() ? w.at(0) : w;
}

// Counts events by pattern.
struct Counter {
  int count = 0;
  Counter(EngineFixture& f, const std::string& pattern) {
    f.engine().events().subscribe(pattern, [this](const std::string&, const json&) { ++count; });
  }
};

// Lets the loop run for a while (nothing is expected to happen).
void idle(EngineFixture& f, int ms = 300) { (void)f.run_until([] { return false; }, std::chrono::milliseconds(ms)); }

}  // namespace

TEST_CASE("a kiln-worker asked through the engine for ping and graceful_shutdown finishes its build takes no other and exits") {
  const uint16_t port = free_port();
  TempDir root("kiln-engine-control");
  const fs::path go = root.path() / "GO";
  EngineFixture f(remote_yaml(port, go));
  Counter connects(f, "workers/+/connected"), started(f, "builds/+/new");
  REQUIRE(f.start().empty());
  KilnWorkerProcess w1(root.path(), "bw1", "pw", port);
  w1.start();
  REQUIRE(f.run_until([&] { return connects.count == 1; }));
  f.submit({{"builders", {"wait"}}});
  REQUIRE(f.run_until([&] { return started.count == 1; }));
  INFO(w1.log());

  kiln_status status = KILN_ERR_INTERNAL;
  const json pong = f.control("workers/bw1", "ping", json::object(), &status);
  CHECK(status == KILN_OK);
  CHECK(pong["ok"] == true);
  CHECK(pong["rtt_ms"].is_number());
  CHECK(w1.log().find("message from master: ping") != std::string::npos);

  // By id this time, as the web addresses workers.
  const int64_t workerid = record(f, "bw1")["workerid"].get<int64_t>();
  const json answer = f.control("workers/" + std::to_string(workerid), "graceful_shutdown", json::object(), &status);
  CHECK(status == KILN_OK);
  CHECK(answer["graceful"] == true);
  CHECK(answer["running_builds"] == 1);
  CHECK(record(f, "bw1")["graceful"] == true);

  // A second build waits: the worker takes nothing new while graceful.
  f.submit({{"builders", {"wait"}}});
  idle(f);
  CHECK(started.count == 1);
  CHECK(!w1.exited());

  kiln::testing::write_file(go, "");
  CHECK(f.wait_finished(1)[0]["results"] == KILN_SUCCESS);
  int exit_status = -1;
  REQUIRE(f.run_until([&] { return w1.exited(&exit_status); }));
  CHECK(WIFEXITED(exit_status));
  CHECK(WEXITSTATUS(exit_status) == 0);
  CHECK(w1.log().find("shutting down as the master asked") != std::string::npos);
  CHECK(started.count == 1);

  // Started again, it is a new worker: the waiting build runs on it.
  w1.start();
  REQUIRE(f.run_until([&] { return connects.count == 2; }));
  CHECK(f.wait_finished(2)[1]["results"] == KILN_SUCCESS);
  CHECK(record(f, "bw1")["graceful"] == false);
}

TEST_CASE("a kiln-worker shut down through the engine leaves at once and its build ends RETRY") {
  const uint16_t port = free_port();
  TempDir root("kiln-engine-control");
  EngineFixture f(remote_yaml(port, root.path() / "never"));
  Counter connects(f, "workers/+/connected"), started(f, "builds/+/new");
  REQUIRE(f.start().empty());
  KilnWorkerProcess w1(root.path(), "bw1", "pw", port);
  w1.start();
  REQUIRE(f.run_until([&] { return connects.count == 1; }));
  f.submit({{"builders", {"wait"}}});
  REQUIRE(f.run_until([&] { return started.count == 1; }));
  INFO(w1.log());

  kiln_status status = KILN_ERR_INTERNAL;
  const json answer = f.control("workers/bw1", "shutdown", json::object(), &status);
  CHECK(status == KILN_OK);
  CHECK(answer["shutdown"] == true);
  CHECK(f.wait_finished(1)[0]["results"] == KILN_RETRY);
  int exit_status = -1;
  REQUIRE(f.run_until([&] { return w1.exited(&exit_status); }));
  CHECK(WEXITSTATUS(exit_status) == 0);

  // Gone: nothing to ping or kill.
  f.control("workers/bw1", "kill", json::object(), &status);
  CHECK(status == KILN_ERR_NOT_FOUND);
  f.control("workers/bw1", "ping", json::object(), &status);
  CHECK(status == KILN_ERR_NOT_FOUND);
}

TEST_CASE("a local worker answers ping refuses shutdown saying why and pause holds its builds until unpause") {
  TempDir root("kiln-engine-control");
  const fs::path go = root.path() / "GO";
  kiln::testing::write_file(go, "");
  EngineFixture f(local_yaml(go));
  Counter started(f, "builds/+/new"), states(f, "workers/+/state_updated");
  REQUIRE(f.start().empty());

  kiln_status status = KILN_ERR_INTERNAL;
  CHECK(f.control("workers/lw", "ping", json::object(), &status)["ok"] == true);
  CHECK(status == KILN_OK);
  const json refused = f.control("workers/lw", "shutdown", json::object(), &status);
  CHECK(status == KILN_ERR_UNSUPPORTED);
  CHECK(refused["error"].get<std::string>().find("inside the master") != std::string::npos);

  CHECK(f.control("workers/lw", "pause", json::object(), &status)["paused"] == true);
  CHECK(status == KILN_OK);
  CHECK(record(f, "lw")["paused"] == true);
  CHECK(states.count == 1);
  f.submit({{"builders", {"wait"}}});
  idle(f);
  CHECK(started.count == 0);
  CHECK(f.engine().status()["workers"][0]["paused"] == true);

  f.control("workers/lw", "unpause", json::object(), &status);
  CHECK(status == KILN_OK);
  CHECK(f.wait_finished(1)[0]["results"] == KILN_SUCCESS);
  CHECK(record(f, "lw")["paused"] == false);

  f.control("workers/lw", "reboot", json::object(), &status);
  CHECK(status == KILN_ERR_NOT_FOUND);
  f.control("workers/nobody", "ping", json::object(), &status);
  CHECK(status == KILN_ERR_NOT_FOUND);
}

TEST_CASE("stopping a change stops its running build and cancels its pending requests but not another change's") {
  TempDir root("kiln-engine-control");
  const fs::path go = root.path() / "GO";
  EngineFixture f(local_yaml(go));
  Counter started(f, "builds/+/new");
  REQUIRE(f.start().empty());

  auto add_change = [&](const std::string& revision) {
    int64_t id = 0;
    f.engine().add_change({{"who", "Ann <ann@example.org>"}, {"repository", "repo"}, {"branch", "main"},
                           {"revision", revision}, {"comments", "c " + revision}},
                          [&](kiln_status s, json v) {
                            REQUIRE(s == KILN_OK);
                            id = v["changeid"].get<int64_t>();
                          });
    REQUIRE(f.run_until([&] { return id != 0; }));
    return id;
  };
  const int64_t a = add_change("r1"), b = add_change("r2");
  auto submit_for = [&](int64_t change, const std::string& revision) {
    json stamp = {{"repository", "repo"}, {"branch", "main"}, {"revision", revision}, {"changeids", {change}}};
    return f.submit({{"builders", {"wait"}}, {"sourcestamps", {stamp}}})["brids"]["wait"].get<int64_t>();
  };
  submit_for(a, "r1");
  REQUIRE(f.run_until([&] { return started.count == 1; }));  // one worker slot: the rest waits
  const int64_t pending_a = submit_for(a, "r1");
  submit_for(b, "r2");

  kiln_status status = KILN_ERR_INTERNAL;
  const json answer = f.control("changes/" + std::to_string(a), "stop", json::object(), &status);
  INFO(answer.dump());
  CHECK(status == KILN_OK);
  CHECK(answer["stopped_builds"].size() == 1);
  CHECK(answer["cancelled_requests"] == json::array({pending_a}));
  CHECK(f.wait_finished(1)[0]["results"] == KILN_CANCELLED);
  const json cancelled = f.get("buildrequests/" + std::to_string(pending_a));
  CHECK((cancelled.is_array() ? cancelled[0] : cancelled)["results"] == KILN_CANCELLED);

  // The other change's build runs, and only it.
  kiln::testing::write_file(go, "");
  CHECK(f.wait_finished(2)[1]["results"] == KILN_SUCCESS);
  idle(f);
  CHECK(started.count == 2);
}

TEST_CASE("a clean master stop waits for the running build starts no other and then says the master is drained") {
  TempDir root("kiln-engine-control");
  const fs::path go = root.path() / "GO";
  EngineFixture f(local_yaml(go));
  Counter started(f, "builds/+/new"), stopping(f, "masters/+/stopping"), drained(f, "masters/+/drained");
  REQUIRE(f.start().empty());
  f.submit({{"builders", {"wait"}}});
  REQUIRE(f.run_until([&] { return started.count == 1; }));

  const json masters = f.get("masters");
  REQUIRE(masters.size() == 1);
  const std::string path = "masters/" + std::to_string(masters[0]["masterid"].get<int64_t>());
  kiln_status status = KILN_ERR_INTERNAL;
  const json answer = f.control(path, "stop", json::object(), &status);
  CHECK(status == KILN_OK);
  CHECK(answer["running_builds"] == 1);
  CHECK(stopping.count == 1);
  CHECK(f.engine().status()["clean_shutdown"]["running_builds"] == 1);

  f.submit({{"builders", {"wait"}}});
  idle(f);
  CHECK(drained.count == 0);
  kiln::testing::write_file(go, "");
  CHECK(f.wait_finished(1)[0]["results"] == KILN_SUCCESS);
  REQUIRE(f.run_until([&] { return drained.count == 1; }));
  idle(f);
  CHECK(started.count == 1);

  f.control("masters/999", "stop", json::object(), &status);
  CHECK(status == KILN_ERR_NOT_FOUND);
}
