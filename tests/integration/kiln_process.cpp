#include "kiln_process.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::integration {

using nlohmann::json;

std::string RunResult::describe() const {
  std::ostringstream text;
  text << "exit code " << exit_code << (timed_out ? " (timed out)" : "") << "\n--- stdout\n"
       << out << "--- stderr\n"
       << err;
  return text.str();
}

namespace {

struct Pipe {
  int fd[2] = {-1, -1};
  Pipe() {
    if (::pipe2(fd, O_CLOEXEC) != 0) throw std::runtime_error(std::strerror(errno));
  }
  ~Pipe() {
    close_end(0);
    close_end(1);
  }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
};

}  // namespace

RunResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                      const fs::path& cwd) {
  if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
  std::vector<char*> c_argv;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));
  c_argv.push_back(nullptr);
  const std::string dir = cwd.string();

  Pipe out, err;
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    ::setpgid(0, 0);
    int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    ::dup2(out.fd[1], STDOUT_FILENO);
    ::dup2(err.fd[1], STDERR_FILENO);
    if (!dir.empty() && ::chdir(dir.c_str()) != 0) ::_exit(126);
    ::execvp(c_argv[0], c_argv.data());
    ::_exit(127);
  }
  out.close_end(1);
  err.close_end(1);

  RunResult result;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out.fd[0], POLLIN, 0}, {err.fd[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  // A daemonizing child may leave grandchildren holding the pipes only
  // briefly; EOF on both (or the deadline) ends the capture.
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sinks[i]->append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  if (result.timed_out) ::kill(-pid, SIGKILL);

  int status = 0;
  for (;;) {
    pid_t done = ::waitpid(pid, &status, result.timed_out ? 0 : WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return result;
    if (done == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        result.timed_out = true;
        ::kill(-pid, SIGKILL);
      } else {
        std::this_thread::sleep_for(5ms);
      }
    }
  }
  if (!result.timed_out && WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  return result;
}

RunResult run_kiln(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{KILN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(25ms);
  }
}

bool process_alive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  // A zombie is dead for our purposes (the master is not our child, but be
  // exact anyway).
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= line.size() ||
         line[close_paren + 2] != 'Z';
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

MasterDir::MasterDir() {
  std::string templ = (fs::temp_directory_path() / "kiln-integ-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  path_ = templ;
}

MasterDir::~MasterDir() {
  if (auto p = pid(); p && process_alive(*p)) {
    run_kiln({"stop", str()}, 10s);
    if (process_alive(*p)) ::kill(*p, SIGKILL);
    wait_until([&] { return !process_alive(*p); }, 5s);
  }
  kill_leftovers();
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void MasterDir::kill_leftovers() const {
  // Only our own processes whose working folder is inside this (unique)
  // temp folder: build commands a killed master could not stop.
  const std::string prefix = path_.string() + "/";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code link_ec;
    const fs::path cwd = fs::read_symlink(entry.path() / "cwd", link_ec);
    if (link_ec) continue;
    const std::string c = cwd.string() + "/";
    if (c.compare(0, prefix.size(), prefix) == 0) {
      ::kill(static_cast<pid_t>(std::stol(name)), SIGKILL);
    }
  }
}

void MasterDir::write_config(const std::string& yaml) const {
  std::ofstream out(path_ / "master.yaml");
  out << yaml;
  if (!out) throw std::runtime_error("cannot write master.yaml");
}

std::optional<pid_t> MasterDir::pid() const {
  std::ifstream in(path_ / "kiln.pid");
  long value = 0;
  if (!(in >> value) || value <= 0) return std::nullopt;
  return static_cast<pid_t>(value);
}

RunResult MasterDir::start() const { return run_kiln({"start", str()}); }

RunResult MasterDir::stop() const { return run_kiln({"stop", str()}, 40s); }

json MasterDir::data(const std::string& data_path) const {
  RunResult r = run_kiln({"data", str(), data_path}, 10s);
  if (r.exit_code != 0) return json(json::value_t::discarded);
  return json::parse(r.out, nullptr, false);
}

std::optional<json> MasterDir::wait_for_data(const std::string& data_path,
                                             const std::function<bool(const json&)>& accept) const {
  json last;
  if (wait_until([&] {
        last = data(data_path);
        return !last.is_discarded() && accept(last);
      })) {
    return last;
  }
  return std::nullopt;
}

std::optional<int64_t> forced_request_id(const std::string& force_output) {
  static const std::regex kRequest(R"(request ([0-9]+) on builder)");
  std::smatch m;
  if (!std::regex_search(force_output, m, kRequest)) return std::nullopt;
  return std::stoll(m[1].str());
}

std::string one_builder_config(const std::string& name, const std::string& command,
                               int max_builds) {
  return "master: {title: integration, db: 'sqlite:state.sqlite'}\n"
         "workers:\n"
         "  - {name: w1, type: local, max_builds: " + std::to_string(max_builds) + "}\n"
         "schedulers:\n"
         "  - {name: force, type: force, builders: [" + name + "]}\n"
         "builders:\n"
         "  - name: " + name + "\n"
         "    workers: [w1]\n"
         "    steps:\n"
         "      - {type: shell, name: run, command: " + command + "}\n";
}

std::string build_stdout(const MasterDir& master, int64_t buildid) {
  std::string text;
  json steps = master.data("builds/" + std::to_string(buildid) + "/steps");
  if (!steps.is_array()) return text;
  for (const auto& step : steps) {
    json logs = master.data("steps/" + step.value("stepid", json()).dump() + "/logs");
    if (!logs.is_array()) continue;
    for (const auto& log : logs) {
      json contents = master.data("logs/" + log.value("logid", json()).dump() + "/contents");
      if (!contents.is_object()) continue;
      // Stream logs prefix each line with its stream: o, e or h.
      std::istringstream lines(contents.value("content", std::string()));
      std::string line;
      while (std::getline(lines, line)) {
        if (!line.empty() && line[0] == 'o') text += line.substr(1) + "\n";
      }
    }
  }
  return text;
}

}  // namespace kiln::integration
