#pragma once
// The `exec-latent` worker type: Buildbot's AbstractLatentWorker with a
// start and a stop command (ssh, docker, kubectl, a cloud CLI: whatever the
// user writes) as its start_instance and stop_instance. The start command
// launches a real worker (kiln-worker, buildbot-worker) that connects back
// over Buildbot's msgpack protocol, to this buildbot-worker listener.
//
// The engine decides when (substantiate before a build, insubstantiate after
// build_wait_timeout without one; core/engine/latent_workers.cpp); this
// class keeps Buildbot's promises about how:
//   - commands run one at a time, in order, on a ProgramRunner's thread, so
//     a start never begins before the previous start or stop finished;
//   - every start is followed by exactly one stop, a failed one too;
//   - a stop asked for during a slow start (missing_timeout, the master
//     stopping) runs once the start has finished;
//   - the worker is up once the start command succeeded AND the worker
//     attached, within missing_timeout of the start; otherwise the builds
//     waiting for it fail (the engine quarantines the worker) with the
//     command's output in the message;
//   - with builds_may_be_incompatible, a build whose compatibility key (the
//     named properties, or the rendered start command) differs from the
//     running instance's is refused with KILN_ERR_RETRY: it waits for the
//     instance to stop;
//   - a connection while no start is under way is refused.
// Everything here runs on the loop thread; only the commands run off it.

#include "buildbot_worker.h"

#include <kiln/sdk/poller.hpp>

#include <chrono>
#include <future>
#include <sstream>

namespace kiln::buildbot_worker {

inline constexpr const char* kExecLatentSchema = R"({
  "type": "object",
  "required": ["password", "start_command", "stop_command"],
  "properties": {
    "password": {"type": "string",
                 "description": "The password the started worker presents; the worker's name is this entry's name."},
    "listen": {"type": "string", "default": "127.0.0.1:9989",
               "description": "host:port the master listens on for the started worker (shared with buildbot-worker entries on the same address)."},
    "tls": {"type": "object", "required": ["cert", "key"], "additionalProperties": false,
            "description": "Serve wss:// (TLS) instead of plain WebSocket: PEM files, relative to the master folder. Workers sharing the listen address must agree.",
            "properties": {"cert": {"type": "string", "minLength": 1, "description": "The certificate (chain) file."},
                           "key": {"type": "string", "minLength": 1, "description": "Its private key file."}}},
    "keepalive_interval": {"type": "integer", "minimum": 0, "default": 300,
                           "description": "Seconds between keepalive messages to the worker; 0 turns them off."},
    "start_command": {"type": ["array", "string"], "items": {"type": "string"},
                      "description": "Starts the worker and returns (run it in the background: '&', docker run -d, ...): an argv list, or a string run by /bin/sh -c. Rendered per build: %(prop:..)s of the build, %(worker:name)s, and %(kw:name)s, %(kw:password)s, %(kw:master)s (the listen address), %(kw:master_port)s. Runs in the master folder."},
    "stop_command": {"type": ["array", "string"], "items": {"type": "string"},
                     "description": "Stops what start_command started; rendered with the same values at the same time. Runs exactly once after every start, a failed one too."},
    "missing_timeout": {"type": "number", "minimum": 0, "default": 1200,
                        "description": "Seconds from the start until the worker must have connected (Buildbot's missing_timeout); then the waiting builds fail, the worker is quarantined and stopped."},
    "command_timeout": {"type": "number", "minimum": 1, "default": 600,
                        "description": "Seconds after which a start or stop command still running is killed with what it started."},
    "builds_may_be_incompatible": {"type": "boolean", "default": false,
                                   "description": "A running instance takes only builds with the same compatibility key; others wait until it stops."},
    "compatible_properties": {"type": "array", "items": {"type": "string"},
                              "description": "The build properties that make the compatibility key; by default the rendered start command is."}
  },
  "additionalProperties": false
})";

class ExecLatentWorker final : public BuildbotWorker {
 public:
  ExecLatentWorker(sdk::Context ctx, const json& config) : BuildbotWorker(ctx, config), runner_(ctx) {}
  ~ExecLatentWorker() override = default;

  static sdk::Status validate(const json& config) {
    if (auto status = BuildbotWorker::validate(config); !status) return status;
    for (const char* key : {"start_command", "stop_command"}) {
      const json& c = config.at(key);
      if ((c.is_string() && c.get<std::string>().empty()) || (c.is_array() && c.empty())) {
        return sdk::Status(KILN_ERR_INVALID_CONFIG, std::string(key) + " is empty");
      }
    }
    return {};
  }

