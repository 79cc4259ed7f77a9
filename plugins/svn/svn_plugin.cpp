// kiln-svn: the entry point and the settings of its two components.

#include "svn.h"

namespace kiln::svn {

const char* const kPollerSchema = R"({
  "type": "object",
  "required": ["repourl"],
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The URL to poll (file://, svn://, http(s)://, svn+ssh://), at the repository root or below it: only paths under it are reported, relative to it."},
    "split_file": {"type": ["string", "null"], "default": null,
                   "x-kiln-policy": {"hook": "split_file",
                                     "builtins": ["split_file_alwaystrunk", "split_file_branches", "split_file_projects_branches"]},
                   "description": "How a path (relative to repourl) becomes a change's branch and file: null puts every file on the default branch; split_file_branches reads trunk/FILE and branches/NAME/FILE (branch \"branches/NAME\"); split_file_projects_branches reads PROJECT/trunk/FILE and PROJECT/branches/NAME/FILE and sets the project; any other name calls that split_file policy with {\"path\"}, which answers {\"path\", optional \"branch\", \"project\", \"repository\", \"codebase\"}, [branch, path], or null to ignore the file."},
    "svnuser": {"type": "string", "default": "", "description": "User name for svn (--username)."},
    "svnpasswd": {"type": ["string", "null"], "default": null, "description": "Password for svn (--password); use ${env:...} or ${file:...}."},
    "extra_args": {"type": "array", "items": {"type": "string"}, "default": [],
                   "description": "More svn options for every command, e.g. [\"--config-dir\", \"/etc/ci/svn\"]."},
    "poll_interval": {"type": "number", "minimum": 0, "default": 600,
                      "description": "Seconds between polls; 0 polls only on request (web hook, kiln poll)."},
    "poll_at_launch": {"type": "boolean", "default": false,
                       "description": "Poll as soon as the master starts instead of after the first interval."},
    "project": {"type": "string", "default": "", "description": "Project of every change, unless split_file names one."},
    "category": {"type": ["string", "null"], "default": null, "description": "Category of every change."},
    "codebase": {"type": "string", "default": "", "description": "Codebase of every change, unless split_file names one."},
    "revlinktmpl": {"type": "string", "default": "",
                    "description": "A link to a revision: %s is replaced by the revision number, e.g. \"https://svn.example.org/viewvc?view=revision&revision=%s\"."},
    "use_commit_timestamps": {"type": "boolean", "default": true,
                              "description": "A change's time is its revision's svn:date; false: the time the poller saw it."}
  }
})";

const char* const kStepSchema = R"({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "repourl": {"type": "string", "minLength": 1,
                "description": "The URL to check out, rendered with the build's properties, e.g. \"svn://svn.example.org/repo/%(src::branch:-trunk)s\". Give this or base_url."},
    "base_url": {"type": "string", "minLength": 1,
                 "description": "Buildbot's baseURL: the checkout URL is base_url followed by the source stamp's branch (or default_branch), e.g. base_url \"svn://host/repo/\" and branch \"branches/1.x\"."},
    "default_branch": {"type": "string", "default": "trunk",
                       "description": "With base_url: the branch of a source stamp that names none."},
    "mode": {"enum": ["incremental", "full"], "default": "incremental",
             "description": "incremental: svn update the existing working copy (a missing one, or one of another URL, is checked out afresh); full: start from a clean tree, as `method` says."},
    "method": {"enum": ["clean", "fresh", "clobber", "copy", "export"],
               "description": "For mode full: clean (revert and remove unversioned files, keep ignored ones), fresh (also remove ignored files; the default), clobber (remove the folder and check out), copy (update a pristine working copy in `source` and copy it to the workdir), export (update `source` and svn export it to the workdir)."},
    "codebase": {"type": "string", "default": "",
                 "description": "Which source stamp of the build to check out; got_revision then becomes {codebase: revision}."},
    "username": {"type": "string", "default": "", "description": "User name for svn (--username)."},
    "password": {"type": ["string", "null"], "default": null, "description": "Password for svn (--password); use ${env:...} or ${file:...}."},
    "extra_args": {"type": "array", "items": {"type": "string"}, "default": [],
                   "description": "More svn options for every command."},
    "always_use_latest": {"type": "boolean", "default": false,
                          "description": "Ignore the source stamp's revision and patch; check out the latest revision."}
  }
})";

}  // namespace kiln::svn

KILN_PLUGIN("kiln-svn", "0.1.0", "Subversion: poller change source and source checkout step", "MIT",
            kiln::sdk::component<kiln::svn::SvnPoller>(KILN_KIND_CHANGE_SOURCE, "svn-poller", "0.1.0",
                                                       "Polls a Subversion repository for new revisions",
                                                       kiln::svn::kPollerSchema),
            kiln::sdk::component<kiln::svn::SvnStep>(KILN_KIND_STEP, "svn", "0.1.0",
                                                     "Checks out the build's source from Subversion",
                                                     kiln::svn::kStepSchema));
