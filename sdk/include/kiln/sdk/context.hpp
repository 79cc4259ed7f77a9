#pragma once
// kiln::sdk::Context: a component instance's view of the host (its
// kiln_ctx*), with the host services as C++ calls taking std::function.
//
// Lifetime rules the C ABI leaves to the plugin are handled here:
//  - a callback handed to the host lives on the heap until the host calls it
//    (once) or, for timers and subscriptions, until it is cancelled;
//  - when the component is destroyed its timers and subscriptions are
//    cancelled, and callbacks that arrive later are dropped instead of
//    running into a destroyed object.
// Every call checks that the host offers the function (KILN_HAS) and returns
// KILN_ERR_UNSUPPORTED otherwise. A host call that returns non-OK does not
// call the callback it was given.

#include <kiln/sdk/host.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::sdk {

// Results the host delivers as JSON text arrive parsed, or as the error.
using JsonCallback = std::function<void(Result<nlohmann::json>)>;
using EventCallback = std::function<void(std::string_view routing_key, const nlohmann::json& event)>;

namespace detail {

struct ContextState;

// A repeating or one-shot timer, or a subscription: owned by the
// ContextState, so cancelling everything at destroy() frees them.
struct TimerHolder {
  ContextState* state;
  bool repeating;
  uint64_t id = 0;
  std::function<void()> fn;
};
struct SubscriptionHolder {
  ContextState* state;
  uint64_t id = 0;
  EventCallback fn;
};

struct ContextState {
  ContextState(kiln_ctx* c, std::string l) : ctx(c), label(std::move(l)) {}
  ~ContextState() { close(); }

  // Cancels what the instance left registered with the host and makes later
  // callbacks no-ops. Idempotent.
  void close() {
    if (closed.exchange(true)) return;
    std::map<TimerHolder*, std::shared_ptr<TimerHolder>> t;
    std::map<SubscriptionHolder*, std::shared_ptr<SubscriptionHolder>> s;
    {
      std::lock_guard lock(mutex);
      t.swap(timers);
      s.swap(subscriptions);
    }
    const kiln_host_api* h = Host::api();
    for (const auto& [_, timer] : t) {
      if (timer->id != 0 && KILN_HAS(kiln_host_api, h, timer_cancel)) h->timer_cancel(ctx, timer->id);
    }
    for (const auto& [_, sub] : s) {
      if (sub->id != 0 && KILN_HAS(kiln_host_api, h, unsubscribe)) h->unsubscribe(ctx, sub->id);
    }
  }

  // Prefixes messages so the user knows which component threw.
  void log_exception(const char* where) noexcept {
    try {
      throw;
    } catch (const std::exception& e) {
      try {
        Host::log(ctx, KILN_LOG_ERROR, label + ": exception in " + where + ": " + e.what());
      } catch (...) {
      }
    } catch (...) {
      Host::log(ctx, KILN_LOG_ERROR, "exception of unknown type in a plugin callback");
    }
  }

