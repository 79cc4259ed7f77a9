// The `hg` step: Buildbot's Mercurial source step (steps/source/mercurial.py)
// as straight-line code on the step SDK, on worker commands alone, so it
// checks out the same way on the local worker, kiln-worker and a real
// buildbot-worker.

#include "hg.h"

#include <kiln/sdk/source.hpp>

#include <sstream>
#include <utility>

namespace kiln::hg {

namespace {

std::string text_or(const json& object, const char* key, const std::string& fallback) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return fallback;
  return it->get<std::string>();
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

HgStep::HgStep(sdk::Context ctx, const json& config) : SimpleStep(std::move(ctx), config) {
  repourl_config_ = config.value("repourl", "");
  mode_ = config.value("mode", "incremental");
  method_ = text_or(config, "method", mode_ == "full" ? "fresh" : "");
  branch_type_ = config.value("branch_type", "dirname");
  default_branch_ = text_or(config, "default_branch", "default");
  clobber_on_branch_change_ = config.value("clobber_on_branch_change", true);
  codebase_ = config.value("codebase", "");
  always_use_latest_ = config.value("always_use_latest", false);
}

sdk::Status HgStep::validate(const json& config) {
  if (config.value("repourl", "").empty()) return sdk::invalid_config("repourl must not be empty");
  if (config.value("mode", "incremental") == "incremental" && config.contains("method") && config["method"].is_string()) {
    return sdk::invalid_config("method '" + config["method"].get<std::string>() +
                               "' applies to mode full only; incremental mode updates in place");
  }
  return {};
}

sdk::StepResult HgStep::run() {
  stdio_ = add_log("stdio");
  workdir_ = common("workdir").is_string() && !common("workdir").get<std::string>().empty()
                 ? common("workdir").get<std::string>()
                 : "build";
  set_summary("updating");

  const sdk::SourceStamp ss = sdk::build_source_stamp(*this, codebase_);
  const std::string branch = ss.branch.empty() ? default_branch_ : ss.branch;
  if (branch_type_ == "dirname") {
    repourl_ = repourl_config_ + (ss.branch.empty() ? std::string() : ss.branch);
  } else {
    repourl_ = repourl_config_;
    update_branch_ = branch;
  }
  if (!always_use_latest_) revision_ = ss.revision;
  header("repository " + repourl_ + (update_branch_.empty() ? "" : ", branch " + update_branch_) +
         (revision_.empty() ? "" : ", revision " + revision_) + ", mode " + mode_ +
         (method_.empty() ? "" : "/" + method_) + "\n");

  if (!hg({"--version", "--quiet"}).ok()) return {KILN_FAILURE, "hg is not installed on the worker"};

  bool checked_out = false;
  if (mode_ == "full" && method_ == "clobber") {
    checked_out = clobber();
  } else if (!updatable()) {
    // Whatever is there is no clone: start from an empty folder.
    checked_out = clobber();
  } else if (mode_ == "full") {
    checked_out = purge(method_ == "fresh") && pull() && update();
  } else {
    checked_out = pull();
    if (checked_out && branch_type_ == "inrepo" && revision_.empty()) {
      // Buildbot's _checkBranchChange: another named branch means a clone.
      auto current = hg({"identify", "--branch"}, true);
      const std::string on = trimmed(current.stdout_text);
      if (current.ok() && on != update_branch_ && clobber_on_branch_change_) {
        header("the working copy is on branch " + on + ", the build needs " + update_branch_ + ": cloning afresh\n");
        checked_out = clobber();
      } else {
        checked_out = remove_added_files() && update();
      }
    } else if (checked_out) {
      checked_out = remove_added_files() && update();
    }
  }
  if (interrupted()) return KILN_CANCELLED;
  if (!checked_out) return {KILN_FAILURE, "update (failure)"};

  if (!always_use_latest_ && ss.patch) {
    // hg import applies at a level and below a folder itself.
    std::vector<std::string> args = {"import", "--no-commit", "-p", std::to_string(ss.patch->level)};
    if (!ss.patch->subdir.empty() && ss.patch->subdir != ".") args.insert(args.end(), {"--prefix", ss.patch->subdir});
    args.push_back("-");
    if (!hg(args, false, ss.patch->body).ok()) return {KILN_FAILURE, "update (patch failed)"};
  }

  auto parents = hg({"log", "-r", ".", "--template", "{node}\\n"}, true);
  const std::string revision = trimmed(parents.stdout_text);
  if (!parents.ok() || revision.size() != 40) return {KILN_FAILURE, "cannot read the checked out revision"};
  json value = revision;
  if (!codebase_.empty()) {
    // Several repositories in one build: {codebase: revision}, as Buildbot.
    json existing = property("got_revision");
    value = existing.is_object() ? existing : json::object();
    value[codebase_] = revision;
  }
  set_property("got_revision", value, "Mercurial");
  return {KILN_SUCCESS, "update " + revision.substr(0, 12)};
}

void HgStep::header(const std::string& text) { stdio_->write(text, KILN_STREAM_HEADER); }

sdk::CommandOutcome HgStep::hg(std::vector<std::string> args, bool collect, std::optional<std::string> stdin_text) {
  json argv = json::array({"hg", "--noninteractive"});
  for (auto& a : args) argv.push_back(std::move(a));
  sdk::ShellOptions options;
  options.workdir = workdir_;
  options.log_environ = false;
  options.collect_stdout = collect;
  options.initial_stdin = std::move(stdin_text);
  // Plain output whatever the worker's hgrc says (no pager, color or i18n).
  options.env = {{"HGPLAIN", "1"}};
  return shell(argv, options);
}

bool HgStep::updatable() { return command("stat", {{"file", workdir_ + "/.hg"}}).ok(); }

bool HgStep::clone() { return hg({"clone", "--noupdate", repourl_, "."}).ok(); }

bool HgStep::clobber() {
  if (!command("rmdir", {{"dir", workdir_}}, "stdio").ok()) {
    header("cannot remove " + workdir_ + "\n");
    return false;
  }
  return clone() && update();
}

bool HgStep::pull() {
  std::vector<std::string> args = {"pull", repourl_};
  if (!revision_.empty()) {
    args.insert(args.end(), {"--rev", revision_});
  } else if (branch_type_ == "inrepo") {
    args.insert(args.end(), {"--rev", update_branch_});
  }
  return hg(args).ok();
}

bool HgStep::update() {
  std::vector<std::string> args = {"update", "--clean"};
  if (!revision_.empty()) {
    args.insert(args.end(), {"--rev", revision_});
  } else if (branch_type_ == "inrepo") {
    args.insert(args.end(), {"--rev", update_branch_});
  }
  return hg(args).ok();
}

bool HgStep::purge(bool also_ignored) {
  std::vector<std::string> args = {"--config", "extensions.purge=", "purge"};
  if (also_ignored) args.push_back("--all");
  return hg(args).ok();
}

// Files a patch added (hg import --no-commit) stay behind as unknown files
// after `update --clean`: Buildbot removes them first.
bool HgStep::remove_added_files() {
  auto added = hg({"status", "--added", "--no-status"}, true);
  if (!added.ok()) return false;
  json paths = json::array();
  std::istringstream lines(added.stdout_text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) paths.push_back(workdir_ + "/" + line);
  }
  if (paths.empty()) return true;
  return command("rmdir", {{"dir", paths}}, "stdio").ok();
}

}  // namespace kiln::hg
