#pragma once
// The two components of kiln-svn: SvnPoller (change source `svn-poller`,
// Buildbot's SVNPoller) and SvnStep (step `svn`, Buildbot's SVN source
// step).

#include "svn_text.h"

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::svn {

namespace sdk = kiln::sdk;
using nlohmann::json;

extern const char* const kPollerSchema;
extern const char* const kStepSchema;

// Runs `svn log --xml --verbose` over repourl on its own thread and reports
// the revisions newer than the last one it saw, one change per revision and
// branch, after its split_file has placed each path.
class SvnPoller : public sdk::Poller {
 public:
  SvnPoller(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

 protected:
  void poll_once(PollDone done) override;

 private:
  using Next = std::function<void(const sdk::ProgramResult&)>;

  void svn(std::vector<std::string> args, Next next);
  void load_state(PollDone done);
  void read_info(PollDone done);
  void read_log(PollDone done);
  // The changes of one revision (one per branch, project and repository it
  // touched); an error when the split_file policy fails.
  sdk::Result<std::vector<json>> changes_of(const LogEntry& entry) const;
  sdk::Result<json> split(const std::string& path) const;
  void add_changes(std::shared_ptr<std::vector<std::pair<int64_t, json>>> changes, size_t index, PollDone done);
  void save_state(PollDone done, sdk::Status outcome);

  std::string repourl_;
  std::string split_file_;  // "" for all files on the default branch
  std::vector<std::string> credentials_;  // --username, --password and extra_args
  json project_, category_, codebase_;
  std::string revlink_template_;
  bool use_commit_timestamps_ = true;

  bool state_loaded_ = false;
  std::optional<std::string> prefix_;        // repourl below the root; known after svn info
  std::optional<int64_t> last_revision_;     // nullopt until a first poll recorded it
};

// Checks out the build's source stamp with the worker's svn, through worker
// commands only (shell, stat, rmdir, cpdir, downloadFile, rmfile), written
// as straight-line code on the step SDK.
class SvnStep : public sdk::SimpleStep {
 public:
  SvnStep(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

  sdk::StepResult run() override;

 private:
  // Runs `svn args... --non-interactive --no-auth-cache [credentials]` in dir.
  sdk::CommandOutcome svn(const std::string& dir, std::vector<std::string> args, bool collect = false);
  void header(const std::string& text);
  bool updatable(const std::string& dir);
  bool incremental(const std::string& dir);
  bool clobber(const std::string& dir);
  bool checkout(const std::string& dir);
  bool update(const std::string& dir);
  bool purge(const std::string& dir, bool also_ignored);
  bool copy_or_export();
  std::vector<std::string> revision_args() const;
  std::string source_dir() const;

  std::string repourl_config_, base_url_, default_branch_;
  std::string mode_, method_;
  std::string codebase_;
  std::string username_, password_;
  std::vector<std::string> extra_args_;
  bool always_use_latest_ = false;

  std::string repourl_;  // for this build
  std::string revision_;
  std::string workdir_;
  std::optional<sdk::StepLog> stdio_;
};

}  // namespace kiln::svn
