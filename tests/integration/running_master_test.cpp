// A master started with `kiln start` (daemon mode) and driven through the
// commands that talk to its control socket: start/stop, force, data,
// status, sendchange.

#include "kiln_process.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <regex>

namespace kiln::integration {
namespace {

using nlohmann::json;

// Build `number` of `builder`, once it is complete.
std::optional<json> wait_for_complete_build(const MasterDir& master, const std::string& builder,
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

TEST_CASE("start detaches promptly with a pid file and a log, refuses a second start, and stop "
          "cleans up") {
  MasterDir master;
  REQUIRE(run_kiln({"create-master", master.str()}).exit_code == 0);

  const auto before = std::chrono::steady_clock::now();
  RunResult started = master.start();
  const auto took = std::chrono::steady_clock::now() - before;
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);
  CHECK(took < 10s);
  REQUIRE(master.pid());
  const pid_t pid = *master.pid();
  CHECK(process_alive(pid));
  CHECK(fs::exists(master.file("kiln.log")));
  CHECK(fs::exists(master.file("kiln.sock")));

  RunResult second = master.start();
  INFO(second.describe());
  CHECK(second.exit_code != 0);
  CHECK_THAT(second.err, Catch::Contains("already running"));
  CHECK(master.pid() == pid);
  CHECK(process_alive(pid));

  RunResult stopped = master.stop();
  INFO(stopped.describe());
  CHECK(stopped.exit_code == 0);
  CHECK(wait_until([&] { return !process_alive(pid); }));
  CHECK_FALSE(fs::exists(master.file("kiln.pid")));
  CHECK_FALSE(fs::exists(master.file("kiln.sock")));
}

TEST_CASE("the quickstart master runs a forced build of hello and reports its output and status") {
  MasterDir master;
  fs::copy_file(fs::path(KILN_SOURCE_DIR) / "examples" / "quickstart" / "master.yaml",
                master.file("master.yaml"));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult forced = run_kiln({"force", master.str(), "hello"});
  INFO(forced.describe());
  REQUIRE(forced.exit_code == 0);
  REQUIRE(forced_request_id(forced.out));

  auto build = wait_for_complete_build(master, "hello", 1);
  REQUIRE(build);
  INFO(build->dump());
  CHECK((*build)["results"] == 0);
  CHECK_THAT(build_stdout(master, (*build)["buildid"].get<int64_t>()),
             Catch::Contains("hello from hello"));

  RunResult status = run_kiln({"status", master.str()});
  INFO(status.describe());
  CHECK(status.exit_code == 0);
  for (const char* builder : {"check-sh", "check-bash"}) {
    CHECK(std::regex_search(status.out, std::regex(std::string("\\n") + builder + " +0 +- +-\\n")));
  }
  CHECK(std::regex_search(status.out, std::regex(R"(\nhello +0 +- +#1 success)")));
  for (const char* worker : {"local-1", "local-2"}) {
    CHECK(std::regex_search(status.out, std::regex(std::string("\\n") + worker + " +yes +0/2\\n")));
  }
}

TEST_CASE("forcing an unknown builder is refused by name and the master keeps serving") {
  MasterDir master;
  master.write_config(one_builder_config("quick", "[echo, done]"));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult bad = run_kiln({"force", master.str(), "nosuchbuilder"});
  INFO(bad.describe());
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("nosuchbuilder"));
  REQUIRE(master.pid());
  CHECK(process_alive(*master.pid()));

  RunResult good = run_kiln({"force", master.str(), "quick"});
  INFO(good.describe());
  REQUIRE(good.exit_code == 0);
  auto build = wait_for_complete_build(master, "quick", 1);
  REQUIRE(build);
  CHECK((*build)["results"] == 0);
}

TEST_CASE("sendchange adds a change with the given fields and refuses a malformed one") {
  MasterDir master;
  master.write_config(one_builder_config("quick", "[echo, done]"));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult sent = run_kiln({"sendchange", master.str(), "--who", "Ann <ann@example.org>",
                             "--branch", "main", "--revision", "abc123", "--comments", "fix",
                             "a.c", "b.c"});
  INFO(sent.describe());
  REQUIRE(sent.exit_code == 0);
  CHECK(sent.out == "change 1 added\n");

  json changes = master.data("changes");
  INFO(changes.dump(2));
  REQUIRE(changes.is_array());
  REQUIRE(changes.size() == 1);
  const json& change = changes[0];
  CHECK(change.value("author", "") == "Ann <ann@example.org>");
  CHECK(change.value("branch", "") == "main");
  CHECK(change.value("revision", "") == "abc123");
  CHECK(change.value("comments", "") == "fix");
  CHECK(change.value("files", json()) == json::array({"a.c", "b.c"}));

  RunResult bad = run_kiln({"sendchange", master.str(), "--who", "Ann <ann@example.org>",
                            "--when", "notanumber", "a.c"});
  INFO(bad.describe());
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("--when") && Catch::Contains("notanumber"));

  // Still serving, and the refused change left no trace.
  RunResult status = run_kiln({"status", master.str()});
  INFO(status.describe());
  CHECK(status.exit_code == 0);
  json after = master.data("changes");
  CHECK(after.is_array());
  CHECK(after.size() == 1);
}

// Known bug: sendchange_call (core/cli/control_client.cpp) checks only that
// --when is finite and not negative, then casts the double to int64_t; a
// value past 2^63 is undefined behaviour and arrives as INT64_MIN.
TEST_CASE("sendchange refuses a --when beyond the range of a timestamp", "") {
  MasterDir master;
  master.write_config(one_builder_config("quick", "[echo, done]"));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult sent =
      run_kiln({"sendchange", master.str(), "--who", "Ann", "--when", "1e300", "a.c"});
  INFO(sent.describe());
  json changes = master.data("changes");
  INFO(changes.dump(2));
  CHECK(sent.exit_code != 0);
  CHECK_THAT(sent.err, Catch::Contains("--when"));
  CHECK(changes == json::array());
}

}  // namespace
}  // namespace kiln::integration
