#pragma once
// The web server's access log, Buildbot's http.log: one line per answered
// request in the Combined Log Format, written by a thread of its own so
// neither the HTTP thread nor the master's loop waits for the disk. The file
// is rotated as Twisted rotates Buildbot's logs: when it reaches
// `rotate_length` bytes it becomes http.log.1 (http.log.1 becomes .2, ...),
// and files beyond `max_rotated_files` are removed.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::web {

// One answered request, as the HTTP server saw it.
struct AccessRecord {
  std::string peer;    // the client's address
  std::string user;    // who logged in, or empty
  std::string method;  // "GET"
  std::string target;  // as sent: path and query
  unsigned version = 11;
  unsigned status = 0;
  uint64_t bytes = 0;  // body bytes sent
  std::string referer, user_agent;
  std::chrono::system_clock::time_point when;
};

// `127.0.0.1 - ann [08/Dec/2026:01:02:03 +0000] "GET /api/v2/builders HTTP/1.1" 200 512 "-" "curl/7.88"`
std::string access_line(const AccessRecord& record);

struct AccessLogOptions {
  std::filesystem::path file;
  uint64_t rotate_length = 10'000'000;  // Buildbot's default
  unsigned max_rotated_files = 10;
  // Told (from the writer's thread) when the file cannot be written or
  // rotated; once per failure streak.
  std::function<void(std::string)> warn;
};

class AccessLog {
 public:
  explicit AccessLog(AccessLogOptions options);
  // Writes what is queued, then joins the writer.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Opens (appends to) the file and starts the writer: the reason it cannot,
  // or empty.
  std::string open();
  // Any thread; never waits for the disk. Lines beyond a backlog of 100,000
  // are dropped, and how many is written once the writer catches up.
  void add(std::string line);

 private:
  void run();
  void write(const std::string& text);
  void rotate();

  const AccessLogOptions options_;
  std::FILE* file_ = nullptr;  // the writer's
  uint64_t size_ = 0;          // the writer's
  bool failing_ = false;       // the writer's
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::string> queue_;  // under mutex_
  uint64_t dropped_ = 0;            // under mutex_
  bool stopping_ = false;           // under mutex_
  std::thread writer_;
};

}  // namespace kiln::web
