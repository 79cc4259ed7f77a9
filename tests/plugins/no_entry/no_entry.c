/* A shared library that exports something, but not kiln_plugin_entry. */
#include <kiln/plugin_api.h>

KILN_EXPORT int kiln_plugin_entry_typo(void) { return 42; }
