#pragma once
// The host's service table as the plugin library received it in
// kiln_plugin_entry, kept in one slot per library, and the few host calls
// that need no component context (log, error_set, get_proc).

#include <kiln/sdk/status.hpp>

#include <atomic>
#include <string>
#include <string_view>

// The slot must be one per plugin library, shared by all its translation
// units, and never merged with another library's by the dynamic linker, so
// it is hidden whatever visibility the plugin is compiled with.
#if defined(_WIN32)
#define KILN_SDK_LOCAL
#else
#define KILN_SDK_LOCAL [[gnu::visibility("hidden")]]
#endif

namespace kiln::sdk {
namespace detail {
KILN_SDK_LOCAL inline std::atomic<const kiln_host_api*> host_api_slot{nullptr};
}  // namespace detail

class Host {
 public:
  // NULL before kiln_plugin_entry accepted a host (and after shutdown).
  static const kiln_host_api* api() { return detail::host_api_slot.load(std::memory_order_acquire); }
  // Called by the entry that KILN_PLUGIN generates; tests call it with a
  // fake table.
  static void set(const kiln_host_api* api) {
    detail::host_api_slot.store(api, std::memory_order_release);
  }
  // The host's KILN_ABI_VERSION, 0 without a host.
  static uint32_t abi_version() {
    const kiln_host_api* h = api();
    return h != nullptr ? h->abi_version : 0;
  }

  // Never fails: without a host (or its log) the message is dropped.
  static void log(kiln_ctx* ctx, kiln_log_level level, std::string_view message) {
    const kiln_host_api* h = api();
    if (KILN_HAS(kiln_host_api, h, log)) h->log(ctx, level, str(message));
  }

  // Describes a failure for the host. Falls back to the host's log when the
  // caller gave no error slot, so the message is not lost.
  static void error_set(kiln_error* err, kiln_status status, std::string_view message) {
    const kiln_host_api* h = api();
    if (err != nullptr && KILN_HAS(kiln_host_api, h, error_set)) {
      h->error_set(err, status, str(message));
    } else {
      log(nullptr, KILN_LOG_ERROR, message);
    }
  }
  static void error_set(kiln_error* err, const Status& status) {
    error_set(err, status.code(), status.message());
  }

  // An optional service by name ("kiln.<area>.<function>"), cast to its
  // function type; nullptr when the host does not have it.
  template <class Fn>
  static Fn proc(const char* name) {
    const kiln_host_api* h = api();
    if (!KILN_HAS(kiln_host_api, h, get_proc)) return nullptr;
    return reinterpret_cast<Fn>(h->get_proc(name));
  }
};

namespace detail {

inline std::string abi_string(uint32_t version) {
  return std::to_string(KILN_ABI_VERSION_MAJOR(version)) + "." +
         std::to_string(KILN_ABI_VERSION_MINOR(version));
}

inline Status unsupported(const char* function) {
  const kiln_host_api* h = Host::api();
  if (h == nullptr) return Status(KILN_ERR_UNSUPPORTED, "no Kiln host (plugin entry not called)");
  return Status(KILN_ERR_UNSUPPORTED, std::string("this host (plugin ABI ") +
                                          abi_string(h->abi_version) + ") does not offer " +
                                          function);
}

}  // namespace detail
}  // namespace kiln::sdk

// Declares `h`, the host table, and returns the unsupported Status from the
// enclosing function when the host lacks function `f`. For SDK internals.
#define KILN_SDK_REQUIRE_HOST(h, f)                     \
  const kiln_host_api* h = ::kiln::sdk::Host::api();    \
  if (!KILN_HAS(kiln_host_api, h, f)) return ::kiln::sdk::detail::unsupported(#f)
