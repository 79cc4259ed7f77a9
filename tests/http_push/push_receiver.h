#pragma once
// A real HTTP receiver for tests of things that POST (the push reporters,
// webhook notifiers, commit statuses): tests/http_push/push_receiver.py
// (Python's http.server) on a loopback port as a child process, over HTTPS
// when given a certificate (util/certificate.h), the requests it took read
// back as JSON, and a switch to make it answer 500.

#include "store/temp_dir.h"
#include "util/child_process.h"
#include "util/free_port.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::testing {

class PushReceiver {
 public:
  explicit PushReceiver(uint16_t port) : port_(port) {}
  // HTTPS with this certificate and key (PEM files).
  PushReceiver(uint16_t port, std::filesystem::path cert, std::filesystem::path key)
      : port_(port), cert_(std::move(cert)), key_(std::move(key)) {}
  ~PushReceiver() { stop(); }

  void start() {
    std::filesystem::remove(dir_ / "ready");
    std::vector<std::string> argv = {"/usr/bin/python3", KILN_SOURCE_DIR "/tests/http_push/push_receiver.py", "--port",
                                     std::to_string(port_), "--dir", dir_.path().string()};
    if (!cert_.empty()) argv.insert(argv.end(), {"--cert", cert_.string(), "--key", key_.string()});
    process_.start(argv, dir_ / "receiver.out");
    process_.wait_until([&] { return std::filesystem::exists(dir_ / "ready"); }, [&] { return read_file(dir_ / "receiver.out"); });
  }
  void stop() { process_.stop(); }

  // Answer 500 from now on (true) or take posts again (false).
  void refuse(bool on) {
    if (on) {
      write_file(dir_ / "fail", "");
    } else {
      std::filesystem::remove(dir_ / "fail");
    }
  }
  size_t refused() const { return read_file(dir_ / "refused").size(); }

  // Every POST taken, oldest first: {"method", "path", "headers", "body"}.
  std::vector<nlohmann::json> posts() const {
    std::vector<std::filesystem::path> files;
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      if (e.path().extension() == ".json") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::vector<nlohmann::json> out;
    for (const auto& f : files) out.push_back(nlohmann::json::parse(read_file(f)));
    return out;
  }

 private:
  uint16_t port_;
  std::filesystem::path cert_, key_;
  TempDir dir_{"kiln-push"};
  ChildProcess process_;
};

}  // namespace kiln::testing
