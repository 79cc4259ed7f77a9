#pragma once
// Polling change sources (Buildbot's PollingChangeSource) and the helper
// they need to run external programs without blocking the engine's loop.
//
//   ProgramRunner  runs programs (argv, folder, environment, timeout) one
//                  after the other on a thread the plugin owns, capturing
//                  stdout, stderr and the exit status, and hands each result
//                  back on the loop through the host's post.
//   Poller         a ChangeSource that calls poll_once() every poll_interval
//                  seconds (and at start with poll_at_launch), never two at
//                  once, answers the host's "poll now" (web hooks, `kiln
//                  poll`), and ignores what a poll still running delivers
//                  after stop().
//
// A notification-style change source (one that is told about changes, e.g.
// by a hook it listens to) needs none of this: derive from ChangeSource,
// override start()/stop() and call add_change().
//
//   class MyPoller : public kiln::sdk::Poller {
//    public:
//     MyPoller(kiln::sdk::Context ctx, const nlohmann::json& config) : Poller(std::move(ctx), config) {}
//     void poll_once(PollDone done) override {
//       run_program({{"svn", "log", "--xml", url_}}, [this, done](const kiln::sdk::ProgramResult& r) {
//         if (!r.ok()) return done(kiln::sdk::Status(KILN_ERR_RETRY, r.describe()));
//         ... add_change(...) ...
//         done({});
//       });
//     }
//   };
//
// Its schema declares `poll_interval` (seconds) and `poll_at_launch`
// (boolean); the Poller reads them from the config. The asynchronous method
// is poll_once(), not an overload of poll(): poll() is the host's "poll
// now" entry, and component<T>() needs that name unambiguous.

#include <kiln/sdk/components.hpp>
#include <kiln/sdk/context.hpp>
#include <kiln/sdk/status.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace kiln::sdk {

// One program to run. argv[0] is looked up in PATH unless it holds a '/'.
struct Program {
  std::vector<std::string> argv;
  // Folder to run in; empty: the master's current folder.
  std::string cwd;
  // Changes to the master's environment: a value sets, nullopt removes.
  std::map<std::string, std::optional<std::string>> env;
  // Milliseconds (real time) before the program and everything it started
  // are killed; 0 for no limit.
  uint64_t timeout_ms = 0;
  // Bytes kept per stream; the rest is read and dropped (truncated = true),
  // so a chatty program cannot grow the master without bound.
  size_t max_output = size_t{64} << 20;
};

struct ProgramResult {
  int exit_code = -1;  // -1 when it did not exit normally or never ran
  int signal = 0;      // the signal that ended it, if one did
  bool timed_out = false;
  bool cancelled = false;
  bool truncated = false;
  std::string out, err;
  // Why the program did not run or was stopped ("cannot run 'git': not
  // found in PATH", "timed out after 30 s"); empty when it ran to its end.
  std::string failure;

  bool ok() const { return failure.empty() && exit_code == 0; }

  // For log messages: "exit code 128: fatal: repository '...' does not exist".
  std::string describe() const {
    std::string why = !failure.empty() ? failure
                      : signal != 0    ? "killed by signal " + std::to_string(signal)
                                       : "exit code " + std::to_string(exit_code);
    std::string detail = err.empty() ? out : err;
    while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
    if (detail.size() > 2000) detail = detail.substr(0, 2000) + "...";
    return detail.empty() ? why : why + ": " + detail;
  }
};

namespace detail {

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct SpawnFileActions {
  posix_spawn_file_actions_t actions;
  SpawnFileActions() { posix_spawn_file_actions_init(&actions); }
  ~SpawnFileActions() { posix_spawn_file_actions_destroy(&actions); }
  SpawnFileActions(const SpawnFileActions&) = delete;
  SpawnFileActions& operator=(const SpawnFileActions&) = delete;
};

struct SpawnAttributes {
  posix_spawnattr_t attr;
  SpawnAttributes() { posix_spawnattr_init(&attr); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attr); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
};

inline bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return true;
}

// PATH lookup done before fork: the child may only make async-signal-safe
// calls, and execvp's search is not guaranteed to be one.
inline std::optional<std::string> find_program(const std::string& name, const char* path_env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = path_env != nullptr ? path_env : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return std::nullopt;
}

inline std::vector<std::string> merged_environment(const std::map<std::string, std::optional<std::string>>& changes) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [name, value] : changes) {
    if (value) {
      vars[name] = *value;
    } else {
      vars.erase(name);
    }
  }
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

}  // namespace detail

