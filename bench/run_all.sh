#!/bin/sh
# Builds the benchmarks in a Release (-O2) tree and runs them all, then
# prints the summary table. Figures only: nothing here passes or fails on a
# timing.
#
#   bench/run_all.sh [BUILD_DIR]      default: build-bench beside bench/
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-bench}

# Until the top-level CMakeLists adds bench/, configure a wrapper top level
# that includes the real tree plus bench/.
top=$src
if ! grep -q 'add_subdirectory(bench)' "$src/CMakeLists.txt"; then
  # A stable path per build folder: CMake ties a cache to its source folder.
  top=/tmp/kiln-bench-top-$(printf '%s' "$build" | cksum | cut -d' ' -f1)
  mkdir -p "$top"
  sed -e "s#^add_subdirectory(\([a-z-]*\))#add_subdirectory($src/\1 \1)#" \
      -e "s#^  add_subdirectory(tests)#  add_subdirectory($src/tests tests)#" \
      "$src/CMakeLists.txt" > "$top/CMakeLists.txt"
  printf 'option(KILN_BUILD_BENCH "Build the benchmarks" OFF)\nif(KILN_BUILD_BENCH)\n  add_subdirectory(%s/bench bench)\nendif()\n' \
      "$src" >> "$top/CMakeLists.txt"
fi
cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" "-DCMAKE_C_FLAGS_RELEASE=-O2 -DNDEBUG" \
  -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=ON > /dev/null
cmake --build "$build" --target kiln_benchmarks -j2

out=$(mktemp /tmp/kiln-bench-out-XXXXXX)
trap 'rm -f "$out"' EXIT
for b in bench_trivial_builds bench_latency bench_startup bench_pending_start \
         bench_reconfig bench_log_ingest bench_store_size bench_poll bench_classify \
         bench_remote_workers bench_web_api bench_web_pages; do
  echo "== $b"
  "$build/bench/$b" | tee -a "$out" | grep -v '^summary: '
done

echo
echo "Summary ($(date -u +%Y-%m-%d), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)):"
{
  echo "benchmark|Kiln|target (Buildbot 3.7)"
  sed -n 's/^summary: //p' "$out" | sed 's/ | /|/g'
} | column -t -s '|'
