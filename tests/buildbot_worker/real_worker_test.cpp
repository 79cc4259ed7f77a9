// End to end: Debian's real buildbot-worker 3.7 (msgpack protocol) connects
// to the plugin inside a real engine and runs real builds (the scenarios of
// worker_scenarios.h, which kiln-worker passes too).

#include "worker_scenarios.h"
#include "util/certificate.h"

namespace {

using namespace bbw_test;

}  // namespace

TEST_CASE("a real buildbot-worker runs shell, download, upload, stat and glob steps of a build") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kFullBuild));
  prepare_full_build(f);
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  w1.start();
  {
    INFO(w1.twistd_log());
    check_full_build(f, w1.basedir());
  }

  // What the worker said about itself became the worker's info.
  const json info = worker_info(f);
  CHECK(info["basedir"] == w1.basedir().string());
  CHECK(info["version"].get<std::string>().rfind("3.", 0) == 0);
  CHECK(info["worker_commands"].contains("shell"));
  CHECK(info["environ"]["LANG"] == "C.UTF-8");
}

TEST_CASE("a buildbot-worker with a wrong password is refused and never gets a build") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kTrivialBuild));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess intruder(workers.path(), "bw1", "not-the-password", port);
  intruder.start();
  f.submit({{"builders", {"b"}}});
  // The worker logs the refusal of its upgrade request.
  CHECK(f.run_until([&] { return intruder.twistd_log().find("[401]") != std::string::npos; },
                    std::chrono::seconds(15)));
  f.run_until([] { return false; }, std::chrono::milliseconds(300));
  check_never_built(f);
}

TEST_CASE("a buildbot-worker killed mid-build ends the build RETRY and the build re-runs on another worker") {
  const uint16_t port = free_port();
  // Only bw1's folder holds SLOW: there the step waits until the worker dies.
  EngineFixture f(two_workers_yaml(port, kSlowBuild));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  WorkerProcess w2(workers.path(), "bw2", "pw-two", port);
  kiln::testing::write_file(w1.basedir() / "SLOW", "");
  w1.start();
  f.submit({{"builders", {"slow"}}});

  const fs::path pid_file = w1.basedir() / "shell.pid";
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  w1.kill_now();
  // The worker runs commands in their own process group; nothing else
  // would end the orphaned sleep.
  const int shell_pid = std::stoi(kiln::testing::read_file(pid_file));
  ::kill(-shell_pid, SIGKILL);

  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_RETRY);
  w2.start();
  finished = f.wait_finished(2);
  INFO(w2.twistd_log());
  check_rerun_on_bw2(f, finished);
}

TEST_CASE("a real buildbot-worker with --use-tls connects to the TLS listener trusting its certificate and runs a build") {
  TempDir certs("kiln-bbw-tls");
  kiln::testing::make_certificate(certs.path());
  const uint16_t port = free_port();
  EngineFixture f("workers:\n  - {name: bw1, type: buildbot-worker, password: pw-one, listen: \"127.0.0.1:" +
                  std::to_string(port) + "\", tls: {cert: \"" + (certs.path() / "cert.pem").string() +
                  "\", key: \"" + (certs.path() / "key.pem").string() + "\"}}\n" + kTrivialBuild);
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess w1(workers.path(), "bw1", "pw-one", port, WorkerProcess::Tls{"localhost", certs.path() / "cert.pem"});
  w1.start();
  f.submit({{"builders", {"b"}}});
  auto finished = f.wait_finished(1);
  INFO(w1.twistd_log());
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(is_connected(f, "bw1"));
}
