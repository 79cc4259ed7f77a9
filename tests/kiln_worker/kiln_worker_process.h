#pragma once
// The built kiln-worker program run as a test's child process, pointed at
// an in-process master's buildbot-worker port on 127.0.0.1, with short
// reconnect delays and its log in <root>/<name>.log.

#include "util/child_process.h"

#include "store/temp_dir.h"

#include <filesystem>
#include <string>
#include <vector>

namespace kiln_worker_test {

namespace fs = std::filesystem;

class KilnWorkerProcess {
 public:
  KilnWorkerProcess(const fs::path& root, std::string name, std::string password, uint16_t port,
                    std::vector<std::string> extra_flags = {})
      : root_(root),
        basedir_(root / name),
        name_(std::move(name)),
        password_(std::move(password)),
        port_(port),
        extra_(std::move(extra_flags)) {
    fs::create_directories(root / "home");
  }
  ~KilnWorkerProcess() { stop(); }
  KilnWorkerProcess(const KilnWorkerProcess&) = delete;
  KilnWorkerProcess& operator=(const KilnWorkerProcess&) = delete;

  const fs::path& basedir() const { return basedir_; }

  void start() {
    std::vector<std::string> args = {KILN_WORKER_BINARY, "--master", "127.0.0.1:" + std::to_string(port_),
                                     "--name", name_, "--password", password_, "--basedir", basedir_.string(),
                                     "--reconnect-min", "0.05", "--reconnect-max", "0.5"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=" + (root_ / "home").string(), "LANG=C.UTF-8"};
    pid_ = kiln::testing::spawn_process(args, env, root_ / (name_ + ".log"), root_);
  }
  void kill_now() { kiln::testing::kill_process(pid_); }
  // The wait status, or -1 when it had to be killed.
  int stop() { return kiln::testing::stop_process(pid_); }
  bool exited(int* status = nullptr) { return kiln::testing::process_exited(pid_, status); }
  std::string log() const { return kiln::testing::read_file(root_ / (name_ + ".log")); }

 private:
  fs::path root_, basedir_;
  std::string name_, password_;
  uint16_t port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

struct Ended {
  int status = -1;  // the wait status
  std::string output;
};

// Runs kiln-worker with exactly `args` until it exits by itself (within
// 20 s, else the test fails); for settings errors and giving up.
inline Ended run_to_end(const fs::path& root, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {KILN_WORKER_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  const fs::path output = root / "run.log";
  pid_t pid = kiln::testing::spawn_process(argv, {"PATH=/usr/bin:/bin"}, output, root);
  Ended ended;
  for (int i = 0; i < 2000 && !kiln::testing::process_exited(pid, &ended.status); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const bool ended_by_itself = pid <= 0;
  kiln::testing::kill_process(pid);
  ended.output = kiln::testing::read_file(output);
  INFO(ended.output);
  REQUIRE(ended_by_itself);
  return ended;
}

}  // namespace kiln_worker_test
