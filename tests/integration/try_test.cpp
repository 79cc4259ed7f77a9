// End to end: a real master with a `try` scheduler, a real git repository
// the builders check out, and `kiln try` run from a clone with local
// changes, as a developer would.

#include "git/git_test_support.h"
#include "kiln_process.h"
#include "util/free_port.h"

#include <catch2/catch.hpp>

namespace kiln::integration {
namespace {

using kiln::git::test::GitRepo;
using kiln::testing::free_port;
using kiln::testing::listening;
using kiln::testing::TempDir;
using nlohmann::json;

// An upstream repository (main: hello.txt), a clone of it with one local
// commit and one uncommitted edit, upstream moved on since the clone, and a
// master whose try scheduler builds `check` (git checkout + a shell step
// that looks at the patched tree) and `other`.
struct TryFixture {
  TempDir tmp{"kiln-try"};
  GitRepo up{tmp / "up"};
  std::string base;
  fs::path work = tmp / "work";
  uint16_t port = free_port();
  MasterDir m;
  std::string master;

  TryFixture() {
    base = up.commit("base", {{"hello.txt", "hello\n"}});
    kiln::testing::sh("git clone -q " + kiln::testing::quoted(up.url()) + " " + kiln::testing::quoted(work.string()));
    GitRepo clone(work);  // `git init` on a clone is harmless
    clone.commit("local work", {{"other.txt", "mine\n"}});
    clone.write("hello.txt", "hello, patched\n");
    up.commit("upstream moved on", {{"later.txt", "later\n"}});

    m.write_config(
        "master: {title: try, db: 'sqlite:state.sqlite'}\n"
        "workers:\n"
        "  - {name: w1, type: local, max_builds: 2}\n"
        "schedulers:\n"
        "  - name: try\n"
        "    type: try\n"
        "    port: " + std::to_string(port) + "\n"
        "    userpass: [{user: alice, password: alicepw}]\n"
        "    builders: [check, other]\n"
        "    properties: {from_try: yes}\n"
        "builders:\n"
        "  - name: check\n"
        "    workers: [w1]\n"
        "    steps:\n"
        "      - {type: git, repourl: \"" + up.url() + "\", mode: full, method: clobber}\n"
        "      - {type: shell, name: look, command: \"grep -qx 'hello, patched' hello.txt && "
        "test -f other.txt && test ! -f later.txt && echo patched tree ok\"}\n"
        "  - name: other\n"
        "    workers: [w1]\n"
        "    steps:\n"
        "      - {type: shell, name: run, command: [echo, other]}\n");
    RunResult started = m.start();
    INFO(started.describe());
    REQUIRE(started.exit_code == 0);
    REQUIRE(wait_until([&] { return listening(port); }));
    master = "127.0.0.1:" + std::to_string(port);
  }

  RunResult kiln_try(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {KILN_BINARY, "try"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_process(argv, kPatience, work);
  }

  // Every line every step of the build logged, any stream.
  std::string build_log(int64_t buildid) const {
    std::string text;
    for (const auto& step : m.data("builds/" + std::to_string(buildid) + "/steps")) {
      for (const auto& log : m.data("steps/" + step.value("stepid", json()).dump() + "/logs")) {
        json contents = m.data("logs/" + log.value("logid", json()).dump() + "/contents");
        if (contents.is_object()) text += contents.value("content", std::string());
      }
    }
    return text;
  }
};

TEST_CASE("kiln try --vc git builds the tree's changes against the merge base and --wait reports success") {
  TryFixture f;
  // What would be sent: the local commit and the edit, against the base.
  RunResult dry = f.kiln_try({"--dryrun", "--vc", "git"});
  INFO(dry.describe());
  REQUIRE(dry.exit_code == 0);
  const json job = json::parse(dry.out, nullptr, false);
  REQUIRE(job.is_object());
  CHECK(job["baserev"] == f.base);
  CHECK(job["branch"] == "main");
  CHECK(job["patch"]["level"] == 1);
  CHECK_THAT(job["patch"]["body"].get<std::string>(),
             Catch::Contains("+hello, patched") && Catch::Contains("+++ b/other.txt"));

  RunResult sent = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "alicepw", "--vc", "git",
                               "--builder", "check", "--who", "Ann", "--comment", "my fix",
                               "--property", "ticket=42", "--wait"});
  INFO(sent.describe());
  CHECK(sent.exit_code == 0);
  CHECK_THAT(sent.out, Catch::Contains("try job submitted: buildset 1 on check"));
  CHECK_THAT(sent.out, Catch::Contains("check: success"));
  CHECK_THAT(sent.out, Catch::Contains("buildset 1: success"));

