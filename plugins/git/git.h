#pragma once
// The two components of kiln-git: GitPoller (change source `git-poller`,
// Buildbot's GitPoller) and GitStep (step `git`, Buildbot's Git source step).

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace kiln::git {

namespace sdk = kiln::sdk;
using nlohmann::json;

extern const char* const kPollerSchema;
extern const char* const kStepSchema;

// Keeps a bare mirror of the repository in the master's folder, fetched
// with the git command line, and reports one change per commit that no
// previously known head reached.
class GitPoller : public sdk::Poller {
 public:
  GitPoller(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

  sdk::Status start() override;

 protected:
  void poll_once(PollDone done) override;

 private:
  // What one poll carries from one git command to the next.
  struct Round {
    PollDone done;
    std::map<std::string, std::string> heads;  // wanted ref -> commit, after the fetch
    std::vector<std::string> order;            // wanted refs, sorted
    size_t next_ref = 0;
    std::map<std::string, std::string> known_before;  // to log deletions
  };
  using Next = std::function<void(const sdk::ProgramResult&)>;

  void git(std::vector<std::string> args, Next next, bool in_mirror = true);
  void load_state(std::shared_ptr<Round> round);
  void ensure_mirror(std::shared_ptr<Round> round);
  void list_remote(std::shared_ptr<Round> round);
  void fetch(std::shared_ptr<Round> round, std::vector<std::string> wanted);
  void read_heads(std::shared_ptr<Round> round);
  void process_next_ref(std::shared_ptr<Round> round);
  void report(std::shared_ptr<Round> round, const std::string& ref, std::vector<std::string> revisions,
              size_t offset);
  void add_changes(std::shared_ptr<Round> round, const std::string& ref, std::vector<json> changes,
                   size_t index, std::function<void()> then);
  void finish_round(std::shared_ptr<Round> round, const sdk::Status& status);
  std::vector<std::string> select_refs(const std::map<std::string, std::string>& remote,
                                       const std::string& head_target) const;
  void save_state(std::function<void(const sdk::Status&)> then);

  std::string repourl_;
  std::string mirror_;
  std::optional<std::vector<std::string>> branch_list_;  // normalized to refs
  std::optional<std::regex> branch_regex_;
  bool all_branches_ = false;
  bool only_tags_ = false;
  bool use_commit_timestamps_ = true;
  bool build_pushes_with_no_commits_ = false;
  json category_, project_, codebase_;

  bool state_loaded_ = false;
  bool mirror_ready_ = false;
  // Heads seen by the last poll; nullopt until a first poll has recorded them.
  std::optional<std::map<std::string, std::string>> known_;
};

// Checks out the build's source stamp on the worker, with worker commands
// only: `shell` running git, `listdir`, `rmdir`, `cpdir`, `downloadFile`,
// `rmfile`.
class GitStep : public sdk::Step {
 public:
  GitStep(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

  sdk::Status run() override;
  void interrupt(std::string_view reason) override;

 private:
  using Then = std::function<void()>;
  using RcThen = std::function<void(int rc)>;

  struct GitResult {
    int rc = -1;
    std::string out;
  };

  // The steps of Buildbot's Git step, each continuing with `then`.
  void read_sourcestamp(Then then);
  void use_sourcestamp(const json& ss);
  void start_vc();
  void mode_incremental(const std::string& dir, Then then);
  void mode_full(Then then);
  void updatable(const std::string& dir, std::function<void(const std::string& action)> then);
  void clean(const std::string& dir, bool fresh, Then then);
  void clobber(const std::string& dir, Then then);
  void copy(Then then);
  void full_clone_or_fallback(const std::string& dir, Then then);
  void full_clone(const std::string& dir, RcThen then);
  void clone(const std::string& dir, RcThen then);
  void fetch_or_fallback(const std::string& dir, Then then);
  void fetch(const std::string& dir, RcThen then);
  void undo_patch(const std::string& dir, Then then);
  void update_submodules(const std::string& dir, bool clean_them, Then then);
  void apply_patch(Then then);
  void got_revision();

  // Runs `git args...` in dir; stdout is captured for `then` as well as logged.
  void git(const std::string& dir, std::vector<std::string> args,
           std::function<void(const GitResult&)> then);
  // Any other worker command; `then` gets its rc (and the updates it sent).
  void worker(const std::string& name, const json& args,
              std::function<void(int rc, const std::vector<json>& updates)> then);
  // Stops the step unless a command's completion says to go on.
  bool settled(const sdk::CommandResult& result);
  void fail(const std::string& why);
  void header(const std::string& text);

  std::string repourl_;
  std::string mode_, method_;
  std::string default_branch_;
  std::string codebase_;
  int shallow_ = 0;
  bool submodules_ = false;
  bool retry_fetch_ = false;
  bool clobber_on_failure_ = false;
  bool always_use_latest_ = false;
  double retry_delay_s_ = 0;
  int retry_repeats_ = 0;

  json info_;
  std::string workdir_;
  std::string branch_ = "HEAD";
  std::string revision_;
  json patch_;  // null or {"level", "body", "subdir"}
  bool interrupted_ = false;
  uint64_t stdio_ = 0;
  std::unique_ptr<sdk::ProgramRunner> files_;  // writes the patch on its own thread
};

}  // namespace kiln::git
