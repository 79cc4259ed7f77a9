// `cmake --install` of the build tree yields a usable SDK: the out-of-tree
// example plugins (examples/hello-plugin, examples/framboozle-step,
// examples/custom-poller, examples/notifier-webhook) configure and build
// against the installed package alone, and the installed kiln loads them.

#include "http_push/push_receiver.h"
#include "schedulers/scheduler_master.h"
#include "util/free_port.h"
#include "util/poller_harness.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::string quoted(const fs::path& p) {
  std::string out = "'";
  for (char c : p.string()) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

using kiln::testing::TempDir;

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command line, capturing its output in a file of `dir`.
Run run(const std::string& command, const fs::path& dir) {
  const fs::path log = dir / "command.log";
  const int raw = std::system((command + " >" + quoted(log) + " 2>&1").c_str());
  Run r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(log);
  std::ostringstream text;
  text << in.rdbuf();
  r.output = text.str();
  return r;
}

// Installs the build tree into tmp/prefix.
void install(const TempDir& tmp) {
  const fs::path prefix = tmp.path() / "prefix";
  Run install = run("cmake --install " + quoted(KILN_BUILD_DIR) + " --prefix " + quoted(prefix), tmp.path());
  INFO(install.output);
  REQUIRE(install.status == 0);
  CHECK(fs::exists(prefix / "bin" / "kiln"));
  CHECK(fs::exists(prefix / "include" / "kiln" / "plugin_api.h"));
  CHECK(fs::exists(prefix / "include" / "kiln" / "sdk" / "plugin.hpp"));
  CHECK(fs::exists(prefix / "include" / "kiln" / "sdk" / "step.hpp"));
}

// Builds examples/<example> out of tree in tmp/<example> against the
// package installed in tmp/prefix; returns the built kiln-<name>.so.
fs::path build_example(const TempDir& tmp, const std::string& example, const std::string& name) {
  const fs::path prefix = tmp.path() / "prefix";
  const fs::path build = tmp.path() / example;
  Run configure = run("cmake -S " + quoted(fs::path(KILN_SOURCE_DIR) / "examples" / example) + " -B " +
                          quoted(build) + " -G Ninja -DCMAKE_PREFIX_PATH=" + quoted(prefix),
                      tmp.path());
  INFO(configure.output);
  REQUIRE(configure.status == 0);
  // The package found must be the one just installed, not a system one.
  CHECK_THAT(configure.output, !Catch::Contains("Could not find"));
  std::ifstream cache(build / "CMakeCache.txt");
  std::string line, kiln_dir;
  while (std::getline(cache, line)) {
    if (line.rfind("Kiln_DIR:", 0) == 0) kiln_dir = line.substr(line.find('=') + 1);
  }
  CHECK_THAT(kiln_dir, Catch::StartsWith(prefix.string()));

  Run compile = run("cmake --build " + quoted(build), tmp.path());
  INFO(compile.output);
  REQUIRE(compile.status == 0);
  return build / ("kiln-" + name + ".so");
}

fs::path install_and_build_hello(const TempDir& tmp) {
  install(tmp);
  return build_example(tmp, "hello-plugin", "hello");
}

// `kiln plugins` rows as {kind, type, version, library}.
std::vector<std::vector<std::string>> plugin_rows(const std::string& output) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::vector<std::string> row(4);
    fields >> row[0] >> row[1] >> row[2] >> row[3];
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

TEST_CASE("the installed SDK builds the out-of-tree example plugin which exports only its entry",
          "[install]") {
  TempDir tmp;
  const fs::path plugin = install_and_build_hello(tmp);
  REQUIRE(fs::exists(plugin));

  Run nm = run("nm -D --defined-only " + quoted(plugin), tmp.path());
  INFO(nm.output);
  REQUIRE(nm.status == 0);
  std::set<std::string> symbols;
  std::istringstream lines(nm.output);
  std::string line;
  while (std::getline(lines, line)) {
    // "0000000000003fe0 T kiln_plugin_entry": the name is the last field.
    auto space = line.find_last_of(' ');
    if (space != std::string::npos) symbols.insert(line.substr(space + 1));
  }
  CHECK(symbols == std::set<std::string>{"kiln_plugin_entry"});
}

