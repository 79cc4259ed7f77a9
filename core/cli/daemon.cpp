#include "cli/daemon.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::cli {

namespace fs = std::filesystem;

namespace {
int g_ready_fd = -1;  // the child's end of the readiness pipe
}

fs::path pid_file_of(const fs::path& master_dir) { return master_dir / "kiln.pid"; }

std::optional<pid_t> running_master_pid(const fs::path& master_dir) {
  std::ifstream in(pid_file_of(master_dir));
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return std::nullopt;
  // A master killed with -9 stays a zombie until its parent reaps it; it
  // runs no more, so it does not hold the folder.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(stat, line)) {
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') {
      return std::nullopt;
    }
  }
  return static_cast<pid_t>(pid);
}

PidFile::PidFile(fs::path path) : path_(std::move(path)) {
  std::ofstream out(path_);
  out << ::getpid() << "\n";
}

PidFile::~PidFile() {
  std::error_code ec;
  fs::remove(path_, ec);
}

std::optional<int> daemonize() {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) {
    ::close(fds[1]);
    std::string report;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) report.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    if (report.rfind("ok\n", 0) == 0) {
      std::fputs(report.c_str() + 3, stdout);
      return 0;
    }
    if (report.empty()) report = "the master exited during start-up; see kiln.log\n";
    std::fputs(report.rfind("error\n", 0) == 0 ? report.c_str() + 6 : report.c_str(), stderr);
    return 1;
  }
  ::close(fds[0]);
  g_ready_fd = fds[1];
  ::setsid();
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, STDIN_FILENO);
    ::dup2(devnull, STDOUT_FILENO);
    ::dup2(devnull, STDERR_FILENO);
    if (devnull > STDERR_FILENO) ::close(devnull);
  }
  return std::nullopt;
}

void report_ready(bool ok, const std::string& message) {
  if (g_ready_fd < 0) return;
  std::string text = (ok ? "ok\n" : "error\n") + message;
  if (!text.empty() && text.back() != '\n') text += '\n';
  ssize_t ignored = ::write(g_ready_fd, text.data(), text.size());
  (void)ignored;
  ::close(g_ready_fd);
  g_ready_fd = -1;
}

}  // namespace kiln::cli
