#pragma once
// The step classes of kiln-std-steps and their config schemas. Every step
// reads the core-owned keys of its run (workdir, env, timeout, max_time,
// interrupt_signal, decode_rc, description_done) from ctx.info()["common"];
// see README.md for each type's own keys.

#include "step_support.h"
#include "warning_counter.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace kiln::std_steps {

extern const char* const kShellSchema;
extern const char* const kSetPropertySchema;
extern const char* const kMasterShellSchema;
extern const char* const kFileUploadSchema;
extern const char* const kFileDownloadSchema;
extern const char* const kDirectoryUploadSchema;

// A `command` key as shell and set-property take it: a non-empty string or
// list of strings.
sdk::Status check_shell_command(const json& command);

// Buildbot's ShellCommand, with WarningCountingShellCommand's counting when
// asked for.
class ShellStep : public CommandStep {
 public:
  ShellStep(sdk::Context ctx, const json& config) : CommandStep(std::move(ctx), config) {}
  static sdk::Status validate(const json& config);
  sdk::Status run() override;

 private:
  json shell_args() const;
  void complete(const sdk::CommandResult& result);
  void add_warning(std::string_view line);

  std::unique_ptr<WarningCounter> warnings_;
  uint64_t warnings_log_ = 0;
};

// Buildbot's SetProperty and SetPropertyFromCommand in one type.
class SetPropertyStep : public CommandStep {
 public:
  // Bounds the stdout a command may turn into a property.
  static constexpr size_t kMaxStdout = 1 << 20;

  SetPropertyStep(sdk::Context ctx, const json& config) : CommandStep(std::move(ctx), config) {}
  static sdk::Status validate(const json& config);
  sdk::Status run() override;

 private:
  void complete(const sdk::CommandResult& result);

  std::string stdout_;
  bool too_much_ = false;
};

// Buildbot's MasterShellCommand: a process on the master, run from a thread
// this step owns; output and completion come back through post().
class MasterShellStep : public sdk::Step {
 public:
  MasterShellStep(sdk::Context ctx, const json& config);
  ~MasterShellStep() override;
  static sdk::Status validate(const json& config);
  sdk::Status run() override;
  void interrupt(std::string_view reason) override;

 private:
  void watch(int out_fd, int err_fd, int wake_fd);
  void complete(int wait_status);
  void kill_group(int signal);

  RunInfo info_;
  uint64_t stdio_ = 0;
  std::thread thread_;
  std::mutex mutex_;  // pid_ and the wake pipe, shared with the thread
  int pid_ = -1;
  int wake_write_ = -1;
  int wake_read_ = -1;  // the watcher's; closed by the destructor
  std::atomic<bool> stopping_{false};
  bool interrupted_ = false;
  int interrupt_signal_ = 9;
};

// Buildbot's FileUpload, FileDownload and DirectoryUpload: one transfer
// command each, whose bytes the host moves.
class TransferStep : public CommandStep {
 public:
  enum class Kind { kFileUpload, kFileDownload, kDirectoryUpload };

  TransferStep(sdk::Context ctx, const json& config, Kind kind)
      : CommandStep(std::move(ctx), config), kind_(kind) {}
  sdk::Status run() override;

 protected:
  static sdk::Status validate_mode(const json& config);

 private:
  void complete(const sdk::CommandResult& result);

  Kind kind_;
  std::string description_;
};

class FileUploadStep : public TransferStep {
 public:
  FileUploadStep(sdk::Context ctx, const json& config) : TransferStep(std::move(ctx), config, Kind::kFileUpload) {}
  static sdk::Status validate(const json& config) { return validate_mode(config); }
};
class FileDownloadStep : public TransferStep {
 public:
  FileDownloadStep(sdk::Context ctx, const json& config)
      : TransferStep(std::move(ctx), config, Kind::kFileDownload) {}
  static sdk::Status validate(const json& config) { return validate_mode(config); }
};
class DirectoryUploadStep : public TransferStep {
 public:
  DirectoryUploadStep(sdk::Context ctx, const json& config)
      : TransferStep(std::move(ctx), config, Kind::kDirectoryUpload) {}
};

}  // namespace kiln::std_steps
