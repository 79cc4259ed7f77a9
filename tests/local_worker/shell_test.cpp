// The local worker plugin, loaded from its built library: connecting, and
// the shell command with real processes (output, rc, env, timeouts, kills,
// stdin, logfiles, throughput, concurrency, stop).

#include "local_worker/worker_fixture.h"

#include <csignal>
#include <cstdlib>

#include <sys/stat.h>
#include <unistd.h>

using namespace kiln::local_worker_test;

namespace {

// True once no process with that pid is alive (a zombie awaiting its
// reaper counts as gone: it runs nothing).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

bool has_update(const CommandRecord& c, const std::string& key) {
  for (const auto& u : c.updates) {
    if (u.contains(key)) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("the local worker loads from its library and connects with its basedir and commands") {
  WorkerFixture w;
  w.start();
  const json& info = w.info();
  const fs::path basedir = w.root() / "workers" / "local-1";
  CHECK(info["basedir"] == basedir.string());
  CHECK(fs::is_directory(basedir));
  CHECK(info["system"] == "posix");
  CHECK(info["numcpus"].get<int>() >= 1);
  CHECK(info["environ"].contains("PATH"));
  for (const char* name : {"shell", "stat", "glob", "listdir", "mkdir", "rmdir", "rmfile", "cpdir", "upload_file",
                           "upload_directory", "download_file"}) {
    CHECK(info["worker_commands"].contains(name));
  }
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  CHECK(info["host"] == std::string(host));
}

TEST_CASE("a relative basedir is taken from the master's folder and the env config reaches every command") {
  WorkerFixture w(json{{"basedir", "elsewhere/w1"}, {"env", {{"KILN_EXTRA", "yes"}}}});
  w.start();
  CHECK(w.info()["basedir"] == (w.root() / "elsewhere" / "w1").string());
  CHECK(w.info()["environ"]["KILN_EXTRA"] == "yes");
  const auto& c = w.run("shell", w.shell_args("echo $KILN_EXTRA"));
  CHECK(c.stdout_text == "yes\n");
}

TEST_CASE("a shell argv command streams stdout and stderr separately and reports the exit code") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args({"sh", "-c", "echo out; echo err >&2; exit 3"}));
  CHECK(c.stdout_text == "out\n");
  CHECK(c.stderr_text == "err\n");
  REQUIRE(c.result.has_value());
  CHECK((*c.result)["rc"] == 3);
  CHECK((*c.result).contains("elapsed"));
  CHECK_FALSE((*c.result).contains("failure"));
  CHECK(c.header.rfind("sh -c 'echo out; echo err >&2; exit 3'\n in dir " + (w.root() / "build").string() +
                           " (timeout 1200 secs)\n",
                       0) == 0);
  CHECK(c.header.find(" argv: [b'sh', b'-c', b'echo out; echo err >&2; exit 3']\n") != std::string::npos);
  CHECK(c.header.find(" watching logfiles {}\n") != std::string::npos);
  CHECK(c.header.find(" using PTY: False\n") != std::string::npos);
  CHECK(c.header.find("elapsedTime=") != std::string::npos);
}

TEST_CASE("a shell string command runs through /bin/sh -c and logs the environment sorted") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args("echo hello && echo $((1+2))"));
  CHECK(c.stdout_text == "hello\n3\n");
  CHECK((*c.result)["rc"] == 0);
  CHECK(c.header.rfind("echo hello && echo $((1+2))\n", 0) == 0);
  CHECK(c.header.find(" argv: [b'/bin/sh', b'-c', b'echo hello && echo $((1+2))']\n") != std::string::npos);
  auto env_at = c.header.find(" environment:\n");
  REQUIRE(env_at != std::string::npos);
  auto path_at = c.header.find("\n  PATH=", env_at);
  auto pwd_at = c.header.find("\n  PWD=" + (w.root() / "build").string() + "\n", env_at);
  CHECK(path_at != std::string::npos);
  CHECK(pwd_at != std::string::npos);
  CHECK(path_at < pwd_at);

  const auto& quiet = w.run("shell", w.shell_args("true", {{"logEnviron", false}}));
  CHECK(quiet.header.find(" environment:") == std::string::npos);
}

TEST_CASE("env merges over the worker's environment: null removes, lists join with ':', ${VAR} substitutes") {
  WorkerFixture w(json{{"env", {{"KILN_BASE", "base"}, {"REMOVE_ME", "present"}}}});
  w.start();
  json env = {{"A", "1"}, {"LIST", {"x", "y", "z"}}, {"SUB", "${KILN_BASE}-s"}, {"REMOVE_ME", nullptr}};
  const auto& c =
      w.run("shell", w.shell_args(R"(echo "$A|$LIST|$SUB|${REMOVE_ME-unset}|$PWD")", {{"env", env}}));
  CHECK(c.stdout_text == "1|x:y:z|base-s|unset|" + (w.root() / "build").string() + "\n");
}

