// The web server's TLS (a real client, curl, trusting the test certificate;
// and a real browser over https:// and wss://) and its access log http.log,
// written from real requests and rotated.

#include "store/temp_dir.h"
#include "util/certificate.h"
#include "web/browser.h"
#include "web/web_master.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using kiln::testing::TempDir;
using kiln::testing::WebMaster;
using nlohmann::json;

namespace {

std::string tls_option(const TempDir& certs) {
  return "tls: {cert: " + (certs / "cert.pem").string() + ", key: " + (certs / "key.pem").string() + "}";
}

struct CurlAnswer {
  int exit_code = -1;
  std::string output;  // the body, then the status on a line of its own
};

// curl's answer for `url`, trusting only `ca` (and resolving localhost
// to loopback, the certificate's name).
CurlAnswer curl(const std::string& url, const std::string& ca, const std::string& more = "") {
  const std::string command = "curl -sS --max-time 20 --cacert '" + ca + "' -w '\\n%{http_code}' " + more +
                              " '" + url + "' 2>&1";
  CurlAnswer answer;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return answer;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) answer.output.append(buffer, n);
  answer.exit_code = ::pclose(pipe);
  return answer;
}

std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("with tls the web server answers HTTPS to a client that trusts its certificate") {
  TempDir certs("kiln-web-tls");
  kiln::testing::make_certificate(certs.path());
  WebMaster web(tls_option(certs));
  const std::string base = "https://localhost:" + std::to_string(web.port());
  const auto answer = web.off_loop([&] { return curl(base + "/api/v2/builders", (certs / "cert.pem").string()); });
  INFO(answer.output);
  REQUIRE(answer.exit_code == 0);
  REQUIRE_THAT(answer.output, Catch::EndsWith("\n200"));
  const json body = json::parse(answer.output.substr(0, answer.output.rfind('\n')));
  REQUIRE(body["meta"]["total"] == 3);

  // A client that does not trust it is refused by its own check: the
  // server does present that certificate, not a plain answer.
  TempDir other("kiln-web-tls-other");
  kiln::testing::make_certificate(other.path());
  const auto untrusted = web.off_loop([&] { return curl(base + "/", (other / "cert.pem").string()); });
  INFO(untrusted.output);
  REQUIRE(untrusted.exit_code != 0);
  REQUIRE_THAT(untrusted.output, Catch::Contains("certificate"));

  // Plain HTTP on the TLS port gets no HTTP answer.
  const auto plain = web.off_loop([&] {
    return curl("http://localhost:" + std::to_string(web.port()) + "/api/v2/builders",
                (certs / "cert.pem").string());
  });
  INFO(plain.output);
  REQUIRE_THAT(plain.output, !Catch::Contains("\"builders\""));
}

TEST_CASE("a login over tls sets a Secure session cookie") {
  TempDir certs("kiln-web-tls");
  kiln::testing::make_certificate(certs.path());
  WebMaster web(tls_option(certs) + "\nauth:\n  users: [{username: ann, password: secret}]");
  const auto answer = web.off_loop([&] {
    return curl("https://localhost:" + std::to_string(web.port()) + "/auth/login",
                (certs / "cert.pem").string(),
                "-i -H 'Content-Type: application/json' --data '{\"username\": \"ann\", \"password\": \"secret\"}'");
  });
  INFO(answer.output);
  REQUIRE(answer.exit_code == 0);
  REQUIRE_THAT(answer.output, Catch::Contains("Set-Cookie: kiln_session="));
  REQUIRE_THAT(answer.output, Catch::Contains("; Secure;"));
}

TEST_CASE("a page served over tls follows a build live over wss") {
  TempDir certs("kiln-web-tls");
  kiln::testing::make_certificate(certs.path());
  WebMaster web(tls_option(certs));
  if (auto missing = kiln::testing::browser_missing(); !missing.empty()) FAIL(missing);
  kiln::testing::Browser browser(kiln::testing::BrowserOptions{.accept_insecure_certs = true});
  const std::string page = "https://localhost:" + std::to_string(web.port()) + "/builders/unit";
  const bool loaded = web.off_loop([&] {
    browser.navigate(page);
    browser.script("window.kilnNoReload = true;");
    return browser.wait_for_text("body", "Builder unit");
  });
  REQUIRE(loaded);
  // The test's own HTTP client speaks no TLS: curl forces.
  const auto forced = web.off_loop([&] {
    return curl("https://localhost:" + std::to_string(web.port()) + "/api/v2/forceschedulers/force",
                (certs / "cert.pem").string(),
                "-H 'Content-Type: application/json' --data '{\"jsonrpc\": \"2.0\", \"method\": \"force\", "
                "\"id\": 1, \"params\": {\"builderNames\": [\"unit\"]}}'");
  });
  INFO(forced.output);
  REQUIRE_THAT(forced.output, Catch::EndsWith("\n200"));
  REQUIRE(web.master().run_until([&] { return !web.master().finished_builds().empty(); }));
  const bool shown = web.off_loop([&] { return browser.wait_for_text("#live", "success"); });
  REQUIRE(shown);
  REQUIRE(web.off_loop([&] { return browser.script("return window.kilnNoReload === true;"); }) == true);
  const auto errors = web.off_loop([&] { return browser.console_errors(); });
  INFO(kiln::testing::describe(errors));
  REQUIRE(errors.empty());
}

