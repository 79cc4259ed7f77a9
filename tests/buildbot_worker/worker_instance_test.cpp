// The plugin's worker component on its own, created through the real
// registry and driven through its vtable, with a recording host context and
// a real buildbot-worker at the other end.

#include "bbw_support.h"

#include "plugin/host.h"

namespace {

using namespace bbw_test;

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

void answer(void* user, kiln_status status, kiln_str text) {
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

json shell_args(const std::string& command, const fs::path& workdir) {
  return {{"command", command}, {"workdir", workdir.string()}, {"env", json::object()},
          {"want_stdout", true}, {"want_stderr", true}, {"logfiles", json::object()},
          {"timeout", 60},       {"maxTime", nullptr},  {"sigtermTime", nullptr},
          {"usePTY", false},     {"logEnviron", false}, {"initial_stdin", nullptr},
          {"interruptSignal", "KILL"}};
}

}  // namespace

TEST_CASE("a listen address taken by another program makes the worker fail to start, naming the address") {
  const uint16_t port = free_port();
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor taken(io, {boost::asio::ip::make_address("127.0.0.1"), port});
  WorkerFixture f("w1", {{"password", "x"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  CHECK(f.start().find("cannot listen on 127.0.0.1:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("commands before a worker connects are refused for a retry") {
  WorkerFixture f("w1", {{"password", "x"}, {"listen", "127.0.0.1:" + std::to_string(free_port())}});
  REQUIRE(f.start().empty());
  CHECK(f.command(1, "shell", shell_args("true", "/tmp")) == KILN_ERR_RETRY);
  Answer ping;
  CHECK(f.control("ping", ping) == KILN_ERR_NOT_FOUND);
}

TEST_CASE("ping and graceful shutdown reach a real worker through control actions") {
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-bbw-ctl");
  WorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  CHECK(f.ctx().info_["basedir"] == worker.basedir().string());
  CHECK(f.ctx().info_["os"].is_string());

  Answer ping;
  REQUIRE(f.control("ping", ping) == KILN_OK);
  REQUIRE(f.run_until([&] { return ping.done; }));
  CHECK(ping.status == KILN_OK);
  CHECK(ping.value["ok"] == true);
  CHECK(worker.twistd_log().find("message from master: ping") != std::string::npos);

  // A graceful shutdown waits for the running command.
  REQUIRE(f.command(7, "shell", shell_args("sleep 0.5; echo finished", worker.basedir() / "x")) == KILN_OK);
  Answer shutdown;
  REQUIRE(f.control("graceful_shutdown", shutdown) == KILN_OK);
  REQUIRE(f.run_until([&] { return shutdown.done; }));
  CHECK(shutdown.status == KILN_OK);
  REQUIRE(f.ctx().results_.count(7) == 1);
  CHECK(f.ctx().results_[7]["rc"] == 0);
  CHECK(f.ctx().results_[7].contains("elapsed"));
  CHECK(f.ctx().output_[7][KILN_STREAM_STDOUT] == "finished\n");
  CHECK(f.ctx().output_[7][KILN_STREAM_HEADER].find("sleep 0.5; echo finished") != std::string::npos);

  // The worker exits; the instance reports it gone.
  REQUIRE(f.run_until([&] { return worker.exited() && !f.ctx().disconnect_reason_.empty(); }));
  CHECK(f.ctx().disconnect_reason_ == "the worker shut down");
}

TEST_CASE("a worker that reconnects after losing its connection is attached again") {
  const uint16_t port = free_port();
  WorkerFixture f("w1", {{"password", "secret"}, {"listen", "127.0.0.1:" + std::to_string(port)}});
  REQUIRE(f.start().empty());
  TempDir root("kiln-bbw-re");
  WorkerProcess worker(root.path(), "w1", "secret", port);
  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 1; }));
  const fs::path pid_file = worker.basedir() / "shell.pid";
  REQUIRE(f.command(3, "shell", shell_args("echo $$ > ../shell.pid; sleep 30", worker.basedir() / "x")) == KILN_OK);
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  worker.kill_now();
  // The command runs in its own process group and outlives the worker.
  ::kill(-std::stoi(kiln::testing::read_file(pid_file)), SIGKILL);
  REQUIRE(f.run_until([&] { return !f.ctx().disconnect_reason_.empty(); }));
  CHECK(f.ctx().disconnect_reason_ == "the worker dropped the connection");
  CHECK(f.command(4, "shell", shell_args("true", worker.basedir() / "x")) == KILN_ERR_RETRY);

  worker.start();
  REQUIRE(f.run_until([&] { return f.ctx().connects_ == 2; }));
  REQUIRE(f.command(5, "stat", {{"path", (worker.basedir() / "buildbot.tac").string()}}) == KILN_OK);
  REQUIRE(f.run_until([&] { return f.ctx().results_.count(5) == 1; }));
  CHECK(f.ctx().results_[5]["rc"] == 0);
  REQUIRE(f.ctx().updates_[5].size() == 1);
  CHECK(f.ctx().updates_[5][0]["stat"].size() == 10);
}