  kiln_ctx* ctx;
  std::string label;
  std::atomic<bool> closed{false};
  std::mutex mutex;
  std::map<TimerHolder*, std::shared_ptr<TimerHolder>> timers;
  std::map<SubscriptionHolder*, std::shared_ptr<SubscriptionHolder>> subscriptions;
  // Commands a step started and that have not completed: holder -> id.
  std::map<const void*, uint64_t> commands;
};

// A callback the host calls exactly once: handed over as `user`, reclaimed
// by the trampoline. `owner` tells whether the instance still exists.
template <class Fn>
struct Once {
  std::weak_ptr<ContextState> owner;
  Fn fn;
};

// Takes a Once back from the host; returns the live state, or null when the
// instance is gone or there is nothing to call.
template <class Fn>
std::shared_ptr<ContextState> reclaim(void* user, std::unique_ptr<Once<Fn>>& out) {
  out.reset(static_cast<Once<Fn>*>(user));
  auto state = out->owner.lock();
  if (!state || state->closed || !out->fn) return nullptr;
  return state;
}

inline Result<nlohmann::json> json_result(kiln_status status, kiln_str text) {
  if (status != KILN_OK) return Status(status, std::string(view(text)));
  auto parsed = nlohmann::json::parse(view(text), nullptr, false);
  if (parsed.is_discarded()) {
    return Status(KILN_ERR_INTERNAL, "host sent invalid JSON: " + std::string(view(text).substr(0, 200)));
  }
  return parsed;
}

inline void run_once(void* user) {
  std::unique_ptr<Once<std::function<void()>>> holder;
  auto state = reclaim(user, holder);
  if (!state) return;
  try {
    holder->fn();
  } catch (...) {
    state->log_exception("a posted function");
  }
}

inline void json_once(void* user, kiln_status status, kiln_str json) {
  std::unique_ptr<Once<JsonCallback>> holder;
  auto state = reclaim(user, holder);
  if (!state) return;
  try {
    holder->fn(json_result(status, json));
  } catch (...) {
    state->log_exception("a JSON callback");
  }
}

inline void text_to_string(void* user, kiln_str text) {
  static_cast<std::string*>(user)->assign(text.ptr != nullptr ? text.ptr : "", text.len);
}

inline void run_timer(void* user) {
  auto* raw = static_cast<TimerHolder*>(user);
  ContextState* state = raw->state;
  std::shared_ptr<TimerHolder> timer;
  {
    std::lock_guard lock(state->mutex);
    auto it = state->timers.find(raw);
    if (it == state->timers.end()) return;
    timer = it->second;  // keeps fn alive even if it cancels its own timer
    if (!timer->repeating) state->timers.erase(it);
  }
  if (state->closed) return;
  try {
    timer->fn();
  } catch (...) {
    state->log_exception("a timer");
  }
}

inline void run_event(void* user, kiln_str routing_key, kiln_str event_json) {
  auto* raw = static_cast<SubscriptionHolder*>(user);
  ContextState* state = raw->state;
  std::shared_ptr<SubscriptionHolder> sub;
  {
    std::lock_guard lock(state->mutex);
    auto it = state->subscriptions.find(raw);
    if (it == state->subscriptions.end()) return;
    sub = it->second;
  }
  if (state->closed) return;
  try {
    auto event = nlohmann::json::parse(view(event_json), nullptr, false);
    if (event.is_discarded()) {
      Host::log(state->ctx, KILN_LOG_WARN, state->label + ": dropped an event with invalid JSON");
      return;
    }
    sub->fn(view(routing_key), event);
  } catch (...) {
    state->log_exception("an event callback");
  }
}

// Hands `fn` to a host call that takes (kiln_json_cb, user): the call gets
// json_once and a heap holder that is freed by json_once, or here when the
// host refused the call.
template <class Call>
Status with_json_callback(const std::shared_ptr<ContextState>& state, JsonCallback fn, Call&& call) {
  if (!fn) return Status(call(static_cast<kiln_json_cb>(nullptr), nullptr), "");
  auto holder = std::make_unique<Once<JsonCallback>>(Once<JsonCallback>{state, std::move(fn)});
  kiln_status rc = call(&json_once, holder.get());
  if (rc == KILN_OK) holder.release();  // the host owns it until json_once runs
  return Status(rc, "");
}

}  // namespace detail

class Context {
 public:
  // `label` prefixes the messages the SDK writes for this instance
  // (normally the component's type name).
  explicit Context(kiln_ctx* ctx, std::string label = {})
      : state_(std::make_shared<detail::ContextState>(ctx, std::move(label))) {}

  kiln_ctx* raw() const { return state_->ctx; }
  const std::string& label() const { return state_->label; }

  // --- basics ------------------------------------------------------------
  void log(kiln_log_level level, std::string_view message) const {
    Host::log(raw(), level, message);
  }
  void debug(std::string_view message) const { log(KILN_LOG_DEBUG, message); }
  void info(std::string_view message) const { log(KILN_LOG_INFO, message); }
  void warn(std::string_view message) const { log(KILN_LOG_WARN, message); }
  void error(std::string_view message) const { log(KILN_LOG_ERROR, message); }

  // The master's clock (tests replace it): use it for anything scheduled.
  Result<uint64_t> now_ms() const {
    KILN_SDK_REQUIRE_HOST(h, now_ms);
    return h->now_ms(raw());
  }

  // Runs fn on the loop thread soon; callable from any thread. fn is
  // dropped if the instance is destroyed first.
  Status post(std::function<void()> fn) const {
    KILN_SDK_REQUIRE_HOST(h, post);
    if (auto s = check_open(); !s) return s;
    using Holder = detail::Once<std::function<void()>>;
    auto holder = std::make_unique<Holder>(Holder{state_, std::move(fn)});
    kiln_status rc = h->post(raw(), &detail::run_once, holder.get());
    if (rc != KILN_OK) return failed(rc, "post");
    holder.release();  // freed by run_once
    return {};
  }

