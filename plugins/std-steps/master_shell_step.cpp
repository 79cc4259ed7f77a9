#include "steps.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

extern char** environ;

namespace kiln::std_steps {

const char* const kMasterShellSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["command"],
  "properties": {
    "command": {"type": ["string", "array"], "items": {"type": "string"},
      "description": "Run on the MASTER: a string run with /bin/sh -c, or an argv list (argv[0] looked up in PATH). It runs in the step's workdir taken relative to the master folder (default: the master folder), with the master's environment plus the step's env."}
  }
})json";

namespace {

int signal_number(const json& name) {
  static const std::map<std::string, int> kSignals = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},
                                                      {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                                                      {"USR2", SIGUSR2}};
  if (!name.is_string()) return SIGKILL;
  auto it = kSignals.find(name.get<std::string>());
  return it == kSignals.end() ? SIGKILL : it->second;
}

// Closes what it holds; the pipes and the spawn structures are RAII too, so
// every early return of run() leaks nothing.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(std::exchange(o.fd, -1));
    return *this;
  }
  ~Fd() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
  int release() { return std::exchange(fd, -1); }
};

bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

struct SpawnActions {
  posix_spawn_file_actions_t actions;
  SpawnActions() { posix_spawn_file_actions_init(&actions); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
};
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { posix_spawnattr_init(&attr); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
};

// The master's environment with the step's env on top (a list value is
// joined with ':', as Buildbot does for PATH-like variables).
std::vector<std::string> environment(const json& env) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string_view::npos) vars[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  for (const auto& [key, value] : env.items()) {
    if (value.is_string()) {
      vars[key] = value.get<std::string>();
    } else if (value.is_array()) {
      std::string joined;
      for (const auto& part : value) {
        if (!part.is_string()) continue;
        if (!joined.empty()) joined += ':';
        joined += part.get<std::string>();
      }
      vars[key] = joined;
    } else if (value.is_null()) {
      vars.erase(key);
    }
  }
  std::vector<std::string> out;
  for (const auto& [key, value] : vars) out.push_back(key + "=" + value);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

MasterShellStep::MasterShellStep(sdk::Context ctx, const json& config)
    : Step(std::move(ctx), config), info_(RunInfo::read(context())) {
  interrupt_signal_ = signal_number(info_.common_value("interrupt_signal"));
}

MasterShellStep::~MasterShellStep() {
  stopping_ = true;
  {
    std::lock_guard lock(mutex_);
    if (wake_write_ >= 0) {
      const char byte = 'x';
      [[maybe_unused]] auto n = ::write(wake_write_, &byte, 1);
    }
  }
  if (thread_.joinable()) thread_.join();
  // Closed only now: a write to a pipe without a reader raises SIGPIPE.
  if (wake_write_ >= 0) ::close(wake_write_);
  if (wake_read_ >= 0) ::close(wake_read_);
}

sdk::Status MasterShellStep::validate(const json& config) { return check_shell_command(config.value("command", json())); }

sdk::Status MasterShellStep::run() {
  const json& command = config().at("command");
  std::vector<std::string> argv;
  if (command.is_string()) {
    argv = {"/bin/sh", "-c", command.get<std::string>()};
  } else {
    for (const auto& word : command) argv.push_back(word.get<std::string>());
  }

  std::filesystem::path dir = info_.info.value("master_dir", std::string());
  if (dir.empty()) dir = std::filesystem::current_path();
  if (const json workdir = info_.common_value("workdir"); workdir.is_string()) dir /= workdir.get<std::string>();

  auto log = stdio_log();
  if (!log) return log.status();
  stdio_ = *log;
  std::string argv_text;
  for (const auto& word : argv) argv_text += (argv_text.empty() ? "" : " ") + word;
  append_log(stdio_, argv_text + "\n\n** RUNNING ON BUILDMASTER **\n in dir " + dir.string() + "\n",
             KILN_STREAM_HEADER);
  set_summary("Running");

  Fd out_read, out_write, err_read, err_write, wake_read, wake_write;
  if (!make_pipe(out_read, out_write) || !make_pipe(err_read, err_write) || !make_pipe(wake_read, wake_write)) {
    return sdk::Status(KILN_ERR_INTERNAL, std::string("cannot make pipes: ") + std::strerror(errno));
  }
  SpawnActions actions;
  posix_spawn_file_actions_addopen(&actions.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions.actions, out_write.fd, 1);
  posix_spawn_file_actions_adddup2(&actions.actions, err_write.fd, 2);
  posix_spawn_file_actions_addchdir_np(&actions.actions, dir.c_str());
  SpawnAttr attr;
  // Its own process group, so an interrupt reaches the children of sh too;
  // default signal handling and mask whatever the master uses.
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD}) sigaddset(&defaults, sig);
  posix_spawnattr_setflags(&attr.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr.attr, 0);
  posix_spawnattr_setsigmask(&attr.attr, &none);
  posix_spawnattr_setsigdefault(&attr.attr, &defaults);

  std::vector<std::string> env = environment(info_.env());
  std::vector<char*> c_argv = c_strings(argv);
  std::vector<char*> c_env = c_strings(env);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, c_argv[0], &actions.actions, &attr.attr, c_argv.data(), c_env.data());
  if (rc != 0) {
    append_log(stdio_, "cannot run " + argv[0] + " in " + dir.string() + ": " + std::strerror(rc) + "\n",
               KILN_STREAM_HEADER);
    return finish(KILN_FAILURE, "failed to start");
  }
  out_write.reset();  // the child has them; EOF comes when it closes them
  err_write.reset();
  {
    std::lock_guard lock(mutex_);
    pid_ = pid;
    wake_write_ = wake_write.release();
    wake_read_ = wake_read.release();
  }
  thread_ = std::thread([this, o = out_read.release(), e = err_read.release()] { watch(o, e, wake_read_); });
  return {};
}

