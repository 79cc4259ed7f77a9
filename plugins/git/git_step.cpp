// The `git` step: Buildbot's Git source step (steps/source/git.py) on
// worker commands alone, so it checks out the same way on the local worker,
// kiln-worker and a real buildbot-worker. Each phase is a worker command
// whose completion continues with the next one.

#include "git.h"
#include "git_text.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

namespace kiln::git {

namespace {

constexpr const char* kPatchFile = ".kiln-diff";
// Git config key that marks a working copy a patch was applied to: the next
// update first removes what the patch left behind (Buildbot's
// .buildbot-patched file, kept where no build output can clash with it).
constexpr const char* kPatchedKey = "kiln.patched";
constexpr size_t kMaxCaptured = size_t{1} << 20;

int shallow_depth(const json& value) {
  if (value.is_boolean()) return value.get<bool>() ? 1 : 0;
  if (value.is_number_integer()) return std::max(0, value.get<int>());
  return 0;
}

std::string text_or(const json& object, const char* key, const std::string& fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) return fallback;
  return it->get<std::string>();
}

}  // namespace

GitStep::GitStep(sdk::Context ctx, const json& config) : Step(std::move(ctx), config) {
  repourl_ = config.value("repourl", "");
  mode_ = config.value("mode", "incremental");
  method_ = text_or(config, "method", mode_ == "full" ? "fresh" : "");
  default_branch_ = text_or(config, "branch", "HEAD");
  codebase_ = config.value("codebase", "");
  shallow_ = shallow_depth(config.value("shallow", json(false)));
  submodules_ = config.value("submodules", false);
  retry_fetch_ = config.value("retry_fetch", false);
  clobber_on_failure_ = config.value("clobber_on_failure", false);
  always_use_latest_ = config.value("always_use_latest", false);
  if (auto it = config.find("retry"); it != config.end() && it->is_array() && it->size() == 2) {
    retry_delay_s_ = (*it)[0].get<double>();
    retry_repeats_ = (*it)[1].get<int>();
  }
}

sdk::Status GitStep::validate(const json& config) {
  if (config.value("repourl", "").empty()) return sdk::invalid_config("repourl must not be empty");
  const std::string mode = config.value("mode", "incremental");
  if (mode == "incremental" && config.contains("method") && config["method"].is_string()) {
    return sdk::invalid_config("method '" + config["method"].get<std::string>() +
                               "' applies to mode full only; incremental mode updates in place");
  }
  if (auto it = config.find("retry"); it != config.end() && !it->is_null()) {
    if (!it->is_array() || it->size() != 2 || !(*it)[0].is_number() || !(*it)[1].is_number_integer() ||
        (*it)[0].get<double>() < 0 || (*it)[1].get<int>() < 0) {
      return sdk::invalid_config("retry must be [delay seconds, repeats], e.g. [10, 3]");
    }
  }
  return {};
}

sdk::Status GitStep::run() {
  if (auto info = context().info(); info.ok() && info->is_object()) info_ = *info;
  const json common = info_.value("common", json::object());
  workdir_ = text_or(common, "workdir", "build");
  auto log = stdio_log();
  if (!log) return log.status();
  stdio_ = *log;
  set_summary("updating");
  read_sourcestamp([this] { start_vc(); });
  return {};
}

void GitStep::interrupt(std::string_view reason) {
  interrupted_ = true;
  Step::interrupt(reason);
}

void GitStep::header(const std::string& text) {
  if (stdio_ != 0 && !finished()) append_log(stdio_, text, KILN_STREAM_HEADER);
}

void GitStep::fail(const std::string& why) {
  if (finished()) return;
  header(why + "\n");
  finish(KILN_FAILURE, "update (failure)");
}

bool GitStep::settled(const sdk::CommandResult& result) {
  if (finished()) return false;
  if (interrupted_) {
    finish(KILN_CANCELLED, "update (cancelled)");
    return false;
  }
  if (result.lost) {
    header("the worker was lost\n");
    finish(KILN_RETRY, "update (retry)");
    return false;
  }
  if (!result.failure.empty()) {
    fail(result.failure);
    return false;
  }
  return true;
}