TEST_CASE("a tls certificate that cannot be read stops the start naming the file") {
  TempDir certs("kiln-web-tls");
  kiln::testing::SchedulerMaster master(kiln::testing::web_master_yaml(
      kiln::testing::free_port(), "tls: {cert: " + (certs / "missing.pem").string() + ", key: key.pem}"));
  const std::string error = master.engine().start();
  REQUIRE_THAT(error, Catch::Contains("tls: cannot use the certificate '" + (certs / "missing.pem").string()));
}

TEST_CASE("every answered request is a line of http.log in the master folder") {
  WebMaster web;
  const auto log_file = web.master().dir() / "http.log";
  REQUIRE(web.get("/api/v2/builders?limit=1").status == 200);
  REQUIRE(web.get("/api/v2/nothing").status == 404);
  web.off_loop([&] {
    kiln::testing::HttpConnection connection(web.port());
    return connection.request("GET", "/api/v2/builders", "", {{"User-Agent", "kiln-test/1"}, {"Referer", "http://x/"}});
  });
  std::vector<std::string> lines;
  REQUIRE(web.master().run_until([&] {
    lines = lines_of(read_file(log_file));
    return lines.size() >= 3;
  }));
  INFO(read_file(log_file));
  REQUIRE(lines.size() == 3);
  REQUIRE_THAT(lines[0], Catch::StartsWith("127.0.0.1 - - ["));
  REQUIRE_THAT(lines[0], Catch::Contains(" +0000] \"GET /api/v2/builders?limit=1 HTTP/1.1\" 200 "));
  REQUIRE_THAT(lines[1], Catch::Contains("\"GET /api/v2/nothing HTTP/1.1\" 404 "));
  REQUIRE_THAT(lines[2], Catch::EndsWith("\"http://x/\" \"kiln-test/1\""));
  // The size is the body's.
  const auto body = web.get("/api/v2/builders").body;
  REQUIRE(web.master().run_until([&] { return lines_of(read_file(log_file)).size() == 4; }));
  REQUIRE_THAT(lines_of(read_file(log_file))[3], Catch::Contains(" 200 " + std::to_string(body.size()) + " "));
}

TEST_CASE("http.log is rotated at rotate_length keeping max_rotated_files old logs") {
  WebMaster web("rotate_length: 1000\nmax_rotated_files: 2");
  const auto dir = web.master().dir();
  // ~100 bytes a line: a rotation every ~10 requests, one at a time so
  // each is written on its own.
  for (int i = 0; i < 60; ++i) {
    const size_t before = lines_of(read_file(dir / "http.log")).size();
    REQUIRE(web.get("/api/v2/builders/n" + std::to_string(i)).status == 404);
    REQUIRE(web.master().run_until([&] {
      return std::filesystem::exists(dir / "http.log") && lines_of(read_file(dir / "http.log")).size() != before;
    }));
  }
  REQUIRE(std::filesystem::exists(dir / "http.log.1"));
  REQUIRE(std::filesystem::exists(dir / "http.log.2"));
  REQUIRE_FALSE(std::filesystem::exists(dir / "http.log.3"));
  for (const char* name : {"http.log", "http.log.1", "http.log.2"}) {
    INFO(name);
    REQUIRE(std::filesystem::file_size(dir / name) <= 1000);
  }
  // Newest last: the current file has the last request, .1 the ones before.
  REQUIRE_THAT(read_file(dir / "http.log"), Catch::Contains("/n59 "));
  const auto older = lines_of(read_file(dir / "http.log.1"));
  const auto current = lines_of(read_file(dir / "http.log"));
  REQUIRE(!older.empty());
  auto number = [](const std::string& line) {
    const size_t at = line.find("/n") + 2;
    return std::stoi(line.substr(at, line.find(' ', at) - at));
  };
  REQUIRE(number(older.back()) + 1 == number(current.front()));
}

TEST_CASE("a repeated read comes from the cache yet shows a new build at once and stays behind the authz rules") {
  WebMaster web("auth:\n  users: [{username: ann, password: secret}]\nauthz:\n  show_users_page: [ann]\n  force_build: always");
  // Twice: the second is the cached answer.
  for (int i = 0; i < 2; ++i) REQUIRE(web.get("/api/v2/builds?limit=5").json()["builds"].empty());
  web.force_and_finish("unit");
  // The build's events invalidated it: no wait for the cache's second.
  const json after = web.get("/api/v2/builds?limit=5").json();
  REQUIRE(after["builds"].size() == 1);
  REQUIRE(after["meta"]["total"] == 1);

  const std::string login = "Basic " + std::string("YW5uOnNlY3JldA==");  // ann:secret
  const auto allowed = web.request("GET", "/api/v2/users", "", {{"Authorization", login}});
  REQUIRE(allowed.status == 200);
  // The same read, now kept, is refused to someone the rule refuses.
  REQUIRE(web.get("/api/v2/users").status == 401);
  REQUIRE(web.request("GET", "/api/v2/users", "", {{"Authorization", login}}).status == 200);
}
