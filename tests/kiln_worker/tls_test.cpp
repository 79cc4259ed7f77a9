// TLS on both ends: the buildbot-worker listener with `tls: {cert, key}`
// and kiln-worker connecting to wss://, verifying the master's certificate
// against --ca-file. The certificate is made by openssl in the test, for
// "localhost" (tests/util/certificate.h).

#include "buildbot_worker/worker_scenarios.h"
#include "kiln_worker_process.h"
#include "util/certificate.h"

namespace {

using namespace bbw_test;
using kiln_worker_test::KilnWorkerProcess;

std::string tls_yaml(uint16_t port, const fs::path& certs) {
  return "workers:\n"
         "  - {name: bw1, type: buildbot-worker, password: pw-one, listen: \"127.0.0.1:" + std::to_string(port) +
         "\", tls: {cert: \"" + (certs / "cert.pem").string() + "\", key: \"" + (certs / "key.pem").string() +
         "\"}}\n" + kTrivialBuild;
}

}  // namespace

TEST_CASE("kiln-worker connects to a TLS listener over wss:// verifying the master against its CA file and runs a build") {
  TempDir certs("kiln-tls");
  kiln::testing::make_certificate(certs.path());
  const uint16_t port = free_port();
  EngineFixture f(tls_yaml(port, certs.path()));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  KilnWorkerProcess w1(workers.path(), "bw1", "pw-one", port,
                       {"--master", "wss://localhost:" + std::to_string(port), "--ca-file",
                        (certs.path() / "cert.pem").string()});
  w1.start();
  f.submit({{"builders", {"b"}}});
  auto finished = f.wait_finished(1);
  INFO(w1.log());
  CHECK(finished[0]["results"] == KILN_SUCCESS);
  CHECK(w1.log().find("connected to wss://localhost:" + std::to_string(port)) != std::string::npos);
}

TEST_CASE("kiln-worker refuses a TLS master its CA file does not vouch for and a plain worker cannot talk to a TLS listener") {
  TempDir certs("kiln-tls");
  kiln::testing::make_certificate(certs.path());
  TempDir other("kiln-tls-other");
  kiln::testing::make_certificate(other.path());
  const uint16_t port = free_port();
  EngineFixture f(tls_yaml(port, certs.path()));
  REQUIRE(f.start().empty());
  TempDir workers("kiln-worker-test");
  // Another certificate as its CA: the master's does not chain to it.
  KilnWorkerProcess distrustful(workers.path(), "bw1", "pw-one", port,
                                {"--master", "wss://localhost:" + std::to_string(port), "--ca-file",
                                 (other.path() / "cert.pem").string()});
  distrustful.start();
  f.submit({{"builders", {"b"}}});
  CHECK(f.run_until([&] { return distrustful.log().find("TLS handshake with") != std::string::npos; },
                    std::chrono::seconds(15)));
  CHECK(distrustful.log().find("certificate verify failed") != std::string::npos);
  distrustful.stop();
  // ws:// to a TLS port: the listener never sees an upgrade request.
  KilnWorkerProcess plain(workers.path(), "bw1", "pw-one", port);
  plain.start();
  CHECK(f.run_until([&] { return plain.log().find("retrying in") != std::string::npos; }, std::chrono::seconds(15)));
  check_never_built(f);
}

TEST_CASE("a buildbot-worker tls key that cannot be read keeps that worker down and says which file") {
  TempDir certs("kiln-tls");
  kiln::testing::make_certificate(certs.path());
  fs::remove(certs.path() / "key.pem");
  const uint16_t port = free_port();
  EngineFixture f(tls_yaml(port, certs.path()));
  REQUIRE(f.start().empty());
  bool found = false;
  const json status = f.engine().status();
  for (const auto& w : status["workers"]) {
    if (w["name"] != "bw1") continue;
    found = true;
    INFO(w.dump());
    CHECK(w["problem"].get<std::string>().find("cannot use the key '" + (certs.path() / "key.pem").string() + "'") !=
          std::string::npos);
  }
  CHECK(found);
}
