// The engine's latent-worker timing (core/engine/latent_workers.cpp) on a
// manual clock: a fake latent worker type that is "up" as soon as it is
// asked, builds whose only step sets a property (no worker command), and
// build_wait_timeout measured on a clock the test moves, so minutes of
// idleness take no time.

#include "util/build_master.h"

#include <kiln/plugin_api.h>

#include <memory>
#include <string>

namespace {

using nlohmann::json;

// --- the `clock-latent` worker type -------------------------------------------

namespace fake {

inline const kiln_host_api*& host() {
  static const kiln_host_api* h = nullptr;
  return h;
}
struct Counts {
  int starts = 0;
  int stops = 0;
};
inline Counts& counts() {
  static Counts c;
  return c;
}

struct Worker {
  kiln_ctx* ctx;
  bool up = false;
};

inline kiln_status create(kiln_ctx* ctx, kiln_str, void** out, kiln_error*) {
  *out = std::make_unique<Worker>(Worker{ctx, false}).release();  // the host's until destroy()
  return KILN_OK;
}
inline void destroy(void* instance) { std::unique_ptr<Worker>(static_cast<Worker*>(instance)); }
inline kiln_status start(void*, kiln_error*) { return KILN_OK; }
inline void stop(void*) {}
inline kiln_status command_start(void*, uint64_t, kiln_str, kiln_str, kiln_error*) { return KILN_ERR_UNSUPPORTED; }
inline kiln_status command_interrupt(void*, uint64_t, kiln_str) { return KILN_ERR_NOT_FOUND; }
inline kiln_status substantiate(void* instance, kiln_str, kiln_json_cb done, void* user) {
  // The engine asks before every build; a start happens only when down.
  auto* w = static_cast<Worker*>(instance);
  if (!w->up) {
    w->up = true;
    ++counts().starts;
    const std::string info = R"({"host": "fake"})";
    host()->worker_connected(w->ctx, {info.data(), info.size()});
  }
  done(user, KILN_OK, {"{}", 2});
  return KILN_OK;
}
inline kiln_status insubstantiate(void* instance, kiln_json_cb done, void* user) {
  auto* w = static_cast<Worker*>(instance);
  w->up = false;
  ++counts().stops;
  host()->worker_disconnected(w->ctx, {"stopped", 7});
  done(user, KILN_OK, {"{}", 2});
  return KILN_OK;
}

inline const kiln_worker_vtable kVtable = {sizeof(kiln_worker_vtable), &start, &stop, &command_start,
                                           &command_interrupt, &substantiate, &insubstantiate, nullptr};
inline const kiln_component_desc kDesc = {
    sizeof(kiln_component_desc), KILN_KIND_WORKER, "clock-latent", "1.0.0", "a latent worker up at once",
    R"({"type": "object"})", nullptr, &create, nullptr, &destroy, &kVtable};
inline const kiln_component_desc* const kComponents[] = {&kDesc};
inline const kiln_plugin_desc kPlugin = {KILN_PLUGIN_MAGIC, sizeof(kiln_plugin_desc), KILN_ABI_VERSION,
                                         "clock-latent-test", "1.0.0", "test worker", "MIT", 1, kComponents, nullptr};
inline const kiln_plugin_desc* entry(const kiln_host_api* h, uint32_t, kiln_error*) {
  host() = h;
  return &kPlugin;
}

}  // namespace fake

// A master on a loop with a manual clock, with the fake type built in.
class ClockMaster {
 public:
  explicit ClockMaster(const std::string& yaml)
      : master_(yaml, "kiln-latent-clock",
                {std::make_shared<kiln::util::ManualClock>(), &fake::entry, "clock-latent-test"}) {}

  void advance_s(uint64_t seconds) {
    master_.loop().advance_manual_clock(seconds * 1000);
    (void)kiln::testing::pump_until(master_.loop(), [] { return false; }, std::chrono::milliseconds(50));
  }
  void build_once() { CHECK(master_.build("b", json::array())["results"] == KILN_SUCCESS); }

 private:
  kiln::testing::BuildMaster master_;
};

std::string yaml(int build_wait_timeout) {
  return "master: {collapse_requests: false}\n"
         "workers:\n  - {name: lw, type: clock-latent, build_wait_timeout: " +
         std::to_string(build_wait_timeout) +
         "}\n"
         "builders:\n  - {name: b, workers: [lw], steps: [{type: set-property, property: p, value: v}]}\n";
}

}  // namespace

TEST_CASE("a latent worker stops after build_wait_timeout of idleness on the clock and a build in time keeps it up") {
  fake::counts() = {};
  ClockMaster m(yaml(600));
  CHECK(fake::counts().starts == 0);
  m.build_once();
  CHECK(fake::counts().starts == 1);
  m.advance_s(599);
  CHECK(fake::counts().stops == 0);
  // Another build within the timeout reuses the instance and restarts the wait.
  m.build_once();
  CHECK(fake::counts().starts == 1);
  m.advance_s(599);
  CHECK(fake::counts().stops == 0);
  m.advance_s(2);
  CHECK(fake::counts().stops == 1);
  // Down: the next build starts it again.
  m.build_once();
  CHECK(fake::counts().starts == 2);
  m.advance_s(601);
  CHECK(fake::counts().stops == 2);
}

TEST_CASE("a latent worker with build_wait_timeout 0 stops after each build and a negative one never stops") {
  {
    fake::counts() = {};
    ClockMaster m(yaml(0));
    m.build_once();
    m.advance_s(0);
    CHECK(fake::counts().stops == 1);
    m.build_once();
    m.advance_s(0);
    CHECK(fake::counts().starts == 2);
    CHECK(fake::counts().stops == 2);
  }
  {
    fake::counts() = {};
    ClockMaster m(yaml(-1));
    m.build_once();
    m.advance_s(365 * 24 * 3600);
    CHECK(fake::counts().starts == 1);
    CHECK(fake::counts().stops == 0);
  }
}
