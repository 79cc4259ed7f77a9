// set-property, master-shell and the transfer steps of kiln-std-steps.so.
#include "std_plugins/std_plugins_support.h"

#include <chrono>
#include <filesystem>

namespace {

using kiln::std_plugins::test::Harness;
using kiln::std_plugins::test::std_steps_library;
using kiln::std_plugins::test::TempDir;
using nlohmann::json;

Harness step(const std::string& type, const json& config, const json& common = json::object(),
             const json& extra = json::object()) {
  return Harness(std_steps_library(), KILN_KIND_STEP, type, config, Harness::step_facts(common, extra));
}

}  // namespace

// --- set-property -----------------------------------------------------------

TEST_CASE("set-property sets a JSON value at once without running a command") {
  auto h = step("set-property", {{"property", "version"}, {"value", {{"major", 1}, {"tags", {"a"}}}}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  CHECK(h.rec->commands.empty());
  CHECK(h.rec->properties.at("version") == json({{"major", 1}, {"tags", {"a"}}}));
  CHECK(h.rec->property_sources.at("version") == "SetProperty step");
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_SUCCESS, std::string("property 'version' set")));
}

TEST_CASE("set-property sets the stripped stdout of its command, ignoring stderr") {
  auto h = step("set-property", {{"property", "rev"}, {"command", {"git", "rev-parse", "HEAD"}}}, {{"workdir", "src"}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.rec->commands.size() == 1);
  CHECK(h.rec->commands[0].name == "shell");
  CHECK(h.rec->commands[0].args["command"] == json({"git", "rev-parse", "HEAD"}));
  CHECK(h.rec->commands[0].args["workdir"] == "src");
  h.output(0, KILN_STREAM_STDOUT, "  abc");
  h.output(0, KILN_STREAM_STDERR, "warning: noise\n");
  h.output(0, KILN_STREAM_STDOUT, "123\n");
  CHECK(h.rec->properties.empty());
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->properties.at("rev") == "abc123");
  CHECK(h.rec->stream("stdio", KILN_STREAM_STDOUT) == "  abc123\n");
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_SUCCESS, std::string("property 'rev' set")));
}

TEST_CASE("set-property keeps stdout as it is with strip false, and sets nothing when the command fails") {
  SECTION("strip false") {
    auto h = step("set-property", {{"property", "out"}, {"command", "echo hi"}, {"strip", false}});
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT, "hi\n");
    h.complete(0, {{"rc", 0}});
    CHECK(h.rec->properties.at("out") == "hi\n");
  }
  SECTION("failure") {
    auto h = step("set-property", {{"property", "out"}, {"command", "false"}});
    REQUIRE(h.run() == KILN_OK);
    h.output(0, KILN_STREAM_STDOUT, "partial\n");
    h.complete(0, {{"rc", 1}});
    CHECK(h.rec->properties.empty());
    CHECK(h.rec->finishes.at(0).first == KILN_FAILURE);
  }
}

TEST_CASE("set-property needs exactly one of value and command") {
  CHECK_THAT(step("set-property", {{"property", "x"}}).error, Catch::Contains("exactly one of 'value' and 'command'"));
  CHECK_THAT(step("set-property", {{"property", "x"}, {"value", 1}, {"command", "echo"}}).error,
             Catch::Contains("exactly one"));
  CHECK_THAT(step("set-property", {{"value", 1}}).error, Catch::Contains("property"));
}

// --- master-shell -------------------------------------------------------------

TEST_CASE("master-shell runs its command in the master folder and finishes FAILURE on exit code 3") {
  TempDir master;
  auto h = step("master-shell", {{"command", "echo hi; exit 3"}}, {}, {{"master_dir", master.path().string()}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.run_until([&] { return !h.rec->finishes.empty(); }));
  CHECK(h.rec->finishes[0] == std::make_pair(KILN_FAILURE, std::string("failed (3)")));
  CHECK(h.rec->stream("stdio", KILN_STREAM_STDOUT) == "hi\n");
  CHECK_THAT(h.rec->stream("stdio", KILN_STREAM_HEADER), Catch::Contains("RUNNING ON BUILDMASTER"));
  CHECK_THAT(h.rec->stream("stdio", KILN_STREAM_HEADER), Catch::Contains("exit code 3"));
}

TEST_CASE("master-shell runs argv commands in the step's workdir under the master folder with the step's env") {
  TempDir master;
  std::filesystem::create_directories(master.path() / "work");
  auto h = step("master-shell", {{"command", {"sh", "-c", "pwd; echo \"$KILN_TEST_VAR\" >&2"}}},
                {{"workdir", "work"}, {"env", {{"KILN_TEST_VAR", "from-env"}}}},
                {{"master_dir", master.path().string()}});
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.run_until([&] { return !h.rec->finishes.empty(); }));
  CHECK(h.rec->finishes[0] == std::make_pair(KILN_SUCCESS, std::string("Ran")));
  const std::string pwd = h.rec->stream("stdio", KILN_STREAM_STDOUT);
  CHECK(std::filesystem::equivalent(pwd.substr(0, pwd.size() - 1), master.path() / "work"));
  CHECK(h.rec->stream("stdio", KILN_STREAM_STDERR) == "from-env\n");
}