TEST_CASE("a missing workdir is created before the command runs") {
  WorkerFixture w;
  w.start();
  const fs::path workdir = w.root() / "deep" / "er" / "build";
  const auto& c = w.run("shell", w.shell_args({"pwd"}, {{"workdir", workdir.string()}}));
  CHECK(fs::is_directory(workdir));
  CHECK(c.stdout_text == workdir.string() + "\n");
  CHECK((*c.result)["rc"] == 0);
}

TEST_CASE("want_stdout false drops stdout and keeps stderr") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args("echo out; echo err >&2", {{"want_stdout", false}}));
  CHECK(c.stdout_text.empty());
  CHECK(c.stderr_text == "err\n");
}

TEST_CASE("timeout kills the whole process group after that many seconds without output") {
  WorkerFixture w;
  w.start();
  const fs::path workdir = w.root() / "build";
  const std::string script = "sleep 30 & echo $! > sleep.pid; wait";
  const auto& c = w.run("shell", w.shell_args({"sh", "-c", script}, {{"timeout", 1}}), std::chrono::seconds(8));
  CHECK((*c.result)["rc"] == -1);
  CHECK((*c.result).contains("elapsed"));
  CHECK(c.header.find("\ncommand timed out: 1 seconds without output running [b'sh', b'-c', b'" + script +
                      "'], attempting to kill\n") != std::string::npos);
  CHECK(c.header.find("process killed by signal 9\n") != std::string::npos);
  const pid_t grandchild = std::stoi(read_file(workdir / "sleep.pid"));
  CHECK(w.wait_for([&] { return process_gone(grandchild); }, std::chrono::seconds(2)));
}

TEST_CASE("maxTime kills a command that keeps producing output") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args("while true; do echo tick; sleep 0.1; done", {{"maxTime", 1}}),
                        std::chrono::seconds(8));
  CHECK((*c.result)["rc"] == -1);
  CHECK(c.header.find(" (maxTime 1 secs)\n") != std::string::npos);
  CHECK(c.header.find("command timed out: 1 seconds elapsed running b'while true; do echo tick; sleep 0.1; done'") !=
        std::string::npos);
  CHECK(c.stdout_text.rfind("tick\n", 0) == 0);
}

TEST_CASE("an interrupt kills the process group and completes with rc -1 and no elapsed") {
  WorkerFixture w;
  w.start();
  const fs::path workdir = w.root() / "build";
  uint64_t id = w.begin("shell", w.shell_args("sleep 30 & echo $! > sleep.pid; echo started; wait"));
  REQUIRE(w.wait_for([&] { return w.rec().commands[id].stdout_text == "started\n"; }));
  w.interrupt(id);
  const auto& c = w.finish(id);
  CHECK((*c.result)["rc"] == -1);
  CHECK_FALSE((*c.result).contains("elapsed"));
  CHECK(c.header.find("\ncommand interrupted, attempting to kill\n") != std::string::npos);
  CHECK(c.header.find("process killed by signal 9\n") != std::string::npos);
  const pid_t grandchild = std::stoi(read_file(workdir / "sleep.pid"));
  CHECK(w.wait_for([&] { return process_gone(grandchild); }, std::chrono::seconds(2)));
}

TEST_CASE("interruptSignal TERM with sigtermTime lets the command's trap decide the rc") {
  WorkerFixture w;
  w.start();
  uint64_t id = w.begin("shell", w.shell_args("trap 'echo got TERM; exit 7' TERM; sleep 30 & echo ready; wait",
                                              {{"interruptSignal", "TERM"}, {"sigtermTime", 5}}));
  REQUIRE(w.wait_for([&] { return w.rec().commands[id].stdout_text == "ready\n"; }));
  w.interrupt(id);
  const auto& c = w.finish(id);
  CHECK(c.stdout_text == "ready\ngot TERM\n");
  CHECK((*c.result)["rc"] == 7);
}

TEST_CASE("initial_stdin is written to the command and then closed") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args({"cat"}, {{"initial_stdin", "line1\nline2\n"}}));
  CHECK(c.stdout_text == "line1\nline2\n");
  CHECK(c.header.find(" writing 12 bytes to stdin\n") != std::string::npos);
  CHECK((*c.result)["rc"] == 0);

  const auto& closed = w.run("shell", w.shell_args({"cat"}));
  CHECK(closed.stdout_text.empty());
  CHECK((*closed.result)["rc"] == 0);
}