  sdk::Status start() override {
    if (auto status = BuildbotWorker::start(); !status) return status;
    auto info = context().info();
    if (info) master_dir_ = info->value("master_dir", std::string());
    return {};
  }

  // The master stops (or a reconfig replaces this worker): an instance
  // still started is stopped now, waiting for a start under way first.
  void stop() override {
    fail_waiters("the worker was stopped");
    fail_next("the worker was stopped");
    if (state_ == State::kStarting || state_ == State::kUp) {
      cancel_missing_timer();
      log(KILN_LOG_INFO, "stopping the instance of '" + worker_name() + "' as the worker stops");
      (void)runner_.run(program(instance_.stop_argv), nullptr);
      state_ = State::kStopping;
    }
    if (state_ == State::kStopping) wait_for_commands();
    state_ = State::kDown;
    BuildbotWorker::stop();
  }

  sdk::Status substantiate(const json& build, sdk::Reply done) override {
    Instance wanted;
    if (auto status = make_instance(build, wanted); !status) return status;
    switch (state_) {
      case State::kUp:
        if (!compatible(instance_, wanted)) return refuse_incompatible(done, instance_, wanted);
        done.ok();
        return {};
      case State::kStarting:
        if (!stop_after_start_) {
          if (!compatible(instance_, wanted)) return refuse_incompatible(done, instance_, wanted);
          waiters_.push_back(std::move(done));
          return {};
        }
        [[fallthrough]];  // it stops once started: start again after that
      case State::kStopping:
        if (next_ && !compatible(*next_, wanted)) return refuse_incompatible(done, *next_, wanted);
        if (!next_) next_ = std::move(wanted);
        next_waiters_.push_back(std::move(done));
        return {};
      case State::kDown:
        waiters_.push_back(std::move(done));
        begin_start(std::move(wanted));
        return {};
    }
    return {};
  }

  sdk::Status insubstantiate(sdk::Reply done) override {
    switch (state_) {
      case State::kDown:
        done.ok();
        return {};
      case State::kStopping:
        stop_waiters_.push_back(std::move(done));
        return {};
      case State::kStarting:
      case State::kUp:
        stop_waiters_.push_back(std::move(done));
        request_stop("the master no longer needs it");
        return {};
    }
    return {};
  }

 protected:
  bool accepts_connection(std::string& why) override {
    if (state_ == State::kStarting && !stop_after_start_) return true;
    if (state_ == State::kUp) return true;  // a reconnect: the base checks duplicates
    why = "the master is not starting this latent worker now";
    return false;
  }

  void on_attached() override {
    attached_ = true;
    if (state_ == State::kStarting && !start_running_ && !stop_after_start_) become_up();
  }

  void on_lost(const std::string& reason) override {
    attached_ = false;
    if (state_ == State::kUp) {
      // The instance died on its own: it still gets its one stop.
      log(KILN_LOG_WARN, "latent worker '" + worker_name() + "' lost (" + reason + "): stopping its instance");
      begin_stop();
    }
    // While starting, the worker may connect again within missing_timeout.
  }

 private:
  enum class State { kDown, kStarting, kUp, kStopping };

  struct Instance {
    std::vector<std::string> start_argv, stop_argv;
    json key;  // the compatibility key
    std::string label;  // for messages: the key as text
  };

  // --- commands ------------------------------------------------------------

  sdk::Program program(const std::vector<std::string>& argv) const {
    sdk::Program p;
    p.argv = argv;
    p.cwd = master_dir_;
    p.timeout_ms = static_cast<uint64_t>(config().value("command_timeout", 600.0) * 1000.0);
    p.max_output = size_t{1} << 20;
    return p;
  }

  // `%(kw:KEY)s` of the plugin's own values, before the host renders the
  // rest; values are escaped so that a '%' in a password stays itself.
  std::string with_keywords(std::string text) const {
    const std::string password = config().value("password", std::string());
    const std::string listen = config().value("listen", std::string(kDefaultListen));
    const std::pair<std::string, std::string> keywords[] = {
        {"name", worker_name()},
        {"password", password},
        {"master", listen},
        {"master_port", std::to_string(listen_port())}};
    for (const auto& [key, value] : keywords) {
      const std::string pattern = "%(kw:" + key + ")s";
      std::string escaped;
      for (char c : value) escaped += c == '%' ? std::string("%%") : std::string(1, c);
      for (size_t at = text.find(pattern); at != std::string::npos; at = text.find(pattern, at + escaped.size())) {
        text.replace(at, pattern.size(), escaped);
      }
    }
    return text;
  }

