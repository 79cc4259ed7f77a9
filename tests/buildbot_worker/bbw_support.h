#pragma once
// What the buildbot-worker tests share: a real `buildbot-worker` (Debian's
// Buildbot 3.7) created and run as a child process, a free TCP port, an
// engine on a temp master folder, and a tiny step type that runs any worker
// command and records what came back (no standard step runs stat or glob).

#include "config/master_config.h"
#include "engine/engine.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "store/temp_dir.h"
#include "util/child_process.h"
#include "util/event_loop.h"
#include "util/free_port.h"
#include "util/pump_loop.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <catch2/catch.hpp>
#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace bbw_test {

using nlohmann::json;
namespace fs = std::filesystem;
using kiln::testing::TempDir;

using kiln::testing::free_port;

inline bool run_until(kiln::util::EventLoop& loop, const std::function<bool()>& pred,
                      std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  return kiln::testing::pump_until(loop, pred, limit);
}

// A Buildbot worker made with `buildbot-worker create-worker` (msgpack
// protocol) and run in the foreground (`start --nodaemon`) with a small
// environment, as the protocol reference's recipe does.
class WorkerProcess {
 public:
  // `tls`: --use-tls against `host` (the certificate's name), trusting
  // the CA file `tls->ca_file` (OpenSSL's SSL_CERT_FILE).
  struct Tls {
    std::string host;
    fs::path ca_file;
  };
  WorkerProcess(const fs::path& root, const std::string& name, const std::string& password, uint16_t port,
                const std::optional<Tls>& tls = std::nullopt)
      : root_(root), basedir_(root / name) {
    fs::create_directories(root / "home");
    env_ = {"PATH=/usr/bin:/bin", "HOME=" + (root / "home").string(), "LANG=C.UTF-8"};
    std::vector<std::string> create = {"/usr/bin/buildbot-worker", "create-worker",
                                       "--protocol=msgpack_experimental_v7"};
    if (tls) {
      create.push_back("--use-tls");
      env_.push_back("SSL_CERT_FILE=" + tls->ca_file.string());
    }
    const std::string host = tls ? tls->host : std::string("127.0.0.1");
    create.insert(create.end(), {basedir_.string(), host + ":" + std::to_string(port), name, password});
    const pid_t pid = spawn(create, root / (name + ".create.out"));
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  ~WorkerProcess() { stop(); }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  const fs::path& basedir() const { return basedir_; }
  pid_t pid() const { return pid_; }

  void start() {
    pid_ = spawn({"/usr/bin/buildbot-worker", "start", "--nodaemon", basedir_.string()},
                 root_ / (basedir_.filename().string() + ".out"));
  }
  void kill_now() { kiln::testing::kill_process(pid_); }
  // SIGTERM, as an operator stops it; SIGKILL if it lingers.
  void stop() { kiln::testing::stop_process(pid_); }
  // True once the process has ended (reaped here).
  bool exited() { return kiln::testing::process_exited(pid_); }
  std::string twistd_log() const { return kiln::testing::read_file(basedir_ / "twistd.log"); }

 private:
  pid_t spawn(const std::vector<std::string>& args, const fs::path& output) {
    return kiln::testing::spawn_process(args, env_, output, root_);
  }

  fs::path root_, basedir_;
  std::vector<std::string> env_;
  pid_t pid_ = -1;
};

// --- the `worker-command` test step ------------------------------------------
// {type: worker-command, command: stat, args: {file: x}, key: k}: runs the
// command and keeps {"updates": [...], "result": {...}} under k.

namespace probe {

inline const kiln_host_api*& host() {
  static const kiln_host_api* h = nullptr;
  return h;
}
inline std::map<std::string, json>& results() {
  static std::map<std::string, json> r;
  return r;
}

struct Run {
  kiln_ctx* ctx;
  std::string command, key;
  json args;
  json updates = json::array();
};

inline kiln_status create(kiln_ctx* ctx, kiln_str config, void** out, kiln_error*) {
  json c = json::parse(std::string_view(config.ptr, config.len), nullptr, false);
  auto run = std::make_unique<Run>(Run{ctx, c.value("command", ""), c.value("key", ""), c.value("args", json::object())});
  *out = run.release();
  return KILN_OK;
}
inline void destroy(void* instance) { std::unique_ptr<Run>(static_cast<Run*>(instance)); }
inline void on_update(void* user, kiln_str update) {
  static_cast<Run*>(user)->updates.push_back(json::parse(std::string_view(update.ptr, update.len)));
}
inline void on_complete(void* user, kiln_str result_json) {
  auto* run = static_cast<Run*>(user);
  json result = json::parse(std::string_view(result_json.ptr, result_json.len));
  results()[run->key] = {{"updates", run->updates}, {"result", result}};
  const std::string summary = "rc " + std::to_string(result.value("rc", -1));
  host()->step_finish(run->ctx, result.value("rc", -1) == 0 ? KILN_SUCCESS : KILN_FAILURE,
                      {summary.data(), summary.size()});
}
inline kiln_status run(void* instance, kiln_error*) {
  static const kiln_command_handlers handlers = {sizeof(kiln_command_handlers), nullptr, &on_update, &on_complete};
  auto* r = static_cast<Run*>(instance);
  const std::string args = r->args.dump();
  uint64_t id = 0;
  return host()->command_start(r->ctx, {r->command.data(), r->command.size()}, {args.data(), args.size()},
                               &handlers, r, &id);
}

inline const kiln_step_vtable kVtable = {sizeof(kiln_step_vtable), &run, nullptr};
inline const kiln_component_desc kDesc = {
    sizeof(kiln_component_desc), KILN_KIND_STEP, "worker-command", "1.0.0", "runs one worker command",
    R"({"type": "object", "required": ["command", "key"],
        "properties": {"command": {"type": "string"}, "args": {"type": "object"}, "key": {"type": "string"}}})",
    nullptr, &create, nullptr, &destroy, &kVtable};
