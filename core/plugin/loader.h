#pragma once
// Opening plugin libraries and talking to their entry point: where plugins
// are looked for, dlopen through Boost.DLL, version negotiation, and the
// checked host copy of what kiln_plugin_entry returned. The Registry turns
// a PluginLibrary into registered component types.

#include <kiln/plugin_api.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kiln::plugin {

struct LoadError {
  std::filesystem::path file;  // the library, or a built-in's label
  std::string message;

  // "path: message"
  std::string to_string() const;
};

// One plugin whose entry accepted the host: a loaded library (or a built-in
// entry function) plus the host copy of its descriptor. Keeps the library
// mapped until destroyed; the destructor calls the plugin's shutdown first.
// Destroy it only after every instance of its components is gone.
class PluginLibrary {
 public:
  // dlopen()s `file` (RTLD_LOCAL | RTLD_NOW), finds kiln_plugin_entry and
  // negotiates. The error message names the reason (dlerror text included).
  static std::variant<std::unique_ptr<PluginLibrary>, LoadError> open(
      const std::filesystem::path& file);

  // A plugin compiled into the kiln binary: the same negotiation and checks
  // as a library. `label` stands in for the file name in messages.
  static std::variant<std::unique_ptr<PluginLibrary>, LoadError> from_entry(
      kiln_plugin_entry_fn entry, const std::string& label);

  struct Key {
   private:
    friend class PluginLibrary;
    Key() = default;
  };
  // Only open() and from_entry() make these.
  explicit PluginLibrary(Key);
  ~PluginLibrary();
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  // Empty for built-ins.
  const std::filesystem::path& file() const { return file_; }
  // The file name, or the built-in's label: how messages name this plugin.
  const std::string& label() const { return label_; }
  bool builtin() const { return file_.empty(); }

  // Host copy, zero-filled beyond the plugin's struct_size.
  const kiln_plugin_desc& desc() const { return desc_; }
  const std::string& name() const { return name_; }
  const std::string& version() const { return version_; }
  const std::string& description() const { return description_; }
  const std::string& license() const { return license_; }
  // The plugin's component descriptors as it returned them (unchecked).
  std::vector<const kiln_component_desc*> components() const;

 private:
  struct Handle;  // the Boost.DLL library, kept out of this header
  static std::optional<std::string> negotiate(PluginLibrary& lib,
                                              kiln_plugin_entry_fn entry);

  std::filesystem::path file_;
  std::string label_;
  std::unique_ptr<Handle> handle_;
  kiln_plugin_desc desc_{};
  bool accepted_ = false;  // shutdown is owed only to an accepted plugin
  std::string name_, version_, description_, license_;
};

// Where plugins are looked for, in order, without duplicates: the config's
// plugin_paths, each entry of $KILN_PLUGIN_PATH (colon-separated), the
// installed plugin folder, then the folder `plugins` next to the running
// executable if it exists (so a build tree works without installing), then
// <exe>/../lib/kiln/plugins if it exists (an install under another prefix).
std::vector<std::filesystem::path> plugin_search_path(
    const std::vector<std::filesystem::path>& from_config);

// "1.0" from a KILN_ABI_VERSION value.
std::string abi_version_string(uint32_t version);

}  // namespace kiln::plugin
