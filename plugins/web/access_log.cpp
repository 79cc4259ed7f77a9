// The access log's writer: lines are queued under a mutex and written in
// batches, one fwrite and one fflush per batch, so a busy server costs a
// few syscalls per wake-up rather than one per request.

#include "access_log.h"

#include <ctime>
#include <system_error>
#include <utility>

namespace kiln::web {
namespace {

constexpr size_t kMaxBacklog = 100'000;

std::string quoted_or_dash(const std::string& text) {
  if (text.empty()) return "\"-\"";
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  }
  return out + "\"";
}

}  // namespace

std::string access_line(const AccessRecord& r) {
  const std::time_t t = std::chrono::system_clock::to_time_t(r.when);
  std::tm utc{};
  ::gmtime_r(&t, &utc);
  char when[40];
  std::strftime(when, sizeof when, "[%d/%b/%Y:%H:%M:%S +0000]", &utc);
  std::string line = r.peer.empty() ? "-" : r.peer;
  line += " - ";
  line += r.user.empty() ? "-" : r.user;
  line += ' ';
  line += when;
  line += ' ';
  line += quoted_or_dash(r.method + " " + r.target + " HTTP/" + std::to_string(r.version / 10) + "." +
                         std::to_string(r.version % 10));
  line += ' ' + std::to_string(r.status) + ' ' + std::to_string(r.bytes) + ' ';
  line += quoted_or_dash(r.referer) + ' ' + quoted_or_dash(r.user_agent) + '\n';
  return line;
}

AccessLog::AccessLog(AccessLogOptions options) : options_(std::move(options)) {}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (writer_.joinable()) writer_.join();
  if (file_) std::fclose(file_);
}

std::string AccessLog::open() {
  file_ = std::fopen(options_.file.c_str(), "ae");
  if (!file_) {
    return "cannot open the access log '" + options_.file.string() + "': " +
           std::generic_category().message(errno);
  }
  std::error_code ec;
  size_ = std::filesystem::file_size(options_.file, ec);
  if (ec) size_ = 0;
  writer_ = std::thread([this] { run(); });
  return {};
}

void AccessLog::add(std::string line) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= kMaxBacklog) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(line));
  }
  wake_.notify_one();
}

void AccessLog::run() {
  std::vector<std::string> batch;
  for (;;) {
    uint64_t dropped = 0;
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      batch.swap(queue_);
      std::swap(dropped, dropped_);
      stopping = stopping_;
    }
    std::string text;
    for (const auto& line : batch) text += line;
    batch.clear();
    if (dropped > 0) {
      text += "- - - the access log fell behind: " + std::to_string(dropped) + " lines dropped\n";
    }
    if (!text.empty()) write(text);
    if (stopping) return;
  }
}

void AccessLog::write(const std::string& text) {
  if (options_.rotate_length > 0 && size_ > 0 && size_ + text.size() > options_.rotate_length) rotate();
  if (!file_) return;
  const bool ok = std::fwrite(text.data(), 1, text.size(), file_) == text.size() && std::fflush(file_) == 0;
  if (ok) {
    size_ += text.size();
    failing_ = false;
  } else if (!failing_) {
    failing_ = true;
    if (options_.warn) options_.warn("cannot write the access log '" + options_.file.string() + "'");
  }
}

// http.log.(N-1) -> http.log.N, ..., http.log -> http.log.1, then a fresh
// http.log; the oldest beyond max_rotated_files is removed.
void AccessLog::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  const std::string base = options_.file.string();
  auto numbered = [&](unsigned n) { return std::filesystem::path(base + "." + std::to_string(n)); };
  std::error_code ec;
  if (options_.max_rotated_files == 0) {
    std::filesystem::remove(options_.file, ec);
  } else {
    std::filesystem::remove(numbered(options_.max_rotated_files), ec);
    for (unsigned n = options_.max_rotated_files; n > 1; --n) {
      if (std::filesystem::exists(numbered(n - 1), ec)) std::filesystem::rename(numbered(n - 1), numbered(n), ec);
    }
    std::filesystem::rename(options_.file, numbered(1), ec);
    if (ec && options_.warn) options_.warn("cannot rotate the access log '" + base + "': " + ec.message());
  }
  file_ = std::fopen(options_.file.c_str(), "ae");
  size_ = 0;
  if (!file_ && options_.warn) options_.warn("cannot reopen the access log '" + base + "' after rotating it");
}

}  // namespace kiln::web