TEST_CASE("the installed kiln lists the example plugin's components from KILN_PLUGIN_PATH",
          "[install]") {
  TempDir tmp;
  const fs::path plugin = install_and_build_hello(tmp);
  REQUIRE(fs::exists(plugin));
  const std::string env = "KILN_PLUGIN_PATH=" + quoted(plugin.parent_path()) + " ";
  const std::string kiln = quoted(tmp.path() / "prefix" / "bin" / "kiln");

  Run list = run(env + kiln + " plugins", tmp.path());
  INFO(list.output);
  CHECK(list.status == 0);
  std::istringstream lines(list.output);
  std::string line;
  bool step = false, policy = false;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string kind, type, version, library;
    fields >> kind >> type >> version >> library;
    if (library != "kiln-hello.so") continue;
    step = step || (kind == "step" && type == "hello" && version == "0.1.0");
    policy = policy || (kind == "policy" && type == "hello-policy");
  }
  CHECK(step);
  CHECK(policy);
  // The installed kiln finds its own plugins under <prefix>/lib/kiln/plugins.
  CHECK_THAT(list.output, Catch::Contains("kiln-local-worker.so"));

  Run show = run(env + kiln + " plugins hello", tmp.path());
  INFO(show.output);
  CHECK(show.status == 0);
  CHECK_THAT(show.output, Catch::Contains("greeting") && Catch::Contains("Writes a greeting"));
}

TEST_CASE("the installed SDK builds the straight-line Framboozle step and kiln lists its step type",
          "[install]") {
  TempDir tmp;
  install(tmp);
  const fs::path plugin = build_example(tmp, "framboozle-step", "framboozle");
  REQUIRE(fs::exists(plugin));
  const std::string env = "KILN_PLUGIN_PATH=" + quoted(plugin.parent_path()) + " ";
  const std::string kiln = quoted(tmp.path() / "prefix" / "bin" / "kiln");

  Run list = run(env + kiln + " plugins", tmp.path());
  INFO(list.output);
  CHECK(list.status == 0);
  const std::vector<std::string> expected = {"step", "framboozle", "0.1.0", "kiln-framboozle.so"};
  bool listed = false;
  for (const auto& row : plugin_rows(list.output)) listed = listed || row == expected;
  CHECK(listed);

  Run show = run(env + kiln + " plugins framboozle", tmp.path());
  INFO(show.output);
  CHECK(show.status == 0);
  CHECK_THAT(show.output, Catch::Contains("marker") && Catch::Contains("FNURRRGH!"));
}

TEST_CASE("the installed SDK builds the custom poller example, which reports one change per new file",
          "[install]") {
  TempDir tmp;
  install(tmp);
  const fs::path plugin = build_example(tmp, "custom-poller", "dropdir");
  REQUIRE(fs::exists(plugin));
  const std::string env = "KILN_PLUGIN_PATH=" + quoted(plugin.parent_path()) + " ";
  Run list = run(env + quoted(tmp.path() / "prefix" / "bin" / "kiln") + " plugins", tmp.path());
  INFO(list.output);
  CHECK(list.status == 0);
  const std::vector<std::string> expected = {"change_source", "dropdir", "0.1.0", "kiln-dropdir.so"};
  bool listed = false;
  for (const auto& row : plugin_rows(list.output)) listed = listed || row == expected;
  CHECK(listed);

  // The library just built, run as a change source: a file already there
  // is history, two new ones are two changes, and a new instance on the
  // same state (a restart) reports nothing again.
  kiln::testing::PollerHarness f(plugin.string(), "dropdir", "kiln-dropdir");
  const fs::path drop = f.tmp() / "incoming";
  fs::create_directories(drop);
  std::ofstream(drop / "old.tar.gz") << "old";
  f.create({{"directory", drop.string()}, {"who", "release-bot"}, {"branch", "releases"}});
  f.poll();
  CHECK(f.rec().changes.empty());
  std::ofstream(drop / "app-1.0.tar.gz") << "1.0";
  std::ofstream(drop / "app-1.1.tar.gz") << "1.1";
  f.poll();
  REQUIRE(f.rec().changes.size() == 2);
  std::set<std::string> names;
  for (const auto& c : f.rec().changes) {
    names.insert(c["revision"].get<std::string>());
    CHECK(c["author"] == "release-bot");
    CHECK(c["branch"] == "releases");
    CHECK(c["files"] == nlohmann::json{c["revision"]});
  }
  CHECK(names == std::set<std::string>{"app-1.0.tar.gz", "app-1.1.tar.gz"});
  f.create({{"directory", drop.string()}});
  f.poll();
  CHECK(f.rec().changes.size() == 2);
  auto relative = f.check({{"directory", "incoming"}});
  REQUIRE(relative);
  CHECK(relative->find("must be an absolute path") != std::string::npos);
}

