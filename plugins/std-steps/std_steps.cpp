// kiln-std-steps: the build steps most masters need (see README.md).
#include "steps.h"

namespace sdk = kiln::sdk;
namespace ks = kiln::std_steps;

KILN_PLUGIN("kiln-std-steps", "0.1.0", "Standard build steps: shell, set-property, master-shell, file transfers",
            "MIT",
            sdk::component<ks::ShellStep>(KILN_KIND_STEP, "shell", "0.1.0",
                                          "Runs a command on the worker (Buildbot's ShellCommand), "
                                          "optionally counting warnings",
                                          ks::kShellSchema),
            sdk::component<ks::SetPropertyStep>(KILN_KIND_STEP, "set-property", "0.1.0",
                                                "Sets a build property from a value or a command's stdout",
                                                ks::kSetPropertySchema),
            sdk::component<ks::MasterShellStep>(KILN_KIND_STEP, "master-shell", "0.1.0",
                                                "Runs a command on the master (Buildbot's MasterShellCommand)",
                                                ks::kMasterShellSchema),
            sdk::component<ks::FileUploadStep>(KILN_KIND_STEP, "file-upload", "0.1.0",
                                               "Copies a file from the worker to the master", ks::kFileUploadSchema),
            sdk::component<ks::FileDownloadStep>(KILN_KIND_STEP, "file-download", "0.1.0",
                                                 "Copies a file from the master to the worker",
                                                 ks::kFileDownloadSchema),
            sdk::component<ks::DirectoryUploadStep>(KILN_KIND_STEP, "directory-upload", "0.1.0",
                                                    "Copies a folder from the worker to the master",
                                                    ks::kDirectoryUploadSchema));
