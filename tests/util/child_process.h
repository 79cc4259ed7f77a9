#pragma once
// Real programs tests run as child processes: workers (a Buildbot worker,
// kiln-worker) and servers (an SMTP sink, an IRC server, an HTTP receiver).
// Started with their own argv (and environment, folder), stdin from
// /dev/null and stdout+stderr into a file; stopped with SIGTERM or SIGKILL
// and reaped. ChildProcess ends its program when it goes, so no test leaves
// one behind.

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace kiln::testing {

struct SpawnOptions {
  std::vector<std::string> env;  // empty: the test's own environment
  std::filesystem::path dir;     // empty: the test's folder
  bool append = false;           // to `output`, instead of truncating it
};

// args[0] is the program's path.
inline pid_t spawn_process(const std::vector<std::string>& args, const std::filesystem::path& output,
                           const SpawnOptions& options = {}) {
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : options.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char** child_env = options.env.empty() ? environ : envp.data();
  const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (options.append ? O_APPEND : O_TRUNC), 0644);
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const std::string where = options.dir.string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0u, 0);  // not the test's (or the master's) sockets
    if (!where.empty() && ::chdir(where.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), child_env);
    ::_exit(127);
  }
  ::close(out);
  ::close(in);
  REQUIRE(pid > 0);
  return pid;
}

// The form the worker tests use: their own environment and folder.
inline pid_t spawn_process(const std::vector<std::string>& args, const std::vector<std::string>& env,
                           const std::filesystem::path& output, const std::filesystem::path& dir) {
  return spawn_process(args, output, SpawnOptions{env, dir, false});
}

// True once `pid` ended (reaped here, its wait status in *status); pid
// becomes -1.
inline bool process_exited(pid_t& pid, int* status = nullptr) {
  if (pid <= 0) return true;
  int st = 0;
  const pid_t w = ::waitpid(pid, &st, WNOHANG);
  if (w == 0) return false;
  if (status) *status = st;
  pid = -1;
  return true;
}

inline void kill_process(pid_t& pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

// SIGTERM, as an operator stops a program; SIGKILL if it lingers past ~3 s.
// The wait status when it ended by itself.
inline int stop_process(pid_t& pid) {
  if (pid <= 0) return 0;
  ::kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (process_exited(pid, &status)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill_process(pid);
  return -1;
}

// A server program for the length of a test.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // args[0] is the program's path; stdout and stderr append to `output`.
  void start(const std::vector<std::string>& args, const std::filesystem::path& output) {
    stop();
    SpawnOptions options;
    options.append = true;
    pid_ = spawn_process(args, output, options);
  }

  // Waits (in real time, at most 30 s) until `ready()` holds, failing the
  // test if the program ends first; `log()` says why in the failure.
  void wait_until(const std::function<bool()>& ready, const std::function<std::string()>& log) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!ready()) {
      INFO(log());
      REQUIRE(!exited());
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Whether it has ended (reaped here).
  bool exited() { return process_exited(pid_); }

  void stop() { stop_process(pid_); }

 private:
  pid_t pid_ = -1;
};

}  // namespace kiln::testing
