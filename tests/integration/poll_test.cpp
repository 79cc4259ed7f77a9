// `kiln poll`: a running master's polling change sources poll when asked,
// here a git-poller with no interval over a real repository.

#include "git/git_test_support.h"
#include "kiln_process.h"

#include <catch2/catch.hpp>

namespace kiln::integration {
namespace {

using kiln::git::test::GitRepo;
using kiln::testing::TempDir;
using nlohmann::json;

TEST_CASE("kiln poll makes a git-poller without a poll interval poll now") {
  TempDir tmp("kiln-poll");
  GitRepo up(tmp / "up");
  up.commit("base");
  MasterDir m;
  m.write_config(one_builder_config("quick", "[echo, done]") +
                 "change_sources:\n"
                 "  - {type: git-poller, name: repo, repourl: '" + up.url() + "', branches: [main], poll_interval: 0}\n");
  RunResult started = m.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);

  RunResult first = run_kiln({"poll", m.str()});
  INFO(first.describe());
  CHECK(first.exit_code == 0);
  CHECK(first.out == "polling: repo\n");
  // The first poll only records the heads.
  REQUIRE(wait_until([&] {
    return kiln::testing::read_file(m.file("kiln.log")).find("first poll of") != std::string::npos;
  }));

  const std::string next = up.commit("next");
  RunResult second = run_kiln({"poll", m.str(), "repo"});
  INFO(second.describe());
  CHECK(second.exit_code == 0);
  auto changes = m.wait_for_data("changes", [](const json& c) { return c.is_array() && c.size() == 1; });
  REQUIRE(changes);
  CHECK((*changes)[0]["revision"] == next);

  RunResult unknown = run_kiln({"poll", m.str(), "nope"});
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.err, Catch::Contains("no change source named 'nope'"));
}

}  // namespace
}  // namespace kiln::integration
