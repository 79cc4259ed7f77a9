// Loading plugin libraries through the real loader: the ABI conformance
// plugins of tests/plugins, plus built-in entries that exercise the same
// descriptor checks without a library per case.

#include "plugin/registry.h"
#include "plugin_test_support.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>

using namespace kiln::plugin;
using namespace kiln::plugin::test;
namespace fs = std::filesystem;

namespace {

LoadError only_error(const std::vector<LoadError>& errors) {
  REQUIRE(errors.size() == 1);
  return errors.front();
}

}  // namespace

TEST_CASE("the good plugin registers one component of each kind with its schema") {
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());

  auto all = registry.all();
  REQUIRE(all.size() == 6);
  const std::vector<std::pair<kiln_component_kind, std::string>> expected = {
      {KILN_KIND_CHANGE_SOURCE, "good-poller"}, {KILN_KIND_SCHEDULER, "good-scheduler"},
      {KILN_KIND_STEP, "good-step"},            {KILN_KIND_WORKER, "good-worker"},
      {KILN_KIND_REPORTER, "good-reporter"},    {KILN_KIND_POLICY, "good-policy"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(all[i]->kind == expected[i].first);
    CHECK(all[i]->type_name == expected[i].second);
    CHECK(all[i]->plugin_name == "kiln-test-good");
    CHECK(all[i]->plugin_version == "1.2.3");
    CHECK(all[i]->library == case_library("good"));
    CHECK(all[i]->schema.at("type") == "object");
  }

  const ComponentType* step = registry.find(KILN_KIND_STEP, "good-step");
  REQUIRE(step != nullptr);
  CHECK(step->summary == "runs nothing");
  CHECK(step->version == "1.0");
  CHECK(step->schema.at("required") == nlohmann::json::array({"command"}));
  REQUIRE(step->vtable<kiln_step_vtable>() != nullptr);
  CHECK(step->vtable<kiln_step_vtable>()->run != nullptr);
  CHECK(step->vtable<kiln_worker_vtable>() == nullptr);
  CHECK(registry.schema_for(KILN_KIND_STEP, "good-step") == &step->schema);
  CHECK(registry.schema_for(KILN_KIND_WORKER, "good-step") == nullptr);
  CHECK(registry.find(KILN_KIND_STEP, "good-poller") == nullptr);
  CHECK(registry.type_names(KILN_KIND_WORKER) == std::vector<std::string>{"good-worker"});

  REQUIRE(registry.plugins().size() == 1);
  CHECK(registry.plugins()[0]->description() == "every component kind, well behaved");
  CHECK(registry.plugins()[0]->license() == "MIT");
}

TEST_CASE("a file of random bytes named .so is reported as not a loadable shared library") {
  TempDir dir;
  {
    std::ofstream out(dir.path() / "garbage.so", std::ios::binary);
    std::mt19937 random(42);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(random()));
  }
  Registry registry;
  LoadError error = only_error(registry.load_directories({dir.path()}));
  CHECK(error.file == dir.path() / "garbage.so");
  CHECK_THAT(error.message, Catch::Contains("not a loadable shared library"));
  // dlerror's own words, which name the file and the reason.
  CHECK_THAT(error.message, Catch::Contains("garbage.so: invalid ELF header"));
  CHECK(error.to_string() == (dir.path() / "garbage.so").string() + ": " + error.message);
  CHECK(registry.all().empty());
}

TEST_CASE("only regular .so files of a plugin folder are loaded") {
  TempDir dir;
  std::ofstream(dir.path() / "notes.txt") << "not a plugin";
  std::ofstream(dir.path() / "kiln-thing.so.txt") << "not a plugin either";
  fs::create_directory(dir.path() / "nested.so");
  fs::copy_file(case_library("good"), dir.path() / "kiln-good.so");
  Registry registry;
  CHECK(registry.load_directories({dir.path()}).empty());
  CHECK(registry.all().size() == 6);
}