  // Runs fn after delay_ms on the master's clock, then every interval_ms if
  // it is > 0, until cancel_timer() or the instance's destruction.
  Result<uint64_t> start_timer(uint64_t delay_ms, uint64_t interval_ms, std::function<void()> fn) const {
    KILN_SDK_REQUIRE_HOST(h, timer_start);
    if (auto s = check_open(); !s) return s;
    auto timer = std::make_shared<detail::TimerHolder>(
        detail::TimerHolder{state_.get(), interval_ms > 0, 0, std::move(fn)});
    {
      // Registered first: an off-loop caller's timer may fire before
      // timer_start returns.
      std::lock_guard lock(state_->mutex);
      state_->timers[timer.get()] = timer;
    }
    uint64_t id = 0;
    kiln_status rc = h->timer_start(raw(), delay_ms, interval_ms, &detail::run_timer, timer.get(), &id);
    if (rc != KILN_OK) {
      std::lock_guard lock(state_->mutex);
      state_->timers.erase(timer.get());
      return failed(rc, "timer_start");
    }
    timer->id = id;
    return id;
  }
  Result<uint64_t> start_timer(uint64_t delay_ms, std::function<void()> fn) const {
    return start_timer(delay_ms, 0, std::move(fn));
  }

  Status cancel_timer(uint64_t id) const {
    KILN_SDK_REQUIRE_HOST(h, timer_cancel);
    kiln_status rc = h->timer_cancel(raw(), id);
    std::lock_guard lock(state_->mutex);
    for (auto it = state_->timers.begin(); it != state_->timers.end(); ++it) {
      if (it->second->id == id) {
        state_->timers.erase(it);
        break;
      }
    }
    return rc == KILN_OK ? Status() : failed(rc, "timer_cancel");
  }

  // --- persistent state ---------------------------------------------------
  // cb gets the stored value, or null for a key never written.
  Status state_get(std::string_view key, JsonCallback cb) const {
    KILN_SDK_REQUIRE_HOST(h, state_get);
    if (auto s = check_open(); !s) return s;
    return with_callback("state_get", std::move(cb), [&](kiln_json_cb fn, void* user) {
      return h->state_get(raw(), str(key), fn, user);
    });
  }
  Status state_put(std::string_view key, const nlohmann::json& value, JsonCallback done = {}) const {
    KILN_SDK_REQUIRE_HOST(h, state_put);
    if (auto s = check_open(); !s) return s;
    const std::string text = value.dump();
    return with_callback("state_put", std::move(done), [&](kiln_json_cb fn, void* user) {
      return h->state_put(raw(), str(key), str(text), fn, user);
    });
  }

  // Buildbot Interpolate rendering (%(prop:x)s ...) with this instance's
  // properties.
  Result<std::string> render(std::string_view text) const {
    KILN_SDK_REQUIRE_HOST(h, render);
    return call_with_text("render", [&](kiln_text_cb out, void* user, kiln_error* err) {
      return h->render(raw(), str(text), out, user, err);
    });
  }

  // Facts about this instance: {"kind", "name", "master_dir", ...}; a step
  // run adds its builder, build and workdir (plugin_api.h, context_info).
  Result<nlohmann::json> info() const {
    KILN_SDK_REQUIRE_HOST(h, context_info);
    auto text = call_with_text("context_info", [&](kiln_text_cb out, void* user, kiln_error*) {
      return h->context_info(raw(), out, user);
    });
    if (!text.ok()) return text.status();
    return nlohmann::json::parse(*text, nullptr, false);
  }

  // Calls a named policy function (master.yaml `policies:`, or a built-in
  // policy type) and returns its JSON answer. Synchronous: policies are pure
  // and fast. Needs ABI 1.1; an older host answers KILN_ERR_UNSUPPORTED.
  Result<nlohmann::json> call_policy(std::string_view name, const nlohmann::json& args) const {
    KILN_SDK_REQUIRE_HOST(h, policy_call);
    const std::string text_args = args.dump();
    auto text = call_with_text("policy_call", [&](kiln_text_cb out, void* user, kiln_error* err) {
      return h->policy_call(raw(), str(name), str(text_args), out, user, err);
    });
    if (!text.ok()) return text.status();
    auto answer = nlohmann::json::parse(*text, nullptr, false);
    if (answer.is_discarded()) {
      return Status(KILN_ERR_INTERNAL, "policy '" + std::string(name) + "' answered invalid JSON");
    }
    return answer;
  }

