#pragma once
// Base classes for the six component kinds. A plugin derives from one,
// gives it a constructor (Context ctx, const nlohmann::json& config) and
// overrides the virtual functions that mirror the kind's vtable in
// plugin_api.h. kiln::sdk::component<T>() (component.hpp) turns the class
// into a kiln_component_desc.
//
// Virtual functions that return Status may also throw: the SDK's edge turns
// kiln::sdk::Error into its status and any other exception into
// KILN_ERR_INTERNAL, with the component's type name in the message.
// Optional vtable entries (ChangeSource::poll, Scheduler::on_change and
// control, Worker::substantiate/insubstantiate/control) are offered to the
// host only when the derived class overrides them.

#include <kiln/sdk/context.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::sdk {

namespace detail {
template <class T>
struct Adapter;
}

// The answer to an asynchronous request from the host (a scheduler's or
// worker's control action, a latent worker's substantiate): call it once,
// now or later, on the loop thread. Copies share the one answer. A request
// accepted (the function returned OK) but never answered is answered with
// KILN_ERR_INTERNAL when the last copy goes away, so the host never waits
// forever.
class Reply {
 public:
  Reply() = default;
  Reply(kiln_json_cb cb, void* user, std::string label)
      : state_(std::make_shared<State>(cb, user, std::move(label))) {}

  void operator()(const Result<nlohmann::json>& result) const {
    if (result.ok()) {
      ok(*result);
    } else {
      fail(result.status());
    }
  }
  void ok(const nlohmann::json& value = nlohmann::json::object()) const {
    if (!state_ || state_->answered.exchange(true)) return;
    const std::string text = value.dump();
    if (state_->cb != nullptr) state_->cb(state_->user, KILN_OK, str(text));
  }
  void fail(const Status& status) const {
    if (!state_ || state_->answered.exchange(true)) return;
    const std::string text = state_->label + ": " + status.message();
    if (state_->cb != nullptr) {
      state_->cb(state_->user, status.ok() ? KILN_ERR_INTERNAL : status.code(), str(text));
    }
  }
  bool answered() const { return state_ && state_->answered; }

  // The SDK calls this when the request itself failed: the host has its
  // answer in the return status and must not get the callback too.
  void disarm() const {
    if (state_) state_->answered = true;
  }

 private:
  struct State {
    State(kiln_json_cb c, void* u, std::string l) : cb(c), user(u), label(std::move(l)) {}
    ~State() {
      if (!answered && cb != nullptr) {
        const std::string text = label + ": the request was dropped without an answer";
        cb(user, KILN_ERR_INTERNAL, str(text));
      }
    }
    kiln_json_cb cb;
    void* user;
    std::string label;
    std::atomic<bool> answered{false};
  };
  std::shared_ptr<State> state_;
};

// What every component has: its context and its configuration (the JSON
// object from master.yaml without the keys the core owns, defaults filled).
class Component {
 public:
  Component(Context ctx, const nlohmann::json& config) : ctx_(std::move(ctx)), config_(config) {}
  virtual ~Component() { ctx_.release_callbacks(); }
  Component(const Component&) = delete;
  Component& operator=(const Component&) = delete;

  const Context& context() const { return ctx_; }
  // The configuration the instance was created (or last reconfigured) with.
  const nlohmann::json& config() const { return config_; }
  void log(kiln_log_level level, std::string_view message) const { ctx_.log(level, message); }

 private:
  template <class T>
  friend struct detail::Adapter;
  Context ctx_;
  nlohmann::json config_;
};

class ChangeSource : public Component {
 public:
  using Component::Component;
  virtual Status start() { return {}; }
  virtual void stop() {}
  // "Poll now". Offered to the host only when overridden.
  virtual Status poll() { return Status(KILN_ERR_UNSUPPORTED, "poll is not supported"); }

  // change: {"author", "files", "comments", "revision", "branch", ...};
  // done gets {"changeid": N}.
  Status add_change(const nlohmann::json& change, JsonCallback done = {}) const {
    return context().change_add(change, std::move(done));
  }
};