TEST_CASE("a library without kiln_plugin_entry is refused") {
  Registry registry;
  LoadError error = only_error(registry.load_directories({case_dir("no_entry")}));
  CHECK(error.file == case_library("no_entry"));
  CHECK_THAT(error.message, Catch::Contains("no kiln_plugin_entry symbol"));
}

TEST_CASE("a descriptor with the wrong magic is refused") {
  Registry registry;
  auto error = registry.load_library(case_library("wrong_magic"));
  REQUIRE(error);
  CHECK_THAT(error->message, Catch::Contains("magic 0xDEADBEEF"));
  CHECK_THAT(error->message, Catch::Contains("not a Kiln plugin"));
  CHECK(registry.find(KILN_KIND_STEP, "wrong-magic-step") == nullptr);
}

TEST_CASE("a plugin built for another ABI major is refused, naming both versions") {
  Registry registry;
  auto error = registry.load_library(case_library("wrong_major"));
  REQUIRE(error);
  CHECK(error->message ==
        "built for Kiln ABI 2.0, this kiln speaks " + abi_version_string(KILN_ABI_VERSION));
  CHECK(registry.all().empty());
}

TEST_CASE("a plugin whose entry refuses is not loaded and its reason is reported") {
  LogCapture log;
  Registry registry;
  auto error = registry.load_library(case_library("refuses"));
  REQUIRE(error);
  CHECK(error->message == "plugin refused to load: needs the frobnicator service");
  CHECK(registry.plugins().empty());
  // host->log(NULL, ...) from inside the entry is labelled with the file.
  CHECK_THAT(log.text(), Catch::Contains("[kiln-refuses.so] refusing to load"));
}

TEST_CASE("a component descriptor smaller than the minimum size is refused") {
  Registry registry;
  auto error = registry.load_library(case_library("bad_desc_size"));
  REQUIRE(error);
  CHECK(error->message == "component 0 descriptor is 16 bytes, smaller than the minimum " +
                              std::to_string(KILN_COMPONENT_DESC_MIN_SIZE));
  CHECK(registry.plugins().empty());
}

TEST_CASE("a component whose schema is not valid JSON is refused") {
  Registry registry;
  auto error = registry.load_library(case_library("bad_schema"));
  REQUIRE(error);
  CHECK(error->message ==
        "component 0 (step 'bad-schema-step') config_schema is not valid JSON");
  CHECK(registry.find(KILN_KIND_STEP, "bad-schema-step") == nullptr);
}

TEST_CASE("two libraries registering the same step type are reported naming both files") {
  Registry registry;
  LoadError error = only_error(registry.load_directories({case_dir("duplicate")}));
  const fs::path a = case_library("duplicate_a", "duplicate");
  const fs::path b = case_library("duplicate_b", "duplicate");
  CHECK(error.file == b);
  CHECK(error.message ==
        "step type 'dup' is registered by both " + a.string() + " and " + b.string());
  // The first (by file name) keeps the type; the second registers nothing.
  const ComponentType* dup = registry.find(KILN_KIND_STEP, "dup");
  REQUIRE(dup != nullptr);
  CHECK(dup->library == a);
  CHECK(registry.plugins().size() == 1);
}

