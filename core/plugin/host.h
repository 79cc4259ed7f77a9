#pragma once
// The host side of the C ABI: the service table every plugin receives, the
// opaque types behind its handles (kiln_ctx, kiln_error), the context the
// core gives each component instance, and the RAII owner of an instance.
//
// The table's C functions are thin: they turn C arguments into C++ ones,
// move the call onto the instance's event loop when it comes from another
// thread, catch every exception, and dispatch to a virtual method of the
// kiln_ctx. The engine subclasses InstanceContext per component kind and
// overrides the services that kind offers; the rest answer
// KILN_ERR_UNSUPPORTED.

#include "plugin/registry.h"
#include "util/event_loop.h"

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct kiln_error {
  kiln_status status = KILN_OK;
  std::string message;
};

// Base of every host handle. Each method is one host service with C++
// arguments; they run on the loop thread when loop() is set. Callbacks
// handed in are the plugin's, already bound to its `user` pointer; an
// implementation calls them on the loop thread, at most once unless the
// service says otherwise, and never after the handle is destroyed.
struct kiln_ctx {
  using Bytes = std::span<const uint8_t>;
  using JsonCallback = std::function<void(kiln_status, std::string_view json)>;
  using EventCallback =
      std::function<void(std::string_view routing_key, std::string_view json)>;
  struct CommandHandlers {
    std::function<void(kiln_stream, Bytes)> on_output;  // may be empty
    std::function<void(std::string_view update_json)> on_update;  // may be empty
    std::function<void(std::string_view result_json)> on_complete;
  };

  kiln_ctx() = default;
  kiln_ctx(const kiln_ctx&) = delete;
  kiln_ctx& operator=(const kiln_ctx&) = delete;
  virtual ~kiln_ctx() = default;

  // The loop this handle's services run on. nullptr: calls run directly on
  // the calling thread.
  virtual kiln::util::EventLoop* loop() { return nullptr; }

  // Thread-safe; not moved onto the loop.
  virtual void log(kiln_log_level level, std::string_view message);
  // Thread-safe; not moved onto the loop. Default: the system clock.
  virtual uint64_t now_ms();
  // Thread-safe; not moved onto the loop.
  virtual kiln_status post(std::function<void()> fn);

  virtual kiln_status timer_start(uint64_t delay_ms, uint64_t interval_ms,
                                  std::function<void()> fn, uint64_t& timer_id);
  virtual kiln_status timer_cancel(uint64_t timer_id);
  virtual kiln_status state_get(std::string_view key, JsonCallback cb);
  virtual kiln_status state_put(std::string_view key, std::string_view value_json,
                                JsonCallback cb /* may be empty */);
  virtual kiln_status render(std::string_view text, std::string& out,
                             std::string& error);
  virtual kiln_status data_get(std::string_view path, std::string_view query_json,
                               JsonCallback cb);
  virtual kiln_status data_control(std::string_view path, std::string_view action,
                                   std::string_view args_json, JsonCallback cb);
  virtual kiln_status subscribe(std::string_view pattern, EventCallback on_event,
                                uint64_t& sub_id);
  virtual kiln_status unsubscribe(uint64_t sub_id);
  virtual kiln_status change_add(std::string_view change_json, JsonCallback cb);
  virtual kiln_status buildset_add(std::string_view request_json, JsonCallback cb);
  virtual kiln_status property_get(std::string_view name, std::string& out);
  virtual kiln_status property_set(std::string_view name, std::string_view value_json,
                                   std::string_view source);
  virtual kiln_status command_start(std::string_view command_name,
                                    std::string_view args_json,
                                    CommandHandlers handlers, uint64_t& command_id);
  virtual kiln_status command_interrupt(uint64_t command_id, std::string_view reason);
  virtual kiln_status log_add(std::string_view name, char type, uint64_t& log_id);
  virtual kiln_status log_append(uint64_t log_id, kiln_stream stream, Bytes data);
  virtual kiln_status log_finish(uint64_t log_id);
  virtual kiln_status set_summary(std::string_view summary);
  virtual kiln_status add_url(std::string_view name, std::string_view url);
  virtual kiln_status set_statistic(std::string_view name, std::string_view value_json);
  virtual kiln_status set_progress(std::string_view metric, double value);
  virtual kiln_status add_steps(std::string_view steps_json, std::string& error);
  virtual kiln_status step_finish(kiln_result result, std::string_view summary);
  virtual kiln_status worker_connected(std::string_view info_json);
  virtual kiln_status worker_disconnected(std::string_view reason);
  virtual kiln_status command_output(uint64_t command_id, kiln_stream stream, Bytes data);
  virtual kiln_status command_update(uint64_t command_id, std::string_view update_json);
  virtual kiln_status command_complete(uint64_t command_id, std::string_view result_json);
  virtual kiln_status transfer_write(uint64_t command_id, Bytes data);
  // Fills `out` with at most max_len bytes; empty means end of file.
  virtual kiln_status transfer_read(uint64_t command_id, size_t max_len,
                                    std::vector<uint8_t>& out);
  // A JSON object describing this instance (kind, name, master_dir, ...).
  virtual kiln_status context_info(std::string& out_json);
  virtual kiln_status policy_call(std::string_view policy_name, std::string_view args_json,
                                  std::string& out_json, std::string& error);
  // KILN_ERR_RETRY while the master is behind storing command output, and
  // then resume() runs on the loop once it has caught up; KILN_OK otherwise.
  virtual kiln_status output_throttle(std::function<void()> resume);
};