  sdk::Status render_command(const char* key, std::vector<std::string>& argv) const {
    const json& command = config().at(key);
    std::vector<std::string> raw;
    if (command.is_string()) {
      raw = {"/bin/sh", "-c", command.get<std::string>()};
    } else {
      for (const auto& a : command) raw.push_back(a.get<std::string>());
    }
    argv.clear();
    for (size_t i = 0; i < raw.size(); ++i) {
      // The host renders with the build's properties during substantiate.
      auto rendered = context().render(with_keywords(raw[i]));
      if (!rendered) {
        return sdk::Status(KILN_ERR_INVALID_CONFIG, std::string("cannot render ") + key + ": " +
                                                        rendered.status().message());
      }
      argv.push_back(std::move(*rendered));
    }
    return {};
  }

  sdk::Status make_instance(const json& build, Instance& out) const {
    if (auto s = render_command("start_command", out.start_argv); !s) return s;
    if (auto s = render_command("stop_command", out.stop_argv); !s) return s;
    if (!config().value("builds_may_be_incompatible", false)) return {};
    const json properties = build.value("properties", json::object());
    if (auto names = config().find("compatible_properties"); names != config().end()) {
      out.key = json::object();
      for (const auto& name : *names) {
        const std::string n = name.get<std::string>();
        out.key[n] = properties.value(n, json());
      }
    } else {
      out.key = out.start_argv;
    }
    out.label = out.key.dump();
    return {};
  }

  static std::string seconds_text(double seconds) {
    std::ostringstream out;
    out << seconds << " s";
    return out.str();
  }

  static bool compatible(const Instance& running, const Instance& wanted) { return running.key == wanted.key; }

  sdk::Status refuse_incompatible(sdk::Reply& done, const Instance& running, const Instance& wanted) const {
    done.fail(sdk::Status(KILN_ERR_RETRY, "its instance was started for " + running.label + ", the build needs " +
                                              wanted.label));
    return {};
  }

  // The argv for logs: the password never shows.
  std::string shown(const std::vector<std::string>& argv) const {
    const std::string password = config().value("password", std::string());
    std::string out;
    for (const auto& a : argv) {
      std::string arg = a;
      if (!password.empty()) {
        for (size_t at = arg.find(password); at != std::string::npos; at = arg.find(password, at + 4)) {
          arg.replace(at, password.size(), "****");
        }
      }
      out += (out.empty() ? "" : " ") + arg;
    }
    return out;
  }

  // --- the state machine ---------------------------------------------------

  void begin_start(Instance wanted) {
    instance_ = std::move(wanted);
    state_ = State::kStarting;
    stop_after_start_ = false;
    start_running_ = true;
    attached_ = worker_attached();
    log(KILN_LOG_INFO, "starting latent worker '" + worker_name() + "': " + shown(instance_.start_argv));
    const double missing = config().value("missing_timeout", 1200.0);
    auto timer = context().start_timer(static_cast<uint64_t>(missing * 1000.0), [this] { on_missing_timeout(); });
    missing_timer_ = timer ? *timer : 0;
    auto queued = runner_.run(program(instance_.start_argv),
                              [this](const sdk::ProgramResult& r) { on_start_done(r); });
    if (!queued) {
      start_running_ = false;
      fail_waiters("cannot run the start command: " + queued.message());
      begin_stop();
    }
  }

  void on_start_done(const sdk::ProgramResult& result) {
    start_running_ = false;
    if (stop_after_start_) {
      log(KILN_LOG_INFO, "the start command of '" + worker_name() + "' finished (" +
                             (result.ok() ? std::string("ok") : result.describe()) + "); now stopping it");
      begin_stop();
      return;
    }
    if (!result.ok()) {
      const std::string why = "the start command failed: " + result.describe();
      log(KILN_LOG_ERROR, "latent worker '" + worker_name() + "': " + why);
      fail_waiters(why);
      begin_stop();
      return;
    }
    if (attached_) become_up();
    // Otherwise the worker has until missing_timeout to connect.
  }