// Runs programs one at a time on its own thread. Every accepted run() gets
// its done callback exactly once, on the loop thread, unless the component
// (its Context) or the runner is destroyed first. Destroying the runner
// kills the program that runs (and its process group) and joins the thread.
class ProgramRunner {
 public:
  using Done = std::function<void(const ProgramResult&)>;

  explicit ProgramRunner(Context ctx) : ctx_(std::move(ctx)) {}
  ~ProgramRunner() {
    {
      std::lock_guard lock(mutex_);
      shutting_down_ = true;
      queue_.clear();
    }
    kill_current();
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  ProgramRunner(const ProgramRunner&) = delete;
  ProgramRunner& operator=(const ProgramRunner&) = delete;

  // Queues the program. Any thread.
  Status run(Program program, Done done) {
    if (program.argv.empty()) return Status(KILN_ERR_INVALID_ARGUMENT, "run: empty argv");
    return enqueue(Job{std::move(program), std::move(done), {}});
  }

  // Runs `work` on the runner's thread, then `done` on the loop: for other
  // work that must not block the loop (writing a file, hashing one).
  Status call(std::function<void()> work, std::function<void()> done) {
    return enqueue(Job{{}, {}, [work = std::move(work), done = std::move(done), ctx = ctx_]() mutable {
                         work();
                         if (done) ctx.post(std::move(done));
                       }});
  }

  // Kills the program running now and drops the queued ones; each gets its
  // done with cancelled = true. Any thread.
  void cancel() {
    std::deque<Job> dropped;
    {
      std::lock_guard lock(mutex_);
      dropped.swap(queue_);
    }
    kill_current();
    for (auto& job : dropped) {
      if (!job.done) continue;
      ProgramResult r;
      r.cancelled = true;
      r.failure = "cancelled";
      deliver(std::move(job.done), std::move(r));
    }
  }

 private:
  struct Job {
    Program program;
    Done done;
    std::function<void()> task;  // set for call()
  };

  Status enqueue(Job job) {
    std::lock_guard lock(mutex_);
    if (shutting_down_) return Status(KILN_ERR_CANCELLED, "the program runner is stopping");
    queue_.push_back(std::move(job));
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    cv_.notify_one();
    return {};
  }

  void deliver(Done done, ProgramResult result) {
    ctx_.post([done = std::move(done), result = std::move(result)] { done(result); });
  }

  // SIGTERM first: git and most tools remove their lock files on it, where
  // SIGKILL would leave a mirror that refuses the next fetch. The run loop
  // sends SIGKILL when the group has not gone a second later.
  void kill_current() {
    std::lock_guard lock(mutex_);
    cancel_requested_ = true;
    terminate_locked();
  }
  void terminate_locked() {
    if (current_pgid_ <= 0 || term_sent_) return;
    ::kill(-current_pgid_, SIGTERM);
    term_sent_ = true;
    term_sent_at_ = std::chrono::steady_clock::now();
  }

  void loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return shutting_down_ || !queue_.empty(); });
        if (shutting_down_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        cancel_requested_ = false;
      }
      if (job.task) {
        try {
          job.task();
        } catch (...) {
          ctx_.error("a background task threw");
        }
        continue;
      }
      ProgramResult result = execute(job.program);
      if (job.done) deliver(std::move(job.done), std::move(result));
    }
  }

  static std::string seconds_text(uint64_t ms) {
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
    return std::to_string(ms) + " ms";
  }

  ProgramResult execute(const Program& program) {
    ProgramResult result;
    const char* path_env = nullptr;
    std::vector<std::string> env_strings = detail::merged_environment(program.env);
    for (const auto& e : env_strings) {
      if (e.rfind("PATH=", 0) == 0) path_env = e.c_str() + 5;
    }
    auto exe = detail::find_program(program.argv[0], path_env);
    if (!exe) {
      result.failure = "cannot run '" + program.argv[0] + "': not found in PATH";
      return result;
    }
    std::vector<char*> argv, envp;
    for (const auto& a : program.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    detail::Fd out_r, out_w, err_r, err_w;
    if (!detail::make_pipe(out_r, out_w) || !detail::make_pipe(err_r, err_w)) {
      result.failure = "cannot create pipes: " + std::string(std::strerror(errno));
      return result;
    }
    // posix_spawn, not fork: the child runs no code of ours before exec,
    // and glibc resets every signal handler in it. A forked child that is
    // sent SIGTERM before its exec would otherwise run the parent's handler
    // (Asio's or Catch2's) in a copy of a multi-threaded process, where it
    // can deadlock or tell the parent it was itself asked to stop.
    detail::SpawnFileActions actions;
    posix_spawn_file_actions_addopen(&actions.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions.actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions.actions, err_w.get(), 2);
    if (!program.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions.actions, program.cwd.c_str());
    detail::SpawnAttributes attributes;
    // Its own process group, so a timeout kills what it started too (git
    // runs ssh, helpers, ...); an empty mask and default dispositions.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    posix_spawnattr_setflags(&attributes.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attributes.attr, 0);
    posix_spawnattr_setsigmask(&attributes.attr, &none);
    posix_spawnattr_setsigdefault(&attributes.attr, &defaults);
    const auto started = std::chrono::steady_clock::now();
    pid_t pid = -1;
    const int spawn_error = ::posix_spawn(&pid, exe->c_str(), &actions.actions, &attributes.attr, argv.data(), envp.data());
    if (spawn_error != 0) {
      std::error_code ignored;
      result.failure = !program.cwd.empty() && !std::filesystem::is_directory(program.cwd, ignored)
                           ? "cannot enter folder '" + program.cwd + "': " + std::strerror(spawn_error)
                           : "cannot run '" + program.argv[0] + "': " + std::strerror(spawn_error);
      return result;
    }
    {
      std::lock_guard lock(mutex_);
      current_pgid_ = pid;
      term_sent_ = false;
      if (cancel_requested_ || shutting_down_) terminate_locked();
    }
    out_w.reset();
    err_w.reset();

    ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK);
    bool out_open = true, err_open = true, exited = false;
    int status = 0;
    auto drain = [&](detail::Fd& fd, std::string& into, bool& open) {
      char buf[16384];
      for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n > 0) {
          const size_t room = into.size() < program.max_output ? program.max_output - into.size() : 0;
          const size_t keep = std::min(static_cast<size_t>(n), room);
          if (keep < static_cast<size_t>(n)) result.truncated = true;
          into.append(buf, keep);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) open = false;
        return;  // EOF or nothing more for now
      }
    };
    while (!exited) {
      const auto now = std::chrono::steady_clock::now();
      const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
      {
        std::lock_guard lock(mutex_);
        if (program.timeout_ms > 0 && static_cast<uint64_t>(elapsed) >= program.timeout_ms &&
            !result.timed_out) {
          result.timed_out = true;
          terminate_locked();
        }
        if (term_sent_ && now - term_sent_at_ > std::chrono::seconds(1)) ::kill(-pid, SIGKILL);
      }
      pollfd fds[2];
      nfds_t count = 0;
      if (out_open) fds[count++] = {out_r.get(), POLLIN, 0};
      if (err_open) fds[count++] = {err_r.get(), POLLIN, 0};
      if (count > 0) {
        ::poll(fds, count, 50);
        if (out_open) drain(out_r, result.out, out_open);
        if (err_open) drain(err_r, result.err, err_open);
      } else {
        ::usleep(20000);  // pipes closed: only waiting for the exit status
      }
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid || (w < 0 && errno != EINTR)) exited = true;
    }
    // What the program wrote before it exited; a process it left behind
    // holding the pipes does not keep us waiting.
    if (out_open) drain(out_r, result.out, out_open);
    if (err_open) drain(err_r, result.err, err_open);
    bool cancelled = false;
    {
      std::lock_guard lock(mutex_);
      current_pgid_ = 0;
      cancelled = cancel_requested_ || shutting_down_;
    }
    if (WIFEXITED(status)) {
      result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      result.signal = WTERMSIG(status);
    }
    if (result.timed_out) {
      result.failure = "timed out after " + seconds_text(program.timeout_ms);
    } else if (cancelled && result.failure.empty()) {
      result.cancelled = true;
      result.failure = "cancelled";
    }
    return result;
  }

  Context ctx_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::thread thread_;
  bool shutting_down_ = false;
  bool cancel_requested_ = false;
  pid_t current_pgid_ = 0;
  bool term_sent_ = false;
  std::chrono::steady_clock::time_point term_sent_at_;
};

