// shell (§4.1): the environment merge and argument handling; the process
// itself is a RunProcess.

#include "commands.h"

#include <kiln/worker/run_process.h>

#include <cstring>
#include <regex>

namespace kiln::worker::detail {

namespace {

// `${NAME}` in a value comes from the worker's own environment, empty when
// unset (Buildbot's substitution pattern allows [0-9a-zA-Z_]* names).
std::string substitute(const std::string& value, const std::map<std::string, std::string>& worker_env) {
  static const std::regex kVar(R"(\$\{([0-9a-zA-Z_]*)\})");
  std::string out;
  auto begin = std::sregex_iterator(value.begin(), value.end(), kVar);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    out.append(value, last, static_cast<size_t>(it->position()) - last);
    auto found = worker_env.find((*it)[1].str());
    if (found != worker_env.end()) out += found->second;
    last = static_cast<size_t>(it->position() + it->length());
  }
  out.append(value, last);
  return out;
}

std::string text_of(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

}  // namespace

std::map<std::string, std::string> merge_environment(const std::map<std::string, std::string>& worker_env,
                                                     const nlohmann::json& overrides, const std::string& workdir) {
  std::map<std::string, std::string> env = worker_env;
  if (overrides.is_object()) {
    for (const auto& [name, value] : overrides.items()) {
      if (value.is_null()) {
        env.erase(name);
        continue;
      }
      std::string text;
      if (value.is_array()) {
        for (size_t i = 0; i < value.size(); ++i) {
          if (i) text += ':';
          text += text_of(value[i]);
        }
      } else {
        text = substitute(text_of(value), worker_env);
      }
      if (name == "PYTHONPATH") {
        auto old = worker_env.find("PYTHONPATH");
        if (old != worker_env.end() && !old->second.empty()) text += ":" + old->second;
      }
      env[name] = text;
    }
  }
  env["PWD"] = workdir;
  return env;
}

namespace {

class ShellCommand final : public CommandRunner {
 public:
  ShellCommand(boost::asio::io_context& io, const WorkerSettings& settings, nlohmann::json args,
               std::shared_ptr<CommandSink> sink)
      : CommandRunner(io, "shell", std::move(sink)), settings_(settings), args_(std::move(args)) {}

 protected:
  void run() override {
    RunProcessOptions options;
    const auto& command = args_.at("command");
    if (command.is_string()) {
      options.command_string = command.get<std::string>();
    } else if (command.is_array() && !command.empty()) {
      for (const auto& item : command) options.argv.push_back(text_of(item));
    } else {
      complete_failure("shell: 'command' must be a string or a non-empty list of strings");
      return;
    }
    options.shell = settings_.shell;
    options.workdir = absolute_path(settings_, string_arg(args_, "workdir"));
    if (int err = make_dirs(options.workdir)) {
      stderr_text(errno_message("mkdir", err, options.workdir));
      complete_failure("shell: cannot create workdir " + options.workdir + ": " + std::strerror(err));
      return;
    }
    options.env = merge_environment(settings_.environ, args_.value("env", nlohmann::json()), options.workdir);
    options.want_stdout = flag("want_stdout", true);
    options.want_stderr = flag("want_stderr", true);
    options.timeout = args_.value("timeout", nlohmann::json());
    options.max_time = args_.value("maxTime", nlohmann::json());
    options.sigterm_time = args_.value("sigtermTime", nlohmann::json());
    auto signal = args_.value("interruptSignal", nlohmann::json());
    if (signal.is_string()) options.interrupt_signal = signal_from_name(signal.get<std::string>());
    if (signal.is_number_integer()) options.interrupt_signal = signal.get<int>();
    options.log_environ = flag("logEnviron", true);
    auto stdin_data = args_.value("initial_stdin", nlohmann::json());
    if (stdin_data.is_string()) options.initial_stdin = stdin_data.get<std::string>();
    auto logfiles = args_.value("logfiles", nlohmann::json());
    if (logfiles.is_object()) options.logfiles = logfiles;

    std::weak_ptr<CommandRunner> weak = self();
    auto* me = this;
    process_ = std::make_shared<RunProcess>(
        io(), std::move(options),
        [weak, me](Stream stream, std::string_view data) {
          if (auto keep = weak.lock()) me->sink().on_output(stream, data);
        },
        [weak, me](const nlohmann::json& update) {
          if (auto keep = weak.lock()) me->sink().on_update(update);
        },
        [weak, me](const RunProcess::Outcome& outcome) {
          auto keep = weak.lock();
          if (!keep) return;
          CommandResult result{outcome.rc, std::nullopt, outcome.failure};
          if (!outcome.interrupted && outcome.failure.empty()) result.elapsed = me->seconds_since_start();
          me->complete(std::move(result));
        });
    process_->start();
  }

  void on_interrupt(const std::string&) override {
    if (process_) process_->interrupt();
  }

 private:
  bool flag(const char* key, bool fallback) const {
    auto it = args_.find(key);
    if (it == args_.end() || it->is_null()) return fallback;
    if (it->is_boolean()) return it->get<bool>();
    if (it->is_number()) return it->get<double>() != 0;
    return fallback;
  }

  WorkerSettings settings_;
  nlohmann::json args_;
  std::shared_ptr<RunProcess> process_;
};

}  // namespace

std::shared_ptr<CommandRunner> make_shell(boost::asio::io_context& io, const WorkerSettings& settings,
                                          nlohmann::json args, std::shared_ptr<CommandSink> sink) {
  return std::make_shared<ShellCommand>(io, settings, std::move(args), std::move(sink));
}

}  // namespace kiln::worker::detail
