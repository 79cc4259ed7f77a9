// kiln-git: the entry point and the settings of its two components.

#include "git.h"

namespace kiln::git {

const char* const kPollerSchema = R"({
  "type": "object",
  "required": ["repourl"],
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The repository to poll, as git understands it (URL, scp-like address or path). The git command line runs as the master's user, so its ssh keys, ssh config and credential helpers apply."},
    "branches": {"type": ["array", "string"], "items": {"type": "string"},
                 "description": "Branches to poll: a list of names (\"main\" or \"refs/heads/main\"), \"all\" for every branch, or any other string as a regular expression (ECMAScript) that must match the whole branch name. Default: the branch the remote's HEAD points to."},
    "only_tags": {"type": "boolean", "default": false,
                  "description": "Poll tags (refs/tags/*) instead of branches; a change's branch is then the full tag ref."},
    "poll_interval": {"type": "number", "minimum": 0, "default": 600,
                      "description": "Seconds between polls; 0 polls only on request (web hook, kiln poll)."},
    "poll_at_launch": {"type": "boolean", "default": false,
                       "description": "Poll as soon as the master starts instead of after the first interval."},
    "category": {"type": ["string", "null"], "default": null, "description": "Category of every change."},
    "project": {"type": "string", "default": "", "description": "Project of every change."},
    "codebase": {"type": "string", "default": "", "description": "Codebase of every change (multi-repository builds)."},
    "use_commit_timestamps": {"type": "boolean", "default": true,
                              "description": "A change's time is its commit's committer time; false: the time the poller saw it."},
    "build_pushes_with_no_commits": {"type": "boolean", "default": false,
                                     "description": "Report a change for a branch that moved (or appeared) without any commit that was not known before, e.g. a branch made from an existing commit."},
    "workdir": {"type": "string", "default": "",
                "description": "Folder of the bare mirror, relative to the master's folder. Default: gitpoller-<hash of repourl>."}
  }
})";

const char* const kStepSchema = R"({
  "type": "object",
  "required": ["repourl"],
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The repository to check out, as the worker's git understands it."},
    "branch": {"type": "string", "default": "HEAD",
               "description": "Branch used when the build's source stamp names none (HEAD: the remote's default branch)."},
    "mode": {"enum": ["incremental", "full"], "default": "incremental",
             "description": "incremental: update the existing working copy in place; full: start from a clean tree, as `method` says."},
    "method": {"enum": ["clean", "fresh", "clobber", "copy"],
               "description": "For mode full: clean (git clean -f -f -d, keep ignored files), fresh (also remove ignored files; the default), clobber (remove the folder and clone), copy (update a pristine copy in `source` and copy it to the workdir)."},
    "codebase": {"type": "string", "default": "",
                 "description": "Which source stamp of the build to check out; got_revision then becomes {codebase: revision}."},
    "submodules": {"type": "boolean", "default": false,
                   "description": "Initialise and update submodules recursively."},
    "shallow": {"type": ["boolean", "integer"], "default": false,
                "description": "Clone and fetch with --depth: true for 1, or the depth."},
    "retry_fetch": {"type": "boolean", "default": false,
                    "description": "Fetch once more when a fetch or the checkout after it fails."},
    "clobber_on_failure": {"type": "boolean", "default": false,
                           "description": "When a fetch or clone fails, remove the folder and clone again."},
    "retry": {"type": ["array", "null"], "items": {"type": "number"}, "default": null,
              "description": "[delay seconds, repeats]: clone again after a failed clone."},
    "always_use_latest": {"type": "boolean", "default": false,
                          "description": "Ignore the source stamp's revision and patch; check out the branch's latest commit."}
  }
})";

}  // namespace kiln::git

KILN_PLUGIN("kiln-git", "0.1.0", "Git: poller change source and source checkout step", "MIT",
            kiln::sdk::component<kiln::git::GitPoller>(KILN_KIND_CHANGE_SOURCE, "git-poller", "0.1.0",
                                                       "Polls a git repository for new commits",
                                                       kiln::git::kPollerSchema),
            kiln::sdk::component<kiln::git::GitStep>(KILN_KIND_STEP, "git", "0.1.0",
                                                     "Checks out the build's source from git",
                                                     kiln::git::kStepSchema));
