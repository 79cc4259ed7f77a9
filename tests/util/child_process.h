#pragma once
// A real server program a test runs as a child process (an SMTP sink, an
// IRC server, an HTTP receiver): started with its output in a file, its
// exit noticed, and ended (SIGTERM, then waited for) by stop() or the
// destructor, so no test leaves one behind.

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

namespace kiln::testing {

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // args[0] is the program's path; stdout and stderr append to `output`.
  void start(const std::vector<std::string>& args, const std::filesystem::path& output) {
    stop();
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    const int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::close_range(3, ~0u, 0);  // not the test's sockets
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    ::close(in);
    REQUIRE(pid_ > 0);
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
  bool exited() {
    if (pid_ <= 0) return true;
    if (::waitpid(pid_, nullptr, WNOHANG) == 0) return false;
    pid_ = -1;
    return true;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace kiln::testing
