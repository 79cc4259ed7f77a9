/* A well-behaved plugin on the current ABI: one component of each kind,
 * each with a schema. Every instance logs, starts a one-second timer and
 * counts its firings; the policy reports that count, so a test can watch
 * host services work end to end. */
#include "test_plugin.h"

#include <stdio.h>

typedef struct instance {
  kiln_ctx *ctx;
  int timer_status; /* what host->timer_start answered */
  int timer_fired;
  uint64_t timer_id;
} instance;

static void on_timer(void *user) {
  instance *self = (instance *)user;
  self->timer_fired++;
  tp_host->log(self->ctx, KILN_LOG_DEBUG, tp_str("timer fired"));
}

static kiln_status create(kiln_ctx *ctx, kiln_str config_json,
                          void **out_instance, kiln_error *err) {
  instance *self;
  (void)config_json;
  self = (instance *)calloc(1, sizeof *self);
  if (self == NULL) {
    tp_host->error_set(err, KILN_ERR_INTERNAL, tp_str("out of memory"));
    return KILN_ERR_INTERNAL;
  }
  self->ctx = ctx;
  tp_host->log(ctx, KILN_LOG_INFO, tp_str("created"));
  self->timer_status = (int)tp_host->timer_start(ctx, 1000, 0, on_timer, self,
                                                 &self->timer_id);
  *out_instance = self;
  return KILN_OK;
}

static void destroy(void *self) { free(self); }

/* Rejects a step command named "forbidden": validate beyond the schema. */
static kiln_status validate_step(kiln_str config_json, kiln_error *err) {
  static const char needle[] = "\"forbidden\"";
  size_t n = sizeof needle - 1, i;
  for (i = 0; i + n <= config_json.len; ++i) {
    if (memcmp(config_json.ptr + i, needle, n) == 0) {
      tp_host->error_set(err, KILN_ERR_INVALID_CONFIG,
                         tp_str("command 'forbidden' is not allowed"));
      return KILN_ERR_INVALID_CONFIG;
    }
  }
  return KILN_OK;
}

static kiln_status start(void *self, kiln_error *err) {
  (void)self;
  (void)err;
  return KILN_OK;
}
static void stop(void *self) { (void)self; }

static kiln_status policy_call(void *user, kiln_str args_json,
                               kiln_text_cb out, void *out_user,
                               kiln_error *err) {
  instance *self = (instance *)user;
  char buf[128];
  (void)args_json;
  (void)err;
  snprintf(buf, sizeof buf, "{\"timer_status\": %d, \"timer_fired\": %d}",
           self->timer_status, self->timer_fired);
  out(out_user, tp_str(buf));
  return KILN_OK;
}

static const kiln_change_source_vtable change_source_vtable = {
    sizeof(kiln_change_source_vtable), start, stop, NULL};
static const kiln_scheduler_vtable scheduler_vtable = {
    sizeof(kiln_scheduler_vtable), start, stop, NULL, NULL};
static const kiln_step_vtable step_vtable = {sizeof(kiln_step_vtable), start,
                                             NULL};
static const kiln_worker_vtable worker_vtable = {
    sizeof(kiln_worker_vtable), start, stop, NULL, NULL, NULL, NULL, NULL};
static const kiln_reporter_vtable reporter_vtable = {
    sizeof(kiln_reporter_vtable), start, stop};
static const kiln_policy_vtable policy_vtable = {
    sizeof(kiln_policy_vtable), "collapse_requests", policy_call};

#define OBJECT_SCHEMA(props)                                                 \
  "{\"type\": \"object\", \"additionalProperties\": false, "                 \
  "\"properties\": {" props "}}"

static const kiln_component_desc change_source = {
    sizeof(kiln_component_desc), KILN_KIND_CHANGE_SOURCE, "good-poller", "1.0",
    "polls nothing", OBJECT_SCHEMA("\"interval\": {\"type\": \"integer\", \"default\": 60}"),
    NULL, create, NULL, destroy, &change_source_vtable};
static const kiln_component_desc scheduler = {
    sizeof(kiln_component_desc), KILN_KIND_SCHEDULER, "good-scheduler", "1.0",
    "schedules nothing", OBJECT_SCHEMA("\"builders\": {\"type\": \"array\"}"),
    NULL, create, NULL, destroy, &scheduler_vtable};
static const kiln_component_desc step = {
    sizeof(kiln_component_desc), KILN_KIND_STEP, "good-step", "1.0",
    "runs nothing",
    "{\"type\": \"object\", \"properties\": {\"command\": {\"type\": "
    "\"string\"}}, \"required\": [\"command\"]}",
    validate_step, create, NULL, destroy, &step_vtable};
static const kiln_component_desc worker = {
    sizeof(kiln_component_desc), KILN_KIND_WORKER, "good-worker", "1.0",
    "works on nothing", OBJECT_SCHEMA("\"max_builds\": {\"type\": \"integer\"}"),
    NULL, create, NULL, destroy, &worker_vtable};
static const kiln_component_desc reporter = {
    sizeof(kiln_component_desc), KILN_KIND_REPORTER, "good-reporter", "1.0",
    "reports to nobody", OBJECT_SCHEMA("\"port\": {\"type\": \"integer\"}"),
    NULL, create, NULL, destroy, &reporter_vtable};
static const kiln_component_desc policy = {
    sizeof(kiln_component_desc), KILN_KIND_POLICY, "good-policy", "1.0",
    "reports its timer", OBJECT_SCHEMA(""), NULL, create, NULL, destroy,
    &policy_vtable};

static const kiln_component_desc *const components[] = {
    &change_source, &scheduler, &step, &worker, &reporter, &policy};

static void on_shutdown(void) {
  tp_host->log(NULL, KILN_LOG_INFO, tp_str("good plugin shut down"));
}

static const kiln_plugin_desc plugin = {
    KILN_PLUGIN_MAGIC, sizeof(kiln_plugin_desc), KILN_ABI_VERSION,
    "kiln-test-good", "1.2.3", "every component kind, well behaved", "MIT",
    sizeof components / sizeof components[0], components, on_shutdown};

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)err;
  if (KILN_ABI_VERSION_MAJOR(host_abi_version) != KILN_ABI_MAJOR) return NULL;
  tp_host = host;
  host->log(NULL, KILN_LOG_INFO, tp_str("good plugin loading"));
  return &plugin;
}
