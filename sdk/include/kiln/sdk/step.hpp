#pragma once
// Straight-line steps: kiln::sdk::SimpleStep. A custom step derives from it
// and writes run() as plain sequential code, as Buildbot's new-style steps
// do with `yield`:
//
//   class Framboozle : public kiln::sdk::SimpleStep {
//    public:
//     using SimpleStep::SimpleStep;
//     kiln::sdk::StepResult run() override {
//       int tests = 0;
//       add_line_observer("stdio", [&](std::string_view line, kiln_stream) {
//         if (line.find("FNURRRGH!") != line.npos) set_progress("tests", ++tests);
//       });
//       auto done = shell({"framboozler"});
//       set_statistic("tests", tests);
//       return {result_of(done), std::to_string(tests) + " tests"};
//     }
//   };
//   KILN_PLUGIN(..., kiln::sdk::component<Framboozle>(KILN_KIND_STEP, "framboozle", ...));
//
// How it maps onto the asynchronous ABI (kiln_step_vtable):
//  - Each run of the step gets its own thread, owned by the SDK: the
//    vtable's run() starts it and returns at once, so the engine's loop never
//    waits for the step. The thread calls SimpleStep::run().
//  - Every host call made from run() is posted to the loop (host->post) and,
//    when it returns a value (shell, command, property, add_log, render), the
//    thread waits for the loop's answer on a condition variable. Calls that
//    return nothing (log writes, set_property, set_summary, add_url,
//    set_statistic, set_progress) are posted without waiting; the loop runs
//    them in order, so a property() read after set_property() sees it.
//  - interrupt() (the build is stopped) interrupts the running worker
//    commands and wakes the thread: the pending wait and every later one
//    return at once (shell/command report `cancelled`, the others throw
//    kiln::sdk::Error(KILN_ERR_CANCELLED)), and the step ends CANCELLED
//    whatever run() returns.
//  - An exception escaping run() ends the step EXCEPTION with its message in
//    a log named "err.text", as Buildbot does.
//  - When run() returns, the step finishes (open logs are finished too).
//    Destroying the step cancels all waits and joins the thread: run() must
//    not block on anything but these calls for long, or it holds up the
//    loop at that moment.
//
// Threading rules for authors: call the SimpleStep functions only from
// run() (and the line observers it registers, which run on the same thread
// while a command is waited for), or add_line_observer() also from the
// constructor. Of context(), use only log() from run(): its other calls
// would wait for the loop from the wrong side.

#include <kiln/sdk/component.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln::sdk {

// What run() returns: the step's result and its final one-line summary.
// `return KILN_SUCCESS;` and `return {KILN_FAILURE, "3 tests failed"};` both
// work. An empty summary keeps the last set_summary() text.
struct StepResult {
  StepResult(kiln_result r = KILN_SUCCESS, std::string s = {}) : result(r), summary(std::move(s)) {}
  kiln_result result;
  std::string summary;
};

// How shell() runs a command. Empty or unset fields take the step's common
// keys from master.yaml (workdir, env, timeout, max_time, interrupt_signal),
// then Buildbot's defaults.
struct ShellOptions {
  std::string workdir;                               // relative to the build's folder; default "build"
  nlohmann::json env = nlohmann::json::object();     // merged over the step's env
  std::optional<double> timeout;                     // seconds without output (default 1200)
  std::optional<double> max_time;                    // seconds in all
  std::string log = "stdio";                         // where output goes; "" for nowhere
  bool collect_stdout = false;                       // keep stdout in CommandOutcome::stdout_text
  bool collect_stderr = false;
  bool want_stdout = true;
  bool want_stderr = true;
  bool log_environ = true;                           // the environment in the log's header
  std::optional<std::string> initial_stdin;
  nlohmann::json extra = nlohmann::json::object();   // any other Buildbot shell argument
};

