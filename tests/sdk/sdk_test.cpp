// The C++ SDK seen from the host's side, without dlopen: this binary is
// itself a plugin (KILN_PLUGIN below) and the tests call its entry and
// descriptor functions directly with a fake host table.

#include <kiln/sdk/plugin.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// kiln_error is the host's type: the fake host defines it.
struct kiln_error {
  kiln_status status = KILN_OK;
  std::string message;
};

namespace {

using nlohmann::json;
namespace sdk = kiln::sdk;

// --- the fake host ---------------------------------------------------------

struct FakeHost {
  std::vector<std::string> log_lines;  // "level: message"
  std::vector<std::pair<kiln_fn, void*>> posted;
  std::map<uint64_t, std::pair<kiln_fn, void*>> timers;
  std::vector<uint64_t> cancelled_timers;
  uint64_t next_id = 1;
  std::map<uint64_t, std::string> logs;  // log id -> content
  std::vector<uint64_t> finished_logs;
  std::vector<std::pair<kiln_result, std::string>> step_finishes;
  std::map<std::string, std::string> properties;  // name -> value JSON
};

FakeHost* fake = nullptr;

std::string text(kiln_str s) { return std::string(s.ptr, s.len); }

kiln_host_api make_host_api() {
  kiln_host_api api{};
  api.struct_size = sizeof(kiln_host_api);
  api.abi_version = KILN_ABI_VERSION;
  api.log = [](kiln_ctx*, kiln_log_level level, kiln_str msg) {
    fake->log_lines.push_back(std::to_string(level) + ": " + text(msg));
  };
  api.error_set = [](kiln_error* err, kiln_status status, kiln_str msg) {
    err->status = status;
    err->message = text(msg);
  };
  api.post = [](kiln_ctx*, kiln_fn fn, void* user) {
    fake->posted.emplace_back(fn, user);
    return KILN_OK;
  };
  api.timer_start = [](kiln_ctx*, uint64_t, uint64_t, kiln_fn fn, void* user, uint64_t* id) {
    *id = fake->next_id++;
    fake->timers[*id] = {fn, user};
    return KILN_OK;
  };
  api.timer_cancel = [](kiln_ctx*, uint64_t id) {
    fake->cancelled_timers.push_back(id);
    return fake->timers.erase(id) == 1 ? KILN_OK : KILN_ERR_NOT_FOUND;
  };
  api.property_get = [](kiln_ctx*, kiln_str name, kiln_text_cb out, void* user) {
    auto it = fake->properties.find(text(name));
    std::string answer =
        it == fake->properties.end() ? "null" : R"({"value": )" + it->second + R"(, "source": "test"})";
    out(user, kiln_str{answer.data(), answer.size()});
    return KILN_OK;
  };
  api.property_set = [](kiln_ctx*, kiln_str name, kiln_str value, kiln_str) {
    fake->properties[text(name)] = text(value);
    return KILN_OK;
  };
  api.log_add = [](kiln_ctx*, kiln_str, char, uint64_t* id) {
    *id = fake->next_id++;
    fake->logs[*id] = "";
    return KILN_OK;
  };
  api.log_append = [](kiln_ctx*, uint64_t id, kiln_stream, kiln_bytes data) {
    fake->logs[id].append(reinterpret_cast<const char*>(data.ptr), data.len);
    return KILN_OK;
  };
  api.log_finish = [](kiln_ctx*, uint64_t id) {
    fake->finished_logs.push_back(id);
    return KILN_OK;
  };
  api.step_finish = [](kiln_ctx*, kiln_result result, kiln_str summary) {
    fake->step_finishes.emplace_back(result, text(summary));
    return KILN_OK;
  };
  return api;
}

// Each test gets a fresh fake host, installed through the plugin's entry.
struct HostFixture {
  FakeHost host;
  kiln_host_api api = make_host_api();
  kiln_error err;
  const kiln_plugin_desc* desc = nullptr;
  // Any distinct pointer will do: the SDK only hands it back to the host.
  kiln_ctx* ctx = reinterpret_cast<kiln_ctx*>(&host);

  HostFixture() {
    fake = &host;
    desc = kiln_plugin_entry(&api, KILN_ABI_VERSION, &err);
    REQUIRE(desc != nullptr);
  }
  ~HostFixture() { fake = nullptr; }

  const kiln_component_desc& component(const std::string& type) const {
    for (uint32_t i = 0; i < desc->component_count; ++i) {
      if (type == desc->components[i]->type_name) return *desc->components[i];
    }
    FAIL("no component " << type);
    throw std::logic_error("unreachable");
  }

