#pragma once
// kiln-worker's settings: command-line flags over an optional config file
// (`key = value` lines), checked into one WorkerOptions or an error that
// names the flag, file and line at fault.

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kiln::kiln_worker {

struct WorkerOptions {
  std::string master_host;  // from master = [ws://|wss://]HOST:PORT
  std::string master_port;
  bool tls = false;          // wss://: TLS, the master's certificate verified
  std::string ca_file;       // PEM CA certificates to verify it with; empty: the system's
  std::string name;
  std::string password;
  std::string basedir;  // absolute once parsed
  int max_builds = 1;
  std::string admin;        // empty: from basedir/info/admin, else none
  std::string description;  // the `host` info; empty: basedir/info/host, else the host name
  std::string shell = "/bin/sh";
  double keepalive_seconds = 300;  // WebSocket pings; 0 turns them off
  double reconnect_min_seconds = 1;
  double reconnect_max_seconds = 60;
  int max_retries = 0;  // consecutive failed connects before giving up; 0: never
};

struct ParsedOptions {
  std::optional<WorkerOptions> options;  // nullopt with `message` on error or --help/--version
  std::string message;                   // what to print
  int exit_code = 0;                     // when options is nullopt
};

ParsedOptions parse_options(const std::vector<std::string>& args);

std::string usage();

}  // namespace kiln::kiln_worker