TEST_CASE("a plugin built against a newer minor with larger structs loads and works") {
  kiln::util::EventLoop loop(std::make_shared<kiln::util::ManualClock>());
  Registry registry;
  REQUIRE_FALSE(registry.load_library(case_library("future_minor")));
  const ComponentType* policy = registry.find(KILN_KIND_POLICY, "future-policy");
  REQUIRE(policy != nullptr);
  CHECK(policy->plugin_version == "9.9.9");
  CHECK(policy->schema.at("properties").contains("depth"));
  // The host copies hold what this host knows, no more.
  CHECK(policy->desc.struct_size == sizeof(kiln_component_desc));
  CHECK(policy->vtable<kiln_policy_vtable>()->struct_size == sizeof(kiln_policy_vtable));
  CHECK(registry.plugins()[0]->desc().abi_version == ((1u << 16) | 77u));
  CHECK(registry.policy_hook("future-policy") == "next_build");

  std::string error;
  auto instance = Instance::create(
      *policy, std::make_unique<InstanceContext>(loop, nullptr, KILN_KIND_POLICY, "future"),
      nlohmann::json{{"depth", 3}}, error);
  REQUIRE(instance);
  std::string answer;
  kiln_error err;
  auto status = instance->vtable<kiln_policy_vtable>()->call(
      instance->handle(), str("{}"),
      [](void* user, kiln_str text) { static_cast<std::string*>(user)->assign(text.ptr, text.len); },
      &answer, &err);
  CHECK(status == KILN_OK);
  // It checked the host table's size before using a service from its future.
  CHECK(answer == R"({"host_has_teleport": false})");
}

TEST_CASE("loading the same library twice registers it once") {
  Registry registry;
  CHECK_FALSE(registry.load_library(case_library("good")));
  CHECK_FALSE(registry.load_library(case_dir("good") / "." / "kiln-good.so"));
  CHECK(registry.load_directories({case_dir("good")}).empty());
  CHECK(registry.plugins().size() == 1);
  CHECK(registry.all().size() == 6);
}

TEST_CASE("a missing plugin folder is an error unless it is a default one") {
  TempDir dir;
  const fs::path missing = dir.path() / "nope";
  Registry registry;
  LoadError error = only_error(registry.load_directories({missing}));
  CHECK(error.file == missing);
  CHECK(error.message == "plugin folder does not exist");
  CHECK(registry.load_directories({missing}, Registry::IfMissing::kSkip).empty());
}

TEST_CASE("check_with_plugin returns the message of the plugin's validate") {
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());
  CHECK(registry.check_with_plugin(KILN_KIND_STEP, "good-step", {{"command", "make"}}) ==
        std::nullopt);
  CHECK(registry.check_with_plugin(KILN_KIND_STEP, "good-step", {{"command", "forbidden"}}) ==
        "command 'forbidden' is not allowed");
  // No validate function: nothing beyond the schema to check.
  CHECK(registry.check_with_plugin(KILN_KIND_WORKER, "good-worker", {{"x", 1}}) ==
        std::nullopt);
  CHECK(registry.check_with_plugin(KILN_KIND_STEP, "nope", {}) == "no step type 'nope'");
}

TEST_CASE("policy_hook names the hook a policy type fills") {
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());
  CHECK(registry.policy_hook("good-policy") == "collapse_requests");
  CHECK(registry.policy_hook("good-step") == std::nullopt);
}

TEST_CASE("the plugin's shutdown runs when the registry is destroyed") {
  LogCapture log;
  {
    Registry registry;
    REQUIRE(registry.load_directories({case_dir("good")}).empty());
    CHECK_THAT(log.text(), Catch::Contains("[kiln-good.so] good plugin loading"));
    CHECK_THAT(log.text(), !Catch::Contains("shut down"));
  }
  CHECK_THAT(log.text(), Catch::Contains("[kiln-test-good] good plugin shut down"));
}

