#pragma once
// Named policy functions as the engine calls them: a name is first a
// `policies:` entry of master.yaml, then a registered policy type (the
// built-ins: "oldest-build-first", "collapse-same-source", ...). Instances
// are created on first use and re-created when a reconfig changes the
// entry, so a reconfig needs no step of its own. Internal to core/engine;
// loop thread only.

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::plugin {
class Instance;
}

namespace kiln::engine {

struct EngineCore;

class Policies {
 public:
  explicit Policies(EngineCore& core);
  ~Policies();
  Policies(const Policies&) = delete;
  Policies& operator=(const Policies&) = delete;

  // The policy type `name` resolves to; empty when nothing has that name.
  std::string type_of(std::string_view name) const;

  // Calls the policy synchronously; `out` gets its JSON answer. Errors:
  // KILN_ERR_NOT_FOUND for an unknown name, the policy's own status
  // otherwise, each with `error` saying why.
  kiln_status call(std::string_view name, std::string_view args_json, std::string& out,
                   std::string& error);
  // The same with JSON values; nullopt (and `error`) when the call failed or
  // the answer is not JSON.
  std::optional<nlohmann::json> call(std::string_view name, const nlohmann::json& args,
                                     std::string& error);

 private:
  struct Entry {
    std::string type;
    nlohmann::json config;
    std::unique_ptr<plugin::Instance> instance;
    int active = 0;  // calls in progress (a policy may call policies)
  };

  EngineCore& core_;
  std::map<std::string, std::shared_ptr<Entry>, std::less<>> entries_;
  int depth_ = 0;
};

}  // namespace kiln::engine
