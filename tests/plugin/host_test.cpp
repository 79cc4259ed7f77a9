// The host service table seen from a plugin: argument checks, dispatch to
// the instance's context, marshalling onto the loop, exceptions stopped at
// the edge, and the services InstanceContext provides (log, clock, post,
// timers, state). Instances of the test plugins go through Instance.

#include "plugin/host.h"
#include "plugin/registry.h"
#include "plugin_test_support.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>

using namespace kiln::plugin;
using namespace kiln::plugin::test;
using kiln::util::EventLoop;
using kiln::util::ManualClock;

namespace {

const kiln_host_api& host() { return *host_api(); }

std::shared_ptr<ManualClock> manual_clock() { return std::make_shared<ManualClock>(); }

struct JsonResult {
  int calls = 0;
  kiln_status status = KILN_ERR_INTERNAL;
  std::string json;
  std::thread::id thread;
};

void record_json(void* user, kiln_status status, kiln_str json) {
  auto* result = static_cast<JsonResult*>(user);
  ++result->calls;
  result->status = status;
  result->json.assign(json.ptr, json.len);
  result->thread = std::this_thread::get_id();
}

void count(void* user) { ++*static_cast<int*>(user); }

void append_text(void* user, kiln_str text) {
  static_cast<std::string*>(user)->append(text.ptr, text.len);
}

}  // namespace

TEST_CASE("the host table fills every service and reports its size and version") {
  const kiln_host_api* api = host_api();
  REQUIRE(api != nullptr);
  CHECK(api->struct_size == sizeof(kiln_host_api));
  CHECK(api->abi_version == KILN_ABI_VERSION);
  // Every slot after the two version words is a function pointer.
  const size_t first = offsetof(kiln_host_api, log);
  for (size_t offset = first; offset < sizeof(kiln_host_api); offset += sizeof(void*)) {
    void* slot = nullptr;
    std::memcpy(&slot, reinterpret_cast<const char*>(api) + offset, sizeof slot);
    INFO("slot at offset " << offset);
    CHECK(slot != nullptr);
  }
  CHECK(api->get_proc("kiln.nothing.here") == nullptr);
}

