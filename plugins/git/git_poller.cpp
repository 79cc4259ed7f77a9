// git-poller: Buildbot's GitPoller on the git command line. Each poll lists
// the remote's refs, fetches the wanted ones into a bare mirror under
// refs/kiln/, and reports every commit that no head known before reaches,
// oldest first. Running git itself (not a library) keeps users' ssh keys,
// ssh config and credential helpers working as they do in their shell.

#include "git.h"
#include "git_text.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <utility>

namespace kiln::git {

namespace {

// Commits per `git log` call: keeps the argument list short on huge pushes.
constexpr size_t kLogBatch = 200;
// A fetch that hangs (a dead server that keeps the connection) must not
// stop polling for good; the next poll starts over.
constexpr uint64_t kGitTimeoutMs = 3600 * 1000;

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

json string_or(const json& config, const char* key, json fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_string() ? *it : fallback;
}

}  // namespace

GitPoller::GitPoller(sdk::Context ctx, const json& config) : Poller(std::move(ctx), config, 600) {
  repourl_ = config.value("repourl", "");
  only_tags_ = config.value("only_tags", false);
  use_commit_timestamps_ = config.value("use_commit_timestamps", true);
  build_pushes_with_no_commits_ = config.value("build_pushes_with_no_commits", false);
  category_ = string_or(config, "category", json());
  project_ = string_or(config, "project", "");
  codebase_ = string_or(config, "codebase", "");
  if (auto it = config.find("branches"); it != config.end()) {
    if (it->is_string() && *it == "all") {
      all_branches_ = true;
    } else if (it->is_string()) {
      branch_regex_ = std::regex(it->get<std::string>(), std::regex::ECMAScript);
    } else if (it->is_array()) {
      branch_list_.emplace();
      for (const auto& b : *it) {
        if (b.is_string()) branch_list_->push_back(ref_of_branch(b.get<std::string>()));
      }
    }
  }
}

sdk::Status GitPoller::validate(const json& config) {
  if (config.value("repourl", "").empty()) return sdk::invalid_config("repourl must not be empty");
  if (auto it = config.find("branches"); it != config.end() && it->is_string() && *it != "all") {
    try {
      std::regex check(it->get<std::string>(), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return sdk::invalid_config("branches '" + it->get<std::string>() +
                                 "' is not a regular expression: " + e.what());
    }
  }
  return {};
}

sdk::Status GitPoller::start() {
  mirror_ = master_folder(config().value("workdir", ""), "gitpoller", repourl_);
  return Poller::start();
}

void GitPoller::poll_once(PollDone done) {
  auto round = std::make_shared<Round>();
  round->done = std::move(done);
  load_state(std::move(round));
}

void GitPoller::git(std::vector<std::string> args, Next next, bool in_mirror) {
  if (stopped()) return;  // the poll is abandoned; stop() already reset it
  sdk::Program program;
  program.argv.push_back("git");
  for (auto& a : args) program.argv.push_back(std::move(a));
  if (in_mirror) program.cwd = mirror_;
  // No terminal to answer a password prompt: fail instead of hanging.
  program.env["GIT_TERMINAL_PROMPT"] = "0";
  program.timeout_ms = kGitTimeoutMs;
  run_or_fail(std::move(program), std::move(next));
}

void GitPoller::finish_round(std::shared_ptr<Round> round, const sdk::Status& status) {
  round->done(status);
}

void GitPoller::load_state(std::shared_ptr<Round> round) {
  if (state_loaded_) return ensure_mirror(std::move(round));
  sdk::Status asked = context().state_get("heads", [this, round](sdk::Result<json> value) {
    if (stopped()) return;
    if (!value.ok()) {
      return finish_round(round, sdk::Status(KILN_ERR_RETRY, "cannot read the known heads: " +
                                                                   value.status().message()));
    }
    state_loaded_ = true;
    // Heads recorded for another repository say nothing about this one.
    if (value->is_object() && value->value("repourl", "") == repourl_ &&
        value->contains("heads") && (*value)["heads"].is_object()) {
      known_.emplace();
      for (const auto& [ref, sha] : (*value)["heads"].items()) {
        if (sha.is_string()) (*known_)[ref] = sha.get<std::string>();
      }
    }
    ensure_mirror(round);
  });
  if (!asked.ok()) finish_round(round, asked);
}

void GitPoller::ensure_mirror(std::shared_ptr<Round> round) {
  if (mirror_ready_) return list_remote(std::move(round));
  git({"init", "--quiet", "--bare", mirror_},
      [this, round](const sdk::ProgramResult& r) {
        if (!r.ok()) {
          return finish_round(round, sdk::Status(KILN_ERR_RETRY, "cannot create the mirror " + mirror_ +
                                                                     " (" + r.describe() + ")"));
        }
        mirror_ready_ = true;
        list_remote(round);
      },
      false);
}

void GitPoller::list_remote(std::shared_ptr<Round> round) {
  git({"ls-remote", "--symref", repourl_}, [this, round](const sdk::ProgramResult& r) {
    if (!r.ok()) {
      return finish_round(round, sdk::Status(KILN_ERR_RETRY, "cannot list the refs of " + repourl_ +
                                                                 " (" + r.describe() + ")"));
    }
    RemoteRefs remote = parse_ls_remote(r.out);
    std::vector<std::string> wanted = select_refs(remote.refs, remote.head_target);
    // Nothing moved since the last poll: no fetch and no ref listing; most
    // polls of most repositories end here (bench/bench_poll). The heads are
    // saved as after every poll.
    if (!only_tags_ && known_ && known_->size() == wanted.size() &&
        std::all_of(wanted.begin(), wanted.end(), [&](const std::string& ref) {
          auto known = known_->find(ref);
          return known != known_->end() && known->second == remote.refs.at(ref);
        })) {
      return save_state([this, round](const sdk::Status& s) { finish_round(round, s); });
    }
    fetch(round, std::move(wanted));
  });
}

std::vector<std::string> GitPoller::select_refs(const std::map<std::string, std::string>& remote,
                                                const std::string& head_target) const {
  std::vector<std::string> out;
  auto heads = [&](auto&& keep) {
    for (const auto& [ref, _] : remote) {
      if (ref.rfind("refs/heads/", 0) == 0 && keep(ref)) out.push_back(ref);
    }
  };
  if (only_tags_) {
    for (const auto& [ref, _] : remote) {
      if (ref.rfind("refs/tags/", 0) == 0) out.push_back(ref);
    }
  } else if (all_branches_) {
    heads([](const std::string&) { return true; });
  } else if (branch_regex_) {
    heads([&](const std::string& ref) { return std::regex_match(branch_of(ref), *branch_regex_); });
  } else if (branch_list_) {
    for (const auto& ref : *branch_list_) {
      if (remote.count(ref) > 0) out.push_back(ref);
    }
  } else {
    // No `branches`: the branch the remote's HEAD names, as `git clone` would.
    for (const std::string& ref : {head_target, std::string("refs/heads/master"), std::string("refs/heads/main")}) {
      if (!ref.empty() && remote.count(ref) > 0) {
        out.push_back(ref);
        break;
      }
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void GitPoller::fetch(std::shared_ptr<Round> round, std::vector<std::string> wanted) {
  round->order = wanted;
  if (wanted.empty()) return read_heads(std::move(round));
  std::vector<std::string> args = {"fetch", "--quiet", "--no-tags", "--force", repourl_};
  for (const auto& ref : wanted) args.push_back("+" + ref + ":" + tracking_ref(ref));
  git(std::move(args), [this, round](const sdk::ProgramResult& r) {
    if (!r.ok()) {
      return finish_round(round, sdk::Status(KILN_ERR_RETRY, "cannot fetch from " + repourl_ + " (" +
                                                                 r.describe() + ")"));
    }
    read_heads(round);
  });
}

void GitPoller::read_heads(std::shared_ptr<Round> round) {
  git({"for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", "refs/kiln/"},
      [this, round](const sdk::ProgramResult& r) {
        if (!r.ok()) {
          return finish_round(round, sdk::Status(KILN_ERR_RETRY, "cannot read the mirror's refs (" +
                                                                     r.describe() + ")"));
        }
        auto local = parse_for_each_ref(r.out);
        for (const auto& ref : round->order) {
          if (auto it = local.find(tracking_ref(ref)); it != local.end()) round->heads[ref] = it->second;
        }
        if (!known_) {
          // First poll: history before it is not news.
          known_ = round->heads;
          context().info("first poll of " + repourl_ + ": recorded " + std::to_string(round->heads.size()) +
                         " head(s); new commits are reported from the next poll on");
          return save_state([this, round](const sdk::Status& s) { finish_round(round, s); });
        }
        round->known_before = *known_;
        process_next_ref(round);
      });
}

void GitPoller::process_next_ref(std::shared_ptr<Round> round) {
  while (round->next_ref < round->order.size()) {
    const std::string ref = round->order[round->next_ref++];
    auto head = round->heads.find(ref);
    if (head == round->heads.end()) continue;
    const std::string sha = head->second;
    auto old = known_->find(ref);
    if (old != known_->end() && old->second == sha) continue;
    // Excluded: every head known before this poll (the branch's own old
    // head, other branches, branches deleted since) and the heads this poll
    // already reported, so a force push or a new branch reports only the
    // commits nobody has seen, and a commit on two branches is reported once.
    std::set<std::string> exclude;
    for (const auto& [_, s] : round->known_before) exclude.insert(s);
    for (const auto& [_, s] : *known_) exclude.insert(s);
    std::vector<std::string> args = {"rev-list", "--topo-order", "--reverse", "--ignore-missing", sha};
    for (const auto& s : exclude) args.push_back("^" + s);
    args.push_back("--");
    git(std::move(args), [this, round, ref, sha](const sdk::ProgramResult& r) {
      if (!r.ok()) {
        const std::string why = "cannot list the new commits of " + ref + " (" + r.describe() + ")";
        return save_state([this, round, why](const sdk::Status&) {
          finish_round(round, sdk::Status(KILN_ERR_RETRY, why));
        });
      }
      std::vector<std::string> revisions = split_lines(r.out);
      if (revisions.empty() && build_pushes_with_no_commits_) {
        context().info("rebuilding " + sha + " for the push to " + branch_of(ref) + " without new commits");
        revisions.push_back(sha);
      }
      report(round, ref, std::move(revisions), 0);
    });
    return;
  }
  // Every wanted ref is processed: the refs that are gone (deleted branches,
  // branches no longer wanted) are dropped from the known heads.
  for (const auto& [ref, _] : *known_) {
    if (round->heads.count(ref) == 0) context().info(ref + " is no longer on " + repourl_ + " or no longer polled");
  }
  known_ = round->heads;
  save_state([this, round](const sdk::Status& s) { finish_round(round, s); });
}

void GitPoller::report(std::shared_ptr<Round> round, const std::string& ref, std::vector<std::string> revisions,
                       size_t offset) {
  if (offset >= revisions.size()) {
    (*known_)[ref] = round->heads[ref];
    if (!revisions.empty()) {
      context().info(std::to_string(revisions.size()) + " new commit(s) on " + branch_of(ref));
    }
    return process_next_ref(std::move(round));
  }
  const size_t end = std::min(revisions.size(), offset + kLogBatch);
  std::vector<std::string> batch(revisions.begin() + static_cast<std::ptrdiff_t>(offset),
                                 revisions.begin() + static_cast<std::ptrdiff_t>(end));
  std::vector<std::string> args = {"log", "--no-walk=unsorted", "-z", "--name-only", "--no-color",
                                   std::string("--format=") + kCommitFormat};
  args.insert(args.end(), batch.begin(), batch.end());
  args.push_back("--");
  git(std::move(args), [this, round, ref, batch, revisions = std::move(revisions), end](const sdk::ProgramResult& r) mutable {
    auto commits = r.ok() ? parse_commits(r.out, batch) : std::nullopt;
    if (!commits) {
      const std::string why = "cannot read commits of " + ref + " (" +
                              (r.ok() ? std::string("unexpected git log output") : r.describe()) + ")";
      return save_state([this, round, why](const sdk::Status&) {
        finish_round(round, sdk::Status(KILN_ERR_RETRY, why));
      });
    }
    const uint64_t now_s = context().now_ms().value_or(0) / 1000;
    std::vector<json> changes;
    for (const auto& c : *commits) {
      changes.push_back({{"author", c.author},
                         {"committer", c.committer},
                         {"files", c.files},
                         {"comments", c.comments},
                         {"revision", c.revision},
                         {"branch", branch_of(ref)},
                         {"when_timestamp", use_commit_timestamps_ ? c.commit_time : static_cast<int64_t>(now_s)},
                         {"repository", repourl_},
                         {"project", project_},
                         {"category", category_},
                         {"codebase", codebase_}});
    }
    add_changes(round, ref, std::move(changes), 0,
                [this, round, ref, revisions = std::move(revisions), end]() mutable {
                  report(round, ref, std::move(revisions), end);
                });
  });
}

void GitPoller::add_changes(std::shared_ptr<Round> round, const std::string& ref, std::vector<json> changes,
                            size_t index, std::function<void()> then) {
  if (index >= changes.size()) return then();
  json change = changes[index];
  // One at a time: the change ids then follow the order of the commits.
  sdk::Status added = add_change(change, [this, round, ref, changes = std::move(changes), index,
                                          then = std::move(then)](sdk::Result<json> r) mutable {
    if (stopped()) return;
    if (!r.ok()) {
      const std::string why = "cannot add a change for " + ref + ": " + r.status().message();
      return save_state([this, round, why](const sdk::Status&) {
        finish_round(round, sdk::Status(KILN_ERR_RETRY, why));
      });
    }
    add_changes(round, ref, std::move(changes), index + 1, std::move(then));
  });
  if (!added.ok()) {
    const std::string why = "cannot add a change for " + ref + ": " + added.message();
    save_state([this, round, why](const sdk::Status&) { finish_round(round, sdk::Status(KILN_ERR_RETRY, why)); });
  }
}

void GitPoller::save_state(std::function<void(const sdk::Status&)> then) {
  json heads = json::object();
  if (known_) {
    for (const auto& [ref, sha] : *known_) heads[ref] = sha;
  }
  const json value = {{"repourl", repourl_}, {"heads", heads}};
  sdk::Status asked = context().state_put("heads", value, [this, then](sdk::Result<json> r) {
    if (stopped()) return;
    then(r.ok() ? sdk::Status() : sdk::Status(r.status().code(), "cannot save the known heads: " +
                                                                       r.status().message()));
  });
  if (!asked.ok()) then(sdk::Status(asked.code(), "cannot save the known heads: " + asked.message()));
}

}  // namespace kiln::git
