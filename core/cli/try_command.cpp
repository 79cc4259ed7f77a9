// `kiln try`: Buildbot's `buildbot try --connect=pb` against a `try`
// scheduler's listener (plugins/schedulers/try_scheduler.cpp) over HTTP.
// With --vc git and no --diff the patch is made here, as tryclient's
// GitExtractor does: the tree's changes (`git diff`) against where it left
// the branch it is meant for (the merge base with --branch, or with the
// branch HEAD tracks), which is also the base revision sent. --wait polls
// GET /buildsets/N until the buildset completes and prints each builder's
// result as it comes.

#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/listener_client.h"

#include <nlohmann/json.hpp>

#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace kiln::cli {

using nlohmann::json;

namespace {

struct ProgramRun {
  int rc = -1;
  std::string out;
  std::string err;
};

// Runs argv (looked up in PATH) in the current folder and collects both
// outputs; stdin is the terminal's, untouched.
ProgramRun run_program(const std::vector<std::string>& argv) {
  std::array<int, 2> out_pipe{-1, -1}, err_pipe{-1, -1};
  if (::pipe(out_pipe.data()) != 0 || ::pipe(err_pipe.data()) != 0) {
    throw ControlError("cannot create a pipe for " + argv[0]);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) posix_spawn_file_actions_addclose(&actions, fd);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ProgramRun run;
  if (spawned != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    throw ControlError("cannot run " + argv[0] + ": " + std::strerror(spawned));
  }
  // Both pipes at once: a large diff on stdout must not wait behind stderr.
  std::array<pollfd, 2> fds{{{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}}};
  std::array<std::string*, 2> sinks{&run.out, &run.err};
  int open_fds = 2;
  std::array<char, 65536> buffer{};
  while (open_fds > 0) {
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        sinks[i]->append(buffer.data(), static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  run.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text;
}

// `git ARGS` in the current folder; its stdout, or a ControlError with its
// stderr.
std::string git(const std::vector<std::string>& args, const std::string& why) {
  std::vector<std::string> argv = {"git"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProgramRun run = run_program(argv);
  if (run.rc != 0) {
    std::string command = "git";
    for (const auto& a : args) command += " " + a;
    throw ControlError(why + ": `" + command + "` failed: " + trimmed(run.err));
  }
  return run.out;
}

// A remote-tracking name ("origin/main") without its remote ("main"), as
// the master's repository calls the branch.
std::string without_remote(const std::string& branch) {
  ProgramRun remotes = run_program({"git", "remote"});
  size_t start = 0;
  const std::string& text = remotes.out;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string remote = text.substr(start, end - start);
    if (!remote.empty() && branch.starts_with(remote + "/")) return branch.substr(remote.size() + 1);
    start = end + 1;
  }
  return branch;
}

// Fills the job's patch body, base revision and branch from the git tree
// in the current folder.
void make_git_patch(TryCall& call) {
  git({"rev-parse", "--show-toplevel"}, "--vc git needs a git working tree here");
  json& job = call.job;
  std::string base;
  if (job.contains("baserev")) {
    base = trimmed(git({"rev-parse", "--verify", job["baserev"].get<std::string>() + "^{commit}"},
                       "--baserev " + job["baserev"].get<std::string>() + " is not a commit here"));
  } else {
    std::string against;
    if (job.contains("branch")) {
      against = job["branch"].get<std::string>();
      job["branch"] = without_remote(against);
    } else {
      ProgramRun upstream =
          run_program({"git", "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"});
      if (upstream.rc != 0 || trimmed(upstream.out).empty()) {
        throw UsageError(
            "cannot tell which branch this patch is for: HEAD tracks no upstream branch; give "
            "--branch BRANCH (the patch is made against its merge base with HEAD) or --baserev REV");
      }
      against = trimmed(upstream.out);
      job["branch"] = without_remote(against);
    }
    const std::string tip = trimmed(git({"rev-parse", "--verify", against + "^{commit}"},
                                        "branch '" + against + "' is not known here"));
    base = trimmed(git({"merge-base", "HEAD", tip}, "HEAD and " + against + " share no history"));
  }
  job["baserev"] = base;
  // Tracked files, staged or not, against the base: what the builders
  // lack. The prefixes are fixed so that level 1 is always right.
  job["patch"]["body"] = git({"diff", "--src-prefix=a/", "--dst-prefix=b/", "--no-textconv", "--no-ext-diff",
                              "--no-color", "--no-renames", base},
                             "cannot make the patch");
  if (!call.patchlevel_given) job["patch"]["level"] = 1;
}

bool succeeded(const json& results) {
  return results.is_number_integer() && (results.get<int>() == 0 || results.get<int>() == 1);
}

// Polls the buildset until it completes; prints each builder's result once.
int wait_for(const TryCall& call, int64_t bsid) {
  const std::string target = "/buildsets/" + std::to_string(bsid);
  std::map<int64_t, bool> reported;  // build request -> printed
  auto last_contact = std::chrono::steady_clock::now();
  for (;;) {
    HttpAnswer answer;
    try {
      answer = http_call(call.master, call.auth, "GET", target, "", "a `try` scheduler");
      last_contact = std::chrono::steady_clock::now();
    } catch (const ControlError& e) {
      // A master restarting comes back; one gone for a minute does not.
      if (std::chrono::steady_clock::now() - last_contact > std::chrono::seconds(60)) throw;
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    const json state = json::parse(answer.body, nullptr, false);
    if (answer.status != 200 || !state.is_object()) {
      std::fprintf(stderr, "kiln try: cannot follow buildset %lld (HTTP %u): %s\n",
                   static_cast<long long>(bsid), answer.status, answer.error().c_str());
      return 1;
    }
    for (const auto& b : state.value("builds", json::array())) {
      const int64_t brid = b.value("buildrequestid", int64_t{0});
      if (!b.value("complete", false) || reported[brid]) continue;
      reported[brid] = true;
      std::string line = b.value("builder", "?") + ": " + result_word(b.value("results", json()));
      if (b.value("number", json()).is_number_integer()) line += " (build " + b["number"].dump() + ")";
      if (b.value("state_string", json()).is_string()) line += ": " + b["state_string"].get<std::string>();
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
    if (state.value("complete", false)) {
      const json results = state.value("results", json());
      std::printf("buildset %lld: %s\n", static_cast<long long>(bsid), result_word(results).c_str());
      return succeeded(results) ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

}  // namespace

int try_command(const Args& args) {
  TryCall call;
  try {
    call = try_args(args);
    if (call.vc == "git" && !call.job["patch"].contains("body")) make_git_patch(call);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln try: %s (see `kiln try --help`)\n", e.what());
    return 2;
  }
  const std::string body = call.job["patch"].value("body", "");
  if (body.empty()) std::fprintf(stderr, "kiln try: warning: there is no patch to try, the diff is empty\n");
  if (call.dry_run) {
    std::printf("%s\n", call.job.dump(2, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  HttpAnswer answer = http_call(call.master, call.auth, "POST", "/try",
                                call.job.dump(-1, ' ', false, json::error_handler_t::replace),
                                "a `try` scheduler");
  const json reply = json::parse(answer.body, nullptr, false);
  if (answer.status != 200 || !reply.is_object() || !reply.value("bsid", json()).is_number_integer()) {
    std::fprintf(stderr, "kiln try: %s refused the job (HTTP %u): %s\n", call.master.c_str(), answer.status,
                 answer.error().c_str());
    return 1;
  }
  const int64_t bsid = reply["bsid"].get<int64_t>();
  std::string builders;
  const json brids = reply.value("brids", json::object());
  for (const auto& [name, brid] : brids.items()) {
    builders += (builders.empty() ? "" : ", ") + name;
  }
  std::printf("try job submitted: buildset %lld on %s\n", static_cast<long long>(bsid), builders.c_str());
  std::fflush(stdout);
  if (!call.wait) return 0;
  return wait_for(call, bsid);
}

}  // namespace kiln::cli
