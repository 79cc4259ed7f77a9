// Benchmark 3: start-up of a master with 1,000 builders (one shell step
// each, spread over 4 local workers). In-process, phase by phase: config
// read, plugin loading, config check, store open, Engine::start; RSS after
// start. Then the real `kiln start --nodaemon` in a child process, cold (no
// store yet) and warm (store from the cold run): wall time until it logs
// "running", and its VmRSS at that moment.
//
//   bench_startup [builders=1000]

#include "bench_common.h"

#include <poll.h>
#include <sys/wait.h>

#include <csignal>
#include <sstream>

using namespace kiln::bench;

namespace {

std::string master_yaml(int builders) {
  std::ostringstream y;
  y << "workers:\n";
  for (int w = 1; w <= 4; ++w) y << "  - {name: w" << w << ", type: local, max_builds: 2}\n";
  y << "builders:\n";
  for (int b = 0; b < builders; ++b) {
    y << "  - {name: builder-" << b << ", workers: [w" << (b % 4 + 1)
      << "], steps: [{type: shell, name: compile, command: [make, -j2, all]}]}\n";
  }
  return y.str();
}

struct ChildStart {
  double running_ms = -1;  // spawn -> "running" in its log
  long rss_kib = -1;
  long hwm_kib = -1;
};

// Runs `kiln start DIR --nodaemon`, waits for its "running" line on stderr,
// samples its memory, then stops it with SIGTERM.
ChildStart run_kiln_start(const fs::path& dir) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) die("pipe");
  const double t0 = now_s();
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::dup2(pipe_fds[1], 2);
    ::close(pipe_fds[0]);
    ::close(pipe_fds[1]);
    ::setenv("KILN_PLUGIN_PATH", KILN_BUILD_PLUGIN_DIR, 1);
    ::execl(KILN_BINARY, KILN_BINARY, "start", dir.c_str(), "--nodaemon", nullptr);
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  ChildStart result;
  std::string seen;
  char buf[4096];
  while (result.running_ms < 0) {
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (::poll(&p, 1, 60000) <= 0) break;
    const ssize_t got = ::read(pipe_fds[0], buf, sizeof buf);
    if (got <= 0) break;
    seen.append(buf, static_cast<size_t>(got));
    if (seen.find("' running in ") != std::string::npos) result.running_ms = (now_s() - t0) * 1000;
  }
  if (result.running_ms >= 0) {
    result.rss_kib = proc_status_kib("VmRSS", pid);
    result.hwm_kib = proc_status_kib("VmHWM", pid);
  } else {
    std::fprintf(stderr, "kiln start did not report running; its output:\n%s\n", seen.c_str());
  }
  ::kill(pid, SIGTERM);
  // Drain so the child never blocks on a full pipe while stopping.
  while (::read(pipe_fds[0], buf, sizeof buf) > 0) {
  }
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  const int builders = argc > 1 ? std::atoi(argv[1]) : 1000;
  const std::string yaml = master_yaml(builders);
  const long rss_before = proc_status_kib("VmRSS");

  StartupPhases phases;
  long rss_after = 0;
  {
    TempDir dir("kiln-bench-startup");
    write_text(dir.path() / "master.yaml", yaml);
    BenchMaster master(dir.path());
    master.start();
    phases = master.phases();
    rss_after = proc_status_kib("VmRSS");
  }
  std::printf("startup: %d builders in-process: config read %.1f ms, plugins %.1f ms, check "
              "%.1f ms, store open %.1f ms, Engine::start %.1f ms = %.1f ms\n",
              builders, phases.read_ms, phases.plugins_ms, phases.check_ms, phases.store_ms,
              phases.engine_ms, phases.total_ms());
  std::printf("startup: RSS %.1f MiB after start (%.1f MiB before anything was loaded)\n",
              mib(rss_after), mib(rss_before));

  TempDir dir("kiln-bench-startup-kiln");
  write_text(dir.path() / "master.yaml", yaml);
  const ChildStart cold = run_kiln_start(dir.path());
  const ChildStart warm = run_kiln_start(dir.path());
  std::printf("startup: `kiln start --nodaemon`, new store: running after %.0f ms, VmRSS %.1f MiB "
              "(VmHWM %.1f MiB)\n",
              cold.running_ms, mib(cold.rss_kib), mib(cold.hwm_kib));
  std::printf("startup: `kiln start --nodaemon`, existing store: running after %.0f ms, VmRSS "
              "%.1f MiB (VmHWM %.1f MiB)\n",
              warm.running_ms, mib(warm.rss_kib), mib(warm.hwm_kib));
  summary("start-up, 1,000 builders",
          format("in-process %.0f ms, RSS %.1f MiB; kiln start %.0f ms", phases.total_ms(),
                 mib(rss_after), cold.running_ms) +
              format(" / %.0f ms (warm), VmRSS %.1f MiB", warm.running_ms, mib(warm.rss_kib)),
          "<= 300 ms, <= 20 MiB (Buildbot 6.3 s, 100 MiB)");
  return cold.running_ms < 0 || warm.running_ms < 0;
}
