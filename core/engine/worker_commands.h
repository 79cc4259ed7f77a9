#pragma once
// Step-level worker commands (Buildbot's PB-style arguments, paths relative
// to the build's folder) turned into what goes to a worker: wire names and
// absolute paths, as the Buildbot master does for msgpack workers
// (reference/worker-protocol-msgpack.md §4.12). Pure functions: the engine
// and its tests share them.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <variant>

namespace kiln::engine {

struct CommandPlace {
  std::string worker_basedir;  // the worker's basedir (absolute)
  std::string builder_dir;     // the builder's workerbuilddir
  std::string master_dir;      // master-side transfer paths resolve here
  nlohmann::json builder_env = nlohmann::json::object();
  nlohmann::json step_common = nlohmann::json::object();  // timeout, env, workdir, ...
};

struct WireCommand {
  enum class Transfer { kNone, kUploadFile, kUploadDirectory, kDownloadFile };
  std::string name;      // "shell", "upload_file", ...
  nlohmann::json args;   // absolute paths
  Transfer transfer = Transfer::kNone;
  std::string master_path;  // masterdest or mastersrc, absolute
  std::optional<int> master_mode;  // file uploads: permissions of the master's copy
};

// posixpath.join: a later absolute part replaces what came before.
std::string join_path(const std::string& a, const std::string& b);

// The wire form, or an error message naming the bad argument.
std::variant<WireCommand, std::string> to_wire_command(const std::string& name,
                                                       const nlohmann::json& step_args,
                                                       const CommandPlace& place);

}  // namespace kiln::engine
