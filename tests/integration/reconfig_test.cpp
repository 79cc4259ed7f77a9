// `kiln reconfig`, SIGHUP and `kiln restart` against a real running master:
// added builders take effect, a running build is never disturbed, a broken
// configuration changes nothing.

#include "kiln_process.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <thread>
#include <fstream>
#include <sstream>

namespace kiln::integration {
namespace {

using nlohmann::json;

// `slow` waits until the file `release` exists.
std::string two_builders(const fs::path& release, const std::string& second_builder_steps) {
  return R"yaml(
workers:
  - {name: w1, type: local, max_builds: 4}
schedulers:
  - {name: force, type: force, builders: [slow, other]}
builders:
  - name: slow
    workers: [w1]
    steps:
      - {type: shell, name: wait, command: ["sh", "-c", "while [ ! -e ')yaml" + release.string() + R"yaml(' ]; do sleep 0.05; done; echo released"]}
  - name: other
    workers: [w1]
    steps:
)yaml" + second_builder_steps;
}

std::optional<json> complete_build(const MasterDir& master, const std::string& builder,
                                   int64_t number) {
  std::optional<json> found;
  master.wait_for_data("builders/" + builder + "/builds", [&](const json& builds) {
    for (const auto& b : builds) {
      if (b.value("number", int64_t{0}) == number && b.value("complete", false)) {
        found = b;
        return true;
      }
    }
    return false;
  });
  return found;
}

std::string log_text(const MasterDir& master) {
  std::ifstream in(master.file("kiln.log"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST_CASE("reconfig adds and changes builders while a running build goes on undisturbed") {
  MasterDir master;
  master.write_config(two_builders(master.file("release"), "      - {type: shell, name: one, command: \"echo first\"}\n"));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  // A build of `slow` waits for a file in its workdir, across the reconfig.
  RunResult forced = run_kiln({"force", master.str(), "slow"});
  INFO(forced.describe());
  REQUIRE(forced.exit_code == 0);
  REQUIRE(master.wait_for_data("builds", [](const json& builds) {
    return builds.size() == 1 && !builds[0].value("complete", true);
  }));

  master.write_config(
      two_builders(master.file("release"), "      - {type: shell, name: two, command: \"echo second\"}\n") + R"yaml(
  - name: added
    workers: [w1]
    steps:
      - {type: shell, name: hello, command: "echo from the added builder"}
)yaml");
  // The force scheduler above does not name `added`; a second one does.
  {
    std::ifstream in(master.file("master.yaml"));
    std::stringstream yaml;
    yaml << in.rdbuf();
    std::string text = yaml.str();
    const std::string from = "  - {name: force, type: force, builders: [slow, other]}\n";
    text.replace(text.find(from), from.size(),
                 from + "  - {name: force-added, type: force, builders: [added]}\n");
    master.write_config(text);
  }
  RunResult reconfig = run_kiln({"reconfig", master.str()});
  INFO(reconfig.describe());
  REQUIRE(reconfig.exit_code == 0);
  CHECK_THAT(reconfig.out, Catch::Contains("builder 'added' added"));
  CHECK_THAT(reconfig.out, Catch::Contains("builder 'other' changed"));
  CHECK_THAT(reconfig.out, Catch::Contains("scheduler 'force-added' added"));
  CHECK_THAT(reconfig.out, !Catch::Contains("worker"));

  // The new builder builds; the changed one runs its new step.
  REQUIRE(run_kiln({"force", master.str(), "added"}).exit_code == 0);
  auto added = complete_build(master, "added", 1);
  REQUIRE(added);
  CHECK(added->value("results", -1) == 0);
  CHECK_THAT(build_stdout(master, added->value("buildid", int64_t{0})),
             Catch::Contains("from the added builder"));
  REQUIRE(run_kiln({"force", master.str(), "other"}).exit_code == 0);
  auto other = complete_build(master, "other", 1);
  REQUIRE(other);
  CHECK_THAT(build_stdout(master, other->value("buildid", int64_t{0})), Catch::Contains("second"));

  // The slow build started before the reconfig is still running, then ends
  // well when released.
  auto builds = master.data("builders/slow/builds");
  REQUIRE(builds.size() == 1);
  CHECK_FALSE(builds[0].value("complete", true));
  std::ofstream(master.file("release")) << "go";
  auto slow = complete_build(master, "slow", 1);
  REQUIRE(slow);
  CHECK(slow->value("results", -1) == 0);
}

TEST_CASE("a reconfig with a broken master.yaml is refused with its errors and changes nothing") {
  MasterDir master;
  master.write_config(one_builder_config("b", "[\"true\"]"));
  REQUIRE(master.start().exit_code == 0);

  master.write_config(one_builder_config("b", "[\"true\"]") +
                      "  - name: broken\n    workers: [nobody]\n    steps: []\n");
  RunResult reconfig = run_kiln({"reconfig", master.str()});
  INFO(reconfig.describe());
  CHECK(reconfig.exit_code == 1);
  CHECK_THAT(reconfig.err, Catch::Contains("master.yaml:") && Catch::Contains("nobody"));
  CHECK_THAT(reconfig.err, Catch::Contains("keeps running the previous one"));

  auto builders = master.data("builders");
  REQUIRE(builders.is_array());
  CHECK(builders.size() == 1);
  REQUIRE(run_kiln({"force", master.str(), "b"}).exit_code == 0);
  auto build = complete_build(master, "b", 1);
  REQUIRE(build);
  CHECK(build->value("results", -1) == 0);
}

TEST_CASE("a reconfig naming a type of a plugin library the master unloaded at start loads it "
          "again") {
  MasterDir master;
  master.write_config(one_builder_config("b", "[\"true\"]"));
  REQUIRE(master.start().exit_code == 0);
  // Nothing at start names a type of kiln-schedulers.so: it was unloaded.
  CHECK_THAT(log_text(master), Catch::Contains("libraries unused by this configuration unloaded"));

  std::string yaml = one_builder_config("b", "[\"true\"]");
  const std::string from = "  - {name: force, type: force, builders: [b]}\n";
  yaml.replace(yaml.find(from), from.size(),
               from + "  - {name: every, type: periodic, period: 0.2, builders: [b]}\n");
  master.write_config(yaml);
  RunResult reconfig = run_kiln({"reconfig", master.str()});
  INFO(reconfig.describe());
  REQUIRE(reconfig.exit_code == 0);
  CHECK_THAT(reconfig.out, Catch::Contains("scheduler 'every' added"));
  CHECK_THAT(log_text(master), Catch::Contains("kiln-schedulers.so again for scheduler type 'periodic'"));
  // The periodic scheduler of the library loaded again builds.
  auto built = complete_build(master, "b", 1);
  REQUIRE(built);
  CHECK(built->value("results", -1) == 0);
}

TEST_CASE("SIGHUP reconfigures the master from master.yaml") {
  MasterDir master;
  master.write_config(one_builder_config("b", "[\"true\"]"));
  REQUIRE(master.start().exit_code == 0);
  REQUIRE(master.pid());

  std::string yaml = one_builder_config("b", "[\"true\"]");
  yaml.replace(yaml.find("builders: [b]"), 13, "builders: [b, late]");
  master.write_config(yaml +
                      "  - name: late\n    workers: [w1]\n    steps:\n"
                      "      - {type: shell, name: s, command: \"echo late\"}\n");
  REQUIRE(::kill(*master.pid(), SIGHUP) == 0);
  REQUIRE(wait_until([&] { return master.data("builders").size() == 2; }));
  CHECK(wait_until([&] { return log_text(master).find("reconfig done") != std::string::npos; }));
  REQUIRE(run_kiln({"force", master.str(), "late"}).exit_code == 0);
  auto build = complete_build(master, "late", 1);
  REQUIRE(build);
  CHECK(build->value("results", -1) == 0);
}

TEST_CASE("restart refuses a broken configuration and leaves the running master alone") {
  MasterDir master;
  master.write_config(one_builder_config("b", "[\"true\"]"));
  REQUIRE(master.start().exit_code == 0);
  REQUIRE(master.pid());
  const pid_t first = *master.pid();

  master.write_config("builders: [oops\n");
  RunResult refused = run_kiln({"restart", master.str()});
  INFO(refused.describe());
  CHECK(refused.exit_code == 1);
  CHECK(process_alive(first));

  master.write_config(one_builder_config("b", "[\"true\"]"));
  RunResult restarted = run_kiln({"restart", master.str()});
  INFO(restarted.describe());
  REQUIRE(restarted.exit_code == 0);
  REQUIRE(master.pid());
  CHECK(*master.pid() != first);
  CHECK(wait_until([&] { return process_gone(first); }));
  CHECK(process_alive(*master.pid()));
}

}  // namespace
}  // namespace kiln::integration

namespace kiln::integration {
namespace {

TEST_CASE("retention deletes builds older than a builder's build_horizon_days and keeps others") {
  MasterDir master;
  const std::string base = R"yaml(
workers:
  - {name: w1, type: local}
schedulers:
  - {name: force, type: force, builders: [kept, pruned]}
builders:
  - name: kept
    workers: [w1]
    steps:
      - {type: shell, name: s, command: "echo kept"}
  - name: pruned
    workers: [w1]
)yaml";
  master.write_config(base + "    steps:\n      - {type: shell, name: s, command: \"echo pruned\"}\n");
  REQUIRE(master.start().exit_code == 0);
  for (const char* builder : {"kept", "pruned"}) {
    REQUIRE(run_kiln({"force", master.str(), builder}).exit_code == 0);
    REQUIRE(complete_build(master, builder, 1));
  }
  // Horizons count whole seconds: let the builds be in the past.
  std::this_thread::sleep_for(1100ms);
  master.write_config(base + "    build_horizon_days: 0\n"
                             "    steps:\n      - {type: shell, name: s, command: \"echo pruned\"}\n");
  RunResult reconfig = run_kiln({"reconfig", master.str()});
  INFO(reconfig.describe());
  REQUIRE(reconfig.exit_code == 0);
  CHECK(master.wait_for_data("builders/pruned/builds", [](const json& b) { return b.empty(); }));
  CHECK(master.data("builders/kept/builds").size() == 1);
}

}  // namespace
}  // namespace kiln::integration

namespace kiln::integration {
namespace {

TEST_CASE("a worker whose basedir cannot be created is reported, the master runs, and a reconfig "
          "with a fixed basedir brings it up") {
  MasterDir master;
  // A regular file where the worker's folder should be.
  std::ofstream(master.file("blocker")) << "not a folder";
  std::string yaml = one_builder_config("b", "[\"true\"]");
  const std::string worker = "  - {name: w1, type: local, max_builds: 2}\n";
  std::string broken = yaml;
  broken.replace(broken.find(worker), worker.size(),
                 "  - {name: w1, type: local, max_builds: 2, basedir: blocker/w1}\n");
  master.write_config(broken);
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);
  RunResult status = run_kiln({"status", master.str()});
  INFO(status.describe());
  CHECK_THAT(status.out, Catch::Contains("cannot create basedir"));

  REQUIRE(run_kiln({"force", master.str(), "b"}).exit_code == 0);
  master.write_config(yaml);
  RunResult reconfig = run_kiln({"reconfig", master.str()});
  INFO(reconfig.describe());
  REQUIRE(reconfig.exit_code == 0);
  auto build = complete_build(master, "b", 1);
  REQUIRE(build);
  CHECK(build->value("results", -1) == 0);
}

}  // namespace
}  // namespace kiln::integration