class Scheduler : public Component {
 public:
  using Component::Component;
  virtual Status start() { return {}; }
  virtual void stop() {}
  // Every new change (with "changeid"). Offered only when overridden.
  virtual void on_change(const nlohmann::json& change) { (void)change; }
  // "force", "trigger", ...: answer through reply, e.g. reply.ok({{"bsid", N}}).
  // Offered only when overridden.
  virtual Status control(std::string_view action, const nlohmann::json& args, Reply reply) {
    (void)args;
    (void)reply;
    return Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) + "'");
  }

  // done gets {"bsid": N, "brids": {...}}.
  Status add_buildset(const nlohmann::json& request, JsonCallback done = {}) const {
    return context().buildset_add(request, std::move(done));
  }
};

// The outcome of a worker command: {"rc": N} or {"rc": -1, "failure": ...}.
struct CommandResult {
  int rc = -1;
  std::string failure;  // empty when the command ran
  bool lost = false;    // the worker went away
  nlohmann::json raw;   // everything the host sent

  bool ok() const { return rc == 0 && failure.empty(); }
  static CommandResult from_json(std::string_view text) {
    CommandResult r;
    r.raw = nlohmann::json::parse(text, nullptr, false);
    if (!r.raw.is_object()) {
      r.failure = "unreadable command result: " + std::string(text.substr(0, 200));
      return r;
    }
    if (r.raw.contains("rc") && r.raw["rc"].is_number_integer()) r.rc = r.raw["rc"].get<int>();
    if (r.raw.contains("failure") && r.raw["failure"].is_string()) {
      r.failure = r.raw["failure"].get<std::string>();
    }
    r.lost = r.raw.value("lost", false);
    return r;
  }
};

struct CommandHandlers {
  std::function<void(kiln_stream stream, std::string_view data)> on_output;  // may be empty
  std::function<void(const nlohmann::json& update)> on_update;               // may be empty
  std::function<void(const CommandResult& result)> on_complete;              // once, last
};

namespace detail {

// Owned by the host from command_start until on_complete.
struct CommandHolder {
  std::weak_ptr<ContextState> owner;
  CommandHandlers handlers;
};

inline std::shared_ptr<ContextState> live(const CommandHolder* h) {
  auto state = h->owner.lock();
  return state && !state->closed ? state : nullptr;
}

inline void command_output(void* user, kiln_stream stream, kiln_bytes data) {
  auto* h = static_cast<CommandHolder*>(user);
  auto state = live(h);
  if (!state || !h->handlers.on_output) return;
  try {
    h->handlers.on_output(stream, view(data));
  } catch (...) {
    state->log_exception("a command output handler");
  }
}

inline void command_update(void* user, kiln_str update_json) {
  auto* h = static_cast<CommandHolder*>(user);
  auto state = live(h);
  if (!state || !h->handlers.on_update) return;
  try {
    auto update = nlohmann::json::parse(view(update_json), nullptr, false);
    if (!update.is_discarded()) h->handlers.on_update(update);
  } catch (...) {
    state->log_exception("a command update handler");
  }
}

inline void command_complete(void* user, kiln_str result_json) {
  std::unique_ptr<CommandHolder> h(static_cast<CommandHolder*>(user));
  auto state = live(h.get());
  if (!state) return;
  {
    std::lock_guard lock(state->mutex);
    state->commands.erase(h.get());
  }
  if (!h->handlers.on_complete) return;
  try {
    h->handlers.on_complete(CommandResult::from_json(view(result_json)));
  } catch (...) {
    state->log_exception("a command completion handler");
  }
}

}  // namespace detail

// One run of a step in a build. run() starts the work and returns at once;
// the step ends with finish(). The helpers below are the ABI's step services,
// callback-based; SimpleStep (step.hpp) builds straight-line steps on them.
class Step : public Component {
 public:
  using Component::Component;

  // Starts the step. Return an error (or throw) to fail before anything
  // started; otherwise call finish() exactly once, now or later.
  virtual Status run() = 0;
  // The build is being stopped. By default: interrupt the commands this
  // step started (their completion handlers then finish the step), or
  // finish CANCELLED when none is running.
  virtual void interrupt(std::string_view reason) {
    std::map<const void*, uint64_t> running;
    {
      std::lock_guard lock(context().state()->mutex);
      running = context().state()->commands;
    }
    bool any = false;
    for (const auto& [_, id] : running) {
      if (id != 0 && interrupt_command(id, reason).ok()) any = true;
    }
    if (!any && !finished_) finish(KILN_CANCELLED, "interrupted: " + std::string(reason));
  }

