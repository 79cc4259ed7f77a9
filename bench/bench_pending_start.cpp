// Benchmark 4: a master restarting over a long queue. The store is first
// filled directly with 25,000 buildsets (one build request each) spread
// over 10 builders while no master runs; then a fresh master starts on it:
// config, plugins, store open, and Engine::start (crash recovery, builders
// and workers registered, the whole queue read). The one local worker
// (max_builds 1) then takes the first request: the time to that build's
// `builds/N/new` is printed too.
//
//   bench_pending_start [requests=25000] [builders=10]

#include "bench_common.h"

#include <sstream>

using namespace kiln::bench;

int main(int argc, char** argv) {
  const int requests = argc > 1 ? std::atoi(argv[1]) : 25000;
  const int builders = argc > 2 ? std::atoi(argv[2]) : 10;
  TempDir dir("kiln-bench-pending");
  std::ostringstream yaml;
  yaml << "workers:\n  - {name: w1, type: local, max_builds: 1}\nbuilders:\n";
  for (int b = 0; b < builders; ++b) {
    yaml << "  - {name: b" << b << ", workers: [w1], steps: [{type: shell, command: [\"true\"]}]}\n";
  }
  write_text(dir.path() / "master.yaml", yaml.str());

  {
    // No loop: completions run on the store thread; the calls are queued
    // without waiting, so group commit batches them as a busy master would.
    const double t = now_s();
    kiln::store::OpenOptions options;
    options.url = "sqlite:state.sqlite";
    options.base_dir = dir.path();
    options.mode = kiln::store::OpenMode::kCreate;
    auto opened = kiln::store::open_store(std::move(options));
    if (!opened.ok()) die(opened.status.message);
    auto& store = *opened.value;
    std::vector<int64_t> ids;
    for (int b = 0; b < builders; ++b) {
      auto id = store.ensure_builder_sync("b" + std::to_string(b), std::nullopt, {});
      if (!id.ok()) die(id.status.message);
      ids.push_back(id.value);
    }
    for (int i = 0; i < requests; ++i) {
      kiln::store::BuildsetRequest bs;
      bs.reason = "bench";
      bs.submitted_at = 1'700'000'000 + i;
      bs.builderids = {ids[static_cast<size_t>(i % builders)]};
      bs.sourcestamps.emplace_back();
      store.add_buildset(std::move(bs), [](kiln::store::Result<kiln::store::BuildsetIds> r) {
        if (!r.ok()) die("add_buildset: " + r.status.message);
      });
    }
    if (!store.wait().ok()) die("filling the store failed");
    std::printf("pending_start: filled the store with %d pending requests on %d builders in %.2f s\n",
                requests, builders, now_s() - t);
  }

  BenchMaster master(dir.path());
  const double before_start = now_s();
  master.start();
  const auto& p = master.phases();
  double first_build_ms = -1;
  master.engine().events().subscribe("builds/+/new", [&](const std::string&, const json&) {
    if (first_build_ms < 0) first_build_ms = (now_s() - before_start) * 1000;
    master.stop_loop();
  });
  if (!master.run(600)) die("no build started");
  auto pending = master.store().pending_requests_sync(std::nullopt, 0);
  std::printf("pending_start: %d pending requests: config read %.1f ms, plugins %.1f ms, check "
              "%.1f ms, store open %.1f ms, Engine::start %.1f ms = %.1f ms; first build "
              "started %.1f ms after Engine::start began; RSS %.1f MiB; %zu still pending\n",
              requests, p.read_ms, p.plugins_ms, p.check_ms, p.store_ms, p.engine_ms,
              p.total_ms(), first_build_ms, mib(proc_status_kib("VmRSS")),
              pending.ok() ? pending.value.size() : size_t{0});
  summary("start with 25,000 pending requests",
          format("Engine::start %.0f ms (all phases %.0f ms), first build at %.0f ms", p.engine_ms,
                 p.total_ms(), first_build_ms),
          "<= 2 s (Buildbot ~8 min)");
  return 0;
}