void GitStep::git(const std::string& dir, std::vector<std::string> args,
                  std::function<void(const GitResult&)> then) {
  if (finished()) return;
  json command = json::array({"git"});
  for (auto& a : args) command.push_back(std::move(a));
  auto captured = std::make_shared<std::string>();
  auto started = shell(
      {{"command", command}, {"workdir", dir}, {"logEnviron", false}},
      [this, captured](kiln_stream stream, std::string_view data) {
        append_log(stdio_, data, stream);
        if (stream == KILN_STREAM_STDOUT && captured->size() < kMaxCaptured) captured->append(data);
      },
      [this, captured, then = std::move(then)](const sdk::CommandResult& result) {
        if (!settled(result)) return;
        then(GitResult{result.rc, *captured});
      });
  if (!started) fail("cannot start git: " + started.status().message());
}

void GitStep::worker(const std::string& name, const json& args,
                     std::function<void(int rc, const std::vector<json>& updates)> then) {
  if (finished()) return;
  auto updates = std::make_shared<std::vector<json>>();
  sdk::CommandHandlers handlers;
  handlers.on_output = [this](kiln_stream stream, std::string_view data) { append_log(stdio_, data, stream); };
  handlers.on_update = [updates](const json& update) { updates->push_back(update); };
  handlers.on_complete = [this, updates, then = std::move(then)](const sdk::CommandResult& result) {
    if (!settled(result)) return;
    then(result.rc, *updates);
  };
  auto started = command(name, args, std::move(handlers));
  if (!started) fail("cannot start " + name + ": " + started.status().message());
}

// ---------------------------------------------------------------------------
// The source stamp: builds/N -> its request -> its buildset's stamps.

void GitStep::read_sourcestamp(Then then) {
  auto from_properties = [this, then](const std::string& why) {
    if (finished()) return;
    if (!why.empty()) header("cannot read the build's source stamp (" + why + "); using its properties\n");
    json ss = json::object();
    if (codebase_.empty() || property("codebase").value_or(json()) == codebase_) {
      ss["branch"] = property("branch").value_or(json());
      ss["revision"] = property("revision").value_or(json());
    }
    use_sourcestamp(ss);
    then();
  };
  auto buildid = info_.find("buildid");
  if (buildid == info_.end() || !buildid->is_number_integer()) return from_properties("");
  auto step = [this, from_properties](const std::string& path, std::function<void(const json&)> next) {
    sdk::Status asked = context().data_get(path, nullptr, [from_properties, path, next](sdk::Result<json> r) {
      if (!r.ok()) return from_properties(path + ": " + r.status().message());
      next(*r);
    });
    if (!asked.ok()) from_properties(path + ": " + asked.message());
  };
  step("builds/" + std::to_string(buildid->get<int64_t>()), [this, step, from_properties, then](const json& build) {
    if (!build.contains("buildrequestid") || !build["buildrequestid"].is_number_integer()) {
      return from_properties("the build has no request");
    }
    step("buildrequests/" + std::to_string(build["buildrequestid"].get<int64_t>()),
         [this, step, from_properties, then](const json& request) {
           if (!request.contains("buildsetid") || !request["buildsetid"].is_number_integer()) {
             return from_properties("the request has no buildset");
           }
           step("buildsets/" + std::to_string(request["buildsetid"].get<int64_t>()),
                [this, then](const json& buildset) {
                  json chosen = json::object();
                  for (const auto& ss : buildset.value("sourcestamps", json::array())) {
                    if (ss.is_object() && ss.value("codebase", "") == codebase_) chosen = ss;
                  }
                  if (finished()) return;
                  use_sourcestamp(chosen);
                  then();
                });
         });
  });
}

void GitStep::use_sourcestamp(const json& ss) {
  branch_ = text_or(ss, "branch", default_branch_);
  if (always_use_latest_) return;
  revision_ = text_or(ss, "revision", "");
  if (ss.contains("patch") && ss["patch"].is_object() && !text_or(ss["patch"], "body", "").empty()) {
    patch_ = ss["patch"];
  }
}

// ---------------------------------------------------------------------------
// Modes and methods

void GitStep::start_vc() {
  header("repository " + repourl_ + ", branch " + branch_ + (revision_.empty() ? "" : ", revision " + revision_) +
         ", mode " + mode_ + (method_.empty() ? "" : "/" + method_) + "\n");
  // In the workdir: the worker creates it if needed, and an empty folder
  // reads as "clone" below.
  git(workdir_, {"--version"}, [this](const GitResult& r) {
    if (r.rc != 0) return fail("git is not installed on the worker");
    Then done = [this] { apply_patch([this] { got_revision(); }); };
    if (mode_ == "full") {
      mode_full(std::move(done));
    } else {
      mode_incremental(workdir_, std::move(done));
    }
  });
}

