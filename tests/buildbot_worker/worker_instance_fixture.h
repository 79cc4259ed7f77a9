#pragma once
// The buildbot-worker plugin's worker component on its own, created through
// the real registry and driven through its vtable, with a context that
// records what it reports to the host: for tests that put a real worker
// program (Buildbot's, kiln-worker) at the other end of one instance.

#include "bbw_support.h"

#include "plugin/host.h"

namespace bbw_test {


// Records what the worker instance reports to the host.
class RecordingContext : public kiln::plugin::InstanceContext {
 public:
  RecordingContext(kiln::util::EventLoop& loop, std::string name)
      : InstanceContext(loop, nullptr, KILN_KIND_WORKER, std::move(name)) {}

  kiln_status worker_connected(std::string_view info) override {
    info_ = json::parse(info);
    ++connects_;
    return KILN_OK;
  }
  kiln_status worker_disconnected(std::string_view reason) override {
    disconnect_reason_ = std::string(reason);
    return KILN_OK;
  }
  kiln_status command_output(uint64_t id, kiln_stream stream, Bytes data) override {
    output_[id][stream].append(reinterpret_cast<const char*>(data.data()), data.size());
    return KILN_OK;
  }
  kiln_status command_update(uint64_t id, std::string_view update) override {
    updates_[id].push_back(json::parse(update));
    return KILN_OK;
  }
  kiln_status command_complete(uint64_t id, std::string_view result) override {
    results_[id] = json::parse(result);
    return KILN_OK;
  }

  json info_;
  int connects_ = 0;
  std::string disconnect_reason_;
  std::map<uint64_t, std::map<int, std::string>> output_;
  std::map<uint64_t, std::vector<json>> updates_;
  std::map<uint64_t, json> results_;
};

struct Answer {
  bool done = false;
  kiln_status status = KILN_OK;
  json value;
};

inline void answer(void* user, kiln_status status, kiln_str text) {
  auto* a = static_cast<Answer*>(user);
  a->done = true;
  a->status = status;
  a->value = json::parse(std::string_view(text.ptr, text.len), nullptr, false);
}

class WorkerFixture {
 public:
  WorkerFixture(const std::string& name, const json& config) {
    auto failed = registry_.load_library(fs::path(KILN_BUILD_PLUGIN_DIR) / "kiln-buildbot-worker.so");
    REQUIRE(!failed);
    const auto* type = registry_.find(KILN_KIND_WORKER, "buildbot-worker");
    REQUIRE(type != nullptr);
    auto ctx = std::make_unique<RecordingContext>(loop_, name);
    ctx_ = ctx.get();
    std::string error;
    instance_ = kiln::plugin::Instance::create(*type, std::move(ctx), config, error);
    INFO(error);
    REQUIRE(instance_);
    vt_ = instance_->vtable<kiln_worker_vtable>();
  }
  ~WorkerFixture() {
    if (started_) vt_->stop(instance_->handle());
    instance_.reset();
  }

  // The error message, empty on success.
  std::string start() {
    kiln_error err;
    const kiln_status status = vt_->start(instance_->handle(), &err);
    started_ = status == KILN_OK;
    return started_ ? std::string() : err.message;
  }
  kiln_status command(uint64_t id, const std::string& name, const json& args) {
    const std::string text = args.dump();
    kiln_error err;
    return vt_->command_start(instance_->handle(), id, {name.data(), name.size()}, {text.data(), text.size()}, &err);
  }
  kiln_status interrupt(uint64_t id, const std::string& reason) {
    return vt_->command_interrupt(instance_->handle(), id, {reason.data(), reason.size()});
  }
  kiln_status control(const std::string& action, Answer& out) {
    return vt_->control(instance_->handle(), {action.data(), action.size()}, {"{}", 2}, &answer, &out);
  }
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    return bbw_test::run_until(loop_, pred, limit);
  }
  RecordingContext& ctx() { return *ctx_; }

 private:
  kiln::plugin::Registry registry_;
  kiln::util::EventLoop loop_;
  RecordingContext* ctx_ = nullptr;
  std::unique_ptr<kiln::plugin::Instance> instance_;
  const kiln_worker_vtable* vt_ = nullptr;
  bool started_ = false;
};

inline json shell_args(const std::string& command, const fs::path& workdir) {
  return {{"command", command}, {"workdir", workdir.string()}, {"env", json::object()},
          {"want_stdout", true}, {"want_stderr", true}, {"logfiles", json::object()},
          {"timeout", 60},       {"maxTime", nullptr},  {"sigtermTime", nullptr},
          {"usePTY", false},     {"logEnviron", false}, {"initial_stdin", nullptr},
          {"interruptSignal", "KILL"}};
}

// Ping answered, then a graceful shutdown that waits for a running shell
// command (run in <workdir>) before the worker is told to go.
inline void check_ping_and_graceful_shutdown(WorkerFixture& f, const fs::path& workdir) {
  Answer ping;
  REQUIRE(f.control("ping", ping) == KILN_OK);
  REQUIRE(f.run_until([&] { return ping.done; }));
  CHECK(ping.status == KILN_OK);
  CHECK(ping.value["ok"] == true);

  REQUIRE(f.command(7, "shell", shell_args("sleep 0.5; echo finished", workdir)) == KILN_OK);
  Answer shutdown;
  REQUIRE(f.control("graceful_shutdown", shutdown) == KILN_OK);
  REQUIRE(f.run_until([&] { return shutdown.done; }));
  CHECK(shutdown.status == KILN_OK);
  REQUIRE(f.ctx().results_.count(7) == 1);
  CHECK(f.ctx().results_[7]["rc"] == 0);
  CHECK(f.ctx().results_[7].contains("elapsed"));
  CHECK(f.ctx().output_[7][KILN_STREAM_STDOUT] == "finished\n");
  CHECK(f.ctx().output_[7][KILN_STREAM_HEADER].find("sleep 0.5; echo finished") != std::string::npos);
}

}  // namespace bbw_test
