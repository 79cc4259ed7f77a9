#include "plugin/registry.h"

#include "config/json_schema.h"
#include "plugin/host.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <system_error>

namespace kiln::plugin {

namespace fs = std::filesystem;

std::string_view kind_name(kiln_component_kind kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return "change_source";
    case KILN_KIND_SCHEDULER: return "scheduler";
    case KILN_KIND_STEP: return "step";
    case KILN_KIND_WORKER: return "worker";
    case KILN_KIND_REPORTER: return "reporter";
    case KILN_KIND_POLICY: return "policy";
  }
  return "unknown";
}

std::optional<kiln_component_kind> kind_from_name(std::string_view name) {
  for (int k = KILN_KIND_CHANGE_SOURCE; k <= KILN_KIND_POLICY; ++k) {
    auto kind = static_cast<kiln_component_kind>(k);
    if (kind_name(kind) == name) return kind;
  }
  return std::nullopt;
}

namespace {

bool known_kind(uint32_t kind) {
  return kind >= KILN_KIND_CHANGE_SOURCE && kind <= KILN_KIND_POLICY;
}

size_t vtable_size(uint32_t kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return sizeof(kiln_change_source_vtable);
    case KILN_KIND_SCHEDULER: return sizeof(kiln_scheduler_vtable);
    case KILN_KIND_STEP: return sizeof(kiln_step_vtable);
    case KILN_KIND_WORKER: return sizeof(kiln_worker_vtable);
    case KILN_KIND_REPORTER: return sizeof(kiln_reporter_vtable);
    case KILN_KIND_POLICY: return sizeof(kiln_policy_vtable);
  }
  return 0;
}

std::string describe(size_t index, const kiln_component_desc& desc) {
  std::string out = "component " + std::to_string(index);
  if (desc.type_name && known_kind(desc.kind)) {
    out += " (" + std::string(kind_name(static_cast<kiln_component_kind>(desc.kind))) +
           " '" + desc.type_name + "')";
  }
  return out;
}

// How loaded_files_ and dormant_files_ name a library, whatever path led to it.
fs::path canonical_file(const fs::path& file) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(file, ec);
  if (ec) canonical = fs::absolute(file, ec);
  return canonical;
}

std::string origin(const PluginLibrary& lib) {
  return lib.builtin() ? "built-in " + lib.label() : lib.file().string();
}

// Checks one descriptor and makes the host copy; an error message otherwise.
std::variant<std::unique_ptr<ComponentType>, std::string> copy_component(
    const PluginLibrary& lib, size_t index, const kiln_component_desc* raw) {
  if (raw == nullptr) return "component " + std::to_string(index) + " is NULL";
  if (raw->struct_size < KILN_COMPONENT_DESC_MIN_SIZE) {
    return "component " + std::to_string(index) + " descriptor is " +
           std::to_string(raw->struct_size) + " bytes, smaller than the minimum " +
           std::to_string(KILN_COMPONENT_DESC_MIN_SIZE);
  }
  auto type = std::make_unique<ComponentType>();
  kiln_component_desc& desc = type->desc;
  std::memset(&desc, 0, sizeof desc);
  std::memcpy(&desc, raw, std::min<size_t>(raw->struct_size, sizeof desc));
  // The host copy's fields beyond the plugin's size read as zero; a larger
  // (newer) plugin struct is cut to what this host knows.
  if (raw->struct_size > sizeof desc) desc.struct_size = sizeof desc;

  if (desc.type_name == nullptr || desc.type_name[0] == '\0') {
    return "component " + std::to_string(index) + " has no type_name";
  }
  const std::string what = describe(index, desc);
  if (!known_kind(desc.kind)) {
    return "component " + std::to_string(index) + " ('" + desc.type_name +
           "') has unknown kind " + std::to_string(desc.kind);
  }
  if (desc.create == nullptr) return what + " has no create function";
  if (desc.destroy == nullptr) return what + " has no destroy function";
  const void* vtable = desc.vtable;  // NULL too when beyond the plugin's size
  if (vtable == nullptr) return what + " has no vtable";
  uint32_t vtable_struct_size = 0;
  std::memcpy(&vtable_struct_size, vtable, sizeof vtable_struct_size);
  if (vtable_struct_size < sizeof(uint32_t)) {
    return what + " vtable has struct_size " + std::to_string(vtable_struct_size);
  }
  std::memset(&type->vtables, 0, sizeof type->vtables);
  const size_t copied = std::min<size_t>(vtable_struct_size, vtable_size(desc.kind));
  std::memcpy(&type->vtables, vtable, copied);
  const auto copied_size = static_cast<uint32_t>(copied);
  std::memcpy(&type->vtables, &copied_size, sizeof copied_size);
  desc.vtable = &type->vtables;

  if (desc.config_schema != nullptr) {
    auto schema = nlohmann::json::parse(desc.config_schema, nullptr, false);
    if (schema.is_discarded()) return what + " config_schema is not valid JSON";
    auto problems = config::check_schema(schema);
    if (!problems.empty()) {
      std::string message = what + " config_schema is not a valid schema: ";
      for (size_t i = 0; i < problems.size(); ++i) {
        message += (i ? "; " : "") + problems[i];
      }
      return message;
    }
    type->schema = std::move(schema);
  } else {
    type->schema = nlohmann::json{{"type", "object"}};
  }

  type->kind = static_cast<kiln_component_kind>(desc.kind);
  type->type_name = desc.type_name;
  type->version = desc.version ? desc.version : "";
  type->summary = desc.summary ? desc.summary : "";
  type->plugin_name = lib.name();
  type->plugin_version = lib.version();
  type->library = lib.file();
  return type;
}

}  // namespace

