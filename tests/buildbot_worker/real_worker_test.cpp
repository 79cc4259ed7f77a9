// End to end: Debian's real buildbot-worker 3.7 (msgpack protocol) connects
// to the plugin inside a real engine and runs real builds.

#include "bbw_support.h"

#include <sys/stat.h>

namespace {

using namespace bbw_test;

std::string two_workers_yaml(uint16_t port, const std::string& builders) {
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  return "workers:\n"
         "  - {name: bw1, type: buildbot-worker, password: pw-one, listen: \"" + listen + "\"}\n"
         "  - {name: bw2, type: buildbot-worker, password: pw-two, listen: \"" + listen + "\"}\n" +
         builders;
}

}  // namespace

TEST_CASE("a real buildbot-worker runs shell, download, upload, stat and glob steps of a build") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, R"yaml(
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
)yaml"));
  kiln::testing::write_file(f.dir() / "input.txt", "downloaded bytes\n");
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  w1.start();

  f.submit({{"builders", {"full"}}, {"reason", "test"}});
  auto finished = f.wait_finished(1);
  INFO(w1.twistd_log());
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
  CHECK(files[0] == (w1.basedir() / "full" / "build" / "out" / "a.txt").string());

  // What the worker said about itself became the worker's info.
  const json worker = f.get("workers/bw1");
  const json info = worker.is_array() ? worker[0]["workerinfo"] : worker["workerinfo"];
  CHECK(info["basedir"] == w1.basedir().string());
  CHECK(info["version"].get<std::string>().rfind("3.", 0) == 0);
  CHECK(info["worker_commands"].contains("shell"));
  CHECK(info["environ"]["LANG"] == "C.UTF-8");
}

TEST_CASE("a buildbot-worker with a wrong password is refused and never gets a build") {
  const uint16_t port = free_port();
  EngineFixture f(two_workers_yaml(port, R"yaml(
builders:
  - {name: b, workers: [bw1], steps: [{type: shell, command: "true"}]}
)yaml"));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess intruder(workers.path(), "bw1", "not-the-password", port);
  intruder.start();
  f.submit({{"builders", {"b"}}});
  // The worker logs the refusal of its upgrade request.
  CHECK(f.run_until([&] { return intruder.twistd_log().find("[401]") != std::string::npos; },
                    std::chrono::seconds(15)));
  f.run_until([] { return false; }, std::chrono::milliseconds(300));
  CHECK(f.finished().empty());
  const json worker = f.get("workers/bw1");
  const json w = worker.is_array() ? worker[0] : worker;
  CHECK(w["connected_to"].empty());
}

TEST_CASE("a buildbot-worker killed mid-build ends the build RETRY and the build re-runs on another worker") {
  const uint16_t port = free_port();
  // Only bw1's folder holds SLOW: there the step waits until the worker dies.
  EngineFixture f(two_workers_yaml(port, R"yaml(
builders:
  - name: slow
    workers: [bw1, bw2]
    steps:
      - {type: shell, name: work,
         command: "if [ -e ../../SLOW ]; then echo $$ > ../../shell.pid; sleep 60; fi; echo done on %(prop:workername)s"}
)yaml"));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-bbw-workers");
  WorkerProcess w1(workers.path(), "bw1", "pw-one", port);
  WorkerProcess w2(workers.path(), "bw2", "pw-two", port);
  kiln::testing::write_file(w1.basedir() / "SLOW", "");
  w1.start();
  f.submit({{"builders", {"slow"}}});

  const fs::path pid_file = w1.basedir() / "shell.pid";
  REQUIRE(f.run_until([&] { return fs::exists(pid_file) && fs::file_size(pid_file) > 0; }));
  w1.kill_now();
  // The worker runs commands in their own process group; nothing else
  // would end the orphaned sleep.
  const int shell_pid = std::stoi(kiln::testing::read_file(pid_file));
  ::kill(-shell_pid, SIGKILL);

  auto finished = f.wait_finished(1);
  CHECK(finished[0]["results"] == KILN_RETRY);
  w2.start();
  finished = f.wait_finished(2);
  INFO(w2.twistd_log());
  CHECK(finished[1]["results"] == KILN_SUCCESS);
  CHECK(finished[1]["buildrequestid"] == finished[0]["buildrequestid"]);
  CHECK(finished[1]["workerid"] != finished[0]["workerid"]);
  const std::string log = f.log_text(finished[1]["buildid"].get<int64_t>(), "work");
  CHECK(log.find("odone on bw2\n") != std::string::npos);
}
