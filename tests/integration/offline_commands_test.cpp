// The `kiln` commands that need no running master: create-master,
// checkconfig, upgrade-master, plugins, --version. Each runs the real
// executable and checks what a user would see.

#include "kiln_process.h"

#include <kiln/plugin_api.h>

#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>

namespace kiln::integration {
namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The line of `kiln plugins` output whose TYPE column is `type`.
std::string listing_line(const std::string& listing, const std::string& type) {
  std::istringstream lines(listing);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string kind, name;
    if (words >> kind >> name && name == type) return line;
  }
  return {};
}

TEST_CASE("create-master writes a master.yaml that checkconfig accepts, and never overwrites it") {
  MasterDir master;
  const fs::path dir = master.path() / "new-master";

  RunResult created = run_kiln({"create-master", dir.string()});
  INFO(created.describe());
  REQUIRE(created.exit_code == 0);
  REQUIRE(fs::exists(dir / "master.yaml"));
  const std::string original = read_text(dir / "master.yaml");
  CHECK_THAT(created.out, Catch::Contains((dir / "master.yaml").string()));

  RunResult checked = run_kiln({"checkconfig", dir.string()});
  INFO(checked.describe());
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.out, Catch::Contains("is valid"));

  // A hand-edited file must survive a second create-master.
  {
    std::ofstream out(dir / "master.yaml", std::ios::app);
    out << "# my edit\n";
  }
  RunResult again = run_kiln({"create-master", dir.string()});
  INFO(again.describe());
  CHECK(again.exit_code != 0);
  CHECK_THAT(again.err, Catch::Contains("already exists"));
  CHECK(read_text(dir / "master.yaml") == original + "# my edit\n");
}

TEST_CASE("checkconfig reports every mistake at once, each with file, line and column") {
  MasterDir master;
  // Line numbers matter: the mistakes sit on lines 4, 11 and 13.
  master.write_config(
      "master:\n"                                                  // 1
      "  title: broken\n"                                          // 2
      "  db: sqlite:state.sqlite\n"                                // 3
      "  colour: blue\n"                                           // 4  unknown key
      "workers:\n"                                                 // 5
      "  - {name: w1, type: local}\n"                              // 6
      "schedulers:\n"                                              // 7
      "  - {name: force, type: force, builders: [b]}\n"            // 8
      "builders:\n"                                                // 9
      "  - name: b\n"                                              // 10
      "    workers: [w1, ghost-worker]\n"                          // 11 unknown worker
      "    steps:\n"                                               // 12
      "      - {type: frobnicate, name: s, command: [echo, hi]}\n");   // 13 unknown step type

  RunResult r = run_kiln({"checkconfig", master.str()});
  INFO(r.describe());
  CHECK(r.exit_code != 0);
  const std::string file = (master.path() / "master.yaml").string();
  // Each diagnostic is "FILE:LINE:COL: ...", on the line of its mistake.
  auto reported = [&](int line, const std::string& word) {
    std::regex pattern(std::regex_replace(file, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                       ":" + std::to_string(line) + ":[0-9]+:.*" + word);
    std::istringstream lines(r.err + r.out);
    std::string text;
    while (std::getline(lines, text)) {
      if (std::regex_search(text, pattern)) return true;
    }
    return false;
  };
  CHECK(reported(4, "colour"));
  CHECK(reported(11, "ghost-worker"));
  CHECK(reported(13, "frobnicate"));
}

TEST_CASE("upgrade-master creates the store of a fresh master and leaves an up-to-date one alone") {
  MasterDir master;
  REQUIRE(run_kiln({"create-master", master.str()}).exit_code == 0);
  const fs::path store = master.path() / "state.sqlite";
  REQUIRE_FALSE(fs::exists(store));

  RunResult first = run_kiln({"upgrade-master", master.str()});
  INFO(first.describe());
  CHECK(first.exit_code == 0);
  CHECK(fs::exists(store));
  CHECK_THAT(first.out, Catch::Contains("applying migration"));

  RunResult second = run_kiln({"upgrade-master", master.str()});
  INFO(second.describe());
  CHECK(second.exit_code == 0);
  CHECK(fs::exists(store));
  CHECK_THAT(second.out, !Catch::Contains("applying migration"));
}

TEST_CASE("plugins lists the shipped component types with their libraries and documents one") {
  RunResult list = run_kiln({"plugins"});
  INFO(list.describe());
  CHECK(list.exit_code == 0);
  const std::string local = listing_line(list.out, "local");
  const std::string shell = listing_line(list.out, "shell");
  const std::string force = listing_line(list.out, "force");
  CHECK_THAT(local, Catch::StartsWith("worker") && Catch::Contains("kiln-local-worker.so"));
  CHECK_THAT(shell, Catch::StartsWith("step") && Catch::Contains("kiln-std-steps.so"));
  CHECK_THAT(force, Catch::StartsWith("scheduler") && Catch::Contains("kiln-force-scheduler.so"));

  RunResult doc = run_kiln({"plugins", "shell"});
  INFO(doc.describe());
  CHECK(doc.exit_code == 0);
  CHECK_THAT(doc.out, Catch::Contains("step 'shell'"));
  CHECK_THAT(doc.out, Catch::Contains("command (required)"));
}

TEST_CASE("plugins refuses an unknown type and suggests the closest one") {
  RunResult far = run_kiln({"plugins", "nosuch"});
  INFO(far.describe());
  CHECK(far.exit_code != 0);
  CHECK_THAT(far.err, Catch::Contains("nosuch"));

  RunResult close = run_kiln({"plugins", "shel"});
  INFO(close.describe());
  CHECK(close.exit_code != 0);
  CHECK_THAT(close.err, Catch::Contains("did you mean 'shell'"));
}

TEST_CASE("kiln --version prints kiln's version and the plugin ABI it speaks") {
  RunResult r = run_kiln({"--version"});
  INFO(r.describe());
  CHECK(r.exit_code == 0);
  CHECK(std::regex_search(r.out, std::regex(R"(^kiln [0-9]+\.[0-9]+\.[0-9]+)")));
  CHECK_THAT(r.out, Catch::Contains("plugin ABI " + std::to_string(KILN_ABI_MAJOR) + "." +
                                    std::to_string(KILN_ABI_MINOR)));
}

}  // namespace
}  // namespace kiln::integration