namespace kiln::plugin {

// The table handed to every plugin; every field is set.
const kiln_host_api* host_api();

// While alive on this thread, host->log(NULL, ...) logs under `label`
// (the loader sets it around calls into a plugin that has no instance yet).
class ScopedPluginLabel {
 public:
  explicit ScopedPluginLabel(std::string label);
  ~ScopedPluginLabel();
  ScopedPluginLabel(const ScopedPluginLabel&) = delete;
  ScopedPluginLabel& operator=(const ScopedPluginLabel&) = delete;

 private:
  std::string previous_;
};

// Where instances keep their state: a JSON value per (kind, name, key).
// Implementations may answer on any thread; InstanceContext brings the
// answer back to the loop.
struct StateKey {
  kiln_component_kind kind{};
  std::string name;  // the instance's configured name
  std::string key;
};

class StateBackend {
 public:
  // status KILN_OK: text is the JSON value ("null" for an unknown key);
  // otherwise text is the error message.
  using Done = std::function<void(kiln_status status, std::string text)>;
  virtual ~StateBackend() = default;
  virtual void get(const StateKey& key, Done done) = 0;
  virtual void put(const StateKey& key, std::string value_json, Done done) = 0;
};

// What every instance gets: logging under "[kind name]", the loop's clock,
// post, timers (all cancelled when the context goes), and state. Create
// and destroy it on the loop thread. The engine derives per-kind contexts
// from it.
class InstanceContext : public kiln_ctx {
 public:
  // `state` may be null (state services then answer UNSUPPORTED); it must
  // outlive the context.
  InstanceContext(kiln::util::EventLoop& loop, StateBackend* state,
                  kiln_component_kind kind, std::string name);
  ~InstanceContext() override;

  kiln_component_kind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  size_t active_timers() const { return timers_.size(); }

  kiln::util::EventLoop* loop() override { return &loop_; }
  void log(kiln_log_level level, std::string_view message) override;
  uint64_t now_ms() override;
  kiln_status post(std::function<void()> fn) override;
  kiln_status timer_start(uint64_t delay_ms, uint64_t interval_ms,
                          std::function<void()> fn, uint64_t& timer_id) override;
  kiln_status timer_cancel(uint64_t timer_id) override;
  kiln_status state_get(std::string_view key, JsonCallback cb) override;
  kiln_status state_put(std::string_view key, std::string_view value_json,
                        JsonCallback cb) override;
  // {"kind", "name"} plus whatever context_facts() adds.
  kiln_status context_info(std::string& out_json) override;

 protected:
  // Subclasses add their facts (master_dir, builder, ...) to the object.
  virtual void context_facts(nlohmann::json& facts) const { (void)facts; }

  // fn, run on the loop, unless this context is gone by then. For handing
  // plugin callbacks to code that may outlive the instance.
  std::function<void()> on_loop_while_alive(std::function<void()> fn) const;

 private:
  kiln::util::EventLoop& loop_;
  StateBackend* state_;
  kiln_component_kind kind_;
  std::string name_;
  std::shared_ptr<const bool> alive_ = std::make_shared<const bool>(true);
  std::set<uint64_t> timers_;
};

// One created component: creates it through desc.create with its config,
// destroys it through desc.destroy, then drops its context. Destroy it on
// the loop thread, before the Registry.
class Instance {
 public:
  // nullptr on failure with `error` set, e.g.
  // "create of step 'shell' failed: missing command".
  static std::unique_ptr<Instance> create(const ComponentType& type,
                                          std::unique_ptr<kiln_ctx> context,
                                          const nlohmann::json& config,
                                          std::string& error);
  struct Key {
   private:
    friend class Instance;
    Key() = default;
  };
  Instance(Key, const ComponentType& type, std::unique_ptr<kiln_ctx> context);
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  const ComponentType& type() const { return *type_; }
  kiln_ctx& context() { return *context_; }
  // Applies a changed config in place through the component's optional
  // `reconfigure`. False when the plugin has none (error stays empty) or
  // refused (error says why): the caller then re-creates the instance.
  bool reconfigure(const nlohmann::json& config, std::string& error);
  void* handle() const { return instance_; }
  // The kind's vtable (host copy), or nullptr when T does not match the kind.
  template <typename T>
  const T* vtable() const {
    return type_->vtable<T>();
  }

 private:
  const ComponentType* type_;
  std::unique_ptr<kiln_ctx> context_;  // outlives instance_
  void* instance_ = nullptr;
  bool created_ = false;  // a plugin may use NULL as its instance
};

}  // namespace kiln::plugin