namespace {

std::string webhook_master(uint16_t port, const std::string& text) {
  return R"yaml(
master: {title: Hooks, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 1}]
builders:
  - name: unit
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: test, command: ["sh", "-c", "exit %(prop:rc:-0)s"]}]
reporters:
  - {type: chat-webhook, url: "http://127.0.0.1:)yaml" +
         std::to_string(port) + "/hooks/ci\", mode: problem, username: ci-bot, text: \"" + text + "\"}\n";
}

TEST_CASE("the installed SDK builds the chat webhook notifier, which posts a line per problem build once copied into a plugin folder",
          "[install]") {
  TempDir tmp;
  install(tmp);
  const fs::path built = build_example(tmp, "notifier-webhook", "chat-webhook");
  REQUIRE(fs::exists(built));
  // Installing it is copying one file.
  const fs::path plugins = tmp.path() / "plugins";
  fs::create_directories(plugins);
  fs::copy_file(built, plugins / built.filename());
  const std::string env = "KILN_PLUGIN_PATH=" + quoted(plugins) + " ";
  const std::string kiln = quoted(tmp.path() / "prefix" / "bin" / "kiln");
  Run list = run(env + kiln + " plugins", tmp.path());
  INFO(list.output);
  const std::vector<std::string> expected = {"reporter", "chat-webhook", "0.1.0", "kiln-chat-webhook.so"};
  bool listed = false;
  for (const auto& row : plugin_rows(list.output)) listed = listed || row == expected;
  CHECK(listed);

  // A template naming an unknown field is a checkconfig error with its place.
  const fs::path bad = tmp.path() / "bad";
  fs::create_directories(bad);
  std::ofstream(bad / "master.yaml") << webhook_master(1, "{{buidler}} broke");
  Run check = run(env + kiln + " checkconfig " + quoted(bad), tmp.path());
  INFO(check.output);
  CHECK(check.status != 0);
  CHECK_THAT(check.output, Catch::Contains("text: line 1, column 1: unknown field 'buidler'; did you mean 'builder'?"));

  // In a master with real builds: a failure after a success is a problem;
  // the success before it and the failure after it are not.
  const uint16_t port = kiln::testing::free_port();
  kiln::testing::PushReceiver receiver(port);
  receiver.start();
  kiln::testing::SchedulerMaster m(webhook_master(port, "{{builder}} #{{number}}: {{result}} ({{status_detected}}) {{build_url}}"),
                                   kiln::testing::kJan31_2330, {plugins});
  m.start();
  for (int rc : {0, 1, 1}) kiln::testing::run_build_with_rc(m, "unit", rc);
  REQUIRE(m.run_until([&] { return !receiver.posts().empty(); }));
  m.settle();
  const auto posts = receiver.posts();
  REQUIRE(posts.size() == 1);
  INFO(posts[0].dump(2));
  CHECK(posts[0]["path"] == "/hooks/ci");
  CHECK(posts[0]["headers"]["Content-Type"] == "application/json");
  const nlohmann::json body = nlohmann::json::parse(posts[0]["body"].get<std::string>());
  CHECK(body["username"] == "ci-bot");
  CHECK(body["text"] == "unit #2: failure (new failure) http://ci.example.org/#/builders/1/builds/2");
}

}  // namespace
