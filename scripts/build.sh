#!/usr/bin/env bash
# Configures (once) and builds Kiln into ./build with Ninja (and ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KILN_BUILD_DIR:-build}
# Let ccache share results between clones of the tree (CI builds a fresh
# clone each time): paths are hashed relative to the checkout.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja "$@"
fi
cmake --build "$build_dir" -j "${KILN_JOBS:-$(nproc)}"
