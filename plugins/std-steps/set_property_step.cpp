#include "steps.h"

namespace kiln::std_steps {

const char* const kSetPropertySchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["property"],
  "properties": {
    "property": {"type": "string", "minLength": 1, "description": "Name of the build property to set."},
    "value": {"description": "The value to set (any JSON value). Give either value or command."},
    "command": {"type": ["string", "array"], "items": {"type": "string"},
      "description": "A shell command on the worker whose stdout becomes the value (as SetPropertyFromCommand). Give either value or command."},
    "strip": {"type": "boolean", "default": true,
      "description": "Strip leading and trailing whitespace from the command's stdout."},
    "want_stderr": {"type": "boolean", "default": true,
      "description": "Send the command's stderr to the master (it goes to the stdio log, never into the value)."}
  }
})json";

namespace {
constexpr const char* kSource = "SetProperty step";

std::string strip(std::string_view text) {
  const char* space = " \t\r\n\v\f";
  const size_t first = text.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return std::string(text.substr(first, text.find_last_not_of(space) - first + 1));
}
}  // namespace

sdk::Status SetPropertyStep::validate(const json& config) {
  const bool has_value = config.contains("value");
  const bool has_command = config.contains("command") && !config["command"].is_null();
  if (has_value == has_command) {
    return sdk::invalid_config("set-property needs exactly one of 'value' and 'command'");
  }
  return has_command ? check_shell_command(config["command"]) : sdk::Status();
}

sdk::Status SetPropertyStep::run() {
  if (auto s = validate(config()); !s) return s;
  const std::string name = config().at("property").get<std::string>();
  const std::string done = "property '" + name + "' set";
  if (config().contains("value")) {
    if (auto s = set_property(name, config()["value"], kSource); !s) return s;
    return finish(KILN_SUCCESS, done);
  }
  const RunInfo& info = run_info();
  const json timeout = info.common_value("timeout");
  const json max_time = info.common_value("max_time");
  const json signal = info.common_value("interrupt_signal");
  const json args = {
      {"command", config()["command"]},
      {"workdir", info.workdir()},
      {"env", info.env()},
      {"want_stdout", true},
      {"want_stderr", config().value("want_stderr", true)},
      {"timeout", timeout.is_number() ? timeout : json(1200)},
      {"maxTime", max_time.is_number() ? max_time : json()},
      {"interruptSignal", signal.is_string() ? signal : json("KILL")},
      {"logfiles", json::object()},
      {"logEnviron", true},
  };
  set_summary("setting property '" + name + "'");
  return start_command(
      "shell", args,
      [this](kiln_stream stream, std::string_view data) {
        if (stream != KILN_STREAM_STDOUT || too_much_) return;
        if (stdout_.size() + data.size() > kMaxStdout) {
          too_much_ = true;
          return;
        }
        stdout_.append(data);
      },
      [this](const sdk::CommandResult& result) { complete(result); });
}

void SetPropertyStep::complete(const sdk::CommandResult& result) {
  const std::string name = config().at("property").get<std::string>();
  kiln_result outcome = command_result(result);
  // As SetPropertyFromCommand: a command that failed sets nothing.
  if (outcome != KILN_SUCCESS) {
    finish(outcome, result_summary("property '" + name + "' not set", outcome, timed_out()));
    return;
  }
  if (too_much_) {
    header("stdout is larger than " + std::to_string(kMaxStdout) + " bytes; property not set\n");
    finish(KILN_FAILURE, "property '" + name + "' not set (stdout too large)");
    return;
  }
  std::string value = config().value("strip", true) ? strip(stdout_) : stdout_;
  // A property is JSON text: bytes that are not UTF-8 become U+FFFD.
  value = json::parse(json(value).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  if (auto s = set_property(name, value, kSource); !s) {
    header("could not set the property: " + s.message() + "\n");
    finish(KILN_EXCEPTION, "property '" + name + "' not set");
    return;
  }
  finish(KILN_SUCCESS, "property '" + name + "' set");
}

}  // namespace kiln::std_steps