  // --- data API and events -------------------------------------------------
  // query: {"filters": [...], "fields": [...], "order": [...], "limit": N}
  // or null for none.
  Status data_get(std::string_view path, const nlohmann::json& query, JsonCallback cb) const {
    KILN_SDK_REQUIRE_HOST(h, data_get);
    if (auto s = check_open(); !s) return s;
    const std::string q = query.is_null() ? std::string() : query.dump();
    return with_callback("data_get", std::move(cb), [&](kiln_json_cb fn, void* user) {
      return h->data_get(raw(), str(path), str(q), fn, user);
    });
  }
  Status data_control(std::string_view path, std::string_view action, const nlohmann::json& args,
                      JsonCallback cb) const {
    KILN_SDK_REQUIRE_HOST(h, data_control);
    if (auto s = check_open(); !s) return s;
    const std::string a = args.is_null() ? std::string("{}") : args.dump();
    return with_callback("data_control", std::move(cb), [&](kiln_json_cb fn, void* user) {
      return h->data_control(raw(), str(path), str(action), str(a), fn, user);
    });
  }

  // pattern: "builds/+/finished", "changes/#", ... on_event runs for every
  // matching event until unsubscribe() or the instance's destruction.
  Result<uint64_t> subscribe(std::string_view pattern, EventCallback on_event) const {
    KILN_SDK_REQUIRE_HOST(h, subscribe);
    if (auto s = check_open(); !s) return s;
    auto sub = std::make_shared<detail::SubscriptionHolder>(
        detail::SubscriptionHolder{state_.get(), 0, std::move(on_event)});
    {
      std::lock_guard lock(state_->mutex);
      state_->subscriptions[sub.get()] = sub;
    }
    uint64_t id = 0;
    kiln_status rc = h->subscribe(raw(), str(pattern), &detail::run_event, sub.get(), &id);
    if (rc != KILN_OK) {
      std::lock_guard lock(state_->mutex);
      state_->subscriptions.erase(sub.get());
      return failed(rc, "subscribe");
    }
    sub->id = id;
    return id;
  }
  Status unsubscribe(uint64_t id) const {
    KILN_SDK_REQUIRE_HOST(h, unsubscribe);
    kiln_status rc = h->unsubscribe(raw(), id);
    std::lock_guard lock(state_->mutex);
    for (auto it = state_->subscriptions.begin(); it != state_->subscriptions.end(); ++it) {
      if (it->second->id == id) {
        state_->subscriptions.erase(it);
        break;
      }
    }
    return rc == KILN_OK ? Status() : failed(rc, "unsubscribe");
  }

  // --- change sources and schedulers --------------------------------------
  // done gets {"changeid": N}.
  Status change_add(const nlohmann::json& change, JsonCallback done = {}) const {
    KILN_SDK_REQUIRE_HOST(h, change_add);
    if (auto s = check_open(); !s) return s;
    const std::string text = change.dump();
    return with_callback("change_add", std::move(done), [&](kiln_json_cb fn, void* user) {
      return h->change_add(raw(), str(text), fn, user);
    });
  }
  // done gets {"bsid": N, "brids": {builder: request id}}.
  Status buildset_add(const nlohmann::json& request, JsonCallback done = {}) const {
    KILN_SDK_REQUIRE_HOST(h, buildset_add);
    if (auto s = check_open(); !s) return s;
    const std::string text = request.dump();
    return with_callback("buildset_add", std::move(done), [&](kiln_json_cb fn, void* user) {
      return h->buildset_add(raw(), str(text), fn, user);
    });
  }

  // Cancels timers and subscriptions and drops callbacks still to come.
  // The component base classes call it from their destructor.
  void release_callbacks() const { state_->close(); }
  bool released() const { return state_->closed; }

  // For the SDK's component helpers (steps' commands).
  const std::shared_ptr<detail::ContextState>& state() const { return state_; }

  // A failed host call as the caller sees it: the function named.
  static Status failed(kiln_status rc, const char* function) {
    return Status(rc, std::string(function) + " failed: " + status_name(rc));
  }

  // For host functions taking (out text callback, user, kiln_error*): the
  // text the host delivered, or the failure.
  template <class Call>
  static Result<std::string> call_with_text(const char* function, Call&& call);

 private:
  Status check_open() const {
    if (state_->closed) return Status(KILN_ERR_CANCELLED, label() + ": instance already destroyed");
    return {};
  }
  template <class Call>
  Status with_callback(const char* function, JsonCallback cb, Call&& call) const {
    Status s = detail::with_json_callback(state_, std::move(cb), std::forward<Call>(call));
    return s.code() == KILN_OK ? Status() : failed(s.code(), function);
  }

  std::shared_ptr<detail::ContextState> state_;
};

template <class Call>
Result<std::string> Context::call_with_text(const char* function, Call&& call) {
  std::string out;
  // kiln_error is host-owned and opaque: a plugin cannot make one, so it
  // passes NULL and reports the status alone.
  kiln_status rc = call(&detail::text_to_string, &out, static_cast<kiln_error*>(nullptr));
  if (rc != KILN_OK) return failed(rc, function);
  return out;
}

}  // namespace kiln::sdk
