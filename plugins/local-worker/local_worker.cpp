// The `local` worker type: Buildbot's worker commands run as child
// processes on the master's machine (kiln_worker_commands does the work on
// an io_context thread each worker owns; this file bridges it to the host).
//
// Nothing here ever waits for the loop while the loop could be waiting for
// us: progress is queued for the loop (Hub::push) instead of calling host
// functions from the worker thread, and stop() first releases every worker-
// thread wait, then joins. Output is back-pressured: the worker thread
// stops reading pipes while more than kMaxQueuedBytes wait for the loop,
// and the loop stops draining while the master is behind storing output
// (the host's output_throttle).

#include <kiln/sdk/plugin.hpp>
#include <kiln/worker/command_runner.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <unistd.h>

namespace {

namespace sdk = kiln::sdk;
namespace worker = kiln::worker;
using json = nlohmann::json;

constexpr size_t kMaxQueuedBytes = 4 * 1024 * 1024;
// How long stop() lets interrupted commands wind down before tearing them
// down with SIGKILL.
constexpr auto kStopGrace = std::chrono::seconds(5);

constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "basedir": {"type": "string", "default": "",
                "description": "The worker's base directory; builds run in <basedir>/<builder>. Relative paths are relative to the master's folder. Empty means workers/<worker name>."},
    "env": {"type": "object", "default": {},
            "description": "Extra environment variables for every command, over the master's own environment: a string value sets, null removes, a list is joined with ':'."},
    "shell": {"type": "string", "default": "/bin/sh",
              "description": "The shell that runs string commands, as <shell> -c <command>."}
  },
  "additionalProperties": false
})";

