#include "step_support.h"

#include <array>
#include <cctype>
#include <charconv>
#include <utility>
#include <vector>

namespace kiln::std_steps {

namespace {

// Buildbot's Results order for worst_status, lowest first.
constexpr std::array<kiln_result, 7> kSeverity = {KILN_SKIPPED,   KILN_SUCCESS, KILN_WARNINGS,
                                                  KILN_FAILURE,   KILN_EXCEPTION, KILN_RETRY,
                                                  KILN_CANCELLED};

int severity(kiln_result result) {
  for (size_t i = 0; i < kSeverity.size(); ++i) {
    if (kSeverity[i] == result) return static_cast<int>(i);
  }
  return static_cast<int>(kSeverity.size());
}

// Buildbot's command_to_string only looks at string words.
std::vector<std::string> words_of(const json& command) {
  std::vector<std::string> words;
  if (command.is_string()) {
    const std::string& text = command.get_ref<const std::string&>();
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      size_t start = i;
      while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      if (i > start) words.emplace_back(text.substr(start, i - start));
    }
  } else if (command.is_array()) {
    for (const auto& word : command) {
      if (word.is_string()) words.push_back(word.get<std::string>());
    }
  }
  return words;
}

}  // namespace

kiln_result worst_status(kiln_result a, kiln_result b) { return severity(a) >= severity(b) ? a : b; }

const char* result_word(kiln_result result) {
  switch (result) {
    case KILN_SUCCESS: return "success";
    case KILN_WARNINGS: return "warnings";
    case KILN_FAILURE: return "failure";
    case KILN_SKIPPED: return "skipped";
    case KILN_EXCEPTION: return "exception";
    case KILN_RETRY: return "retry";
    case KILN_CANCELLED: return "cancelled";
  }
  return "unknown";
}

std::optional<kiln_result> result_from_name(std::string_view name) {
  static const std::map<std::string_view, kiln_result> kNames = {
      {"SUCCESS", KILN_SUCCESS},     {"WARNINGS", KILN_WARNINGS}, {"FAILURE", KILN_FAILURE},
      {"SKIPPED", KILN_SKIPPED},     {"EXCEPTION", KILN_EXCEPTION}, {"RETRY", KILN_RETRY},
      {"CANCELLED", KILN_CANCELLED}};
  auto it = kNames.find(name);
  if (it == kNames.end()) return std::nullopt;
  return it->second;
}

RunInfo RunInfo::read(const sdk::Context& ctx) {
  RunInfo run;
  auto info = ctx.info();
  if (info.ok() && info->is_object()) {
    run.info = *info;
    if (auto it = run.info.find("common"); it != run.info.end() && it->is_object()) run.common = *it;
  }
  return run;
}

json RunInfo::common_value(std::string_view key) const {
  auto it = common.find(key);
  return it == common.end() ? json() : *it;
}

std::string RunInfo::workdir(std::string_view fallback) const {
  const json value = common_value("workdir");
  if (value.is_string() && !value.get_ref<const std::string&>().empty()) return value.get<std::string>();
  return std::string(fallback);
}

json RunInfo::env() const {
  json value = common_value("env");
  return value.is_object() ? value : json::object();
}

kiln_result RunInfo::decode_rc(int rc) const {
  const json table = common_value("decode_rc");
  if (!table.is_object()) return rc == 0 ? KILN_SUCCESS : KILN_FAILURE;
  auto it = table.find(std::to_string(rc));
  if (it == table.end() || !it->is_string()) return KILN_FAILURE;
  return result_from_name(it->get_ref<const std::string&>()).value_or(KILN_FAILURE);
}

std::optional<std::string> RunInfo::description_done() const {
  const json value = common_value("description_done");
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array() && !value.empty()) {
    std::string joined;
    for (const auto& word : value) {
      if (!word.is_string()) continue;
      if (!joined.empty()) joined += ' ';
      joined += word.get<std::string>();
    }
    return joined;
  }
  return std::nullopt;
}

std::string command_summary(const json& command) {
  const auto words = words_of(command);
  if (words.empty()) return {};
  if (words.size() < 3) return "'" + words[0] + (words.size() == 2 ? " " + words[1] : "") + "'";
  return "'" + words[0] + " " + words[1] + " ...'";
}