void MasterShellStep::kill_group(int signal) {
  std::lock_guard lock(mutex_);
  if (pid_ > 0) ::kill(-pid_, signal);
}

void MasterShellStep::interrupt(std::string_view reason) {
  if (finished()) return;
  interrupted_ = true;
  bool running;
  {
    std::lock_guard lock(mutex_);
    running = pid_ > 0;
  }
  if (!running) {
    finish(KILN_CANCELLED, "interrupted: " + std::string(reason));
    return;
  }
  append_log(stdio_, "interrupted: " + std::string(reason) + "\n", KILN_STREAM_HEADER);
  kill_group(interrupt_signal_);  // the watcher's completion then finishes the step
}

// On the step's thread: never touches host services other than post (which
// never waits for the loop), so the loop can join this thread safely.
void MasterShellStep::watch(int out_fd, int err_fd, int wake_fd) {
  using Clock = std::chrono::steady_clock;
  std::array<pollfd, 3> fds = {pollfd{out_fd, POLLIN, 0}, pollfd{err_fd, POLLIN, 0}, pollfd{wake_fd, POLLIN, 0}};
  const std::array<kiln_stream, 2> streams = {KILN_STREAM_STDOUT, KILN_STREAM_STDERR};
  int open_streams = 2;
  int wait_status = 0;
  bool reaped = false;
  pid_t pid;
  {
    std::lock_guard lock(mutex_);
    pid = pid_;
  }
  std::optional<Clock::time_point> exited_at;
  std::vector<char> buffer(64 * 1024);

  auto reap = [&](int options) {
    // Waits without reaping, then reaps under the mutex: kill_group never
    // signals a process group whose id may already be reused.
    siginfo_t info{};
    if (::waitid(P_PID, pid, &info, WEXITED | WNOWAIT | options) != 0 || info.si_pid == 0) return false;
    std::lock_guard lock(mutex_);
    ::waitpid(pid, &wait_status, 0);
    pid_ = -1;
    reaped = true;
    return true;
  };

  while (open_streams > 0 && !stopping_) {
    const int n = ::poll(fds.data(), fds.size(), 200);
    if (n < 0 && errno != EINTR) break;
    if (fds[2].revents != 0) break;  // the destructor wants us gone
    for (size_t i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (got > 0) {
        context().post([this, stream = streams[i], data = std::string(buffer.data(), static_cast<size_t>(got))] {
          append_log(stdio_, data, stream);
        });
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        ::close(fds[i].fd);
        fds[i].fd = -1;  // poll ignores negative descriptors
        --open_streams;
      }
    }
    // A background grandchild may hold the pipes open after the command
    // exited: stop reading a second after the exit.
    if (!reaped && reap(WNOHANG)) exited_at = Clock::now();
    if (exited_at && Clock::now() - *exited_at > std::chrono::seconds(1)) break;
  }
  for (int i = 0; i < 2; ++i) {
    if (fds[i].fd >= 0) ::close(fds[i].fd);
  }
  if (stopping_) kill_group(SIGKILL);
  if (!reaped) reap(0);
  if (stopping_) return;
  context().post([this, wait_status] { complete(wait_status); });
}

void MasterShellStep::complete(int wait_status) {
  if (thread_.joinable()) thread_.join();  // it has nothing left to do
  kiln_result result;
  std::string summary;
  if (interrupted_) {
    result = KILN_CANCELLED;
    summary = "interrupted";
  } else if (WIFSIGNALED(wait_status)) {
    result = KILN_FAILURE;
    summary = "killed (" + std::to_string(WTERMSIG(wait_status)) + ")";
  } else {
    const int rc = WEXITSTATUS(wait_status);
    append_log(stdio_, "program finished with exit code " + std::to_string(rc) + "\n", KILN_STREAM_HEADER);
    result = info_.decode_rc(rc);
    if (result == KILN_SUCCESS) {
      summary = info_.description_done().value_or("Ran");
    } else if (rc != 0) {
      summary = "failed (" + std::to_string(rc) + ")";
    } else {
      summary = result_summary(info_.description_done().value_or("Ran"), result);
    }
  }
  finish(result, summary);
}

}  // namespace kiln::std_steps
