// Test policies for the notifiers: an address book (email_lookup), a
// one-line message writer (message_formatter), each doing one thing a mail
// test can recognise in the delivered message, and an authz_check that
// lets only the user "ops" act (the IRC bot's force and stop).

#include <kiln/sdk/plugin.hpp>

#include <string>

namespace {

using nlohmann::json;
namespace sdk = kiln::sdk;

constexpr const char* kNoConfig = R"({"type": "object", "properties": {}, "additionalProperties": false})";

// email_lookup: "NAME" -> "NAME@users.example.net"; "nobody" has no address.
class AddressBook : public sdk::Policy {
 public:
  static constexpr const char* kHook = "email_lookup";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    const std::string user = args.value("user", "");
    if (user.empty() || user == "nobody") return json();
    return json(user + "@users.example.net");
  }
};

// message_formatter: a short subject and body naming the mode and build.
class ShortMessage : public sdk::Policy {
 public:
  static constexpr const char* kHook = "message_formatter";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    const json& build = args.at("build");
    const std::string what = build.value("builder", "") + " #" + build.value("number", json(0)).dump();
    return json{{"subject", "[" + args.value("mode", "") + "] " + what},
                {"body", "STATUS: " + build.value("result", "") + "\n"},
                {"type", "plain"}};
  }
};

// authz_check: only "ops" may.
class OpsOnly : public sdk::Policy {
 public:
  static constexpr const char* kHook = "authz_check";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    return json(args.value("user", json::object()).value("username", "") == "ops");
  }
};

}  // namespace

KILN_PLUGIN("kiln-mail_policies", "1.0.0", "Test policies for the mail reporter", "MIT",
            sdk::component<AddressBook>(KILN_KIND_POLICY, "test-address-book", "1.0.0",
                                        "NAME -> NAME@users.example.net", kNoConfig),
            sdk::component<ShortMessage>(KILN_KIND_POLICY, "test-short-message", "1.0.0",
                                         "[mode] builder #N / STATUS: result", kNoConfig),
            sdk::component<OpsOnly>(KILN_KIND_POLICY, "test-ops-only", "1.0.0", "Only the user 'ops' may act",
                                    kNoConfig));
