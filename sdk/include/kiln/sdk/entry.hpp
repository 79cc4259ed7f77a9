#pragma once
// KILN_PLUGIN(name, version, description, license, components...): defines
// the library's one exported symbol, kiln_plugin_entry. The entry keeps the
// host's table for the SDK, refuses a host of another ABI major, and
// returns a static kiln_plugin_desc listing the components, each made with
// kiln::sdk::component<T>(...). Use it once per plugin library.

#include <kiln/sdk/component.hpp>

#include <string>
#include <type_traits>
#include <vector>

// Declared for every SDK user so that a definition with another signature
// fails to compile, and so that tests can call the entry they define.
extern "C" KILN_EXPORT const kiln_plugin_desc* kiln_plugin_entry(const kiln_host_api* host,
                                                                 uint32_t host_abi_version, kiln_error* err);

namespace kiln::sdk::detail {

// Refusals go to error_set; a host without it (or without an error slot)
// gets the message in its log instead.
inline void refuse(const kiln_host_api* host, kiln_error* err, kiln_status code,
                   const std::string& message) noexcept {
  if (err != nullptr && KILN_HAS(kiln_host_api, host, error_set)) {
    host->error_set(err, code, str(message));
  } else if (KILN_HAS(kiln_host_api, host, log)) {
    host->log(nullptr, KILN_LOG_ERROR, str(message));
  }
}

inline void plugin_shutdown() { Host::set(nullptr); }

template <class MakeComponents>
const kiln_plugin_desc* plugin_entry(const kiln_host_api* host, uint32_t host_abi_version, kiln_error* err,
                                     const char* name, const char* version, const char* description,
                                     const char* license, MakeComponents make_components) noexcept {
  if (host == nullptr) return nullptr;
  try {
    if (KILN_ABI_VERSION_MAJOR(host_abi_version) != KILN_ABI_MAJOR) {
      refuse(host, err, KILN_ERR_REFUSED,
             std::string(name) + " is built for Kiln plugin ABI " + abi_string(KILN_ABI_VERSION) +
                 " and cannot load into a host with ABI " + abi_string(host_abi_version) +
                 " (the major versions differ)");
      return nullptr;
    }
    Host::set(host);
    // Made once: the descriptors are static, and so is any problem found
    // while making them.
    static const std::vector<const kiln_component_desc*> components = make_components();
    static const std::vector<std::string> problems = setup_problems();
    if (!problems.empty()) {
      std::string message = std::string(name) + " is broken:";
      for (const auto& p : problems) message += " " + p + ";";
      message.pop_back();
      refuse(host, err, KILN_ERR_INTERNAL, message);
      Host::set(nullptr);
      return nullptr;
    }
    static const kiln_plugin_desc desc = {
        KILN_PLUGIN_MAGIC,
        sizeof(kiln_plugin_desc),
        KILN_ABI_VERSION,
        name,
        version,
        description,
        license,
        static_cast<uint32_t>(components.size()),
        components.data(),
        &plugin_shutdown,
    };
    return &desc;
  } catch (const std::exception& e) {
    refuse(host, err, KILN_ERR_INTERNAL, std::string(name) + ": " + e.what());
  } catch (...) {
    refuse(host, err, KILN_ERR_INTERNAL, "exception of unknown type in kiln_plugin_entry");
  }
  Host::set(nullptr);
  return nullptr;
}

}  // namespace kiln::sdk::detail

// name: the plugin's name ("kiln-hello"); the other three are NUL-terminated
// literals; then one kiln::sdk::component<T>(...) per component type.
#define KILN_PLUGIN(name, version, description, license, ...)                                          \
  extern "C" KILN_EXPORT const kiln_plugin_desc* kiln_plugin_entry(                                  \
      const kiln_host_api* host, uint32_t host_abi_version, kiln_error* err) {                       \
    return ::kiln::sdk::detail::plugin_entry(host, host_abi_version, err, name, version, description, \
                                             license, [] {                                            \
                                               return std::vector<const kiln_component_desc*>{        \
                                                   __VA_ARGS__};                                      \
                                             });                                                      \
  }                                                                                                   \
  static_assert(std::is_same_v<decltype(&kiln_plugin_entry), ::kiln_plugin_entry_fn>,                 \
                "kiln_plugin_entry must match kiln_plugin_entry_fn")
