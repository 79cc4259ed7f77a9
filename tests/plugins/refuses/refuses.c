/* Declines to load and says why, as a plugin does when it finds the host
 * too old or a dependency missing. */
#include "test_plugin.h"

KILN_EXPORT const kiln_plugin_desc *kiln_plugin_entry(const kiln_host_api *host,
                                                      uint32_t host_abi_version,
                                                      kiln_error *err) {
  (void)host_abi_version;
  host->log(NULL, KILN_LOG_WARN, tp_str("refusing to load"));
  host->error_set(err, KILN_ERR_REFUSED, tp_str("needs the frobnicator service"));
  return NULL;
}
