/* A step whose create rejects its configuration with a message. */
#include "test_plugin.h"

static kiln_status create_fails(kiln_ctx *ctx, kiln_str config_json,
                                void **out_instance, kiln_error *err) {
  (void)ctx;
  (void)config_json;
  *out_instance = NULL;
  tp_host->error_set(err, KILN_ERR_INVALID_CONFIG,
                     tp_str("repourl must be an absolute URL"));
  return KILN_ERR_INVALID_CONFIG;
}

static const kiln_component_desc step = {
    sizeof(kiln_component_desc), KILN_KIND_STEP, "fails", "1.0",
    "always fails to create", NULL, NULL, create_fails, NULL, tp_destroy,
    &tp_step_vtable};
static const kiln_component_desc *const components[] = {&step};
static const kiln_plugin_desc plugin = TP_PLUGIN("create-fails", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host_abi_version;
  (void)err;
  tp_host = host;
  return &plugin;
}