std::string result_summary(const std::string& base, kiln_result result, bool timed_out) {
  std::string summary = base.empty() ? std::string("finished") : base;
  if (result != KILN_SUCCESS) {
    summary += std::string(" (") + result_word(result) + ")";
    if (timed_out) summary += " (timed out)";
  }
  return summary;
}

sdk::Result<json> file_mode(const json& value, std::string_view key) {
  if (value.is_null()) return json();
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0 || value.get<int64_t>() > 07777) {
      return sdk::invalid_config(std::string(key) + " must be a file mode between 0 and 07777");
    }
    return value;
  }
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    int mode = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
    if (ec == std::errc() && end == text.data() + text.size() && !text.empty() && mode <= 07777) {
      return json(mode);
    }
    return sdk::invalid_config(std::string(key) + " '" + text + "' is not an octal file mode such as \"0644\"");
  }
  return sdk::invalid_config(std::string(key) + " must be an integer or an octal string");
}

// ---------------------------------------------------------------------------
// CommandStep

CommandStep::CommandStep(sdk::Context ctx, const json& config) : Step(std::move(ctx), config) {
  info_ = RunInfo::read(context());
}

void CommandStep::interrupt(std::string_view reason) {
  if (finished()) return;
  interrupted_ = true;
  if (command_id_ && interrupt_command(*command_id_, reason).ok()) return;  // completion finishes
  finish(KILN_CANCELLED, "interrupted: " + std::string(reason));
}

void CommandStep::header(std::string_view text) {
  if (stdio_ != 0) append_log(stdio_, text, KILN_STREAM_HEADER);
}

sdk::Status CommandStep::start_command(std::string_view name, const json& args, Observer observer,
                                       Completion on_complete) {
  auto log = stdio_log();
  if (!log) return log.status();
  stdio_ = *log;
  // Buildbot adds a log per watched logfile before the command starts.
  if (auto it = args.find("logfiles"); it != args.end() && it->is_object()) {
    for (const auto& [logname, _] : it->items()) {
      auto id = add_log(logname, KILN_LOG_TYPE_STDIO);
      if (!id) return id.status();
      logfiles_[logname] = *id;
    }
  }
  sdk::CommandHandlers handlers;
  handlers.on_output = [this, observer = std::move(observer)](kiln_stream stream, std::string_view data) {
    append_log(stdio_, data, stream);
    if (stream == KILN_STREAM_HEADER) {
      if (data.find("command timed out") != std::string_view::npos) timed_out_ = true;
    } else if (observer) {
      observer(stream, data);
    }
  };
  handlers.on_update = [this](const json& update) { on_update(update); };
  handlers.on_complete = [this, on_complete = std::move(on_complete)](const sdk::CommandResult& result) {
    command_id_.reset();
    if (!result.failure.empty()) header(result.failure + "\n");
    // A step that throws here would never finish; the build would hang.
    try {
      on_complete(result);
    } catch (const std::exception& e) {
      if (!finished()) finish(KILN_EXCEPTION, std::string("internal error: ") + e.what());
    }
  };
  auto id = command(name, args, std::move(handlers));
  if (!id) return id.status();
  command_id_ = *id;
  return {};
}

void CommandStep::on_update(const json& update) {
  auto it = update.find("log");
  if (it == update.end()) return;
  // {"log": {"name", "data"}} from the host; Buildbot's PB form is [name, data].
  std::string name, data;
  if (it->is_object() && it->value("name", json()).is_string() && it->value("data", json()).is_string()) {
    name = (*it)["name"].get<std::string>();
    data = (*it)["data"].get<std::string>();
  } else if (it->is_array() && it->size() == 2 && (*it)[0].is_string() && (*it)[1].is_string()) {
    name = (*it)[0].get<std::string>();
    data = (*it)[1].get<std::string>();
  } else {
    return;
  }
  auto log = logfiles_.find(name);
  if (log == logfiles_.end()) {
    auto id = add_log(name, KILN_LOG_TYPE_STDIO);
    if (!id) return;
    log = logfiles_.emplace(name, *id).first;
  }
  append_log(log->second, data, KILN_STREAM_STDOUT);
}

kiln_result CommandStep::command_result(const sdk::CommandResult& result) {
  if (interrupted_) return KILN_CANCELLED;
  if (result.lost) return KILN_RETRY;
  if (!result.failure.empty()) return KILN_FAILURE;
  return info_.decode_rc(result.rc);
}

}  // namespace kiln::std_steps
