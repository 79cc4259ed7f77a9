#pragma once
// Private to kiln_worker_commands: the factories make_command() dispatches
// to, and helpers the command files share.

#include <kiln/worker/command_runner.h>

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::worker::detail {

using Factory = std::shared_ptr<CommandRunner> (*)(boost::asio::io_context&, const WorkerSettings&,
                                                    nlohmann::json, std::shared_ptr<CommandSink>);

std::shared_ptr<CommandRunner> make_shell(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                          std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_stat(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                         std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_glob(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                         std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_listdir(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                            std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_mkdir(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                          std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_rmdir(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                          std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_rmfile(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                           std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_cpdir(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                          std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_upload_file(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                                std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_upload_directory(boost::asio::io_context&, const WorkerSettings&,
                                                     nlohmann::json, std::shared_ptr<CommandSink>);
std::shared_ptr<CommandRunner> make_download_file(boost::asio::io_context&, const WorkerSettings&, nlohmann::json,
                                                  std::shared_ptr<CommandSink>);

// A path argument made absolute against the worker's basedir.
std::string absolute_path(const WorkerSettings& settings, const std::string& path);
// The string argument `key`, or a type error naming it.
std::string string_arg(const nlohmann::json& args, const char* key);
// "<command>: <strerror>: <path>\n", as the fs commands write it.
std::string errno_message(const char* command, int err, const std::string& path);
// Creates path and its parents like os.makedirs after an isdir check:
// 0 or the errno of the failing mkdir.
int make_dirs(const std::string& path);
// The worker environment with a shell command's `env` merged over it
// (§4.1: null removes, lists join with ':', ${VAR} from the worker's
// environment, PYTHONPATH keeps the worker's appended) and PWD = workdir.
std::map<std::string, std::string> merge_environment(const std::map<std::string, std::string>& worker_env,
                                                     const nlohmann::json& overrides, const std::string& workdir);
// Python's glob.glob(pattern, recursive=True): `**` spans directories,
// wildcards skip names starting with '.', results in directory order.
std::vector<std::string> glob(const std::string& pattern);

}  // namespace kiln::worker::detail
