#pragma once
// Buildbot's worker command set (protocol reference §4: shell, stat, glob,
// listdir, mkdir, rmdir, rmfile, cpdir, upload_file, upload_directory,
// download_file) run on a boost::asio::io_context, reporting through a
// CommandSink.
//
// Self-contained on purpose: this library knows nothing of the plugin ABI,
// the SDK or the core. The local-worker plugin and the kiln-worker
// executable (Kiln's remote worker) both link it, so a step sees the same
// behaviour whichever worker type runs it.
//
// Threading: everything a CommandRunner does happens on the io_context's
// thread(s), and every CommandSink function is called there. The sink may
// block briefly (back-pressure, a transfer waiting for the master), which
// stalls the other commands on the same io_context while it does.

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::worker {

enum class Stream { kStdout, kStderr, kHeader };

struct CommandResult {
  // 0 success; shell: exit code, -1 when killed; fs commands: errno;
  // transfers: 0 or 1. -1 with `failure` when the command could not run.
  int rc = 0;
  // Seconds the command ran; absent after an interrupt, as in Buildbot.
  std::optional<double> elapsed;
  std::string failure;  // empty when the command ran
};

// Where a command's progress goes. All calls on the io_context's thread.
class CommandSink {
 public:
  virtual ~CommandSink() = default;
  // Raw output bytes as they arrive, in chunks of at most 64 KiB; lines are
  // not split or joined here.
  virtual void on_output(Stream stream, std::string_view data) = 0;
  // {"stat": [10 ints]}, {"files": [...]}, {"log": {"name", "data"}},
  // {"utime": [atime, mtime]} (upload_file with keepstamp).
  virtual void on_update(const nlohmann::json& update) = 0;
  // Exactly once, after every other call.
  virtual void on_complete(const CommandResult& result) = 0;
  // Uploads: hands one block to the master. false means the master refused
  // it (or went away) and the transfer stops.
  virtual bool transfer_write(std::string_view data) = 0;
  // Downloads: at most max_len bytes from the master; empty at end of file;
  // nullopt when the master failed to read.
  virtual std::optional<std::string> transfer_read(size_t max_len) = 0;
};

// What every command of one worker shares.
struct WorkerSettings {
  // Relative paths in arguments, and rmdir/cpdir's processes, use it.
  std::string basedir;
  // The environment commands start from (the worker's own, plus extras);
  // a shell command's `env` is merged over it.
  std::map<std::string, std::string> environ;
  // Runs string commands: <shell> -c <command>.
  std::string shell = "/bin/sh";
  // When set, a transfer (upload_file, upload_directory, download_file)
  // whose `path` resolves outside basedir (through `..` or a symlink) is
  // refused: a worker on another machine does not let its master read or
  // write files anywhere it likes.
  bool confine_transfers = false;
};

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  CommandRunner(const CommandRunner&) = delete;
  CommandRunner& operator=(const CommandRunner&) = delete;

  // Both are callable from any thread: they post onto the io_context. The
  // owner keeps the runner alive until the sink's on_complete.
  void start();
  // Kills a running process (whole process group) or stops a transfer at
  // its next block; on_complete follows. No effect once complete.
  void interrupt(std::string reason);

  const std::string& name() const { return name_; }

 protected:
  CommandRunner(boost::asio::io_context& io, std::string name, std::shared_ptr<CommandSink> sink);

  // On the io thread.
  virtual void run() = 0;
  virtual void on_interrupt(const std::string& reason) = 0;

  boost::asio::io_context& io() { return io_; }
  CommandSink& sink() { return *sink_; }
  bool completed() const { return completed_; }
  // Calls on_complete once; later calls are ignored.
  void complete(CommandResult result);
  void complete_failure(std::string failure);
  void header(std::string_view text) { sink_->on_output(Stream::kHeader, text); }
  void stderr_text(std::string_view text) { sink_->on_output(Stream::kStderr, text); }
  double seconds_since_start() const;

  // shared_from_this for the derived classes' asynchronous handlers.
  std::shared_ptr<CommandRunner> self() { return self_.lock(); }

 private:
  friend std::shared_ptr<CommandRunner> make_command(boost::asio::io_context&, const WorkerSettings&,
                                                     std::string_view, nlohmann::json,
                                                     std::shared_ptr<CommandSink>);
  boost::asio::io_context& io_;
  std::string name_;
  std::shared_ptr<CommandSink> sink_;
  std::weak_ptr<CommandRunner> self_;
  bool started_ = false;
  bool completed_ = false;
  double start_time_ = 0;
};

// A runner for the named command (aliases uploadFile, uploadDirectory,
// downloadFile accepted). An unknown name, or a missing required argument,
// gives a runner that completes with {rc -1, failure naming it}.
std::shared_ptr<CommandRunner> make_command(boost::asio::io_context& io, const WorkerSettings& settings,
                                            std::string_view name, nlohmann::json args,
                                            std::shared_ptr<CommandSink> sink);

// When settings.confine_transfers is set and `name` is a transfer whose
// `path` argument lies outside the basedir: why it is refused.
std::optional<std::string> transfer_escape(const WorkerSettings& settings, std::string_view name,
                                           const nlohmann::json& args);

// {"shell": "3.7", ...}: the worker_commands a worker announces.
nlohmann::json command_versions();

// The environment of the current process.
std::map<std::string, std::string> process_environment();

}  // namespace kiln::worker
