#pragma once
// The build engine: Buildbot's model running on the event loop. Changes come
// in from change sources, schedulers turn them into buildsets, each buildset
// makes one build request per builder, builders claim requests when one of
// their workers has room, builds run their steps on the worker, and every
// record goes to the store and every transition out as an event.
//
// Everything here runs on the loop thread; the store answers through the
// loop too, so no lock guards engine state.

#include "engine/data_api.h"
#include "engine/event_bus.h"

#include "config/master_config.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace kiln::util {
class EventLoop;
}
namespace kiln::store {
class Store;
}
namespace kiln::plugin {
class Registry;
}

namespace kiln::engine {

class Engine final : public ControlTarget {
 public:
  Engine(util::EventLoop& loop, store::Store& store, plugin::Registry& registry,
         config::MasterConfig config, int64_t masterid);
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Registers builders and workers in the store, recovers from a crash
  // (interrupted builds end RETRY, their requests go back to the queue),
  // creates and starts every component. Blocks on the store (start-up only).
  // Returns an error message, empty on success.
  std::string start();
  // Stops components and interrupts running builds; done() when all is down.
  void stop(std::function<void()> done);

  // Applies a new, already checked configuration: unchanged components keep
  // running, changed ones restart, added and removed builders and workers
  // take effect; running builds are never disturbed (a busy worker or
  // builder that changed or went away follows when its builds end).
  // done gets {"ok": bool, "errors": [...], "changes": [...]}; when not ok
  // nothing changed.
  void reconfigure(config::MasterConfig config, std::function<void(nlohmann::json)> done);

  DataApi& data() { return data_; }
  EventBus& events() { return events_; }

  // The ABI's change_add / buildset_add, for the control socket too.
  // done gets {"changeid": N} / {"bsid": N, "brids": {builder: id}}.
  void add_change(const nlohmann::json& change, DataDone done);
  void add_buildset(const nlohmann::json& request, DataDone done);

  // For `kiln status`: builders with their queue length, running builds and
  // last result; workers with their state.
  nlohmann::json status() const;

  // ControlTarget: force (forceschedulers/NAME), stop (builds/N),
  // rebuild (builds/N), cancel (buildrequests/N), stop (changes/N: its
  // builds and requests), ping / graceful_shutdown / stop / shutdown / kill /
  // pause / unpause (workers/ID or NAME), stop / shutdown (masters/N: a
  // clean shutdown, announced by the event masters/N/drained).
  void control(std::string_view path, std::string_view action, const nlohmann::json& args,
               DataDone done) override;

 private:
  EventBus events_;
  DataApi data_;
  std::unique_ptr<struct EngineCore> core_;
};

}  // namespace kiln::engine
