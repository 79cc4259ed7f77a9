#pragma once
// One child process driven asynchronously on an io_context: spawned in its
// own process group, stdout and stderr read as they arrive (64 KiB reads,
// never accumulated), stdin fed from a string or /dev/null, and its exit
// noticed through a pidfd (or by polling waitpid where there is none).

#include <kiln/worker/command_runner.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/types.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::worker {

struct ProcessSpec {
  // argv[0] without a '/' is looked up in env's PATH, as execvpe does.
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string workdir;
  std::optional<std::string> stdin_data;  // nullopt: stdin is /dev/null
};

struct ProcessExit {
  int exit_code = 0;
  int signal = 0;  // non-zero when a signal ended the process
};

class Process : public std::enable_shared_from_this<Process> {
 public:
  using OutputFn = std::function<void(Stream stream, std::string_view data)>;
  using ExitFn = std::function<void(const ProcessExit& exit)>;

  explicit Process(boost::asio::io_context& io);
  // Kills the process group if it is still running and reaps the child.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Spawns; 0 on success, else the errno that prevented it (ENOENT for an
  // unknown program, ...) and nothing was started. on_output runs for each
  // chunk read; on_exit once, after the child exited AND both pipes reached
  // end of file (a background grandchild holding them keeps the command
  // running, as in Buildbot) — except after signal_group(), when pipes still
  // open 2 s after the exit are abandoned.
  int start(const ProcessSpec& spec, OutputFn on_output, ExitFn on_exit);

  // Sends sig to the whole process group (grandchildren included).
  void signal_group(int sig);
  bool exited() const { return exit_.has_value(); }
  bool finished() const { return finished_; }
  pid_t pid() const { return pid_; }

 private:
  void read_pipe(int index);
  void write_stdin();
  void watch_exit();
  void poll_exit();
  void reap();
  void maybe_finish();
  void abandon_pipes();
  void close_pipes();

  boost::asio::io_context& io_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  bool signalled_ = false;
  bool finished_ = false;
  std::optional<ProcessExit> exit_;
  std::array<std::unique_ptr<boost::asio::posix::stream_descriptor>, 2> pipes_;  // stdout, stderr
  std::array<bool, 2> eof_{true, true};
  std::array<std::vector<char>, 2> buffers_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> stdin_;
  std::string stdin_data_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> pidfd_;
  std::unique_ptr<boost::asio::steady_timer> poll_timer_;
  std::unique_ptr<boost::asio::steady_timer> drain_timer_;
  OutputFn on_output_;
  ExitFn on_exit_;
};

// argv[0] resolved against PATH from env (execvpe's rules), or nullopt.
std::optional<std::string> find_program(const std::string& name, const std::map<std::string, std::string>& env);

}  // namespace kiln::worker
