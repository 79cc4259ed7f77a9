// Benchmark: how fast a single-branch scheduler classifies changes. N
// changes (4 in 5 on its branch `main`, the rest on other branches; 1 in 4
// touching only docs/, which file_is_important calls unimportant) are added
// through Engine::add_change, all at once, with a tree-stable timer long
// enough that no buildset is made. The clock stops when the scheduler's
// `describe` lists every change on main as kept and the store has committed
// what it wrote (the kept list is plugin state, written as the changes come).
// Figures: changes/s end to end (stored, delivered, filtered, classified,
// kept), and for comparison the rate of the same adds with no scheduler.
//
//   bench_classify [changes=10000]

#include "bench_common.h"

#include <functional>

using namespace kiln::bench;

namespace {

json change_number(int i) {
  const bool on_main = i % 5 != 4;
  const bool docs_only = i % 4 == 3;
  json files = docs_only ? json{"docs/guide.md", "docs/api/" + std::to_string(i % 50) + ".md"}
                         : json{"src/module" + std::to_string(i % 37) + ".c", "docs/guide.md"};
  return {{"author", "Dev " + std::to_string(i % 13) + " <dev@example.org>"},
          {"comments", "change " + std::to_string(i)},
          {"revision", std::to_string(100000 + i)},
          {"branch", on_main ? "main" : "feature-" + std::to_string(i % 7)},
          {"repository", "https://example.org/repo.git"},
          {"project", "bench"},
          {"files", std::move(files)}};
}

struct Run {
  double seconds = 0;
  double cpu_s = 0;
  size_t kept = 0;
};

// Adds `n` changes and waits until `done_when` says the master is through.
Run add_all(BenchMaster& master, int n, const std::function<void(std::function<void()> finished)>& wait_done) {
  auto& engine = master.engine();
  Run run;
  const double cpu0 = cpu_s(RUSAGE_SELF);
  const double t0 = now_s();
  int answered = 0;
  master.loop().post([&] {
    for (int i = 0; i < n; ++i) {
      engine.add_change(change_number(i), [&](kiln_status status, json value) {
        if (status != KILN_OK) die("add_change: " + value.dump());
        if (++answered == n) {
          wait_done([&] {
            // Clocks stop when the store has committed the last write.
            master.store().flush([&](kiln::store::Status) { master.stop_loop(); });
          });
        }
      });
    }
  });
  if (!master.run(600)) die("timed out after " + std::to_string(answered) + " changes were added");
  run.seconds = now_s() - t0;
  run.cpu_s = cpu_s(RUSAGE_SELF) - cpu0;
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 10000;
  int on_main = 0;
  for (int i = 0; i < n; ++i) on_main += change_number(i)["branch"] == "main" ? 1 : 0;

  Run plain;
  {
    TempDir dir("kiln-bench-classify-plain");
    write_text(dir.path() / "master.yaml", R"yaml(
workers:
  - {name: w1, type: local}
builders:
  - {name: b1, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml");
    BenchMaster master(dir.path());
    master.start();
    plain = add_all(master, n, [](std::function<void()> finished) { finished(); });
  }

  TempDir dir("kiln-bench-classify");
  write_text(dir.path() / "master.yaml", R"yaml(
workers:
  - {name: w1, type: local}
schedulers:
  - name: main
    type: single-branch
    branch: main
    tree_stable_timer: 3600
    file_is_important: {exclude: ["docs/**"]}
    builders: [b1]
builders:
  - {name: b1, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml");
  BenchMaster master(dir.path());
  master.start();
  size_t kept = 0;
  Run classified = add_all(master, n, [&](std::function<void()> finished) {
    // The scheduler hears of each change once it is stored: ask until it
    // has kept them all.
    auto ask = std::make_shared<std::function<void()>>();
    *ask = [&, ask, finished] {
      master.engine().control("schedulers/main", "describe", json::object(),
                              [&, ask, finished](kiln_status status, json value) {
                                if (status != KILN_OK) die("describe: " + value.dump());
                                kept = value.value("pending", json::array()).size();
                                if (kept >= static_cast<size_t>(on_main)) return finished();
                                master.loop().start_timer(1, 0, [ask] { (*ask)(); });
                              });
    };
    (*ask)();
  });
  if (kept != static_cast<size_t>(on_main)) {
    die("the scheduler kept " + std::to_string(kept) + " changes, not the " + std::to_string(on_main) + " on main");
  }
  const json buildsets = master.get("buildsets");
  if (!buildsets.empty()) die("a buildset was made before the tree-stable timer ran out");

  std::printf("classify: %d changes (%d on main, kept; the rest filtered out), %.2f s: %.0f changes/s, "
              "master CPU %.1f us/change\n",
              n, on_main, classified.seconds, n / classified.seconds, classified.cpu_s / n * 1e6);
  std::printf("classify: the same adds without a scheduler: %.2f s: %.0f changes/s, master CPU %.1f us/change\n",
              plain.seconds, n / plain.seconds, plain.cpu_s / n * 1e6);
  summary("scheduler fed 10,000 changes",
          format("%.0f changes/s classified (%.0f changes/s stored without a scheduler)", n / classified.seconds,
                 n / plain.seconds),
          "- (Buildbot 3.7: not measured)");
  return 0;
}
