#pragma once
// What kiln-worker answers to the master's get_worker_info, in the shape a
// Buildbot worker gives it (reference worker-protocol-msgpack.md §3.1):
// the files of <basedir>/info/, os_* from /etc/os-release, environ,
// system, basedir, numcpus, version, worker_commands, plus max_builds.

#include "options.h"

#include <kiln/worker_wire/wire.h>

#include <map>
#include <string>

namespace kiln::kiln_worker {

inline constexpr const char* kVersion = "0.1.0";

worker_wire::Value worker_info(const WorkerOptions& options, const std::map<std::string, std::string>& environ);

}  // namespace kiln::kiln_worker