  void* create(const std::string& type, const std::string& config) {
    void* instance = nullptr;
    kiln_status rc = component(type).create(ctx, kiln_str{config.data(), config.size()}, &instance, &err);
    REQUIRE(rc == KILN_OK);
    REQUIRE(instance != nullptr);
    return instance;
  }

  void run_posted() {
    auto queue = std::move(host.posted);
    host.posted.clear();
    for (auto [fn, user] : queue) fn(user);
  }
};

kiln_str str(const std::string& s) { return kiln_str{s.data(), s.size()}; }

// --- the plugin under test -----------------------------------------------

int live_greeters = 0;

constexpr const char* kGreeterSchema = R"({
  "type": "object",
  "properties": {"greeting": {"type": "string", "default": "hi"}},
  "additionalProperties": false
})";

class Greeter : public sdk::Step {
 public:
  Greeter(sdk::Context ctx, const json& config)
      : Step(std::move(ctx), config), greeting_(config.value("greeting", "hi")) {
    ++live_greeters;
  }
  ~Greeter() override { --live_greeters; }

  static sdk::Status validate(const json& config) {
    if (config.value("greeting", "") == "bye") return sdk::invalid_config("greeting: not a greeting");
    if (config.value("greeting", "") == "throw") throw std::runtime_error("validate exploded");
    return {};
  }

  sdk::Status run() override {
    auto log = add_log("greeting", KILN_LOG_TYPE_TEXT);
    if (!log) return log.status();
    append_log(*log, greeting_);
    auto who = property("who");
    if (!who) return who.status();
    set_property("greeted", who->is_null() ? json("nobody") : *who);
    return finish(KILN_SUCCESS, greeting_);
  }

  const std::string& greeting() const { return greeting_; }

 private:
  std::string greeting_;
};

class Exploding : public sdk::Step {
 public:
  Exploding(sdk::Context ctx, const json& config) : Step(std::move(ctx), config) {
    if (config.value("in_create", true)) throw std::runtime_error("boom from create");
  }
  sdk::Status run() override { throw sdk::Error(KILN_ERR_RETRY, "worker busy"); }
  void interrupt(std::string_view) override { throw std::logic_error("boom from interrupt"); }
};

class Ticker : public sdk::Reporter {
 public:
  Ticker(sdk::Context ctx, const json& config) : Reporter(std::move(ctx), config) {}
  sdk::Status start() override {
    auto timer = context().start_timer(1000, 1000, [this] { ++ticks; });
    return timer ? sdk::Status() : timer.status();
  }
  int ticks = 0;
};

class Forcer : public sdk::Scheduler {
 public:
  Forcer(sdk::Context ctx, const json& config) : Scheduler(std::move(ctx), config) {}
  sdk::Status control(std::string_view action, const json&, sdk::Reply reply) override {
    if (action == "force") reply.ok({{"bsid", 7}});
    // "ignore": accepted and then dropped without an answer (a bug the SDK
    // must not turn into a host waiting forever).
    return {};
  }
};

class Suffixes : public sdk::Policy {
 public:
  static constexpr const char* kHook = "file_is_important";
  Suffixes(sdk::Context ctx, const json& config) : Policy(std::move(ctx), config) {}
  sdk::Result<json> call(const json& args) override {
    const auto file = args.at("file").get<std::string>();
    return json(file.size() > 3 && file.substr(file.size() - 3) == ".md");
  }
};

// Latent: overrides substantiate, so the vtable offers it.
class Cloud : public sdk::Worker {
 public:
  Cloud(sdk::Context ctx, const json& config) : Worker(std::move(ctx), config) {}
  sdk::Status command_start(uint64_t, std::string_view, const json&) override { return {}; }
  sdk::Status substantiate(const json& build, sdk::Reply done) override {
    done.ok({{"booted_for", build.value("builder", "")}});
    return {};
  }
};

class Watcher : public sdk::ChangeSource {
 public:
  using ChangeSource::ChangeSource;
};

class Mismatched : public sdk::Reporter {
 public:
  using Reporter::Reporter;
};

}  // namespace

KILN_PLUGIN("kiln-sdk-test", "9.8.7", "SDK under test", "test-only",
            sdk::component<Greeter>(KILN_KIND_STEP, "greeter", "1.2.3", "Greets", kGreeterSchema),
            sdk::component<Exploding>(KILN_KIND_STEP, "exploding", "0.1", "Throws", nullptr),
            sdk::component<Ticker>(KILN_KIND_REPORTER, "ticker", "0.1", "Ticks", R"({"type": "object"})"),
            sdk::component<Forcer>(KILN_KIND_SCHEDULER, "forcer", "0.1", "Forces", nullptr),
            sdk::component<Suffixes>(KILN_KIND_POLICY, "suffixes", "0.1", "Important files", nullptr),
            sdk::component<Cloud>(KILN_KIND_WORKER, "cloud", "0.1", "Latent worker", nullptr),
            sdk::component<Watcher>(KILN_KIND_CHANGE_SOURCE, "watcher", "0.1", "Watches", nullptr));

