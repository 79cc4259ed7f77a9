// End to end: the built kiln-worker program connects to the buildbot-worker
// plugin inside a real engine, as Debian's buildbot-worker does in
// tests/buildbot_worker, and passes the same scenarios (worker_scenarios.h),
// plus what only kiln-worker does: refusing transfers outside its basedir,
// a clean SIGTERM, reconnecting to a restarted master.

#include "buildbot_worker/worker_scenarios.h"
#include "kiln_worker_process.h"

#include <cerrno>
#include <optional>

namespace {

using namespace bbw_test;
using kiln_worker_test::KilnWorkerProcess;

// Starts w1 with SLOW in its basedir and a build of `slow`; the pid of the
// step's shell once it waits.
int start_slow_build(EngineFixture& f, KilnWorkerProcess& w1) {
  fs::create_directories(w1.basedir());
  kiln::testing::write_file(w1.basedir() / "SLOW", "");
  w1.start();
  f.submit({{"builders", {"slow"}}});
  const fs::path pid_file = w1.basedir() / "shell.pid";
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  return std::stoi(kiln::testing::read_file(pid_file));
}

bool process_group_gone(int pgid) { return ::kill(-pgid, 0) != 0 && errno == ESRCH; }

}  // namespace

TEST_CASE("kiln-worker runs shell, download, upload, stat and glob steps of a build and describes itself") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kFullBuild));
  prepare_full_build(f);
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port, {"--max-builds", "2", "--admin", "Ops <ops@example.org>"});
  w1.start();
  {
    INFO(w1.log());
    check_full_build(f, w1.basedir());
  }

  const json info = worker_info(f);
  CHECK(info["basedir"] == w1.basedir().string());
  CHECK(info["version"].get<std::string>().rfind("kiln-worker ", 0) == 0);
  CHECK(info["admin"] == "Ops <ops@example.org>");
  CHECK(info["max_builds"] == 2);
  CHECK(info["numcpus"].get<int>() >= 1);
  CHECK(info["system"] == "posix");
  CHECK(info["worker_commands"].contains("upload_directory"));
  CHECK(info["environ"]["LANG"] == "C.UTF-8");
  CHECK(!info["os"].get<std::string>().empty());
  CHECK(w1.log().find("message from master: attached") != std::string::npos);
}

TEST_CASE("kiln-worker with a wrong password is refused, says so, and never gets a build") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kTrivialBuild));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess intruder(workers.path(), "bw1", "not-the-password", port);
  intruder.start();
  f.submit({{"builders", {"b"}}});
  CHECK(f.run_until([&] { return intruder.log().find("refused the connection: 401") != std::string::npos; },
                    std::chrono::seconds(15)));
  // It keeps trying, with backoff, as a Buildbot worker does.
  CHECK(f.run_until([&] { return intruder.log().find("retrying in") != std::string::npos; }));
  check_never_built(f);
  CHECK(!intruder.exited());
}

TEST_CASE("kiln-worker killed mid-build ends the build RETRY and the build re-runs on another kiln-worker") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kSlowBuild));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  KilnWorkerProcess w2(workers.path(), "bw2", "pw-two", port);
  const int shell_pid = start_slow_build(f, w1);
  w1.kill_now();
  // SIGKILL leaves kiln-worker no chance to end the step's process group.
  ::kill(-shell_pid, SIGKILL);

  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_RETRY);
  w2.start();
  finished = f.wait_finished(2);
  INFO(w2.log());
  check_rerun_on_bw2(f, finished);
}

TEST_CASE("kiln-worker stopped with SIGTERM mid-build kills the step's process group, exits 0, and the build ends RETRY") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, kSlowBuild));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  const int shell_pid = start_slow_build(f, w1);
  CHECK(!process_group_gone(shell_pid));

  const int status = w1.stop();
  INFO(w1.log());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(f.run_until([&] { return process_group_gone(shell_pid); }));
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_RETRY);
  CHECK(w1.log().find("got SIGTERM") != std::string::npos);
}

TEST_CASE("kiln-worker reconnects to a restarted master and runs its builds") {
  const uint16_t port = free_port();
  const std::string yaml = two_workers_yaml(port, R"yaml(
builders:
  - {name: b, workers: [bw1], steps: [{type: shell, name: hi, command: "echo hi from %(prop:workername)s"}]}
)yaml");
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  w1.start();
  {
    EngineFixture first(yaml);
    REQUIRE(first.start().empty());
    first.submit({{"builders", {"b"}}});
    CHECK(first.wait_finished(1)[0]["results"] == KILN_SUCCESS);
  }  // the master stops: the connection drops

  EngineFixture second(yaml);
  REQUIRE(second.start().empty());
  second.submit({{"builders", {"b"}}});
  auto finished = second.wait_finished(1);
  INFO(w1.log());
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(second.log_text(finished[0]["buildid"].get<int64_t>(), "hi").find("ohi from bw1\n") != std::string::npos);
  CHECK(w1.log().find("disconnected:") != std::string::npos);
  CHECK(!w1.exited());
}

TEST_CASE("kiln-worker refuses transfers whose path leads outside its basedir, through an absolute path or a symlink") {
  const uint16_t port = free_port();
  TempDir outside("kiln-worker-outside");
  kiln::testing::write_file(outside.path() / "secret.txt", "not for the master");
  const std::string secret = (outside.path() / "secret.txt").string();
  EngineFixture f(two_workers_yaml(port, R"yaml(
builders:
  - name: escape
    workers: [bw1]
    steps:
      - {type: shell, name: link, command: "ln -s )yaml" + outside.path().string() + R"yaml( out"}
      - {type: file-upload, name: absolute, workersrc: )yaml" + secret + R"yaml(, masterdest: got/absolute.txt}
      - {type: file-upload, name: symlink, workersrc: out/secret.txt, masterdest: got/symlink.txt}
      - {type: file-download, name: download-out, mastersrc: master.yaml, workerdest: out/planted.txt}
)yaml"));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  fs::create_directories(w1.basedir());
  w1.start();
  f.submit({{"builders", {"escape"}}});
  auto finished = f.wait_finished(1);
  INFO(w1.log());
  const int64_t buildid = finished[0]["buildid"].get<int64_t>();
  std::map<std::string, json> steps;
  for (const auto& s : f.get("builds/" + std::to_string(buildid) + "/steps")) steps[s["name"].get<std::string>()] = s;
  CHECK(steps.at("link")["results"] == KILN_SUCCESS);
  for (const char* refused : {"absolute", "symlink", "download-out"}) {
    INFO(refused << ": " << steps.at(refused).dump());
    CHECK(steps.at(refused)["results"] != KILN_SUCCESS);
  }
  // The master may keep what it opened for the upload, but none of the
  // file's bytes reached it.
  for (const char* got : {"absolute.txt", "symlink.txt"}) {
    if (fs::exists(f.dir() / "got" / got)) CHECK(kiln::testing::read_file(f.dir() / "got" / got).empty());
  }
  CHECK(f.log_text(buildid, "absolute").find("outside the worker's basedir") != std::string::npos);
  CHECK(!fs::exists(outside.path() / "planted.txt"));
}
