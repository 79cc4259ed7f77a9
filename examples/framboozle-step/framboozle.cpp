// kiln-framboozle: Buildbot's "somewhat whimsical example" of a custom step
// (customization.rst, "Writing New BuildSteps"), written with Kiln's
// straight-line step SDK.
//
// Framboozle is a unit-test framework. Its `framboozler` command prints a
// lot, and the line "FNURRRGH!" each time it finishes a test case. The
// framboozle step runs it, counts those lines as they arrive (Buildbot's
// FNURRRGHCounter, a LogLineObserver on the stdio log) to feed the build's
// progress, and ends with the count as a statistic and in its summary.
//
// In master.yaml (after copying kiln-framboozle.so into a folder listed in
// master.plugin_paths or $KILN_PLUGIN_PATH):
//   builders:
//     - name: tests
//       workers: [local-1]
//       steps:
//         - {type: framboozle}
//         - {type: framboozle, command: [./framboozler, --slow], min_tests: 100}

#include <kiln/sdk/plugin.hpp>

#include <string>
#include <string_view>

namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "command": {"type": ["string", "array"], "items": {"type": "string"}, "default": ["framboozler"],
                "description": "The framboozler to run: a shell command line, or an argv list"},
    "marker": {"type": "string", "minLength": 1, "default": "FNURRRGH!",
               "description": "A stdout line containing this text marks one finished test case"},
    "min_tests": {"type": "integer", "minimum": 0, "default": 0,
                  "description": "Fewer finished test cases than this make a passing run WARNINGS"}
  },
  "additionalProperties": false
})";

class Framboozle : public sdk::SimpleStep {
 public:
  // The step's config arrives validated, defaults filled in, properties
  // rendered. The observer is added before run(): it is there for the
  // first line the framboozler prints.
  Framboozle(sdk::Context ctx, const json& config)
      : SimpleStep(std::move(ctx), config), marker_(config.value("marker", "FNURRRGH!")) {
    add_line_observer("stdio", [this](std::string_view line, kiln_stream stream) {
      if (stream == KILN_STREAM_STDOUT && line.find(marker_) != std::string_view::npos) {
        ++tests_;
        set_progress("tests", tests_);  // Buildbot's self.step.setProgress('tests', n)
      }
    });
  }

  // Straight-line: run() runs on a thread of its own, so waiting for the
  // framboozler here never holds up the master.
  sdk::StepResult run() override {
    set_summary("framboozling");
    sdk::CommandOutcome done = shell(config().value("command", json::array({"framboozler"})));
    // Every line has been through the observer by the time shell() returns.
    set_statistic("tests", tests_);
    std::string summary = std::to_string(tests_) + (tests_ == 1 ? " test" : " tests") + " framboozled";
    kiln_result result = result_of(done);
    if (result == KILN_SUCCESS && tests_ < config().value("min_tests", 0)) {
      result = KILN_WARNINGS;
      summary += " (expected " + std::to_string(config().value("min_tests", 0)) + ")";
    }
    if (!done.ok()) summary += done.cancelled ? " (interrupted)" : " (rc " + std::to_string(done.rc) + ")";
    return {result, summary};
  }

 private:
  std::string marker_;
  int tests_ = 0;
};

}  // namespace

KILN_PLUGIN("kiln-framboozle", "0.1.0", "Example plugin: the Framboozle test-runner step", "MIT",
            sdk::component<Framboozle>(KILN_KIND_STEP, "framboozle", "0.1.0",
                                       "Runs the framboozler and counts its finished test cases", kSchema));
