// The `svn` step: Buildbot's SVN source step (steps/source/svn.py) as
// straight-line code on the step SDK, on worker commands alone, so it checks
// out the same way on the local worker, kiln-worker and a real
// buildbot-worker.

#include "svn.h"

#include <kiln/sdk/source.hpp>

#include <utility>

namespace kiln::svn {

namespace {

std::string text_or(const json& object, const char* key, const std::string& fallback) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return fallback;
  return it->get<std::string>();
}

// Buildbot's svnUriCanonicalize, for what matters when comparing with what
// `svn info` prints: no trailing slash.
std::string canonical_url(std::string url) {
  while (url.size() > 1 && url.back() == '/' && url[url.size() - 2] != '/') url.pop_back();
  return url;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

SvnStep::SvnStep(sdk::Context ctx, const json& config) : SimpleStep(std::move(ctx), config) {
  repourl_config_ = config.value("repourl", "");
  base_url_ = config.value("base_url", "");
  default_branch_ = config.value("default_branch", "trunk");
  mode_ = config.value("mode", "incremental");
  method_ = text_or(config, "method", mode_ == "full" ? "fresh" : "");
  codebase_ = config.value("codebase", "");
  username_ = config.value("username", "");
  if (auto it = config.find("password"); it != config.end() && it->is_string()) password_ = it->get<std::string>();
  for (const auto& a : config.value("extra_args", json::array())) {
    if (a.is_string()) extra_args_.push_back(a.get<std::string>());
  }
  always_use_latest_ = config.value("always_use_latest", false);
}

sdk::Status SvnStep::validate(const json& config) {
  const bool repourl = !config.value("repourl", "").empty();
  const bool base_url = !config.value("base_url", "").empty();
  if (repourl == base_url) {
    return sdk::invalid_config(repourl ? "give repourl or base_url, not both"
                                       : "repourl (or base_url, to which the branch is appended) is required");
  }
  if (config.value("mode", "incremental") == "incremental" && config.contains("method") && config["method"].is_string()) {
    return sdk::invalid_config("method '" + config["method"].get<std::string>() +
                               "' applies to mode full only; incremental mode updates in place");
  }
  return {};
}

sdk::StepResult SvnStep::run() {
  stdio_ = add_log("stdio");
  workdir_ = common("workdir").is_string() ? common("workdir").get<std::string>() : "build";
  if (workdir_.empty()) workdir_ = "build";
  set_summary("updating");

  const sdk::SourceStamp ss = sdk::build_source_stamp(*this, codebase_);
  repourl_ = !base_url_.empty() ? base_url_ + (ss.branch.empty() ? default_branch_ : ss.branch) : repourl_config_;
  if (!always_use_latest_) revision_ = ss.revision;
  header("repository " + repourl_ + (revision_.empty() ? "" : ", revision " + revision_) + ", mode " + mode_ +
         (method_.empty() ? "" : "/" + method_) + "\n");

  sdk::ShellOptions quiet;
  quiet.workdir = workdir_;
  quiet.log_environ = false;
  if (!shell(json::array({"svn", "--version", "--quiet"}), quiet).ok()) {
    return {KILN_FAILURE, "svn is not installed on the worker"};
  }
  // What the last build's patch left must go before svn merges into it.
  if (sdk::was_patched(*this, workdir_)) {
    header("the last build applied a patch here: cleaning the tree\n");
    if (!purge(workdir_, false)) return {KILN_FAILURE, "update (failure)"};
    command("rmfile", {{"path", workdir_ + "/" + sdk::kPatchedMarker}});
  }

  bool checked_out = false;
  if (mode_ == "incremental") {
    checked_out = incremental(workdir_);
  } else if (method_ == "clobber") {
    checked_out = clobber(workdir_);
  } else if (method_ == "copy" || method_ == "export") {
    checked_out = copy_or_export();
  } else if (!updatable(workdir_)) {
    checked_out = clobber(workdir_);
  } else {
    checked_out = purge(workdir_, method_ == "fresh") && update(workdir_);
  }
  if (interrupted()) return KILN_CANCELLED;
  if (!checked_out) return {KILN_FAILURE, "update (failure)"};

  if (!always_use_latest_ && ss.patch && !sdk::apply_patch(*this, *ss.patch, workdir_, *stdio_)) {
    return {KILN_FAILURE, "update (patch failed)"};
  }

  // An export has no .svn: ask the pristine copy it came from.
  const std::string versioned = mode_ == "full" && method_ == "export" ? source_dir() : workdir_;
  auto info = svn(versioned, {"info", "--show-item", "revision"}, true);
  const std::string revision = trimmed(info.stdout_text);
  if (!info.ok() || revision.empty()) return {KILN_FAILURE, "cannot read the checked out revision"};
  header("got revision " + revision + "\n");
  json value = revision;
  if (!codebase_.empty()) {
    // Several repositories in one build: {codebase: revision}, as Buildbot.
    json existing = property("got_revision");
    value = existing.is_object() ? existing : json::object();
    value[codebase_] = revision;
  }
  set_property("got_revision", value, "SVN");
  return {KILN_SUCCESS, "update r" + revision};
}

void SvnStep::header(const std::string& text) { stdio_->write(text, KILN_STREAM_HEADER); }

sdk::CommandOutcome SvnStep::svn(const std::string& dir, std::vector<std::string> args, bool collect) {
  json argv = json::array({"svn"});
  for (auto& a : args) argv.push_back(std::move(a));
  argv.push_back("--non-interactive");
  argv.push_back("--no-auth-cache");
  if (!username_.empty()) argv.push_back("--username=" + username_);
  if (!password_.empty()) argv.push_back("--password=" + password_);
  for (const auto& a : extra_args_) argv.push_back(a);
  sdk::ShellOptions options;
  options.workdir = dir;
  options.log_environ = false;
  options.collect_stdout = collect;
  return shell(argv, options);
}

std::string SvnStep::source_dir() const { return codebase_.empty() ? "source" : "source/" + codebase_; }

std::vector<std::string> SvnStep::revision_args() const {
  if (revision_.empty()) return {};
  return {"--revision", revision_};
}

// Buildbot's _sourcedirIsUpdatable: a working copy of this very URL.
bool SvnStep::updatable(const std::string& dir) {
  if (!command("stat", {{"file", dir + "/.svn"}}).ok()) return false;
  auto url = svn(dir, {"info", "--show-item", "url"}, true);
  if (!url.ok()) return false;  // e.g. an interrupted operation: start over
  const bool same = trimmed(url.stdout_text) == canonical_url(repourl_);
  if (!same) header("the working copy is of " + trimmed(url.stdout_text) + ": checking out afresh\n");
  return same;
}

bool SvnStep::incremental(const std::string& dir) { return updatable(dir) ? update(dir) : clobber(dir); }

bool SvnStep::update(const std::string& dir) {
  std::vector<std::string> args = {"update"};
  for (auto& a : revision_args()) args.push_back(a);
  return svn(dir, args).ok();
}

bool SvnStep::clobber(const std::string& dir) {
  if (!command("rmdir", {{"dir", dir}}, "stdio").ok()) {
    header("cannot remove " + dir + "\n");
    return false;
  }
  return checkout(dir);
}

bool SvnStep::checkout(const std::string& dir) {
  std::vector<std::string> args = {"checkout", repourl_, "."};
  for (auto& a : revision_args()) args.push_back(a);
  return svn(dir, args).ok();
}

// Buildbot's purge: every local modification and unversioned file goes
// (ignored ones too when also_ignored), so the update that follows gives the
// pristine tree.
bool SvnStep::purge(const std::string& dir, bool also_ignored) {
  if (!svn(dir, {"revert", "--recursive", "."}).ok()) return false;
  std::vector<std::string> args = {"cleanup", "--remove-unversioned"};
  if (also_ignored) args.push_back("--remove-ignored");
  args.push_back(".");
  return svn(dir, args).ok();
}

// A pristine working copy in `source`, updated incrementally, copied (or
// exported) over a removed workdir: every build starts from a clean tree
// without a full checkout.
bool SvnStep::copy_or_export() {
  if (!command("rmdir", {{"dir", workdir_}}, "stdio").ok()) return false;
  const std::string source = source_dir();
  if (!incremental(source)) return false;
  if (method_ == "copy") return command("cpdir", {{"fromdir", source}, {"todir", workdir_}}, "stdio").ok();
  std::vector<std::string> args = {"export"};
  for (auto& a : revision_args()) args.push_back(a);
  args.push_back(source);
  args.push_back(workdir_);
  return svn(".", args).ok();
}

}  // namespace kiln::svn
