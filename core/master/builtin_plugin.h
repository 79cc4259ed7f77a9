#pragma once
// The components compiled into the core: Buildbot's default policy functions
// (collapse requests, prioritize builders, next worker, next build, can start
// build, file is important, split file). They register through the same
// kiln_plugin_entry path as any plugin library, so every run exercises the ABI.

#include <kiln/plugin_api.h>

namespace kiln::master {

const kiln_plugin_desc* builtin_plugin_entry(const kiln_host_api* host,
                                             uint32_t host_abi_version,
                                             kiln_error* err);

}  // namespace kiln::master
