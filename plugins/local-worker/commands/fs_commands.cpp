// The file-system commands: stat, glob, listdir, mkdir, rmfile (§4.2-4.5,
// 4.8), answered at once on the io thread, and rmdir, cpdir (§4.6, 4.7),
// which run `rm -rf` / `cp -R -P -p -v` in the worker's basedir like
// Buildbot so their output and headers match.

#include "commands.h"

#include <kiln/worker/run_process.h>

#include <cerrno>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::worker::detail {

namespace {

using json = nlohmann::json;

// Commands that finish within run(): the result is whatever answer() says.
class QuickCommand final : public CommandRunner {
 public:
  using Answer = int (*)(const WorkerSettings&, const json&, CommandRunner&, CommandSink&);
  QuickCommand(boost::asio::io_context& io, std::string name, const WorkerSettings& settings, json args,
               std::shared_ptr<CommandSink> sink, Answer answer)
      : CommandRunner(io, std::move(name), std::move(sink)),
        settings_(settings),
        args_(std::move(args)),
        answer_(answer) {}

 protected:
  void run() override {
    int rc = answer_(settings_, args_, *this, sink());
    complete(CommandResult{rc, seconds_since_start(), ""});
  }
  void on_interrupt(const std::string&) override {}

 private:
  WorkerSettings settings_;
  json args_;
  Answer answer_;
};

int do_stat(const WorkerSettings& settings, const json& args, CommandRunner&, CommandSink& sink) {
  const std::string path = absolute_path(settings, string_arg(args, "path"));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    sink.on_output(Stream::kHeader, errno_message("stat", err, path));
    return err;
  }
  sink.on_update(json{{"stat",
                       {static_cast<int64_t>(st.st_mode), static_cast<int64_t>(st.st_ino),
                        static_cast<int64_t>(st.st_dev), static_cast<int64_t>(st.st_nlink),
                        static_cast<int64_t>(st.st_uid), static_cast<int64_t>(st.st_gid),
                        static_cast<int64_t>(st.st_size), static_cast<int64_t>(st.st_atime),
                        static_cast<int64_t>(st.st_mtime), static_cast<int64_t>(st.st_ctime)}}});
  return 0;
}

int do_glob(const WorkerSettings& settings, const json& args, CommandRunner&, CommandSink& sink) {
  sink.on_update(json{{"files", glob(absolute_path(settings, string_arg(args, "path")))}});
  return 0;
}

int do_listdir(const WorkerSettings& settings, const json& args, CommandRunner&, CommandSink& sink) {
  const std::string path = absolute_path(settings, string_arg(args, "path"));
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    int err = errno;
    sink.on_output(Stream::kHeader, errno_message("listdir", err, path));
    return err;
  }
  json files = json::array();
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") files.push_back(std::string(name));
  }
  ::closedir(dir);
  sink.on_update(json{{"files", std::move(files)}});
  return 0;
}

std::vector<std::string> path_list(const json& value) {
  if (value.is_string()) return {value.get<std::string>()};
  return value.get<std::vector<std::string>>();
}

int do_mkdir(const WorkerSettings& settings, const json& args, CommandRunner&, CommandSink& sink) {
  for (const auto& given : path_list(args.at("paths"))) {
    const std::string path = absolute_path(settings, given);
    if (int err = make_dirs(path)) {
      sink.on_output(Stream::kHeader, errno_message("mkdir", err, path));
      return err;
    }
  }
  return 0;
}

int do_rmfile(const WorkerSettings& settings, const json& args, CommandRunner&, CommandSink& sink) {
  const std::string path = absolute_path(settings, string_arg(args, "path"));
  if (::unlink(path.c_str()) != 0) {
    int err = errno;
    sink.on_output(Stream::kHeader, errno_message("rmfile", err, path));
    return err;
  }
  return 0;
}

// rmdir and cpdir: a sequence of RunProcesses in the basedir, without a
// per-process rc; one rc at the end.
class ProcessSequence : public CommandRunner {
 public:
  ProcessSequence(boost::asio::io_context& io, std::string name, const WorkerSettings& settings, json args,
                  std::shared_ptr<CommandSink> sink)
      : CommandRunner(io, std::move(name), std::move(sink)), settings_(settings), args_(std::move(args)) {}

