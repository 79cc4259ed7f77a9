// Test policies for the engine's build distribution, each doing one
// recognisable thing a test can observe, and a step that calls a policy by
// name through policy_call and keeps what it got as build properties.

#include <kiln/sdk/plugin.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using nlohmann::json;
namespace sdk = kiln::sdk;

constexpr const char* kNoConfig =
    R"({"type": "object", "properties": {}, "additionalProperties": false})";

// prioritize_builders: builders in reverse name order.
class ReverseBuilders : public sdk::Policy {
 public:
  static constexpr const char* kHook = "prioritize_builders";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    std::vector<std::string> names;
    for (const auto& b : args.at("builders")) names.push_back(b.at("name").get<std::string>());
    std::sort(names.rbegin(), names.rend());
    return json(names);
  }
};

// next_worker: always the configured worker, or none when it is busy.
class PickWorker : public sdk::Policy {
 public:
  static constexpr const char* kHook = "next_worker";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    const std::string wanted = config().at("worker").get<std::string>();
    for (const auto& w : args.at("workers")) {
      if (w.at("name") == wanted) return w;
    }
    return json();
  }
};

// can_start_build: refuses the first `refusals` calls, then agrees.
class RefuseFirst : public sdk::Policy {
 public:
  static constexpr const char* kHook = "can_start_build";
  using Policy::Policy;
  sdk::Result<json> call(const json&) override {
    ++calls_;
    return json(calls_ > config().at("refusals").get<int>());
  }

 private:
  int calls_ = 0;
};

// collapse_requests: requests with the same reason collapse.
class SameReason : public sdk::Policy {
 public:
  static constexpr const char* kHook = "collapse_requests";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    return json(args.at("request1").value("reason", "") == args.at("request2").value("reason", ""));
  }
};

// A step: calls `policy` with `args`; the answer becomes the build property
// <into>_answer, a failure <into>_error {"status", "message"}.
class AskPolicy : public sdk::Step {
 public:
  using Step::Step;
  sdk::Status run() override {
    auto answer = context().call_policy(config().at("policy").get<std::string>(), config().at("args"));
    const std::string into = config().at("into").get<std::string>();
    if (answer.ok()) {
      set_property(into + "_answer", *answer);
    } else {
      set_property(into + "_error", {{"status", static_cast<int>(answer.status().code())},
                                     {"message", answer.status().message()}});
    }
    finish(KILN_SUCCESS, "asked");
    return {};
  }
};

constexpr const char* kPickWorkerSchema = R"({"type": "object",
  "properties": {"worker": {"type": "string"}}, "required": ["worker"],
  "additionalProperties": false})";
constexpr const char* kRefuseSchema = R"({"type": "object",
  "properties": {"refusals": {"type": "integer", "minimum": 0}}, "required": ["refusals"],
  "additionalProperties": false})";
constexpr const char* kAskSchema = R"({"type": "object",
  "properties": {"policy": {"type": "string"}, "args": {"type": "object", "default": {}},
                 "into": {"type": "string", "default": "policy"}},
  "required": ["policy"], "additionalProperties": false})";

}  // namespace

KILN_PLUGIN("kiln-dist-policies", "1.0.0", "Test plugin: build distribution policies", "test-only",
            sdk::component<ReverseBuilders>(KILN_KIND_POLICY, "reverse-builders", "1.0.0",
                                            "builders in reverse name order", kNoConfig),
            sdk::component<PickWorker>(KILN_KIND_POLICY, "pick-worker", "1.0.0",
                                       "always the configured worker", kPickWorkerSchema),
            sdk::component<RefuseFirst>(KILN_KIND_POLICY, "refuse-first", "1.0.0",
                                        "refuses the first N builds", kRefuseSchema),
            sdk::component<SameReason>(KILN_KIND_POLICY, "same-reason", "1.0.0",
                                       "collapses requests with the same reason", kNoConfig),
            sdk::component<AskPolicy>(KILN_KIND_STEP, "ask-policy", "1.0.0",
                                      "calls a policy through policy_call", kAskSchema));
