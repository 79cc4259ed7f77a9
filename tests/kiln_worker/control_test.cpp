// kiln-worker at the other end of one buildbot-worker instance driven
// through its vtable: the protocol's interrupt, ping and graceful shutdown.

#include "buildbot_worker/worker_instance_fixture.h"
#include "kiln_worker_process.h"

#include <cerrno>

namespace {

using namespace bbw_test;
using kiln_worker_test::KilnWorkerProcess;

// One buildbot-worker instance `w1` and a kiln-worker connected to it.
struct ConnectedWorker {
  uint16_t port = free_port();
  WorkerFixture f{"w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}}};
  TempDir root{"kiln-worker-ctl"};
  KilnWorkerProcess worker{root.path(), "w1", "secret", port};

  ConnectedWorker() {
    REQUIRE(f.start().empty());
    worker.start();
    REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  }
};

}  // namespace

TEST_CASE("kiln-worker kills an interrupted command's process group and completes it without elapsed") {
  ConnectedWorker c;
  auto& f = c.f;
  auto& worker = c.worker;
  INFO(worker.log());
  CHECK(f.ctx().info_["version"].get<std::string>().rfind("kiln-worker", 0) == 0);

  const fs::path pid_file = worker.basedir() / "shell.pid";
  REQUIRE(f.command(3, "shell", shell_args("echo $$ > ../shell.pid; sleep 30 & wait", worker.basedir() / "x")) ==
          KILN_OK);
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  const int shell_pid = std::stoi(kiln::testing::read_file(pid_file));
  REQUIRE(f.interrupt(3, "stop it") == KILN_OK);
  REQUIRE(f.run_until([&] { return f.ctx().results_.count(3) == 1; }));
  CHECK(f.ctx().results_[3]["rc"] == -1);
  CHECK(!f.ctx().results_[3].contains("elapsed"));
  CHECK(f.ctx().output_[3][KILN_STREAM_HEADER].find("command interrupted") != std::string::npos);
  // The background sleep was in the group too.
  CHECK(f.run_until([&] { return ::kill(-shell_pid, 0) != 0 && errno == ESRCH; }));
}

TEST_CASE("kiln-worker answers ping and exits 0 after a graceful shutdown that waited for its command") {
  ConnectedWorker c;
  auto& f = c.f;
  auto& worker = c.worker;
  INFO(worker.log());
  check_ping_and_graceful_shutdown(f, worker.basedir() / "x");
  CHECK(worker.log().find("message from master: ping") != std::string::npos);

  int status = -1;
  REQUIRE(f.run_until([&] { return worker.exited(&status) && !f.ctx().disconnect_reason_.empty(); }));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(f.ctx().disconnect_reason_ == "the worker shut down");
  CHECK(worker.log().find("shutting down as the master asked") != std::string::npos);
}
