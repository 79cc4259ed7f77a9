#pragma once
// Loads the real kiln-local-worker.so, creates one `local` worker on a test
// context that records everything the plugin reports (connection, output,
// updates, completions, transfers), and drives the event loop with bounded
// waits.

#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/event_loop.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>
#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace kiln::local_worker_test {

using json = nlohmann::json;
namespace fs = std::filesystem;

using kiln::testing::TempDir;

struct CommandRecord {
  std::string stdout_text, stderr_text, header;
  size_t output_chunks = 0, largest_chunk = 0;
  std::vector<json> updates;
  std::optional<json> result;
  std::vector<size_t> writes;      // sizes of transfer_write blocks
  std::string written;             // what the worker uploaded
  std::vector<size_t> read_sizes;  // max_len of each transfer_read
};

struct Recorder {
  std::optional<json> connected;
  std::optional<std::string> disconnected;
  std::map<uint64_t, CommandRecord> commands;
  std::map<uint64_t, std::string> download_sources;
  std::map<uint64_t, size_t> download_offsets;
  bool refuse_writes = false;
};

class WorkerContext final : public plugin::InstanceContext {
 public:
  WorkerContext(util::EventLoop& loop, std::string name, fs::path master_dir, Recorder& rec)
      : InstanceContext(loop, nullptr, KILN_KIND_WORKER, std::move(name)),
        master_dir_(std::move(master_dir)),
        rec_(rec) {}

  kiln_status worker_connected(std::string_view info_json) override {
    rec_.connected = json::parse(info_json);
    return KILN_OK;
  }
  kiln_status worker_disconnected(std::string_view reason) override {
    rec_.disconnected = std::string(reason);
    return KILN_OK;
  }
  kiln_status command_output(uint64_t id, kiln_stream stream, Bytes data) override {
    auto& c = rec_.commands[id];
    std::string text(reinterpret_cast<const char*>(data.data()), data.size());
    (stream == KILN_STREAM_STDOUT ? c.stdout_text : stream == KILN_STREAM_STDERR ? c.stderr_text : c.header) += text;
    ++c.output_chunks;
    c.largest_chunk = std::max(c.largest_chunk, data.size());
    return KILN_OK;
  }
  kiln_status command_update(uint64_t id, std::string_view update_json) override {
    rec_.commands[id].updates.push_back(json::parse(update_json));
    return KILN_OK;
  }
  kiln_status command_complete(uint64_t id, std::string_view result_json) override {
    auto& c = rec_.commands[id];
    CHECK_FALSE(c.result.has_value());  // exactly once
    c.result = json::parse(result_json);
    return KILN_OK;
  }
  kiln_status transfer_write(uint64_t id, Bytes data) override {
    if (rec_.refuse_writes) return KILN_ERR_INTERNAL;
    auto& c = rec_.commands[id];
    c.writes.push_back(data.size());
    c.written.append(reinterpret_cast<const char*>(data.data()), data.size());
    return KILN_OK;
  }
  kiln_status transfer_read(uint64_t id, size_t max_len, std::vector<uint8_t>& out) override {
    rec_.commands[id].read_sizes.push_back(max_len);
    const std::string& source = rec_.download_sources[id];
    size_t& offset = rec_.download_offsets[id];
    size_t n = std::min(max_len, source.size() - offset);
    out.assign(source.begin() + static_cast<std::ptrdiff_t>(offset),
               source.begin() + static_cast<std::ptrdiff_t>(offset + n));
    offset += n;
    return KILN_OK;
  }

 protected:
  void context_facts(json& facts) const override {
    facts["master_dir"] = master_dir_.string();
    facts["master_title"] = "test";
    facts["common"] = {{"max_builds", 4}};
  }

 private:
  fs::path master_dir_;
  Recorder& rec_;
};

class WorkerFixture {
 public:
  explicit WorkerFixture(json config = json::object(), std::string name = "local-1") {
    auto error = registry_.load_library(fs::path(KILN_BUILD_PLUGIN_DIR) / "kiln-local-worker.so");
    if (error) FAIL(error->to_string());
    type_ = registry_.find(KILN_KIND_WORKER, "local");
    REQUIRE(type_ != nullptr);
    auto context = std::make_unique<WorkerContext>(loop_, name, dir_.path(), rec_);
    std::string message;
    instance_ = plugin::Instance::create(*type_, std::move(context), config, message);
    INFO(message);
    REQUIRE(instance_ != nullptr);
    vt_ = instance_->vtable<kiln_worker_vtable>();
    REQUIRE(vt_ != nullptr);
  }
  ~WorkerFixture() {
    if (instance_ && started_) vt_->stop(instance_->handle());
    // A plugin's posts still queued when its instance goes are dropped by
    // the host without running, which leaks the SDK's holder: let them run.
    while (loop_.poll() > 0) {
    }
    instance_.reset();
  }

  void start() {
    kiln_status rc = vt_->start(instance_->handle(), nullptr);
    REQUIRE(rc == KILN_OK);
    started_ = true;
    REQUIRE(rec_.connected.has_value());
  }
  void stop() {
    vt_->stop(instance_->handle());
    started_ = false;
  }

  uint64_t begin(const std::string& name, const json& args) {
    uint64_t id = next_id_++;
    const std::string text = args.dump();
    rec_.commands[id];
    kiln_status rc = vt_->command_start(instance_->handle(), id, kiln_str{name.data(), name.size()},
                                        kiln_str{text.data(), text.size()}, nullptr);
    REQUIRE(rc == KILN_OK);
    return id;
  }
  void interrupt(uint64_t id, const std::string& reason = "stop requested") {
    REQUIRE(vt_->command_interrupt(instance_->handle(), id, kiln_str{reason.data(), reason.size()}) == KILN_OK);
  }

  // Runs the loop until pred() holds or `limit` passes.
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (loop_.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  // The command's completion, waiting for it.
  const CommandRecord& finish(uint64_t id, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    bool done = wait_for([&] { return rec_.commands[id].result.has_value(); }, limit);
    INFO("header so far: " << rec_.commands[id].header);
    REQUIRE(done);
    return rec_.commands[id];
  }
  const CommandRecord& run(const std::string& name, const json& args,
                           std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    return finish(begin(name, args), limit);
  }

  // Shell arguments as a real master sends them, with overrides.
  json shell_args(const json& command, json extra = json::object()) const {
    json args = {{"command", command},         {"workdir", (dir_.path() / "build").string()},
                 {"env", json::object()},      {"want_stdout", true},
                 {"want_stderr", true},        {"logfiles", json::object()},
                 {"timeout", 1200},            {"maxTime", nullptr},
                 {"sigtermTime", nullptr},     {"usePTY", false},
                 {"logEnviron", true},         {"initial_stdin", nullptr},
                 {"interruptSignal", "KILL"}};
    for (auto& [k, v] : extra.items()) args[k] = v;
    return args;
  }

  const fs::path& root() const { return dir_.path(); }
  Recorder& rec() { return rec_; }
  const json& info() const { return *rec_.connected; }

 private:
  TempDir dir_;
  util::EventLoop loop_;
  plugin::Registry registry_;
  Recorder rec_;
  const plugin::ComponentType* type_ = nullptr;
  std::unique_ptr<plugin::Instance> instance_;
  const kiln_worker_vtable* vt_ = nullptr;
  bool started_ = false;
  uint64_t next_id_ = 1;
};

inline void write_file(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace kiln::local_worker_test
