#include "cli/cli.h"

#include "cli/commands.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <string>

namespace kiln::cli {
namespace {

struct Command {
  std::function<int(const Args&)> run;
  const char* usage;
  const char* summary;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table = {
      {"create-master", {create_master_command, "create-master DIR",
                         "write a commented master.yaml that passes checkconfig"}},
      {"checkconfig", {checkconfig_command, "checkconfig DIR|FILE",
                       "check master.yaml and every plugin config; print all errors"}},
      {"plugins", {plugins_command, "plugins [DIR] [TYPE]",
                   "list component types, or document one type's configuration"}},
      {"upgrade-master", {upgrade_master_command, "upgrade-master DIR",
                          "migrate the master's store to this kiln's schema"}},
      {"start", {start_command, "start DIR [--nodaemon]", "start the master"}},
      {"stop", {stop_command, "stop DIR [--clean]",
                "stop a running master (--clean: after its running builds, starting none)"}},
      {"restart", {restart_command, "restart DIR [--nodaemon]",
                   "check the configuration, stop the running master, start it again"}},
      {"reconfig", {reconfig_command, "reconfig DIR",
                    "apply master.yaml to the running master without stopping builds "
                    "(also: kill -HUP)"}},
      {"version", {version_command, "version", "print versions"}},
      {"data", {data_command,
                "data DIR PATH [--field F]... [--limit N] [--offset N] [--order [-]F]... "
                "[--filter K=V|K__op=V]... [--property P]...",
                "read a data API path (builders, builds/12/steps, ...) from a running master"}},
      {"force", {force_command,
                 "force DIR BUILDER [--scheduler NAME] [--reason R] [--branch B] "
                 "[--revision R] [--property K=V]... [--owner O]",
                 "force a build through a force scheduler"}},
      {"sendchange", {sendchange_command,
                      "sendchange (DIR | --master HOST:PORT [--auth USER:PASS]) [--who W] "
                      "[--branch B] [--revision R|--revision_file F] [--repository U] "
                      "[--project P] [--category C] [--codebase C] [--vc V] [--revlink URL] "
                      "[--comments TEXT|--logfile F] [--property K:V]... [--when UNIXTIME] "
                      "[FILES...]",
                      "add a change through the master's socket, or to a sendchange "
                      "listener (--master)"}},
      {"try", {try_command,
               "try --master HOST:PORT --user U --password P [--builder B]... [--branch BR] "
               "[--baserev REV] [--repository R] [--patchlevel N] [--diff FILE|-] [--vc git] "
               "[--property K=V]... [--comment C] [--who W] [--wait] [--dryrun]",
               "send a patch to a try scheduler to build it (--vc git: the tree's changes "
               "against its upstream branch); --wait follows the builds"}},
      {"user", {user_command,
                "user DIR add [--identifier ID] [--info TYPE=VALUE]... [--username U] "
                "[--password P|-] | update (--id N|--identifier ID) [--set-identifier NEW] "
                "[--info TYPE=VALUE]... [--username U] [--password P|-] | "
                "remove (--id N|--identifier ID) | show [ID|VALUE]",
                "manage users: identities, attributes (git, email, irc, ...) and logins"}},
      {"poll", {poll_command, "poll DIR [CHANGE_SOURCE]",
                "make every polling change source (or the one named) poll now"}},
      {"stop-build", {stop_build_command, "stop-build DIR BUILDID [--reason R]",
                      "stop a running build"}},
      {"cancel", {cancel_command, "cancel DIR BUILDREQUESTID [--reason R]",
                  "cancel a build request that has not started"}},
      {"rebuild", {rebuild_command, "rebuild DIR BUILDID", "run a finished build again"}},
      {"status", {status_command, "status DIR", "show builders, running builds and workers"}},
  };
  return table;
}

void print_usage(std::FILE* to) {
  std::fprintf(to, "usage: kiln COMMAND [ARGS]\n\ncommands:\n");
  for (const auto& [name, command] : commands()) {
    std::fprintf(to, "  %-28s %s\n", command.usage, command.summary);
  }
  std::fprintf(to, "\n  kiln --version              same as `kiln version`\n");
}

}  // namespace

int run(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  if (name == "--version") name = "version";
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::fprintf(stderr, "kiln: unknown command '%s'\n\n", name.c_str());
    print_usage(stderr);
    return 2;
  }
  Args args(argv + 2, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::printf("usage: kiln %s\n%s\n", it->second.usage, it->second.summary);
      return 0;
    }
  }
  try {
    return it->second.run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln %s: %s\n", name.c_str(), e.what());
    return 1;
  }
}

}  // namespace kiln::cli
