#pragma once
// What every benchmark shares: a master stood up in-process the way `kiln
// start` does it (built-ins + the tree's plugins, master.yaml read and
// checked, SQLite store, event loop, engine), timed phase by phase; and the
// measuring helpers (wall clock, CPU from getrusage, memory from
// /proc/<pid>/status). Benchmarks print figures; nothing here asserts one.

#include "cli/logging.h"
#include "config/master_config.h"
#include "engine/engine.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/store.h"
#include "util/event_loop.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln::bench {

namespace fs = std::filesystem;
using nlohmann::json;

// A benchmark that cannot set itself up has nothing to measure.
[[noreturn]] inline void die(const std::string& message) {
  std::fprintf(stderr, "bench: %s\n", message.c_str());
  std::exit(1);
}

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// User + system CPU in seconds: this process (every thread: loop, store,
// worker I/O) or its waited-for children (the build commands).
inline double cpu_s(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// A "VmRSS:"-style field of /proc/<pid>/status in KiB; pid 0 is this process.
inline long proc_status_kib(const std::string& field, pid_t pid = 0) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return -1;
}
inline double mib(long kib) { return static_cast<double>(kib) / 1024.0; }

// The q-quantile (0..1) of samples, nearest rank.
inline double quantile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  size_t rank = static_cast<size_t>(q * static_cast<double>(samples.size()) + 0.999999);
  return samples[std::clamp<size_t>(rank, 1, samples.size()) - 1];
}

class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string pattern = "/tmp/" + prefix + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) die("mkdtemp " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) die("cannot write " + path.string());
}

// Milliseconds each start-up phase took.
struct StartupPhases {
  double read_ms = 0;     // master.yaml parsed
  double plugins_ms = 0;  // built-ins registered, plugin libraries loaded
  double check_ms = 0;    // every component checked against its schema
  double store_ms = 0;    // store opened (created or schema checked), master registered
  double engine_ms = 0;   // Engine constructed and Engine::start returned
  double total_ms() const { return read_ms + plugins_ms + check_ms + store_ms + engine_ms; }
};

// One master in a folder that already holds master.yaml (and maybe a store).
// Logging goes to <dir>/kiln.log at info, as under `kiln start`, so its cost
// is part of every figure.
class BenchMaster {
 public:
  explicit BenchMaster(const fs::path& dir) : dir_(dir) {
    cli::setup_master_logging(dir_, false, "info", 10 * 1024 * 1024, 3);
    double t = now_s();
    auto read = config::read_config_document(dir_ / "master.yaml");
    for (const auto& d : read.errors) die(d.to_string());
    phases_.read_ms = lap(t);
    master::register_builtins(registry_);
    for (const auto& e : registry_.load_directories({KILN_BUILD_PLUGIN_DIR})) die(e.to_string());
    phases_.plugins_ms = lap(t);
    auto checked = config::check_master_config(*read.document, registry_);
    for (const auto& d : checked.errors) die(d.to_string());
    config_ = std::move(*checked.config);
    phases_.check_ms = lap(t);

    store::OpenOptions options;
    options.url = "sqlite:state.sqlite";
    options.base_dir = dir_;
    options.mode = store::OpenMode::kCreate;
    options.post_to_loop = [this](std::function<void()> fn) { loop_.post(std::move(fn)); };
    auto opened = store::open_store(std::move(options));
    if (!opened.ok()) die("store: " + opened.status.message);
    store_ = std::move(opened.value);
    auto master = store_->register_master_sync("bench:" + dir_.string(), 0);
    if (!master.ok()) die("register master: " + master.status.message);
    masterid_ = master.value;
    phases_.store_ms = lap(t);
  }

  ~BenchMaster() {
    shutdown();
    if (store_) store_->set_master_active_sync(masterid_, false, 0);
  }
  BenchMaster(const BenchMaster&) = delete;
  BenchMaster& operator=(const BenchMaster&) = delete;

  void start() {
    double t = now_s();
    // As the master does: unused libraries go, the config moves in.
    registry_.release_unused();
    engine_ = std::make_unique<engine::Engine>(loop_, *store_, registry_, std::move(config_),
                                               masterid_);
    if (auto error = engine_->start(); !error.empty()) die("Engine::start: " + error);
    phases_.engine_ms = lap(t);
  }

  // Runs the loop as the master does (blocking, no polling) until
  // stop_loop() or timeout_s; false on timeout.
  bool run(double timeout_s) {
    bool timed_out = false;
    auto timer = loop_.start_timer(static_cast<uint64_t>(timeout_s * 1000), 0, [&] {
      timed_out = true;
      loop_.stop();
    });
    loop_.run();
    if (!timed_out) loop_.cancel_timer(timer);
    return !timed_out;
  }
  void stop_loop() { loop_.stop(); }

  // A data API read, answered by running the loop.
  json get(const std::string& path) {
    json out;
    engine_->data().get(path, nullptr, [&](kiln_status status, json value) {
      if (status != KILN_OK) die("GET " + path + ": " + value.dump());
      out = std::move(value);
      loop_.stop();
    });
    if (!run(60)) die("GET " + path + " timed out");
    return out;
  }

  // Stops the engine (interrupting anything still running) and drains.
  void shutdown() {
    if (!engine_) return;
    // stop() may finish at once (nothing running): run() would then restart
    // the loop and wait for a stop that already happened.
    bool stopped = false;
    engine_->stop([this, &stopped] {
      stopped = true;
      loop_.stop();
    });
    if (!stopped) run(60);
    engine_.reset();
    store_->wait();
  }

  // Closes the store: the last connection going checkpoints the WAL.
  void close_store() {
    shutdown();
    store_->set_master_active_sync(masterid_, false, 0);
    store_.reset();
  }

  engine::Engine& engine() { return *engine_; }
  store::Store& store() { return *store_; }
  util::EventLoop& loop() { return loop_; }
  plugin::Registry& registry() { return registry_; }
  const StartupPhases& phases() const { return phases_; }
  const fs::path& dir() const { return dir_; }

 private:
  static double lap(double& t) {
    const double now = now_s();
    const double ms = (now - t) * 1000.0;
    t = now;
    return ms;
  }

  fs::path dir_;
  StartupPhases phases_;
  plugin::Registry registry_;
  config::MasterConfig config_;
  util::EventLoop loop_;
  std::unique_ptr<store::Store> store_;
  int64_t masterid_ = 0;
  std::unique_ptr<engine::Engine> engine_;
};

// The line run_all.sh gathers into its table: "summary: name | figure | target".
inline void summary(const std::string& name, const std::string& figure,
                    const std::string& target) {
  std::printf("summary: %s | %s | %s\n", name.c_str(), figure.c_str(), target.c_str());
  std::fflush(stdout);
}

inline std::string format(const char* fmt, double a, double b = 0, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, a, b, c);
  return buf;
}

}  // namespace kiln::bench
