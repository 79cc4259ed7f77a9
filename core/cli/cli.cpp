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
      {"stop", {stop_command, "stop DIR", "stop a running master"}},
      {"version", {version_command, "version", "print versions"}},
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
