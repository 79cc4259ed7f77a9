/* A step whose config_schema is not even JSON. */
#include "test_plugin.h"

static const kiln_component_desc step =
    TP_STEP("bad-schema-step", "{\"type\": \"object\", \"properties\": {");
static const kiln_component_desc *const components[] = {&step};
static const kiln_plugin_desc plugin = TP_PLUGIN("bad-schema", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host;
  (void)host_abi_version;
  (void)err;
  return &plugin;
}
