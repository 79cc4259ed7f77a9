#pragma once
// Buildbot's WarningCountingShellCommand as a line observer: counts the
// lines of stdout and stderr that match a warning pattern, unless a
// suppression matches them, and hands each counted line to a sink.

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::std_steps {

class WarningCounter {
 public:
  using Sink = std::function<void(std::string_view line)>;

  WarningCounter() = default;

  // Buildbot's default warningPattern.
  static constexpr const char* kDefaultPattern = "(?i).*warning[: ].*";
  // Lines are matched on their first kMaxLine bytes: libstdc++'s regex
  // recurses per character and would overflow the stack on huge lines.
  static constexpr size_t kMaxLine = 4096;

  // Checks the warning keys of a step config (patterns compile, the
  // "groups" extractor has its three groups).
  static kiln::sdk::Status validate(const nlohmann::json& config);
  // nullptr when the config does not ask for counting (no warning_pattern,
  // suppressions or max_warn_count, and count_warnings not true).
  static kiln::sdk::Result<std::unique_ptr<WarningCounter>> from_config(const nlohmann::json& config,
                                                                        Sink sink);

  // Output bytes of one stream; lines may be split across calls.
  void feed(kiln_stream stream, std::string_view data);
  // Ends the streams: their last unterminated lines are checked too.
  void flush();

  uint64_t count() const { return count_; }
  std::optional<uint64_t> max_count() const { return max_count_; }

 private:
  struct Suppression {
    std::optional<std::regex> file_re;     // matched at the start of the file name
    std::optional<std::regex> warning_re;  // searched in the warning text
    std::optional<int64_t> start, end;     // line range, both or neither
  };
  struct Partial {
    std::string text;
    bool overflowed = false;  // beyond kMaxLine: the rest of the line is dropped
  };

  void line(std::string_view text);
  bool suppressed(const std::smatch& match, const std::string& line) const;

  std::regex pattern_;
  bool groups_extractor_ = false;
  std::vector<Suppression> suppressions_;
  std::optional<uint64_t> max_count_;
  std::array<Partial, 2> partial_;  // stdout, stderr
  uint64_t count_ = 0;
  Sink sink_;
};

}  // namespace kiln::std_steps
