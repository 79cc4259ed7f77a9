// kiln-schedulers: Buildbot's change-driven, timed and triggered schedulers
// and the trigger step. See README.md.
#include "schedulers.h"

namespace sc = kiln::schedulers;

KILN_PLUGIN("kiln-schedulers", "0.1.0",
            "Buildbot's schedulers: single-branch, any-branch, periodic, nightly, triggerable, dependent, try; "
            "and the trigger step",
            "MIT",
            kiln::sdk::component<sc::SingleBranchScheduler>(
                KILN_KIND_SCHEDULER, "single-branch", "0.1.0",
                "Builds changes on one branch once the tree is stable", sc::single_branch_schema().c_str()),
            kiln::sdk::component<sc::AnyBranchScheduler>(
                KILN_KIND_SCHEDULER, "any-branch", "0.1.0",
                "Builds changes on every branch, one tree-stable timer per branch", sc::any_branch_schema().c_str()),
            kiln::sdk::component<sc::PeriodicScheduler>(KILN_KIND_SCHEDULER, "periodic", "0.1.0",
                                                        "Builds every N seconds", sc::periodic_schema().c_str()),
            kiln::sdk::component<sc::NightlyScheduler>(KILN_KIND_SCHEDULER, "nightly", "0.1.0",
                                                       "Builds at times given as cron fields",
                                                       sc::nightly_schema().c_str()),
            kiln::sdk::component<sc::TriggerableScheduler>(KILN_KIND_SCHEDULER, "triggerable", "0.1.0",
                                                           "Builds when a trigger step asks",
                                                           sc::triggerable_schema().c_str()),
            kiln::sdk::component<sc::DependentScheduler>(KILN_KIND_SCHEDULER, "dependent", "0.1.0",
                                                         "Builds after a successful buildset of another scheduler",
                                                         sc::dependent_schema().c_str()),
            kiln::sdk::component<sc::TryScheduler>(KILN_KIND_SCHEDULER, "try", "0.1.0",
                                                   "Builds patches sent by `kiln try` over an authenticated listener",
                                                   sc::try_schema().c_str()),
            kiln::sdk::component<sc::TriggerStep>(KILN_KIND_STEP, "trigger", "0.1.0",
                                                  "Triggers builds of triggerable schedulers, optionally waiting",
                                                  sc::trigger_schema().c_str()));
