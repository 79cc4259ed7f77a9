// master.yaml read and checked end to end: phase 1 (files, includes,
// substitution, matrices) and phase 2 (schemas, names, references).

#include "config/master_config.h"
#include "config_test_support.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace kiln::config;
using namespace kiln::config::testing;

namespace {

const std::filesystem::path kFixtures = std::filesystem::path(KILN_SOURCE_DIR) / "tests/config/fixtures";

// Where `needle` starts in `text`, 1-based, as a diagnostic should say.
std::pair<int, int> position_of(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  REQUIRE(at != std::string::npos);
  size_t line_start = text.rfind('\n', at);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  int line = static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n')) + 1;
  return {line, static_cast<int>(at - line_start) + 1};
}

const Diagnostic& only_error(const std::vector<Diagnostic>& errors) {
  INFO(describe(errors));
  REQUIRE(errors.size() == 1);
  return errors.front();
}

void require_at(const Diagnostic& d, const std::string& text, const std::string& needle) {
  INFO(d.to_string());
  auto [line, column] = position_of(text, needle);
  CHECK(d.location.line == line);
  CHECK(d.location.column == column);
}

// A minimal valid master around the given builders' steps.
std::string with_steps(const std::string& steps) {
  return "workers:\n"
         "  - {name: linux, type: local}\n"
         "builders:\n"
         "  - name: unit\n"
         "    workers: [linux]\n"
         "    steps:\n" +
         steps;
}

}  // namespace

TEST_CASE("a full configuration is read into MasterConfig with its values and defaults") {
  FakeCatalog catalog;
  ReadResult read = read_config_document(kFixtures / "full");
  INFO(describe(read.errors));
  REQUIRE(read.document);
  CheckResult checked = check_master_config(*read.document, catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.config);
  const MasterConfig& c = *checked.config;
  auto fixture = std::filesystem::absolute(kFixtures / "full");

  CHECK(c.basedir == fixture);
  CHECK(c.master.title == "Example CI");
  CHECK(c.master.buildbot_url == "http://ci.example.org/");  // slash added
  CHECK(c.master.db == "sqlite:state.sqlite");                // default
  CHECK(c.master.collapse_requests);
  CHECK(c.master.log_level == "debug");
  CHECK(c.master.log_max_files == 10);
  CHECK(c.master.prioritize_builders == "by-name");
  CHECK_FALSE(c.master.collapse_requests_policy);
  CHECK(c.master.properties == nlohmann::json{{"owner", "ci-team"}});
  REQUIRE(c.master.plugin_paths.size() == 2);
  CHECK(c.master.plugin_paths[0] == fixture / "plugins");
  CHECK(c.master.plugin_paths[1] == (fixture / "../shared-plugins").lexically_normal());

  REQUIRE(c.workers.size() == 2);  // from the included file
  CHECK(c.workers[0].name == "local-1");
  CHECK(c.workers[0].common["max_builds"] == 2);
  CHECK(c.workers[1].common["properties"] == nlohmann::json{{"arch", "amd64"}});
  CHECK(c.workers[0].common["properties"] == nlohmann::json::object());
  CHECK(c.workers[0].location.file == (kFixtures / "full/ci/workers.yaml").string());
  CHECK(c.workers[0].location.line == 2);

  REQUIRE(c.change_sources.size() == 1);
  CHECK(c.change_sources[0].name == "git-poller");
  CHECK(c.change_sources[0].config["poll_interval"] == 600);  // plugin default applied
  REQUIRE(c.schedulers.size() == 2);
  CHECK(c.schedulers[0].config == nlohmann::json{{"branch", "main"}, {"tree_stable_timer", 0}});
  CHECK(c.schedulers[0].common["builders"] == nlohmann::json{"unit"});

  REQUIRE(c.builders.size() == 5);
  const BuilderConfig& unit = c.builders[0];
  CHECK(unit.name == "unit");
  CHECK(unit.builddir == "unit");
  CHECK(unit.workerbuilddir == "unit");
  CHECK(unit.tags == std::vector<std::string>{"fast"});
  CHECK(unit.next_build == "oldest");
  CHECK_FALSE(unit.collapse_requests);
  REQUIRE(unit.steps.size() == 3);
  CHECK(unit.steps[0].name == "git");
  // Steps keep what was written: the engine fills defaults (mode,
  // timeout) when a step starts, so 1,000 builders do not hold 1,000 copies.
  CHECK_FALSE(unit.steps[0].config.contains("mode"));
  CHECK(unit.steps[1].name == "test");
  CHECK(unit.steps[1].common["halt_on_failure"] == true);
  CHECK_FALSE(unit.steps[1].common.contains("timeout"));
  CHECK(unit.steps[1].config == nlohmann::json{{"command", {"make", "test"}}});
  CHECK(unit.steps[2].name == "shell");
  CHECK(unit.steps[2].kind == KILN_KIND_STEP);
  CHECK(c.builders[1].name == "build-debian-gcc");

  REQUIRE(c.reporters.size() == 1);
  CHECK(c.reporters[0].config["port"] == 8010);
  REQUIRE(c.policies.size() == 2);
  CHECK(c.policies[1].name == "oldest");
}

