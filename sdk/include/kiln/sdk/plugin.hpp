#pragma once
// The C++ SDK for Kiln plugins: include this one header.
//
//   class Hello : public kiln::sdk::Step { ... };
//   KILN_PLUGIN("kiln-hello", "1.0.0", "Greets", "MIT",
//               kiln::sdk::component<Hello>(KILN_KIND_STEP, "hello", "1.0.0",
//                                           "Logs a greeting", kHelloSchema));
//
// status.hpp     Status, Result<T>, Error; kiln_str <-> string_view
// host.hpp       Host: the host table this library received
// context.hpp    Context: host services for one instance (timers, state, ...)
// components.hpp base classes ChangeSource, Scheduler, Step, Worker,
//                Reporter, Policy
// component.hpp  component<T>(): descriptors whose trampolines catch everything
// poller.hpp     Poller (polling change sources), ProgramRunner (external
//                programs on a plugin thread, results back on the loop)
// step.hpp       SimpleStep: steps written as straight-line run() code
// entry.hpp      KILN_PLUGIN(...): the exported entry point
// notifier.hpp   (include it yourself) Notifier, Delivery, MessageTemplate:
//                what notifiers share
// See docs/plugin-guide.md.

#include <kiln/plugin_api.h>
#include <kiln/sdk/status.hpp>
#include <kiln/sdk/host.hpp>
#include <kiln/sdk/context.hpp>
#include <kiln/sdk/components.hpp>
#include <kiln/sdk/component.hpp>
#include <kiln/sdk/poller.hpp>
#include <kiln/sdk/step.hpp>
#include <kiln/sdk/entry.hpp>