void GitStep::mode_incremental(const std::string& dir, Then then) {
  updatable(dir, [this, dir, then](const std::string& action) {
    if (action == "clobber") return clobber(dir, then);
    if (action == "clone") return full_clone_or_fallback(dir, then);
    undo_patch(dir, [this, dir, then] {
      fetch_or_fallback(dir, [this, dir, then] { update_submodules(dir, false, then); });
    });
  });
}

void GitStep::mode_full(Then then) {
  if (method_ == "clobber") return clobber(workdir_, std::move(then));
  if (method_ == "copy") return copy(std::move(then));
  updatable(workdir_, [this, then](const std::string& action) {
    if (action == "clobber") return clobber(workdir_, then);
    if (action == "clone") return full_clone_or_fallback(workdir_, then);
    clean(workdir_, method_ == "fresh", then);
  });
}

// Buildbot's _sourcedirIsUpdatable: a folder with .git is updated, a
// folder with anything else is clobbered, no folder or an empty one cloned.
void GitStep::updatable(const std::string& dir, std::function<void(const std::string& action)> then) {
  worker("listdir", {{"dir", dir}}, [then](int rc, const std::vector<json>& updates) {
    std::vector<std::string> files;
    bool listed = false;
    for (const auto& u : updates) {
      auto it = u.find("files");
      if (it == u.end() || !it->is_array()) continue;
      listed = true;
      // {"files": [names]}, or Buildbot's PB form [[names]].
      const json& list = !it->empty() && (*it)[0].is_array() ? (*it)[0] : *it;
      for (const auto& f : list) {
        if (f.is_string()) files.push_back(f.get<std::string>());
      }
    }
    if (rc != 0 || !listed || files.empty()) return then("clone");
    then(std::find(files.begin(), files.end(), ".git") != files.end() ? "update" : "clobber");
  });
}

void GitStep::clean(const std::string& dir, bool fresh, Then then) {
  undo_patch(dir, [this, dir, fresh, then] {
    std::vector<std::string> args = {"clean", "-f", "-f", "-d"};
    if (fresh) args.push_back("-x");
    git(dir, args, [this, dir, fresh, then](const GitResult& r) {
      if (r.rc != 0) return fail("git clean failed");
      fetch_or_fallback(dir, [this, dir, then] { update_submodules(dir, true, then); });
    });
  });
}

void GitStep::clobber(const std::string& dir, Then then) {
  worker("rmdir", {{"dir", dir}}, [this, dir, then](int rc, const std::vector<json>&) {
    if (rc != 0) return fail("cannot remove " + dir);
    full_clone(dir, [this, then](int clone_rc) {
      if (clone_rc != 0) return fail("git clone failed");
      then();
    });
  });
}

// A pristine copy in `source`, updated incrementally, then copied over a
// removed workdir: every build starts from a clean tree without a clone.
void GitStep::copy(Then then) {
  worker("rmdir", {{"dir", workdir_}}, [this, then](int rc, const std::vector<json>&) {
    if (rc != 0) return fail("cannot remove " + workdir_);
    mode_incremental("source", [this, then] {
      worker("cpdir", {{"fromdir", "source"}, {"todir", workdir_}}, [this, then](int cp_rc, const std::vector<json>&) {
        if (cp_rc != 0) return fail("cannot copy source to " + workdir_);
        then();
      });
    });
  });
}

void GitStep::full_clone_or_fallback(const std::string& dir, Then then) {
  full_clone(dir, [this, dir, then](int rc) {
    if (rc == 0) return then();
    if (!clobber_on_failure_) return fail("git clone failed");
    header("clone failed; clobbering and cloning again (clobber_on_failure)\n");
    clobber(dir, then);
  });
}