TEST_CASE("a YAML syntax error is reported with its 1-based line and column") {
  TempDir dir;
  auto file = dir.write("master.yaml", "master:\n  title: x\n    url: y\n");
  ReadResult read = read_config_document(file);
  CHECK_FALSE(read.document);
  const Diagnostic& d = only_error(read.errors);
  CHECK(d.location.file == file.string());
  // yaml-cpp counts from 0 and blames the colon of the over-indented key.
  CHECK(d.location.line == 3);
  CHECK(d.location.column == 8);
  CHECK(d.message == "illegal map value");
}

TEST_CASE("a missing master.yaml is an error, not an exception") {
  TempDir dir;
  ReadResult read = read_config_document(dir.path());
  CHECK_FALSE(read.document);
  const Diagnostic& d = only_error(read.errors);
  CHECK(d.location.file == (dir.path() / "master.yaml").string());
  CHECK(d.message.find("no such file") != std::string::npos);
}

TEST_CASE("an unknown top-level key is reported at the key") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps("      - {type: shell, command: make}\n") + "builder:\n  - {name: x}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "builder:\n");
  CHECK(d.path == "builder");
  CHECK(d.message == "unknown key 'builder'; did you mean 'builders'?");
}

TEST_CASE("an unknown key in a step is reported with the key's line and column") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps(
      "      - type: shell\n"
      "        command: make\n"
      "        halt_on_failur: true\n");
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  CHECK(d.location.line == 9);
  CHECK(d.location.column == 9);
  CHECK(d.path == "builders[0].steps[0].halt_on_failur");
  CHECK(d.message == "unknown key 'halt_on_failur'; did you mean 'halt_on_failure'?");
}

TEST_CASE("a value of the wrong type is reported at the value") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers:\n"
      "  - {name: linux, type: local, max_builds: two}\n"
      "builders:\n"
      "  - {name: unit, workers: [linux], steps: [{type: shell, command: make}]}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "two}");
  CHECK(d.path == "workers[0].max_builds");
  CHECK(d.message.find("expected integer") != std::string::npos);
}

TEST_CASE("a builder naming an undeclared worker is told the closest declared name") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers:\n"
      "  - {name: linux, type: local}\n"
      "  - {name: windows, type: local}\n"
      "builders:\n"
      "  - {name: unit, workers: [linux], steps: [{type: shell, command: make}]}\n"
      "  - {name: lint, workers: [windows, lnx], steps: [{type: shell, command: make}]}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "lnx]");
  CHECK(d.path == "builders[1].workers[1]");
  CHECK(d.message == "unknown worker 'lnx'; did you mean 'linux'?");
  CHECK(d.to_string() == (dir.path() / "master.yaml").string() +
                             ":6:37: builders[1].workers[1]: unknown worker 'lnx'; did you mean 'linux'?");
}