// The end of a worker command as run() sees it.
struct CommandOutcome {
  int rc = -1;
  std::string failure;     // why the command did not run or finish; empty when it did
  bool lost = false;       // the worker went away
  bool cancelled = false;  // the step was interrupted first
  // The worker's updates merged into one object: {"stat": [...]},
  // {"files": [...]}, {"elapsed": 1.2}, ...
  nlohmann::json updates = nlohmann::json::object();
  std::string stdout_text;  // with ShellOptions::collect_stdout
  std::string stderr_text;  // with ShellOptions::collect_stderr

  bool ok() const { return rc == 0 && failure.empty() && !cancelled; }
};

// Sees each complete line of a log's stdout and stderr (without its line
// end), as Buildbot's LogLineObserver does.
using LineObserver = std::function<void(std::string_view line, kiln_stream stream)>;

class SimpleStep;

// A log of the step, from add_log(). Cheap to copy; use it on the step's
// thread only.
class StepLog {
 public:
  const std::string& name() const { return name_; }
  // Observers of this log see the lines written here too.
  void write(std::string_view text, kiln_stream stream = KILN_STREAM_STDOUT) const;
  // Optional: logs still open when the step ends are finished then.
  void finish() const;

 private:
  friend class SimpleStep;
  StepLog(SimpleStep* step, std::string name, uint64_t id) : step_(step), name_(std::move(name)), id_(id) {}
  SimpleStep* step_;
  std::string name_;
  uint64_t id_;
};

namespace detail {
template <class T>
class SimpleStepComponent;
}

class SimpleStep {
 public:
  // Called on the loop when the build reaches the step; config is the
  // step's own keys (validated, defaults filled, properties rendered).
  SimpleStep(Context ctx, const nlohmann::json& config) : ctx_(std::move(ctx)), config_(config) {}
  virtual ~SimpleStep() = default;
  SimpleStep(const SimpleStep&) = delete;
  SimpleStep& operator=(const SimpleStep&) = delete;

  // The step's work, on the step's own thread. See the file comment.
  virtual StepResult run() = 0;

