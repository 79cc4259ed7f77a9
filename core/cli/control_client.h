#pragma once
// The CLI side of the master's control socket (master/control_server.h):
// sending one request to a running master, turning the arguments of
// `kiln data|force|sendchange|stop-build|cancel|rebuild|status|reconfig`
// into the request each sends, and printing what comes back. The
// translation is pure so tests check it without a master.

#include "cli/commands.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::cli {

// Bad command-line arguments; the command prints its usage and exits 2.
struct UsageError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// Connecting, sending or receiving failed: no master, a timeout, a closed
// connection. The message is meant for the user as it is.
struct ControlError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Sends `request` to the master running in master_dir and returns its
// response object. Throws ControlError, e.g. "no master is running in DIR
// (no control socket); start it with `kiln start DIR`".
nlohmann::json control_request(const std::filesystem::path& master_dir,
                               const nlohmann::json& request,
                               std::chrono::milliseconds timeout = std::chrono::seconds(30));

// What one command sends, and where.
struct ControlCall {
  std::filesystem::path master_dir;
  nlohmann::json request;
};

// Argument translation; each throws UsageError naming the bad argument.
//   data DIR PATH [--field F]... [--limit N] [--offset N] [--order F]...
//        [--filter K=V | K__op=V]... [--property P]...
//     -> {"op": "data_get", "path", "query": {filters, fields, order, ...}}
ControlCall data_call(const Args& args);
//   force DIR BUILDER [--scheduler NAME] [--reason R] [--branch B]
//         [--revision R] [--property K=V]... [--owner O]
//     -> {"op": "control", "path": "forceschedulers/NAME", "action": "force",
//         "args": {"builderNames": [BUILDER], "properties": {...}, ...}}
//   The path is "forceschedulers/" without --scheduler: the master picks the
//   first force scheduler that lists BUILDER.
ControlCall force_call(const Args& args);
//   sendchange DIR [--who W] [--branch B] [--revision R | --revision_file F]
//              [--repository U] [--project P] [--category C] [--codebase C]
//              [--vc V] [--revlink URL] [--comments TEXT | --logfile F]
//              [--property K:V | K=V]... [--when UNIXTIME] [FILES...]
//     -> {"op": "change_add", "change": {...}}; --logfile - reads stdin.
//   With --master HOST:PORT [--auth USER:PASS] (Buildbot's sendchange)
//   there is no DIR: every positional argument is a file, and the change
//   goes to a `sendchange` listener over HTTP (listener_client.h).
struct SendchangeCall {
  ControlCall control;  // master_dir empty with --master
  std::string master;   // HOST:PORT of --master, empty without
  std::string auth;     // USER:PASS, Buildbot's default change:changepw
};
SendchangeCall sendchange_args(const Args& args);
// The control-socket form; UsageError with --master.
ControlCall sendchange_call(const Args& args);
//   try --master HOST:PORT --user U --password P [--builder B]...
//       [--branch BR] [--baserev REV] [--repository R] [--project P]
//       [--codebase C] [--patchlevel N] [--diff FILE|-] [--vc git]
//       [--property K=V]... [--comment C] [--who W] [--wait] [--dryrun]
//     -> the job `kiln try` POSTs to a `try` scheduler's /try (try_command.cpp);
//   --username/--passwd are Buildbot's spellings. Without --diff, --vc git
//   says the patch is made from the tree in the current folder.
struct TryCall {
  std::string master;  // HOST:PORT
  std::string auth;    // USER:PASSWORD
  // {"builders", "branch", "baserev", "repository", "project", "codebase",
  //  "patch": {"level", "body"}, "who", "comment", "properties"}; without
  //  --diff the patch body (and base revision) are still to be made.
  nlohmann::json job;
  std::string vc;  // "git", or empty when --diff gave the patch
  bool patchlevel_given = false;
  bool wait = false;
  bool dry_run = false;  // print the job instead of sending it
};
TryCall try_args(const Args& args);
//   user DIR add [--identifier ID] [--info TYPE=VALUE]... [--username U]
//            [--password P | --password -]
//   user DIR update (--id N | --identifier ID) [--set-identifier NEW]
//            [--info TYPE=VALUE | TYPE=]... [--username U | --username ""]
//            [--password P | -]
//   user DIR remove (--id N | --identifier ID | ID)
//   user DIR show [ID-OR-VALUE | --id N | --identifier ID]
//     -> {"op": "user", "action", ...} (master/user_requests.h). The
//   password is hashed here (store::hash_password); "-" reads it from the
//   first line of stdin. add's identifier defaults to the first --info
//   value, else the username.
ControlCall user_call(const Args& args);
//   stop-build DIR BUILDID [--reason R]   -> control builds/N stop
//   cancel DIR BUILDREQUESTID [--reason R] -> control buildrequests/N cancel
//   rebuild DIR BUILDID                    -> control builds/N rebuild
ControlCall stop_build_call(const Args& args);
ControlCall cancel_call(const Args& args);
ControlCall rebuild_call(const Args& args);
//   poll DIR [CHANGE_SOURCE] -> control changesources/[NAME] poll: every
//   polling change source (or the one named) polls now; answers
//   {"polled": [names], "errors": {name: why}}.
ControlCall poll_call(const Args& args);
//   status DIR -> {"op": "status"};  reconfig DIR -> {"op": "reconfig"}
ControlCall status_call(const Args& args);
ControlCall reconfig_call(const Args& args);

// Left-aligned columns two spaces apart, no trailing blanks; the first row
// is the header.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// "success", "warnings", ... for Buildbot's result codes; "-" for null.
std::string result_word(const nlohmann::json& results);

// `kiln status` output: a builders table and a workers table. now is Unix
// seconds, for how long running builds have been running.
std::string format_status(const nlohmann::json& status, int64_t now);

// "buildset 5 submitted: request 7 on builder 'unit'" from a force or
// rebuild answer {"bsid": 5, "brids": {"unit": 7}}.
std::string format_buildset(const nlohmann::json& response);

}  // namespace kiln::cli