  void on_missing_timeout() {
    missing_timer_ = 0;
    if (state_ != State::kStarting) return;
    const double missing = config().value("missing_timeout", 1200.0);
    std::string why = "the worker did not connect within " + seconds_text(missing) + " (missing_timeout)";
    if (start_running_) why += "; the start command is still running and is stopped once it ends";
    log(KILN_LOG_ERROR, "latent worker '" + worker_name() + "': " + why);
    fail_waiters(why);
    request_stop(why);
  }

  void become_up() {
    cancel_missing_timer();
    state_ = State::kUp;
    log(KILN_LOG_INFO, "latent worker '" + worker_name() + "' substantiated");
    auto waiters = std::exchange(waiters_, {});
    for (auto& w : waiters) w.ok();
  }

  // Stops the instance: now, or once its start command has finished.
  void request_stop(const std::string& why) {
    fail_waiters("stopped: " + why);
    if (state_ == State::kStarting && start_running_) {
      stop_after_start_ = true;
      cancel_missing_timer();
      return;
    }
    begin_stop();
  }

  void begin_stop() {
    cancel_missing_timer();
    fail_waiters("the instance is stopping");
    state_ = State::kStopping;
    stop_after_start_ = false;
    log(KILN_LOG_INFO, "stopping latent worker '" + worker_name() + "': " + shown(instance_.stop_argv));
    auto queued = runner_.run(program(instance_.stop_argv),
                              [this](const sdk::ProgramResult& r) { on_stop_done(r); });
    if (!queued) {
      sdk::ProgramResult never_ran;
      never_ran.failure = "cannot run the stop command: " + queued.message();
      on_stop_done(never_ran);
    }
  }

  void on_stop_done(const sdk::ProgramResult& result) {
    const bool ok = result.ok();
    if (!ok) {
      log(KILN_LOG_ERROR, "latent worker '" + worker_name() + "': the stop command failed: " + result.describe());
    }
    // A worker the stop command did not end is let go here.
    if (worker_attached()) disconnect("the latent worker was stopped");
    attached_ = false;
    state_ = State::kDown;
    instance_ = {};
    auto stop_waiters = std::exchange(stop_waiters_, {});
    for (auto& w : stop_waiters) {
      if (ok) {
        w.ok();
      } else {
        w.fail(sdk::Status(KILN_ERR_INTERNAL, "the stop command failed: " + result.describe()));
      }
    }
    if (next_) {
      auto next = std::move(*next_);
      next_.reset();
      waiters_ = std::exchange(next_waiters_, {});
      begin_start(std::move(next));
    }
  }

  void fail_waiters(const std::string& why) {
    auto waiters = std::exchange(waiters_, {});
    for (auto& w : waiters) w.fail(sdk::Status(KILN_ERR_REFUSED, why));
  }
  void fail_next(const std::string& why) {
    next_.reset();
    auto waiters = std::exchange(next_waiters_, {});
    for (auto& w : waiters) w.fail(sdk::Status(KILN_ERR_REFUSED, why));
  }

  void cancel_missing_timer() {
    if (missing_timer_) (void)context().cancel_timer(missing_timer_);
    missing_timer_ = 0;
  }

  // At stop only: the loop may wait, bounded, for the start under way and
  // the stop after it (each is killed at command_timeout).
  void wait_for_commands() {
    auto finished = std::make_shared<std::promise<void>>();
    auto future = finished->get_future();
    if (!runner_.call([finished] { finished->set_value(); }, nullptr)) return;
    const double limit = 2 * config().value("command_timeout", 600.0) + 5;
    if (future.wait_for(std::chrono::duration<double>(limit)) != std::future_status::ready) {
      log(KILN_LOG_ERROR, "latent worker '" + worker_name() + "': its commands did not end in time");
    }
  }

  std::string master_dir_;
  sdk::ProgramRunner runner_;
  State state_ = State::kDown;
  Instance instance_;
  bool start_running_ = false;
  bool stop_after_start_ = false;
  bool attached_ = false;
  uint64_t missing_timer_ = 0;
  std::vector<sdk::Reply> waiters_;       // builds waiting for the instance
  std::vector<sdk::Reply> stop_waiters_;  // insubstantiate calls
  std::optional<Instance> next_;          // a start asked for while stopping
  std::vector<sdk::Reply> next_waiters_;
};

}  // namespace kiln::buildbot_worker
