// The kiln-buildbot-worker plugin library: the `buildbot-worker` worker type
// (buildbot_worker.h) and its latent form `exec-latent` (exec_latent.h).

#include "buildbot_worker.h"
#include "exec_latent.h"

namespace sdk = kiln::sdk;
namespace bw = kiln::buildbot_worker;

KILN_PLUGIN("kiln-buildbot-worker", "0.1.0",
            "Buildbot 3.x workers (msgpack WebSocket protocol) connect to Kiln unchanged", "MIT",
            sdk::component<bw::BuildbotWorker>(KILN_KIND_WORKER, "buildbot-worker", "0.1.0",
                                               "A real Buildbot worker connected over Buildbot's msgpack protocol",
                                               bw::kSchema),
            sdk::component<bw::ExecLatentWorker>(KILN_KIND_WORKER, "exec-latent", "0.1.0",
                                                 "A latent worker: start and stop commands around a worker that "
                                                 "connects over Buildbot's msgpack protocol",
                                                 bw::kExecLatentSchema));
