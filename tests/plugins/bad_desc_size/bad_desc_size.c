/* A component descriptor whose struct_size is too small to hold even the
 * fields every version has (a plugin that forgot to set it properly). */
#include "test_plugin.h"

static kiln_component_desc step = TP_STEP("short-step", NULL);
static const kiln_component_desc *const components[] = {&step};
static const kiln_plugin_desc plugin = TP_PLUGIN("bad-desc-size", components);

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host;
  (void)host_abi_version;
  (void)err;
  step.struct_size = 16;
  return &plugin;
}
