// The plugin's worker component on its own, created through the real
// registry and driven through its vtable, with a recording host context and
// a real buildbot-worker at the other end.

#include "worker_instance_fixture.h"

namespace {

using namespace bbw_test;

}  // namespace

TEST_CASE("a listen address taken by another program makes the worker fail to start, naming the address") {
  const uint16_t port = free_port();
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor taken(io, {boost::asio::ip::make_address("127.0.0.1"), port});
  WorkerFixture f("w1", {{"password", "x"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  CHECK(f.start().find("cannot listen on 127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("commands before a worker connects are refused for a retry") {
  WorkerFixture f("w1", {{"password", "x"}, {"listen", "127.0.0.1:" + std::to_string(free_port())}});
  REQUIRE(f.start().empty());
  CHECK(f.command(1, "shell", shell_args("true", "/tmp")) == KILN_ERR_RETRY);
  Answer ping;
  CHECK(f.control("ping", ping) == KILN_ERR_NOT_FOUND);
}

TEST_CASE("ping and graceful shutdown reach a real worker through control actions") {
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-bbw-ctl");
  WorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  CHECK(f.ctx().info_["basedir"] == worker.basedir().string());
  CHECK(f.ctx().info_["os"].is_string());

  check_ping_and_graceful_shutdown(f, worker.basedir() / "x");
  CHECK(worker.twistd_log().find("message from master: ping") != std::string::npos);

  // The worker exits; the instance reports it gone.
  REQUIRE(f.run_until([&] { return worker.exited() && !f.ctx().disconnect_reason_.empty(); }));
  CHECK(f.ctx().disconnect_reason_ == "the worker shut down");
}

TEST_CASE("a worker that reconnects after losing its connection is attached again") {
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-bbw-re");
  WorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  const fs::path pid_file = worker.basedir() / "shell.pid";
  REQUIRE(f.command(3, "shell", shell_args("echo $$ > ../shell.pid; sleep 30", worker.basedir() / "x")) == KILN_OK);
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  worker.kill_now();
  // The command runs in its own process group and outlives the worker.
  ::kill(-std::stoi(kiln::testing::read_file(pid_file)), SIGKILL);
  REQUIRE(f.run_until([&] { return !f.ctx().disconnect_reason_.empty(); }));
  CHECK(f.ctx().disconnect_reason_ == "the worker dropped the connection");
  CHECK(f.command(4, "shell", shell_args("true", worker.basedir() / "x")) == KILN_ERR_RETRY);

  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 2; }));
  REQUIRE(f.command(5, "stat", {{"path", (worker.basedir() / "buildbot.tac").string()}}) == KILN_OK);
  REQUIRE(f.run_until([&] { return f.ctx().results_.count(5) == 1; }));
  CHECK(f.ctx().results_[5]["rc"] == 0);
  REQUIRE(f.ctx().updates_[5].size() == 1);
  CHECK(f.ctx().updates_[5][0]["stat"].size() == 10);
}
