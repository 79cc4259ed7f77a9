#include "plugin/host.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <future>

// ---------------------------------------------------------------------------
// kiln_ctx defaults: what a handle offers when its kind does not.

void kiln_ctx::log(kiln_log_level level, std::string_view message) {
  spdlog::log(static_cast<spdlog::level::level_enum>(std::clamp<int>(level, 0, 4)),
              "[plugin] {}", message);
}

uint64_t kiln_ctx::now_ms() { return kiln::util::SystemClock().now_ms(); }

kiln_status kiln_ctx::post(std::function<void()>) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::timer_start(uint64_t, uint64_t, std::function<void()>, uint64_t&) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::timer_cancel(uint64_t) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::state_get(std::string_view, JsonCallback) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::state_put(std::string_view, std::string_view, JsonCallback) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::render(std::string_view, std::string&, std::string&) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::data_get(std::string_view, std::string_view, JsonCallback) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::data_control(std::string_view, std::string_view, std::string_view,
                                   JsonCallback) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::subscribe(std::string_view, EventCallback, uint64_t&) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::unsubscribe(uint64_t) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::change_add(std::string_view, JsonCallback) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::buildset_add(std::string_view, JsonCallback) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::property_get(std::string_view, std::string&) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::property_set(std::string_view, std::string_view, std::string_view) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::command_start(std::string_view, std::string_view, CommandHandlers,
                                    uint64_t&) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::command_interrupt(uint64_t, std::string_view) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::log_add(std::string_view, char, uint64_t&) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::log_append(uint64_t, kiln_stream, Bytes) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::log_finish(uint64_t) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::set_summary(std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::add_url(std::string_view, std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::set_statistic(std::string_view, std::string_view) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::set_progress(std::string_view, double) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::add_steps(std::string_view, std::string&) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::step_finish(kiln_result, std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::worker_connected(std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::worker_disconnected(std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::command_output(uint64_t, kiln_stream, Bytes) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::command_update(uint64_t, std::string_view) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::command_complete(uint64_t, std::string_view) {
  return KILN_ERR_UNSUPPORTED;
}
kiln_status kiln_ctx::transfer_write(uint64_t, Bytes) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::transfer_read(uint64_t, size_t, std::vector<uint8_t>&) {
  return KILN_ERR_UNSUPPORTED;
}

kiln_status kiln_ctx::context_info(std::string&) { return KILN_ERR_UNSUPPORTED; }
kiln_status kiln_ctx::policy_call(std::string_view, std::string_view, std::string&,
                                  std::string&) {
  return KILN_ERR_UNSUPPORTED;
}

kiln_status kiln_ctx::output_throttle(std::function<void()>) { return KILN_OK; }

namespace kiln::plugin {

namespace {

thread_local std::string t_plugin_label;

spdlog::level::level_enum spdlog_level(kiln_log_level level) {
  switch (level) {
    case KILN_LOG_TRACE: return spdlog::level::trace;
    case KILN_LOG_DEBUG: return spdlog::level::debug;
    case KILN_LOG_INFO: return spdlog::level::info;
    case KILN_LOG_WARN: return spdlog::level::warn;
    case KILN_LOG_ERROR: return spdlog::level::err;
  }
  return spdlog::level::info;
}

bool valid(kiln_str s) { return s.ptr != nullptr || s.len == 0; }
bool valid(kiln_bytes b) { return b.ptr != nullptr || b.len == 0; }
std::string_view view(kiln_str s) { return s.len ? std::string_view(s.ptr, s.len) : std::string_view(); }
kiln_ctx::Bytes view(kiln_bytes b) { return b.len ? kiln_ctx::Bytes(b.ptr, b.len) : kiln_ctx::Bytes(); }
kiln_str to_c(std::string_view s) { return kiln_str{s.data(), s.size()}; }

// Runs f, turning any exception into KILN_ERR_INTERNAL: nothing crosses.
template <typename F>
kiln_status guarded(const char* service, F& f) noexcept {
  try {
    return f();
  } catch (const std::exception& e) {
    spdlog::error("host service {} failed: {}", service, e.what());
  } catch (...) {
    spdlog::error("host service {} failed with an unknown exception", service);
  }
  return KILN_ERR_INTERNAL;
}

// Runs f on ctx's loop and returns its status. Off the loop, the caller
// waits, which also keeps its borrowed arguments valid while f reads them.
template <typename F>
kiln_status on_loop(kiln_ctx* ctx, const char* service, F&& f) noexcept {
  try {
    kiln::util::EventLoop* loop = ctx->loop();
    if (loop == nullptr || loop->on_loop_thread()) return guarded(service, f);
    std::promise<kiln_status> done;
    auto result = done.get_future();
    loop->post([&] { done.set_value(guarded(service, f)); });
    return result.get();
  } catch (const std::exception& e) {
    spdlog::error("host service {} failed: {}", service, e.what());
  } catch (...) {
  }
  return KILN_ERR_INTERNAL;
}

void fill_error(kiln_error* err, kiln_status status, std::string message,
                const char* service) {
  if (err == nullptr || status == KILN_OK) return;
  if (message.empty()) {
    message = status == KILN_ERR_INTERNAL
                  ? std::string("internal error in host service ") + service
                  : std::string("host service ") + service + " failed";
  }
  err->status = status;
  err->message = std::move(message);
}

kiln_ctx::JsonCallback json_callback(kiln_json_cb cb, void* user) {
  if (cb == nullptr) return {};
  return [cb, user](kiln_status status, std::string_view json) { cb(user, status, to_c(json)); };
}

// --- the table's functions --------------------------------------------------

void h_log(kiln_ctx* ctx, kiln_log_level level, kiln_str message) {
  if (!valid(message)) return;
  try {
    if (ctx != nullptr) {
      ctx->log(level, view(message));
    } else {
      spdlog::log(spdlog_level(level), "[{}] {}",
                  t_plugin_label.empty() ? std::string_view("plugin") : t_plugin_label,
                  view(message));
    }
  } catch (...) {
    // Logging must never take the plugin down.
  }
}

void h_error_set(kiln_error* err, kiln_status status, kiln_str message) {
  if (err == nullptr || !valid(message)) return;
  try {
    err->status = status;
    err->message.assign(view(message));
  } catch (...) {
  }
}

void* h_get_proc(const char*) {
  // No optional services yet.
  return nullptr;
}

uint64_t h_now_ms(kiln_ctx* ctx) {
  try {
    return ctx ? ctx->now_ms() : kiln::util::SystemClock().now_ms();
  } catch (...) {
    return 0;
  }
}

kiln_status h_post(kiln_ctx* ctx, kiln_fn fn, void* user) {
  if (ctx == nullptr || fn == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  auto call = [&] { return ctx->post([fn, user] { fn(user); }); };
  return guarded("post", call);
}

kiln_status h_timer_start(kiln_ctx* ctx, uint64_t delay_ms, uint64_t interval_ms, kiln_fn fn,
                          void* user, uint64_t* timer_id) {
  if (ctx == nullptr || fn == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "timer_start", [&] {
    uint64_t id = 0;
    kiln_status status = ctx->timer_start(delay_ms, interval_ms, [fn, user] { fn(user); }, id);
    if (timer_id != nullptr) *timer_id = id;
    return status;
  });
}

kiln_status h_timer_cancel(kiln_ctx* ctx, uint64_t timer_id) {
  if (ctx == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "timer_cancel", [&] { return ctx->timer_cancel(timer_id); });
}

kiln_status h_state_get(kiln_ctx* ctx, kiln_str key, kiln_json_cb cb, void* user) {
  if (ctx == nullptr || !valid(key) || cb == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "state_get",
                 [&] { return ctx->state_get(view(key), json_callback(cb, user)); });
}

kiln_status h_state_put(kiln_ctx* ctx, kiln_str key, kiln_str value_json, kiln_json_cb cb,
                        void* user) {
  if (ctx == nullptr || !valid(key) || !valid(value_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "state_put", [&] {
    return ctx->state_put(view(key), view(value_json), json_callback(cb, user));
  });
}

kiln_status h_render(kiln_ctx* ctx, kiln_str text, kiln_text_cb out, void* out_user,
                     kiln_error* err) {
  if (ctx == nullptr || !valid(text) || out == nullptr) {
    fill_error(err, KILN_ERR_INVALID_ARGUMENT, "render: NULL argument", "render");
    return KILN_ERR_INVALID_ARGUMENT;
  }
  std::string result, error;
  kiln_status status =
      on_loop(ctx, "render", [&] { return ctx->render(view(text), result, error); });
  if (status == KILN_OK) {
    out(out_user, to_c(result));
  } else {
    fill_error(err, status, std::move(error), "render");
  }
  return status;
}

kiln_status h_data_get(kiln_ctx* ctx, kiln_str path, kiln_str query_json, kiln_json_cb cb,
                       void* user) {
  if (ctx == nullptr || !valid(path) || !valid(query_json) || cb == nullptr) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  return on_loop(ctx, "data_get", [&] {
    return ctx->data_get(view(path), view(query_json), json_callback(cb, user));
  });
}

kiln_status h_data_control(kiln_ctx* ctx, kiln_str path, kiln_str action, kiln_str args_json,
                           kiln_json_cb cb, void* user) {
  if (ctx == nullptr || !valid(path) || !valid(action) || !valid(args_json) || cb == nullptr) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  return on_loop(ctx, "data_control", [&] {
    return ctx->data_control(view(path), view(action), view(args_json), json_callback(cb, user));
  });
}

kiln_status h_subscribe(kiln_ctx* ctx, kiln_str pattern,
                        void (*on_event)(void*, kiln_str, kiln_str), void* user,
                        uint64_t* sub_id) {
  if (ctx == nullptr || !valid(pattern) || on_event == nullptr || sub_id == nullptr) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  return on_loop(ctx, "subscribe", [&] {
    return ctx->subscribe(
        view(pattern),
        [on_event, user](std::string_view key, std::string_view json) {
          on_event(user, to_c(key), to_c(json));
        },
        *sub_id);
  });
}

kiln_status h_unsubscribe(kiln_ctx* ctx, uint64_t sub_id) {
  if (ctx == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "unsubscribe", [&] { return ctx->unsubscribe(sub_id); });
}

kiln_status h_change_add(kiln_ctx* ctx, kiln_str change_json, kiln_json_cb cb, void* user) {
  if (ctx == nullptr || !valid(change_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "change_add",
                 [&] { return ctx->change_add(view(change_json), json_callback(cb, user)); });
}

kiln_status h_buildset_add(kiln_ctx* ctx, kiln_str request_json, kiln_json_cb cb, void* user) {
  if (ctx == nullptr || !valid(request_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "buildset_add",
                 [&] { return ctx->buildset_add(view(request_json), json_callback(cb, user)); });
}

kiln_status h_property_get(kiln_ctx* ctx, kiln_str name, kiln_text_cb out, void* out_user) {
  if (ctx == nullptr || !valid(name) || out == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  std::string result;
  kiln_status status =
      on_loop(ctx, "property_get", [&] { return ctx->property_get(view(name), result); });
  if (status == KILN_OK) out(out_user, to_c(result));
  return status;
}

kiln_status h_property_set(kiln_ctx* ctx, kiln_str name, kiln_str value_json, kiln_str source) {
  if (ctx == nullptr || !valid(name) || !valid(value_json) || !valid(source)) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  return on_loop(ctx, "property_set", [&] {
    return ctx->property_set(view(name), view(value_json), view(source));
  });
}

kiln_status h_command_start(kiln_ctx* ctx, kiln_str command_name, kiln_str args_json,
                            const kiln_command_handlers* handlers, void* user,
                            uint64_t* command_id) {
  if (ctx == nullptr || !valid(command_name) || !valid(args_json) || command_id == nullptr ||
      !KILN_HAS(kiln_command_handlers, handlers, on_complete)) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  // Copied now: the plugin's struct is borrowed for this call only, and may
  // be smaller (older) or larger (newer) than ours.
  kiln_command_handlers h{};
  std::memcpy(&h, handlers, std::min<size_t>(handlers->struct_size, sizeof h));
  kiln_ctx::CommandHandlers wrapped;
  if (KILN_HAS(kiln_command_handlers, handlers, on_output)) {
    wrapped.on_output = [f = h.on_output, user](kiln_stream stream, kiln_ctx::Bytes data) {
      f(user, stream, kiln_bytes{data.data(), data.size()});
    };
  }
  if (KILN_HAS(kiln_command_handlers, handlers, on_update)) {
    wrapped.on_update = [f = h.on_update, user](std::string_view json) { f(user, to_c(json)); };
  }
  wrapped.on_complete = [f = h.on_complete, user](std::string_view json) {
    f(user, to_c(json));
  };
  return on_loop(ctx, "command_start", [&] {
    return ctx->command_start(view(command_name), view(args_json), std::move(wrapped),
                              *command_id);
  });
}

kiln_status h_command_interrupt(kiln_ctx* ctx, uint64_t command_id, kiln_str reason) {
  if (ctx == nullptr || !valid(reason)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "command_interrupt",
                 [&] { return ctx->command_interrupt(command_id, view(reason)); });
}

kiln_status h_log_add(kiln_ctx* ctx, kiln_str name, char type, uint64_t* log_id) {
  if (ctx == nullptr || !valid(name) || log_id == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  if (type != KILN_LOG_TYPE_STDIO && type != KILN_LOG_TYPE_TEXT && type != KILN_LOG_TYPE_HTML) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  return on_loop(ctx, "log_add", [&] { return ctx->log_add(view(name), type, *log_id); });
}

kiln_status h_log_append(kiln_ctx* ctx, uint64_t log_id, kiln_stream stream, kiln_bytes data) {
  if (ctx == nullptr || !valid(data)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "log_append",
                 [&] { return ctx->log_append(log_id, stream, view(data)); });
}

kiln_status h_log_finish(kiln_ctx* ctx, uint64_t log_id) {
  if (ctx == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "log_finish", [&] { return ctx->log_finish(log_id); });
}

kiln_status h_set_summary(kiln_ctx* ctx, kiln_str summary) {
  if (ctx == nullptr || !valid(summary)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "set_summary", [&] { return ctx->set_summary(view(summary)); });
}

kiln_status h_add_url(kiln_ctx* ctx, kiln_str name, kiln_str url) {
  if (ctx == nullptr || !valid(name) || !valid(url)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "add_url", [&] { return ctx->add_url(view(name), view(url)); });
}

kiln_status h_set_statistic(kiln_ctx* ctx, kiln_str name, kiln_str value_json) {
  if (ctx == nullptr || !valid(name) || !valid(value_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "set_statistic",
                 [&] { return ctx->set_statistic(view(name), view(value_json)); });
}

kiln_status h_set_progress(kiln_ctx* ctx, kiln_str metric, double value) {
  if (ctx == nullptr || !valid(metric)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "set_progress", [&] { return ctx->set_progress(view(metric), value); });
}

kiln_status h_add_steps(kiln_ctx* ctx, kiln_str steps_json, kiln_error* err) {
  if (ctx == nullptr || !valid(steps_json)) {
    fill_error(err, KILN_ERR_INVALID_ARGUMENT, "add_steps: NULL argument", "add_steps");
    return KILN_ERR_INVALID_ARGUMENT;
  }
  std::string error;
  kiln_status status =
      on_loop(ctx, "add_steps", [&] { return ctx->add_steps(view(steps_json), error); });
  fill_error(err, status, std::move(error), "add_steps");
  return status;
}

kiln_status h_step_finish(kiln_ctx* ctx, kiln_result result, kiln_str summary) {
  if (ctx == nullptr || !valid(summary)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "step_finish", [&] { return ctx->step_finish(result, view(summary)); });
}

kiln_status h_worker_connected(kiln_ctx* ctx, kiln_str info_json) {
  if (ctx == nullptr || !valid(info_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "worker_connected",
                 [&] { return ctx->worker_connected(view(info_json)); });
}

kiln_status h_worker_disconnected(kiln_ctx* ctx, kiln_str reason) {
  if (ctx == nullptr || !valid(reason)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "worker_disconnected",
                 [&] { return ctx->worker_disconnected(view(reason)); });
}

kiln_status h_command_output(kiln_ctx* ctx, uint64_t command_id, kiln_stream stream,
                             kiln_bytes data) {
  if (ctx == nullptr || !valid(data)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "command_output",
                 [&] { return ctx->command_output(command_id, stream, view(data)); });
}

kiln_status h_command_update(kiln_ctx* ctx, uint64_t command_id, kiln_str update_json) {
  if (ctx == nullptr || !valid(update_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "command_update",
                 [&] { return ctx->command_update(command_id, view(update_json)); });
}

kiln_status h_command_complete(kiln_ctx* ctx, uint64_t command_id, kiln_str result_json) {
  if (ctx == nullptr || !valid(result_json)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "command_complete",
                 [&] { return ctx->command_complete(command_id, view(result_json)); });
}

kiln_status h_transfer_write(kiln_ctx* ctx, uint64_t command_id, kiln_bytes data) {
  if (ctx == nullptr || !valid(data)) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "transfer_write",
                 [&] { return ctx->transfer_write(command_id, view(data)); });
}

kiln_status h_transfer_read(kiln_ctx* ctx, uint64_t command_id, size_t max_len,
                            void (*out)(void*, kiln_bytes), void* out_user) {
  if (ctx == nullptr || out == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  std::vector<uint8_t> data;
  kiln_status status = on_loop(
      ctx, "transfer_read", [&] { return ctx->transfer_read(command_id, max_len, data); });
  if (status == KILN_OK) {
    out(out_user, kiln_bytes{data.data(), std::min(data.size(), max_len)});
  }
  return status;
}

kiln_status h_context_info(kiln_ctx* ctx, kiln_text_cb out, void* out_user) {
  if (ctx == nullptr || out == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  std::string text;
  kiln_status status = on_loop(ctx, "context_info", [&] { return ctx->context_info(text); });
  if (status == KILN_OK) out(out_user, kiln_str{text.data(), text.size()});
  return status;
}

kiln_status h_policy_call(kiln_ctx* ctx, kiln_str policy_name, kiln_str args_json,
                          kiln_text_cb out, void* out_user, kiln_error* err) {
  if (ctx == nullptr || out == nullptr || !valid(policy_name) || !valid(args_json)) {
    return KILN_ERR_INVALID_ARGUMENT;
  }
  std::string text;
  std::string error;
  kiln_status status = on_loop(ctx, "policy_call", [&] {
    return ctx->policy_call(view(policy_name), view(args_json), text, error);
  });
  if (status == KILN_OK) {
    out(out_user, kiln_str{text.data(), text.size()});
  } else {
    fill_error(err, status, std::move(error), "policy_call");
  }
  return status;
}

kiln_status h_output_throttle(kiln_ctx* ctx, kiln_fn resume, void* user) {
  if (ctx == nullptr || resume == nullptr) return KILN_ERR_INVALID_ARGUMENT;
  return on_loop(ctx, "output_throttle",
                 [&] { return ctx->output_throttle([resume, user] { resume(user); }); });
}

const kiln_host_api kHostApi = {
    .struct_size = sizeof(kiln_host_api),
    .abi_version = KILN_ABI_VERSION,
    .log = h_log,
    .error_set = h_error_set,
    .get_proc = h_get_proc,
    .now_ms = h_now_ms,
    .post = h_post,
    .timer_start = h_timer_start,
    .timer_cancel = h_timer_cancel,
    .state_get = h_state_get,
    .state_put = h_state_put,
    .render = h_render,
    .data_get = h_data_get,
    .data_control = h_data_control,
    .subscribe = h_subscribe,
    .unsubscribe = h_unsubscribe,
    .change_add = h_change_add,
    .buildset_add = h_buildset_add,
    .property_get = h_property_get,
    .property_set = h_property_set,
    .command_start = h_command_start,
    .command_interrupt = h_command_interrupt,
    .log_add = h_log_add,
    .log_append = h_log_append,
    .log_finish = h_log_finish,
    .set_summary = h_set_summary,
    .add_url = h_add_url,
    .set_statistic = h_set_statistic,
    .set_progress = h_set_progress,
    .add_steps = h_add_steps,
    .step_finish = h_step_finish,
    .worker_connected = h_worker_connected,
    .worker_disconnected = h_worker_disconnected,
    .command_output = h_command_output,
    .command_update = h_command_update,
    .command_complete = h_command_complete,
    .transfer_write = h_transfer_write,
    .transfer_read = h_transfer_read,
    .context_info = h_context_info,
    .policy_call = h_policy_call,
    .output_throttle = h_output_throttle,
};

}  // namespace

const kiln_host_api* host_api() { return &kHostApi; }

ScopedPluginLabel::ScopedPluginLabel(std::string label)
    : previous_(std::exchange(t_plugin_label, std::move(label))) {}

ScopedPluginLabel::~ScopedPluginLabel() { t_plugin_label = std::move(previous_); }

// ---------------------------------------------------------------------------
// InstanceContext

InstanceContext::InstanceContext(util::EventLoop& loop, StateBackend* state,
                                 kiln_component_kind kind, std::string name)
    : loop_(loop), state_(state), kind_(kind), name_(std::move(name)) {}

InstanceContext::~InstanceContext() {
  alive_.reset();  // anything still queued for this instance now does nothing
  if (timers_.empty()) return;
  if (loop_.on_loop_thread()) {
    for (uint64_t id : timers_) loop_.cancel_timer(id);
  } else {
    loop_.post([loop = &loop_, ids = std::move(timers_)] {
      for (uint64_t id : ids) loop->cancel_timer(id);
    });
  }
}

void InstanceContext::log(kiln_log_level level, std::string_view message) {
  spdlog::log(spdlog_level(level), "[{} {}] {}", kind_name(kind_), name_, message);
}

uint64_t InstanceContext::now_ms() { return loop_.now_ms(); }

std::function<void()> InstanceContext::on_loop_while_alive(std::function<void()> fn) const {
  return [loop = &loop_, alive = std::weak_ptr<const bool>(alive_), fn = std::move(fn)] {
    loop->post([alive, fn] {
      if (!alive.expired()) fn();
    });
  };
}

kiln_status InstanceContext::post(std::function<void()> fn) {
  // Runs even when the instance is gone by then: the plugin may own memory
  // it frees only in fn (plugin_api.h: post runs fn exactly once).
  loop_.post(std::move(fn));
  return KILN_OK;
}

kiln_status InstanceContext::timer_start(uint64_t delay_ms, uint64_t interval_ms,
                                         std::function<void()> fn, uint64_t& timer_id) {
  // The loop erases a one-shot timer before running it; forget ours too.
  auto id = std::make_shared<uint64_t>(0);
  *id = loop_.start_timer(
      delay_ms, interval_ms,
      [this, alive = std::weak_ptr<const bool>(alive_), id, interval_ms, fn = std::move(fn)] {
        if (alive.expired()) return;
        if (interval_ms == 0) timers_.erase(*id);
        fn();
      });
  timers_.insert(*id);
  timer_id = *id;
  return KILN_OK;
}

kiln_status InstanceContext::timer_cancel(uint64_t timer_id) {
  if (timers_.erase(timer_id) == 0) return KILN_ERR_NOT_FOUND;
  loop_.cancel_timer(timer_id);
  return KILN_OK;
}

namespace {

// The backend may answer on any thread, even inside get()/put(): always
// come back through the loop, so the plugin's callback is never re-entered
// from within its own call and never runs after destroy.
StateBackend::Done deliver_on_loop(util::EventLoop& loop, std::weak_ptr<const bool> alive,
                                   kiln_ctx::JsonCallback cb) {
  return [loop = &loop, alive = std::move(alive), cb = std::move(cb)](kiln_status status,
                                                                      std::string text) {
    if (!cb) return;
    loop->post([alive, cb, status, text = std::move(text)] {
      if (!alive.expired()) cb(status, text);
    });
  };
}

}  // namespace

kiln_status InstanceContext::state_get(std::string_view key, JsonCallback cb) {
  if (state_ == nullptr) return KILN_ERR_UNSUPPORTED;
  if (key.empty()) return KILN_ERR_INVALID_ARGUMENT;
  state_->get(StateKey{kind_, name_, std::string(key)},
              deliver_on_loop(loop_, alive_, std::move(cb)));
  return KILN_OK;
}

kiln_status InstanceContext::state_put(std::string_view key, std::string_view value_json,
                                       JsonCallback cb) {
  if (state_ == nullptr) return KILN_ERR_UNSUPPORTED;
  if (key.empty() || !nlohmann::json::accept(value_json)) return KILN_ERR_INVALID_ARGUMENT;
  state_->put(StateKey{kind_, name_, std::string(key)}, std::string(value_json),
              deliver_on_loop(loop_, alive_, std::move(cb)));
  return KILN_OK;
}

kiln_status InstanceContext::context_info(std::string& out_json) {
  nlohmann::json facts = {{"kind", std::string(kind_name(kind_))}, {"name", name_}};
  context_facts(facts);
  out_json = facts.dump();
  return KILN_OK;
}

// ---------------------------------------------------------------------------
// Instance

Instance::Instance(Key, const ComponentType& type, std::unique_ptr<kiln_ctx> context)
    : type_(&type), context_(std::move(context)) {}

std::unique_ptr<Instance> Instance::create(const ComponentType& type,
                                           std::unique_ptr<kiln_ctx> context,
                                           const nlohmann::json& config, std::string& error) {
  auto instance = std::make_unique<Instance>(Key{}, type, std::move(context));
  const std::string text = config.dump();
  kiln_error err;
  void* handle = nullptr;
  kiln_status status;
  try {
    status = type.desc.create(instance->context_.get(), to_c(text), &handle, &err);
  } catch (...) {
    status = KILN_ERR_INTERNAL;
    err.message = "create threw an exception";
  }
  if (status != KILN_OK) {
    error = "create of " + std::string(kind_name(type.kind)) + " '" + type.type_name +
            "' failed: " +
            (err.message.empty() ? "status " + std::to_string(status) : err.message);
    return nullptr;  // the context goes with it, cancelling timers create started
  }
  instance->instance_ = handle;
  instance->created_ = true;
  return instance;
}

bool Instance::reconfigure(const nlohmann::json& config, std::string& error) {
  if (!created_ || !KILN_HAS(kiln_component_desc, &type_->desc, reconfigure) ||
      type_->desc.reconfigure == nullptr) {
    return false;
  }
  const std::string text = config.dump();
  kiln_error err;
  kiln_status status;
  try {
    status = type_->desc.reconfigure(instance_, to_c(text), &err);
  } catch (...) {
    status = KILN_ERR_INTERNAL;
    err.message = "reconfigure threw an exception";
  }
  if (status == KILN_OK) return true;
  error = "reconfigure of " + std::string(kind_name(type_->kind)) + " '" + type_->type_name +
          "' failed: " + (err.message.empty() ? "status " + std::to_string(status) : err.message);
  return false;
}

Instance::~Instance() {
  if (created_) {
    try {
      type_->desc.destroy(instance_);
    } catch (...) {
      spdlog::error("destroy of {} '{}' threw an exception", kind_name(type_->kind),
                    type_->type_name);
    }
  }
  context_.reset();
}

}  // namespace kiln::plugin
