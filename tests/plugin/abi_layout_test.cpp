// Pins the binary layout of every public struct of plugin_api.h on x86_64
// (LP64): an accidental reorder, removal or type change of a released field
// fails the build here instead of breaking every plugin already compiled.
// Appending a field means adding a pin (and a line in docs/abi-changes.md);
// changing an existing pin means a new ABI major.

#include <kiln/plugin_api.h>

#include <catch2/catch.hpp>

#include <cstddef>

#if defined(__x86_64__) && defined(__LP64__)

#define KILN_PIN_SIZE(T, size) static_assert(sizeof(T) == (size), #T " changed size")
#define KILN_PIN(T, field, offset, size)                                         \
  static_assert(offsetof(T, field) == (offset), #T "." #field " moved");        \
  static_assert(sizeof(((T*)nullptr)->field) == (size), #T "." #field " changed size")

KILN_PIN_SIZE(kiln_str, 16);
KILN_PIN(kiln_str, ptr, 0, 8);
KILN_PIN(kiln_str, len, 8, 8);

KILN_PIN_SIZE(kiln_bytes, 16);
KILN_PIN(kiln_bytes, ptr, 0, 8);
KILN_PIN(kiln_bytes, len, 8, 8);

KILN_PIN_SIZE(kiln_command_handlers, 32);
KILN_PIN(kiln_command_handlers, struct_size, 0, 4);
KILN_PIN(kiln_command_handlers, on_output, 8, 8);
KILN_PIN(kiln_command_handlers, on_update, 16, 8);
KILN_PIN(kiln_command_handlers, on_complete, 24, 8);

KILN_PIN_SIZE(kiln_host_api, 320);
KILN_PIN(kiln_host_api, struct_size, 0, 4);
KILN_PIN(kiln_host_api, abi_version, 4, 4);
KILN_PIN(kiln_host_api, log, 8, 8);
KILN_PIN(kiln_host_api, error_set, 16, 8);
KILN_PIN(kiln_host_api, get_proc, 24, 8);
KILN_PIN(kiln_host_api, now_ms, 32, 8);
KILN_PIN(kiln_host_api, post, 40, 8);
KILN_PIN(kiln_host_api, timer_start, 48, 8);
KILN_PIN(kiln_host_api, timer_cancel, 56, 8);
KILN_PIN(kiln_host_api, state_get, 64, 8);
KILN_PIN(kiln_host_api, state_put, 72, 8);
KILN_PIN(kiln_host_api, render, 80, 8);
KILN_PIN(kiln_host_api, data_get, 88, 8);
KILN_PIN(kiln_host_api, data_control, 96, 8);
KILN_PIN(kiln_host_api, subscribe, 104, 8);
KILN_PIN(kiln_host_api, unsubscribe, 112, 8);
KILN_PIN(kiln_host_api, change_add, 120, 8);
KILN_PIN(kiln_host_api, buildset_add, 128, 8);
KILN_PIN(kiln_host_api, property_get, 136, 8);
KILN_PIN(kiln_host_api, property_set, 144, 8);
KILN_PIN(kiln_host_api, command_start, 152, 8);
KILN_PIN(kiln_host_api, command_interrupt, 160, 8);
KILN_PIN(kiln_host_api, log_add, 168, 8);
KILN_PIN(kiln_host_api, log_append, 176, 8);
KILN_PIN(kiln_host_api, log_finish, 184, 8);
KILN_PIN(kiln_host_api, set_summary, 192, 8);
KILN_PIN(kiln_host_api, add_url, 200, 8);
KILN_PIN(kiln_host_api, set_statistic, 208, 8);
KILN_PIN(kiln_host_api, set_progress, 216, 8);
KILN_PIN(kiln_host_api, add_steps, 224, 8);
KILN_PIN(kiln_host_api, step_finish, 232, 8);
KILN_PIN(kiln_host_api, worker_connected, 240, 8);
KILN_PIN(kiln_host_api, worker_disconnected, 248, 8);
KILN_PIN(kiln_host_api, command_output, 256, 8);
KILN_PIN(kiln_host_api, command_update, 264, 8);
KILN_PIN(kiln_host_api, command_complete, 272, 8);
KILN_PIN(kiln_host_api, transfer_write, 280, 8);
KILN_PIN(kiln_host_api, transfer_read, 288, 8);
KILN_PIN(kiln_host_api, context_info, 296, 8);
KILN_PIN(kiln_host_api, policy_call, 304, 8);
KILN_PIN(kiln_host_api, output_throttle, 312, 8);

KILN_PIN_SIZE(kiln_change_source_vtable, 32);
KILN_PIN(kiln_change_source_vtable, struct_size, 0, 4);
KILN_PIN(kiln_change_source_vtable, start, 8, 8);
KILN_PIN(kiln_change_source_vtable, stop, 16, 8);
KILN_PIN(kiln_change_source_vtable, poll, 24, 8);

KILN_PIN_SIZE(kiln_scheduler_vtable, 40);
KILN_PIN(kiln_scheduler_vtable, struct_size, 0, 4);
KILN_PIN(kiln_scheduler_vtable, start, 8, 8);
KILN_PIN(kiln_scheduler_vtable, stop, 16, 8);
KILN_PIN(kiln_scheduler_vtable, on_change, 24, 8);
KILN_PIN(kiln_scheduler_vtable, control, 32, 8);

KILN_PIN_SIZE(kiln_step_vtable, 24);
KILN_PIN(kiln_step_vtable, struct_size, 0, 4);
KILN_PIN(kiln_step_vtable, run, 8, 8);
KILN_PIN(kiln_step_vtable, interrupt, 16, 8);

KILN_PIN_SIZE(kiln_worker_vtable, 64);
KILN_PIN(kiln_worker_vtable, struct_size, 0, 4);
KILN_PIN(kiln_worker_vtable, start, 8, 8);
KILN_PIN(kiln_worker_vtable, stop, 16, 8);
KILN_PIN(kiln_worker_vtable, command_start, 24, 8);
KILN_PIN(kiln_worker_vtable, command_interrupt, 32, 8);
KILN_PIN(kiln_worker_vtable, substantiate, 40, 8);
KILN_PIN(kiln_worker_vtable, insubstantiate, 48, 8);
KILN_PIN(kiln_worker_vtable, control, 56, 8);

KILN_PIN_SIZE(kiln_reporter_vtable, 24);
KILN_PIN(kiln_reporter_vtable, struct_size, 0, 4);
KILN_PIN(kiln_reporter_vtable, start, 8, 8);
KILN_PIN(kiln_reporter_vtable, stop, 16, 8);

KILN_PIN_SIZE(kiln_policy_vtable, 24);
KILN_PIN(kiln_policy_vtable, struct_size, 0, 4);
KILN_PIN(kiln_policy_vtable, policy, 8, 8);
KILN_PIN(kiln_policy_vtable, call, 16, 8);

KILN_PIN_SIZE(kiln_component_desc, 80);
KILN_PIN(kiln_component_desc, struct_size, 0, 4);
KILN_PIN(kiln_component_desc, kind, 4, 4);
KILN_PIN(kiln_component_desc, type_name, 8, 8);
KILN_PIN(kiln_component_desc, version, 16, 8);
KILN_PIN(kiln_component_desc, summary, 24, 8);
KILN_PIN(kiln_component_desc, config_schema, 32, 8);
KILN_PIN(kiln_component_desc, validate, 40, 8);
KILN_PIN(kiln_component_desc, create, 48, 8);
KILN_PIN(kiln_component_desc, reconfigure, 56, 8);
KILN_PIN(kiln_component_desc, destroy, 64, 8);
KILN_PIN(kiln_component_desc, vtable, 72, 8);

KILN_PIN_SIZE(kiln_plugin_desc, 72);
KILN_PIN(kiln_plugin_desc, magic, 0, 4);
KILN_PIN(kiln_plugin_desc, struct_size, 4, 4);
KILN_PIN(kiln_plugin_desc, abi_version, 8, 4);
KILN_PIN(kiln_plugin_desc, name, 16, 8);
KILN_PIN(kiln_plugin_desc, version, 24, 8);
KILN_PIN(kiln_plugin_desc, description, 32, 8);
KILN_PIN(kiln_plugin_desc, license, 40, 8);
KILN_PIN(kiln_plugin_desc, component_count, 48, 4);
KILN_PIN(kiln_plugin_desc, components, 56, 8);
KILN_PIN(kiln_plugin_desc, shutdown, 64, 8);

#endif  // x86_64

// Values that cross the boundary as integers are part of the ABI too.
static_assert(KILN_ABI_MAJOR == 1 && KILN_PLUGIN_MAGIC == 0x4B4C4E31u);
static_assert(KILN_ABI_VERSION == ((KILN_ABI_MAJOR << 16) | KILN_ABI_MINOR));
static_assert(sizeof(kiln_status) == 4 && sizeof(kiln_result) == 4 &&
              sizeof(kiln_log_level) == 4 && sizeof(kiln_component_kind) == 4 &&
              sizeof(kiln_stream) == 4);
static_assert(KILN_OK == 0 && KILN_ERR_INVALID_CONFIG == 1 && KILN_ERR_INVALID_ARGUMENT == 2 &&
              KILN_ERR_UNSUPPORTED == 3 && KILN_ERR_NOT_FOUND == 4 && KILN_ERR_RETRY == 5 &&
              KILN_ERR_REFUSED == 6 && KILN_ERR_CANCELLED == 7 && KILN_ERR_INTERNAL == 8);
static_assert(KILN_SUCCESS == 0 && KILN_WARNINGS == 1 && KILN_FAILURE == 2 &&
              KILN_SKIPPED == 3 && KILN_EXCEPTION == 4 && KILN_RETRY == 5 &&
              KILN_CANCELLED == 6);
static_assert(KILN_LOG_TRACE == 0 && KILN_LOG_DEBUG == 1 && KILN_LOG_INFO == 2 &&
              KILN_LOG_WARN == 3 && KILN_LOG_ERROR == 4);
static_assert(KILN_KIND_CHANGE_SOURCE == 1 && KILN_KIND_SCHEDULER == 2 && KILN_KIND_STEP == 3 &&
              KILN_KIND_WORKER == 4 && KILN_KIND_REPORTER == 5 && KILN_KIND_POLICY == 6);
static_assert(KILN_STREAM_STDOUT == 0 && KILN_STREAM_STDERR == 1 && KILN_STREAM_HEADER == 2);
static_assert(KILN_LOG_TYPE_STDIO == 's' && KILN_LOG_TYPE_TEXT == 't' &&
              KILN_LOG_TYPE_HTML == 'h');
static_assert(KILN_PLUGIN_DESC_MIN_SIZE ==
              offsetof(kiln_plugin_desc, components) + sizeof(void*));
static_assert(KILN_COMPONENT_DESC_MIN_SIZE ==
              offsetof(kiln_component_desc, destroy) + sizeof(void*));

namespace {

struct Sized {
  uint32_t struct_size;
  int a;
  int b;
};

}  // namespace

TEST_CASE("KILN_HAS sees only fields inside the struct_size it was given") {
  Sized full{sizeof(Sized), 1, 2};
  Sized older{static_cast<uint32_t>(offsetof(Sized, b)), 1, 2};
  Sized unset{sizeof(Sized), 1, 0};
  const Sized* none = nullptr;
  CHECK(KILN_HAS(Sized, &full, b));
  CHECK_FALSE(KILN_HAS(Sized, &older, b));
  CHECK(KILN_HAS(Sized, &older, a));
  CHECK_FALSE(KILN_HAS(Sized, &unset, b));
  CHECK_FALSE(KILN_HAS(Sized, none, a));
}
