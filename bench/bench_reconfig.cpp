// Benchmark 7: `kiln reconfig` of a 1,000-builder master that changes one
// builder's step, while a build runs on another builder. Timed the way
// Master::reconfigure does it: master.yaml read, config checked against the
// loaded plugins, Engine::reconfigure until its answer. Then the running
// build must finish SUCCESS as the one build of its builder (not
// interrupted, not restarted), and the changed builder must run the new
// step.
//
//   bench_reconfig [builders=1000] [rounds=5]

#include "bench_common.h"

#include <sstream>

using namespace kiln::bench;

namespace {

std::string master_yaml(int builders, const std::string& changed_command) {
  std::ostringstream y;
  y << "workers:\n";
  for (int w = 1; w <= 4; ++w) y << "  - {name: w" << w << ", type: local, max_builds: 2}\n";
  y << "builders:\n";
  // builder-0 runs the long build that the reconfig must leave alone.
  y << "  - {name: builder-0, workers: [w1], steps: [{type: shell, name: wait, command: [sleep, '2']}]}\n";
  for (int b = 1; b < builders; ++b) {
    const std::string command = b == builders / 2 ? changed_command : "[make, -j2, all]";
    y << "  - {name: builder-" << b << ", workers: [w" << (b % 4 + 1)
      << "], steps: [{type: shell, name: compile, command: " << command << "}]}\n";
  }
  return y.str();
}

struct Timing {
  double read_ms = 0, check_ms = 0, engine_ms = 0;
  double total_ms() const { return read_ms + check_ms + engine_ms; }
};

}  // namespace

int main(int argc, char** argv) {
  const int builders = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  TempDir dir("kiln-bench-reconfig");
  const fs::path yaml = dir.path() / "master.yaml";
  write_text(yaml, master_yaml(builders, "[make, -j2, all]"));
  BenchMaster master(dir.path());
  master.start();
  auto& engine = master.engine();

  int builds_started = 0;
  json finished_build;
  engine.events().subscribe("builds/+/new", [&](const std::string&, const json&) {
    ++builds_started;
    master.stop_loop();
  });
  engine.events().subscribe("builds/+/finished", [&](const std::string&, const json& build) {
    finished_build = build;
    master.stop_loop();
  });
  engine.add_buildset({{"builders", {"builder-0"}}}, [&](kiln_status status, json value) {
    if (status != KILN_OK) die("add_buildset: " + value.dump());
  });
  if (!master.run(30) || builds_started != 1) die("the long build did not start");

  std::vector<Timing> timings;
  json last_answer;
  for (int round = 0; round < rounds; ++round) {
    // Alternate so every round really changes the builder.
    write_text(yaml, master_yaml(builders, round % 2 == 0 ? "[echo, changed]" : "[make, -j2, all]"));
    Timing t;
    double at = now_s();
    auto read = kiln::config::read_config_document(yaml);
    for (const auto& d : read.errors) die(d.to_string());
    t.read_ms = (now_s() - at) * 1000;
    at = now_s();
    auto checked = kiln::config::check_master_config(*read.document, master.registry());
    for (const auto& d : checked.errors) die(d.to_string());
    t.check_ms = (now_s() - at) * 1000;
    at = now_s();
    bool answered = false;
    engine.reconfigure(std::move(*checked.config), [&](json answer) {
      last_answer = std::move(answer);
      answered = true;
      master.stop_loop();
    });
    if (!answered && !master.run(30)) die("reconfig did not answer");
    t.engine_ms = (now_s() - at) * 1000;
    if (!last_answer.value("ok", false)) die("reconfig refused: " + last_answer.dump());
    timings.push_back(t);
    if (!finished_build.is_null()) die("the running build finished during the reconfigs");
  }
  std::printf("reconfig: %d builders, one builder's step changed, %d rounds; last answer's "
              "changes: %s\n",
              builders, rounds, last_answer.value("changes", json::array()).dump().c_str());
  std::vector<double> totals, engine_only;
  for (const auto& t : timings) {
    std::printf("reconfig: read %.1f ms, check %.1f ms, Engine::reconfigure %.1f ms = %.1f ms\n",
                t.read_ms, t.check_ms, t.engine_ms, t.total_ms());
    totals.push_back(t.total_ms());
    engine_only.push_back(t.engine_ms);
  }

  // The build that ran through every reconfig ends on its own, untouched.
  if (finished_build.is_null() && !master.run(30)) die("the long build never finished");
  const json builds = master.get("builders/builder-0/builds");
  const bool undisturbed = builds.size() == 1 && finished_build.value("results", -1) == 0;
  std::printf("reconfig: the build running during the reconfigs: %zu build(s) of builder-0, "
              "result %d -> %s\n",
              builds.size(), finished_build.value("results", -1),
              undisturbed ? "undisturbed" : "DISTURBED");
  summary("reconfig, 1,000 builders, one changed",
          format("median %.0f ms (engine %.1f ms), max %.0f ms", quantile(totals, 0.5),
                 quantile(engine_only, 0.5), quantile(totals, 1.0)) +
              (undisturbed ? "; running build undisturbed" : "; running build DISTURBED"),
          "<= 500 ms, none disturbed (Buildbot 20-50 s)");
  return 0;
}
