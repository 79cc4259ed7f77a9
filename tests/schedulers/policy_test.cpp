// file_is_important as a named policy: the scheduler asks the host
// (policy_call, ABI 1.1) for every change. The real plugin library runs
// against a test context that plays the host and records what it is asked.

#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/event_loop.h"

#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

namespace {

using nlohmann::json;

class PolicyHost final : public kiln::plugin::InstanceContext {
 public:
  explicit PolicyHost(kiln::util::EventLoop& loop)
      : InstanceContext(loop, nullptr, KILN_KIND_SCHEDULER, "by-policy") {}

  kiln_status buildset_add(std::string_view request_json, JsonCallback cb) override {
    requests.push_back(json::parse(request_json));
    const std::string answer = json{{"bsid", requests.size()}, {"brids", json::object()}}.dump();
    post([cb, answer] { cb(KILN_OK, answer); });
    return KILN_OK;
  }

  kiln_status policy_call(std::string_view name, std::string_view args_json, std::string& out_json,
                          std::string& error) override {
    calls.push_back({std::string(name), json::parse(args_json)});
    if (name != "c-files-only") {
      error = "no policy named '" + std::string(name) + "'";
      return KILN_ERR_NOT_FOUND;
    }
    bool important = false;
    for (const auto& f : calls.back().second["change"]["files"]) {
      const std::string file = f.get<std::string>();
      important |= file.size() > 2 && file.compare(file.size() - 2, 2, ".c") == 0;
    }
    out_json = json(important).dump();
    return KILN_OK;
  }

  std::vector<json> requests;
  std::vector<std::pair<std::string, json>> calls;

 protected:
  void context_facts(json& facts) const override {
    facts["common"] = {{"builders", {"b"}}, {"properties", json::object()}};
  }
};

struct Harness {
  explicit Harness(const std::string& policy) {
    auto error = registry.load_library(std::string(KILN_BUILD_PLUGIN_DIR) + "/kiln-schedulers.so");
    REQUIRE(!error);
    const auto* type = registry.find(KILN_KIND_SCHEDULER, "single-branch");
    REQUIRE(type != nullptr);
    auto ctx = std::make_unique<PolicyHost>(loop);
    host = ctx.get();
    std::string message;
    instance = kiln::plugin::Instance::create(*type, std::move(ctx),
                                              {{"branch", "main"}, {"file_is_important", policy}}, message);
    REQUIRE(instance);
    vtable = instance->vtable<kiln_scheduler_vtable>();
    kiln_error err;
    REQUIRE(vtable->start(instance->handle(), &err) == KILN_OK);
    loop.poll();
  }
  ~Harness() {
    vtable->stop(instance->handle());
    instance.reset();
  }

  void change(int64_t id, const json& files) {
    const std::string text =
        json{{"changeid", id}, {"branch", "main"}, {"revision", "r" + std::to_string(id)}, {"files", files}}.dump();
    vtable->on_change(instance->handle(), kiln_str{text.data(), text.size()});
    loop.poll();
  }

  kiln::plugin::Registry registry;
  kiln::util::EventLoop loop{std::make_shared<kiln::util::ManualClock>()};
  PolicyHost* host = nullptr;
  std::unique_ptr<kiln::plugin::Instance> instance;
  const kiln_scheduler_vtable* vtable = nullptr;
};

}  // namespace

TEST_CASE("file_is_important names a policy the scheduler asks about every change it looks at") {
  Harness h("c-files-only");
  h.change(1, {"README", "docs/a.txt"});
  h.change(2, {"src/main.h"});
  CHECK(h.host->requests.empty());
  h.change(3, {"src/main.c"});
  REQUIRE(h.host->requests.size() == 1);
  const json& ss = h.host->requests[0]["sourcestamps"][0];
  CHECK(ss["changeids"] == json::array({1, 2, 3}));
  CHECK(ss["revision"] == "r3");
  CHECK(h.host->requests[0]["builders"] == json::array({"b"}));
  CHECK(h.host->requests[0]["properties"]["scheduler"] == "by-policy");

  REQUIRE(h.host->calls.size() == 3);
  for (const auto& [name, args] : h.host->calls) CHECK(name == "c-files-only");
  // The policy gets the change as the data API shows it.
  CHECK(h.host->calls[0].second["change"]["files"] == json::array({"README", "docs/a.txt"}));
  CHECK(h.host->calls[2].second["change"]["changeid"] == 3);
}

TEST_CASE("a file_is_important policy that cannot answer counts every change as important") {
  Harness h("missing-policy");
  h.change(1, {"README"});
  REQUIRE(h.host->requests.size() == 1);
  CHECK(h.host->requests[0]["sourcestamps"][0]["changeids"] == json::array({1}));
  CHECK(h.host->calls.size() == 1);
}
