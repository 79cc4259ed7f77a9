// kiln-worker's settings and its giving up, through the program itself:
// a config file under the flags, errors that name the file and line, and
// the reconnect backoff with --max-retries against a port nobody serves.

#include "kiln_worker_process.h"

#include "util/free_port.h"

#include <regex>

namespace {

using kiln_worker_test::run_to_end;
using kiln::testing::TempDir;
namespace fs = std::filesystem;

int exit_status(int wait_status) { return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1; }

}  // namespace

TEST_CASE("kiln-worker reads its settings from a config file, and flags given with it win") {
  TempDir root("kiln-worker-options");
  kiln::testing::write_file(root.path() / "password", "s3cret\n");
  kiln::testing::write_file(root.path() / "worker.conf",
                            "# a worker that finds no master\n"
                            "master = 127.0.0.1:" + std::to_string(kiln::testing::free_port()) + "\n"
                            "name = \"bw1\"\n"
                            "password-file = " + (root.path() / "password").string() + "\n"
                            "basedir = " + (root.path() / "base").string() + "\n"
                            "reconnect_min = 0.01\nreconnect_max = 0.02\nmax_retries = 5\n");
  auto ended = run_to_end(root.path(), {"--config", (root.path() / "worker.conf").string(), "--max-retries", "2"});
  INFO(ended.output);
  CHECK(exit_status(ended.status) == 1);
  CHECK(ended.output.find("worker 'bw1' in " + (root.path() / "base").string()) != std::string::npos);
  CHECK(ended.output.find("giving up after 2 attempts") != std::string::npos);
  CHECK(fs::is_directory(root.path() / "base"));
}

TEST_CASE("kiln-worker refuses bad settings with a message naming the flag, file and line") {
  TempDir root("kiln-worker-options");
  kiln::testing::write_file(root.path() / "bad.conf", "name = bw1\nbogus = 1\n");
  auto bad_key = run_to_end(root.path(), {"--config", (root.path() / "bad.conf").string()});
  CHECK(exit_status(bad_key.status) == 2);
  CHECK(bad_key.output.find("bad.conf line 2: unknown key 'bogus'") != std::string::npos);

  auto no_master = run_to_end(root.path(), {"--name", "bw1", "--password", "x"});
  CHECK(exit_status(no_master.status) == 2);
  CHECK(no_master.output.find("no master given") != std::string::npos);

  auto bad_number = run_to_end(root.path(), {"--master", "h:1", "--name", "bw1", "--password", "x", "--max-builds", "0"});
  CHECK(exit_status(bad_number.status) == 2);
  CHECK(bad_number.output.find("max_builds: '0'") != std::string::npos);

  auto unknown_flag = run_to_end(root.path(), {"--masterr", "h:1"});
  CHECK(exit_status(unknown_flag.status) == 2);
  CHECK(unknown_flag.output.find("unknown flag --masterr") != std::string::npos);

  auto ca_without_tls = run_to_end(root.path(), {"--master", "ws://h:1", "--name", "bw1", "--password", "x",
                                                 "--ca-file", (root.path() / "bad.conf").string()});
  CHECK(exit_status(ca_without_tls.status) == 2);
  CHECK(ca_without_tls.output.find("ca_file is for a wss:// master") != std::string::npos);

  auto missing_ca = run_to_end(root.path(), {"--master", "wss://h:1", "--name", "bw1", "--password", "x",
                                             "--ca-file", (root.path() / "nope.pem").string()});
  CHECK(exit_status(missing_ca.status) == 2);
  CHECK(missing_ca.output.find("cannot read CA file " + (root.path() / "nope.pem").string()) != std::string::npos);

  auto bad_url = run_to_end(root.path(), {"--master", "wss://nowhere", "--name", "bw1", "--password", "x"});
  CHECK(exit_status(bad_url.status) == 2);
  CHECK(bad_url.output.find("is not HOST:PORT, ws://HOST:PORT or wss://HOST:PORT") != std::string::npos);
}

TEST_CASE("kiln-worker backs off exponentially with jitter between failed connects, then gives up at --max-retries") {
  TempDir root("kiln-worker-options");
  auto ended = run_to_end(root.path(), {"--master", "127.0.0.1:" + std::to_string(kiln::testing::free_port()),
                                        "--name", "bw1", "--password", "x", "--basedir", root.path().string(),
                                        "--reconnect-min", "0.02", "--reconnect-max", "0.08", "--max-retries", "5"});
  INFO(ended.output);
  CHECK(exit_status(ended.status) == 1);
  std::vector<double> waits;
  const std::regex retry("retrying in ([0-9.]+) s");
  for (std::sregex_iterator it(ended.output.begin(), ended.output.end(), retry), end; it != end; ++it) {
    waits.push_back(std::stod((*it)[1]));
  }
  // Attempt n waits between half and all of min * 2^(n-1), capped at max
  // (printed to 1/100 s).
  REQUIRE(waits.size() == 4);
  const double bases[] = {0.02, 0.04, 0.08, 0.08};
  for (size_t i = 0; i < waits.size(); ++i) {
    INFO("retry " << i + 1);
    CHECK(waits[i] >= bases[i] / 2 - 0.005);
    CHECK(waits[i] <= bases[i] + 0.005);
  }
  CHECK(ended.output.find("giving up after 5 attempts") != std::string::npos);
}
