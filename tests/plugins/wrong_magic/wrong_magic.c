/* Exports the entry, but what it returns is no Kiln descriptor. */
#include "test_plugin.h"

static const kiln_component_desc step = TP_STEP("wrong-magic-step", NULL);
static const kiln_component_desc *const components[] = {&step};
static kiln_plugin_desc plugin = TP_PLUGIN("wrong-magic", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host;
  (void)host_abi_version;
  (void)err;
  plugin.magic = 0xDEADBEEFu;
  return &plugin;
}
