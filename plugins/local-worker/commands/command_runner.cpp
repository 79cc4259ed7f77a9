#include <kiln/worker/command_runner.h>

#include "commands.h"

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

extern char** environ;

namespace kiln::worker {

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct CommandInfo {
  detail::Factory factory;
  std::vector<const char*> required;
};

const std::map<std::string, CommandInfo, std::less<>>& commands() {
  static const std::map<std::string, CommandInfo, std::less<>> kCommands = {
      {"shell", {&detail::make_shell, {"command", "workdir"}}},
      {"stat", {&detail::make_stat, {"path"}}},
      {"glob", {&detail::make_glob, {"path"}}},
      {"listdir", {&detail::make_listdir, {"path"}}},
      {"mkdir", {&detail::make_mkdir, {"paths"}}},
      {"rmdir", {&detail::make_rmdir, {"paths"}}},
      {"rmfile", {&detail::make_rmfile, {"path"}}},
      {"cpdir", {&detail::make_cpdir, {"from_path", "to_path"}}},
      {"upload_file", {&detail::make_upload_file, {"path", "blocksize"}}},
      {"upload_directory", {&detail::make_upload_directory, {"path", "blocksize"}}},
      {"download_file", {&detail::make_download_file, {"path", "blocksize"}}},
  };
  return kCommands;
}

std::string_view canonical_name(std::string_view name) {
  if (name == "uploadFile") return "upload_file";
  if (name == "uploadDirectory") return "upload_directory";
  if (name == "downloadFile") return "download_file";
  return name;
}

// Completes at once with a failure: unknown command, missing argument.
class FailedCommand final : public CommandRunner {
 public:
  FailedCommand(boost::asio::io_context& io, std::string name, std::shared_ptr<CommandSink> sink,
                std::string failure)
      : CommandRunner(io, std::move(name), std::move(sink)), failure_(std::move(failure)) {}

 protected:
  void run() override { complete_failure(failure_); }
  void on_interrupt(const std::string&) override {}

 private:
  std::string failure_;
};

}  // namespace

CommandRunner::CommandRunner(boost::asio::io_context& io, std::string name, std::shared_ptr<CommandSink> sink)
    : io_(io), name_(std::move(name)), sink_(std::move(sink)) {}

void CommandRunner::start() {
  boost::asio::post(io_, [self = self()] {
    if (!self || self->started_) return;
    self->started_ = true;
    self->start_time_ = now_seconds();
    try {
      self->run();
    } catch (const std::exception& e) {
      // Arguments of the wrong type surface here as json type errors.
      self->complete_failure(self->name_ + ": " + e.what());
    }
  });
}

void CommandRunner::interrupt(std::string reason) {
  boost::asio::post(io_, [self = self(), reason = std::move(reason)] {
    if (!self || !self->started_ || self->completed_) return;
    try {
      self->on_interrupt(reason);
    } catch (const std::exception& e) {
      self->complete_failure(self->name_ + ": " + e.what());
    }
  });
}

void CommandRunner::complete(CommandResult result) {
  if (completed_) return;
  completed_ = true;
  sink_->on_complete(result);
}

void CommandRunner::complete_failure(std::string failure) {
  complete(CommandResult{-1, std::nullopt, std::move(failure)});
}

double CommandRunner::seconds_since_start() const { return now_seconds() - start_time_; }

std::shared_ptr<CommandRunner> make_command(boost::asio::io_context& io, const WorkerSettings& settings,
                                            std::string_view name, nlohmann::json args,
                                            std::shared_ptr<CommandSink> sink) {
  std::shared_ptr<CommandRunner> runner;
  const auto& known = commands();
  auto it = known.find(canonical_name(name));
  if (it == known.end()) {
    runner = std::make_shared<FailedCommand>(io, std::string(name), std::move(sink),
                                             "unknown command '" + std::string(name) + "'");
  } else if (!args.is_object()) {
    runner = std::make_shared<FailedCommand>(io, std::string(name), std::move(sink),
                                             "arguments of command '" + std::string(name) + "' are not an object");
  } else {
    std::string missing;
    for (const char* key : it->second.required) {
      if (!args.contains(key) || args[key].is_null()) missing += std::string(missing.empty() ? "" : ", ") + "'" + key + "'";
    }
    auto escape = transfer_escape(settings, it->first, args);
    if (escape) {
      runner = std::make_shared<FailedCommand>(io, std::string(name), std::move(sink), std::move(*escape));
    } else if (!missing.empty()) {
      runner = std::make_shared<FailedCommand>(
          io, std::string(name), std::move(sink),
          "command '" + std::string(name) + "' is missing required argument(s) " + missing);
    } else {
      runner = it->second.factory(io, settings, std::move(args), std::move(sink));
    }
  }
  runner->self_ = runner;
  return runner;
}

std::optional<std::string> transfer_escape(const WorkerSettings& settings, std::string_view name,
                                           const nlohmann::json& args) {
  name = canonical_name(name);
  if (!settings.confine_transfers || settings.basedir.empty()) return std::nullopt;
  if (name != "upload_file" && name != "upload_directory" && name != "download_file") return std::nullopt;
  auto path = args.find("path");
  if (path == args.end() || !path->is_string()) return std::nullopt;  // the command reports it
  // weakly_canonical resolves `..` and the symlinks of the part that exists.
  std::error_code base_ec, target_ec;
  auto base = std::filesystem::weakly_canonical(settings.basedir, base_ec);
  if (base.filename().empty()) base = base.parent_path();
  const auto target =
      std::filesystem::weakly_canonical(detail::absolute_path(settings, path->get<std::string>()), target_ec);
  const auto [base_end, _] = std::mismatch(base.begin(), base.end(), target.begin(), target.end());
  if (!base_ec && !target_ec && base_end == base.end()) return std::nullopt;
  return std::string(name) + ": refused: path '" + path->get<std::string>() + "' is outside the worker's basedir " +
         settings.basedir;
}

nlohmann::json command_versions() {
  nlohmann::json versions = nlohmann::json::object();
  for (const auto& [name, _] : commands()) versions[name] = "3.1";
  for (const char* alias : {"uploadFile", "uploadDirectory", "downloadFile"}) versions[alias] = "3.1";
  return versions;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

namespace detail {

std::string absolute_path(const WorkerSettings& settings, const std::string& path) {
  if (!path.empty() && path.front() == '/') return path;
  if (settings.basedir.empty()) return path;
  return path.empty() ? settings.basedir : settings.basedir + "/" + path;
}

std::string string_arg(const nlohmann::json& args, const char* key) {
  const auto& value = args.at(key);
  if (!value.is_string()) throw std::invalid_argument(std::string("argument '") + key + "' must be a string");
  return value.get<std::string>();
}

std::string errno_message(const char* command, int err, const std::string& path) {
  return std::string(command) + ": " + std::strerror(err) + ": " + path + "\n";
}

int make_dirs(const std::string& given) {
  std::string path = given;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return 0;
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    std::string parent = path.substr(0, slash);
    if (::stat(parent.c_str(), &st) != 0) {
      if (int err = make_dirs(parent)) return err;
    }
  }
  if (::mkdir(path.c_str(), 0777) != 0) return errno;
  return 0;
}

}  // namespace detail
}  // namespace kiln::worker
