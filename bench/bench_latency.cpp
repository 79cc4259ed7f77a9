// Benchmark 2: how long from a submission to the build running, with an
// idle worker waiting. One builder, one local worker; each of 20 sequential
// rounds calls Engine::add_buildset and stops the clock on the matching
// `builds/N/new` event, then waits for that build to finish before the next
// round. Then as many rounds of Engine::add_change, timed to its
// `changes/N/new` event and to the `builds/N/new` of the build a
// single-branch scheduler starts for it (no tree-stable timer), each round
// waiting for that build to finish.
//
//   bench_latency [rounds=20]

#include "bench_common.h"

#include <functional>

using namespace kiln::bench;

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 20;
  TempDir dir("kiln-bench-latency");
  write_text(dir.path() / "master.yaml", R"yaml(
workers:
  - {name: w1, type: local, max_builds: 1}
schedulers:
  - {name: on-main, type: single-branch, branch: main, builders: [b1]}
builders:
  - {name: b1, workers: [w1], steps: [{type: shell, command: ["true"]}]}
)yaml");
  BenchMaster master(dir.path());
  master.start();
  auto& engine = master.engine();

  // One untimed round first: the first build creates the builder's folder.
  std::vector<double> to_build_new;   // add_buildset -> builds/N/new
  std::vector<double> to_submitted;   // add_buildset -> its completion (durable)
  int round = -1;
  double submitted_at = 0;
  bool changes_phase = false;  // the second half: changes through the scheduler
  std::function<void()> submit = [&] {
    ++round;
    if (round > rounds) {
      master.stop_loop();
      return;
    }
    submitted_at = now_s();
    engine.add_buildset({{"builders", {"b1"}}}, [&](kiln_status status, json value) {
      if (status != KILN_OK) die("add_buildset: " + value.dump());
      if (round > 0) to_submitted.push_back((now_s() - submitted_at) * 1000);
    });
  };
  std::vector<double> to_change;        // add_change -> changes/N/new
  std::vector<double> to_change_build;  // add_change -> builds/N/new through the scheduler
  int change_round = -1;
  double change_at = 0;
  std::function<void()> add_change;
  engine.events().subscribe("builds/+/new", [&](const std::string&, const json&) {
    if (!changes_phase && round > 0) to_build_new.push_back((now_s() - submitted_at) * 1000);
    if (changes_phase && change_round > 0) to_change_build.push_back((now_s() - change_at) * 1000);
  });
  engine.events().subscribe("builds/+/finished", [&](const std::string&, const json&) {
    master.loop().post(changes_phase ? add_change : submit);
  });
  master.loop().post(submit);
  if (!master.run(120)) die("timed out in round " + std::to_string(round));

  changes_phase = true;
  add_change = [&] {
    ++change_round;
    if (change_round > rounds) {
      master.stop_loop();
      return;
    }
    change_at = now_s();
    engine.add_change({{"author", "Ann <ann@example.org>"},
                       {"comments", "change " + std::to_string(change_round)},
                       {"revision", std::to_string(1000 + change_round)},
                       {"branch", "main"},
                       {"repository", "https://example.org/repo.git"},
                       {"project", "bench"},
                       {"files", {"src/a.c", "src/b.c"}}},
                      [&](kiln_status status, json value) {
                        if (status != KILN_OK) die("add_change: " + value.dump());
                      });
  };
  engine.events().subscribe("changes/+/new", [&](const std::string&, const json&) {
    if (change_round > 0) to_change.push_back((now_s() - change_at) * 1000);
  });
  master.loop().post(add_change);
  if (!master.run(120)) die("timed out in change round " + std::to_string(change_round));

  std::printf("latency: add_buildset -> builds/N/new over %zu rounds: median %.2f ms, p90 %.2f ms, "
              "max %.2f ms\n",
              to_build_new.size(), quantile(to_build_new, 0.5), quantile(to_build_new, 0.9),
              quantile(to_build_new, 1.0));
  std::printf("latency: add_buildset -> buildset committed (its completion): median %.2f ms, "
              "p90 %.2f ms\n",
              quantile(to_submitted, 0.5), quantile(to_submitted, 0.9));
  std::printf("latency: add_change -> changes/N/new: median %.2f ms, p90 %.2f ms\n",
              quantile(to_change, 0.5), quantile(to_change, 0.9));
  std::printf("latency: add_change -> builds/N/new through a single-branch scheduler over %zu "
              "rounds: median %.2f ms, p90 %.2f ms, max %.2f ms\n",
              to_change_build.size(), quantile(to_change_build, 0.5), quantile(to_change_build, 0.9),
              quantile(to_change_build, 1.0));
  summary("change -> build started",
          format("median %.2f ms, p90 %.2f ms (add_change -> scheduler -> builds/N/new)",
                 quantile(to_change_build, 0.5), quantile(to_change_build, 0.9)),
          "<= 2 ms (Buildbot 56 ms)");
  return 0;
}