TEST_CASE("libraries whose types were never looked up are unloaded and load again when a type "
          "is asked for") {
  LogCapture log;
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good"), case_dir("dist_policies")}).empty());
  REQUIRE(registry.plugins().size() == 2);
  const std::vector<std::string> policies_before = registry.type_names(KILN_KIND_POLICY);
  REQUIRE(registry.find(KILN_KIND_STEP, "good-step") != nullptr);

  CHECK(registry.release_unused() == 1);
  REQUIRE(registry.plugins().size() == 1);
  CHECK(registry.plugins()[0]->name() == "kiln-test-good");
  // The library in use stays loaded and running.
  CHECK_THAT(log.text(), !Catch::Contains("[kiln-test-good] good plugin shut down"));
  // Its types are still known by name, for messages and checks.
  CHECK(registry.type_names(KILN_KIND_POLICY) == policies_before);
  CHECK(registry.all().size() == 6);

  // Scanning the folders again (a reconfig) does not load it back...
  REQUIRE(registry.load_directories({case_dir("good"), case_dir("dist_policies")}).empty());
  CHECK(registry.plugins().size() == 1);
  // ...asking for one of its types does.
  std::string dormant_policy;
  for (const auto& name : policies_before) {
    if (name != "good-policy") dormant_policy = name;
  }
  REQUIRE_FALSE(dormant_policy.empty());
  const ComponentType* woken = registry.find(KILN_KIND_POLICY, dormant_policy);
  REQUIRE(woken != nullptr);
  CHECK(woken->library == case_library("dist_policies"));
  CHECK(registry.plugins().size() == 2);
  CHECK(registry.type_names(KILN_KIND_POLICY) == policies_before);
  // Both are used now: nothing more to release.
  CHECK(registry.release_unused() == 0);
}

// ---------------------------------------------------------------------------
// Built-in entries: the same checks, no library.

namespace {

kiln_status noop_create(kiln_ctx*, kiln_str, void** out, kiln_error*) {
  *out = nullptr;
  return KILN_OK;
}
void noop_destroy(void*) {}
kiln_status noop_run(void*, kiln_error*) { return KILN_OK; }
const kiln_step_vtable kStepVtable = {sizeof(kiln_step_vtable), noop_run, nullptr};

kiln_component_desc step_desc(const char* type_name) {
  return kiln_component_desc{sizeof(kiln_component_desc),
                             KILN_KIND_STEP,
                             type_name,
                             "1.0",
                             "built-in test step",
                             R"({"type": "object"})",
                             nullptr,
                             noop_create,
                             nullptr,
                             noop_destroy,
                             &kStepVtable};
}

// One built-in plugin whose single component the test edits first.
kiln_component_desc g_component;
const kiln_component_desc* g_components[] = {&g_component};
kiln_plugin_desc g_plugin;

const kiln_plugin_desc* builtin_entry(const kiln_host_api*, uint32_t, kiln_error*) {
  return &g_plugin;
}

void reset_builtin(kiln_component_desc component) {
  g_component = component;
  g_plugin = kiln_plugin_desc{KILN_PLUGIN_MAGIC, sizeof(kiln_plugin_desc),
                              KILN_ABI_VERSION,  "kiln-builtin-test",
                              "0.1",             "built-in",
                              "MIT",             1,
                              g_components,      nullptr};
}

std::string builtin_error(kiln_component_desc component) {
  reset_builtin(component);
  Registry registry;
  auto error = registry.add_builtin(builtin_entry, "builtin-test");
  REQUIRE(error);
  CHECK(error->file == "builtin-test");
  CHECK(registry.all().empty());
  return error->message;
}

}  // namespace

TEST_CASE("built-in components register through the same descriptor path") {
  reset_builtin(step_desc("builtin-step"));
  Registry registry;
  REQUIRE_FALSE(registry.add_builtin(builtin_entry, "builtin-test"));
  const ComponentType* step = registry.find(KILN_KIND_STEP, "builtin-step");
  REQUIRE(step != nullptr);
  CHECK(step->library.empty());
  CHECK(step->plugin_name == "kiln-builtin-test");
  CHECK(step->vtable<kiln_step_vtable>()->run == noop_run);
  // The host copy is not the plugin's struct.
  CHECK(&step->desc != &g_component);
  CHECK(registry.plugins()[0]->builtin());
}

TEST_CASE("a built-in clashing with a library names both in the message") {
  reset_builtin(step_desc("good-step"));
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());
  auto error = registry.add_builtin(builtin_entry, "builtin-test");
  REQUIRE(error);
  CHECK(error->message == "step type 'good-step' is registered by both " +
                              case_library("good").string() + " and built-in builtin-test");
}

TEST_CASE("a component without a type_name is refused") {
  CHECK(builtin_error(step_desc(nullptr)) == "component 0 has no type_name");
}

