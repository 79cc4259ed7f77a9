// kiln-worker at the other end of one buildbot-worker instance driven
// through its vtable: the protocol's interrupt, ping and graceful shutdown.

#include "buildbot_worker/worker_instance_fixture.h"
#include "kiln_worker_process.h"

#include <cerrno>

namespace {

using namespace bbw_test;
using kiln_worker_test::KilnWorkerProcess;

}  // namespace

TEST_CASE("kiln-worker kills an interrupted command's process group and completes it without elapsed") {
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-worker-ctl");
  KilnWorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
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
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-worker-ctl");
  KilnWorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  INFO(worker.log());

  Answer ping;
  REQUIRE(f.control("ping", ping) == KILN_OK);
  REQUIRE(f.run_until([&] { return ping.done; }));
  CHECK(ping.status == KILN_OK);
  CHECK(worker.log().find("message from master: ping") != std::string::npos);

  REQUIRE(f.command(7, "shell", shell_args("sleep 0.3; echo finished", worker.basedir() / "x")) == KILN_OK);
  Answer shutdown;
  REQUIRE(f.control("graceful_shutdown", shutdown) == KILN_OK);
  REQUIRE(f.run_until([&] { return shutdown.done; }));
  CHECK(shutdown.status == KILN_OK);
  REQUIRE(f.ctx().results_.count(7) == 1);
  CHECK(f.ctx().results_[7]["rc"] == 0);
  CHECK(f.ctx().output_[7][KILN_STREAM_STDOUT] == "finished\n");

  int status = -1;
  REQUIRE(f.run_until([&] { return worker.exited(&status) && !f.ctx().disconnect_reason_.empty(); }));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(f.ctx().disconnect_reason_ == "the worker shut down");
  CHECK(worker.log().find("shutting down as the master asked") != std::string::npos);
}
