#include <kiln/worker/run_process.h>

#include <kiln/worker/repr.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <sys/stat.h>

namespace kiln::worker {

namespace {

// Buildbot's BACKUP_TIMEOUT: how long a kill may take before escalating.
constexpr std::chrono::seconds kBackupTimeout(5);
constexpr std::chrono::seconds kLogfilePollInterval(2);
constexpr size_t kLogfileChunk = 64 * 1024;

std::optional<double> seconds(const nlohmann::json& value) {
  if (!value.is_number()) return std::nullopt;
  double s = value.get<double>();
  return s > 0 ? std::optional<double>(s) : std::nullopt;
}

std::chrono::steady_clock::duration to_duration(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

std::optional<std::tuple<int64_t, int64_t, int64_t>> stat_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return std::make_tuple(static_cast<int64_t>(st.st_ctime), static_cast<int64_t>(st.st_mtime),
                         static_cast<int64_t>(st.st_size));
}

}  // namespace

int signal_from_name(const std::string& name) {
  static const std::map<std::string, int> kSignals = {
      {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
      {"ABRT", SIGABRT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"ALRM", SIGALRM}};
  std::string key = name.rfind("SIG", 0) == 0 ? name.substr(3) : name;
  auto it = kSignals.find(key);
  return it != kSignals.end() ? it->second : SIGKILL;
}

RunProcess::RunProcess(boost::asio::io_context& io, RunProcessOptions options, OutputFn on_output,
                       UpdateFn on_update, DoneFn on_done)
    : io_(io),
      options_(std::move(options)),
      on_output_(std::move(on_output)),
      on_update_(std::move(on_update)),
      on_done_(std::move(on_done)) {}

RunProcess::~RunProcess() = default;

double RunProcess::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

void RunProcess::start() {
  std::vector<std::string> argv = options_.argv;
  std::string display;
  if (options_.command_string) {
    argv = {options_.shell, "-c", *options_.command_string};
    display = *options_.command_string;
    fake_command_ = py_bytes_repr(*options_.command_string);
  } else {
    display = shell_quote(argv);
    fake_command_ = py_bytes_list_repr(argv);
  }

  std::string head = display + "\n in dir " + options_.workdir;
  if (seconds(options_.timeout)) head += " (timeout " + py_number(options_.timeout) + " secs)";
  if (seconds(options_.max_time)) head += " (maxTime " + py_number(options_.max_time) + " secs)";
  head += "\n watching logfiles " + py_repr(options_.logfiles) + "\n";
  head += " argv: " + py_bytes_list_repr(argv) + "\n";
  if (options_.log_environ) {
    head += " environment:\n";
    for (const auto& [name, value] : options_.env) head += "  " + name + "=" + value + "\n";  // std::map: sorted
  }
  if (options_.initial_stdin) {
    head += " writing " + std::to_string(options_.initial_stdin->size()) + " bytes to stdin\n";
  }
  head += " using PTY: False\n";
  on_output_(Stream::kHeader, head);

  started_ = last_output_ = std::chrono::steady_clock::now();

  for (const auto& [name, spec] : options_.logfiles.items()) {
    LogFile lf;
    lf.name = name;
    std::string file = spec.is_string() ? spec.get<std::string>() : spec.value("filename", std::string());
    if (file.empty()) continue;
    lf.path = file.front() == '/' ? file : options_.workdir + "/" + file;
    lf.follow = spec.is_object() && spec.value("follow", false);
    lf.initial = stat_file(lf.path);
    logfiles_.push_back(std::move(lf));
  }

  ProcessSpec spec;
  spec.argv = argv;
  spec.env = options_.env;
  spec.workdir = options_.workdir;
  spec.stdin_data = options_.initial_stdin;
  process_ = std::make_shared<Process>(io_);
  std::weak_ptr<RunProcess> weak = weak_from_this();
  int err = process_->start(
      spec,
      [weak](Stream stream, std::string_view data) {
        auto self = weak.lock();
        if (!self || self->done_) return;
        self->last_output_ = std::chrono::steady_clock::now();
        if ((stream == Stream::kStdout && !self->options_.want_stdout) ||
            (stream == Stream::kStderr && !self->options_.want_stderr)) {
          return;
        }
        self->on_output_(stream, data);
      },
      [weak](const ProcessExit& exit) {
        if (auto self = weak.lock()) self->on_exit(exit);
      });
  if (err != 0) {
    const std::string why = "cannot run " + py_bytes_repr(argv[0]) + ": " + std::strerror(err);
    on_output_(Stream::kStderr, "error in RunProcess._startCommand (" + why + ")\n");
    process_.reset();
    finish(Outcome{-1, false, why});
    return;
  }

  arm_timeout();
  if (auto max_time = seconds(options_.max_time)) {
    max_time_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
    max_time_timer_->expires_after(to_duration(*max_time));
    max_time_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->done_) return;
      self->kill("command timed out: " + py_number(self->options_.max_time) + " seconds elapsed running " +
                 self->fake_command_);
    });
  }
  if (!logfiles_.empty()) schedule_logfile_poll();
}

