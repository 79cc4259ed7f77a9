// svn-poller: Buildbot's SVNPoller on the svn command line. The first poll
// of an instance asks `svn info` where repourl sits below the repository
// root; each poll then reads `svn log --xml --verbose -r HEAD:<last seen>`
// and reports the newer revisions, oldest first. The last seen revision is
// plugin state, so a restarted master neither floods nor misses history.

#include "svn.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

namespace kiln::svn {

namespace {

// A dead server that keeps the connection must not stop polling for good.
constexpr uint64_t kSvnTimeoutMs = 3600 * 1000;

json string_or(const json& config, const char* key, json fallback) {
  auto it = config.find(key);
  return it != config.end() && it->is_string() ? *it : fallback;
}

bool builtin_splitter(const std::string& name) {
  return name == "split_file_alwaystrunk" || name == "split_file_branches" ||
         name == "split_file_projects_branches";
}

}  // namespace

SvnPoller::SvnPoller(sdk::Context ctx, const json& config) : Poller(std::move(ctx), config, 600) {
  repourl_ = config.value("repourl", "");
  split_file_ = config.value("split_file", json()).is_string() ? config["split_file"].get<std::string>() : "";
  if (split_file_ == "split_file_alwaystrunk") split_file_.clear();
  project_ = string_or(config, "project", "");
  category_ = string_or(config, "category", json());
  codebase_ = string_or(config, "codebase", "");
  revlink_template_ = config.value("revlinktmpl", "");
  use_commit_timestamps_ = config.value("use_commit_timestamps", true);
  if (const std::string user = config.value("svnuser", ""); !user.empty()) credentials_.push_back("--username=" + user);
  if (auto it = config.find("svnpasswd"); it != config.end() && it->is_string()) {
    credentials_.push_back("--password=" + it->get<std::string>());
  }
  for (const auto& a : config.value("extra_args", json::array())) {
    if (a.is_string()) credentials_.push_back(a.get<std::string>());
  }
}

sdk::Status SvnPoller::validate(const json& config) {
  if (config.value("repourl", "").empty()) return sdk::invalid_config("repourl must not be empty");
  if (auto it = config.find("split_file"); it != config.end() && it->is_string()) {
    const std::string name = it->get<std::string>();
    if (name.empty()) return sdk::invalid_config("split_file: a policy name cannot be empty (null for none)");
    // A near miss of a built-in name is a typo, not a policy of that name.
    if (!builtin_splitter(name) && name.rfind("split_file_", 0) == 0) {
      return sdk::invalid_config("split_file '" + name +
                                 "' is not a built-in splitter (split_file_branches, "
                                 "split_file_projects_branches, split_file_alwaystrunk)");
    }
  }
  const std::string tmpl = config.value("revlinktmpl", "");
  if (!tmpl.empty() && tmpl.find("%s") == std::string::npos) {
    return sdk::invalid_config("revlinktmpl '" + tmpl + "' has no %s for the revision");
  }
  return {};
}

void SvnPoller::svn(std::vector<std::string> args, Next next) {
  if (stopped()) return;
  sdk::Program program;
  program.argv = {"svn"};
  for (auto& a : args) program.argv.push_back(std::move(a));
  program.argv.push_back("--non-interactive");
  program.argv.insert(program.argv.end(), credentials_.begin(), credentials_.end());
  program.argv.push_back(repourl_);
  program.timeout_ms = kSvnTimeoutMs;
  run_or_fail(std::move(program), std::move(next));
}

void SvnPoller::poll_once(PollDone done) { load_state(std::move(done)); }

void SvnPoller::load_state(PollDone done) {
  if (state_loaded_) return read_info(std::move(done));
  sdk::Status asked = context().state_get("last_revision", [this, done](sdk::Result<json> value) {
    if (stopped()) return;
    if (!value.ok()) {
      return done(sdk::Status(KILN_ERR_RETRY, "cannot read the last seen revision: " + value.status().message()));
    }
    state_loaded_ = true;
    // A revision of another repository says nothing about this one.
    if (value->is_object() && value->value("repourl", "") == repourl_ && (*value)["revision"].is_number_integer()) {
      last_revision_ = (*value)["revision"].get<int64_t>();
    }
    read_info(done);
  });
  if (!asked.ok()) done(asked);
}

void SvnPoller::read_info(PollDone done) {
  if (prefix_ && last_revision_) return read_log(std::move(done));
  svn({"info", "--xml"}, [this, done](const sdk::ProgramResult& r) {
    if (!r.ok()) return done(sdk::Status(KILN_ERR_RETRY, "cannot read svn info of " + repourl_ + " (" + r.describe() + ")"));
    auto info = parse_info(r.out);
    if (!info) return done(sdk::Status(KILN_ERR_RETRY, "svn info of " + repourl_ + " printed no repository entry"));
    auto prefix = url_prefix(info->root, repourl_);
    if (!prefix) {
      return done(sdk::Status(KILN_ERR_RETRY, "the repository root " + info->root + " that svn reports is not a prefix of repourl " +
                                                  repourl_ + "; write repourl as svn info shows it"));
    }
    prefix_ = *prefix;
    if (last_revision_) return read_log(done);
    // First poll: history before it is not news.
    last_revision_ = info->revision;
    context().info("first poll of " + repourl_ + ": at revision " + std::to_string(info->revision) +
                   "; newer revisions are reported from the next poll on");
    save_state(done, {});
  });
}

void SvnPoller::read_log(PollDone done) {
  svn({"log", "--xml", "--verbose", "-r", "HEAD:" + std::to_string(*last_revision_)},
      [this, done](const sdk::ProgramResult& r) {
        if (!r.ok()) return done(sdk::Status(KILN_ERR_RETRY, "cannot read the log of " + repourl_ + " (" + r.describe() + ")"));
        std::string why;
        auto entries = parse_log(r.out, &why);
        if (!entries) return done(sdk::Status(KILN_ERR_RETRY, "svn log of " + repourl_ + " is not readable XML: " + why));
        std::vector<const LogEntry*> fresh;
        for (const auto& e : *entries) {
          if (e.revision > *last_revision_) fresh.push_back(&e);
        }
        std::sort(fresh.begin(), fresh.end(), [](const LogEntry* a, const LogEntry* b) { return a->revision < b->revision; });
        auto changes = std::make_shared<std::vector<std::pair<int64_t, json>>>();
        int64_t newest = *last_revision_;
        for (const LogEntry* e : fresh) {
          auto of_revision = changes_of(*e);
          if (!of_revision.ok()) {
            // Nothing of this poll is reported: the next one tries again
            // from the same revision once the policy is fixed.
            return done(of_revision.status());
          }
          for (auto& c : *of_revision) changes->emplace_back(e->revision, std::move(c));
          newest = e->revision;
        }
        if (!fresh.empty()) {
          context().info(std::to_string(fresh.size()) + " new revision(s) in " + repourl_ + ", " +
                         std::to_string(changes->size()) + " change(s)");
        }
        if (changes->empty()) {
          last_revision_ = newest;
          return save_state(done, {});
        }
        add_changes(changes, 0, [this, done, newest](const sdk::Status& s) {
          if (s.ok()) last_revision_ = newest;
          save_state(done, s);
        });
      });
}

sdk::Result<json> SvnPoller::split(const std::string& path) const {
  if (split_file_.empty()) return split_file_alwaystrunk(path);
  if (split_file_ == "split_file_branches") return split_file_branches(path);
  if (split_file_ == "split_file_projects_branches") return split_file_projects_branches(path);
  auto answer = context().call_policy(split_file_, json{{"path", path}});
  if (!answer.ok()) {
    return sdk::Status(answer.status().code(), "split_file policy '" + split_file_ + "' failed for " + path + ": " +
                                                   answer.status().message());
  }
  // Buildbot's older splitters answer (branch, path).
  if (answer->is_array() && answer->size() == 2 && (*answer)[1].is_string() &&
      ((*answer)[0].is_string() || (*answer)[0].is_null())) {
    return json{{"branch", (*answer)[0]}, {"path", (*answer)[1]}};
  }
  if (answer->is_null() || (answer->is_object() && (*answer)["path"].is_string())) return *answer;
  return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "split_file policy '" + split_file_ + "' answered " +
                                                    answer->dump().substr(0, 200) + " for " + path +
                                                    "; expected {\"path\": ...}, [branch, path] or null");
}