// --- entry and descriptors -------------------------------------------------

TEST_CASE("the plugin descriptor carries the magic and its size and the ABI version and each component") {
  HostFixture f;
  CHECK(f.desc->magic == KILN_PLUGIN_MAGIC);
  CHECK(f.desc->struct_size == sizeof(kiln_plugin_desc));
  CHECK(f.desc->abi_version == KILN_ABI_VERSION);
  CHECK(std::string(f.desc->name) == "kiln-sdk-test");
  CHECK(std::string(f.desc->version) == "9.8.7");
  CHECK(std::string(f.desc->license) == "test-only");
  REQUIRE(f.desc->component_count == 7);
  const auto& greeter = f.component("greeter");
  CHECK(greeter.struct_size == sizeof(kiln_component_desc));
  CHECK(greeter.kind == KILN_KIND_STEP);
  CHECK(std::string(greeter.version) == "1.2.3");
  const auto* vt = static_cast<const kiln_step_vtable*>(greeter.vtable);
  CHECK(vt->struct_size == sizeof(kiln_step_vtable));
  const auto* policy = static_cast<const kiln_policy_vtable*>(f.component("suffixes").vtable);
  CHECK(std::string(policy->policy) == "file_is_important");
}

TEST_CASE("the entry refuses a host of another ABI major and names both versions") {
  FakeHost host;
  fake = &host;
  kiln_host_api api = make_host_api();
  kiln_error err;
  const uint32_t v2 = (2u << 16) | 0u;
  CHECK(kiln_plugin_entry(&api, v2, &err) == nullptr);
  CHECK(err.status == KILN_ERR_REFUSED);
  CHECK_THAT(err.message, Catch::Contains("kiln-sdk-test") &&
                              Catch::Contains("ABI 1." + std::to_string(KILN_ABI_MINOR)) &&
                              Catch::Contains("ABI 2.0"));
  fake = nullptr;
}

TEST_CASE("the entry accepts a host with a newer minor version") {
  FakeHost host;
  fake = &host;
  kiln_host_api api = make_host_api();
  kiln_error err;
  CHECK(kiln_plugin_entry(&api, KILN_ABI_VERSION + 5, &err) != nullptr);
  CHECK(err.status == KILN_OK);
  fake = nullptr;
}

TEST_CASE("every component's config schema is a JSON object") {
  HostFixture f;
  for (uint32_t i = 0; i < f.desc->component_count; ++i) {
    const char* schema = f.desc->components[i]->config_schema;
    if (schema == nullptr) continue;
    INFO(f.desc->components[i]->type_name);
    auto parsed = json::parse(schema, nullptr, false);
    CHECK(parsed.is_object());
  }
  CHECK(json::parse(f.component("greeter").config_schema)["properties"].contains("greeting"));
}

TEST_CASE("component() records a kind that does not match the class so that the plugin is refused") {
  HostFixture f;
  const auto before = sdk::detail::setup_problems().size();
  sdk::component<Mismatched>(KILN_KIND_SCHEDULER, "mismatched", "0.1", "Wrong kind", "[1]");
  const auto& problems = sdk::detail::setup_problems();
  REQUIRE(problems.size() == before + 2);
  CHECK_THAT(problems[before], Catch::Contains("mismatched") && Catch::Contains("scheduler") &&
                                   Catch::Contains("reporter"));
  CHECK_THAT(problems[before + 1], Catch::Contains("schema"));
}

// --- create, destroy, validate ---------------------------------------------

TEST_CASE("create builds the instance from its JSON config and destroy releases it") {
  HostFixture f;
  void* instance = f.create("greeter", R"({"greeting": "hello there"})");
  CHECK(live_greeters == 1);
  CHECK(static_cast<Greeter*>(instance)->greeting() == "hello there");
  f.component("greeter").destroy(instance);
  CHECK(live_greeters == 0);
}

TEST_CASE("an exception thrown while creating becomes KILN_ERR_INTERNAL with the type name") {
  HostFixture f;
  void* instance = reinterpret_cast<void*>(0x1);
  kiln_status rc = f.component("exploding").create(f.ctx, str("{}"), &instance, &f.err);
  CHECK(rc == KILN_ERR_INTERNAL);
  CHECK(f.err.status == KILN_ERR_INTERNAL);
  CHECK(f.err.message == "exploding: boom from create");
  CHECK(instance == nullptr);
}

