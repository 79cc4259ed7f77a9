#include "engine/log_writer.h"

#include <kiln/plugin_api.h>

namespace kiln::engine {

namespace {
char stream_letter(kiln_stream stream) {
  switch (stream) {
    case KILN_STREAM_STDERR: return 'e';
    case KILN_STREAM_HEADER: return 'h';
    default: return 'o';
  }
}
size_t index_of(kiln_stream stream) {
  return stream == KILN_STREAM_STDERR ? 1 : stream == KILN_STREAM_HEADER ? 2 : 0;
}
}  // namespace

void LogWriter::add_line(kiln_stream stream, std::string_view line) {
  if (type_ == KILN_LOG_TYPE_STDIO) batch_.push_back(stream_letter(stream));
  batch_.append(line);
  batch_.push_back('\n');
  if (batch_.size() >= kBatchBytes) flush();
}

void LogWriter::append(kiln_stream stream, std::string_view data) {
  // Text and HTML logs have a single stream.
  if (type_ != KILN_LOG_TYPE_STDIO) stream = KILN_STREAM_STDOUT;
  std::string& partial = partial_[index_of(stream)];
  while (!data.empty()) {
    size_t nl = data.find('\n');
    if (nl == std::string_view::npos) {
      partial.append(data);
      while (partial.size() >= kMaxLineLength) {
        add_line(stream, std::string_view(partial).substr(0, kMaxLineLength));
        partial.erase(0, kMaxLineLength);
      }
      return;
    }
    if (partial.empty()) {
      add_line(stream, data.substr(0, nl));
    } else {
      partial.append(data.substr(0, nl));
      add_line(stream, partial);
      partial.clear();
    }
    data.remove_prefix(nl + 1);
  }
}

void LogWriter::flush() {
  if (batch_.empty()) return;
  std::string lines;
  lines.swap(batch_);
  batch_.reserve(kBatchBytes + 256);
  sink_(std::move(lines));
}

void LogWriter::finish() {
  for (size_t i = 0; i < partial_.size(); ++i) {
    if (!partial_[i].empty()) {
      add_line(static_cast<kiln_stream>(i == 1 ? KILN_STREAM_STDERR
                                                : i == 2 ? KILN_STREAM_HEADER : KILN_STREAM_STDOUT),
               partial_[i]);
      partial_[i].clear();
    }
  }
  flush();
}

}  // namespace kiln::engine