sdk::Result<std::vector<json>> SvnPoller::changes_of(const LogEntry& entry) const {
  // One change per (branch, project, repository, codebase), in the order
  // the revision first touched each.
  struct Group {
    json branch, project, repository, codebase;
    json files = json::array();
    std::string first_action;
    int directories = 0;
  };
  std::vector<Group> groups;
  for (const auto& p : entry.paths) {
    if (p.path.compare(0, prefix_->size(), *prefix_) != 0) continue;  // outside repourl
    std::string relative = p.path.substr(prefix_->size());
    if (!relative.empty() && relative[0] == '/') relative.erase(0, 1);
    if (!prefix_->empty() && !p.path.empty() && p.path.size() > prefix_->size() &&
        p.path[prefix_->size()] != '/') {
      continue;  // "trunk2/x" is not below "trunk"
    }
    auto where = split(relative);
    if (!where.ok()) return where.status();
    if (!where->is_object()) continue;  // of no interest
    Group key;
    key.branch = where->value("branch", json());
    key.project = where->contains("project") ? (*where)["project"] : project_;
    key.repository = where->contains("repository") ? (*where)["repository"] : json(repourl_);
    key.codebase = where->contains("codebase") ? (*where)["codebase"] : codebase_;
    auto same = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.branch == key.branch && g.project == key.project && g.repository == key.repository &&
             g.codebase == key.codebase;
    });
    if (same == groups.end()) {
      key.first_action = p.action;
      groups.push_back(std::move(key));
      same = std::prev(groups.end());
    }
    std::string file = (*where)["path"].get<std::string>();
    if (file.empty() || file.back() == '/') {
      ++same->directories;
      if (!file.empty()) file.pop_back();
    }
    same->files.push_back(file);
  }
  std::vector<json> changes;
  const uint64_t now_s = context().now_ms().value_or(0) / 1000;
  for (const auto& g : groups) {
    // Buildbot: a revision that only deletes a whole branch builds nothing.
    if (g.first_action == "D" && g.directories == 1 && g.files.size() == 1 && g.files[0] == "") {
      context().info("r" + std::to_string(entry.revision) + " deletes branch " + g.branch.dump() + "; not reported");
      continue;
    }
    json change = {{"author", entry.author},
                   {"files", g.files},
                   {"comments", entry.message},
                   {"revision", std::to_string(entry.revision)},
                   {"branch", g.branch},
                   {"when_timestamp", use_commit_timestamps_ && entry.when > 0 ? entry.when : static_cast<int64_t>(now_s)},
                   {"repository", g.repository},
                   {"project", g.project},
                   {"category", category_},
                   {"codebase", g.codebase}};
    if (!revlink_template_.empty()) {
      std::string link = revlink_template_;
      link.replace(link.find("%s"), 2, std::to_string(entry.revision));
      change["revlink"] = link;
    }
    changes.push_back(std::move(change));
  }
  return changes;
}

