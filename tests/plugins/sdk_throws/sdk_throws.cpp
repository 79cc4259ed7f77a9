// A test plugin written with the C++ SDK whose component throws from its
// constructor, and from validate() for one configuration: the loader tests
// check that the SDK turns both into ABI errors (KILN_ERR_INTERNAL with the
// type name and the exception's message) instead of letting them cross.

#include <kiln/sdk/plugin.hpp>

#include <stdexcept>

namespace {

constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "explode_in_validate": {"type": "boolean", "default": false,
                            "description": "validate() throws when true"}
  },
  "additionalProperties": false
})";

class Thrower : public kiln::sdk::Step {
 public:
  Thrower(kiln::sdk::Context ctx, const nlohmann::json& config) : Step(std::move(ctx), config) {
    throw std::runtime_error("boom from create");
  }

  static void validate(const nlohmann::json& config) {
    if (config.value("explode_in_validate", false)) throw std::runtime_error("boom from validate");
  }

  kiln::sdk::Status run() override { return {}; }
};

}  // namespace

KILN_PLUGIN("kiln-sdk-throws", "1.0.0", "Test plugin: SDK components that throw", "test-only",
            kiln::sdk::component<Thrower>(KILN_KIND_STEP, "sdk-throws", "1.0.0",
                                          "Throws from create, and from validate on request", kSchema));