  const Context& context() const { return ctx_; }
  const nlohmann::json& config() const { return config_; }
  // The host's facts about this run (context_info): "builder",
  // "build_number", "common" (the core-owned keys), ...
  const nlohmann::json& info() const { return info_; }
  // A key of info()["common"] (timeout, env, workdir, decode_rc, ...), or null.
  nlohmann::json common(std::string_view key) const {
    auto it = info_.find("common");
    if (it == info_.end() || !it->is_object()) return nullptr;
    auto value = it->find(key);
    return value == it->end() ? nlohmann::json() : *value;
  }
  void log(kiln_log_level level, std::string_view message) const { ctx_.log(level, message); }
  // True once the build is being stopped.
  bool interrupted() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }

  // --- worker commands (wait for the command's end) ----------------------
  // Runs a command line (a string for the worker's shell, or an argv
  // array) with its output in the options' log.
  CommandOutcome shell(const nlohmann::json& command, const ShellOptions& options = {}) {
    nlohmann::json args = {
        {"command", command},
        {"workdir", !options.workdir.empty() ? options.workdir : common_string("workdir", "build")},
        {"env", merged_env(options.env)},
        {"timeout", options.timeout ? nlohmann::json(*options.timeout) : common_number("timeout", 1200)},
        {"want_stdout", options.want_stdout},
        {"want_stderr", options.want_stderr},
        {"logEnviron", options.log_environ},
    };
    if (options.max_time) {
      args["maxTime"] = *options.max_time;
    } else if (common("max_time").is_number()) {
      args["maxTime"] = common("max_time");
    }
    if (common("interrupt_signal").is_string()) args["interruptSignal"] = common("interrupt_signal");
    if (options.initial_stdin) args["initial_stdin"] = *options.initial_stdin;
    if (options.extra.is_object()) args.update(options.extra);
    return run_command("shell", std::move(args), options.log, options.collect_stdout, options.collect_stderr);
  }

  // Any worker command by its Buildbot name and arguments: "stat" {file},
  // "glob" {path}, "listdir" {dir}, "mkdir"/"rmdir" {dir}, "rmfile" {path},
  // "cpdir", "uploadFile"/"uploadDirectory" {workersrc, masterdest},
  // "downloadFile" {mastersrc, workerdest}, ... (plugin_api.h,
  // command_start). Results arrive in CommandOutcome::updates; output, if
  // any, goes to `log` when one is named.
  CommandOutcome command(std::string_view name, const nlohmann::json& args, std::string_view log = {}) {
    return run_command(std::string(name), args, std::string(log), false, false);
  }

  // Buildbot's result for a finished command: CANCELLED after an interrupt,
  // RETRY when the worker was lost, FAILURE when it could not run, else the
  // step's decode_rc of the exit code (0 SUCCESS, others FAILURE).
  kiln_result result_of(const CommandOutcome& outcome) const {
    if (outcome.cancelled) return KILN_CANCELLED;
    if (outcome.lost) return KILN_RETRY;
    if (!outcome.failure.empty()) return KILN_FAILURE;
    const nlohmann::json table = common("decode_rc");
    if (!table.is_object()) return outcome.rc == 0 ? KILN_SUCCESS : KILN_FAILURE;
    auto it = table.find(std::to_string(outcome.rc));
    if (it == table.end() || !it->is_string()) return KILN_FAILURE;
    static const std::map<std::string, kiln_result, std::less<>> kNames = {
        {"SUCCESS", KILN_SUCCESS}, {"WARNINGS", KILN_WARNINGS}, {"FAILURE", KILN_FAILURE},
        {"SKIPPED", KILN_SKIPPED}, {"EXCEPTION", KILN_EXCEPTION}, {"RETRY", KILN_RETRY},
        {"CANCELLED", KILN_CANCELLED}};
    auto name = kNames.find(it->get<std::string>());
    return name == kNames.end() ? KILN_FAILURE : name->second;
  }

  // --- values from the host (wait; throw Error when refused or interrupted)
  // The build property's value, null when absent.
  nlohmann::json property(std::string_view name) {
    return wait_for<Result<nlohmann::json>>([this, n = std::string(name)] { return host_->property(n); }).value();
  }
  // A data API resource ("builds/12", "buildsets/3", ...), as reporters
  // read it; query as kiln_host_api.data_get takes it (null for none).
  nlohmann::json data_get(std::string_view path, const nlohmann::json& query = nullptr) {
    return wait_for_answer([this, p = std::string(path), query](JsonCallback answer) {
             return ctx_.data_get(p, query, std::move(answer));
           })
        .value();
  }
  // Buildbot Interpolate: "%(prop:branch)s" with this build's properties.
  std::string render(std::string_view text) {
    return wait_for<Result<std::string>>([this, t = std::string(text)] { return ctx_.render(t); }).value();
  }
  // type: KILN_LOG_TYPE_STDIO, _TEXT or _HTML. A shell() whose options
  // name the same log writes into this one.
  StepLog add_log(std::string_view name, char type = KILN_LOG_TYPE_STDIO) {
    uint64_t id = wait_for<Result<uint64_t>>([this, n = std::string(name), type] { return open_log(n, type); }).value();
    return StepLog(this, std::string(name), id);
  }

  // --- effects (posted in order, no waiting; failures go to the master log)
  void set_property(std::string_view name, const nlohmann::json& value, std::string_view source = {}) {
    post([this, n = std::string(name), value, s = std::string(source)] { report(host_->set_property(n, value, s)); });
  }
  void set_summary(std::string_view summary) {
    summary_ = summary;
    post([this, s = std::string(summary)] { report(host_->set_summary(s)); });
  }
  void add_url(std::string_view name, std::string_view url) {
    post([this, n = std::string(name), u = std::string(url)] { report(host_->add_url(n, u)); });
  }
  void set_statistic(std::string_view name, const nlohmann::json& value) {
    post([this, n = std::string(name), value] { report(host_->set_statistic(n, value)); });
  }
  // Progress for ETA estimates along a metric ("tests", "output").
  void set_progress(std::string_view metric, double value) {
    post([this, m = std::string(metric), value] { report(host_->set_progress(m, value)); });
  }
  // Appends steps (master.yaml step configs) to the build after this one.
  void add_steps(const nlohmann::json& steps) {
    post([this, steps] { report(host_->add_steps(steps)); });
  }

  // Buildbot's addLogObserver(name, LogLineObserver): `observer` sees every
  // line written to the named log from now on, by shell()/command() output
  // or StepLog::write. It runs on the step's thread and may call any of the
  // functions above.
  void add_line_observer(std::string_view log, LineObserver observer) {
    observers_[std::string(log)].push_back(std::move(observer));
  }

 private:
  template <class T>
  friend class detail::SimpleStepComponent;
  friend class StepLog;

  using Lines = std::pair<std::string, kiln_stream>;

  // One worker command: filled by the loop's handlers, read by the thread.
  struct CommandCall {
    bool forward = false;  // hand output to the thread (observers, collecting)
    std::deque<std::pair<kiln_stream, std::string>> output;
    nlohmann::json updates = nlohmann::json::object();
    std::optional<CommandResult> result;
  };

  // --- loop side ---------------------------------------------------------
  // The vtable's run(): reads the run's facts and starts the thread.
  Status start(Step& host) {
    // Without post the thread could never hand its work to the loop.
    if (!KILN_HAS(kiln_host_api, Host::api(), post)) return detail::unsupported("post");
    host_ = &host;
    auto facts = ctx_.info();
    if (facts.ok() && facts->is_object()) info_ = *facts;
    std::string reason;
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) reason = cancel_reason_;
    }
    if (!reason.empty()) return host.finish(KILN_CANCELLED, "cancelled: " + reason);
    thread_ = std::thread([this] { thread_main(); });
    return {};
  }

  void interrupt(Step& host, std::string_view reason) {
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return;
      cancelled_ = true;
      cancel_reason_ = reason.empty() ? std::string("interrupted") : std::string(reason);
    }
    cv_.notify_all();
    // The worker stops the commands; the thread does not wait for that.
    std::map<const void*, uint64_t> running;
    {
      std::lock_guard lock(ctx_.state()->mutex);
      running = ctx_.state()->commands;
    }
    for (const auto& [_, id] : running) {
      if (id != 0) host.interrupt_command(id, reason);
    }
  }

  // Before the instance goes: nothing posted runs any more, every wait
  // returns, and the thread is joined.
  void stop() {
    ctx_.release_callbacks();
    {
      std::lock_guard lock(mutex_);
      cancelled_ = true;
      if (cancel_reason_.empty()) cancel_reason_ = "the step was destroyed";
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Result<uint64_t> open_log(const std::string& name, char type) {
    auto id = host_->add_log(name, type);
    if (id) logs_by_name_[name] = *id;
    return id;
  }

  Result<uint64_t> start_command(const std::string& name, const nlohmann::json& args, const std::string& log,
                                 const std::shared_ptr<CommandCall>& call) {
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return cancelled_status();
    }
    uint64_t log_id = 0;
    if (!log.empty()) {
      auto known = logs_by_name_.find(log);
      if (known != logs_by_name_.end()) {
        log_id = known->second;
      } else {
        auto id = open_log(log, KILN_LOG_TYPE_STDIO);
        if (!id) return id.status();
        log_id = *id;
      }
    }
    CommandHandlers handlers;
    handlers.on_output = [this, call, log_id](kiln_stream stream, std::string_view data) {
      if (log_id != 0) host_->append_log(log_id, data, stream);
      if (!call->forward || stream == KILN_STREAM_HEADER) return;
      {
        std::lock_guard lock(mutex_);
        call->output.emplace_back(stream, std::string(data));
      }
      cv_.notify_all();
    };
    handlers.on_update = [this, call](const nlohmann::json& update) {
      if (!update.is_object()) return;
      std::lock_guard lock(mutex_);
      call->updates.update(update);
    };
    handlers.on_complete = [this, call, log_id](const CommandResult& result) {
      if (log_id != 0 && !result.failure.empty()) {
        host_->append_log(log_id, result.failure + "\n", KILN_STREAM_HEADER);
      }
      {
        std::lock_guard lock(mutex_);
        call->result = result;
      }
      cv_.notify_all();
    };
    return host_->command(name, args, std::move(handlers));
  }

  // --- step thread ---------------------------------------------------------
  void thread_main() {
    thread_id_ = std::this_thread::get_id();
    StepResult outcome(KILN_EXCEPTION);
    std::string error;
    try {
      outcome = run();
      flush_lines();
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "exception of unknown type";
    }
    std::string reason;
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) reason = cancel_reason_;
    }
    kiln_result result = outcome.result;
    std::string summary = outcome.summary.empty() ? summary_ : outcome.summary;
    if (!reason.empty()) {
      // Whatever run() made of it (an Error(CANCELLED) included), the
      // build was stopped.
      result = KILN_CANCELLED;
      error.clear();
      summary = summary.empty() ? "cancelled: " + reason : summary + " (cancelled)";
    } else if (!error.empty()) {
      result = KILN_EXCEPTION;
      summary = "exception: " + error.substr(0, error.find('\n'));
      log(KILN_LOG_WARN, "run() threw: " + error);
    } else if (summary.empty()) {
      summary = result == KILN_SUCCESS ? "finished" : "finished (" + std::string(result_word(result)) + ")";
    }
    // The last thing the thread does: the engine destroys the step (and
    // joins this thread) only after the loop ran it.
    post([this, result, summary, error] {
      if (!error.empty()) {
        if (auto id = host_->add_log("err.text", KILN_LOG_TYPE_TEXT)) host_->append_log(*id, error + "\n");
      }
      host_->finish(result, summary);
    });
  }

  static Status cancelled_status() { return Status(KILN_ERR_CANCELLED, "the step was interrupted"); }

  // Runs fn on the loop and waits for its answer (a Status or Result<T>);
  // CANCELLED at once when the step is interrupted.
  template <class R>
  R wait_for(std::function<R()> fn) {
    if (std::this_thread::get_id() != thread_id_.load()) {
      return R(Status(KILN_ERR_INVALID_ARGUMENT, "SimpleStep calls that wait are for run() alone"));
    }
    struct Slot {
      std::optional<R> value;
    };
    auto slot = std::make_shared<Slot>();
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return R(cancelled_status());
    }
    Status posted = ctx_.post([this, slot, fn = std::move(fn)] {
      std::optional<R> answer;
      try {
        answer.emplace(fn());
      } catch (const std::exception& e) {
        answer.emplace(Status(KILN_ERR_INTERNAL, e.what()));
      }
      {
        std::lock_guard lock(mutex_);
        slot->value = std::move(answer);
      }
      cv_.notify_all();
    });
    if (!posted) return R(posted);
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return slot->value.has_value() || cancelled_; });
    if (slot->value) return std::move(*slot->value);
    return R(cancelled_status());
  }

  // Like wait_for, for a host call that answers later through a callback:
  // start() runs on the loop; its callback (or its failed Status) is the answer.
  Result<nlohmann::json> wait_for_answer(std::function<Status(JsonCallback)> start) {
    if (std::this_thread::get_id() != thread_id_.load()) {
      return Status(KILN_ERR_INVALID_ARGUMENT, "SimpleStep calls that wait are for run() alone");
    }
    auto slot = std::make_shared<std::optional<Result<nlohmann::json>>>();
    {
      std::lock_guard lock(mutex_);
      if (cancelled_) return cancelled_status();
    }
    auto deliver = [this, slot](Result<nlohmann::json> answer) {
      {
        std::lock_guard lock(mutex_);
        if (!slot->has_value()) slot->emplace(std::move(answer));
      }
      cv_.notify_all();
    };
    Status posted = ctx_.post([start = std::move(start), deliver] {
      Status started(KILN_ERR_INTERNAL, "the host call threw");
      try {
        started = start(deliver);
      } catch (const std::exception& e) {
        started = Status(KILN_ERR_INTERNAL, e.what());
      }
      if (!started) deliver(started);
    });
    if (!posted) return posted;
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return slot->has_value() || cancelled_; });
    if (slot->has_value()) return std::move(**slot);
    return cancelled_status();
  }

  // Effects have no caller to tell: their failures go to the master log.
  void report(const Status& s) const {
    if (!s) log(KILN_LOG_WARN, s.message());
  }

  // Runs fn on the loop later, in order with everything else posted.
  void post(std::function<void()> fn) {
    Status s = ctx_.post(std::move(fn));
    if (!s && s.code() != KILN_ERR_CANCELLED) log(KILN_LOG_WARN, "could not post to the loop: " + s.message());
  }

  CommandOutcome run_command(std::string name, nlohmann::json args, std::string log, bool collect_stdout,
                             bool collect_stderr) {
    CommandOutcome outcome;
    auto call = std::make_shared<CommandCall>();
    call->forward = collect_stdout || collect_stderr || (!log.empty() && observers_.count(log) > 0);
    auto started = wait_for<Result<uint64_t>>(
        [this, name, args = std::move(args), log, call] { return start_command(name, args, log, call); });
    if (!started) {
      outcome.cancelled = interrupted();
      outcome.failure = started.status().message();
      return outcome;
    }
    std::unique_lock lock(mutex_);
    while (true) {
      cv_.wait(lock, [&] { return !call->output.empty() || call->result || cancelled_; });
      while (!call->output.empty()) {
        auto [stream, data] = std::move(call->output.front());
        call->output.pop_front();
        lock.unlock();  // observers may call back into the step
        if (collect_stdout && stream == KILN_STREAM_STDOUT) outcome.stdout_text += data;
        if (collect_stderr && stream == KILN_STREAM_STDERR) outcome.stderr_text += data;
        if (!log.empty()) feed(log, stream, data);
        lock.lock();
      }
      if (call->result || cancelled_) break;
    }
    outcome.updates = call->updates;
    outcome.cancelled = cancelled_;
    if (call->result) {
      outcome.rc = call->result->rc;
      outcome.failure = call->result->failure;
      outcome.lost = call->result->lost;
    } else {
      outcome.failure = "interrupted: " + cancel_reason_;
    }
    lock.unlock();
    if (!log.empty()) flush_lines(log);
    return outcome;
  }

  void write_log(const std::string& name, uint64_t id, std::string_view text, kiln_stream stream) {
    post([this, id, t = std::string(text), stream] { report(host_->append_log(id, t, stream)); });
    feed(name, stream, text);
  }
  void finish_log(const std::string& name, uint64_t id) {
    flush_lines(name);
    post([this, name, id] {
      if (auto it = logs_by_name_.find(name); it != logs_by_name_.end() && it->second == id) {
        logs_by_name_.erase(it);
      }
      report(host_->finish_log(id));
    });
  }

  // Splits a log's stdout/stderr bytes into lines for its observers.
  void feed(const std::string& log, kiln_stream stream, std::string_view data) {
    if (stream == KILN_STREAM_HEADER || observers_.find(log) == observers_.end()) return;
    std::string& partial = partial_lines_[{log, stream}];
    for (size_t end = data.find('\n'); end != std::string_view::npos; end = data.find('\n')) {
      partial.append(data.substr(0, end));
      data.remove_prefix(end + 1);
      emit(log, std::exchange(partial, std::string()), stream);
    }
    partial.append(data);
  }
  // A last line without its line end still counts once the log's writer is done.
  void flush_lines(const std::string& log = {}) {
    for (auto& [key, partial] : partial_lines_) {
      if ((log.empty() || key.first == log) && !partial.empty()) {
        emit(key.first, std::exchange(partial, std::string()), key.second);
      }
    }
  }
  void emit(const std::string& log, std::string line, kiln_stream stream) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto& list = observers_[log];
    // By index: an observer may add observers.
    for (size_t i = 0; i < list.size(); ++i) {
      LineObserver observer = list[i];
      observer(line, stream);
    }
  }

  std::string common_string(std::string_view key, std::string fallback) const {
    nlohmann::json value = common(key);
    return value.is_string() && !value.get<std::string>().empty() ? value.get<std::string>() : fallback;
  }
  nlohmann::json common_number(std::string_view key, double fallback) const {
    nlohmann::json value = common(key);
    return value.is_number() ? value : nlohmann::json(fallback);
  }
  nlohmann::json merged_env(const nlohmann::json& extra) const {
    nlohmann::json env = common("env");
    if (!env.is_object()) env = nlohmann::json::object();
    if (extra.is_object()) env.update(extra);
    return env;
  }
  static const char* result_word(kiln_result result) {
    switch (result) {
      case KILN_SUCCESS: return "success";
      case KILN_WARNINGS: return "warnings";
      case KILN_FAILURE: return "failure";
      case KILN_SKIPPED: return "skipped";
      case KILN_EXCEPTION: return "exception";
      case KILN_RETRY: return "retry";
      case KILN_CANCELLED: return "cancelled";
    }
    return "unknown";
  }

  Context ctx_;
  nlohmann::json config_;
  nlohmann::json info_ = nlohmann::json::object();  // set on the loop before the thread starts

  // Loop side.
  Step* host_ = nullptr;
  std::map<std::string, uint64_t, std::less<>> logs_by_name_;

  // Shared: the waits of the step thread and what the loop hands it.
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool cancelled_ = false;
  std::string cancel_reason_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};

  // Step thread (or the constructor, before it starts).
  std::map<std::string, std::vector<LineObserver>, std::less<>> observers_;
  std::map<Lines, std::string> partial_lines_;
  std::string summary_;
};

