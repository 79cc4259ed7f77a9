// A change_hook policy for the web tests: a plugin's own change hook
// dialect. The request must carry "X-Token: let-me-in" (else 403); each
// body line "REVISION BRANCH" becomes a change by "hook-bot".

#include <kiln/sdk/plugin.hpp>

#include <sstream>
#include <string>

namespace {

using nlohmann::json;
namespace sdk = kiln::sdk;

constexpr const char* kNoConfig = R"({"type": "object", "properties": {}, "additionalProperties": false})";

class LinesHook : public sdk::Policy {
 public:
  static constexpr const char* kHook = "change_hook";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    if (args.value("headers", json::object()).value("x-token", "") != "let-me-in") {
      return json{{"status", 403}, {"error", "no X-Token, no changes"}};
    }
    json changes = json::array();
    std::istringstream lines(args.value("body", ""));
    std::string revision, branch;
    while (lines >> revision >> branch) {
      changes.push_back({{"author", "hook-bot"}, {"revision", revision}, {"branch", branch},
                         {"comments", "from the " + args.value("dialect", "") + " dialect"}});
    }
    return json{{"changes", changes}};
  }
};

}  // namespace

KILN_PLUGIN("kiln-web_hooks", "1.0.0", "A change_hook policy for the web tests", "MIT",
            sdk::component<LinesHook>(KILN_KIND_POLICY, "test-lines-hook", "1.0.0",
                                      "REVISION BRANCH lines, with X-Token: let-me-in", kNoConfig));