TEST_CASE("a configuration that is not a JSON object is rejected before the constructor runs") {
  HostFixture f;
  void* instance = nullptr;
  CHECK(f.component("greeter").create(f.ctx, str("{not json"), &instance, &f.err) == KILN_ERR_INVALID_CONFIG);
  CHECK_THAT(f.err.message, Catch::StartsWith("greeter: ") && Catch::Contains("not valid JSON"));
  CHECK(f.component("greeter").create(f.ctx, str("[1, 2]"), &instance, &f.err) == KILN_ERR_INVALID_CONFIG);
  CHECK(live_greeters == 0);
}

TEST_CASE("validate is offered only by components that declare it and reports their verdict") {
  HostFixture f;
  CHECK(f.component("exploding").validate == nullptr);
  const auto& greeter = f.component("greeter");
  REQUIRE(greeter.validate != nullptr);
  CHECK(greeter.validate(str(R"({"greeting": "hello"})"), &f.err) == KILN_OK);

  CHECK(greeter.validate(str(R"({"greeting": "bye"})"), &f.err) == KILN_ERR_INVALID_CONFIG);
  CHECK(f.err.message == "greeter: greeting: not a greeting");

  CHECK(greeter.validate(str(R"({"greeting": "throw"})"), &f.err) == KILN_ERR_INTERNAL);
  CHECK(f.err.message == "greeter: validate exploded");
}

// --- vtables ---------------------------------------------------------------

TEST_CASE("a step's run uses the host's step services and finishes once") {
  HostFixture f;
  f.host.properties["who"] = R"("alice")";
  void* instance = f.create("greeter", R"({"greeting": "hey"})");
  const auto* vt = static_cast<const kiln_step_vtable*>(f.component("greeter").vtable);
  REQUIRE(vt->run(instance, &f.err) == KILN_OK);

  REQUIRE(f.host.step_finishes.size() == 1);
  CHECK(f.host.step_finishes[0].first == KILN_SUCCESS);
  CHECK(f.host.step_finishes[0].second == "hey");
  REQUIRE(f.host.logs.size() == 1);
  CHECK(f.host.logs.begin()->second == "hey");
  // The open log was finished before the step.
  CHECK(f.host.finished_logs == std::vector<uint64_t>{f.host.logs.begin()->first});
  CHECK(f.host.properties["greeted"] == R"("alice")");

  auto* step = static_cast<Greeter*>(instance);
  CHECK(step->finish(KILN_FAILURE).code() == KILN_ERR_INVALID_ARGUMENT);
  CHECK(f.host.step_finishes.size() == 1);
  f.component("greeter").destroy(instance);
}

TEST_CASE("exceptions from vtable functions keep their Error status or are logged") {
  HostFixture f;
  void* instance = f.create("exploding", R"({"in_create": false})");
  const auto* vt = static_cast<const kiln_step_vtable*>(f.component("exploding").vtable);
  CHECK(vt->run(instance, &f.err) == KILN_ERR_RETRY);
  CHECK(f.err.message == "exploding: worker busy");

  vt->interrupt(instance, str("stop"));
  REQUIRE_FALSE(f.host.log_lines.empty());
  CHECK_THAT(f.host.log_lines.back(),
             Catch::StartsWith(std::to_string(KILN_LOG_ERROR)) && Catch::Contains("exploding") &&
                 Catch::Contains("interrupt") && Catch::Contains("boom from interrupt"));
  f.component("exploding").destroy(instance);
}

TEST_CASE("a policy answers through out() with its JSON result") {
  HostFixture f;
  void* instance = f.create("suffixes", "{}");
  const auto* vt = static_cast<const kiln_policy_vtable*>(f.component("suffixes").vtable);
  std::string answer;
  auto out = [](void* user, kiln_str s) { *static_cast<std::string*>(user) = text(s); };
  REQUIRE(vt->call(instance, str(R"({"file": "README.md"})"), out, &answer, &f.err) == KILN_OK);
  CHECK(answer == "true");
  REQUIRE(vt->call(instance, str(R"({"file": "main.c"})"), out, &answer, &f.err) == KILN_OK);
  CHECK(answer == "false");
  // json::at on a missing key throws: the SDK reports it instead.
  CHECK(vt->call(instance, str("{}"), out, &answer, &f.err) == KILN_ERR_INTERNAL);
  CHECK_THAT(f.err.message, Catch::StartsWith("suffixes: ") && Catch::Contains("file"));
  f.component("suffixes").destroy(instance);
}