std::string dump(const json& value) {
  // File names and log data need not be UTF-8; the host still gets JSON.
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

kiln_stream to_c(worker::Stream stream) {
  switch (stream) {
    case worker::Stream::kStdout: return KILN_STREAM_STDOUT;
    case worker::Stream::kStderr: return KILN_STREAM_STDERR;
    case worker::Stream::kHeader: return KILN_STREAM_HEADER;
  }
  return KILN_STREAM_HEADER;
}

// What the worker thread hands to the loop, and what the loop knows about
// running commands. Shared by the worker and every command's sink.
class Hub : public std::enable_shared_from_this<Hub> {
 public:
  // resume_ref: where the host's output_throttle resume finds this hub; it
  // lives as long as the worker instance (and so the context), while a hub
  // may be gone (worker stopped) before a registered resume runs.
  Hub(sdk::Context ctx, const std::weak_ptr<Hub>* resume_ref)
      : ctx_(std::move(ctx)), resume_ref_(resume_ref) {}

  kiln_ctx* raw() const { return ctx_.raw(); }

  // Worker thread: fn runs on the loop, in order. Waits while too many
  // bytes are queued, unless stopping.
  void push(std::function<void()> fn, size_t bytes) {
    bool post = false;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || queued_bytes_ < kMaxQueuedBytes; });
      items_.emplace_back(std::move(fn), bytes);
      queued_bytes_ += bytes;
      post = !drain_posted_;
      drain_posted_ = true;
    }
    if (post) {
      auto status = ctx_.post([weak = weak_from_this()] {
        if (auto self = weak.lock()) self->drain();
      });
      (void)status;  // refused only once the instance is gone
    }
  }

  // Worker thread: runs fn on the loop and waits for its answer; nullopt
  // when the worker stops first.
  template <class R>
  std::optional<R> call(std::function<R()> fn) {
    struct State {
      bool done = false, abandoned = false;
      std::optional<R> result;
    };
    auto state = std::make_shared<State>();
    push(
        [this, state, fn = std::move(fn)] {
          {
            std::lock_guard lock(mutex_);
            if (state->abandoned) return;
          }
          R r = fn();
          {
            std::lock_guard lock(mutex_);
            state->result = std::move(r);
            state->done = true;
          }
          cv_.notify_all();
        },
        0);
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return state->done || stopping_; });
    if (!state->done) state->abandoned = true;
    return state->result;
  }

  // Loop thread: runs what the worker thread queued, unless the master is
  // behind storing output. Then nothing is drained (drain_posted_ stays set)
  // until the host resumes us: the queue fills, push() holds the worker
  // thread, and the commands' pipes wait unread.
  void drain() {
    if (!stopping() && master_wants_pause()) return;
    std::deque<std::pair<std::function<void()>, size_t>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(items_);
      drain_posted_ = false;
    }
    size_t bytes = 0;
    for (auto& [fn, n] : batch) {
      fn();
      bytes += n;
    }
    {
      std::lock_guard lock(mutex_);
      queued_bytes_ -= bytes;
    }
    cv_.notify_all();
  }

  bool master_wants_pause() {
    const kiln_host_api* h = sdk::Host::api();
    if (!KILN_HAS(kiln_host_api, h, output_throttle)) return false;
    auto resume = [](void* user) {
      if (auto hub = static_cast<const std::weak_ptr<Hub>*>(user)->lock()) hub->drain();
    };
    return h->output_throttle(raw(), resume, const_cast<std::weak_ptr<Hub>*>(resume_ref_)) ==
           KILN_ERR_RETRY;
  }
  bool stopping() {
    std::lock_guard lock(mutex_);
    return stopping_;
  }

  void set_stopping(bool stopping) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = stopping;
    }
    cv_.notify_all();
  }

  // --- running commands: the table is the loop's; the count is shared ---
  void add(uint64_t id, std::shared_ptr<worker::CommandRunner> runner) {
    runners_[id] = std::move(runner);
    std::lock_guard lock(mutex_);
    ++active_;
  }
  void completed_on_worker_thread() {
    {
      std::lock_guard lock(mutex_);
      --active_;
    }
    cv_.notify_all();
  }
  // Loop thread, when the completion reached the host.
  void forget(uint64_t id) { runners_.erase(id); }
  std::map<uint64_t, std::shared_ptr<worker::CommandRunner>>& runners() { return runners_; }
  bool wait_idle(std::chrono::steady_clock::duration timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return active_ == 0; });
  }

 private:
  sdk::Context ctx_;
  const std::weak_ptr<Hub>* resume_ref_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::pair<std::function<void()>, size_t>> items_;
  size_t queued_bytes_ = 0;
  bool drain_posted_ = false;
  bool stopping_ = false;
  size_t active_ = 0;
  std::map<uint64_t, std::shared_ptr<worker::CommandRunner>> runners_;
};

// One command's progress, turned into host calls on the loop.
class Bridge final : public worker::CommandSink {
 public:
  Bridge(std::shared_ptr<Hub> hub, uint64_t id) : hub_(std::move(hub)), id_(id) {}

  void on_output(worker::Stream stream, std::string_view data) override {
    hub_->push(
        [hub = hub_.get(), id = id_, stream = to_c(stream), data = std::string(data)] {
          const kiln_host_api* h = sdk::Host::api();
          if (KILN_HAS(kiln_host_api, h, command_output)) h->command_output(hub->raw(), id, stream, sdk::bytes(data));
        },
        data.size());
  }

  void on_update(const json& update) override {
    std::string text = dump(update);
    const size_t size = text.size();
    hub_->push(
        [hub = hub_.get(), id = id_, text = std::move(text)] {
          const kiln_host_api* h = sdk::Host::api();
          if (KILN_HAS(kiln_host_api, h, command_update)) h->command_update(hub->raw(), id, sdk::str(text));
        },
        size);
  }

  void on_complete(const worker::CommandResult& result) override {
    json out = {{"rc", result.rc}};
    if (result.elapsed) out["elapsed"] = *result.elapsed;
    if (!result.failure.empty()) out["failure"] = result.failure;
    hub_->push(
        [hub = hub_.get(), id = id_, text = dump(out)] {
          const kiln_host_api* h = sdk::Host::api();
          if (KILN_HAS(kiln_host_api, h, command_complete)) h->command_complete(hub->raw(), id, sdk::str(text));
          hub->forget(id);
        },
        0);
    hub_->completed_on_worker_thread();
  }