void GitStep::full_clone(const std::string& dir, RcThen then) {
  clone(dir, [this, dir, then](int rc) {
    if (rc != 0) return then(rc);
    auto submodules = [this, dir, then] {
      if (!submodules_) return then(0);
      std::vector<std::string> args = {"submodule", "update", "--init", "--recursive"};
      if (shallow_ > 0) {
        args.push_back("--depth");
        args.push_back(std::to_string(shallow_));
      }
      git(dir, args, [then](const GitResult& r) { then(r.rc); });
    };
    if (revision_.empty()) return submodules();
    git(dir, {"checkout", "-f", revision_}, [then, submodules](const GitResult& r) {
      if (r.rc != 0) return then(r.rc);
      submodules();
    });
  });
}

void GitStep::clone(const std::string& dir, RcThen then) {
  std::vector<std::string> args = {"clone"};
  bool switch_to_branch = branch_ != "HEAD";
  if (branch_ != "HEAD") {
    if (branch_.rfind("refs/", 0) == 0) {
      // `git clone --branch` takes no full ref: fetch it after the clone.
      args.push_back("--no-checkout");
    } else {
      switch_to_branch = false;
      args.push_back("--branch");
      args.push_back(branch_);
    }
  }
  if (shallow_ > 0) {
    args.push_back("--depth");
    args.push_back(std::to_string(shallow_));
  }
  args.push_back(repourl_);
  args.push_back(".");
  git(dir, args, [this, dir, then, switch_to_branch](const GitResult& r) {
    auto after = [this, dir, then](int rc) {
      if (rc == 0 || retry_repeats_ <= 0) return then(rc);
      --retry_repeats_;
      header("clone failed, trying " + std::to_string(retry_repeats_ + 1) + " more time(s) after " +
             std::to_string(static_cast<int>(retry_delay_s_)) + " s\n");
      auto timer = context().start_timer(static_cast<uint64_t>(retry_delay_s_ * 1000), [this, dir, then] {
        if (finished()) return;
        worker("rmdir", {{"dir", dir}}, [this, dir, then](int, const std::vector<json>&) { clone(dir, then); });
      });
      if (!timer) fail("cannot wait to retry: " + timer.status().message());
    };
    if (r.rc == 0 && switch_to_branch) return fetch(dir, after);
    after(r.rc);
  });
}

void GitStep::fetch_or_fallback(const std::string& dir, Then then) {
  fetch(dir, [this, dir, then](int rc) {
    if (rc == 0) return then();
    if (retry_fetch_) {
      header("fetch failed; trying once more (retry_fetch)\n");
      return fetch(dir, [this, then](int again) {
        if (again != 0) return fail("git fetch failed twice");
        then();
      });
    }
    if (clobber_on_failure_) {
      header("fetch failed; clobbering (clobber_on_failure)\n");
      return clobber(dir, then);
    }
    fail("git fetch failed");
  });
}

void GitStep::fetch(const std::string& dir, RcThen then) {
  auto checkout = [this, dir, then] {
    git(dir, {"checkout", "-f", revision_.empty() ? std::string("FETCH_HEAD") : revision_},
        [this, dir, then](const GitResult& r) {
          if (r.rc != 0 || branch_ == "HEAD") return then(r.rc);
          // Name the branch as the build knows it (errors ignored, as in
          // Buildbot: a detached checkout still builds).
          const std::string local = branch_of(branch_);
          if (local.rfind("refs/", 0) == 0) return then(0);
          git(dir, {"checkout", "-B", local}, [then](const GitResult&) { then(0); });
        });
  };
  auto do_fetch = [this, dir, then, checkout] {
    std::vector<std::string> args = {"fetch", "-f"};
    if (shallow_ > 0) {
      args.push_back("--depth");
      args.push_back(std::to_string(shallow_));
    }
    args.push_back(repourl_);
    args.push_back(branch_);
    git(dir, args, [then, checkout](const GitResult& r) {
      if (r.rc != 0) return then(r.rc);
      checkout();
    });
  };
  if (revision_.empty()) return do_fetch();
  // The revision may be here already: no need to ask the server.
  git(dir, {"cat-file", "-e", revision_ + "^{commit}"}, [do_fetch, checkout](const GitResult& r) {
    if (r.rc == 0) return checkout();
    do_fetch();
  });
}

void GitStep::undo_patch(const std::string& dir, Then then) {
  git(dir, {"config", "--get", kPatchedKey}, [this, dir, then](const GitResult& r) {
    if (r.rc != 0) return then();
    header("the last build applied a patch here: removing what it left\n");
    git(dir, {"clean", "-f", "-f", "-d", "-x"}, [this, dir, then](const GitResult& c) {
      if (c.rc != 0) return fail("git clean failed");
      git(dir, {"config", "--unset", kPatchedKey}, [then](const GitResult&) { then(); });
    });
  });
}

