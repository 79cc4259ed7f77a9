#!/usr/bin/env bash
# Sets up, builds, and runs the quickstart master in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
rundir=${KILN_QUICKSTART_DIR:-build/quickstart}
mkdir -p "$rundir"
cp -n examples/quickstart/master.yaml "$rundir/" 2>/dev/null || true
exec build/kiln start "$rundir" --nodaemon