  const json buildset = f.m.data("buildsets/1");
  INFO(buildset.dump(2));
  CHECK(buildset["reason"] == "'try' job by user Ann (my fix)");
  REQUIRE(buildset["sourcestamps"].size() == 1);
  CHECK(buildset["sourcestamps"][0]["revision"] == f.base);
  CHECK(buildset["sourcestamps"][0]["branch"] == "main");
  CHECK(buildset["sourcestamps"][0]["patch"]["level"] == 1);
  const json requests = f.m.data("buildrequests");
  REQUIRE(requests.size() == 1);  // only the builder asked for
  const json builds = f.m.data("builds");
  REQUIRE(builds.size() == 1);
  const int64_t buildid = builds[0]["buildid"].get<int64_t>();
  CHECK(builds[0]["results"] == 0);
  CHECK_THAT(build_stdout(f.m, buildid), Catch::Contains("patched tree ok"));
  const json props = f.m.data("builds/" + std::to_string(buildid) + "/properties");
  CHECK(props["ticket"][0] == "42");
  CHECK(props["from_try"][0] == "yes");
  CHECK(props["scheduler"][0] == "try");
}

TEST_CASE("a try patch that does not apply fails the build with the patch output in its log") {
  TryFixture f;
  const auto diff = f.tmp.write("bad.diff", "--- a/hello.txt\n+++ b/hello.txt\n@@ -1 +1 @@\n-goodbye\n+ciao\n");
  RunResult sent = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "alicepw", "--diff",
                               diff.string(), "--branch", "main", "--baserev", f.base, "--builder", "check",
                               "--wait"});
  INFO(sent.describe());
  CHECK(sent.exit_code == 1);
  CHECK_THAT(sent.out, Catch::Contains("check: failure"));
  CHECK_THAT(sent.out, Catch::Contains("buildset 1: failure"));
  const json builds = f.m.data("builds");
  REQUIRE(builds.size() == 1);
  const int64_t buildid = builds[0]["buildid"].get<int64_t>();
  const std::string log = f.build_log(buildid);
  INFO(log);
  CHECK_THAT(log, Catch::Contains("patch failed: hello.txt:1"));
  CHECK_THAT(log, Catch::Contains("the patch does not apply"));
  CHECK_THAT(build_stdout(f.m, buildid), !Catch::Contains("patched tree ok"));
}

TEST_CASE("kiln try is refused for a wrong password and for a builder the scheduler does not build") {
  TryFixture f;
  const auto diff = f.tmp.write("ok.diff", "");
  RunResult wrong = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "nope", "--diff",
                                diff.string(), "--builder", "other"});
  INFO(wrong.describe());
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.err, Catch::Contains("HTTP 401") && Catch::Contains("wrong user or password"));

  RunResult unknown = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "alicepw", "--diff",
                                  diff.string(), "--builder", "other", "--builder", "nope"});
  INFO(unknown.describe());
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.err, Catch::Contains("HTTP 400") &&
                              Catch::Contains("builder 'nope' cannot be tried here: this try scheduler "
                                              "builds check, other"));
  CHECK(f.m.data("buildsets").empty());

  RunResult usage = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "alicepw"});
  CHECK(usage.exit_code == 2);
  CHECK_THAT(usage.err, Catch::Contains("--diff FILE") && Catch::Contains("--vc git"));

  // An empty patch still builds the base revision, on the builder asked for.
  RunResult plain = f.kiln_try({"--master", f.master, "--user", "alice", "--password", "alicepw", "--diff",
                                diff.string(), "--builder", "other", "--wait"});
  INFO(plain.describe());
  CHECK(plain.exit_code == 0);
  CHECK_THAT(plain.err, Catch::Contains("there is no patch to try"));
  CHECK_THAT(plain.out, Catch::Contains("other: success") && Catch::Contains("buildset 1: success"));
}

}  // namespace
}  // namespace kiln::integration
