#pragma once
// Real programs run by tests as child processes (a Buildbot worker,
// kiln-worker): started with their own argv and environment, stdin from
// /dev/null and stdout+stderr into a file, stopped with SIGTERM or SIGKILL
// and reaped.

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::testing {

// args[0] is the program's path; the child runs in `dir`.
inline pid_t spawn_process(const std::vector<std::string>& args, const std::vector<std::string>& env,
                           const std::filesystem::path& output, const std::filesystem::path& dir) {
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const std::string where = dir.string();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::close_range(3, ~0u, 0);  // not the master's sockets
    if (::chdir(where.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out);
  ::close(in);
  REQUIRE(pid > 0);
  return pid;
}

// True once `pid` ended (reaped here, its wait status in *status); pid
// becomes -1.
inline bool process_exited(pid_t& pid, int* status = nullptr) {
  if (pid <= 0) return true;
  int st = 0;
  if (::waitpid(pid, &st, WNOHANG) != pid) return false;
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

}  // namespace kiln::testing
