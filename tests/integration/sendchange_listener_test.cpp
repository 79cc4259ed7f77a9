// End to end: a real master with the `sendchange` change source, and
// `kiln sendchange --master HOST:PORT` sending it changes over HTTP.

#include "kiln_process.h"
#include "util/free_port.h"

#include <catch2/catch.hpp>

namespace kiln::integration {
namespace {

using nlohmann::json;

using kiln::testing::free_port;
using kiln::testing::listening;

TEST_CASE("kiln sendchange --master delivers a change to a running master's listener") {
  const int port = free_port();
  MasterDir m;
  m.write_config(one_builder_config("quick", "[echo, done]") +
                 "change_sources:\n"
                 "  - {type: sendchange, port: " + std::to_string(port) +
                 ", user: hook, password: hookpw}\n");
  RunResult started = m.start();
  INFO(started.describe());
  REQUIRE(started.exit_code == 0);
  REQUIRE(wait_until([&] { return listening(port); }));
  const std::string master = "127.0.0.1:" + std::to_string(port);

  RunResult sent = run_kiln({"sendchange", "--master", master, "--auth", "hook:hookpw", "--who",
                             "Ann <ann@example.org>", "--branch", "main", "--revision", "abc1",
                             "--repository", "https://example.org/r.git", "--project", "p",
                             "--category", "fix", "--codebase", "cb", "--vc", "git",
                             "--property", "ticket:42", "--comments", "fix it", "--when",
                             "1700000000", "src/a.c", "b.c"});
  INFO(sent.describe());
  REQUIRE(sent.exit_code == 0);
  CHECK(sent.out == "change 1 added\n");

  json changes = m.data("changes");
  INFO(changes.dump(2));
  REQUIRE(changes.is_array());
  REQUIRE(changes.size() == 1);
  const json& c = changes[0];
  CHECK(c["author"] == "Ann <ann@example.org>");
  CHECK(c["branch"] == "main");
  CHECK(c["revision"] == "abc1");
  CHECK(c["repository"] == "https://example.org/r.git");
  CHECK(c["project"] == "p");
  CHECK(c["category"] == "fix");
  CHECK(c["codebase"] == "cb");
  CHECK(c["comments"] == "fix it");
  CHECK(c["files"] == json{"src/a.c", "b.c"});
  CHECK(c["when_timestamp"] == 1700000000);
  CHECK(c["properties"]["ticket"][0] == "42");

  RunResult wrong = run_kiln({"sendchange", "--master", master, "--who", "x", "a.c"});
  INFO(wrong.describe());
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.err, Catch::Contains("HTTP 401") && Catch::Contains("wrong user or password"));

  RunResult refused = run_kiln({"sendchange", "--master", master, "--auth", "hook:hookpw",
                                "--who", "x", "--property", "bad name:1", "a.c"});
  INFO(refused.describe());
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("HTTP 400") && Catch::Contains("bad name"));

  RunResult usage = run_kiln({"sendchange", "--master", "no-port", "--who", "x"});
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.err, Catch::Contains("HOST:PORT"));

  RunResult nobody = run_kiln({"sendchange", "--master", "127.0.0.1:" + std::to_string(free_port()),
                               "--who", "x", "a.c"});
  INFO(nobody.describe());
  CHECK(nobody.exit_code == 1);
  CHECK_THAT(nobody.err, Catch::Contains("connection refused"));

  // Only the first change was stored.
  json after = m.data("changes");
  CHECK(after.size() == 1);
}

}  // namespace
}  // namespace kiln::integration
