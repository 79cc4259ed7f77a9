#!/usr/bin/env bash
# Configures (once) and builds Kiln into ./build with Ninja (and ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KILN_BUILD_DIR:-build}
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja "$@"
fi
cmake --build "$build_dir" -j "${KILN_JOBS:-$(nproc)}"