TEST_CASE("a program that does not exist fails the command and the worker carries on") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args({"kiln-no-such-program-xyz", "arg"}));
  REQUIRE(c.result.has_value());
  CHECK((*c.result)["rc"] == -1);
  CHECK((*c.result)["failure"].get<std::string>().find("No such file or directory") != std::string::npos);
  CHECK(c.stderr_text.find("error in RunProcess._startCommand") != std::string::npos);

  const auto& absolute = w.run("shell", w.shell_args({"/nonexistent/kiln/prog"}));
  CHECK((*absolute.result)["rc"] == -1);
  CHECK((*absolute.result).contains("failure"));

  const auto& after = w.run("shell", w.shell_args({"echo", "still here"}));
  CHECK(after.stdout_text == "still here\n");
}

TEST_CASE("unknown commands and missing required arguments complete with a failure naming them") {
  WorkerFixture w;
  w.start();
  const auto& unknown = w.run("frobnicate", json::object());
  CHECK((*unknown.result)["rc"] == -1);
  CHECK((*unknown.result)["failure"].get<std::string>().find("frobnicate") != std::string::npos);

  const auto& missing = w.run("shell", {{"command", "true"}});
  CHECK((*missing.result)["rc"] == -1);
  CHECK((*missing.result)["failure"].get<std::string>().find("'workdir'") != std::string::npos);

  const auto& wrong_type = w.run("shell", w.shell_args(42));
  CHECK((*wrong_type.result)["rc"] == -1);
  CHECK((*wrong_type.result)["failure"].get<std::string>().find("command") != std::string::npos);
}

TEST_CASE("logfiles are watched and their new content arrives as log updates") {
  WorkerFixture w;
  w.start();
  const auto& c = w.run("shell", w.shell_args("echo one > my.log; echo two >> my.log", {{"logfiles", {{"mine", "my.log"}}}}));
  std::string data;
  for (const auto& u : c.updates) {
    if (u.contains("log")) {
      CHECK(u["log"]["name"] == "mine");
      data += u["log"]["data"].get<std::string>();
    }
  }
  CHECK(data == "one\ntwo\n");
  CHECK(c.header.find(" watching logfiles {'mine': 'my.log'}\n") != std::string::npos);
}

TEST_CASE("10 MB of output arrives complete, in order, in chunks of at most 64 KiB") {
  WorkerFixture w;
  w.start();
  std::string data(10'000'000, '\0');
  std::mt19937 random(42);
  for (auto& ch : data) ch = static_cast<char>(random());
  write_file(w.root() / "big.bin", data);
  const auto& c = w.run("shell", w.shell_args({"cat", (w.root() / "big.bin").string()}), std::chrono::seconds(20));
  CHECK((*c.result)["rc"] == 0);
  CHECK(c.stdout_text.size() == data.size());
  CHECK(c.stdout_text == data);
  CHECK(c.largest_chunk <= 64 * 1024);
}

TEST_CASE("several commands run at once") {
  WorkerFixture w;
  w.start();
  // The first only ends once the second has run: serial execution would
  // never complete it.
  uint64_t waiter = w.begin("shell", w.shell_args("while [ ! -f flag ]; do sleep 0.02; done; echo saw flag"));
  uint64_t setter = w.begin("shell", w.shell_args("touch flag"));
  const auto& s = w.finish(setter);
  const auto& c = w.finish(waiter);
  CHECK((*s.result)["rc"] == 0);
  CHECK(c.stdout_text == "saw flag\n");
}

TEST_CASE("stop ends running commands, completes them and reports the worker gone") {
  WorkerFixture w;
  w.start();
  uint64_t id = w.begin("shell", w.shell_args("sleep 30 & echo $! > sleep.pid; echo started; wait"));
  REQUIRE(w.wait_for([&] { return w.rec().commands[id].stdout_text == "started\n"; }));
  w.stop();
  const auto& c = w.rec().commands[id];
  REQUIRE(c.result.has_value());
  CHECK((*c.result)["rc"] == -1);
  CHECK(w.rec().disconnected.has_value());
  const pid_t grandchild = std::stoi(read_file(w.root() / "build" / "sleep.pid"));
  CHECK(w.wait_for([&] { return process_gone(grandchild); }, std::chrono::seconds(2)));
  CHECK_FALSE(has_update(c, "stat"));
}