void GitStep::update_submodules(const std::string& dir, bool clean_them, Then then) {
  if (!submodules_) return then();
  git(dir, {"submodule", "sync"}, [this, dir, clean_them, then](const GitResult& r) {
    if (r.rc != 0) return fail("git submodule sync failed");
    std::vector<std::string> args = {"submodule", "update", "--init", "--recursive", "--force"};
    if (shallow_ > 0) {
      args.push_back("--depth");
      args.push_back(std::to_string(shallow_));
    }
    git(dir, args, [this, dir, clean_them, then](const GitResult& u) {
      if (u.rc != 0) return fail("git submodule update failed");
      if (!clean_them) return then();
      std::vector<std::string> clean = {"submodule", "foreach", "--recursive", "git", "clean", "-f", "-f", "-d"};
      if (method_ == "fresh") clean.push_back("-x");
      git(dir, clean, [this, then](const GitResult& c) {
        if (c.rc != 0) return fail("cleaning the submodules failed");
        then();
      });
    });
  });
}

// ---------------------------------------------------------------------------
// Patch and result

void GitStep::apply_patch(Then then) {
  if (patch_.is_null()) return then();
  namespace fs = std::filesystem;
  const std::string master_dir = text_or(info_, "master_dir", ".");
  const std::string name = std::to_string(info_.value("buildid", int64_t{0})) + "-" +
                           std::to_string(info_.value("step_number", int64_t{0})) + "-" +
                           url_hash(codebase_ + "\n" + repourl_) + ".diff";
  const std::string path = (fs::path(master_dir) / "git-patches" / name).string();
  auto error = std::make_shared<std::string>();
  // The body may be large: written on a thread of ours, not on the loop.
  files_ = std::make_unique<sdk::ProgramRunner>(context());
  sdk::Status queued = files_->call(
      [path, error, body = text_or(patch_, "body", "")] {
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out << body;
        out.close();
        if (!out) *error = "cannot write " + path;
      },
      [this, path, error, then] {
        if (finished()) return;
        if (!error->empty()) return fail(*error);
        worker("downloadFile", {{"mastersrc", path}, {"workerdest", kPatchFile}, {"workdir", workdir_}},
               [this, path, then](int rc, const std::vector<json>&) {
                 files_->call([path] {
                   std::error_code ec;
                   fs::remove(path, ec);
                 }, nullptr);
                 if (rc != 0) return fail("cannot send the patch to the worker");
                 // Marked first: a failed apply leaves the tree to be cleaned too.
                 git(workdir_, {"config", kPatchedKey, "true"}, [this, then](const GitResult&) {
                   const int level = patch_.value("level", 1);
                   std::vector<std::string> args = {"apply", "-p" + std::to_string(level)};
                   const std::string subdir = text_or(patch_, "subdir", "");
                   if (!subdir.empty() && subdir != ".") args.push_back("--directory=" + subdir);
                   args.push_back(kPatchFile);
                   git(workdir_, args, [this, then](const GitResult& r) {
                     const int apply_rc = r.rc;
                     worker("rmfile", {{"path", workdir_ + "/" + kPatchFile}},
                            [this, then, apply_rc](int, const std::vector<json>&) {
                              if (apply_rc != 0) return fail("the patch does not apply");
                              then();
                            });
                   });
                 });
               });
      });
  if (!queued.ok()) fail("cannot write the patch: " + queued.message());
}

void GitStep::got_revision() {
  git(workdir_, {"rev-parse", "HEAD"}, [this](const GitResult& r) {
    const std::string revision = trim_right(r.out);
    if (r.rc != 0 || revision.empty()) return fail("cannot read the checked out revision");
    json value = revision;
    if (!codebase_.empty()) {
      // Several repositories in one build: {codebase: revision}, as Buildbot.
      json existing = property("got_revision").value_or(json());
      value = existing.is_object() ? existing : json::object();
      value[codebase_] = revision;
    }
    set_property("got_revision", value, "Git");
    finish(KILN_SUCCESS, "update " + revision.substr(0, 12));
  });
}

}  // namespace kiln::git
