// `kiln start DIR [--nodaemon]`, `kiln stop DIR [--clean]` and `kiln restart DIR [--nodaemon]`.

#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/daemon.h"
#include "cli/logging.h"
#include "master/master.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iterator>
#include <thread>

namespace kiln::cli {

namespace fs = std::filesystem;

int start_command(const Args& args) {
  std::optional<fs::path> dir;
  bool nodaemon = false;
  for (const auto& a : args) {
    if (a == "--nodaemon" || a == "-n") {
      nodaemon = true;
    } else if (!dir) {
      dir = a;
    } else {
      std::fprintf(stderr, "usage: kiln start DIR [--nodaemon]\n");
      return 2;
    }
  }
  if (!dir) {
    std::fprintf(stderr, "usage: kiln start DIR [--nodaemon]\n");
    return 2;
  }
  std::error_code ec;
  fs::path master_dir = fs::absolute(*dir, ec);
  if (!fs::is_directory(master_dir, ec)) {
    std::fprintf(stderr, "kiln start: %s is not a master folder (create one with `kiln "
                         "create-master %s`)\n", dir->c_str(), dir->c_str());
    return 1;
  }
  if (auto pid = running_master_pid(master_dir)) {
    std::fprintf(stderr, "kiln start: a master is already running in %s (pid %d)\n",
                 master_dir.c_str(), static_cast<int>(*pid));
    return 1;
  }

  // Everything that can be checked is checked before detaching, so mistakes
  // show on the terminal.
  auto load = master::load_master(master_dir);
  if (!load.master) {
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "kiln start: configuration not accepted; nothing was started.\n");
    return 1;
  }
  const auto settings = load.master->config.master;

  if (!nodaemon) {
    if (auto parent_exit = daemonize()) return *parent_exit;
  }
  setup_master_logging(master_dir, nodaemon, settings.log_level, settings.log_max_bytes,
                       settings.log_max_files);
  PidFile pid_file(pid_file_of(master_dir));
  master::Master master(std::move(*load.master));
  std::string error = master.start();
  if (!error.empty()) {
    spdlog::error("start-up failed: {}", error);
    report_ready(false, "kiln start: " + error);
    if (nodaemon) std::fprintf(stderr, "kiln start: %s\n", error.c_str());
    return 1;
  }
  spdlog::info("master '{}' running in {} (pid {})", settings.title, master_dir.string(),
               static_cast<int>(::getpid()));
  report_ready(true, "kiln started in " + master_dir.string() + " (pid " +
                         std::to_string(::getpid()) + "); log: " +
                         (master_dir / "kiln.log").string());
  master.run();
  spdlog::info("master stopped");
  return 0;
}

int stop_command(const Args& args) {
  // --clean (Buildbot's `stop --clean`): no new build starts, the running
  // ones finish, then the master exits; however long that takes.
  const bool clean = std::find(args.begin(), args.end(), "--clean") != args.end();
  Args rest;
  std::copy_if(args.begin(), args.end(), std::back_inserter(rest), [](const std::string& a) { return a != "--clean"; });
  if (rest.size() != 1) {
    std::fprintf(stderr, "usage: kiln stop DIR [--clean]\n");
    return 2;
  }
  fs::path master_dir = rest[0];
  auto pid = running_master_pid(master_dir);
  if (!pid) {
    std::fprintf(stderr, "kiln stop: no master is running in %s\n", master_dir.c_str());
    return 1;
  }
  if (clean) {
    try {
      const auto answer = control_request(
          master_dir, {{"op", "control"}, {"path", "masters"}, {"action", "stop"}, {"args", nlohmann::json::object()}});
      if (answer.contains("error")) {
        std::fprintf(stderr, "kiln stop: %s\n", answer["error"].dump().c_str());
        return 1;
      }
      std::printf("clean shutdown of master (pid %d): waiting for %s running build(s)", static_cast<int>(*pid),
                  answer.value("running_builds", nlohmann::json(0)).dump().c_str());
    } catch (const ControlError& e) {
      std::fprintf(stderr, "kiln stop: %s\n", e.what());
      return 1;
    }
  } else if (::kill(*pid, SIGTERM) != 0) {
    std::perror("kiln stop: kill");
    return 1;
  } else {
    std::printf("stopping master (pid %d)", static_cast<int>(*pid));
  }
  std::fflush(stdout);
  for (int i = 0; clean || i < 300; ++i) {
    if (::kill(*pid, 0) != 0) {
      std::printf(" stopped.\n");
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (i % 10 == 9) {
      std::printf(".");
      std::fflush(stdout);
    }
  }
  std::printf("\nkiln stop: the master did not stop within 30 s; it may still be finishing. "
              "Check %s/kiln.log, or kill -9 %d.\n", master_dir.c_str(), static_cast<int>(*pid));
  return 1;
}

int restart_command(const Args& args) {
  const auto dir = std::find_if(args.begin(), args.end(),
                                [](const std::string& a) { return !a.starts_with("-"); });
  if (dir == args.end()) {
    std::fprintf(stderr, "usage: kiln restart DIR [--nodaemon]\n");
    return 2;
  }
  // A configuration that cannot start must not stop the master that runs.
  auto load = master::load_master(*dir);
  if (!load.master) {
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "kiln restart: configuration not accepted; the running master (if "
                         "any) was left alone.\n");
    return 1;
  }
  if (running_master_pid(*dir)) {
    if (int rc = stop_command({*dir}); rc != 0) return rc;
  }
  return start_command(args);
}

}  // namespace kiln::cli
