#pragma once
// A running master: the event loop, the loaded plugins and configuration,
// and the store. `kiln start` builds one and runs it until a signal stops it.

#include "engine/engine.h"
#include "master/control_server.h"
#include "master/master_loading.h"
#include "util/event_loop.h"

#include <filesystem>
#include <functional>
#include <memory>
#include <thread>
#include <string>

namespace kiln::store {
class Store;
}

namespace kiln::master {

class Master {
 public:
  explicit Master(LoadedMaster loaded);
  ~Master();

  // Opens (or creates) the store and brings up the master's components.
  // Returns an error message, empty on success.
  std::string start();

  // Runs the event loop until SIGINT/SIGTERM (or stop()). SIGHUP asks for a
  // reconfiguration.
  void run();
  void stop();

  // Reads master.yaml again (off the loop), loads plugins from folders it
  // adds, checks it, and hands it to the engine. done gets
  // {"ok", "errors": [...], "changes": [...]}; a config that fails its
  // checks changes nothing. One reconfig at a time.
  void reconfigure(std::function<void(nlohmann::json)> done);

  util::EventLoop& loop() { return loop_; }
  engine::Engine* engine() { return engine_.get(); }

 private:
  // The configuration itself moves into the engine at start (one copy of a
  // large master's builders, not two); the master keeps only its folder.
  LoadedMaster loaded_;
  std::filesystem::path basedir_;
  util::EventLoop loop_;
  std::unique_ptr<store::Store> store_;
  int64_t masterid_ = 0;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<ControlServer> control_;
  bool reconfiguring_ = false;
  std::thread config_reader_;

  // One request from the control socket (kiln data, force, status, ...).
  void handle_control(const nlohmann::json& request, ControlReply reply);
};

}  // namespace kiln::master
