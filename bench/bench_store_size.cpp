// Benchmark 6: store growth per build. Builds whose one step writes 10 MB
// of logs; the store is checkpointed (PRAGMA wal_checkpoint(TRUNCATE) on a
// connection of our own) after start-up and after the builds, and the
// growth of state.sqlite + its WAL is divided by the number of builds. Two
// kinds of log: compiler-like text (compresses well, as real logs do) and
// base64 of random bytes (does not compress at all: the worst case).
//
//   bench_store_size [builds=5] [MB per build=10]

#include "bench_common.h"

#include <sqlite3.h>

using namespace kiln::bench;

namespace {

uintmax_t file_size_or_0(const fs::path& p) {
  std::error_code ec;
  auto size = fs::file_size(p, ec);
  return ec ? 0 : size;
}

// state.sqlite + state.sqlite-wal after a checkpoint that empties the WAL.
uintmax_t checkpointed_size(const fs::path& dir) {
  const fs::path db = dir / "state.sqlite";
  sqlite3* raw = nullptr;
  if (sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    die("sqlite3_open " + db.string());
  }
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> conn(raw, sqlite3_close);
  sqlite3_busy_timeout(conn.get(), 10000);
  int log_frames = 0, checkpointed = 0;
  if (sqlite3_wal_checkpoint_v2(conn.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames,
                                &checkpointed) != SQLITE_OK) {
    die(std::string("checkpoint: ") + sqlite3_errmsg(conn.get()));
  }
  return file_size_or_0(db) + file_size_or_0(dir / "state.sqlite-wal");
}

double measure(const std::string& kind, const std::string& command, int builds, int mb) {
  TempDir dir("kiln-bench-size");
  write_text(dir.path() / "master.yaml",
             // Every buildset a build of its own, not collapsed into one.
             "master: {collapse_requests: false}\n"
             "workers:\n  - {name: w1, type: local}\nbuilders:\n"
             "  - {name: b1, workers: [w1], steps: [{type: shell, name: log, command: \"" +
                 command + "\"}]}\n");
  BenchMaster master(dir.path());
  master.start();
  master.store().wait();
  const uintmax_t before = checkpointed_size(dir.path());
  int finished = 0;
  int succeeded = 0;
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json& e) {
    if (e.value("results", -1) == KILN_SUCCESS) ++succeeded;
    if (++finished == builds) master.stop_loop();
  });
  for (int i = 0; i < builds; ++i) {
    master.engine().add_buildset({{"builders", {"b1"}}}, [](kiln_status status, json value) {
      if (status != KILN_OK) die("add_buildset: " + value.dump());
    });
  }
  if (!master.run(600)) die("builds did not finish");
  if (succeeded != builds) die(kind + ": a build failed");
  master.shutdown();
  const uintmax_t after = checkpointed_size(dir.path());
  const double per_build = double(after - before) / builds;
  std::printf("store_size: %s logs, %d builds of %d MB: store %.2f MiB -> %.2f MiB, %.0f KiB "
              "per build (%.1f%% of the log bytes)\n",
              kind.c_str(), builds, mb, double(before) / 1048576, double(after) / 1048576,
              per_build / 1024, 100.0 * per_build / (mb * 1e6));
  return per_build;
}

}  // namespace

int main(int argc, char** argv) {
  const int builds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int mb = argc > 2 ? std::atoi(argv[2]) : 10;
  const std::string bytes = std::to_string(mb * 1'000'000);
  // Lines like a CMake/compiler build log: counters and paths vary per line.
  const std::string text =
      "awk 'BEGIN{for(i=0;;i++) printf \\\"[%3d%%] Building CXX object src/CMakeFiles/app.dir/"
      "module_%06d.cpp.o -O2 -g -Wall (warnings: %d)\\\\n\\\", i%101, i, i%7}' | head -c " +
      bytes;
  const std::string random = "head -c " + std::to_string(mb * 750'000) +
                             " /dev/urandom | base64 -w 99";
  const double text_per_build = measure("compiler-like text", text, builds, mb);
  const double random_per_build = measure("random base64", random, builds, mb);
  summary("store size per build, 10 MB of logs",
          format("%.0f KiB (text logs), %.0f KiB (incompressible)", text_per_build / 1024,
                 random_per_build / 1024),
          "(Buildbot ~1 MB/build)");
  return 0;
}
