#!/usr/bin/env bash
# Sets up, builds, and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
scripts/build.sh
cd "${KILN_BUILD_DIR:-build}"
# A hung test fails in 15 minutes instead of holding CI to its limit.
ctest --output-on-failure --timeout 900 -j "${KILN_JOBS:-$(nproc)}" "$@"
