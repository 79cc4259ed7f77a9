#include <kiln/worker/process.h>

#include <boost/asio/post.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::worker {

namespace {

constexpr size_t kReadSize = 64 * 1024;
constexpr int kPipeSize = 256 * 1024;
// How long pipes may stay open after a killed process exited: a grandchild
// that escaped the process group must not keep the command alive forever.
constexpr auto kDrainAfterKill = std::chrono::seconds(2);
constexpr auto kExitPollInterval = std::chrono::milliseconds(20);

class FileActions {
 public:
  FileActions() { posix_spawn_file_actions_init(&actions_); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions_); }
  posix_spawn_file_actions_t* get() { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_;
};

class SpawnAttr {
 public:
  SpawnAttr() { posix_spawnattr_init(&attr_); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr_); }
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// Closes what it holds unless released.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end = Fd(fds[0]);
  write_end = Fd(fds[1]);
  return true;
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

std::optional<std::string> find_program(const std::string& name, const std::map<std::string, std::string>& env) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) return name;
  auto it = env.find("PATH");
  const std::string path = it != env.end() ? it->second : "/usr/local/bin:/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find(':', begin);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (is_executable_file(candidate)) return candidate;
    begin = end + 1;
  }
  return std::nullopt;
}

Process::Process(boost::asio::io_context& io) : io_(io) {}

Process::~Process() {
  close_pipes();
  stdin_.reset();
  pidfd_.reset();
  if (pid_ <= 0 || reaped_) return;
  // Torn down while running (the worker stopped): the children must not
  // outlive it. SIGKILL is prompt, but a process in uninterruptible sleep
  // is not worth blocking for; it is left to init after a short wait.
  ::kill(-pid_, SIGKILL);
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int Process::start(const ProcessSpec& spec, OutputFn on_output, ExitFn on_exit) {
  if (spec.argv.empty()) return EINVAL;
  auto program = find_program(spec.argv[0], spec.env);
  if (!program) return ENOENT;

  Fd out_r, out_w, err_r, err_w, in_r, in_w;
  if (!make_pipe(out_r, out_w) || !make_pipe(err_r, err_w)) return errno;
  // Larger pipes mean fewer, fuller reads (64 KiB instead of ~16 KiB) for
  // chatty builds; the kernel caps the size for unprivileged processes.
  ::fcntl(out_r.get(), F_SETPIPE_SZ, kPipeSize);
  ::fcntl(err_r.get(), F_SETPIPE_SZ, kPipeSize);
  if (spec.stdin_data && !make_pipe(in_r, in_w)) return errno;

  FileActions actions;
  if (spec.stdin_data) {
    posix_spawn_file_actions_adddup2(actions.get(), in_r.get(), 0);
  } else {
    posix_spawn_file_actions_addopen(actions.get(), 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(actions.get(), out_w.get(), 1);
  posix_spawn_file_actions_adddup2(actions.get(), err_w.get(), 2);
  // Descriptors of the master that lack O_CLOEXEC must not leak into builds.
  posix_spawn_file_actions_addclosefrom_np(actions.get(), 3);
  if (!spec.workdir.empty()) posix_spawn_file_actions_addchdir_np(actions.get(), spec.workdir.c_str());

  SpawnAttr attr;
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  // The master may ignore or block these; a build expects the defaults.
  for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGTSTP,
                  SIGTTIN, SIGTTOU}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigmask(attr.get(), &empty);
  posix_spawnattr_setsigdefault(attr.get(), &defaults);
  // Its own process group, so that a kill reaches every descendant.
  posix_spawnattr_setpgroup(attr.get(), 0);
  posix_spawnattr_setflags(attr.get(), POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> env_strings;
  env_strings.reserve(spec.env.size());
  for (const auto& [name, value] : spec.env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  // glibc reports exec failures (and a bad workdir) through the return value.
  int rc = ::posix_spawn(&pid, program->c_str(), actions.get(), attr.get(), argv.data(), envp.data());
  if (rc != 0) return rc;
  pid_ = pid;

  on_output_ = std::move(on_output);
  on_exit_ = std::move(on_exit);
  out_w.reset();
  err_w.reset();
  in_r.reset();

  Fd* reads[2] = {&out_r, &err_r};
  for (int i = 0; i < 2; ++i) {
    pipes_[i] = std::make_unique<boost::asio::posix::stream_descriptor>(io_, reads[i]->release());
    pipes_[i]->non_blocking(true);
    buffers_[i].resize(kReadSize);
    eof_[i] = false;
  }
  if (spec.stdin_data) {
    stdin_data_ = *spec.stdin_data;
    stdin_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, in_w.release());
    stdin_->non_blocking(true);
  }

  auto self = shared_from_this();
  boost::asio::post(io_, [self] {
    self->read_pipe(0);
    self->read_pipe(1);
    self->write_stdin();
    self->watch_exit();
  });
  return 0;
}

void Process::read_pipe(int index) {
  auto& pipe = pipes_[index];
  if (!pipe) return;
  pipe->async_read_some(boost::asio::buffer(buffers_[index]),
                        [self = shared_from_this(), index](const boost::system::error_code& ec, size_t n) {
                          if (!self->pipes_[index]) return;
                          if (n > 0 && self->on_output_) {
                            self->on_output_(index == 0 ? Stream::kStdout : Stream::kStderr,
                                             std::string_view(self->buffers_[index].data(), n));
                          }
                          if (ec) {
                            self->eof_[index] = true;
                            self->pipes_[index].reset();
                            self->buffers_[index] = {};
                            self->maybe_finish();
                            return;
                          }
                          self->read_pipe(index);
                        });
}

void Process::write_stdin() {
  if (!stdin_) return;
  if (stdin_data_.empty()) {
    stdin_.reset();  // closing it is the child's end of file
    return;
  }
  stdin_->async_wait(boost::asio::posix::stream_descriptor::wait_write,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       if (!self->stdin_) return;
                       if (ec) {
                         self->stdin_.reset();
                         return;
                       }
                       // A child that exits without reading would raise SIGPIPE
                       // in the master: block it around the write, and drop the
                       // one a failed write left pending.
                       sigset_t pipe_set, old;
                       sigemptyset(&pipe_set);
                       sigaddset(&pipe_set, SIGPIPE);
                       pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
                       ssize_t n = ::write(self->stdin_->native_handle(), self->stdin_data_.data(),
                                           self->stdin_data_.size());
                       int err = errno;
                       if (n < 0 && err == EPIPE) {
                         struct timespec zero {};
                         sigtimedwait(&pipe_set, nullptr, &zero);
                       }
                       pthread_sigmask(SIG_SETMASK, &old, nullptr);
                       if (n < 0 && (err == EAGAIN || err == EINTR)) {
                         self->write_stdin();
                         return;
                       }
                       if (n < 0) {
                         self->stdin_.reset();
                         return;
                       }
                       self->stdin_data_.erase(0, static_cast<size_t>(n));
                       self->write_stdin();
                     });
}

void Process::watch_exit() {
  int fd = open_pidfd(pid_);
  if (fd < 0) {
    poll_exit();
    return;
  }
  pidfd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  pidfd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       if (!self->pidfd_) return;
                       if (ec) {
                         self->pidfd_.reset();
                         self->poll_exit();
                         return;
                       }
                       self->pidfd_.reset();
                       self->reap();
                       if (!self->reaped_) self->poll_exit();
                     });
}

