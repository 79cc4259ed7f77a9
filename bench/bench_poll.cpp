// Benchmark: one master polling R real git repositories (bare, on local
// disk) with B branches each through R `git-poller` change sources
// (branches: all, poll_at_launch, poll_interval P seconds). The first cycle
// records the heads (mirrors cloned) and is not timed. Then CPU per cycle
// (this process, every thread, plus the git processes it waited for) over
// whole poll intervals: twice with nothing new, once after one new commit
// on every repository (the cycle that reports R changes, in which every
// mirror's FETCH_HEAD must be written). A cycle's duration runs from its
// start to the last 20 ms slice of the loop that used CPU.
//
//   bench_poll [repositories=100] [branches=10] [interval_s=10]

#include "bench_common.h"

#include <sys/stat.h>

#include <thread>

using namespace kiln::bench;

namespace {

void sh(const std::string& command) {
  if (std::system(command.c_str()) != 0) die("command failed: " + command);
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A bare repository with `branches` branches, each one commit past main,
// made with one git fast-import.
void make_repository(const fs::path& repo, int branches) {
  std::string stream =
      "commit refs/heads/main\nmark :1\ncommitter Bench <bench@example.org> 1700000000 +0000\n"
      "data 5\nbase\nM 644 inline README\ndata 6\nhello\n\n";
  for (int b = 1; b < branches; ++b) {
    const std::string text = "branch " + std::to_string(b) + "\n";
    stream += "commit refs/heads/branch-" + std::to_string(b) +
              "\ncommitter Bench <bench@example.org> 1700000100 +0000\ndata 7\nbranch\nfrom :1\n"
              "M 644 inline file-" + std::to_string(b) + ".txt\ndata " + std::to_string(text.size()) + "\n" +
              text + "\n";
  }
  write_text(repo.string() + ".stream", stream);
  sh("git init -q --bare " + quoted(repo.string()) + " && git -C " + quoted(repo.string()) +
     " fast-import --quiet < " + quoted(repo.string() + ".stream"));
}

// One more commit on main.
void add_commit(const fs::path& repo, int n) {
  const std::string text = "change " + std::to_string(n) + "\n";
  const std::string stream = "commit refs/heads/main\ncommitter Bench <bench@example.org> " +
                             std::to_string(1700001000 + n) + " +0000\ndata 4\nnew\nfrom refs/heads/main^0\n" +
                             "M 644 inline new.txt\ndata " + std::to_string(text.size()) + "\n" + text + "\n";
  write_text(repo.string() + ".stream", stream);
  sh("git -C " + quoted(repo.string()) + " fast-import --quiet < " + quoted(repo.string() + ".stream"));
}

// The FETCH_HEAD of every mirror in the master's folder, newest write time.
std::vector<double> fetch_times(const fs::path& master_dir) {
  std::vector<double> out;
  for (const auto& entry : fs::directory_iterator(master_dir)) {
    const fs::path head = entry.path() / "FETCH_HEAD";
    struct stat st {};
    if (::stat(head.c_str(), &st) == 0) {
      out.push_back(static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9);
    }
  }
  return out;
}

double wall_clock_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double cpu_all() { return cpu_s(RUSAGE_SELF) + cpu_s(RUSAGE_CHILDREN); }

}  // namespace

int main(int argc, char** argv) {
  const int repositories = argc > 1 ? std::atoi(argv[1]) : 100;
  const int branches = argc > 2 ? std::atoi(argv[2]) : 10;
  const double interval = argc > 3 ? std::atof(argv[3]) : 10;

  TempDir repos("kiln-bench-poll-repos");
  double t = now_s();
  std::string pollers;
  for (int r = 0; r < repositories; ++r) {
    const fs::path repo = repos.path() / ("repo-" + std::to_string(r) + ".git");
    make_repository(repo, branches);
    pollers += "  - {type: git-poller, name: p" + std::to_string(r) + ", repourl: " + quoted(repo.string()) +
               ", branches: all, poll_at_launch: true, poll_interval: " + std::to_string(interval) + "}\n";
  }
  std::printf("poll: %d repositories with %d branches made in %.1f s\n", repositories, branches, now_s() - t);

  TempDir dir("kiln-bench-poll");
  write_text(dir.path() / "master.yaml", "workers:\n  - {name: w1, type: local}\n"
                                         "builders:\n  - {name: b1, workers: [w1], steps: [{type: shell, command: [\"true\"]}]}\n"
                                         "change_sources:\n" + pollers);
  BenchMaster master(dir.path());
  master.start();
  const double start = now_s();
  const double start_wall = wall_clock_s();
  // The pollers fire at start + k * interval. Runs the loop until just
  // before the next firing after `until`.
  auto run_until = [&](double until) {
    const double left = until - now_s();
    if (left > 0) master.run(left);
  };

  // Cycle 0: mirrors made, heads recorded.
  run_until(start + interval - 0.5);
  if (static_cast<int>(fetch_times(dir.path()).size()) != repositories) {
    die("after the first cycle " + std::to_string(fetch_times(dir.path()).size()) + " of " +
        std::to_string(repositories) + " mirrors exist: make the interval longer");
  }

  struct Cycle {
    double cpu = 0;
    double duration = 0;
  };
  // Runs cycle k (due at start + k * interval, or at once when the loop
  // resumes after that) and measures it. The loop runs in 20 ms slices; the
  // cycle is over at the last slice that used more than 2 ms of CPU (an
  // idle master uses next to none). With `fetched`, every mirror must also
  // have fetched during the cycle.
  auto measure = [&](int k, bool fetched) {
    const double fire_wall = std::max(start_wall + k * interval, wall_clock_s());
    const double cpu0 = cpu_all();
    double previous = cpu0;
    double busy_until = fire_wall;
    while (now_s() < start + (k + 1) * interval - 0.5) {
      master.run(0.02);
      const double cpu = cpu_all();
      if (cpu - previous > 0.002) busy_until = wall_clock_s();
      previous = cpu;
    }
    Cycle c;
    c.cpu = cpu_all() - cpu0;
    c.duration = busy_until - fire_wall;
    if (fetched) {
      for (double when : fetch_times(dir.path())) {
        if (when < fire_wall - 0.3) die("cycle " + std::to_string(k) + " did not fetch every repository: make the interval longer");
      }
    }
    return c;
  };

  Cycle idle1 = measure(1, false);
  Cycle idle2 = measure(2, false);
  const json before = master.get("changes");
  // Between cycles (the loop is not running, so cycle 3 waits for the
  // commits and starts when the loop resumes): one commit per repository.
  t = now_s();
  for (int r = 0; r < repositories; ++r) add_commit(repos.path() / ("repo-" + std::to_string(r) + ".git"), r);
  const double commit_s = now_s() - t;
  if (now_s() > start + 3 * interval + interval / 2) {
    die("making the commits took half a cycle: make the interval longer");
  }
  Cycle busy = measure(3, true);
  const json after = master.get("changes");
  const size_t new_changes = after.size() - before.size();

  std::printf("poll: %d pollers, %d branches each, every %.0f s (commits made in %.1f s between cycles)\n",
              repositories, branches, interval, commit_s);
  std::printf("poll: no new commits: CPU %.0f ms and %.0f ms per cycle (%.2f ms per repository); "
              "cycle done %.2f s and %.2f s after it started\n",
              idle1.cpu * 1000, idle2.cpu * 1000, (idle1.cpu + idle2.cpu) / 2 / repositories * 1000,
              idle1.duration, idle2.duration);
  std::printf("poll: one new commit per repository: CPU %.0f ms per cycle (%.2f ms per repository); "
              "%zu changes added; cycle done %.2f s after it started\n",
              busy.cpu * 1000, busy.cpu / repositories * 1000, new_changes, busy.duration);
  if (new_changes != static_cast<size_t>(repositories)) {
    std::printf("poll: WARNING: expected %d new changes\n", repositories);
  }
  summary("poll 100 git repos x 10 branches",
          format("%.0f ms CPU/cycle idle, %.0f ms with 1 commit per repo", (idle1.cpu + idle2.cpu) / 2 * 1000,
                 busy.cpu * 1000),
          "- (Buildbot 3.7: not measured)");
  return 0;
}