TEST_CASE("host services reject a NULL context or a NULL required pointer") {
  const auto& h = host();
  JsonResult result;
  uint64_t id = 0;
  int n = 0;
  kiln_error err;
  const kiln_str s = str("x");
  const kiln_str null_text{nullptr, 3};
  CHECK(h.post(nullptr, count, &n) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.timer_start(nullptr, 1, 0, count, &n, &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.timer_cancel(nullptr, 1) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.state_get(nullptr, s, record_json, &result) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.state_put(nullptr, s, s, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.render(nullptr, s, append_text, nullptr, &err) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(err.status == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.data_get(nullptr, s, s, record_json, &result) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.data_control(nullptr, s, s, s, record_json, &result) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.unsubscribe(nullptr, 1) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.change_add(nullptr, s, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.buildset_add(nullptr, s, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.property_get(nullptr, s, append_text, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.property_set(nullptr, s, s, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.command_interrupt(nullptr, 1, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_add(nullptr, s, KILN_LOG_TYPE_STDIO, &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_append(nullptr, 1, KILN_STREAM_STDOUT, kiln_bytes{nullptr, 0}) ==
        KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_finish(nullptr, 1) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.set_summary(nullptr, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.add_url(nullptr, s, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.set_statistic(nullptr, s, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.set_progress(nullptr, s, 1.0) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.add_steps(nullptr, s, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.step_finish(nullptr, KILN_SUCCESS, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.worker_connected(nullptr, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.worker_disconnected(nullptr, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.command_output(nullptr, 1, KILN_STREAM_STDOUT, kiln_bytes{nullptr, 0}) ==
        KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.command_update(nullptr, 1, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.command_complete(nullptr, 1, s) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.transfer_write(nullptr, 1, kiln_bytes{nullptr, 0}) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.transfer_read(nullptr, 1, 10, [](void*, kiln_bytes) {}, nullptr) ==
        KILN_ERR_INVALID_ARGUMENT);

  // With a context, the required pointers are still checked.
  kiln_ctx ctx;
  CHECK(h.post(&ctx, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.timer_start(&ctx, 1, 0, nullptr, nullptr, &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.state_get(&ctx, s, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.state_put(&ctx, null_text, s, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.render(&ctx, s, nullptr, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.subscribe(&ctx, s, nullptr, nullptr, &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.subscribe(&ctx, s, [](void*, kiln_str, kiln_str) {}, nullptr, nullptr) ==
        KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.command_start(&ctx, s, s, nullptr, nullptr, &id) == KILN_ERR_INVALID_ARGUMENT);
  kiln_command_handlers no_complete{sizeof(kiln_command_handlers), nullptr, nullptr, nullptr};
  CHECK(h.command_start(&ctx, s, s, &no_complete, nullptr, &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_add(&ctx, s, 'x', &id) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_add(&ctx, s, KILN_LOG_TYPE_TEXT, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.log_append(&ctx, 1, KILN_STREAM_STDOUT, kiln_bytes{nullptr, 4}) ==
        KILN_ERR_INVALID_ARGUMENT);
  CHECK(h.transfer_read(&ctx, 1, 10, nullptr, nullptr) == KILN_ERR_INVALID_ARGUMENT);
  // Nothing to check: must not crash.
  h.error_set(nullptr, KILN_ERR_INTERNAL, s);
  h.log(nullptr, KILN_LOG_INFO, null_text);
}

TEST_CASE("a service a context does not offer answers KILN_ERR_UNSUPPORTED") {
  const auto& h = host();
  kiln_ctx ctx;
  uint64_t id = 0;
  kiln_error err;
  CHECK(h.set_summary(&ctx, str("compiling")) == KILN_ERR_UNSUPPORTED);
  CHECK(h.step_finish(&ctx, KILN_SUCCESS, str("")) == KILN_ERR_UNSUPPORTED);
  CHECK(h.log_add(&ctx, str("stdio"), KILN_LOG_TYPE_STDIO, &id) == KILN_ERR_UNSUPPORTED);
  CHECK(h.render(&ctx, str("%(prop:x)s"), append_text, nullptr, &err) ==
        KILN_ERR_UNSUPPORTED);
  CHECK(err.status == KILN_ERR_UNSUPPORTED);
  CHECK_FALSE(err.message.empty());
  CHECK(h.timer_start(&ctx, 1, 0, count, nullptr, &id) == KILN_ERR_UNSUPPORTED);
  kiln_command_handlers handlers{sizeof handlers, nullptr, nullptr,
                                 [](void*, kiln_str) {}};
  CHECK(h.command_start(&ctx, str("shell"), str("{}"), &handlers, nullptr, &id) ==
        KILN_ERR_UNSUPPORTED);
}

namespace {

// A context as the engine writes them: overrides a few services.
struct StepContext : kiln_ctx {
  std::string summary;
  std::vector<uint8_t> appended;
  kiln_status set_summary(std::string_view s) override {
    if (s == "boom") throw std::runtime_error("summary store exploded");
    summary = s;
    return KILN_OK;
  }
  kiln_status render(std::string_view text, std::string& out, std::string& error) override {
    if (text.empty()) {
      error = "nothing to render";
      return KILN_ERR_INVALID_CONFIG;
    }
    out = "rendered:" + std::string(text);
    return KILN_OK;
  }
  kiln_status log_append(uint64_t, kiln_stream, Bytes data) override {
    appended.insert(appended.end(), data.begin(), data.end());
    return KILN_OK;
  }
  kiln_status add_steps(std::string_view, std::string&) override {
    throw std::logic_error("bug");
  }
  kiln_status transfer_read(uint64_t, size_t max_len, std::vector<uint8_t>& out) override {
    out.assign(max_len, 'z');
    return KILN_OK;
  }
  kiln_status command_start(std::string_view, std::string_view, CommandHandlers handlers,
                            uint64_t& id) override {
    id = 7;
    handlers.on_complete(R"({"rc": 0})");
    if (handlers.on_output) handlers.on_output(KILN_STREAM_STDOUT, Bytes());
    return KILN_OK;
  }
};

}  // namespace

TEST_CASE("host functions convert arguments and results between C and the context") {
  const auto& h = host();
  StepContext ctx;
  CHECK(h.set_summary(&ctx, str("compiling")) == KILN_OK);
  CHECK(ctx.summary == "compiling");

  std::string out;
  kiln_error err;
  CHECK(h.render(&ctx, str("%(prop:x)s"), append_text, &out, &err) == KILN_OK);
  CHECK(out == "rendered:%(prop:x)s");
  CHECK(h.render(&ctx, kiln_str{nullptr, 0}, append_text, &out, &err) ==
        KILN_ERR_INVALID_CONFIG);
  CHECK(err.message == "nothing to render");

  const uint8_t bytes[] = {0, 1, 2, 255};
  CHECK(h.log_append(&ctx, 1, KILN_STREAM_STDOUT, kiln_bytes{bytes, 4}) == KILN_OK);
  CHECK(ctx.appended == std::vector<uint8_t>{0, 1, 2, 255});

  std::string read;
  CHECK(h.transfer_read(&ctx, 1, 3,
                        [](void* user, kiln_bytes data) {
                          static_cast<std::string*>(user)->assign(
                              reinterpret_cast<const char*>(data.ptr), data.len);
                        },
                        &read) == KILN_OK);
  CHECK(read == "zzz");

  // Only fields inside the plugin's struct_size count: on_complete set
  // beyond it is not seen, and on_complete is required.
  std::string completed;
  uint64_t id = 0;
  kiln_command_handlers truncated{
      static_cast<uint32_t>(offsetof(kiln_command_handlers, on_complete)), nullptr, nullptr,
      append_text};
  CHECK(h.command_start(&ctx, str("shell"), str("{}"), &truncated, &completed, &id) ==
        KILN_ERR_INVALID_ARGUMENT);
  kiln_command_handlers handlers{sizeof handlers, nullptr, nullptr, append_text};
  CHECK(h.command_start(&ctx, str("shell"), str("{}"), &handlers, &completed, &id) == KILN_OK);
  CHECK(id == 7);
  CHECK(completed == R"({"rc": 0})");
}

TEST_CASE("an exception thrown by a host service becomes KILN_ERR_INTERNAL at the edge") {
  LogCapture log;
  const auto& h = host();
  StepContext ctx;
  CHECK(h.set_summary(&ctx, str("boom")) == KILN_ERR_INTERNAL);
  CHECK_THAT(log.text(), Catch::Contains("summary store exploded"));
  kiln_error err;
  CHECK(h.add_steps(&ctx, str("[]"), &err) == KILN_ERR_INTERNAL);
  CHECK(err.status == KILN_ERR_INTERNAL);
  CHECK(err.message == "internal error in host service add_steps");
}

TEST_CASE("error_set copies the plugin's message into the host's error") {
  kiln_error err;
  std::string message = "repourl is required";
  host().error_set(&err, KILN_ERR_INVALID_CONFIG, str(message));
  message.assign("overwritten");
  CHECK(err.status == KILN_ERR_INVALID_CONFIG);
  CHECK(err.message == "repourl is required");
}

TEST_CASE("log goes to spdlog under the instance, the plugin label, or 'plugin'") {
  LogCapture log;
  EventLoop loop(manual_clock());
  InstanceContext ctx(loop, nullptr, KILN_KIND_STEP, "compile");
  host().log(&ctx, KILN_LOG_WARN, str("disk is slow"));
  host().log(nullptr, KILN_LOG_ERROR, str("no instance here"));
  {
    ScopedPluginLabel label("kiln-git.so");
    host().log(nullptr, KILN_LOG_INFO, str("loading"));
  }
  const std::string text = log.text();
  CHECK_THAT(text, Catch::Contains("warning [step compile] disk is slow"));
  CHECK_THAT(text, Catch::Contains("error [plugin] no instance here"));
  CHECK_THAT(text, Catch::Contains("info [kiln-git.so] loading"));
}

TEST_CASE("now_ms reads the instance loop's clock") {
  auto clock = manual_clock();
  EventLoop loop(clock);
  InstanceContext ctx(loop, nullptr, KILN_KIND_SCHEDULER, "nightly");
  clock->set(1234);
  CHECK(host().now_ms(&ctx) == 1234);
  loop.advance_manual_clock(10);
  CHECK(host().now_ms(&ctx) == 1244);
}

TEST_CASE("timers started through the host fire on the loop clock and die with the context") {
  EventLoop loop(manual_clock());
  int once = 0, every = 0;
  uint64_t once_id = 0, every_id = 0;
  {
    InstanceContext ctx(loop, nullptr, KILN_KIND_CHANGE_SOURCE, "poller");
    REQUIRE(host().timer_start(&ctx, 1000, 0, count, &once, &once_id) == KILN_OK);
    REQUIRE(host().timer_start(&ctx, 500, 500, count, &every, &every_id) == KILN_OK);
    CHECK(once_id != every_id);
    CHECK(ctx.active_timers() == 2);
    loop.advance_manual_clock(999);
    CHECK(once == 0);
    CHECK(every == 1);
    loop.advance_manual_clock(1);
    CHECK(once == 1);
    CHECK(every == 2);
    CHECK(ctx.active_timers() == 1);  // the one-shot is gone
    CHECK(host().timer_cancel(&ctx, once_id) == KILN_ERR_NOT_FOUND);
  }
  // The context's interval timer was cancelled with it.
  CHECK_FALSE(loop.cancel_timer(every_id));
  loop.advance_manual_clock(5000);
  CHECK(every == 2);
}

TEST_CASE("timer_cancel stops a timer before it fires") {
  EventLoop loop(manual_clock());
  InstanceContext ctx(loop, nullptr, KILN_KIND_REPORTER, "mail");
  int fired = 0;
  uint64_t id = 0;
  REQUIRE(host().timer_start(&ctx, 100, 0, count, &fired, &id) == KILN_OK);
  CHECK(host().timer_cancel(&ctx, id) == KILN_OK);
  loop.advance_manual_clock(1000);
  CHECK(fired == 0);
  CHECK(host().timer_cancel(&ctx, id) == KILN_ERR_NOT_FOUND);
}

TEST_CASE("state put then get round-trips through the StateBackend") {
  EventLoop loop(manual_clock());
  MemoryStateBackend backend;
  InstanceContext ctx(loop, &backend, KILN_KIND_CHANGE_SOURCE, "git");
  const auto& h = host();

  JsonResult put;
  REQUIRE(h.state_put(&ctx, str("last_rev"), str(R"({"main": "abc123"})"), record_json, &put) ==
          KILN_OK);
  // Never from inside the call, even when the backend answers at once.
  CHECK(put.calls == 0);
  loop.poll();
  CHECK(put.calls == 1);
  CHECK(put.status == KILN_OK);
  CHECK(backend.values().count(MemoryStateBackend::flat({KILN_KIND_CHANGE_SOURCE, "git",
                                                         "last_rev"})) == 1);

  JsonResult got, missing;
  REQUIRE(h.state_get(&ctx, str("last_rev"), record_json, &got) == KILN_OK);
  REQUIRE(h.state_get(&ctx, str("never_set"), record_json, &missing) == KILN_OK);
  loop.poll();
  CHECK(got.calls == 1);
  CHECK(nlohmann::json::parse(got.json) == nlohmann::json{{"main", "abc123"}});
  CHECK(missing.json == "null");

  // A put without a callback is fine; a value that is not JSON is not.
  CHECK(h.state_put(&ctx, str("n"), str("42"), nullptr, nullptr) == KILN_OK);
  CHECK(h.state_put(&ctx, str("n"), str("{oops"), nullptr, nullptr) ==
        KILN_ERR_INVALID_ARGUMENT);
  loop.poll();

  // Without a backend the service is not offered.
  InstanceContext stateless(loop, nullptr, KILN_KIND_STEP, "s");
  CHECK(h.state_get(&stateless, str("k"), record_json, &got) == KILN_ERR_UNSUPPORTED);
}

TEST_CASE("answers queued for an instance are dropped once its context is destroyed, posts still run once") {
  EventLoop loop(manual_clock());
  MemoryStateBackend backend;
  JsonResult got;
  int posted = 0;
  {
    InstanceContext ctx(loop, &backend, KILN_KIND_SCHEDULER, "s");
    REQUIRE(host().state_get(&ctx, str("k"), record_json, &got) == KILN_OK);
    REQUIRE(host().post(&ctx, count, &posted) == KILN_OK);
  }
  loop.poll();
  CHECK(got.calls == 0);
  // A post runs exactly once even so: the plugin may free `user` only there.
  CHECK(posted == 1);
}

namespace {

// Records where a service ran.
struct ThreadRecordingContext : InstanceContext {
  using InstanceContext::InstanceContext;
  std::thread::id ran_on;
  bool on_loop = false;
  kiln_status set_summary(std::string_view) override {
    ran_on = std::this_thread::get_id();
    on_loop = loop()->on_loop_thread();
    return KILN_ERR_RETRY;  // proves the status travels back to the caller
  }
};

}  // namespace

TEST_CASE("a host function called from another thread runs on the loop thread") {
  EventLoop loop;  // real clock: run() blocks until stopped
  MemoryStateBackend backend;
  ThreadRecordingContext ctx(loop, &backend, KILN_KIND_STEP, "threaded");
  std::atomic<int> summary_status{-1}, put_status{-1}, get_status{-1}, post_status{-1};
  JsonResult got;
  struct Posted {
    int calls = 0;
    std::thread::id thread;
  } posted;

  std::thread plugin_thread([&] {
    summary_status = host().set_summary(&ctx, str("from a thread"));
    put_status = host().state_put(&ctx, str("k"), str("1"), nullptr, nullptr);
    get_status = host().state_get(&ctx, str("k"), record_json, &got);
    post_status = host().post(
        &ctx,
        [](void* user) {
          auto* p = static_cast<Posted*>(user);
          ++p->calls;
          p->thread = std::this_thread::get_id();
        },
        &posted);
    // Queued after everything above, so the loop has run it all by then.
    host().post(&ctx, [](void* loop) { static_cast<EventLoop*>(loop)->stop(); }, &loop);
  });
  loop.run();
  plugin_thread.join();

  CHECK(summary_status == KILN_ERR_RETRY);
  CHECK(ctx.ran_on == std::this_thread::get_id());
  CHECK(ctx.on_loop);
  CHECK(put_status == KILN_OK);
  CHECK(get_status == KILN_OK);
  CHECK(post_status == KILN_OK);
  CHECK(posted.calls == 1);
  CHECK(posted.thread == std::this_thread::get_id());
  CHECK(got.calls == 1);
  CHECK(got.json == "1");
  CHECK(got.thread == std::this_thread::get_id());
}

// ---------------------------------------------------------------------------
// Instances of the test plugins.

TEST_CASE("an instance of the good plugin uses host services from create and is destroyed") {
  EventLoop loop(manual_clock());
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());
  const ComponentType* policy = registry.find(KILN_KIND_POLICY, "good-policy");
  REQUIRE(policy != nullptr);

  LogCapture log;
  auto context = std::make_unique<InstanceContext>(loop, nullptr, KILN_KIND_POLICY, "p1");
  InstanceContext* ctx = context.get();
  std::string error;
  auto instance = Instance::create(*policy, std::move(context), nlohmann::json::object(), error);
  REQUIRE(instance);
  CHECK(error.empty());
  CHECK(&instance->type() == policy);
  CHECK(instance->handle() != nullptr);
  CHECK_THAT(log.text(), Catch::Contains("[policy p1] created"));
  CHECK(ctx->active_timers() == 1);

  auto ask = [&] {
    std::string answer;
    kiln_error err;
    REQUIRE(instance->vtable<kiln_policy_vtable>()->call(instance->handle(), str("{}"),
                                                          append_text, &answer, &err) ==
            KILN_OK);
    return nlohmann::json::parse(answer);
  };
  CHECK(ask() == nlohmann::json{{"timer_status", KILN_OK}, {"timer_fired", 0}});
  loop.advance_manual_clock(1000);
  CHECK(ask() == nlohmann::json{{"timer_status", KILN_OK}, {"timer_fired", 1}});
  CHECK(ctx->active_timers() == 0);
  instance.reset();
}

TEST_CASE("an instance whose context offers no timers still sees the answer in create") {
  EventLoop loop(manual_clock());
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("good")}).empty());
  std::string error;
  auto instance = Instance::create(*registry.find(KILN_KIND_POLICY, "good-policy"),
                                   std::make_unique<kiln_ctx>(), nlohmann::json::object(), error);
  REQUIRE(instance);
  std::string answer;
  kiln_error err;
  instance->vtable<kiln_policy_vtable>()->call(instance->handle(), str("{}"), append_text,
                                               &answer, &err);
  CHECK(nlohmann::json::parse(answer).at("timer_status") == KILN_ERR_UNSUPPORTED);
}

TEST_CASE("a failing create surfaces the plugin's message through Instance") {
  EventLoop loop(manual_clock());
  Registry registry;
  REQUIRE(registry.load_directories({case_dir("create_fails")}).empty());
  std::string error;
  auto instance = Instance::create(
      *registry.find(KILN_KIND_STEP, "fails"),
      std::make_unique<InstanceContext>(loop, nullptr, KILN_KIND_STEP, "checkout"),
      nlohmann::json{{"repourl", "relative/path"}}, error);
  CHECK(instance == nullptr);
  CHECK(error == "create of step 'fails' failed: repourl must be an absolute URL");
}