  // --- worker commands -------------------------------------------------
  // Starts a command on the build's worker ("shell", "stat", "mkdir", ...
  // with Buildbot's argument names). Returns the command id.
  Result<uint64_t> command(std::string_view name, const nlohmann::json& args,
                           CommandHandlers handlers) {
    KILN_SDK_REQUIRE_HOST(h, command_start);
    if (context().released()) return Status(KILN_ERR_CANCELLED, "step already destroyed");
    static const kiln_command_handlers kHandlers = {sizeof(kiln_command_handlers),
                                                    &detail::command_output,
                                                    &detail::command_update,
                                                    &detail::command_complete};
    const std::string text = args.dump();
    auto holder = std::make_unique<detail::CommandHolder>(
        detail::CommandHolder{context().state(), std::move(handlers)});
    auto& state = *context().state();
    {
      std::lock_guard lock(state.mutex);
      state.commands[holder.get()] = 0;
    }
    uint64_t id = 0;
    kiln_status rc = h->command_start(context().raw(), str(name), str(text), &kHandlers,
                                      holder.get(), &id);
    std::lock_guard lock(state.mutex);
    if (rc != KILN_OK) {
      state.commands.erase(holder.get());
      return Context::failed(rc, "command_start");
    }
    // Still registered unless it already completed (off-loop callers).
    if (auto it = state.commands.find(holder.get()); it != state.commands.end()) it->second = id;
    holder.release();  // freed by detail::command_complete
    return id;
  }

  // Runs a shell command. `args` is a command line (string or array) or
  // Buildbot's full shell arguments ({"command": [...], "workdir", "env",
  // "timeout", ...}). Without on_output, output goes to the step's "stdio"
  // log, as Buildbot's ShellCommand does.
  Result<uint64_t> shell(const nlohmann::json& args,
                         std::function<void(kiln_stream, std::string_view)> on_output,
                         std::function<void(const CommandResult&)> on_complete) {
    nlohmann::json full = args.is_object() ? args : nlohmann::json{{"command", args}};
    if (!on_output) {
      auto log = stdio_log();
      if (!log) return log.status();
      on_output = [this, id = *log](kiln_stream stream, std::string_view data) {
        append_log(id, data, stream);
      };
    }
    return command("shell", full, CommandHandlers{std::move(on_output), {}, std::move(on_complete)});
  }
  Result<uint64_t> shell(const nlohmann::json& args, std::function<void(const CommandResult&)> on_complete) {
    return shell(args, {}, std::move(on_complete));
  }

  Status interrupt_command(uint64_t command_id, std::string_view reason) const {
    KILN_SDK_REQUIRE_HOST(h, command_interrupt);
    kiln_status rc = h->command_interrupt(context().raw(), command_id, str(reason));
    return rc == KILN_OK ? Status() : Context::failed(rc, "command_interrupt");
  }

  // --- properties ------------------------------------------------------
  // The property's value, null when the build has no such property.
  Result<nlohmann::json> property(std::string_view name) const {
    auto text = property_text(name);
    if (!text) return text.status();
    auto parsed = nlohmann::json::parse(*text, nullptr, false);
    if (parsed.is_discarded()) return Status(KILN_ERR_INTERNAL, "host sent invalid JSON for a property");
    if (parsed.is_object() && parsed.contains("value")) return parsed["value"];
    return nlohmann::json();
  }
  // The property's source ("Step", "Scheduler", ...), empty when absent.
  Result<std::string> property_source(std::string_view name) const {
    auto text = property_text(name);
    if (!text) return text.status();
    auto parsed = nlohmann::json::parse(*text, nullptr, false);
    if (parsed.is_object() && parsed.contains("source") && parsed["source"].is_string()) {
      return parsed["source"].get<std::string>();
    }
    return std::string();
  }
  Status set_property(std::string_view name, const nlohmann::json& value,
                      std::string_view source = {}) const {
    KILN_SDK_REQUIRE_HOST(h, property_set);
    const std::string text = value.dump();
    kiln_status rc = h->property_set(context().raw(), str(name), str(text), str(source));
    return rc == KILN_OK ? Status() : Context::failed(rc, "property_set");
  }