TEST_CASE("master-shell kills its command on interrupt and finishes CANCELLED") {
  TempDir master;
  auto h = step("master-shell", {{"command", "echo started; sleep 30"}}, {},
                {{"master_dir", master.path().string()}});
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.run_until([&] { return !h.rec->stream("stdio", KILN_STREAM_STDOUT).empty(); }));
  const auto start = std::chrono::steady_clock::now();
  h.interrupt("stop");
  REQUIRE(h.run_until([&] { return !h.rec->finishes.empty(); }));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(h.rec->finishes[0].first == KILN_CANCELLED);
}

TEST_CASE("master-shell destroyed while its command runs kills it without blocking for long") {
  TempDir master;
  const auto marker = master.path() / "still-running";
  auto start = std::chrono::steady_clock::now();
  {
    auto h = step("master-shell", {{"command", "sleep 30; touch still-running"}}, {},
                  {{"master_dir", master.path().string()}});
    REQUIRE(h.run() == KILN_OK);
    start = std::chrono::steady_clock::now();
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
  CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("master-shell reports a command it cannot start as FAILURE") {
  TempDir master;
  auto h = step("master-shell", {{"command", {"/nonexistent/kiln-no-such-program"}}}, {},
                {{"master_dir", master.path().string()}});
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.run_until([&] { return !h.rec->finishes.empty(); }));
  CHECK(h.rec->finishes[0].first == KILN_FAILURE);
}

// --- transfers ------------------------------------------------------------------

TEST_CASE("file-upload issues uploadFile with Buildbot's arguments and adds its URL") {
  auto h = step("file-upload", {{"workersrc", "dist/app.tar.gz"},
                                {"masterdest", "public/app.tar.gz"},
                                {"mode", "0644"},
                                {"url", "http://ci.example/app.tar.gz"}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  REQUIRE(h.rec->commands.size() == 1);
  CHECK(h.rec->commands[0].name == "uploadFile");
  CHECK(h.rec->commands[0].args == json({{"workdir", "build"},
                                         {"workersrc", "dist/app.tar.gz"},
                                         {"masterdest", "public/app.tar.gz"},
                                         {"maxsize", nullptr},
                                         {"blocksize", 262144},
                                         {"keepstamp", false},
                                         {"mode", 0644}}));
  CHECK(h.rec->urls == std::vector<std::pair<std::string, std::string>>{
                           {"app.tar.gz", "http://ci.example/app.tar.gz"}});
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_SUCCESS, std::string("uploading app.tar.gz")));
}

TEST_CASE("file-upload finishes FAILURE on a non-zero rc whatever decode_rc says") {
  auto h = step("file-upload", {{"workersrc", "a.txt"}, {"masterdest", "/tmp/a.txt"}},
                {{"decode_rc", {{"0", "SUCCESS"}, {"1", "SUCCESS"}}}});
  REQUIRE(h.run() == KILN_OK);
  h.complete(0, {{"rc", 1}});
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_FAILURE, std::string("uploading a.txt (failure)")));
}

TEST_CASE("file-download issues downloadFile in the step's workdir with its mode and 16 KiB blocks") {
  auto h = step("file-download", {{"mastersrc", "scripts/run.sh"}, {"workerdest", "bin/run.sh"}, {"mode", 0755}},
                {{"workdir", "src"}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  CHECK(h.rec->commands.at(0).name == "downloadFile");
  CHECK(h.rec->commands.at(0).args == json({{"workdir", "src"},
                                            {"mastersrc", "scripts/run.sh"},
                                            {"workerdest", "bin/run.sh"},
                                            {"maxsize", nullptr},
                                            {"blocksize", 16384},
                                            {"mode", 0755}}));
  h.complete(0, {{"rc", 0}});
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_SUCCESS, std::string("downloading to run.sh")));
}

TEST_CASE("directory-upload issues uploadDirectory with its compression") {
  auto h = step("directory-upload", {{"workersrc", "docs/html/"}, {"masterdest", "www/docs"}, {"compress", "gz"},
                                     {"maxsize", 1000000}});
  REQUIRE(h.error.empty());
  REQUIRE(h.run() == KILN_OK);
  CHECK(h.rec->commands.at(0).name == "uploadDirectory");
  CHECK(h.rec->commands.at(0).args == json({{"workdir", "build"},
                                            {"workersrc", "docs/html/"},
                                            {"masterdest", "www/docs"},
                                            {"maxsize", 1000000},
                                            {"blocksize", 16384},
                                            {"compress", "gz"}}));
  h.interrupt("stop");
  CHECK(h.rec->interrupts.size() == 1);
  h.complete(0, {{"rc", 1}});
  CHECK(h.rec->finishes.at(0) == std::make_pair(KILN_CANCELLED, std::string("uploading html (cancelled)")));
}

TEST_CASE("transfer steps refuse a mode that is not octal and a compression they do not know") {
  CHECK_THAT(step("file-download", {{"mastersrc", "a"}, {"workerdest", "b"}, {"mode", "rwx"}}).error,
             Catch::Contains("octal"));
  CHECK_FALSE(step("directory-upload", {{"workersrc", "a"}, {"masterdest", "b"}, {"compress", "xz"}}).error.empty());
}
