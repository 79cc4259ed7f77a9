#pragma once
// Process plumbing for `kiln start`/`kiln stop`: the pid file in the master
// folder and detaching from the terminal with a readiness report, so that
// `kiln start` prints the real outcome of start-up, not just "forked".

#include <filesystem>
#include <optional>
#include <string>

#include <sys/types.h>

namespace kiln::cli {

std::filesystem::path pid_file_of(const std::filesystem::path& master_dir);

// The pid recorded in the folder's pid file when that process still runs.
std::optional<pid_t> running_master_pid(const std::filesystem::path& master_dir);

// Writes our pid; removes the file again when destroyed.
class PidFile {
 public:
  explicit PidFile(std::filesystem::path path);
  ~PidFile();
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::filesystem::path path_;
};

// Forks. In the parent, waits for the child to report and returns its exit
// code (never returns to the caller's code path: the parent should exit with
// the value). In the child returns std::nullopt, detached from the terminal;
// the child must call report_ready() once start-up succeeded or failed.
std::optional<int> daemonize();
void report_ready(bool ok, const std::string& message);

}  // namespace kiln::cli