inline const kiln_component_desc* const kComponents[] = {&kDesc};
inline const kiln_plugin_desc kPlugin = {KILN_PLUGIN_MAGIC, sizeof(kiln_plugin_desc), KILN_ABI_VERSION,
                                         "bbw-test-probe", "1.0.0", "test step", "MIT", 1, kComponents, nullptr};
inline const kiln_plugin_desc* entry(const kiln_host_api* h, uint32_t, kiln_error*) {
  host() = h;
  return &kPlugin;
}

}  // namespace probe

// A master folder, its plugins, store and engine, on a loop the test pumps
// (the pattern of tests/engine/engine_test.cpp).
class EngineFixture {
 public:
  explicit EngineFixture(const std::string& yaml) {
    std::ofstream(dir_ / "master.yaml") << yaml;
    kiln::master::register_builtins(registry_);
    REQUIRE(!registry_.add_builtin(&probe::entry, "bbw-test-probe"));
    auto errors = registry_.load_directories({KILN_BUILD_PLUGIN_DIR});
    for (const auto& e : errors) FAIL(e.to_string());
    auto read = kiln::config::read_config_document(dir_ / "master.yaml");
    for (const auto& d : read.errors) FAIL(d.to_string());
    auto checked = kiln::config::check_master_config(*read.document, registry_);
    for (const auto& d : checked.errors) FAIL(d.to_string());
    config_ = *checked.config;

    kiln::store::OpenOptions options;
    options.url = "sqlite:state.sqlite";
    options.base_dir = dir_.path();
    options.mode = kiln::store::OpenMode::kCreate;
    options.post_to_loop = [this](std::function<void()> fn) { loop_.post(std::move(fn)); };
    auto opened = kiln::store::open_store(std::move(options));
    REQUIRE(opened.ok());
    store_ = std::move(opened.value);
    auto master = store_->register_master_sync("test:" + dir_.path().string(), 0);
    REQUIRE(master.ok());
    engine_ = std::make_unique<kiln::engine::Engine>(loop_, *store_, registry_, config_, master.value);
    engine_->events().subscribe("builds/+/finished",
                                [this](const std::string&, const json& e) { finished_.push_back(e); });
  }
  ~EngineFixture() {
    if (engine_) {
      bool stopped = false;
      engine_->stop([&] { stopped = true; });
      run_until([&] { return stopped; });
      engine_.reset();
    }
  }

  std::string start() { return engine_->start(); }
  kiln::engine::Engine& engine() { return *engine_; }
  kiln::util::EventLoop& loop() { return loop_; }
  const fs::path& dir() const { return dir_.path(); }

  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    return bbw_test::run_until(loop_, pred, limit);
  }

  json get(const std::string& path, json query = nullptr) {
    json out;
    bool done = false;
    engine_->data().get(path, query, [&](kiln_status status, json value) {
      INFO(value.dump());
      CHECK(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  json submit(const json& request) {
    json out;
    bool done = false;
    engine_->add_buildset(request, [&](kiln_status status, json value) {
      INFO(value.dump());
      REQUIRE(status == KILN_OK);
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  // Engine::control, as the control socket and the web call it: the
  // answer, and its status in `status`.
  json control(const std::string& path, const std::string& action, const json& args = json::object(),
               kiln_status* status = nullptr) {
    json out;
    bool done = false;
    engine_->control(path, action, args, [&](kiln_status s, json value) {
      if (status) *status = s;
      out = std::move(value);
      done = true;
    });
    REQUIRE(run_until([&] { return done; }));
    return out;
  }

  const std::vector<json>& finished() const { return finished_; }
  std::vector<json> wait_finished(size_t count) {
    REQUIRE(run_until([&] { return finished_.size() >= count; }));
    return finished_;
  }

  // The whole text of a step's log, by step name and log name.
  std::string log_text(int64_t buildid, const std::string& step, const std::string& log = "stdio") {
    for (const auto& s : get("builds/" + std::to_string(buildid) + "/steps")) {
      if (s["name"] != step) continue;
      for (const auto& l : get("steps/" + std::to_string(s["stepid"].get<int64_t>()) + "/logs")) {
        if (l["name"] != log) continue;
        return get("logs/" + std::to_string(l["logid"].get<int64_t>()) + "/contents")["content"].get<std::string>();
      }
    }
    return {};
  }

 private:
  TempDir dir_{"kiln-bbw"};
  kiln::plugin::Registry registry_;
  kiln::config::MasterConfig config_;
  kiln::util::EventLoop loop_;
  std::unique_ptr<kiln::store::Store> store_;
  std::unique_ptr<kiln::engine::Engine> engine_;
  std::vector<json> finished_;
};

}  // namespace bbw_test
