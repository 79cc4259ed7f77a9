#pragma once
// What the mail tests share: a real SMTP server (tests/mail/smtp_sink.py,
// Debian's aiosmtpd) on a loopback port as a child process, the messages
// it received read back as JSON, a self-signed certificate made with the
// openssl command.

#include "store/temp_dir.h"
#include "util/certificate.h"
#include "util/child_process.h"
#include "util/free_port.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace kiln::mail::test {

using nlohmann::json;
namespace fs = std::filesystem;
using kiln::testing::TempDir;

using kiln::testing::free_port;
using kiln::testing::make_certificate;

struct SinkOptions {
  fs::path cert, key;       // STARTTLS required when set
  std::string auth;         // "user:password": AUTH required
  bool only_login = false;  // offer AUTH LOGIN, not PLAIN
  bool smtps = false;       // with cert: TLS from the first byte instead of STARTTLS
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
    if (options_.smtps) args.push_back("--smtps");
    if (!options_.auth.empty()) args.insert(args.end(), {"--auth", options_.auth});
    if (options_.only_login) args.push_back("--only-login");
    process_.start(args, dir_.path() / "sink.out");
    process_.wait_until([&] { return fs::exists(dir_.path() / "ready"); }, [&] { return log(); });
  }

  void stop() {
    process_.stop();
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
  kiln::testing::ChildProcess process_;
};

}  // namespace kiln::mail::test