void SvnPoller::add_changes(std::shared_ptr<std::vector<std::pair<int64_t, json>>> changes, size_t index,
                            PollDone done) {
  if (index >= changes->size()) return done({});
  const auto& [revision, change] = (*changes)[index];
  // One at a time: change ids then follow the revisions. A failure stops
  // at the last revision reported whole.
  sdk::Status added = add_change(change, [this, changes, index, done](sdk::Result<json> r) {
    if (stopped()) return;
    if (!r.ok()) {
      size_t first_of_revision = index;
      while (first_of_revision > 0 && (*changes)[first_of_revision - 1].first == (*changes)[index].first) --first_of_revision;
      if (first_of_revision > 0) last_revision_ = (*changes)[first_of_revision - 1].first;
      return done(sdk::Status(KILN_ERR_RETRY, "cannot add the change of r" + std::to_string((*changes)[index].first) +
                                                  ": " + r.status().message()));
    }
    add_changes(changes, index + 1, done);
  });
  if (!added.ok()) done(sdk::Status(KILN_ERR_RETRY, "cannot add the change of r" + std::to_string(revision) + ": " + added.message()));
}

void SvnPoller::save_state(PollDone done, sdk::Status outcome) {
  const json value = {{"repourl", repourl_}, {"revision", *last_revision_}};
  sdk::Status asked = context().state_put("last_revision", value, [this, done, outcome](sdk::Result<json> r) {
    if (stopped()) return;
    if (!r.ok()) return done(sdk::Status(r.status().code(), "cannot save the last seen revision: " + r.status().message()));
    done(outcome);
  });
  if (!asked.ok()) done(sdk::Status(asked.code(), "cannot save the last seen revision: " + asked.message()));
}

}  // namespace kiln::svn
