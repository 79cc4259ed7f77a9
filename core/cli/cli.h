#pragma once

namespace kiln::cli {

// Runs the `kiln` command line; returns the process exit code.
int run(int argc, char** argv);

}  // namespace kiln::cli