TEST_CASE("a scheduler naming an undeclared builder is an error at that name") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps("      - {type: shell, command: make}\n") +
                     "schedulers:\n  - {name: force, type: force, builders: [unit, unti2]}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "unti2");
  CHECK(d.message == "unknown builder 'unti2'; did you mean 'unit'?");
}

TEST_CASE("two builders with the same name are an error at the second name") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers: [{name: linux, type: local}]\n"
      "builders:\n"
      "  - {name: unit, workers: [linux], steps: [{type: shell, command: make}]}\n"
      "  - {name: unit, workers: [linux], steps: [{type: shell, command: make test}]}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  CHECK(d.location.line == 4);
  CHECK(d.location.column == 12);
  CHECK(d.path == "builders[1].name");
  CHECK(d.message.find("duplicate builder name 'unit'") == 0);
  CHECK(d.message.find(":3:12") != std::string::npos);  // where the first one is
}

TEST_CASE("builders without workers or steps are errors") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers: [{name: linux, type: local}]\n"
      "builders:\n"
      "  - {name: a, workers: [], steps: [{type: shell, command: make}]}\n"
      "  - {name: b, workers: [linux], steps: []}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].message == "builder 'a' has no workers");
  CHECK(errors[1].message == "builder 'b' has no steps");
}

TEST_CASE("worker and builder names must be safe in paths and URLs") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers: [{name: ../evil, type: local}]\n"
      "builders:\n"
      "  - {name: linux full, workers: [../evil], steps: [{type: shell, command: make}]}\n"
      "  - {name: a/b, workers: [../evil], steps: [{type: shell, command: make}]}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  REQUIRE(errors.size() == 2);  // "linux full" is a fine builder name
  CHECK(errors[0].path == "workers[0].name");
  CHECK(errors[0].message.find("worker name '../evil' may only hold") == 0);
  CHECK(errors[1].path == "builders[1].name");
}

TEST_CASE("included files append their lists and name their own positions") {
  FakeCatalog catalog;
  TempDir dir;
  dir.write("master.yaml",
            "include: [ci/workers.yaml]\n"
            "workers: [{name: w0, type: local}]\n"
            "builders:\n"
            "  - {name: unit, workers: [w0, w1, w2], steps: [{type: shell, command: make}]}\n");
  dir.write("ci/workers.yaml",
            "include: [more/last.yaml]\n"
            "workers:\n"
            "  - {name: w1, type: local}\n"
            "master: {title: Included}\n");
  dir.write("ci/more/last.yaml", "workers:\n  - {name: w2, type: lcoal}\n");
  ReadResult read = read_config_document(dir.path() / "master.yaml");
  INFO(describe(read.errors));
  REQUIRE(read.document);
  const ConfigDocument& doc = *read.document;
  CHECK(doc.root["workers"].size() == 3);
  CHECK(doc.root["workers"][2]["name"] == "w2");
  CHECK(doc.root["master"]["title"] == "Included");
  CHECK_FALSE(doc.root.contains("include"));
  SourceLocation w1 = doc.locate("/workers/1/name");
  CHECK(w1.file == (dir.path() / "ci/workers.yaml").string());
  CHECK(w1.line == 3);
  CHECK(w1.column == 12);

  // Errors in an included file point into it.
  auto errors = check_master_config(doc, catalog).errors;
  const Diagnostic& d = only_error(errors);
  CHECK(d.location.file == (dir.path() / "ci/more/last.yaml").string());
  CHECK(d.location.line == 2);
  CHECK(d.location.column == 22);
  CHECK(d.path == "workers[2].type");
  CHECK(d.message == "unknown worker type 'lcoal'; did you mean 'local'?");
}

TEST_CASE("a relative master path keeps included file names relative") {
  TempDir dir;
  dir.write("master.yaml", "include: [inc/a.yaml]\n");
  dir.write("inc/a.yaml", "workers:\n  - {name: w1, type: local}\n");
  auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  ReadResult read = read_config_document("master.yaml");
  std::filesystem::current_path(previous);
  REQUIRE(read.document);
  CHECK(read.document->locate("/workers/0").file == "inc/a.yaml");
}

