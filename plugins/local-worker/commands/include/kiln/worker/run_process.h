#pragma once
// Buildbot's RunProcess: one child process with the worker's header lines
// (command, " in dir ...", argv, environment, elapsedTime=...), the
// output-silence `timeout` and total `maxTime` with their kill messages,
// interruptSignal/sigtermTime kill escalation on the whole process group,
// and `logfiles` polling. shell runs one; rmdir and cpdir run theirs.

#include <kiln/worker/process.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::worker {

struct RunProcessOptions {
  // A string runs as <shell> -c <string>; otherwise argv.
  std::optional<std::string> command_string;
  std::vector<std::string> argv;
  std::string shell = "/bin/sh";
  std::string workdir;
  std::map<std::string, std::string> env;  // complete, already merged
  bool want_stdout = true;
  bool want_stderr = true;
  // Seconds as given (kept as JSON so headers print them as Python would);
  // null for none.
  nlohmann::json timeout;
  nlohmann::json max_time;
  nlohmann::json sigterm_time;
  int interrupt_signal = 9;  // SIGKILL
  bool log_environ = true;
  std::optional<std::string> initial_stdin;
  nlohmann::json logfiles = nlohmann::json::object();  // name -> file or {filename, follow}
};

class RunProcess : public std::enable_shared_from_this<RunProcess> {
 public:
  struct Outcome {
    int rc = -1;
    bool interrupted = false;  // interrupt() ended it (Buildbot then sends no elapsed)
    std::string failure;       // the process could not be started
  };
  using OutputFn = std::function<void(Stream, std::string_view)>;
  using UpdateFn = std::function<void(const nlohmann::json&)>;
  using DoneFn = std::function<void(const Outcome&)>;

  RunProcess(boost::asio::io_context& io, RunProcessOptions options, OutputFn on_output, UpdateFn on_update,
             DoneFn on_done);
  ~RunProcess();
  RunProcess(const RunProcess&) = delete;
  RunProcess& operator=(const RunProcess&) = delete;

  // On the io thread. on_done is called exactly once, possibly before
  // start() returns (a program that cannot be spawned).
  void start();
  // "command interrupted": kill as configured.
  void interrupt();

 private:
  struct LogFile {
    std::string name, path;
    bool follow = false;
    bool started = false;
    uint64_t offset = 0;
    std::optional<std::tuple<int64_t, int64_t, int64_t>> initial;  // ctime, mtime, size
  };

  void kill(const std::string& message);
  void on_exit(const ProcessExit& exit);
  void arm_timeout();
  void escalate();
  void give_up();
  void poll_logfiles();
  void schedule_logfile_poll();
  void finish(Outcome outcome);
  double elapsed() const;

  boost::asio::io_context& io_;
  RunProcessOptions options_;
  OutputFn on_output_;
  UpdateFn on_update_;
  DoneFn on_done_;
  std::shared_ptr<Process> process_;
  std::string fake_command_;  // Python repr used in kill messages
  std::chrono::steady_clock::time_point started_, last_output_;
  std::unique_ptr<boost::asio::steady_timer> timeout_timer_, max_time_timer_, sigterm_timer_, backup_timer_,
      logfile_timer_;
  std::vector<LogFile> logfiles_;
  bool killed_ = false;
  bool interrupted_ = false;
  bool done_ = false;
  int backup_stage_ = 0;
};

// Signal number for Buildbot's interruptSignal names ("KILL", "TERM", ...);
// SIGKILL for anything unknown.
int signal_from_name(const std::string& name);

}  // namespace kiln::worker
