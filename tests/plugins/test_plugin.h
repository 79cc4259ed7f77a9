/* Shared pieces of the ABI conformance test plugins: a do-nothing step
 * component that each case varies in one way. Pure C99, like a plugin
 * author's code. */
#ifndef KILN_TEST_PLUGIN_H
#define KILN_TEST_PLUGIN_H

#include <kiln/plugin_api.h>

#include <stdlib.h>
#include <string.h>

#define TP_UNUSED __attribute__((unused))

static const kiln_host_api *tp_host TP_UNUSED;

static inline kiln_str tp_str(const char *s) {
  kiln_str out;
  out.ptr = s;
  out.len = strlen(s);
  return out;
}

static inline kiln_status tp_create(kiln_ctx *ctx, kiln_str config_json,
                                    void **out_instance, kiln_error *err) {
  (void)ctx;
  (void)config_json;
  (void)err;
  *out_instance = malloc(1);
  return *out_instance ? KILN_OK : KILN_ERR_INTERNAL;
}

static inline void tp_destroy(void *instance) { free(instance); }

static inline kiln_status tp_run(void *instance, kiln_error *err) {
  (void)instance;
  (void)err;
  return KILN_OK;
}

static const kiln_step_vtable tp_step_vtable TP_UNUSED = {
    sizeof(kiln_step_vtable), tp_run, NULL};

#define TP_STEP(type, schema)                                              \
  {                                                                        \
    sizeof(kiln_component_desc), KILN_KIND_STEP, (type), "1.0",            \
        "test step", (schema), NULL, tp_create, NULL, tp_destroy,          \
        &tp_step_vtable                                                    \
  }

#define TP_PLUGIN(name, components)                                        \
  {                                                                        \
    KILN_PLUGIN_MAGIC, sizeof(kiln_plugin_desc), KILN_ABI_VERSION, (name), \
        "1.0", "an ABI conformance test plugin", "MIT",                    \
        (uint32_t)(sizeof(components) / sizeof((components)[0])),         \
        (components), NULL                                                 \
  }

#endif