TEST_CASE("an include cycle is reported with the chain of files") {
  TempDir dir;
  auto master = dir.write("master.yaml", "include: [a.yaml]\n");
  dir.write("a.yaml", "include: [b.yaml]\n");
  std::string b = "workers: []\ninclude: [a.yaml]\n";
  dir.write("b.yaml", b);
  ReadResult read = read_config_document(master);
  CHECK_FALSE(read.document);
  const Diagnostic& d = only_error(read.errors);
  CHECK(d.location.file == (dir.path() / "b.yaml").string());
  require_at(d, b, "a.yaml]");
  std::string p = dir.path().string() + "/";
  CHECK(d.message == "include cycle: " + p + "master.yaml -> " + p + "a.yaml -> " + p + "b.yaml -> " + p + "a.yaml");
}

TEST_CASE("a missing include is reported at the include line") {
  TempDir dir;
  std::string text = "workers: []\ninclude:\n  - here.yaml\n  - not-there.yaml\n";
  dir.write("here.yaml", "workers: []\n");
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  CHECK_FALSE(read.document);
  const Diagnostic& d = only_error(read.errors);
  require_at(d, text, "not-there.yaml");
  CHECK(d.message == "cannot include '" + (dir.path() / "not-there.yaml").string() + "': no such file");
}

TEST_CASE("a master key set in two files is a conflict") {
  TempDir dir;
  dir.write("master.yaml", "master: {title: One}\ninclude: [other.yaml]\n");
  std::string other = "master:\n  url: http://x/\n  title: Two\n";
  dir.write("other.yaml", other);
  ReadResult read = read_config_document(dir.path());
  const Diagnostic& d = only_error(read.errors);
  require_at(d, other, "title: Two");
  CHECK(d.path == "master.title");
  CHECK(d.message.find("'master.title' is already set at") == 0);
}

TEST_CASE("${env:NAME} is substituted inside strings and marks the value secret") {
  ScopedEnv password("KILN_TEST_PASSWORD", "hunter2");
  ScopedEnv host("KILN_TEST_HOST", "db.example.org");
  TempDir dir;
  ReadResult read = read_config_document(dir.write(
      "master.yaml",
      "master: {db: 'sqlite:${env:KILN_TEST_HOST}.sqlite'}\n"
      "workers:\n"
      "  - {name: w, type: buildbot-worker, password: \"${env:KILN_TEST_PASSWORD}\"}\n"));
  INFO(describe(read.errors));
  REQUIRE(read.document);
  const ConfigDocument& doc = *read.document;
  CHECK(doc.root["master"]["db"] == "sqlite:db.example.org.sqlite");
  CHECK(doc.root["workers"][0]["password"] == "hunter2");
  CHECK(doc.secret_pointers == std::set<std::string>{"/master/db", "/workers/0/password"});
  CHECK(redact_secrets(doc, "pw=hunter2") == "pw=***");
}

TEST_CASE("an unset environment variable is an error at the scalar") {
  unsetenv("KILN_TEST_UNSET");
  TempDir dir;
  std::string text = "master:\n  title: x\n  url: \"http://${env:KILN_TEST_UNSET}/\"\n";
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  CHECK_FALSE(read.document);
  const Diagnostic& d = only_error(read.errors);
  require_at(d, text, "\"http");
  CHECK(d.path == "master.url");
  CHECK(d.message == "environment variable 'KILN_TEST_UNSET' is not set");
}

TEST_CASE("${file:PATH} reads a file beside the configuration, without its trailing newline") {
  TempDir dir;
  dir.write("secrets/token", "s3cr3t-token\n");
  dir.write("master.yaml", "include: [sub/workers.yaml]\n");
  // Relative to the file the reference is written in.
  dir.write("sub/workers.yaml", "workers:\n  - {name: w, type: buildbot-worker, password: '${file:../secrets/token}'}\n");
  ReadResult read = read_config_document(dir.path());
  INFO(describe(read.errors));
  REQUIRE(read.document);
  CHECK(read.document->root["workers"][0]["password"] == "s3cr3t-token");
  CHECK(read.document->secret_pointers.count("/workers/0/password") == 1);

  std::string missing = "master: {title: '${file:nope.txt}'}\n";
  ReadResult bad = read_config_document(dir.write("bad.yaml", missing));
  const Diagnostic& d = only_error(bad.errors);
  require_at(d, missing, "'${file");
  CHECK(d.message.find("cannot read file 'nope.txt'") == 0);
}