// 16 hex digits (FNV-1a 64) naming a thing (a repository URL) in file
// names: stable across builds, machines and releases.
inline std::string stable_hash_hex(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static const char kDigits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<size_t>(i)] = kDigits[h & 0xF];
  return out;
}

// Buildbot's PollingChangeSource. The derived class implements
// poll_once(done) and calls done(status) exactly once when the poll is over
// (a failed status is logged as an error; the next poll runs as planned).
class Poller : public ChangeSource {
 public:
  using PollDone = std::function<void(const Status&)>;

  // default_interval_s applies when the config has no `poll_interval`.
  Poller(Context ctx, const nlohmann::json& config, double default_interval_s = 600)
      : ChangeSource(std::move(ctx), config) {
    double seconds = default_interval_s;
    if (auto it = config.find("poll_interval"); it != config.end() && it->is_number()) {
      seconds = it->get<double>();
    }
    interval_ms_ = seconds > 0 ? static_cast<uint64_t>(seconds * 1000.0) : 0;
    poll_at_launch_ = config.value("poll_at_launch", false);
  }

  // A derived class that overrides start() or stop() calls these too.
  Status start() override {
    stopped_ = false;
    if (interval_ms_ > 0) {
      auto timer = context().start_timer(poll_at_launch_ ? 0 : interval_ms_, interval_ms_,
                                         [this] { begin_poll(); });
      if (!timer) return timer.status();
      timer_ = *timer;
    } else if (poll_at_launch_) {
      auto timer = context().start_timer(0, [this] { begin_poll(); });
      if (!timer) return timer.status();
    }
    return {};
  }
  void stop() override {
    stopped_ = true;
    if (timer_ != 0) context().cancel_timer(timer_);
    timer_ = 0;
    ++generation_;  // a poll still running finishes into the void
    polling_ = false;
    again_ = false;
    if (runner_) runner_->cancel();
  }

