/* Compiles the ABI header as strict C99 (-pedantic -Werror), and uses its
 * macros, so nothing C++-only or compiler-specific slips into it. */
#include <kiln/plugin_api.h>

int kiln_abi_c99_check(const kiln_host_api *host);

int kiln_abi_c99_check(const kiln_host_api *host) {
  kiln_str s = {"x", 1};
  (void)s;
  return KILN_HAS(kiln_host_api, host, transfer_read) &&
         KILN_ABI_VERSION_MAJOR(KILN_ABI_VERSION) == KILN_ABI_MAJOR &&
         KILN_PLUGIN_DESC_MIN_SIZE > 0 && KILN_COMPONENT_DESC_MIN_SIZE > 0;
}