TEST_CASE("$${ is a literal ${ and shell variables stay as written") {
  TempDir dir;
  ReadResult read = read_config_document(dir.write(
      "master.yaml", "master: {title: 'cost $${env:X} in ${HOME} or ${X:-y}'}\n"));
  INFO(describe(read.errors));
  REQUIRE(read.document);
  CHECK(read.document->root["master"]["title"] == "cost ${env:X} in ${HOME} or ${X:-y}");
  CHECK(read.document->secret_pointers.empty());
}

TEST_CASE("an unquoted ${env:..} filling a whole scalar is typed like a plain scalar") {
  ScopedEnv port("KILN_TEST_PORT", "8011");
  TempDir dir;
  ReadResult read = read_config_document(dir.write(
      "master.yaml",
      "reporters:\n"
      "  - type: web\n"
      "    port: ${env:KILN_TEST_PORT}\n"
      "    name: \"${env:KILN_TEST_PORT}\"\n"));
  REQUIRE(read.document);
  CHECK(read.document->root["reporters"][0]["port"] == 8011);
  CHECK(read.document->root["reporters"][0]["name"] == "8011");
}

TEST_CASE("a secret value never appears in any diagnostic") {
  const std::string secret = "Tr0ub4dor&3";
  ScopedEnv env("KILN_TEST_SECRET", secret);
  FakeCatalog catalog;
  TempDir dir;
  dir.write("secret.txt", secret + "\n");
  // Each secret lands where it is wrong: a wrong type, an enum, an unknown
  // worker name, and a plugin that quotes the value back.
  std::string text =
      "master: {log_level: '${env:KILN_TEST_SECRET}'}\n"
      "workers:\n"
      "  - {name: linux, type: local, max_builds: '${env:KILN_TEST_SECRET}'}\n"
      "builders:\n"
      "  - name: unit\n"
      "    workers: [linux, '${file:secret.txt}']\n"
      "    steps:\n"
      "      - {type: shell, command: make, interrupt_signal: '${env:KILN_TEST_SECRET}'}\n"
      "      - {type: shell, command: [make, 7], workdir: 'x${env:KILN_TEST_SECRET}'}\n"
      "reporters:\n"
      "  - {type: mail, fromaddr: '${env:KILN_TEST_SECRET}'}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  CHECK(errors.size() >= 5);
  for (const auto& d : errors) {
    CHECK(d.to_string().find(secret) == std::string::npos);
  }
  // The redacted mail message still says what is wrong.
  CHECK(std::any_of(errors.begin(), errors.end(), [](const Diagnostic& d) {
    return d.message == "mail: fromaddr '***' is not an email address";
  }));

  std::string missing_var = "master: {title: '${env:KILN_TEST_NOT_SET_${env:KILN_TEST_SECRET}}'}\n";
  for (const auto& d : read_config_document(dir.write("other.yaml", missing_var)).errors) {
    CHECK(d.to_string().find(secret) == std::string::npos);
  }
}

