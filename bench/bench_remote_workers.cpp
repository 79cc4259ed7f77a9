// Benchmark: remote workers. W real kiln-worker processes connect to one
// buildbot-worker listener on loopback (Buildbot's msgpack protocol). First
// the master's memory per connected idle worker (VmRSS after all connected,
// minus before any, over W); then N trivial builds (one `true` shell step)
// submitted at once over 4 builders that share every worker: builds/s,
// master CPU per build (this process, every thread), and the workers' CPU
// per build (from /proc, as they are not our waited-for children). Then, in
// fresh processes (VmHWM only grows), one build on one kiln-worker whose
// step writes 20, then 100 MB in 100-byte lines: MB/s through the protocol
// to committed, and the master's peak RSS, which must not grow with the
// log.
//
//   bench_remote_workers [N=1000] [W=50]
//   bench_remote_workers log MB
//   bench_remote_workers python [N=200] [W=4]    the same with Debian's real
//   bench_remote_workers python log MB           Python buildbot-worker

#include "bench_common.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <iterator>
#include <sstream>

extern char** environ;

using namespace kiln::bench;

namespace {

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) die("cannot run " + args[0]);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// utime + stime of a process, in seconds.
double process_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::strtod(field.c_str(), nullptr);
    if (i == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

std::string yaml_workers(int count, uint16_t port) {
  std::string yaml = "workers:\n";
  for (int i = 1; i <= count; ++i) {
    yaml += "  - {name: w" + std::to_string(i) + ", type: buildbot-worker, password: pw, listen: \"127.0.0.1:" +
            std::to_string(port) + "\"}\n";
  }
  return yaml;
}

// Which worker program the benchmark runs: Kiln's own, or Debian's real
// Python `buildbot-worker` (Buildbot 3.7), whose own speed is then the limit.
enum class WorkerKind { kKiln, kPython };
WorkerKind g_kind = WorkerKind::kKiln;

const char* worker_label() { return g_kind == WorkerKind::kKiln ? "kiln-worker" : "buildbot-worker"; }

pid_t spawn_worker(const fs::path& dir, uint16_t port, const std::string& name) {
  const std::string master = "127.0.0.1:" + std::to_string(port);
  const fs::path basedir = dir / name;
  if (g_kind == WorkerKind::kKiln) {
    return spawn({KILN_WORKER_BINARY, "--master", master, "--name", name, "--password", "pw", "--basedir",
                  basedir.string(), "--reconnect-min", "0.1", "--reconnect-max", "1"},
                 dir / (name + ".log"));
  }
  // As tests/buildbot_worker's WorkerProcess: create-worker, then run it in
  // the foreground (twistd in this very process, so its CPU is readable).
  const pid_t create = spawn({"/usr/bin/buildbot-worker", "create-worker", "--protocol=msgpack_experimental_v7",
                              basedir.string(), master, name, "pw"},
                             dir / (name + ".create.log"));
  int status = 0;
  ::waitpid(create, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("buildbot-worker create-worker failed for " + name);
  return spawn({"/usr/bin/buildbot-worker", "start", "--nodaemon", basedir.string()}, dir / (name + ".log"));
}

void stop_workers(const std::vector<pid_t>& workers) {
  for (pid_t pid : workers) ::kill(pid, SIGTERM);
  for (pid_t pid : workers) ::waitpid(pid, nullptr, 0);
}

// One build whose step writes `mb` MB through one kiln-worker.
int log_stream(int mb) {
  TempDir dir("kiln-bench-remote-log");
  const uint16_t port = free_port();
  const long bytes = static_cast<long>(mb) * 1'000'000;
  write_text(dir.path() / "master.yaml",
             yaml_workers(1, port) + "builders:\n  - {name: b1, workers: [w1], steps: [{type: shell, name: spew, "
                                     "command: \"yes " + std::string(99, 'x') + " | head -c " +
                 std::to_string(bytes) + "\"}]}\n");
  BenchMaster master(dir.path());
  master.start();
  master.engine().events().subscribe("workers/+/connected", [&](const std::string&, const json&) {
    master.stop_loop();
  });
  const std::vector<pid_t> workers{spawn_worker(dir.path(), port, "w1")};
  if (!master.run(60)) die("the worker did not connect");
  double step_started = 0, durable = 0;
  int results = -1;
  master.engine().events().subscribe("steps/+/started", [&](const std::string&, const json&) {
    step_started = now_s();
  });
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json& e) {
    results = e.value("results", -1);
    master.store().flush([&](kiln::store::Status) {
      durable = now_s();
      master.stop_loop();
    });
  });
  const double cpu0 = cpu_s(RUSAGE_SELF);
  const double worker_cpu0 = process_cpu_s(workers[0]);
  master.engine().add_buildset({{"builders", {"b1"}}, {"reason", "bench"}}, [](kiln_status status, json value) {
    if (status != KILN_OK) die("add_buildset: " + value.dump());
  });
  if (!master.run(600)) die("the build did not finish");
  const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
  const double worker_cpu = process_cpu_s(workers[0]) - worker_cpu0;
  const double seconds = durable - step_started;
  std::printf("remote_log: %d MB through %s in %.2f s = %.0f MB/s to committed; master CPU %.2f ms/MB; "
              "%s CPU %.2f ms/MB; peak RSS (VmHWM) %.1f MiB; result %d\n",
              mb, worker_label(), seconds, mb / seconds, cpu * 1000 / mb, worker_label(), worker_cpu * 1000 / mb,
              mib(proc_status_kib("VmHWM")), results);
  summary("remote log " + std::to_string(mb) + " MB (" + worker_label() + ")",
          format("%.0f MB/s, peak RSS %.1f MiB", mb / seconds, mib(proc_status_kib("VmHWM"))),
          ">= 150 MB/s, flat (Buildbot 10.6 MB/s)");
  master.shutdown();
  stop_workers(workers);
  return results == KILN_SUCCESS ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "python") {
    g_kind = WorkerKind::kPython;
    args.erase(args.begin());
  }
  const bool python = g_kind == WorkerKind::kPython;
  if (args.size() > 1 && args[0] == "log") return log_stream(std::atoi(args[1].c_str()));
  // Each Python worker is a ~40 MiB interpreter: fewer of them, fewer builds.
  const int n = !args.empty() ? std::atoi(args[0].c_str()) : python ? 200 : 1000;
  const int w = args.size() > 1 ? std::atoi(args[1].c_str()) : python ? 4 : 50;
  TempDir dir("kiln-bench-remote");
  const uint16_t port = free_port();
  // Every request its own build: the same (empty) source would collapse them.
  std::string yaml = "master: {collapse_requests: false}\n" + yaml_workers(w, port);
  std::string names;
  for (int i = 1; i <= w; ++i) names += (i > 1 ? ", w" : "w") + std::to_string(i);
  yaml += "builders:\n";
  for (int b = 1; b <= 4; ++b) {
    yaml += "  - {name: b" + std::to_string(b) + ", workers: [" + names + "], steps: [{type: shell, command: [\"true\"]}]}\n";
  }
  write_text(dir.path() / "master.yaml", yaml);
  BenchMaster master(dir.path());
  master.start();
  master.run(0.2);  // settle: listener up, plugins started
  const long rss_before = proc_status_kib("VmRSS");

  int connected = 0;
  master.engine().events().subscribe("workers/+/connected", [&](const std::string&, const json&) {
    if (++connected == w) master.stop_loop();
  });
  std::vector<pid_t> workers;
  for (int i = 1; i <= w; ++i) workers.push_back(spawn_worker(dir.path(), port, "w" + std::to_string(i)));
  const double connect_start = now_s();
  if (!master.run(60)) die("only " + std::to_string(connected) + " of " + std::to_string(w) + " workers connected");
  const double connect_s = now_s() - connect_start;
  master.run(1.0);  // let the attach exchanges (worker info, keepalive timers) settle
  const long rss_connected = proc_status_kib("VmRSS");

  int finished = 0, succeeded = 0;
  double end = 0;
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json& e) {
    ++finished;
    if (e.value("results", -1) == KILN_SUCCESS) ++succeeded;
    if (finished == n) {
      master.store().flush([&](kiln::store::Status) {
        end = now_s();
        master.stop_loop();
      });
    }
  });
  double workers_cpu0 = 0;
  for (pid_t pid : workers) workers_cpu0 += process_cpu_s(pid);
  const double cpu0 = cpu_s(RUSAGE_SELF);
  const double start = now_s();
  const char* builders[] = {"b1", "b2", "b3", "b4"};
  for (int i = 0; i < n; ++i) {
    master.engine().add_buildset({{"builders", {builders[i % 4]}}, {"reason", "bench"}},
                                 [](kiln_status status, json value) {
                                   if (status != KILN_OK) die("add_buildset: " + value.dump());
                                 });
  }
  if (!master.run(600)) {
    die("timed out with " + std::to_string(finished) + " builds finished; engine status: " +
        master.engine().status().dump());
  }
  const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
  double workers_cpu = -workers_cpu0;
  for (pid_t pid : workers) workers_cpu += process_cpu_s(pid);
  const double wall = end - start;
  const double per_worker_kib = static_cast<double>(rss_connected - rss_before) / w;

  std::printf("remote_workers: %d %s processes connected in %.2f s; master VmRSS %.1f MiB before, "
              "%.1f MiB connected: %.0f KiB per idle worker\n",
              w, worker_label(), connect_s, mib(rss_before), mib(rss_connected), per_worker_kib);
  std::printf("remote_workers: %d builds in %.2f s = %.0f builds/s; master CPU %.2f ms/build; "
              "%s CPU %.2f ms/build; %d succeeded; peak RSS %.1f MiB\n",
              n, wall, n / wall, cpu * 1000 / n, worker_label(), workers_cpu * 1000 / n, succeeded, mib(proc_status_kib("VmHWM")));
  summary(std::string("remote trivial builds (") + worker_label() + ")", format("%.0f builds/s, %.2f ms master CPU/build", n / wall, cpu * 1000 / n),
          ">= 300 builds/s (Buildbot 8.1/s)");
  summary(std::string("idle remote worker memory (") + worker_label() + ")", format("%.0f KiB/worker", per_worker_kib), "<= 256 KiB");

  master.shutdown();
  stop_workers(workers);
  if (!args.empty()) return succeeded == n ? 0 : 1;
  // The log runs, each in a fresh process.
  int failures = succeeded == n ? 0 : 1;
  for (const char* mb : {"20", "100"}) {
    std::fflush(stdout);
    const std::string command = std::string(argv[0]) + (python ? " python" : "") + " log " + mb;
    if (std::system(command.c_str()) != 0) ++failures;
  }
  return failures == 0 ? 0 : 1;
}
