#include "warning_counter.h"

#include <charconv>
#include <utility>

namespace kiln::std_steps {

namespace sdk = kiln::sdk;
using nlohmann::json;

namespace {

// std::regex has no inline flags; Buildbot's patterns use a leading "(?i)".
sdk::Result<std::regex> compile(std::string pattern, std::string_view key) {
  auto flags = std::regex::ECMAScript;
  if (pattern.rfind("(?i)", 0) == 0) {
    pattern.erase(0, 4);
    flags |= std::regex::icase;
  }
  try {
    return std::regex(pattern, flags);
  } catch (const std::regex_error& e) {
    return sdk::invalid_config(std::string(key) + " '" + pattern + "' is not a valid regular expression: " +
                               e.what());
  }
}

bool enabled(const json& config) {
  auto given = [&](const char* key) {
    auto it = config.find(key);
    return it != config.end() && !it->is_null();
  };
  return config.value("count_warnings", false) || given("warning_pattern") || given("suppressions") ||
         given("max_warn_count");
}

std::optional<std::regex> optional_regex(const json& entry, const char* key, std::string_view where,
                                         sdk::Status& status) {
  auto it = entry.find(key);
  if (it == entry.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    status = sdk::invalid_config(std::string(where) + "." + key + " must be a string");
    return std::nullopt;
  }
  auto re = compile(it->get<std::string>(), std::string(where) + "." + key);
  if (!re) {
    status = re.status();
    return std::nullopt;
  }
  return std::move(*re);
}

std::optional<int64_t> optional_int(const json& entry, const char* key) {
  auto it = entry.find(key);
  if (it == entry.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

}  // namespace

sdk::Status WarningCounter::validate(const json& config) {
  // Only what the user wrote needs checking: the built-in default pattern is
  // known good, and compiling it for each of a thousand shell steps is most
  // of a large master's start-up.
  // (Schema defaults are filled in by now: "whole_line" and nulls are not
  // the user's.)
  bool written = config.value("warning_extractor", "whole_line") != "whole_line";
  for (const char* key : {"warning_pattern", "suppressions"}) {
    written = written || (config.contains(key) && !config[key].is_null());
  }
  if (!written) return {};
  // Checked even when counting is off, so a mistake shows before it is used.
  json enabled_config = config;
  enabled_config["count_warnings"] = true;
  auto counter = from_config(enabled_config, {});
  return counter ? sdk::Status() : counter.status();
}

sdk::Result<std::unique_ptr<WarningCounter>> WarningCounter::from_config(const json& config, Sink sink) {
  if (!enabled(config)) return std::unique_ptr<WarningCounter>();
  auto counter = std::make_unique<WarningCounter>();
  counter->sink_ = std::move(sink);

  const json pattern = config.value("warning_pattern", json());
  auto re = compile(pattern.is_string() ? pattern.get<std::string>() : kDefaultPattern, "warning_pattern");
  if (!re) return re.status();
  counter->pattern_ = std::move(*re);

  const std::string extractor = config.value("warning_extractor", "whole_line");
  if (extractor == "groups") {
    if (counter->pattern_.mark_count() < 3) {
      return sdk::invalid_config(
          "warning_extractor 'groups' needs a warning_pattern with three groups: file, line number, text");
    }
    counter->groups_extractor_ = true;
  } else if (extractor != "whole_line") {
    return sdk::invalid_config("warning_extractor must be 'whole_line' or 'groups', not '" + extractor + "'");
  }

  if (auto it = config.find("suppressions"); it != config.end() && it->is_array()) {
    for (size_t i = 0; i < it->size(); ++i) {
      const json& entry = (*it)[i];
      const std::string where = "suppressions[" + std::to_string(i) + "]";
      if (!entry.is_object()) return sdk::invalid_config(where + " must be a mapping");
      sdk::Status status;
      Suppression s;
      s.file_re = optional_regex(entry, "file_re", where, status);
      s.warning_re = optional_regex(entry, "warning_re", where, status);
      if (!status) return status;
      s.start = optional_int(entry, "start");
      s.end = optional_int(entry, "end");
      if (s.start.has_value() != s.end.has_value()) {
        return sdk::invalid_config(where + " needs both start and end, or neither");
      }
      counter->suppressions_.push_back(std::move(s));
    }
  }

  if (auto it = config.find("max_warn_count"); it != config.end() && it->is_number_integer()) {
    if (it->get<int64_t>() < 0) return sdk::invalid_config("max_warn_count must not be negative");
    counter->max_count_ = it->get<uint64_t>();
  }
  return counter;
}

void WarningCounter::feed(kiln_stream stream, std::string_view data) {
  if (stream != KILN_STREAM_STDOUT && stream != KILN_STREAM_STDERR) return;
  Partial& partial = partial_[stream == KILN_STREAM_STDOUT ? 0 : 1];
  while (!data.empty()) {
    const size_t newline = data.find('\n');
    const std::string_view piece = data.substr(0, newline);
    if (!partial.overflowed) {
      const size_t room = kMaxLine - partial.text.size();
      partial.text.append(piece.substr(0, room));
      partial.overflowed = piece.size() > room;
    }
    if (newline == std::string_view::npos) break;
    line(partial.text);
    partial.text.clear();
    partial.overflowed = false;
    data.remove_prefix(newline + 1);
  }
}

void WarningCounter::flush() {
  for (Partial& partial : partial_) {
    if (!partial.text.empty()) line(partial.text);
    partial.text.clear();
    partial.overflowed = false;
  }
}

void WarningCounter::line(std::string_view text) {
  std::string copy(text);
  if (!copy.empty() && copy.back() == '\r') copy.pop_back();
  std::smatch match;
  // Python's re.match: anchored at the start, not at the end.
  if (!std::regex_search(copy, match, pattern_, std::regex_constants::match_continuous)) return;
  if (!suppressions_.empty() && suppressed(match, copy)) return;
  ++count_;
  if (sink_) sink_(copy);
}

bool WarningCounter::suppressed(const std::smatch& match, const std::string& line) const {
  // Buildbot's warningExtractor: the whole line, or groups (file, line, text).
  std::optional<std::string> file;
  std::optional<int64_t> line_no;
  std::string text = line;
  if (groups_extractor_) {
    if (match[1].matched) file = match[1].str();
    if (match[2].matched) {
      const std::string digits = match[2].str();
      int64_t n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (ec == std::errc() && end == digits.data() + digits.size()) line_no = n;
    }
    text = match[3].matched ? match[3].str() : std::string();
  }
  for (const Suppression& s : suppressions_) {
    if (file && !file->empty() && s.file_re &&
        !std::regex_search(*file, *s.file_re, std::regex_constants::match_continuous)) {
      continue;
    }
    if (s.warning_re && !std::regex_search(text, *s.warning_re)) continue;
    if (s.start && s.end && !(line_no && *s.start <= *line_no && *line_no <= *s.end)) continue;
    return true;
  }
  return false;
}

}  // namespace kiln::std_steps