void RunProcess::arm_timeout() {
  auto timeout = seconds(options_.timeout);
  if (!timeout || done_ || killed_) return;
  if (!timeout_timer_) timeout_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
  // Re-armed lazily from the last output rather than on every chunk: one
  // timer wake-up per `timeout` instead of one per read.
  timeout_timer_->expires_at(last_output_ + to_duration(*timeout));
  timeout_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->done_ || self->killed_) return;
    auto limit = to_duration(*seconds(self->options_.timeout));
    if (std::chrono::steady_clock::now() - self->last_output_ >= limit) {
      self->kill("command timed out: " + py_number(self->options_.timeout) + " seconds without output running " +
                 self->fake_command_);
    } else {
      self->arm_timeout();
    }
  });
}

void RunProcess::interrupt() {
  if (done_ || !process_) return;
  interrupted_ = true;
  kill("command interrupted");
}

void RunProcess::kill(const std::string& message) {
  if (killed_ || done_ || !process_) return;
  killed_ = true;
  on_output_(Stream::kHeader, "\n" + message + ", attempting to kill\n");
  auto backup = kBackupTimeout;
  if (auto term = seconds(options_.sigterm_time)) {
    process_->signal_group(SIGTERM);
    sigterm_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
    sigterm_timer_->expires_after(to_duration(*term));
    sigterm_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->done_) return;
      self->process_->signal_group(self->options_.interrupt_signal);
    });
    backup += std::chrono::duration_cast<std::chrono::seconds>(to_duration(*term));
  } else {
    process_->signal_group(options_.interrupt_signal);
  }
  backup_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
  backup_timer_->expires_after(backup);
  backup_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->escalate();
  });
}

// The chosen signal did not end it: SIGKILL; and if even that does not
// within another BACKUP_TIMEOUT, report rc -1 as Buildbot does.
void RunProcess::escalate() {
  if (done_) return;
  if (backup_stage_++ == 0) {
    process_->signal_group(SIGKILL);
    backup_timer_->expires_after(kBackupTimeout);
    backup_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->escalate();
    });
    return;
  }
  give_up();
}

void RunProcess::give_up() {
  on_output_(Stream::kHeader, "SIGKILL failed to kill process\nusing fake rc=-1\n");
  on_output_(Stream::kHeader, "elapsedTime=" + [&] {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%0.6f", elapsed());
    return std::string(buf);
  }() + "\n");
  finish(Outcome{-1, interrupted_, ""});
}

void RunProcess::on_exit(const ProcessExit& exit) {
  if (done_) return;
  poll_logfiles();
  int rc = exit.exit_code;
  if (exit.signal != 0) {
    on_output_(Stream::kHeader, "process killed by signal " + std::to_string(exit.signal) + "\n");
    rc = -1;
  } else if (killed_ && rc == 0) {
    rc = -1;  // a process we killed never succeeded
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "elapsedTime=%0.6f\n", elapsed());
  on_output_(Stream::kHeader, buf);
  finish(Outcome{rc, interrupted_, ""});
}

void RunProcess::finish(Outcome outcome) {
  if (done_) return;
  done_ = true;
  for (auto* timer : {&timeout_timer_, &max_time_timer_, &sigterm_timer_, &backup_timer_, &logfile_timer_}) {
    if (*timer) (*timer)->cancel();
  }
  auto done = std::move(on_done_);
  on_done_ = nullptr;
  if (done) done(outcome);
}

void RunProcess::schedule_logfile_poll() {
  if (!logfile_timer_) logfile_timer_ = std::make_unique<boost::asio::steady_timer>(io_);
  logfile_timer_->expires_after(kLogfilePollInterval);
  logfile_timer_->async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (ec || self->done_) return;
    self->poll_logfiles();
    self->schedule_logfile_poll();
  });
}

void RunProcess::poll_logfiles() {
  for (auto& lf : logfiles_) {
    auto st = stat_file(lf.path);
    if (!lf.started) {
      // Buildbot ignores a file until it changes after the command started.
      if (st == lf.initial) continue;
      if (!st) {
        lf.initial.reset();
        continue;
      }
      lf.started = true;
      lf.offset = lf.follow ? static_cast<uint64_t>(std::get<2>(*st)) : 0;
    }
    if (!st) continue;
    if (static_cast<uint64_t>(std::get<2>(*st)) < lf.offset) lf.offset = 0;  // truncated or replaced
    std::ifstream in(lf.path, std::ios::binary);
    if (!in) continue;
    in.seekg(static_cast<std::streamoff>(lf.offset));
    std::string chunk(kLogfileChunk, '\0');
    while (in) {
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      lf.offset += n;
      on_update_(nlohmann::json{{"log", {{"name", lf.name}, {"data", chunk.substr(0, n)}}}});
    }
  }
}

}  // namespace kiln::worker