inline void StepLog::write(std::string_view text, kiln_stream stream) const {
  step_->write_log(name_, id_, text, stream);
}
inline void StepLog::finish() const { step_->finish_log(name_, id_); }

namespace detail {

// The asynchronous Step the engine sees, running a SimpleStep T on its
// thread. component<T>() below makes T's descriptor from it.
template <class T>
class SimpleStepComponent final : public Step {
 public:
  SimpleStepComponent(Context ctx, const nlohmann::json& config) : Step(ctx, config), step_(ctx, config) {}
  ~SimpleStepComponent() override { step_.stop(); }

  static Status validate(const nlohmann::json& config)
    requires HasValidate<T>
  {
    return as_status<decltype(T::validate(config))>([&] { return T::validate(config); });
  }

  Status run() override { return step_.start(*this); }
  void interrupt(std::string_view reason) override { step_.interrupt(*this, reason); }

 private:
  T step_;
};

}  // namespace detail

// The descriptor of a straight-line step type, used exactly like the other
// kinds' component<T>(KILN_KIND_STEP, type, version, summary, schema).
template <class T>
  requires std::is_base_of_v<SimpleStep, T>
const kiln_component_desc* component(kiln_component_kind kind, const char* type_name, const char* version,
                                     const char* summary, const char* config_schema = nullptr) {
  static_assert(std::is_constructible_v<T, Context, const nlohmann::json&>,
                "a SimpleStep has a constructor (kiln::sdk::Context, const nlohmann::json& config); "
                "`using SimpleStep::SimpleStep;` gives it one");
  return component<detail::SimpleStepComponent<T>>(kind, type_name, version, summary, config_schema);
}

}  // namespace kiln::sdk
