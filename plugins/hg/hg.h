#pragma once
// The two components of kiln-hg: HgPoller (change source `hg-poller`,
// Buildbot's HgPoller) and HgStep (step `hg`, Buildbot's Mercurial source
// step).

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::hg {

namespace sdk = kiln::sdk;
using nlohmann::json;

extern const char* const kPollerSchema;
extern const char* const kStepSchema;

// Pulls the wanted branches and bookmarks into a local mirror in the
// master's folder with the hg command line, and reports one change per
// changeset that no previously known head reached.
class HgPoller : public sdk::Poller {
 public:
  HgPoller(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

  sdk::Status start() override;

 protected:
  void poll_once(PollDone done) override;

 private:
  // What one poll carries from one hg command to the next.
  struct Round {
    PollDone done;
    std::map<std::string, std::string> heads;  // "branch:NAME" / "bookmark:NAME" -> node
    std::vector<std::string> order;
    size_t next = 0;
    std::vector<std::string> known_before;
  };
  using Next = std::function<void(const sdk::ProgramResult&)>;

  void hg(std::vector<std::string> args, Next next, bool in_mirror = true);
  void load_state(std::shared_ptr<Round> round);
  void ensure_mirror(std::shared_ptr<Round> round);
  void pull(std::shared_ptr<Round> round);
  void read_heads(std::shared_ptr<Round> round);
  void read_bookmarks(std::shared_ptr<Round> round);
  void process_next(std::shared_ptr<Round> round);
  void add_changes(std::shared_ptr<Round> round, std::shared_ptr<std::vector<json>> changes, size_t index,
                   std::function<void()> then);
  void finish(std::shared_ptr<Round> round, const sdk::Status& status);
  void save_state(std::function<void(const sdk::Status&)> then);

  std::string repourl_;
  std::string mirror_;
  std::vector<std::string> branches_, bookmarks_;
  bool use_commit_timestamps_ = true;
  json category_, project_, codebase_;

  bool state_loaded_ = false;
  bool mirror_ready_ = false;
  std::optional<std::map<std::string, std::string>> known_;  // as Round::heads
};

// Checks out the build's source stamp with the worker's hg, through worker
// commands only, written as straight-line code on the step SDK.
class HgStep : public sdk::SimpleStep {
 public:
  HgStep(sdk::Context ctx, const json& config);
  static sdk::Status validate(const json& config);

  sdk::StepResult run() override;

 private:
  sdk::CommandOutcome hg(std::vector<std::string> args, bool collect = false,
                         std::optional<std::string> stdin_text = std::nullopt);
  void header(const std::string& text);
  bool updatable();
  bool clone();
  bool clobber();
  bool pull();
  bool update();
  bool purge(bool also_ignored);
  bool remove_added_files();

  std::string repourl_config_, mode_, method_, branch_type_, default_branch_, codebase_;
  bool clobber_on_branch_change_ = true;
  bool always_use_latest_ = false;

  std::string repourl_;        // for this build
  std::string update_branch_;  // inrepo: the named branch to update to
  std::string revision_;
  std::string workdir_;
  std::optional<sdk::StepLog> stdio_;
};

}  // namespace kiln::hg
