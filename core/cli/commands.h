#pragma once
// One function per `kiln` subcommand; each returns the process exit code.
// Arguments arrive without the program and subcommand names.

#include <string>
#include <vector>

namespace kiln::cli {

using Args = std::vector<std::string>;

int create_master_command(const Args& args);
int checkconfig_command(const Args& args);
int plugins_command(const Args& args);
int upgrade_master_command(const Args& args);
int start_command(const Args& args);
int stop_command(const Args& args);
int restart_command(const Args& args);
int version_command(const Args& args);

// Through a running master's control socket (control_commands.cpp).
int data_command(const Args& args);
int force_command(const Args& args);
int sendchange_command(const Args& args);
int stop_build_command(const Args& args);
int cancel_command(const Args& args);
int rebuild_command(const Args& args);
int status_command(const Args& args);
int reconfig_command(const Args& args);
int poll_command(const Args& args);

// To a `try` scheduler's listener over HTTP (try_command.cpp).
int try_command(const Args& args);

// Through the control socket, or the store itself when no master runs
// (user_command.cpp).
int user_command(const Args& args);

}  // namespace kiln::cli
