#pragma once
// The end-to-end scenarios every worker program that speaks Buildbot's
// msgpack protocol must pass (Debian's buildbot-worker here, kiln-worker in
// tests/kiln_worker): the master.yaml of each and the checks of its
// results, so both programs are held to the very same builds.

#include "bbw_support.h"

#include <sys/stat.h>

namespace bbw_test {

// Workers bw1 (password pw-one) and bw2 (pw-two) on one port, then `builders`.
inline std::string two_workers_yaml(uint16_t port, const std::string& builders) {
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  return "workers:\n"
         "  - {name: bw1, type: buildbot-worker, password: pw-one, listen: \"" + listen + "\"}\n"
         "  - {name: bw2, type: buildbot-worker, password: pw-two, listen: \"" + listen + "\"}\n" +
         builders;
}

// Builder `full` on bw1: shell, download, upload of a file and a tree,
// stat, glob, a failing stat and a failing shell.
inline const char* const kFullBuild = R"yaml(
builders:
  - name: full
    workers: [bw1]
    steps:
      - {type: shell, name: hello, env: {GREETING: kiln},
         command: "echo hello from $GREETING; echo oops >&2; mkdir -p out/sub && printf one > out/a.txt && printf two > out/sub/b.txt"}
      - {type: file-download, name: download, mastersrc: input.txt, workerdest: in/input.txt, mode: "0640"}
      - {type: shell, name: check-download, command: "cat in/input.txt; stat -c 'mode %a' in/input.txt"}
      - {type: file-upload, name: upload-file, workersrc: out/a.txt, masterdest: uploads/a.txt, keepstamp: true}
      - {type: directory-upload, name: upload-dir, workersrc: out, masterdest: uploads/tree}
      - {type: worker-command, name: stat, command: stat, key: stat, args: {file: in/input.txt, workdir: build}}
      - {type: worker-command, name: glob, command: glob, key: glob, args: {path: "build/out/*.txt"}}
      - {type: worker-command, name: stat-missing, command: stat, key: missing, args: {file: nope.txt}}
      - {type: shell, name: fails, command: "exit 3"}
)yaml";

// What the master needs before kFullBuild runs.
inline void prepare_full_build(EngineFixture& f) { kiln::testing::write_file(f.dir() / "input.txt", "downloaded bytes\n"); }

// Runs kFullBuild (bw1 connected or about to) and checks every step.
inline void check_full_build(EngineFixture& f, const fs::path& worker_basedir) {
  f.submit({{"builders", {"full"}}, {"reason", "test"}});
  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_FAILURE);  // the last step exits 3
  const int64_t buildid = finished[0]["buildid"].get<int64_t>();

  std::map<std::string, int> results;
  for (const auto& s : f.get("builds/" + std::to_string(buildid) + "/steps")) {
    results[s["name"].get<std::string>()] = s["results"].get<int>();
  }
  CHECK(results.at("hello") == KILN_SUCCESS);
  CHECK(results.at("check-download") == KILN_SUCCESS);
  CHECK(results.at("stat") == KILN_SUCCESS);
  CHECK(results.at("glob") == KILN_SUCCESS);
  CHECK(results.at("stat-missing") == KILN_FAILURE);
  CHECK(results.at("fails") == KILN_FAILURE);
  CHECK(results.at("download") == KILN_SUCCESS);
  CHECK(results.at("upload-file") == KILN_SUCCESS);
  CHECK(results.at("upload-dir") == KILN_SUCCESS);

  // Output arrives per stream, the worker's header included.
  const std::string hello = f.log_text(buildid, "hello");
  CHECK(hello.find("ohello from kiln\n") != std::string::npos);
  CHECK(hello.find("eoops\n") != std::string::npos);
  CHECK(hello.find("hecho hello from $GREETING") != std::string::npos);
  // Downloads carry the file's bytes (Buildbot 3.7's master sends none)
  // and its mode.
  const std::string check = f.log_text(buildid, "check-download");
  CHECK(check.find("odownloaded bytes\n") != std::string::npos);
  CHECK(check.find("omode 640\n") != std::string::npos);
  // Uploads: a file (keepstamp succeeds, unlike on Buildbot 3.7's master)
  // and a tree unpacked from the worker's tar stream.
  CHECK(kiln::testing::read_file(f.dir() / "uploads" / "a.txt") == "one");
  CHECK(kiln::testing::read_file(f.dir() / "uploads" / "tree" / "a.txt") == "one");
  CHECK(kiln::testing::read_file(f.dir() / "uploads" / "tree" / "sub" / "b.txt") == "two");

  const json stat = probe::results().at("stat");
  REQUIRE(stat["updates"].size() >= 1);
  const json st = stat["updates"][0]["stat"];
  REQUIRE(st.is_array());
  CHECK(S_ISREG(st[0].get<int>()));
  CHECK((st[0].get<int>() & 0777) == 0640);
  CHECK(st[6] == 17);
  CHECK(stat["result"]["rc"] == 0);
  CHECK(probe::results().at("missing")["result"]["rc"] == 2);  // ENOENT

  const json glob = probe::results().at("glob");
  REQUIRE(glob["updates"].size() >= 1);
  const json files = glob["updates"][0]["files"];
  REQUIRE(files.size() == 1);
  CHECK(files[0] == (worker_basedir / "full" / "build" / "out" / "a.txt").string());
}

// The worker info bw1 gave, as the data API shows it.
inline json worker_info(EngineFixture& f, const std::string& name = "bw1") {
  const json worker = f.get("workers/" + name);
  return worker.is_array() ? worker[0]["workerinfo"] : worker["workerinfo"];
}

inline bool is_connected(EngineFixture& f, const std::string& name) {
  const json worker = f.get("workers/" + name);
  const json w = worker.is_array() ? worker[0] : worker;
  return !w["connected_to"].empty();
}

// Builder `b` on bw1, one trivial step: for workers that must never run it.
inline const char* const kTrivialBuild = R"yaml(
builders:
  - {name: b, workers: [bw1], steps: [{type: shell, command: "true"}]}
)yaml";

// After a refused worker had its chance: no build ran, bw1 is not connected.
inline void check_never_built(EngineFixture& f) {
  CHECK(f.finished().empty());
  CHECK(!is_connected(f, "bw1"));
}

// Builder `slow` on bw1 and bw2: in a worker whose basedir holds SLOW the
// step writes its shell's pid to <basedir>/shell.pid and waits a minute.
inline const char* const kSlowBuild = R"yaml(
builders:
  - name: slow
    workers: [bw1, bw2]
    steps:
      - {type: shell, name: work,
         command: "if [ -e ../../SLOW ]; then echo $$ > ../../shell.pid; sleep 60; fi; echo done on %(prop:workername)s"}
)yaml";

// After the build on bw1 ended RETRY: the rerun of the same request on bw2.
inline void check_rerun_on_bw2(EngineFixture& f, const std::vector<json>& finished) {
  REQUIRE(finished.size() >= 2);
  CHECK(finished[1]["results"] == KILN_SUCCESS);
  CHECK(finished[1]["buildrequestid"] == finished[0]["buildrequestid"]);
  CHECK(finished[1]["workerid"] != finished[0]["workerid"]);
  const std::string log = f.log_text(finished[1]["buildid"].get<int64_t>(), "work");
  CHECK(log.find("odone on bw2\n") != std::string::npos);
}

}  // namespace bbw_test
