// Builds that do not end by themselves: stopped and cancelled through the
// CLI, and interrupted by a master killed with SIGKILL.

#include "kiln_process.h"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <iterator>

namespace kiln::integration {
namespace {

using nlohmann::json;

constexpr int kSuccess = 0;
constexpr int kRetry = 5;
constexpr int kCancelled = 6;

// The first step of `buildid`, once it has started.
std::optional<json> wait_for_running_step(const MasterDir& master, int64_t buildid) {
  auto steps = master.wait_for_data("builds/" + std::to_string(buildid) + "/steps",
                                    [](const json& steps) {
                                      return steps.is_array() && !steps.empty() &&
                                             steps[0]["started_at"].is_number() &&
                                             !steps[0].value("complete", false);
                                    });
  if (!steps) return std::nullopt;
  return (*steps)[0];
}

TEST_CASE("stop-build cancels a running build and cancel drops a queued request without a build") {
  MasterDir master;
  master.write_config(one_builder_config("slow", "[sleep, '30']", 1));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult first = run_kiln({"force", master.str(), "slow"});
  RunResult second = run_kiln({"force", master.str(), "slow"});
  INFO(first.describe());
  INFO(second.describe());
  REQUIRE(first.exit_code == 0);
  REQUIRE(second.exit_code == 0);
  const auto second_request = forced_request_id(second.out);
  REQUIRE(second_request);

  auto running = master.wait_for_data("builds", [](const json& builds) {
    return builds.is_array() && builds.size() == 1 && !builds[0].value("complete", true);
  });
  REQUIRE(running);
  const int64_t buildid = (*running)[0]["buildid"].get<int64_t>();
  REQUIRE(wait_for_running_step(master, buildid));

  // max_builds 1: the second request is still queued, so it can be cancelled.
  RunResult cancelled = run_kiln({"cancel", master.str(), std::to_string(*second_request)});
  INFO(cancelled.describe());
  CHECK(cancelled.exit_code == 0);
  auto request = master.wait_for_data("buildrequests/" + std::to_string(*second_request),
                                      [](const json& r) { return r.value("complete", false); });
  REQUIRE(request);
  CHECK((*request)["results"] == kCancelled);

  const auto before = std::chrono::steady_clock::now();
  RunResult stopped = run_kiln({"stop-build", master.str(), std::to_string(buildid)});
  INFO(stopped.describe());
  CHECK(stopped.exit_code == 0);
  auto build = master.wait_for_data("builds/" + std::to_string(buildid),
                                    [](const json& b) { return b.value("complete", false); });
  REQUIRE(build);
  CHECK(std::chrono::steady_clock::now() - before < 10s);
  CHECK((*build)["results"] == kCancelled);

  // With the worker free again, a cancelled request must still not be built.
  RunResult status = run_kiln({"status", master.str()});
  INFO(status.describe());
  CHECK(status.exit_code == 0);
  json builds = master.data("builds");
  INFO(builds.dump(2));
  REQUIRE(builds.is_array());
  CHECK(builds.size() == 1);
  json for_second = master.data("buildrequests/" + std::to_string(*second_request) + "/builds");
  CHECK(for_second == json::array());
}

TEST_CASE("a build interrupted by a killed master ends RETRY with its log intact and its request "
          "runs again") {
  MasterDir master;
  // First run: mark, print, hang. The re-run finds the mark and succeeds.
  master.write_config(one_builder_config(
      "fragile", "\"test -f marker || { touch marker; echo before; sleep 30; }\""));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult forced = run_kiln({"force", master.str(), "fragile"});
  INFO(forced.describe());
  REQUIRE(forced.exit_code == 0);
  const auto request = forced_request_id(forced.out);
  REQUIRE(request);

  auto running = master.wait_for_data("builders/fragile/builds", [](const json& builds) {
    return builds.is_array() && builds.size() == 1;
  });
  REQUIRE(running);
  const int64_t buildid = (*running)[0]["buildid"].get<int64_t>();
  REQUIRE(wait_for_running_step(master, buildid));
  // 'before' must have reached the store before the crash for it to survive.
  REQUIRE(wait_until([&] {
    return build_stdout(master, buildid).find("before") != std::string::npos;
  }));

  REQUIRE(master.pid());
  const pid_t pid = *master.pid();
  REQUIRE(::kill(pid, SIGKILL) == 0);
  // As a user would: start again only once the old master is really gone.
  REQUIRE(wait_until([&] { return process_gone(pid); }));

  RunResult restarted = master.start();
  INFO(restarted.describe());
  REQUIRE(restarted.exit_code == 0);

  auto interrupted = master.wait_for_data("builds/" + std::to_string(buildid),
                                          [](const json& b) { return b.value("complete", false); });
  REQUIRE(interrupted);
  CHECK((*interrupted)["results"] == kRetry);
  CHECK(build_stdout(master, buildid) == "before\n");

  auto rerun = master.wait_for_data("builders/fragile/builds", [](const json& builds) {
    return builds.is_array() && builds.size() == 2 && builds[1].value("complete", false);
  });
  REQUIRE(rerun);
  INFO(rerun->dump(2));
  CHECK((*rerun)[1]["buildrequestid"] == *request);
  CHECK((*rerun)[1]["results"] == kSuccess);

  json requests = master.data("buildrequests");
  INFO(requests.dump(2));
  REQUIRE(requests.is_array());
  REQUIRE(requests.size() == 1);
  CHECK(requests[0]["buildrequestid"] == *request);
  CHECK(requests[0].value("complete", false));
  CHECK(requests[0]["results"] == kSuccess);
}

}  // namespace
}  // namespace kiln::integration

namespace kiln::integration {
namespace {

TEST_CASE("stop --clean lets the running build finish starts no queued one and then the master exits") {
  MasterDir master;
  master.write_config(one_builder_config("slow", "[sleep, '2']", 1));
  RunResult started = master.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);
  REQUIRE(run_kiln({"force", master.str(), "slow"}).exit_code == 0);
  auto running = master.wait_for_data("builds", [](const json& builds) {
    return builds.is_array() && builds.size() == 1 && !builds[0].value("complete", true);
  });
  REQUIRE(running);
  const int64_t buildid = (*running)[0]["buildid"].get<int64_t>();
  REQUIRE(wait_for_running_step(master, buildid));
  // max_builds 1: this one waits, and must not start during the shutdown.
  REQUIRE(run_kiln({"force", master.str(), "slow"}).exit_code == 0);

  const auto pid = master.pid();
  REQUIRE(pid);
  RunResult stopped = run_kiln({"stop", master.str(), "--clean"}, 40s);
  INFO(stopped.describe());
  CHECK(stopped.exit_code == 0);
  CHECK(stopped.out.find("clean shutdown of master") != std::string::npos);
  CHECK(stopped.out.find("waiting for 1 running build(s)") != std::string::npos);
  CHECK(::kill(*pid, 0) != 0);

  std::ifstream in(master.file("kiln.log"));
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(log);
  CHECK(log.find("clean shutdown requested") != std::string::npos);
  CHECK(log.find("build slow #1 finished: success") != std::string::npos);
  CHECK(log.find("build slow #2") == std::string::npos);
}

}  // namespace
}  // namespace kiln::integration
