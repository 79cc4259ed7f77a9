// Benchmark 5: log ingest. One build whose single shell step writes N MB to
// stdout in lines of 100 bytes; throughput is N MB over the time from the
// step's `steps/M/started` event to the build's `builds/B/finished` (so it
// includes the last log flush and the build's own bookkeeping). Memory must
// stay flat in the log size: with no argument the program runs itself twice
// in fresh processes, for 20 MB and 100 MB, and compares their peak RSS
// (VmHWM, which only grows over a process's life).
//
//   bench_log_ingest            both sizes, compared
//   bench_log_ingest MB         one run of MB megabytes

#include "bench_common.h"

#include <atomic>
#include <cstdio>
#include <thread>

using namespace kiln::bench;

namespace {

struct Run {
  double mb = 0;
  double mb_per_s = 0;
  double hwm_mib = 0;
};

Run run_once(int mb) {
  TempDir dir("kiln-bench-log");
  const long bytes = static_cast<long>(mb) * 1'000'000;
  // 99 characters and '\n': yes repeats the line, head cuts at N bytes.
  const std::string line(99, 'x');
  write_text(dir.path() / "master.yaml",
             "workers:\n  - {name: w1, type: local}\nbuilders:\n"
             "  - {name: b1, workers: [w1], steps: [{type: shell, name: spew, command: \"yes " +
                 line + " | head -c " + std::to_string(bytes) + "\"}]}\n");
  BenchMaster master(dir.path());
  master.start();
  double step_started = 0;
  double finished = 0;
  int results = -1;
  int64_t buildid = 0;
  master.engine().events().subscribe("steps/+/started", [&](const std::string&, const json&) {
    step_started = now_s();
  });
  // The event goes out when the engine has handed the build's last writes
  // to the store, not when they are committed: the clock stops once a
  // Store::flush queued behind them completes, i.e. when the log is durable
  // (finish_log's chunk merging included).
  double durable = 0;
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json& e) {
    finished = now_s();
    results = e.value("results", -1);
    buildid = e.value("buildid", int64_t{0});
    master.store().flush([&](kiln::store::Status) {
      durable = now_s();
      master.stop_loop();
    });
  });
  // KILN_BENCH_TRACE=1: a timeline of RSS against lines committed, to see
  // where the log waits when memory is not flat.
  std::atomic<int64_t> committed{0};
  std::atomic<bool> done{false};
  master.engine().events().subscribe("logs/+/append", [&](const std::string&, const json& e) {
    committed = e.value("last_line", int64_t{0}) + 1;
  });
  std::thread tracer;
  if (std::getenv("KILN_BENCH_TRACE")) {
    tracer = std::thread([&] {
      const double t0 = now_s();
      while (!done) {
        std::fprintf(stderr, "trace: %6.0f ms RSS %6.1f MiB (anon %.1f, file %.1f), lines committed %8lld\n",
                     (now_s() - t0) * 1000, mib(proc_status_kib("VmRSS")), mib(proc_status_kib("RssAnon")), mib(proc_status_kib("RssFile")),
                     static_cast<long long>(committed.load()));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }
  const double cpu0 = cpu_s(RUSAGE_SELF);
  master.engine().add_buildset({{"builders", {"b1"}}}, [](kiln_status status, json value) {
    if (status != KILN_OK) die("add_buildset: " + value.dump());
  });
  const bool ran = master.run(600);
  if (!ran) die("the build did not finish");
  const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
  if (results != KILN_SUCCESS) die("the build ended with results " + std::to_string(results));

  // The store must hold every line, or the figure would be flattering.
  json steps = master.get("builds/" + std::to_string(buildid) + "/steps");
  json logs = master.get("steps/" + std::to_string(steps.at(0).at("stepid").get<int64_t>()) + "/logs");
  int64_t lines = 0;
  for (const auto& l : logs) lines += l.value("num_lines", int64_t{0});
  done = true;
  if (tracer.joinable()) tracer.join();

  Run run;
  run.mb = mb;
  run.mb_per_s = mb / (durable - step_started);
  run.hwm_mib = mib(proc_status_kib("VmHWM"));
  std::printf("log_ingest: %d MB (%lld lines stored, %lld expected) in %.2f s = %.0f MB/s to "
              "committed (%.0f MB/s to the builds/N/finished event); master CPU %.2f s (%.1f "
              "ms/MB); peak RSS (VmHWM) %.1f MiB\n",
              mb, static_cast<long long>(lines), static_cast<long long>(bytes / 100),
              durable - step_started, run.mb_per_s, mb / (finished - step_started), cpu,
              cpu * 1000 / mb, run.hwm_mib);
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    Run r = run_once(std::atoi(argv[1]));
    std::printf("raw: %g %g %g\n", r.mb, r.mb_per_s, r.hwm_mib);
    return 0;
  }
  // Each size in a fresh process: VmHWM never goes down.
  std::vector<Run> runs;
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  for (const char* size : {"20", "100"}) {
    const std::string command = "'" + self + "' " + size;
    std::unique_ptr<FILE, int (*)(FILE*)> child(::popen(command.c_str(), "r"), ::pclose);
    if (!child) die("popen");
    char line[1024];
    Run r;
    while (std::fgets(line, sizeof line, child.get())) {
      if (std::sscanf(line, "raw: %lf %lf %lf", &r.mb, &r.mb_per_s, &r.hwm_mib) == 3) continue;
      std::fputs(line, stdout);
    }
    if (r.mb == 0) die(std::string("the ") + size + " MB run failed");
    runs.push_back(r);
  }
  std::printf("log_ingest: peak RSS %.1f MiB at 20 MB vs %.1f MiB at 100 MB (x%.2f for 5x the log)\n",
              runs[0].hwm_mib, runs[1].hwm_mib, runs[1].hwm_mib / runs[0].hwm_mib);
  summary("log ingest",
          format("%.0f MB/s at 100 MB; peak RSS %.1f MiB (20 MB) / ", runs[1].mb_per_s,
                 runs[0].hwm_mib) +
              format("%.1f MiB (100 MB)", runs[1].hwm_mib),
          ">= 250 MB/s, flat memory (Buildbot 11 MB/s, 194 MiB)");
  return 0;
}