  // The host's "poll now" (a web hook, `kiln poll`). A poll already running
  // is not interrupted; one more follows it, since the news that made
  // someone force a poll may have arrived after that poll looked.
  Status poll() final {
    if (stopped_) return Status(KILN_ERR_REFUSED, "the change source is stopped");
    if (polling_) {
      again_ = true;
      context().debug("a poll is running; polling again when it ends");
      return {};
    }
    begin_poll();
    return {};
  }

 protected:
  virtual void poll_once(PollDone done) = 0;

  bool stopped() const { return stopped_; }
  bool polling() const { return polling_; }
  uint64_t poll_interval_ms() const { return interval_ms_; }

  // Runs a program on the component's own thread. done runs on the loop
  // with the result, unless the poller was stopped meanwhile (then never).
  Status run_program(Program program, std::function<void(const ProgramResult&)> done) {
    if (!runner_) runner_ = std::make_unique<ProgramRunner>(context());
    return runner_->run(std::move(program),
                        [this, gen = generation_, done = std::move(done)](const ProgramResult& r) {
                          if (gen != generation_ || stopped_) return;
                          done(r);
                        });
  }
  // run_program for callers that want one path: a program that cannot even
  // be queued reaches `done` at once as a failed result saying why.
  void run_or_fail(Program program, std::function<void(const ProgramResult&)> done) {
    Status started = run_program(std::move(program), done);
    if (!started.ok()) {
      ProgramResult failed;
      failed.failure = started.message();
      done(failed);
    }
  }
  // Where the poller keeps its own files (a mirror of the repository):
  // `configured` when given (relative to the master's folder unless
  // absolute), else <prefix>-<stable_hash_hex(key)> in the master's folder.
  std::string master_folder(const std::string& configured, const std::string& prefix, std::string_view key) const {
    std::string master_dir = ".";
    if (auto facts = context().info(); facts.ok() && facts->is_object()) {
      if (auto it = facts->find("master_dir"); it != facts->end() && it->is_string()) master_dir = it->get<std::string>();
    }
    if (!configured.empty()) return configured[0] == '/' ? configured : master_dir + "/" + configured;
    return master_dir + "/" + prefix + "-" + stable_hash_hex(key);
  }
  ProgramRunner& runner() {
    if (!runner_) runner_ = std::make_unique<ProgramRunner>(context());
    return *runner_;
  }

 private:
  void begin_poll() {
    if (stopped_) return;
    if (polling_) {
      context().debug("skipping this poll: the previous one is still running");
      return;
    }
    polling_ = true;
    const uint64_t gen = ++generation_;
    auto answered = std::make_shared<bool>(false);
    PollDone done = [this, gen, answered](const Status& status) {
      if (*answered) return;
      *answered = true;
      if (gen != generation_ || stopped_) return;
      polling_ = false;
      if (!status.ok()) context().error("poll failed: " + status.message());
      if (again_) {
        again_ = false;
        // Posted, not called: done may be running inside poll_once.
        context().post([this] { begin_poll(); });
      }
    };
    try {
      poll_once(done);
    } catch (const std::exception& e) {
      done(Status(KILN_ERR_INTERNAL, e.what()));
    }
  }

  uint64_t interval_ms_ = 0;
  bool poll_at_launch_ = false;
  bool stopped_ = true;
  bool polling_ = false;
  bool again_ = false;
  uint64_t timer_ = 0;
  uint64_t generation_ = 0;
  // Last member: destroyed first, so its thread is joined before anything
  // its callbacks could touch goes away.
  std::unique_ptr<ProgramRunner> runner_;
};

}  // namespace kiln::sdk
