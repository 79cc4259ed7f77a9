// hg-poller: Buildbot's HgPoller on the hg command line. Each poll pulls
// the wanted branches and bookmarks into a mirror in the master's folder,
// reads their heads, and reports every changeset that no head known before
// reaches, oldest first. Known heads are plugin state, so a restarted master
// neither floods nor misses history.

#include "hg.h"
#include "hg_text.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

namespace kiln::hg {

namespace {

// A pull that hangs (a dead server that keeps the connection) must not stop
// polling for good.
constexpr uint64_t kHgTimeoutMs = 3600 * 1000;

json string_or(const json& config, const char* key, json fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_string() ? *it : fallback;
}

std::vector<std::string> strings(const json& value) {
  std::vector<std::string> out;
  if (value.is_array()) {
    for (const auto& v : value) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

// Heads are kept per "branch:NAME" or "bookmark:NAME": a branch and a
// bookmark may share a name.
std::string name_of(const std::string& key) { return key.substr(key.find(':') + 1); }

}  // namespace

HgPoller::HgPoller(sdk::Context ctx, const json& config) : Poller(std::move(ctx), config, 600) {
  repourl_ = config.value("repourl", "");
  branches_ = strings(config.value("branches", json::array()));
  bookmarks_ = strings(config.value("bookmarks", json::array()));
  if (branches_.empty() && bookmarks_.empty()) branches_ = {"default"};
  use_commit_timestamps_ = config.value("use_commit_timestamps", true);
  category_ = string_or(config, "category", json());
  project_ = string_or(config, "project", "");
  codebase_ = string_or(config, "codebase", "");
}

sdk::Status HgPoller::validate(const json& config) {
  if (config.value("repourl", "").empty()) return sdk::invalid_config("repourl must not be empty");
  for (const char* key : {"branches", "bookmarks"}) {
    std::set<std::string> seen;
    for (const auto& name : strings(config.value(key, json::array()))) {
      if (!seen.insert(name).second) return sdk::invalid_config(std::string(key) + ": '" + name + "' is listed twice");
    }
  }
  return {};
}

sdk::Status HgPoller::start() {
  mirror_ = master_folder(config().value("workdir", ""), "hgpoller", repourl_);
  return Poller::start();
}

void HgPoller::poll_once(PollDone done) {
  auto round = std::make_shared<Round>();
  round->done = std::move(done);
  load_state(std::move(round));
}

void HgPoller::hg(std::vector<std::string> args, Next next, bool in_mirror) {
  if (stopped()) return;
  sdk::Program program;
  program.argv = {"hg", "--noninteractive"};
  for (auto& a : args) program.argv.push_back(std::move(a));
  if (in_mirror) program.cwd = mirror_;
  // Plain output whatever the user's hgrc says (no pager, color or i18n).
  program.env["HGPLAIN"] = "1";
  program.timeout_ms = kHgTimeoutMs;
  run_or_fail(std::move(program), std::move(next));
}

void HgPoller::finish(std::shared_ptr<Round> round, const sdk::Status& status) { round->done(status); }

void HgPoller::load_state(std::shared_ptr<Round> round) {
  if (state_loaded_) return ensure_mirror(std::move(round));
  sdk::Status asked = context().state_get("heads", [this, round](sdk::Result<json> value) {
    if (stopped()) return;
    if (!value.ok()) {
      return finish(round, sdk::Status(KILN_ERR_RETRY, "cannot read the known heads: " + value.status().message()));
    }
    state_loaded_ = true;
    // Heads recorded for another repository say nothing about this one.
    if (value->is_object() && value->value("repourl", "") == repourl_ && (*value)["heads"].is_object()) {
      known_.emplace();
      for (const auto& [key, node] : (*value)["heads"].items()) {
        if (node.is_string()) (*known_)[key] = node.get<std::string>();
      }
    }
    ensure_mirror(round);
  });
  if (!asked.ok()) finish(round, asked);
}

void HgPoller::ensure_mirror(std::shared_ptr<Round> round) {
  if (mirror_ready_) return pull(std::move(round));
  // One stat, once per instance: cheap enough for the loop.
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::path(mirror_) / ".hg", ec)) {
    mirror_ready_ = true;
    return pull(std::move(round));
  }
  hg({"init", mirror_},
     [this, round](const sdk::ProgramResult& r) {
       if (!r.ok()) {
         return finish(round, sdk::Status(KILN_ERR_RETRY, "cannot create the mirror " + mirror_ + " (" + r.describe() + ")"));
       }
       mirror_ready_ = true;
       pull(round);
     },
     false);
}

void HgPoller::pull(std::shared_ptr<Round> round) {
  std::vector<std::string> args = {"pull", "--quiet"};
  for (const auto& b : branches_) args.insert(args.end(), {"--branch", b});
  for (const auto& b : bookmarks_) args.insert(args.end(), {"--bookmark", b});
  args.push_back(repourl_);
  hg(std::move(args), [this, round](const sdk::ProgramResult& r) {
    if (!r.ok()) {
      return finish(round, sdk::Status(KILN_ERR_RETRY, "cannot pull from " + repourl_ + " (" + r.describe() + ")"));
    }
    read_heads(round);
  });
}

void HgPoller::read_heads(std::shared_ptr<Round> round) {
  if (branches_.empty()) return read_bookmarks(std::move(round));
  hg({"heads", "--template", kHeadsTemplate}, [this, round](const sdk::ProgramResult& r) {
    if (!r.ok() && r.exit_code != 1) {  // 1: no heads at all (an empty repository)
      return finish(round, sdk::Status(KILN_ERR_RETRY, "cannot read the mirror's heads (" + r.describe() + ")"));
    }
    const auto heads = parse_named_nodes(r.out);
    for (const auto& branch : branches_) {
      auto it = heads.find(branch);
      if (it == heads.end()) continue;
      if (it->second.size() > 1) {
        // Buildbot's answer: which head would be "the" branch? Wait for a merge.
        context().warn("branch " + branch + " of " + repourl_ + " has " + std::to_string(it->second.size()) +
                       " heads; staying at the last known one until they are merged");
        if (known_ && known_->count("branch:" + branch) > 0) round->heads["branch:" + branch] = (*known_)["branch:" + branch];
        continue;
      }
      round->heads["branch:" + branch] = it->second.front();
    }
    read_bookmarks(round);
  });
}

void HgPoller::read_bookmarks(std::shared_ptr<Round> round) {
  auto then = [this, round] {
    for (const auto& b : branches_) round->order.push_back("branch:" + b);
    for (const auto& b : bookmarks_) round->order.push_back("bookmark:" + b);
    if (!known_) {
      // First poll: history before it is not news.
      known_ = round->heads;
      context().info("first poll of " + repourl_ + ": recorded " + std::to_string(round->heads.size()) +
                     " head(s); new changesets are reported from the next poll on");
      return save_state([this, round](const sdk::Status& s) { finish(round, s); });
    }
    for (const auto& [_, node] : *known_) round->known_before.push_back(node);
    process_next(round);
  };
  if (bookmarks_.empty()) return then();
  hg({"bookmarks", "--template", kBookmarksTemplate}, [this, round, then](const sdk::ProgramResult& r) {
    if (!r.ok()) return finish(round, sdk::Status(KILN_ERR_RETRY, "cannot read the mirror's bookmarks (" + r.describe() + ")"));
    for (const auto& [name, nodes] : parse_named_nodes(r.out)) {
      if (std::find(bookmarks_.begin(), bookmarks_.end(), name) != bookmarks_.end()) {
        round->heads["bookmark:" + name] = nodes.front();
      }
    }
    then();
  });
}

void HgPoller::process_next(std::shared_ptr<Round> round) {
  while (round->next < round->order.size()) {
    const std::string key = round->order[round->next++];
    auto head = round->heads.find(key);
    if (head == round->heads.end()) continue;
    const std::string node = head->second;
    auto old = known_->find(key);
    if (old != known_->end() && old->second == node) continue;
    // Excluded: every head known before this poll and those this poll
    // already reported, so a new branch reports only its own changesets
    // and a changeset on two polled names is reported once.
    std::set<std::string> exclude(round->known_before.begin(), round->known_before.end());
    for (const auto& [_, n] : *known_) exclude.insert(n);
    hg({"log", "-r", new_commits_revset(node, {exclude.begin(), exclude.end()}), "--template", kCommitTemplate},
       [this, round, key, node](const sdk::ProgramResult& r) {
         auto commits = r.ok() ? parse_commits(r.out) : std::nullopt;
         if (!commits) {
           const std::string why = "cannot read the new changesets of " + name_of(key) + " (" +
                                   (r.ok() ? std::string("unexpected hg log output") : r.describe()) + ")";
           return save_state([this, round, why](const sdk::Status&) { finish(round, sdk::Status(KILN_ERR_RETRY, why)); });
         }
         const uint64_t now_s = context().now_ms().value_or(0) / 1000;
         auto changes = std::make_shared<std::vector<json>>();
         for (const auto& c : *commits) {
           changes->push_back({{"author", c.author},
                               {"files", c.files},
                               {"comments", c.comments},
                               {"revision", c.node},
                               {"branch", name_of(key)},
                               {"when_timestamp", use_commit_timestamps_ ? c.when : static_cast<int64_t>(now_s)},
                               {"repository", repourl_},
                               {"project", project_},
                               {"category", category_},
                               {"codebase", codebase_}});
         }
         if (!changes->empty()) {
           context().info(std::to_string(changes->size()) + " new changeset(s) on " + name_of(key));
         }
         add_changes(round, changes, 0, [this, round, key, node] {
           (*known_)[key] = node;
           process_next(round);
         });
       });
    return;
  }
  for (const auto& [key, _] : *known_) {
    if (round->heads.count(key) == 0) context().info(name_of(key) + " is no longer on " + repourl_ + " or no longer polled");
  }
  known_ = round->heads;
  save_state([this, round](const sdk::Status& s) { finish(round, s); });
}

void HgPoller::add_changes(std::shared_ptr<Round> round, std::shared_ptr<std::vector<json>> changes, size_t index,
                           std::function<void()> then) {
  if (index >= changes->size()) return then();
  // One at a time: the change ids then follow the order of the changesets.
  auto failed = [this, round](const std::string& why) {
    save_state([this, round, why](const sdk::Status&) { finish(round, sdk::Status(KILN_ERR_RETRY, why)); });
  };
  sdk::Status added = add_change((*changes)[index], [this, round, changes, index, then, failed](sdk::Result<json> r) {
    if (stopped()) return;
    if (!r.ok()) return failed("cannot add a change: " + r.status().message());
    add_changes(round, changes, index + 1, then);
  });
  if (!added.ok()) failed("cannot add a change: " + added.message());
}

void HgPoller::save_state(std::function<void(const sdk::Status&)> then) {
  json heads = json::object();
  if (known_) {
    for (const auto& [key, node] : *known_) heads[key] = node;
  }
  const json value = {{"repourl", repourl_}, {"heads", heads}};
  sdk::Status asked = context().state_put("heads", value, [this, then](sdk::Result<json> r) {
    if (stopped()) return;
    then(r.ok() ? sdk::Status() : sdk::Status(r.status().code(), "cannot save the known heads: " + r.status().message()));
  });
  if (!asked.ok()) then(sdk::Status(asked.code(), "cannot save the known heads: " + asked.message()));
}

}  // namespace kiln::hg
