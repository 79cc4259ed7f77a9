// kiln-hg: the entry point and the settings of its two components.

#include "hg.h"

namespace kiln::hg {

const char* const kPollerSchema = R"({
  "type": "object",
  "required": ["repourl"],
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The repository to poll, as hg understands it (path, file://, http(s)://, ssh://). hg runs as the master's user, so its ~/.hgrc, ssh keys and auth settings apply."},
    "branches": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                 "description": "Named branches to poll. Default: [\"default\"] unless bookmarks are given."},
    "bookmarks": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                  "description": "Bookmarks to poll; a change's branch is then the bookmark's name."},
    "poll_interval": {"type": "number", "minimum": 0, "default": 600,
                      "description": "Seconds between polls; 0 polls only on request (web hook, kiln poll)."},
    "poll_at_launch": {"type": "boolean", "default": false,
                       "description": "Poll as soon as the master starts instead of after the first interval."},
    "category": {"type": ["string", "null"], "default": null, "description": "Category of every change."},
    "project": {"type": "string", "default": "", "description": "Project of every change."},
    "codebase": {"type": "string", "default": "", "description": "Codebase of every change (multi-repository builds)."},
    "use_commit_timestamps": {"type": "boolean", "default": true,
                              "description": "A change's time is its changeset's date; false: the time the poller saw it."},
    "workdir": {"type": "string", "default": "",
                "description": "Folder of the local mirror, relative to the master's folder. Default: hgpoller-<hash of repourl>."}
  }
})";

const char* const kStepSchema = R"({
  "type": "object",
  "required": ["repourl"],
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The repository to clone, as the worker's hg understands it; with branch_type dirname, the branch is appended to it."},
    "branch_type": {"enum": ["inrepo", "dirname"], "default": "dirname",
                    "description": "dirname (Buildbot's default): each branch is its own repository at repourl + branch, and a stamp with no branch uses repourl itself; inrepo: branches are named branches of one repository (the stamp's branch is updated to), which is what hg-poller's changes mean."},
    "default_branch": {"type": "string", "default": "default",
                       "description": "The branch of a source stamp that names none."},
    "mode": {"enum": ["incremental", "full"], "default": "incremental",
             "description": "incremental: pull and update the existing clone in place; full: start from a clean tree, as `method` says."},
    "method": {"enum": ["clean", "fresh", "clobber"],
               "description": "For mode full: clean (hg purge: remove unknown files, keep ignored ones), fresh (hg purge --all; the default), clobber (remove the folder and clone)."},
    "clobber_on_branch_change": {"type": "boolean", "default": true,
                                 "description": "incremental, inrepo: clone afresh when the working copy is on another named branch than the build wants."},
    "codebase": {"type": "string", "default": "",
                 "description": "Which source stamp of the build to check out; got_revision then becomes {codebase: revision}."},
    "always_use_latest": {"type": "boolean", "default": false,
                          "description": "Ignore the source stamp's revision and patch; check out the branch's latest changeset."}
  }
})";

}  // namespace kiln::hg

KILN_PLUGIN("kiln-hg", "0.1.0", "Mercurial: poller change source and source checkout step", "MIT",
            kiln::sdk::component<kiln::hg::HgPoller>(KILN_KIND_CHANGE_SOURCE, "hg-poller", "0.1.0",
                                                     "Polls a Mercurial repository for new changesets",
                                                     kiln::hg::kPollerSchema),
            kiln::sdk::component<kiln::hg::HgStep>(KILN_KIND_STEP, "hg", "0.1.0",
                                                   "Checks out the build's source from Mercurial",
                                                   kiln::hg::kStepSchema));