Registry::~Registry() {
  index_.clear();
  types_.clear();
  // Newest first, so a plugin never outlives one loaded before it that it
  // might (against the rules) have come to depend on.
  while (!libraries_.empty()) libraries_.pop_back();
}

std::optional<LoadError> Registry::add(std::unique_ptr<PluginLibrary> lib) {
  std::vector<std::unique_ptr<ComponentType>> fresh;
  const auto components = lib->components();
  fs::path file = lib->builtin() ? fs::path(lib->label()) : lib->file();
  for (size_t i = 0; i < components.size(); ++i) {
    auto copied = copy_component(*lib, i, components[i]);
    if (auto* message = std::get_if<std::string>(&copied)) return LoadError{file, *message};
    auto& type = std::get<std::unique_ptr<ComponentType>>(copied);
    const std::pair<int, std::string> key{type->kind, type->type_name};
    if (auto it = index_.find(key); it != index_.end()) {
      const ComponentType& other = *it->second;
      const std::string other_origin =
          other.library.empty() ? "built-in " + other.plugin_name : other.library.string();
      return LoadError{file, std::string(kind_name(type->kind)) + " type '" +
                                 type->type_name + "' is registered by both " +
                                 other_origin + " and " + origin(*lib)};
    }
    for (const auto& earlier : fresh) {
      if (earlier->kind == type->kind && earlier->type_name == type->type_name) {
        return LoadError{file, std::string(kind_name(type->kind)) + " type '" +
                                   type->type_name + "' is listed twice by " +
                                   origin(*lib)};
      }
    }
    fresh.push_back(std::move(type));
  }
  for (auto& type : fresh) {
    index_[{type->kind, type->type_name}] = type.get();
    types_.push_back(std::move(type));
  }
  spdlog::debug("loaded plugin {} {} from {} ({} components)", lib->name(),
                lib->version(), origin(*lib), components.size());
  libraries_.push_back(std::move(lib));
  return std::nullopt;
}

std::optional<LoadError> Registry::load_library(const fs::path& file) {
  const fs::path canonical = canonical_file(file);
  if (std::find(loaded_files_.begin(), loaded_files_.end(), canonical) !=
          loaded_files_.end() ||
      dormant_files_.count(canonical) != 0) {
    return std::nullopt;
  }
  auto opened = PluginLibrary::open(file);
  if (auto* error = std::get_if<LoadError>(&opened)) return *error;
  auto result = add(std::move(std::get<std::unique_ptr<PluginLibrary>>(opened)));
  if (!result) loaded_files_.push_back(canonical);
  return result;
}

std::optional<LoadError> Registry::add_builtin(kiln_plugin_entry_fn entry,
                                               std::string label) {
  auto made = PluginLibrary::from_entry(entry, label);
  if (auto* error = std::get_if<LoadError>(&made)) return *error;
  return add(std::move(std::get<std::unique_ptr<PluginLibrary>>(made)));
}

std::vector<LoadError> Registry::load_directories(const std::vector<fs::path>& dirs,
                                                  IfMissing if_missing) {
  std::vector<LoadError> errors;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      if (if_missing == IfMissing::kSkip && !fs::exists(dir, ec)) continue;
      errors.push_back({dir, fs::exists(dir, ec) ? "plugin folder is not a folder"
                                                 : "plugin folder does not exist"});
      continue;
    }
    std::vector<fs::path> files;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (it->path().extension() == ".so" && it->is_regular_file(type_ec)) {
        files.push_back(it->path());
      }
    }
    if (ec) {
      errors.push_back({dir, "cannot list plugin folder: " + ec.message()});
      continue;
    }
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
    for (const auto& file : files) {
      if (auto error = load_library(file)) errors.push_back(std::move(*error));
    }
  }
  return errors;
}

