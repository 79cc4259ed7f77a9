// Benchmark 1: throughput of trivial builds. 4 builders share 4 local
// workers (max_builds 2 each, so 8 builds at once); every build is one shell
// step running `true`. N buildsets go in round-robin over the builders at
// once and the clock stops when the last build has finished.
//
//   bench_trivial_builds [N=2000]

#include "bench_common.h"

using namespace kiln::bench;

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  TempDir dir("kiln-bench-trivial");
  // Every buildset is to become a build of its own: without this the
  // default collapsing merges the queued requests of each builder into one.
  write_text(dir.path() / "master.yaml", R"yaml(
master: {collapse_requests: false}
workers:
  - {name: w1, type: local, max_builds: 2}
  - {name: w2, type: local, max_builds: 2}
  - {name: w3, type: local, max_builds: 2}
  - {name: w4, type: local, max_builds: 2}
builders:
  - {name: b1, workers: [w1, w2, w3, w4], steps: [{type: shell, command: ["true"]}]}
  - {name: b2, workers: [w1, w2, w3, w4], steps: [{type: shell, command: ["true"]}]}
  - {name: b3, workers: [w1, w2, w3, w4], steps: [{type: shell, command: ["true"]}]}
  - {name: b4, workers: [w1, w2, w3, w4], steps: [{type: shell, command: ["true"]}]}
)yaml");
  BenchMaster master(dir.path());
  master.start();

  int finished = 0;
  int succeeded = 0;
  double end = 0;
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json& e) {
    ++finished;
    if (e.value("results", -1) == KILN_SUCCESS) ++succeeded;
    if (finished == n) {
      // The event precedes the commit of the build's end: count to durable.
      master.store().flush([&](kiln::store::Status) {
        end = now_s();
        master.stop_loop();
      });
    }
  });

  const double cpu0 = cpu_s(RUSAGE_SELF);
  const double child0 = cpu_s(RUSAGE_CHILDREN);
  const auto stats0 = master.store().stats();
  const double start = now_s();
  const char* builders[] = {"b1", "b2", "b3", "b4"};
  for (int i = 0; i < n; ++i) {
    master.engine().add_buildset({{"builders", {builders[i % 4]}}, {"reason", "bench"}},
                                 [](kiln_status status, json value) {
                                   if (status != KILN_OK) die("add_buildset: " + value.dump());
                                 });
  }
  if (!master.run(n < 500 ? 20 : 600)) {
    die("timed out with " + std::to_string(finished) + " builds finished; engine status: " +
        master.engine().status().dump());
  }
  const double cpu = cpu_s(RUSAGE_SELF) - cpu0;
  const double child = cpu_s(RUSAGE_CHILDREN) - child0;
  const auto stats = master.store().stats();

  const double wall = end - start;
  std::printf("trivial_builds: %d builds in %.2f s = %.0f builds/s; master CPU %.2f ms/build "
              "(children %.2f ms/build); %d succeeded\n",
              n, wall, n / wall, cpu * 1000 / n, child * 1000 / n, succeeded);
  std::printf("trivial_builds: store: %.1f write transactions/build, %.1f writes/build, "
              "%.1f reads/build; peak RSS %.1f MiB\n",
              double(stats.write_transactions - stats0.write_transactions) / n,
              double(stats.writes - stats0.writes) / n, double(stats.reads - stats0.reads) / n,
              mib(proc_status_kib("VmHWM")));
  summary("trivial builds", format("%.0f builds/s, %.2f ms master CPU/build", n / wall, cpu * 1000 / n),
          ">= 500 builds/s, <= 1 ms (Buildbot 8.3/s, 114 ms)");
  return succeeded == n ? 0 : 1;
}
