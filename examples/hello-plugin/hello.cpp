// kiln-hello: the smallest useful Kiln plugin, to copy when writing your own.
//
// It provides two component types:
//   hello         a build step that writes a greeting to a log and succeeds
//   hello-policy  a `file_is_important` policy: a change matters when one of
//                 its files ends with a configured suffix
//
// In master.yaml (after copying kiln-hello.so into a folder listed in
// master.plugin_paths or $KILN_PLUGIN_PATH):
//   builders:
//     - name: greet
//       workers: [local-1]
//       steps:
//         - {type: hello, greeting: "Hello from Kiln", shout: true}
//   policies:
//     - {name: docs-only, type: hello-policy, suffixes: [".md", ".rst"]}
// and a scheduler that takes a file_is_important policy names it:
//   file_is_important: docs-only

#include <kiln/sdk/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

// The core validates every configuration against this JSON Schema before
// creating anything, fills in the defaults, and `kiln plugins hello` prints
// it as documentation: describe every key.
constexpr const char* kHelloSchema = R"({
  "type": "object",
  "properties": {
    "greeting": {"type": "string", "default": "Hello", "minLength": 1,
                 "description": "What the step writes to its log"},
    "shout": {"type": "boolean", "default": false,
              "description": "Upper-case the greeting"}
  },
  "additionalProperties": false
})";

class HelloStep : public sdk::Step {
 public:
  // The config arrives validated, with defaults filled in and properties
  // (%(prop:...)s) already rendered.
  HelloStep(sdk::Context ctx, const json& config)
      : Step(std::move(ctx), config), greeting_(config.value("greeting", "Hello")) {
    if (config.value("shout", false)) {
      std::transform(greeting_.begin(), greeting_.end(), greeting_.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    }
  }

  // Optional checks the schema cannot express. Runs in `kiln checkconfig`
  // too, so it must not touch anything: no files, no network.
  static sdk::Status validate(const json& config) {
    if (config.value("greeting", "").find('\n') != std::string::npos) {
      return sdk::invalid_config("greeting: must be a single line");
    }
    return {};
  }

  // run() must not block the engine: real steps start a worker command
  // (shell(...)) and finish from its completion handler. This one has
  // nothing to wait for, so it finishes at once.
  sdk::Status run() override {
    auto log = add_log("greeting", KILN_LOG_TYPE_TEXT);
    if (!log) return log.status();  // the build shows this as an exception
    if (auto s = append_log(*log, greeting_ + "\n"); !s) return s;
    context().info("greeted: " + greeting_);
    // Later steps can use it as %(prop:greeting)s.
    set_property("greeting", greeting_, "hello");
    return finish(KILN_SUCCESS, greeting_);  // also finishes the open log
  }

 private:
  std::string greeting_;
};

constexpr const char* kPolicySchema = R"({
  "type": "object",
  "properties": {
    "suffixes": {"type": "array", "items": {"type": "string"}, "default": [],
                 "description": "A change is important when one of its files ends with one of these"}
  },
  "additionalProperties": false
})";

class ImportantFiles : public sdk::Policy {
 public:
  // The hook this policy fills; a scheduler's `file_is_important:` names it.
  static constexpr const char* kHook = "file_is_important";

  ImportantFiles(sdk::Context ctx, const json& config)
      : Policy(std::move(ctx), config),
        suffixes_(config.value("suffixes", std::vector<std::string>{})) {}

  // args: {"change": {..., "files": ["a/b.c", ...]}}; the answer: true or
  // false. Policies answer synchronously.
  sdk::Result<json> call(const json& args) override {
    const json& change = args.contains("change") ? args["change"] : args;
    for (const auto& file : change.value("files", json::array())) {
      if (file.is_string() && important(file.get<std::string>())) return json(true);
    }
    return json(false);
  }

 private:
  bool important(const std::string& file) const {
    return std::any_of(suffixes_.begin(), suffixes_.end(), [&](const std::string& suffix) {
      return file.size() >= suffix.size() && file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0;
    });
  }

  std::vector<std::string> suffixes_;
};

}  // namespace

// The library's one exported symbol: plugin name, version, description,
// license, then each component type with its kind, YAML `type:` name,
// version, one-line summary and schema.
KILN_PLUGIN("kiln-hello", "0.1.0", "Example plugin: a greeting step and a file-importance policy", "MIT",
            sdk::component<HelloStep>(KILN_KIND_STEP, "hello", "0.1.0", "Writes a greeting to a log",
                                      kHelloSchema),
            sdk::component<ImportantFiles>(KILN_KIND_POLICY, "hello-policy", "0.1.0",
                                           "file_is_important: files with the given suffixes matter",
                                           kPolicySchema));
