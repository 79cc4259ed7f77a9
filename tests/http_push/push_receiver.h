#pragma once
// A real HTTP receiver for tests of things that POST (the push reporters,
// webhook notifiers): tests/http_push/push_receiver.py (Python's
// http.server) on a loopback port as a child process, the requests it
// took read back as JSON, and a switch to make it answer 500.

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
  ~PushReceiver() { stop(); }

  void start() {
    std::filesystem::remove(dir_ / "ready");
    process_.start({"/usr/bin/python3", KILN_SOURCE_DIR "/tests/http_push/push_receiver.py", "--port",
                    std::to_string(port_), "--dir", dir_.path().string()},
                   dir_ / "receiver.out");
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

  // Every POST taken, oldest first: {"path", "headers", "body"}.
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
  TempDir dir_{"kiln-push"};
  ChildProcess process_;
};

}  // namespace kiln::testing
