#include "plugin/loader.h"

#include "plugin/host.h"

#include <boost/dll/shared_library.hpp>
#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <type_traits>
#include <unistd.h>

namespace kiln::plugin {

namespace fs = std::filesystem;

std::string LoadError::to_string() const {
  return file.string() + ": " + message;
}

std::string abi_version_string(uint32_t version) {
  return std::to_string(KILN_ABI_VERSION_MAJOR(version)) + "." +
         std::to_string(KILN_ABI_VERSION_MINOR(version));
}

struct PluginLibrary::Handle {
  boost::dll::shared_library library;
};

PluginLibrary::PluginLibrary(Key) {}

PluginLibrary::~PluginLibrary() {
  if (accepted_ && desc_.shutdown) {
    ScopedPluginLabel label(name_);
    desc_.shutdown();
  }
  // handle_ unloads the library after shutdown returned.
}

std::vector<const kiln_component_desc*> PluginLibrary::components() const {
  std::vector<const kiln_component_desc*> out;
  if (desc_.components == nullptr) return out;
  out.assign(desc_.components, desc_.components + desc_.component_count);
  return out;
}

namespace {

std::string hex32(uint32_t value) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", value);
  return buf;
}

std::string c_string_or(const char* s, std::string fallback) {
  return s ? std::string(s) : std::move(fallback);
}

}  // namespace

// Calls the entry, then checks what it returned before trusting any field:
// magic first (a foreign symbol's garbage must not be read further), then
// the size, then the major version.
std::optional<std::string> PluginLibrary::negotiate(PluginLibrary& lib,
                                                    kiln_plugin_entry_fn entry) {
  kiln_error err;
  const kiln_plugin_desc* desc = nullptr;
  {
    // Short: the file name is what a person recognises in a log line.
    ScopedPluginLabel label(lib.builtin() ? lib.label_ : lib.file_.filename().string());
    try {
      desc = entry(host_api(), KILN_ABI_VERSION, &err);
    } catch (...) {
      // Nothing should cross the ABI, but a C++ plugin without the SDK might.
      return std::string("kiln_plugin_entry threw an exception");
    }
  }
  if (desc == nullptr) {
    if (err.message.empty()) return std::string("plugin refused to load (no reason given)");
    return "plugin refused to load: " + err.message;
  }
  if (desc->magic != KILN_PLUGIN_MAGIC) {
    return "descriptor has magic " + hex32(desc->magic) + ", expected " +
           hex32(KILN_PLUGIN_MAGIC) + " (\"KLN1\"); not a Kiln plugin";
  }
  if (desc->struct_size < KILN_PLUGIN_DESC_MIN_SIZE) {
    return "plugin descriptor is " + std::to_string(desc->struct_size) +
           " bytes, smaller than the minimum " +
           std::to_string(KILN_PLUGIN_DESC_MIN_SIZE);
  }
  if (KILN_ABI_VERSION_MAJOR(desc->abi_version) != KILN_ABI_MAJOR) {
    return "built for Kiln ABI " + abi_version_string(desc->abi_version) +
           ", this kiln speaks " + abi_version_string(KILN_ABI_VERSION);
  }
  std::memcpy(&lib.desc_, desc,
              std::min<size_t>(desc->struct_size, sizeof(kiln_plugin_desc)));
  if (lib.desc_.component_count > 0 && lib.desc_.components == nullptr) {
    return "plugin descriptor lists " + std::to_string(lib.desc_.component_count) +
           " components but its components array is NULL";
  }
  lib.accepted_ = true;
  lib.name_ = c_string_or(lib.desc_.name, fs::path(lib.label_).stem().string());
  lib.version_ = c_string_or(lib.desc_.version, "");
  lib.description_ = c_string_or(lib.desc_.description, "");
  lib.license_ = c_string_or(lib.desc_.license, "");
  return std::nullopt;
}

std::variant<std::unique_ptr<PluginLibrary>, LoadError> PluginLibrary::open(
    const fs::path& file) {
  auto lib = std::make_unique<PluginLibrary>(Key{});
  lib->file_ = file;
  lib->label_ = file.string();
  lib->handle_ = std::make_unique<Handle>();

  boost::dll::fs::error_code ec;
  // Local: two plugins may embed different versions of the same library.
  // Now: an unresolved symbol should fail here, with the file named, not
  // later in the middle of a build.
  lib->handle_->library.load(
      boost::dll::fs::path(file.string()),
      boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now, ec);
  if (ec) {
    // Boost.DLL keeps only a generic error code; dlerror() still holds the
    // loader's own explanation (bad ELF header, missing dependency, ...).
    const char* why = dlerror();
    return LoadError{file, "not a loadable shared library: " +
                               std::string(why ? why : ec.message())};
  }
  if (!lib->handle_->library.has(KILN_PLUGIN_ENTRY_SYMBOL)) {
    return LoadError{file, "no " KILN_PLUGIN_ENTRY_SYMBOL
                           " symbol; not a Kiln plugin (or built without "
                           "KILN_EXPORT on its entry)"};
  }
  auto entry = lib->handle_->library.get<std::remove_pointer_t<kiln_plugin_entry_fn>>(
      KILN_PLUGIN_ENTRY_SYMBOL);
  if (auto problem = negotiate(*lib, entry)) return LoadError{file, *problem};
  return lib;
}

std::variant<std::unique_ptr<PluginLibrary>, LoadError> PluginLibrary::from_entry(
    kiln_plugin_entry_fn entry, const std::string& label) {
  auto lib = std::make_unique<PluginLibrary>(Key{});
  lib->label_ = label;
  if (entry == nullptr) return LoadError{label, "built-in entry function is NULL"};
  if (auto problem = negotiate(*lib, entry)) return LoadError{label, *problem};
  return lib;
}

namespace {

fs::path executable_path() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe;
}

}  // namespace

std::vector<fs::path> plugin_search_path(const std::vector<fs::path>& from_config) {
  std::vector<fs::path> candidates = from_config;
  if (const char* env = std::getenv("KILN_PLUGIN_PATH")) {
    std::string_view rest = env;
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      std::string_view entry = rest.substr(0, colon);
      if (!entry.empty()) candidates.emplace_back(entry);
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  candidates.emplace_back(KILN_INSTALLED_PLUGIN_DIR);
  if (fs::path exe = executable_path(); !exe.empty()) {
    std::error_code ec;
    fs::path beside = exe.parent_path() / "plugins";
    if (fs::is_directory(beside, ec)) candidates.push_back(beside);
    // An installed tree moved elsewhere (or installed with another prefix)
    // still finds its own plugins: <prefix>/bin/kiln -> <prefix>/lib/kiln/plugins.
    fs::path relocated = exe.parent_path().parent_path() / "lib" / "kiln" / "plugins";
    if (fs::is_directory(relocated, ec)) candidates.push_back(relocated);
  }

  std::vector<fs::path> out;
  for (auto& candidate : candidates) {
    fs::path normal = candidate.lexically_normal();
    // "dir/" and "dir" are the same folder.
    if (!normal.has_filename() && normal.has_parent_path() && normal != normal.root_path()) {
      normal = normal.parent_path();
    }
    if (std::find(out.begin(), out.end(), normal) == out.end()) out.push_back(normal);
  }
  return out;
}

}  // namespace kiln::plugin
