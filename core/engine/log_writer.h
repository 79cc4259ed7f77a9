#pragma once
// Turns a step's streamed output into whole lines for the store: stdio logs
// get Buildbot's stream letter per line ('o' stdout, 'e' stderr, 'h'
// header), output is cut into lines as it comes (a line split across chunks
// is joined), and lines go to the store in batches so that a step writing
// 100 MB costs a few hundred store calls and never holds the log whole.

#include <kiln/plugin_api.h>

#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace kiln::engine {

class LogWriter {
 public:
  // Receives a batch of whole lines, each ending in '\n'.
  using Sink = std::function<void(std::string lines)>;

  // Lines longer than this are cut (Buildbot's worker does the same).
  static constexpr size_t kMaxLineLength = 64 * 1024;
  // A batch reaching this size is handed to the sink at once.
  static constexpr size_t kBatchBytes = 64 * 1024;

  LogWriter(char type, Sink sink) : type_(type), sink_(std::move(sink)) {}

  void append(kiln_stream stream, std::string_view data);
  // Hands whatever whole lines are waiting to the sink (a timer calls this
  // so live viewers see output promptly).
  void flush();
  // Ends unterminated lines and flushes.
  void finish();
  bool has_pending() const { return !batch_.empty(); }

 private:
  void add_line(kiln_stream stream, std::string_view line);

  char type_;
  Sink sink_;
  std::array<std::string, 3> partial_;  // per stream
  std::string batch_;
};

}  // namespace kiln::engine