  // --- logs and status ---------------------------------------------------
  // type: KILN_LOG_TYPE_STDIO, _TEXT or _HTML. Logs still open when the
  // step finishes are finished then.
  Result<uint64_t> add_log(std::string_view name, char type = KILN_LOG_TYPE_STDIO) {
    KILN_SDK_REQUIRE_HOST(h, log_add);
    uint64_t id = 0;
    kiln_status rc = h->log_add(context().raw(), str(name), type, &id);
    if (rc != KILN_OK) return Context::failed(rc, "log_add");
    open_logs_.insert(id);
    return id;
  }
  Status append_log(uint64_t log_id, std::string_view data, kiln_stream stream = KILN_STREAM_STDOUT) const {
    KILN_SDK_REQUIRE_HOST(h, log_append);
    kiln_status rc = h->log_append(context().raw(), log_id, stream, bytes(data));
    return rc == KILN_OK ? Status() : Context::failed(rc, "log_append");
  }
  Status finish_log(uint64_t log_id) {
    KILN_SDK_REQUIRE_HOST(h, log_finish);
    open_logs_.erase(log_id);
    if (stdio_log_ == log_id) stdio_log_ = 0;
    kiln_status rc = h->log_finish(context().raw(), log_id);
    return rc == KILN_OK ? Status() : Context::failed(rc, "log_finish");
  }
  // The "stdio" log, added on first use.
  Result<uint64_t> stdio_log() {
    if (stdio_log_ != 0) return stdio_log_;
    auto id = add_log("stdio", KILN_LOG_TYPE_STDIO);
    if (id) stdio_log_ = *id;
    return id;
  }

  Status set_summary(std::string_view summary) const {
    KILN_SDK_REQUIRE_HOST(h, set_summary);
    return checked(h->set_summary(context().raw(), str(summary)), "set_summary");
  }
  Status add_url(std::string_view name, std::string_view url) const {
    KILN_SDK_REQUIRE_HOST(h, add_url);
    return checked(h->add_url(context().raw(), str(name), str(url)), "add_url");
  }
  Status set_statistic(std::string_view name, const nlohmann::json& value) const {
    KILN_SDK_REQUIRE_HOST(h, set_statistic);
    const std::string text = value.dump();
    return checked(h->set_statistic(context().raw(), str(name), str(text)), "set_statistic");
  }
  Status set_progress(std::string_view metric, double value) const {
    KILN_SDK_REQUIRE_HOST(h, set_progress);
    return checked(h->set_progress(context().raw(), str(metric), value), "set_progress");
  }
  // steps: a JSON array of step configs, as in master.yaml.
  Status add_steps(const nlohmann::json& steps) const {
    KILN_SDK_REQUIRE_HOST(h, add_steps);
    const std::string text = steps.dump();
    return checked(h->add_steps(context().raw(), str(text), nullptr), "add_steps");
  }

  // Ends the run (exactly once; a second call is refused). Open logs are
  // finished first.
  Status finish(kiln_result result, std::string_view summary = {}) {
    KILN_SDK_REQUIRE_HOST(h, step_finish);
    if (finished_) return Status(KILN_ERR_INVALID_ARGUMENT, "step already finished");
    finished_ = true;
    for (uint64_t id : std::set<uint64_t>(open_logs_)) finish_log(id);
    return checked(h->step_finish(context().raw(), result, str(summary)), "step_finish");
  }
  bool finished() const { return finished_; }

 private:
  Result<std::string> property_text(std::string_view name) const {
    KILN_SDK_REQUIRE_HOST(h, property_get);
    std::string out;
    kiln_status rc = h->property_get(context().raw(), str(name), &detail::text_to_string, &out);
    if (rc != KILN_OK) return Context::failed(rc, "property_get");
    return out;
  }
  static Status checked(kiln_status rc, const char* function) {
    return rc == KILN_OK ? Status() : Context::failed(rc, function);
  }