const ComponentType* Registry::find(kiln_component_kind kind,
                                    std::string_view type_name) const {
  TypeKey key{kind, std::string(type_name)};
  const ComponentType* type = nullptr;
  if (auto it = index_.find(key); it != index_.end()) {
    type = it->second;
  } else if (dormant_.count(key) != 0) {
    // Waking a dormant library changes no answer of this registry, only
    // what is mapped: a cache fill, hence allowed on a const lookup.
    type = const_cast<Registry*>(this)->wake(key);
  }
  if (type != nullptr && !type->library.empty()) used_files_.insert(type->library);
  return type;
}

const ComponentType* Registry::wake(const TypeKey& key) {
  const fs::path file = dormant_.at(key);
  for (auto it = dormant_.begin(); it != dormant_.end();) {
    it = it->second == file ? dormant_.erase(it) : std::next(it);
  }
  dormant_files_.erase(canonical_file(file));
  if (auto error = load_library(file)) {
    spdlog::error("cannot load plugin library again for {} type '{}': {}",
                  kind_name(static_cast<kiln_component_kind>(key.first)), key.second,
                  error->to_string());
    return nullptr;
  }
  spdlog::info("loaded {} again for {} type '{}'", file.string(),
               kind_name(static_cast<kiln_component_kind>(key.first)), key.second);
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : it->second;
}

size_t Registry::release_unused() {
  size_t released = 0;
  for (size_t i = libraries_.size(); i-- > 0;) {
    const PluginLibrary& lib = *libraries_[i];
    if (lib.builtin() || used_files_.count(lib.file()) != 0) continue;
    for (auto it = types_.begin(); it != types_.end();) {
      if ((*it)->library != lib.file()) {
        ++it;
        continue;
      }
      TypeKey key{(*it)->kind, (*it)->type_name};
      index_.erase(key);
      dormant_[key] = lib.file();
      it = types_.erase(it);
    }
    const fs::path canonical = canonical_file(lib.file());
    loaded_files_.erase(std::remove(loaded_files_.begin(), loaded_files_.end(), canonical),
                        loaded_files_.end());
    dormant_files_.insert(canonical);
    spdlog::debug("unloaded plugin {}: the configuration uses none of its types", lib.label());
    libraries_.erase(libraries_.begin() + static_cast<std::ptrdiff_t>(i));
    ++released;
  }
  return released;
}

std::vector<const ComponentType*> Registry::all() const {
  std::vector<const ComponentType*> out;
  out.reserve(index_.size());
  // index_ is ordered by (kind, type name) already.
  for (const auto& [key, type] : index_) out.push_back(type);
  return out;
}

std::vector<const PluginLibrary*> Registry::plugins() const {
  std::vector<const PluginLibrary*> out;
  for (const auto& lib : libraries_) out.push_back(lib.get());
  return out;
}

const nlohmann::json* Registry::schema_for(kiln_component_kind kind,
                                           std::string_view type_name) const {
  const ComponentType* type = find(kind, type_name);
  return type ? &type->schema : nullptr;
}

std::vector<std::string> Registry::type_names(kiln_component_kind kind) const {
  std::vector<std::string> out;
  for (const auto& [key, type] : index_) {
    if (key.first == kind) out.push_back(key.second);
  }
  for (const auto& [key, file] : dormant_) {
    if (key.first == kind) out.push_back(key.second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> Registry::check_with_plugin(kiln_component_kind kind,
                                                       std::string_view type_name,
                                                       const nlohmann::json& config) const {
  const ComponentType* type = find(kind, type_name);
  if (type == nullptr) {
    return "no " + std::string(kind_name(kind)) + " type '" + std::string(type_name) + "'";
  }
  if (type->desc.validate == nullptr) return std::nullopt;
  const std::string text = config.dump();
  kiln_error err;
  kiln_status status;
  try {
    status = type->desc.validate(kiln_str{text.data(), text.size()}, &err);
  } catch (...) {
    return "validate of " + std::string(kind_name(kind)) + " '" + type->type_name +
           "' threw an exception";
  }
  if (status == KILN_OK) return std::nullopt;
  if (!err.message.empty()) return err.message;
  return "rejected by " + std::string(kind_name(kind)) + " '" + type->type_name +
         "' (status " + std::to_string(status) + ")";
}

std::optional<std::string> Registry::policy_hook(std::string_view type_name) const {
  const ComponentType* type = find(KILN_KIND_POLICY, type_name);
  if (type == nullptr) return std::nullopt;
  const kiln_policy_vtable* vtable = type->vtable<kiln_policy_vtable>();
  if (!KILN_HAS(kiln_policy_vtable, vtable, policy)) return std::nullopt;
  return std::string(vtable->policy);
}

}  // namespace kiln::plugin