TEST_CASE("a builder matrix expands into one builder per combination, last key varying fastest") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers: [{name: linux, type: local}]\n"
      "builders:\n"
      "  - name: build-${matrix:os}-${matrix:cc}\n"
      "    matrix:\n"
      "      os: [ubuntu, debian]\n"
      "      cc: [gcc, clang]\n"
      "      jobs: [4]\n"
      "    workers: [linux]\n"
      "    properties: {stage: build}\n"
      "    steps:\n"
      "      - type: shell\n"
      "        command:\n"
      "          - make\n"
      "          - CC=${matrix:cc}\n"
      "          - -j\n"
      "          - \"${matrix:jobs}\"\n"
      "        timeout: ${matrix:jobs}\n"
      "  - {name: after, workers: [linux], steps: [{type: shell, command: make}]}\n";
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  INFO(describe(read.errors));
  REQUIRE(read.document);
  CheckResult checked = check_master_config(*read.document, catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.config);
  const auto& builders = checked.config->builders;
  REQUIRE(builders.size() == 5);
  std::vector<std::string> names;
  for (const auto& b : builders) names.push_back(b.name);
  CHECK(names == std::vector<std::string>{"build-ubuntu-gcc", "build-ubuntu-clang", "build-debian-gcc",
                                          "build-debian-clang", "after"});
  CHECK(builders[1].properties ==
        nlohmann::json{{"stage", "build"}, {"os", "ubuntu"}, {"cc", "clang"}, {"jobs", 4}});
  // Quoted, a whole reference gives a string; plain, the value's own type.
  CHECK(builders[1].steps[0].config["command"] == nlohmann::json{"make", "CC=clang", "-j", "4"});
  CHECK(builders[1].steps[0].common["timeout"] == 4);
  // Every copy keeps the entry's positions; the builder after moves along.
  auto [line, column] = position_of(text, "build-${matrix");
  CHECK(read.document->locate("/builders/3/name").line == line);
  CHECK(read.document->locate("/builders/3/name").column == column);
  CHECK(read.document->locate("/builders/4/name").line == 18);
  CHECK(read.document->locate("/builders/2/properties/os").line == 5);
}

TEST_CASE("matrix builders whose names do not vary are duplicate names") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "workers: [{name: linux, type: local}]\n"
      "builders:\n"
      "  - name: build-${matrix:os}\n"
      "    matrix: {os: [debian], cc: [gcc, clang]}\n"
      "    workers: [linux]\n"
      "    steps: [{type: shell, command: make}]\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  CHECK(d.path == "builders[1].name");
  require_at(d, text, "build-");
  CHECK(d.message.find("duplicate builder name 'build-debian'") == 0);
}

TEST_CASE("a matrix reference outside a matrix or to an unknown key is an error") {
  TempDir dir;
  std::string text =
      "builders:\n"
      "  - {name: 'a-${matrix:os}'}\n"
      "  - {name: 'b-${matrix:oss}', matrix: {os: [x]}}\n";
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  INFO(describe(read.errors));
  REQUIRE(read.errors.size() == 2);
  CHECK(read.errors[0].message == "'${matrix:os}' is used outside a builder with a matrix");
  CHECK(read.errors[1].message == "unknown matrix key 'oss'; did you mean 'os'?");
  require_at(read.errors[1], text, "'b-");
}

TEST_CASE("a plugin schema violation is reported at the plugin key's position") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "change_sources:\n"
      "  - type: git-poller\n"
      "    repourl: /srv/repo.git\n"
      "    poll_interval: 0\n"
      "    brnaches: [main]\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  REQUIRE(errors.size() == 2);
  require_at(errors[0], text, "0\n");
  CHECK(errors[0].path == "change_sources[0].poll_interval");
  require_at(errors[1], text, "brnaches");
  CHECK(errors[1].path == "change_sources[0].brnaches");
  CHECK(errors[1].message == "unknown key 'brnaches'; did you mean 'branches'?");
}

TEST_CASE("a plugin's own validate() rejection is reported at the entry with defaults applied") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = "reporters:\n  - {type: web}\n  - {type: mail, fromaddr: nobody}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "{type: mail");
  CHECK(d.path == "reporters[1]");
  CHECK(d.message == "mail: fromaddr 'nobody' is not an email address");
  CHECK(catalog.checks == 2);
}

TEST_CASE("an unknown step type suggests the closest registered type") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps("      - {type: shel, command: make}\n");
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "shel,");
  CHECK(d.path == "builders[0].steps[0].type");
  CHECK(d.message == "unknown step type 'shel'; did you mean 'shell'?");
}

