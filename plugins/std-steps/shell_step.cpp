#include "steps.h"

namespace kiln::std_steps {

const char* const kShellSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["command"],
  "properties": {
    "command": {
      "type": ["string", "array"], "items": {"type": "string"},
      "description": "The command: a string run by the worker's shell, or an argv list run directly."
    },
    "want_stdout": {"type": "boolean",
      "description": "Send stdout to the master (default: the step's common want_stdout, else true)."},
    "want_stderr": {"type": "boolean",
      "description": "Send stderr to the master (default: the step's common want_stderr, else true)."},
    "logfiles": {
      "type": "object", "default": {},
      "additionalProperties": {"type": ["string", "object"]},
      "description": "Files on the worker to watch while the command runs, each shown as a log: {log name: filename} or {log name: {filename, follow}}."
    },
    "initial_stdin": {"type": ["string", "null"], "default": null,
      "description": "Text written to the command's standard input."},
    "log_environ": {"type": "boolean", "default": true,
      "description": "Write the command's environment into the stdio log header."},
    "count_warnings": {"type": "boolean", "default": false,
      "description": "Count warnings with the default warning_pattern; also switched on by warning_pattern, suppressions or max_warn_count."},
    "warning_pattern": {"type": ["string", "null"],
      "description": "Regular expression matched at the start of each stdout/stderr line; a match is a warning. A leading (?i) makes it case-insensitive. Default '(?i).*warning[: ].*'."},
    "warning_extractor": {"enum": ["whole_line", "groups"], "default": "whole_line",
      "description": "How suppressions see a warning: the whole line as its text, or the pattern's groups 1-3 as file, line number and text."},
    "suppressions": {
      "type": ["array", "null"],
      "items": {
        "type": "object", "additionalProperties": false,
        "properties": {
          "file_re": {"type": ["string", "null"], "description": "Matched at the start of the warning's file (groups extractor only)."},
          "warning_re": {"type": ["string", "null"], "description": "Searched in the warning's text."},
          "start": {"type": ["integer", "null"], "description": "First line number the suppression covers (with end)."},
          "end": {"type": ["integer", "null"], "description": "Last line number the suppression covers (with start)."}
        }
      },
      "description": "Warnings not to count: an entry suppresses a warning when each of its given parts matches."
    },
    "max_warn_count": {"type": ["integer", "null"], "minimum": 0,
      "description": "More warnings than this make the step FAILURE (default: no limit)."}
  }
})json";

namespace {

sdk::Status check_command(const json& command, const char* key) {
  const bool empty_string = command.is_string() && command.get_ref<const std::string&>().empty();
  if (empty_string || (command.is_array() && command.empty())) {
    return sdk::invalid_config(std::string(key) + " must not be empty");
  }
  if (!command.is_string() && !command.is_array()) {
    return sdk::invalid_config(std::string(key) + " must be a string or a list of strings");
  }
  return {};
}

// The step's own key, else the run's common key, else Buildbot's default.
bool own_or_common(const json& config, const RunInfo& info, const char* key, bool fallback) {
  if (auto it = config.find(key); it != config.end() && it->is_boolean()) return it->get<bool>();
  const json common = info.common_value(key);
  return common.is_boolean() ? common.get<bool>() : fallback;
}

}  // namespace

// Also used by set-property: a command given to it must be checked the same
// way.
sdk::Status check_shell_command(const json& command) { return check_command(command, "command"); }

sdk::Status ShellStep::validate(const json& config) {
  if (auto s = check_command(config.value("command", json()), "command"); !s) return s;
  return WarningCounter::validate(config);
}

json ShellStep::shell_args() const {
  const RunInfo& info = run_info();
  const json timeout = info.common_value("timeout");
  const json max_time = info.common_value("max_time");
  const json signal = info.common_value("interrupt_signal");
  return json{
      {"command", config().at("command")},
      {"workdir", info.workdir()},
      {"env", info.env()},
      {"want_stdout", own_or_common(config(), info, "want_stdout", true)},
      {"want_stderr", own_or_common(config(), info, "want_stderr", true)},
      {"timeout", timeout.is_number() ? timeout : json(1200)},
      {"maxTime", max_time.is_number() ? max_time : json()},
      {"interruptSignal", signal.is_string() ? signal : json("KILL")},
      {"logfiles", config().value("logfiles", json::object())},
      {"initial_stdin", config().value("initial_stdin", json())},
      {"logEnviron", config().value("log_environ", true)},
  };
}

sdk::Status ShellStep::run() {
  auto counter = WarningCounter::from_config(config(), [this](std::string_view line) { add_warning(line); });
  if (!counter) return counter.status();
  warnings_ = std::move(*counter);
  set_summary(command_summary(config().at("command")));
  CommandStep::Observer observer;
  if (warnings_) observer = [this](kiln_stream stream, std::string_view data) { warnings_->feed(stream, data); };
  return start_command("shell", shell_args(), std::move(observer),
                       [this](const sdk::CommandResult& result) { complete(result); });
}

void ShellStep::add_warning(std::string_view line) {
  // Streamed as found, so a build with millions of warnings holds none.
  if (warnings_log_ == 0) {
    auto id = add_log("warnings", KILN_LOG_TYPE_TEXT);
    if (!id) return;
    warnings_log_ = *id;
  }
  append_log(warnings_log_, std::string(line) + "\n");
}

void ShellStep::complete(const sdk::CommandResult& result) {
  kiln_result outcome = command_result(result);
  std::string warning_text;
  if (warnings_) {
    warnings_->flush();
    const uint64_t count = warnings_->count();
    set_statistic("warnings", count);
    if (count > 0) {
      // Buildbot keeps a build-wide total in the "warnings-count" property.
      auto previous = property("warnings-count");
      const int64_t before = previous.ok() && previous->is_number_integer() ? previous->get<int64_t>() : 0;
      set_property("warnings-count", before + static_cast<int64_t>(count), "WarningCountingShellCommand");
      warning_text = ", " + std::to_string(count) + (count == 1 ? " warning" : " warnings");
    }
    if (!interrupted()) {
      if (warnings_->max_count() && count > *warnings_->max_count()) {
        outcome = worst_status(outcome, KILN_FAILURE);
      } else if (count > 0) {
        outcome = worst_status(outcome, KILN_WARNINGS);
      }
    }
  }
  const std::string base = run_info().description_done().value_or(command_summary(config().at("command")));
  finish(outcome, result_summary(base, outcome, timed_out()) + warning_text);
}

}  // namespace kiln::std_steps
