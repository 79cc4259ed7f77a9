/* One of two libraries that both register step type "dup". */
#include "test_plugin.h"

static const kiln_component_desc step = TP_STEP("dup", NULL);
static const kiln_component_desc *const components[] = {&step};
static const kiln_plugin_desc plugin = TP_PLUGIN("duplicate-a", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host;
  (void)host_abi_version;
  (void)err;
  return &plugin;
}
