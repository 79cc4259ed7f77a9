#pragma once
// What the integration tests need to drive the real `kiln` executable as a
// user would: run a program with an argument vector (no shell, so temp paths
// are never re-parsed), capture its exit code, stdout and stderr separately
// under a time limit; a throw-away master folder that never outlives its
// test, even when an assertion fails half-way; and polling for what happens
// asynchronously in a running master.

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace kiln::integration {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Upper bound for anything asynchronous (a build finishing, a master
// stopping); generous for a loaded 2-core machine, never reached when
// things work.
inline constexpr std::chrono::milliseconds kPatience = 20s;

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  bool timed_out = false;
  std::string out;
  std::string err;

  // For INFO(): everything a failing assertion should show.
  std::string describe() const;
};

// Runs argv[0] (looked up in PATH when it has no '/') in `cwd` (or the
// current folder), killing it with SIGKILL after `timeout`.
RunResult run_process(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = kPatience, const fs::path& cwd = {});

// Runs the `kiln` under test (KILN_BINARY) with these arguments.
RunResult run_kiln(const std::vector<std::string>& args,
                   std::chrono::milliseconds timeout = kPatience);

// Calls `ready` every 25 ms until it is true or `limit` passed; returns
// whether it became true.
bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit = kPatience);

// Running, not a zombie.
bool process_alive(pid_t pid);
// Not even a zombie: the pid is free. A killed daemon is reaped by init,
// which may take a moment; until then `kill(pid, 0)` still succeeds.
bool process_gone(pid_t pid);

// A fresh master folder (mkdtemp under /tmp, short enough for the control
// socket's path). On destruction: `kiln stop` when a kiln.pid names a live
// process, SIGKILL if it is still alive after that, SIGKILL to anything
// left running with its working folder inside (build commands orphaned by a
// killed master), then the folder is removed.
class MasterDir {
 public:
  MasterDir();
  ~MasterDir();
  MasterDir(const MasterDir&) = delete;
  MasterDir& operator=(const MasterDir&) = delete;

  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path file(const std::string& name) const { return path_ / name; }

  void write_config(const std::string& yaml) const;
  // The pid in kiln.pid, if the file exists and holds one.
  std::optional<pid_t> pid() const;

  // `kiln start DIR` (daemon mode).
  RunResult start() const;
  RunResult stop() const;

  // `kiln data DIR PATH` parsed; a discarded JSON value when the command
  // fails or prints something that is not JSON.
  nlohmann::json data(const std::string& data_path) const;
  // Polls `kiln data DIR PATH` until `accept` is true for its answer;
  // returns the accepted answer, or nullopt after kPatience.
  std::optional<nlohmann::json> wait_for_data(
      const std::string& data_path, const std::function<bool(const nlohmann::json&)>& accept) const;

 private:
  void kill_leftovers() const;

  fs::path path_;
};

// The build request id in `kiln force` output ("... request 7 on builder
// 'b'"), if there is exactly one.
std::optional<int64_t> forced_request_id(const std::string& force_output);

// A master.yaml with one local worker (`max_builds`), a force scheduler
// named `force` and one builder `name` whose single shell step runs
// `command` (a YAML flow value: a list or a quoted string).
std::string one_builder_config(const std::string& name, const std::string& command,
                               int max_builds = 2);

// What a build's commands wrote to stdout, line by line (every step, every
// log), read with `kiln data DIR logs/N/contents`. Header lines (which
// repeat the command itself) and stderr are left out.
std::string build_stdout(const MasterDir& master, int64_t buildid);

}  // namespace kiln::integration
