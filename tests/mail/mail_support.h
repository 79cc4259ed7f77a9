#pragma once
// What the mail tests share: a real SMTP server (tests/mail/smtp_sink.py,
// Debian's aiosmtpd) on a loopback port as a child process, the messages
// it received read back as JSON, a self-signed certificate made with the
// openssl command.

#include "store/temp_dir.h"
#include "util/free_port.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::mail::test {

using nlohmann::json;
namespace fs = std::filesystem;
using kiln::testing::TempDir;

using kiln::testing::free_port;

// A certificate for "localhost" signed by itself: cert.pem doubles as the
// tls_ca_file that trusts it.
inline void make_certificate(const fs::path& dir) {
  const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                              "-addext subjectAltName=DNS:localhost -keyout '" +
                              (dir / "key.pem").string() + "' -out '" + (dir / "cert.pem").string() +
                              "' >/dev/null 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);
}

struct SinkOptions {
  fs::path cert, key;       // STARTTLS required when set
  std::string auth;         // "user:password": AUTH required
  bool only_login = false;  // offer AUTH LOGIN, not PLAIN
};

class SmtpSink {
 public:
  explicit SmtpSink(uint16_t port, SinkOptions options = {}) : port_(port), options_(std::move(options)) {
    start();
  }
  ~SmtpSink() { stop(); }
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;

  uint16_t port() const { return port_; }

  void start() {
    std::vector<std::string> args = {"/usr/bin/python3", KILN_SOURCE_DIR "/tests/mail/smtp_sink.py",
                                     "--port", std::to_string(port_), "--dir", dir_.path().string()};
    if (!options_.cert.empty()) {
      args.insert(args.end(), {"--cert", options_.cert.string(), "--key", options_.key.string()});
    }
    if (!options_.auth.empty()) args.insert(args.end(), {"--auth", options_.auth});
    if (options_.only_login) args.push_back("--only-login");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string output = (dir_.path() / "sink.out").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::close_range(3, ~0u, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    REQUIRE(pid_ > 0);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!fs::exists(dir_.path() / "ready")) {
      INFO(kiln::testing::read_file(output));
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      REQUIRE(::waitpid(pid_, nullptr, WNOHANG) == 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    fs::remove(dir_.path() / "ready");
  }

  // Every message received so far, oldest first.
  std::vector<json> messages() const {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir_.path())) {
      if (e.path().extension() == ".json") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<json> out;
    for (const auto& f : files) out.push_back(json::parse(kiln::testing::read_file(f)));
    return out;
  }

  // The messages one recipient got.
  std::vector<json> messages_to(const std::string& address) const {
    std::vector<json> out;
    for (auto& m : messages()) {
      const auto& to = m["rcpt_tos"];
      if (std::find(to.begin(), to.end(), address) != to.end()) out.push_back(m);
    }
    return out;
  }

  std::string log() const { return kiln::testing::read_file(dir_.path() / "sink.out"); }

 private:
  uint16_t port_;
  SinkOptions options_;
  TempDir dir_{"kiln-smtp"};
  pid_t pid_ = -1;
};

}  // namespace kiln::mail::test
