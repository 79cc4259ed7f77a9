/* Built against a future, incompatible major version of the ABI. */
#include "test_plugin.h"

static const kiln_component_desc step = TP_STEP("wrong-major-step", NULL);
static const kiln_component_desc *const components[] = {&step};
static kiln_plugin_desc plugin = TP_PLUGIN("wrong-major", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host;
  (void)host_abi_version;
  (void)err;
  plugin.abi_version = (2u << 16) | 0u;
  return &plugin;
}
