// A test plugin written with the straight-line step SDK (SimpleStep): one
// step type whose configuration chooses which SDK calls run() makes, so the
// step_sdk tests can check each of them through a real engine.

#include <kiln/sdk/plugin.hpp>

#include <stdexcept>
#include <string>

namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "command": {"type": ["string", "array", "null"], "items": {"type": "string"}, "default": null,
                "description": "Run with shell() when given"},
    "stdout_to_property": {"type": "string", "default": "",
                           "description": "Collect the command's stdout and set this property to it, trimmed"},
    "read_property": {"type": "string", "default": "",
                      "description": "Read this property and put its value in the summary"},
    "count_lines": {"type": "boolean", "default": false,
                    "description": "Observe stdio: set properties lines_seen and line_sum"},
    "stat": {"type": "string", "default": "",
             "description": "Run the stat worker command on this path; set property stat:<path> to whether it exists"},
    "note": {"type": "string", "default": "",
             "description": "Write this to a log named notes"},
    "throw": {"type": "string", "default": "",
              "description": "Throw this message from run(), after the command"},
    "config_to_property": {"type": "string", "default": "",
                           "description": "Set this property to the configuration the step was given"}
  },
  "additionalProperties": false
})";

class TestStep : public sdk::SimpleStep {
 public:
  using SimpleStep::SimpleStep;

  sdk::StepResult run() override {
    int lines = 0;
    long long sum = 0;
    if (config().value("count_lines", false)) {
      add_line_observer("stdio", [&](std::string_view line, kiln_stream stream) {
        if (stream != KILN_STREAM_STDOUT) return;
        ++lines;
        sum += std::stoll(std::string(line));
      });
    }
    if (const std::string note = config().value("note", ""); !note.empty()) {
      sdk::StepLog log = add_log("notes", KILN_LOG_TYPE_TEXT);
      log.write(note + "\n");
      log.finish();
    }
    kiln_result result = KILN_SUCCESS;
    std::string summary = "done";
    if (!config()["command"].is_null()) {
      sdk::ShellOptions options;
      const std::string target = config().value("stdout_to_property", "");
      options.collect_stdout = !target.empty();
      sdk::CommandOutcome done = shell(config()["command"], options);
      if (!target.empty()) {
        std::string text = done.stdout_text;
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
        set_property(target, text, "test-step");
      }
      result = result_of(done);
      summary = "rc " + std::to_string(done.rc);
    }
    if (const std::string path = config().value("stat", ""); !path.empty()) {
      sdk::CommandOutcome found = command("stat", {{"file", path}});
      set_property("stat:" + path, found.ok() && found.updates.contains("stat"));
    }
    if (config().value("count_lines", false)) {
      set_property("lines_seen", lines);
      set_property("line_sum", sum);
    }
    if (const std::string name = config().value("read_property", ""); !name.empty()) {
      summary = name + "=" + property(name).dump();
    }
    if (const std::string name = config().value("config_to_property", ""); !name.empty()) {
      set_property(name, config(), "test-step");
    }
    if (const std::string message = config().value("throw", ""); !message.empty()) {
      throw std::runtime_error(message);
    }
    return {result, summary};
  }
};

}  // namespace

KILN_PLUGIN("kiln-step-sdk-test", "1.0.0", "Test plugin: a straight-line step", "test-only",
            sdk::component<TestStep>(KILN_KIND_STEP, "straight-line", "1.0.0",
                                     "Makes the SDK calls its configuration asks for", kSchema));