  bool finished_ = false;
  uint64_t stdio_log_ = 0;
  std::set<uint64_t> open_logs_;
};

// One configured worker of this type: runs commands for builds and reports
// their progress with the command_* helpers.
class Worker : public Component {
 public:
  using Component::Component;
  virtual Status start() { return {}; }
  virtual void stop() {}
  virtual Status command_start(uint64_t command_id, std::string_view name, const nlohmann::json& args) = 0;
  virtual Status command_interrupt(uint64_t command_id, std::string_view reason) {
    (void)command_id;
    (void)reason;
    return Status(KILN_ERR_UNSUPPORTED, "commands cannot be interrupted");
  }
  // Latent workers only (offered when overridden): bring the machine up,
  // then done.ok() once connected, or done.fail(...).
  virtual Status substantiate(const nlohmann::json& build, Reply done) {
    (void)build;
    done.ok();
    return {};
  }
  virtual Status insubstantiate(Reply done) {
    done.ok();
    return {};
  }
  // "ping", "graceful_shutdown". Offered only when overridden.
  virtual Status control(std::string_view action, const nlohmann::json& args, Reply reply) {
    (void)args;
    (void)reply;
    return Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) + "'");
  }

  // info: {"admin", "host", "version", "os", "environ", "basedir", ...}
  Status connected(const nlohmann::json& info) const {
    KILN_SDK_REQUIRE_HOST(h, worker_connected);
    const std::string text = info.dump();
    return checked(h->worker_connected(context().raw(), str(text)), "worker_connected");
  }
  Status disconnected(std::string_view reason) const {
    KILN_SDK_REQUIRE_HOST(h, worker_disconnected);
    return checked(h->worker_disconnected(context().raw(), str(reason)), "worker_disconnected");
  }
  Status command_output(uint64_t command_id, kiln_stream stream, std::string_view data) const {
    KILN_SDK_REQUIRE_HOST(h, command_output);
    return checked(h->command_output(context().raw(), command_id, stream, bytes(data)), "command_output");
  }
  Status command_update(uint64_t command_id, const nlohmann::json& update) const {
    KILN_SDK_REQUIRE_HOST(h, command_update);
    const std::string text = update.dump();
    return checked(h->command_update(context().raw(), command_id, str(text)), "command_update");
  }
  // result: {"rc": N} or {"rc": -1, "failure": "why"}.
  Status command_complete(uint64_t command_id, const nlohmann::json& result) const {
    KILN_SDK_REQUIRE_HOST(h, command_complete);
    const std::string text = result.dump();
    return checked(h->command_complete(context().raw(), command_id, str(text)), "command_complete");
  }
  Status transfer_write(uint64_t command_id, std::string_view data) const {
    KILN_SDK_REQUIRE_HOST(h, transfer_write);
    return checked(h->transfer_write(context().raw(), command_id, bytes(data)), "transfer_write");
  }
  // At most max_len bytes; empty at end of file.
  Result<std::string> transfer_read(uint64_t command_id, size_t max_len) const {
    KILN_SDK_REQUIRE_HOST(h, transfer_read);
    std::string out;
    kiln_status rc = h->transfer_read(
        context().raw(), command_id, max_len,
        [](void* user, kiln_bytes data) { static_cast<std::string*>(user)->append(view(data)); }, &out);
    if (rc != KILN_OK) return Context::failed(rc, "transfer_read");
    return out;
  }

 private:
  static Status checked(kiln_status rc, const char* function) {
    return rc == KILN_OK ? Status() : Context::failed(rc, function);
  }
};

// Status target: subscribes to events in start() (context().subscribe) and
// reads with context().data_get.
class Reporter : public Component {
 public:
  using Component::Component;
  virtual Status start() { return {}; }
  virtual void stop() {}
};

// A named policy function. The derived class declares which hook it fills:
//   static constexpr const char* kHook = "file_is_important";
// and answers each call synchronously with the hook's result JSON.
class Policy : public Component {
 public:
  using Component::Component;
  virtual Result<nlohmann::json> call(const nlohmann::json& args) = 0;
};

}  // namespace kiln::sdk