void Process::poll_exit() {
  reap();
  if (reaped_) return;
  if (!poll_timer_) poll_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
  poll_timer_->expires_after(kExitPollInterval);
  poll_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->poll_exit();
  });
}

void Process::reap() {
  if (reaped_ || pid_ <= 0) return;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return;
  if (r < 0 && errno == EINTR) return;
  reaped_ = true;
  ProcessExit exit;
  if (r < 0) {
    exit.exit_code = -1;  // someone else reaped it: the status is lost
  } else if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    exit.exit_code = WEXITSTATUS(status);
  }
  exit_ = exit;
  if (signalled_ && (!eof_[0] || !eof_[1])) {
    drain_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
    drain_timer_->expires_after(kDrainAfterKill);
    drain_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->abandon_pipes();
    });
  }
  maybe_finish();
}

void Process::signal_group(int sig) {
  if (pid_ <= 0 || finished_) return;
  signalled_ = true;
  ::kill(-pid_, sig);
  if (reaped_ && !drain_timer_ && (!eof_[0] || !eof_[1])) {
    drain_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
    drain_timer_->expires_after(kDrainAfterKill);
    drain_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->abandon_pipes();
    });
  }
}

// What holds the pipes after the killed leader exited is either still in
// its group (killed now: the group id cannot be reused while it has
// members) or escaped it; either way the command ends.
void Process::abandon_pipes() {
  if (finished_) return;
  ::kill(-pid_, SIGKILL);
  close_pipes();
  maybe_finish();
}

void Process::close_pipes() {
  for (int i = 0; i < 2; ++i) {
    if (pipes_[i]) {
      boost::system::error_code ignored;
      pipes_[i]->cancel(ignored);
      pipes_[i].reset();
    }
    eof_[i] = true;
  }
}

void Process::maybe_finish() {
  if (finished_ || !exit_ || !eof_[0] || !eof_[1]) return;
  finished_ = true;
  if (poll_timer_) poll_timer_->cancel();
  if (drain_timer_) drain_timer_->cancel();
  stdin_.reset();
  auto on_exit = std::move(on_exit_);
  on_exit_ = nullptr;
  on_output_ = nullptr;  // the owner's callbacks may hold the owner
  if (on_exit) on_exit(*exit_);
}

}  // namespace kiln::worker