TEST_CASE("a scheduler's control answer reaches the host and a dropped request is answered with an error") {
  HostFixture f;
  void* instance = f.create("forcer", "{}");
  const auto* vt = static_cast<const kiln_scheduler_vtable*>(f.component("forcer").vtable);
  CHECK(vt->on_change == nullptr);  // not overridden, so not offered
  REQUIRE(vt->control != nullptr);
  std::vector<std::pair<kiln_status, std::string>> answers;
  auto cb = [](void* user, kiln_status status, kiln_str json_text) {
    static_cast<decltype(answers)*>(user)->emplace_back(status, text(json_text));
  };
  REQUIRE(vt->control(instance, str("force"), str("{}"), cb, &answers) == KILN_OK);
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].first == KILN_OK);
  CHECK(json::parse(answers[0].second) == json{{"bsid", 7}});

  REQUIRE(vt->control(instance, str("ignore"), str("{}"), cb, &answers) == KILN_OK);
  REQUIRE(answers.size() == 2);
  CHECK(answers[1].first == KILN_ERR_INTERNAL);
  CHECK_THAT(answers[1].second, Catch::Contains("forcer") && Catch::Contains("without an answer"));
  f.component("forcer").destroy(instance);
}

TEST_CASE("optional vtable functions are offered only when the class overrides them") {
  HostFixture f;
  const auto* worker = static_cast<const kiln_worker_vtable*>(f.component("cloud").vtable);
  CHECK(worker->struct_size == sizeof(kiln_worker_vtable));
  CHECK(worker->insubstantiate == nullptr);
  CHECK(worker->control == nullptr);
  REQUIRE(worker->substantiate != nullptr);
  const auto* source = static_cast<const kiln_change_source_vtable*>(f.component("watcher").vtable);
  CHECK(source->poll == nullptr);
  CHECK(source->start != nullptr);

  void* instance = f.create("cloud", "{}");
  std::string answer;
  auto done = [](void* user, kiln_status status, kiln_str json_text) {
    *static_cast<std::string*>(user) = std::to_string(status) + " " + text(json_text);
  };
  REQUIRE(worker->substantiate(instance, str(R"({"builder": "b1"})"), done, &answer) == KILN_OK);
  CHECK(answer == R"(0 {"booted_for":"b1"})");
  f.component("cloud").destroy(instance);
}

// --- Context ---------------------------------------------------------------

TEST_CASE("a host function the host does not offer surfaces as KILN_ERR_UNSUPPORTED") {
  HostFixture f;
  sdk::Context ctx(f.ctx, "test");
  f.api.post = nullptr;
  sdk::Status s = ctx.post([] {});
  CHECK(s.code() == KILN_ERR_UNSUPPORTED);
  CHECK_THAT(s.message(), Catch::Contains("post"));
  // A table too short to hold a field counts as not offering it.
  f.api.struct_size = offsetof(kiln_host_api, timer_start);
  auto timer = ctx.start_timer(10, [] {});
  CHECK(timer.status().code() == KILN_ERR_UNSUPPORTED);
  CHECK_THAT(timer.status().message(), Catch::Contains("timer_start"));
}

TEST_CASE("posted functions run once and not after their component is destroyed") {
  HostFixture f;
  auto runs = std::make_shared<int>(0);
  {
    sdk::Context ctx(f.ctx, "test");
    REQUIRE(ctx.post([runs] { ++*runs; }).ok());
    f.run_posted();
    CHECK(*runs == 1);

    REQUIRE(ctx.post([runs] { ++*runs; }).ok());
    ctx.release_callbacks();  // what a component's destructor does
    f.run_posted();           // the host still calls it once, to free it
    CHECK(*runs == 1);
    CHECK(ctx.post([] {}).code() == KILN_ERR_CANCELLED);
  }
  CHECK(runs.use_count() == 1);  // both holders were freed
}

TEST_CASE("a component's repeating timer keeps running until the component is destroyed") {
  HostFixture f;
  void* instance = f.create("ticker", "{}");
  const auto* vt = static_cast<const kiln_reporter_vtable*>(f.component("ticker").vtable);
  REQUIRE(vt->start(instance, &f.err) == KILN_OK);
  REQUIRE(f.host.timers.size() == 1);
  auto [id, timer] = *f.host.timers.begin();
  timer.first(timer.second);
  timer.first(timer.second);
  CHECK(static_cast<Ticker*>(instance)->ticks == 2);
  vt->stop(instance);
  f.component("ticker").destroy(instance);
  CHECK(f.host.cancelled_timers == std::vector<uint64_t>{id});
  CHECK(f.host.timers.empty());
}