  bool transfer_write(std::string_view data) override {
    auto ok = hub_->call<bool>([hub = hub_.get(), id = id_, data = std::string(data)] {
      const kiln_host_api* h = sdk::Host::api();
      return KILN_HAS(kiln_host_api, h, transfer_write) &&
             h->transfer_write(hub->raw(), id, sdk::bytes(data)) == KILN_OK;
    });
    return ok.value_or(false);
  }

  std::optional<std::string> transfer_read(size_t max_len) override {
    auto result = hub_->call<std::optional<std::string>>([hub = hub_.get(), id = id_, max_len] {
      const kiln_host_api* h = sdk::Host::api();
      if (!KILN_HAS(kiln_host_api, h, transfer_read)) return std::optional<std::string>();
      std::string out;
      kiln_status rc = h->transfer_read(
          hub->raw(), id, max_len,
          [](void* user, kiln_bytes data) { static_cast<std::string*>(user)->append(sdk::view(data)); }, &out);
      if (rc != KILN_OK) return std::optional<std::string>();
      if (out.size() > max_len) out.resize(max_len);
      return std::optional<std::string>(std::move(out));
    });
    return result ? *result : std::nullopt;
  }

 private:
  std::shared_ptr<Hub> hub_;
  uint64_t id_;
};

std::string text_of(const json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

class LocalWorker final : public sdk::Worker {
 public:
  LocalWorker(sdk::Context ctx, const json& config) : Worker(std::move(ctx), config) {}
  ~LocalWorker() override { shutdown(false); }

  sdk::Status start() override {
    if (io_) return {};
    auto info = context().info();
    if (!info) return info.status();
    const std::string name = info->value("name", std::string("local"));
    std::filesystem::path master_dir = info->value("master_dir", std::string());
    if (master_dir.empty()) master_dir = std::filesystem::current_path();

    std::string basedir = config().value("basedir", std::string());
    if (basedir.empty()) basedir = "workers/" + name;
    std::filesystem::path base = basedir;
    if (base.is_relative()) base = master_dir / base;
    base = base.lexically_normal();
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    if (ec) return sdk::Status(KILN_ERR_INVALID_CONFIG, "cannot create basedir " + base.string() + ": " + ec.message());
    settings_.basedir = base.string();
    if (settings_.basedir.size() > 1 && settings_.basedir.back() == '/') settings_.basedir.pop_back();

    settings_.environ = worker::process_environment();
    const json env = config().value("env", json::object());
    for (const auto& [key, value] : env.items()) {
      if (value.is_null()) {
        settings_.environ.erase(key);
      } else if (value.is_array()) {
        std::string joined;
        for (size_t i = 0; i < value.size(); ++i) joined += (i ? ":" : "") + text_of(value[i]);
        settings_.environ[key] = joined;
      } else {
        settings_.environ[key] = text_of(value);
      }
    }
    settings_.shell = config().value("shell", std::string("/bin/sh"));
    if (settings_.shell.empty()) settings_.shell = "/bin/sh";

    hub_ = std::make_shared<Hub>(context(), &resumable_hub_);
    resumable_hub_ = hub_;
    io_ = std::make_unique<boost::asio::io_context>();
    guard_.emplace(io_->get_executor());
    thread_ = std::thread([io = io_.get()] {
      // A child that exits before reading its stdin must not kill the master.
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &set, nullptr);
      io->run();
    });

    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    json environ = json::object();
    for (const auto& [key, value] : settings_.environ) environ[key] = value;
    json connected_info = {
        {"admin", ""},
        {"host", std::string(host)},
        {"version", "kiln-local"},
        {"os", "posix"},
        {"system", "posix"},
        {"basedir", settings_.basedir},
        {"numcpus", std::max(1u, std::thread::hardware_concurrency())},
        {"environ", environ},
        {"worker_commands", worker::command_versions()},
    };
    const std::string text = dump(connected_info);
    const kiln_host_api* h = sdk::Host::api();
    if (!KILN_HAS(kiln_host_api, h, worker_connected)) {
      shutdown(false);
      return sdk::Status(KILN_ERR_UNSUPPORTED, "this host does not offer worker_connected");
    }
    kiln_status rc = h->worker_connected(context().raw(), sdk::str(text));
    if (rc != KILN_OK) {
      shutdown(false);
      return sdk::Context::failed(rc, "worker_connected");
    }
    return {};
  }

  void stop() override { shutdown(true); }

  // Control actions, as the engine routes them (worker_control.cpp): a
  // worker inside the master answers a ping at once, and has nothing to
  // disconnect, so a graceful shutdown ends with it drained (the engine
  // gives it no new build) and a shutdown is refused.
  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override {
    (void)args;
    if (action == "ping") {
      reply.ok({{"ok", true}, {"rtt_ms", 0}});
      return {};
    }
    if (action == "graceful_shutdown") {
      reply.ok({{"drained", true}});
      return {};
    }
    // Answered rather than refused, so that the reason reaches the caller.
    reply.fail(sdk::Status(KILN_ERR_UNSUPPORTED, "a local worker runs inside the master: it has no '" +
                                                     std::string(action) + "'"));
    return {};
  }

  sdk::Status command_start(uint64_t command_id, std::string_view name, const json& args) override {
    if (!io_) return sdk::Status(KILN_ERR_REFUSED, "the worker is not started");
    if (hub_->runners().count(command_id) != 0) {
      return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "command " + std::to_string(command_id) + " is already running");
    }
    auto runner = worker::make_command(*io_, settings_, name, args, std::make_shared<Bridge>(hub_, command_id));
    hub_->add(command_id, runner);
    runner->start();
    return {};
  }

  sdk::Status command_interrupt(uint64_t command_id, std::string_view reason) override {
    if (!hub_) return sdk::Status(KILN_ERR_NOT_FOUND, "no command " + std::to_string(command_id));
    auto it = hub_->runners().find(command_id);
    if (it == hub_->runners().end()) {
      return sdk::Status(KILN_ERR_NOT_FOUND, "no running command " + std::to_string(command_id));
    }
    it->second->interrupt(std::string(reason));
    return {};
  }

 private:
  // Interrupts every command, lets them finish for a while, joins the
  // thread, delivers what is still queued, then tears down what is left
  // (killing its process groups).
  void shutdown(bool report) {
    if (!io_) return;
    hub_->set_stopping(true);  // no worker-thread wait on the loop from here on
    for (auto& [id, runner] : hub_->runners()) runner->interrupt("worker stopped");
    hub_->wait_idle(kStopGrace);
    guard_.reset();
    io_->stop();
    if (thread_.joinable()) thread_.join();
    hub_->drain();
    const kiln_host_api* h = sdk::Host::api();
    for (auto& [id, runner] : hub_->runners()) {
      const std::string text = R"({"rc": -1, "failure": "the worker stopped before the command ended"})";
      if (report && KILN_HAS(kiln_host_api, h, command_complete)) h->command_complete(context().raw(), id, sdk::str(text));
    }
    hub_->runners().clear();
    io_.reset();  // destroys pending handlers, and with them the processes
    hub_.reset();
    if (report) disconnected("worker stopped");
  }

  worker::WorkerSettings settings_;
  std::shared_ptr<Hub> hub_;
  std::weak_ptr<Hub> resumable_hub_;  // see Hub's resume_ref
  std::unique_ptr<boost::asio::io_context> io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  std::thread thread_;
};

}  // namespace

KILN_PLUGIN("kiln-local-worker", "0.1.0", "The local worker: runs build commands on the master's machine", "MIT",
            sdk::component<LocalWorker>(KILN_KIND_WORKER, "local", "0.1.0",
                                        "Runs worker commands as child processes on the master's machine",
                                        kSchema));
