// The `shell` step of kiln-std-steps.so, driven through a fake engine.
#include "std_plugins/std_plugins_support.h"

namespace {

using kiln::std_plugins::test::Harness;
using kiln::std_plugins::test::std_steps_library;
using nlohmann::json;

Harness shell(const json& config, const json& common = json::object()) {
  return Harness(std_steps_library(), KILN_KIND_STEP, "shell", config, Harness::step_facts(common));
}

}  // namespace

TEST_CASE("shell passes an argv command with workdir, env, timeout and maxTime from the step's common keys") {
  auto h = shell({{"command", {"make", "test"}}},
                 {{"workdir", "src"},
                  {"env", {{"CC", "clang"}}},
                  {"timeout", 30},
                  {"max_time", 600},
                  {"interrupt_signal", "TERM"}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.rec->commands.size() == 1);
  const auto& cmd = h.rec->commands[0];
  CHECK(cmd.name == "shell");
  CHECK(cmd.args["command"] == json({"make", "test"}));
  CHECK(cmd.args["workdir"] == "src");
  CHECK(cmd.args["env"] == json({{"CC", "clang"}}));
  CHECK(cmd.args["timeout"] == 30);
  CHECK(cmd.args["maxTime"] == 600);
  CHECK(cmd.args["interruptSignal"] == "TERM");
  CHECK(cmd.args["want_stdout"] == true);
  CHECK(cmd.args["want_stderr"] == true);
  CHECK(cmd.args["logEnviron"] == true);
  CHECK(h.rec->summaries.back() == "'make test'");
  CHECK(h.rec->finishes.empty());
}

TEST_CASE("shell passes a string command as is, in workdir build with Buildbot's default timeout") {
  auto h = shell({{"command", "make all && make check"}, {"want_stderr", false}, {"initial_stdin", "yes\n"}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  const auto& args = h.rec->commands.at(0).args;
  CHECK(args["command"] == "make all && make check");
  CHECK(args["workdir"] == "build");
  CHECK(args["env"] == json::object());
  CHECK(args["timeout"] == 1200);
  CHECK(args["maxTime"].is_null());
  CHECK(args["want_stderr"] == false);
  CHECK(args["initial_stdin"] == "yes\n");
  CHECK(h.rec->summaries.back() == "'make all ...'");
}

TEST_CASE("shell writes output to the stdio log on the stream it came from and succeeds on rc 0") {
  auto h = shell({{"command", {"make", "test"}}});
  REQUIRE(h.run() == KILN_OK);
  h.output(0, KILN_STREAM_HEADER, "make test\n");
  h.output(0, KILN_STREAM_STDOUT, "compiling\n");
  h.output(0, KILN_STREAM_STDERR, "oops\n");
  h.output(0, KILN_STREAM_STDOUT, "done\n");
  CHECK(h.rec->finishes.empty());
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->stream("stdio", KILN_STREAM_STDOUT) == "compiling\ndone\n");
  CHECK(h.rec->stream("stdio", KILN_STREAM_STDERR) == "oops\n");
  CHECK(h.rec->stream("stdio", KILN_STREAM_HEADER) == "make test\n");
  CHECK(h.rec->log("stdio")->type == KILN_LOG_TYPE_STDIO);
  CHECK(h.rec->log("stdio")->finished);
  REQUIRE(h.rec->finishes.size() == 1);
  CHECK(h.rec->finishes[0] == std::make_pair(KILN_SUCCESS, std::string("'make test'")));
  CHECK(h.rec->statistics.count("warnings") == 0);
}

TEST_CASE("shell maps the exit code through decode_rc, FAILURE for codes it does not list") {
  SECTION("default: 2 is FAILURE") {
    auto h = shell({{"command", {"make", "test"}}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", 2}});
    CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_FAILURE, std::string("'make test' (failure)")));
  }
  const json decode = {{"0", "SUCCESS"}, {"1", "WARNINGS"}, {"2", "SUCCESS"}};
  SECTION("a listed code") {
    auto h = shell({{"command", "grep x"}}, {{"decode_rc", decode}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", 2}});
    CHECK(h.rec->finishes.at(0).first == KILN_SUCCESS);
  }
  SECTION("a code decoded as WARNINGS") {
    auto h = shell({{"command", "grep x"}}, {{"decode_rc", decode}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", 1}});
    CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_WARNINGS, std::string("'grep x' (warnings)")));
  }
  SECTION("a code not listed") {
    auto h = shell({{"command", "grep x"}}, {{"decode_rc", decode}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", 3}});
    CHECK(h.rec->finishes.at(0).first == KILN_FAILURE);
  }
}

TEST_CASE("shell finishes RETRY when the worker is lost and FAILURE, with the reason logged, when it cannot run") {
  SECTION("lost") {
    auto h = shell({{"command", "make"}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", -1}, {"failure", "worker lost"}, {"lost", true}});
    CHECK(h.rec->finishes.at(0).first == KILN_RETRY);
  }
  SECTION("could not run") {
    auto h = shell({{"command", {"mkae"}}});
    REQUIRE(h.run() == KILN_OK);
    h.complete(0, {{"rc", -1}, {"failure", "cannot run mkae: No such file or directory"}});
    CHECK(h.rec->finishes.at(0).first == KILN_FAILURE);
    CHECK(h.rec->stream("stdio", KILN_STREAM_HEADER).find("cannot run mkae") != std::string::npos);
  }
}

TEST_CASE("shell reports a command the worker timed out in its summary") {
  auto h = shell({{"command", "sleep 100"}});
  REQUIRE(h.run() == KILN_OK);
  h.output(0, KILN_STREAM_HEADER, "command timed out: 30 seconds without output, attempting to kill\n");
  h.complete(0, {{"rc", -9}});
  CHECK(h.rec->finishes.at(0) ==
        std::make_pair(KILN_FAILURE, std::string("'sleep 100' (failure) (timed out)")));
}

TEST_CASE("shell counts warnings over lines split across chunks and streams, logs them and sets the statistic") {
  auto h = shell({{"command", "make"}, {"count_warnings", true}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  h.output(0, KILN_STREAM_STDOUT, "foo.c:1: warn");
  // A line of stderr in between must not join the two halves of stdout's.
  h.output(0, KILN_STREAM_STDERR, "ld: Warning: old symbol\nnote: fine\n");
  h.output(0, KILN_STREAM_STDOUT, "ing: unused x\nall good\nbar.c:2: WARNING: y\r\n");
  h.output(0, KILN_STREAM_STDERR, "baz.c:9: warning: last line without newline");
  h.output(0, KILN_STREAM_HEADER, "header: warning: headers are not output\n");
  h.complete(0, {{"rc", 0}});

  CHECK(h.rec->statistics.at("warnings") == 4);
  const auto* warnings = h.rec->log("warnings");
  REQUIRE(warnings != nullptr);
  CHECK(warnings->type == KILN_LOG_TYPE_TEXT);
  CHECK(warnings->text ==
        "ld: Warning: old symbol\n"
        "foo.c:1: warning: unused x\n"
        "bar.c:2: WARNING: y\n"
        "baz.c:9: warning: last line without newline\n");
  CHECK(h.rec->properties.at("warnings-count") == 4);
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_WARNINGS, std::string("'make' (warnings), 4 warnings")));
}

TEST_CASE("shell's warning count adds to the build's warnings-count property") {
  auto h = shell({{"command", "make"}, {"warning_pattern", "^W: "}});
  h.rec->properties["warnings-count"] = 5;
  REQUIRE(h.run() == KILN_OK);
  h.output(0, KILN_STREAM_STDOUT, "W: one\nw: not this (case matters)\nX W: nor this\n");
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->statistics.at("warnings") == 1);
  CHECK(h.rec->properties.at("warnings-count") == 6);
}

TEST_CASE("shell does not let warnings hide a failure, and counts none when counting is off") {
  SECTION("failure stays failure") {
    auto h = shell({{"command", "make"}, {"count_warnings", true}});
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT, "a: warning: b\n");
    h.complete(0, {{"rc", 1}});
    CHECK(h.rec->finishes.at(0).first == KILN_FAILURE);
    CHECK(h.rec->statistics.at("warnings") == 1);
  }
  SECTION("plain shell step") {
    auto h = shell({{"command", "make"}});
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT, "a: warning: b\n");
    h.complete(0, {{"rc", 0}});
    CHECK(h.rec->finishes.at(0).first == KILN_SUCCESS);
    CHECK(h.rec->log("warnings") == nullptr);
    CHECK(h.rec->statistics.empty());
  }
}

TEST_CASE("shell suppressions drop the warnings they match") {
  SECTION("by the warning's text") {
    auto h = shell({{"command", "make"}, {"suppressions", {{{"warning_re", "unused"}}}}});
    REQUIRE(h.error.empty());
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT, "a.c:1: warning: unused x\na.c:2: warning: shadowed y\n");
    h.complete(0, {{"rc", 0}});
    CHECK(h.rec->statistics.at("warnings") == 1);
    CHECK(h.rec->log("warnings")->text == "a.c:2: warning: shadowed y\n");
  }
  SECTION("by file and line range with the groups extractor") {
    auto h = shell({{"command", "make"},
                    {"warning_pattern", "^(.*?):([0-9]+): [Ww]arning: (.*)$"},
                    {"warning_extractor", "groups"},
                    {"suppressions", {{{"file_re", "gen/"}, {"start", 10}, {"end", 20}}}}});
    REQUIRE(h.error.empty());
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT,
             "gen/p.c:15: warning: in range\n"
             "gen/p.c:25: warning: out of range\n"
             "src/gen/q.c:15: warning: file_re matches at the start only\n");
    h.complete(0, {{"rc", 0}});
    CHECK(h.rec->statistics.at("warnings") == 2);
    CHECK(h.rec->log("warnings")->text.find("in range") == std::string::npos);
  }
}

TEST_CASE("shell turns more warnings than max_warn_count into FAILURE") {
  auto h = shell({{"command", "make"}, {"max_warn_count", 1}});
  REQUIRE(h.run() == KILN_OK);
  h.output(0, KILN_STREAM_STDOUT, "warning: a\nwarning: b\n");
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_FAILURE, std::string("'make' (failure), 2 warnings")));
}

TEST_CASE("shell refuses bad configs when they are checked") {
  CHECK_THAT(shell({{"command", "make"}, {"warning_pattern", "(unclosed"}}).error,
             Catch::Contains("warning_pattern"));
  CHECK_THAT(shell({{"command", json::array()}}).error, Catch::Contains("command must not be empty"));
  CHECK_THAT(shell({{"command", "make"}, {"warning_extractor", "groups"}}).error, Catch::Contains("three groups"));
  CHECK_THAT(shell({{"command", "make"}, {"suppressions", {{{"warning_re", "x"}, {"start", 3}}}}}).error,
             Catch::Contains("both start and end"));
  CHECK_THAT(shell({{"command", "make"}, {"comand", "typo"}}).error, Catch::Contains("comand"));
  CHECK_THAT(shell(json::object()).error, Catch::Contains("command"));
}

TEST_CASE("shell interrupts its command on interrupt and finishes CANCELLED when it completes") {
  auto h = shell({{"command", {"make", "test"}}});
  REQUIRE(h.run() == KILN_OK);
  h.interrupt("build stopped");
  REQUIRE(h.rec->interrupts.size() == 1);
  CHECK(h.rec->interrupts[0].first == h.rec->commands[0].id);
  CHECK(h.rec->interrupts[0].second == "build stopped");
  CHECK(h.rec->finishes.empty());  // not before the command is gone
  h.complete(0, {{"rc", -1}, {"failure", "killed"}});
  REQUIRE(h.rec->finishes.size() == 1);
  CHECK(h.rec->finishes[0] == std::make_pair(KILN_CANCELLED, std::string("'make test' (cancelled)")));
}

TEST_CASE("shell finishes CANCELLED at once when interrupted with no command running") {
  auto h = shell({{"command", "make"}});
  h.interrupt("build stopped");
  REQUIRE(h.rec->finishes.size() == 1);
  CHECK(h.rec->finishes[0].first == KILN_CANCELLED);
  CHECK(h.rec->interrupts.empty());
}

TEST_CASE("shell shows each watched logfile as a log of its own") {
  auto h = shell({{"command", "make test"}, {"logfiles", {{"junit", "out/junit.xml"}}}});
  REQUIRE(h.run() == KILN_OK);
  CHECK(h.rec->commands[0].args["logfiles"] == json({{"junit", "out/junit.xml"}}));
  REQUIRE(h.rec->log("junit") != nullptr);
  h.update(0, {{"log", {{"name", "junit"}, {"data", "<testsuite/>"}}}});
  h.update(0, {{"log", {"junit", "\n"}}});
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->log("junit")->text == "<testsuite/>\n");
}