TEST_CASE("unnamed steps are named after their type, unique within the builder") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps(
      "      - {type: shell, command: a}\n"
      "      - {type: shell, command: b, name: shell_2}\n"
      "      - {type: shell, command: c}\n"
      "      - {type: git, repourl: r}\n");
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  REQUIRE(read.document);
  auto checked = check_master_config(*read.document, catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.config);
  std::vector<std::string> names;
  for (const auto& s : checked.config->builders[0].steps) names.push_back(s.name);
  CHECK(names == std::vector<std::string>{"shell", "shell_2", "shell_3", "git"});
}

TEST_CASE("unnamed change sources and reporters are named <type>, or <type>-<n> when repeated") {
  FakeCatalog catalog;
  TempDir dir;
  ReadResult read = read_config_document(dir.write(
      "master.yaml",
      "change_sources:\n"
      "  - {type: git-poller, repourl: a}\n"
      "  - {type: git-poller, repourl: b}\n"
      "reporters: [{type: web}]\n"));
  REQUIRE(read.document);
  auto checked = check_master_config(*read.document, catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.config);
  CHECK(checked.config->change_sources[0].name == "git-poller-1");
  CHECK(checked.config->change_sources[1].name == "git-poller-2");
  CHECK(checked.config->reporters[0].name == "web");
}

TEST_CASE("a policy reference must name a declared policy filling the matching hook") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "master: {prioritize_builders: oldest, collapse_requests_policy: by-nmae}\n"
      "policies:\n"
      "  - {name: oldest, type: oldest-first}\n"
      "  - {name: by-name, type: alphabetical}\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  REQUIRE(errors.size() == 2);
  require_at(errors[0], text, "oldest,");
  CHECK(errors[0].path == "master.prioritize_builders");
  CHECK(errors[0].message == "policy 'oldest' is a 'next_build' policy; this key needs a 'prioritize_builders' policy");
  CHECK(errors[1].message == "unknown policy 'by-nmae'; did you mean 'by-name'?");
}

TEST_CASE("every error is reported at once, sorted by file, line and column") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text =
      "schedulers: [{name: s, type: force, builders: [nope]}]\n"
      "workers:\n"
      "  - {name: linux, type: local, colour: red}\n"
      "builders:\n"
      "  - {name: unit, workers: [lnux], steps: [{type: shel}]}\n"
      "  - {name: unit, workers: [linux], steps: [{type: shell, command: 1}]}\n"
      "bogus: 1\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  INFO(describe(errors));
  REQUIRE(errors.size() == 7);
  std::vector<std::string> paths;
  for (const auto& d : errors) paths.push_back(d.path);
  CHECK(paths == std::vector<std::string>{"schedulers[0].builders[0]", "workers[0].colour",
                                          "builders[0].workers[0]", "builders[0].steps[0].type",
                                          "builders[1].name", "builders[1].steps[0].command", "bogus"});
  CHECK(std::is_sorted(errors.begin(), errors.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.location.line, a.location.column) < std::tie(b.location.line, b.location.column);
  }));
}

TEST_CASE("plugin_paths are resolved against the folder of master.yaml before checking") {
  TempDir dir;
  ReadResult read = read_config_document(
      dir.write("sub/master.yaml", "master: {plugin_paths: [plugins, /opt/kiln/plugins, ../x/]}\n"));
  REQUIRE(read.document);
  auto paths = plugin_paths_of(*read.document);
  REQUIRE(paths.size() == 3);
  CHECK(paths[0] == dir.path() / "sub/plugins");
  CHECK(paths[1] == "/opt/kiln/plugins");
  CHECK(paths[2] == dir.path() / "x/");
}

TEST_CASE("a type written on a builder is explained as belonging to its steps") {
  FakeCatalog catalog;
  TempDir dir;
  std::string text = with_steps("      - {type: shell, command: make}\n") + "    type: shell\n";
  auto errors = all_errors(dir.write("master.yaml", text), catalog);
  const Diagnostic& d = only_error(errors);
  require_at(d, text, "type: shell\n");
  CHECK(d.message == "a builder has no 'type'; its steps do");
}