 protected:
  // Runs argv; then(rc) continues the sequence or completes.
  void run_step(std::vector<std::string> argv, std::function<void(int rc)> then) {
    RunProcessOptions options;
    options.argv = std::move(argv);
    options.workdir = settings_.basedir.empty() ? "/" : settings_.basedir;
    options.env = merge_environment(settings_.environ, json(), options.workdir);
    options.timeout = args_.contains("timeout") ? args_["timeout"] : json(120);
    options.max_time = args_.value("maxTime", json());
    auto log_environ = args_.value("logEnviron", json());
    options.log_environ = log_environ.is_boolean() ? log_environ.get<bool>() : true;
    std::weak_ptr<CommandRunner> weak = self();
    auto* me = this;
    current_ = std::make_shared<RunProcess>(
        io(), std::move(options),
        [weak, me](Stream stream, std::string_view data) {
          if (auto keep = weak.lock()) me->sink().on_output(stream, data);
        },
        [weak, me](const json& update) {
          if (auto keep = weak.lock()) me->sink().on_update(update);
        },
        [weak, me, then = std::move(then)](const RunProcess::Outcome& outcome) {
          auto keep = weak.lock();
          if (!keep) return;
          if (outcome.interrupted) me->interrupted_ = true;
          if (!outcome.failure.empty()) {
            me->complete_failure(outcome.failure);
            return;
          }
          if (me->interrupted_) {
            me->complete(CommandResult{outcome.rc == 0 ? -1 : outcome.rc, std::nullopt, ""});
            return;
          }
          then(outcome.rc);
        });
    current_->start();
  }
  void finish(int rc) { complete(CommandResult{rc, seconds_since_start(), ""}); }
  void on_interrupt(const std::string&) override {
    interrupted_ = true;
    if (current_) current_->interrupt();
  }

  WorkerSettings settings_;
  json args_;
  std::shared_ptr<RunProcess> current_;
  bool interrupted_ = false;
};

class RmdirCommand final : public ProcessSequence {
 public:
  using ProcessSequence::ProcessSequence;

 protected:
  void run() override {
    for (const auto& p : path_list(args_.at("paths"))) paths_.push_back(absolute_path(settings_, p));
    next(0);
  }

 private:
  void next(size_t index) {
    if (index >= paths_.size()) {
      finish(rc_);
      return;
    }
    const std::string path = paths_[index];
    run_step({"rm", "-rf", path}, [this, index, path](int rc) {
      if (rc == 0) {
        next(index + 1);
        return;
      }
      // Buildbot's retry: make everything writable, then remove again.
      run_step({"chmod", "-Rf", "u+rwx", path}, [this, index, path](int) {
        run_step({"rm", "-rf", path}, [this, index](int rc2) {
          if (rc2 != 0) rc_ = rc2;
          next(index + 1);
        });
      });
    });
  }

  std::vector<std::string> paths_;
  int rc_ = 0;
};

class CpdirCommand final : public ProcessSequence {
 public:
  using ProcessSequence::ProcessSequence;

 protected:
  void run() override {
    const std::string from = absolute_path(settings_, string_arg(args_, "from_path"));
    const std::string to = absolute_path(settings_, string_arg(args_, "to_path"));
    auto slash = to.find_last_of('/');
    if (slash != std::string::npos && slash > 0) {
      const std::string parent = to.substr(0, slash);
      if (int err = make_dirs(parent)) {
        sink().on_output(Stream::kHeader, errno_message("mkdir", err, parent));
        finish(err);
        return;
      }
    }
    run_step({"cp", "-R", "-P", "-p", "-v", from, to}, [this](int rc) { finish(rc); });
  }
};

}  // namespace

#define KILN_QUICK_COMMAND(fn, cmd, answer)                                                              \
  std::shared_ptr<CommandRunner> fn(boost::asio::io_context& io, const WorkerSettings& settings, json args, \
                                    std::shared_ptr<CommandSink> sink) {                                 \
    return std::make_shared<QuickCommand>(io, cmd, settings, std::move(args), std::move(sink), answer);  \
  }
KILN_QUICK_COMMAND(make_stat, "stat", &do_stat)
KILN_QUICK_COMMAND(make_glob, "glob", &do_glob)
KILN_QUICK_COMMAND(make_listdir, "listdir", &do_listdir)
KILN_QUICK_COMMAND(make_mkdir, "mkdir", &do_mkdir)
KILN_QUICK_COMMAND(make_rmfile, "rmfile", &do_rmfile)
#undef KILN_QUICK_COMMAND

std::shared_ptr<CommandRunner> make_rmdir(boost::asio::io_context& io, const WorkerSettings& settings, json args,
                                          std::shared_ptr<CommandSink> sink) {
  return std::make_shared<RmdirCommand>(io, "rmdir", settings, std::move(args), std::move(sink));
}

std::shared_ptr<CommandRunner> make_cpdir(boost::asio::io_context& io, const WorkerSettings& settings, json args,
                                          std::shared_ptr<CommandSink> sink) {
  return std::make_shared<CpdirCommand>(io, "cpdir", settings, std::move(args), std::move(sink));
}

}  // namespace kiln::worker::detail