TEST_CASE("a component of an unknown kind is refused") {
  auto desc = step_desc("odd");
  desc.kind = 42;
  CHECK(builtin_error(desc) == "component 0 ('odd') has unknown kind 42");
}

TEST_CASE("a component without create or destroy is refused") {
  auto no_create = step_desc("lazy");
  no_create.create = nullptr;
  CHECK(builtin_error(no_create) == "component 0 (step 'lazy') has no create function");
  auto no_destroy = step_desc("leaky");
  no_destroy.destroy = nullptr;
  CHECK(builtin_error(no_destroy) == "component 0 (step 'leaky') has no destroy function");
}

TEST_CASE("a component without a vtable is refused") {
  auto desc = step_desc("hollow");
  desc.vtable = nullptr;
  CHECK(builtin_error(desc) == "component 0 (step 'hollow') has no vtable");
}

TEST_CASE("a component whose schema is JSON but not a valid schema is refused") {
  auto desc = step_desc("weird");
  desc.config_schema = R"({"type": "banana"})";
  CHECK_THAT(builtin_error(desc),
             Catch::StartsWith("component 0 (step 'weird') config_schema is not a valid schema: "));
}

TEST_CASE("a component without a schema accepts any object") {
  auto desc = step_desc("free");
  desc.config_schema = nullptr;
  reset_builtin(desc);
  Registry registry;
  REQUIRE_FALSE(registry.add_builtin(builtin_entry, "builtin-test"));
  CHECK(*registry.schema_for(KILN_KIND_STEP, "free") == nlohmann::json{{"type", "object"}});
}

TEST_CASE("a plugin descriptor smaller than the minimum size is refused") {
  reset_builtin(step_desc("tiny"));
  g_plugin.struct_size = 12;
  Registry registry;
  auto error = registry.add_builtin(builtin_entry, "builtin-test");
  REQUIRE(error);
  CHECK(error->message == "plugin descriptor is 12 bytes, smaller than the minimum " +
                              std::to_string(KILN_PLUGIN_DESC_MIN_SIZE));
}

TEST_CASE("a plugin listing components without an array is refused") {
  reset_builtin(step_desc("lost"));
  g_plugin.components = nullptr;
  Registry registry;
  auto error = registry.add_builtin(builtin_entry, "builtin-test");
  REQUIRE(error);
  CHECK_THAT(error->message, Catch::Contains("components array is NULL"));
}

TEST_CASE("a plugin refusing without a reason is still reported") {
  Registry registry;
  auto error = registry.add_builtin(
      [](const kiln_host_api*, uint32_t, kiln_error*) -> const kiln_plugin_desc* {
        return nullptr;
      },
      "silent");
  REQUIRE(error);
  CHECK(error->message == "plugin refused to load (no reason given)");
}

TEST_CASE("the search path lists config folders, KILN_PLUGIN_PATH, the installed folder and "
          "the build tree's plugins, without duplicates") {
  const char* old = std::getenv("KILN_PLUGIN_PATH");
  const std::string saved = old ? old : "";
  setenv("KILN_PLUGIN_PATH", "/env/a::/env/b:/cfg/one/", 1);
  auto path = plugin_search_path({"/cfg/one", "/cfg/two"});
  if (old) setenv("KILN_PLUGIN_PATH", saved.c_str(), 1); else unsetenv("KILN_PLUGIN_PATH");

  REQUIRE(path.size() >= 5);
  CHECK(path[0] == "/cfg/one");
  CHECK(path[1] == "/cfg/two");
  CHECK(path[2] == "/env/a");
  CHECK(path[3] == "/env/b");
  CHECK(path[4] == fs::path(KILN_INSTALLED_PLUGIN_DIR));
  // This test binary sits next to the test plugins' folder `plugins`.
  REQUIRE(path.size() == 6);
  CHECK(fs::equivalent(path[5], KILN_TEST_PLUGIN_DIR));
}
