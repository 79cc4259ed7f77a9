// Phase 1 of reading master.yaml: files, includes, builder matrices and
// ${env:..}/${file:..} substitution. Phase 2 is in config_check.cpp.

#include "config/master_config.h"

#include "config/substitution.h"
#include "config/yaml_document.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace kiln::config {
namespace {

namespace fs = std::filesystem;

constexpr const char* kTopLevelLists[] = {"workers",  "change_sources", "schedulers",
                                          "builders", "reporters",      "policies"};

const char* type_word(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: return "mapping";
    case nlohmann::json::value_t::array: return "list";
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::boolean: return "boolean";
    case nlohmann::json::value_t::null: return "null";
    default: return "number";
  }
}

std::string position_text(const SourceLocation& at) {
  return at.file + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

void erase_subtree(auto& entries, const std::string& pointer) {
  entries.erase(pointer);
  entries.erase(entries.lower_bound(pointer + "/"), entries.lower_bound(pointer + "0"));
}

// Reads a file and everything it includes into one tree.
class DocumentReader {
 public:
  std::vector<Diagnostic> errors;
  std::map<std::string, fs::path> folders;  // display file name -> real folder

  std::optional<YamlTree> load(const fs::path& real, const std::string& display,
                               const SourceLocation* included_at) {
    std::error_code ec;
    if (!fs::is_regular_file(real, ec)) {
      std::string why = fs::exists(real, ec) ? "not a regular file" : "no such file";
      if (included_at != nullptr) {
        error(*included_at, "", "cannot include '" + display + "': " + why);
      } else {
        error(SourceLocation{display, 0, 0}, "", "cannot read configuration: " + why);
      }
      return std::nullopt;
    }
    YamlParseResult parsed = parse_yaml_file(real, display);
    if (!parsed.errors.empty()) {
      errors.insert(errors.end(), parsed.errors.begin(), parsed.errors.end());
      return std::nullopt;
    }
    YamlTree tree = std::move(parsed.tree);
    folders.emplace(display, fs::absolute(real, ec).parent_path());
    if (tree.root.is_null()) tree.root = nlohmann::json::object();
    if (!tree.root.is_object()) {
      error(tree.locations[""], "", "the top level of a configuration file must be a mapping");
      return std::nullopt;
    }
    if (!tree.root.contains("include")) return tree;

    nlohmann::json includes = std::move(tree.root["include"]);
    tree.root.erase("include");
    YamlTree own = tree;  // include entries' positions, before they are erased
    erase_subtree(tree.locations, "/include");
    erase_subtree(tree.key_locations, "/include");
    erase_subtree(tree.plain_strings, "/include");
    if (!includes.is_array()) {
      error(own.locations["/include"], "include", "expected a list of file paths, got a " +
                                                      std::string(type_word(includes)));
      return tree;
    }
    chain_.emplace_back(fs::weakly_canonical(fs::absolute(real, ec), ec), display);
    for (size_t i = 0; i < includes.size(); ++i) {
      std::string pointer = "/include/" + std::to_string(i);
      const SourceLocation& at = own.locations[pointer];
      if (!includes[i].is_string() || includes[i].get<std::string>().empty()) {
        error(at, pointer_to_path(pointer), "expected a file path");
        continue;
      }
      fs::path named(includes[i].get<std::string>());
      fs::path child_real = named.is_absolute() ? named : real.parent_path() / named;
      std::string child_display =
          (named.is_absolute() ? named : fs::path(display).parent_path() / named).lexically_normal().string();
      fs::path identity = fs::weakly_canonical(fs::absolute(child_real, ec), ec);
      bool cyclic = std::any_of(chain_.begin(), chain_.end(),
                                [&](const auto& link) { return link.first == identity; });
      if (cyclic) {
        std::string cycle;
        for (const auto& link : chain_) cycle += link.second + " -> ";
        error(at, pointer_to_path(pointer), "include cycle: " + cycle + child_display);
        continue;
      }
      std::optional<YamlTree> child = load(child_real, child_display, &at);
      if (child) merge(tree, *child);
    }
    chain_.pop_back();
    return tree;
  }

 private:
  void error(const SourceLocation& at, std::string path, std::string message) {
    errors.push_back(Diagnostic{at, std::move(path), std::move(message)});
  }

  // Top-level lists are appended; mappings (`master`) merged key by key.
  void merge(YamlTree& into, const YamlTree& from) {
    for (const auto& [key, value] : from.root.items()) {
      std::string pointer = "/" + escape_pointer_token(key);
      auto copy = [&](const std::string& source, const std::string& target) {
        copy_pointer_subtree(from.locations, source, into.locations, target);
        copy_pointer_subtree(from.key_locations, source, into.key_locations, target);
        copy_pointer_subtree(from.plain_strings, source, into.plain_strings, target);
      };
      if (!into.root.contains(key)) {
        into.root[key] = value;
        copy(pointer, pointer);
        continue;
      }
      nlohmann::json& existing = into.root[key];
      if (existing.is_null()) {  // "workers:" with nothing under it
        existing = value;
        copy(pointer, pointer);
      } else if (existing.is_array() && value.is_array()) {
        for (size_t i = 0; i < value.size(); ++i) {
          copy(pointer + "/" + std::to_string(i), pointer + "/" + std::to_string(existing.size()));
          existing.push_back(value[i]);
        }
      } else if (existing.is_object() && value.is_object()) {
        for (const auto& [member, member_value] : value.items()) {
          std::string member_pointer = pointer + "/" + escape_pointer_token(member);
          if (existing.contains(member)) {
            error(from.key_locations.at(member_pointer), pointer_to_path(member_pointer),
                  "'" + key + "." + member + "' is already set at " +
                      position_text(into.key_locations[member_pointer]));
            continue;
          }
          existing[member] = member_value;
          copy(member_pointer, member_pointer);
        }
      } else if (!value.is_null()) {
        error(from.locations.at(pointer), pointer_to_path(pointer),
              "cannot merge a " + std::string(type_word(value)) + " into the " +
                  type_word(existing) + " '" + key + "' of " + into.locations[pointer].file);
      }
    }
  }

  std::vector<std::pair<fs::path, std::string>> chain_;  // files being read
};

struct MatrixAxis {
  std::string key;
  std::vector<nlohmann::json> values;
};

// Every combination of a builder matrix's values, as ordered lists: the last
// key varies fastest, as a reader of nested loops expects.
std::vector<std::vector<size_t>> combinations(const std::vector<MatrixAxis>& axes) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> current(axes.size(), 0);
  while (true) {
    out.push_back(current);
    size_t k = axes.size();
    while (k > 0) {
      --k;
      if (++current[k] < axes[k].values.size()) break;
      current[k] = 0;
      if (k == 0) return out;
    }
    if (axes.empty()) return out;
  }
}

class MatrixExpander {
 public:
  MatrixExpander(YamlTree& tree, std::vector<Diagnostic>& errors) : tree_(tree), errors_(errors) {}

  void run() {
    nlohmann::json* builders = tree_.root.contains("builders") ? &tree_.root["builders"] : nullptr;
    if (builders == nullptr || !builders->is_array()) return;
    bool any = std::any_of(builders->begin(), builders->end(), [](const nlohmann::json& b) {
      return b.is_object() && b.contains("matrix");
    });
    if (!any) return;

    nlohmann::json expanded = nlohmann::json::array();
    YamlTree moved;  // positions below /builders, renumbered
    for (size_t i = 0; i < builders->size(); ++i) {
      const nlohmann::json& entry = (*builders)[i];
      std::string from = "/builders/" + std::to_string(i);
      if (!entry.is_object() || !entry.contains("matrix")) {
        copy_entry(from, "/builders/" + std::to_string(expanded.size()), moved);
        expanded.push_back(entry);
        continue;
      }
      std::optional<std::vector<MatrixAxis>> axes = read_axes(entry["matrix"], from + "/matrix");
      if (!axes) continue;
      bool first = true;
      for (const auto& combination : combinations(*axes)) {
        std::string to = "/builders/" + std::to_string(expanded.size());
        copy_entry(from, to, moved);
        std::map<std::string, nlohmann::json> values;
        for (size_t k = 0; k < axes->size(); ++k) {
          values[(*axes)[k].key] = (*axes)[k].values[combination[k]];
        }
        nlohmann::json builder = entry;
        builder.erase("matrix");
        substitute(builder, from, values, first);
        add_properties(builder, from, to, *axes, combination, moved, first);
        expanded.push_back(std::move(builder));
        first = false;
      }
    }
    *builders = std::move(expanded);
    for (auto* entries : {&tree_.locations, &tree_.key_locations}) {
      entries->erase(entries->lower_bound("/builders/"), entries->lower_bound("/builders0"));
    }
    tree_.plain_strings.erase(tree_.plain_strings.lower_bound("/builders/"),
                              tree_.plain_strings.lower_bound("/builders0"));
    tree_.locations.merge(moved.locations);
    tree_.key_locations.merge(moved.key_locations);
    tree_.plain_strings.merge(moved.plain_strings);
  }

 private:
  void error(const std::string& pointer, std::string message, bool at_key = false) {
    const auto& table = at_key ? tree_.key_locations : tree_.locations;
    auto found = table.find(pointer);
    errors_.push_back(Diagnostic{found == table.end() ? SourceLocation{} : found->second,
                                 pointer_to_path(pointer), std::move(message)});
  }

  void copy_entry(const std::string& from, const std::string& to, YamlTree& moved) {
    copy_pointer_subtree(tree_.locations, from, moved.locations, to);
    copy_pointer_subtree(tree_.key_locations, from, moved.key_locations, to);
    copy_pointer_subtree(tree_.plain_strings, from, moved.plain_strings, to);
  }

  std::optional<std::vector<MatrixAxis>> read_axes(const nlohmann::json& matrix, const std::string& pointer) {
    if (!matrix.is_object() || matrix.empty()) {
      error(pointer, "a matrix is a mapping of keys to lists of values");
      return std::nullopt;
    }
    std::vector<MatrixAxis> axes;
    bool ok = true;
    for (const auto& [key, values] : matrix.items()) {
      std::string axis_pointer = pointer + "/" + escape_pointer_token(key);
      if (!values.is_array() || values.empty()) {
        error(axis_pointer, "matrix key '" + key + "' needs a non-empty list of values");
        ok = false;
        continue;
      }
      for (size_t v = 0; v < values.size(); ++v) {
        if (values[v].is_structured() || values[v].is_null()) {
          error(axis_pointer + "/" + std::to_string(v), "matrix values must be strings, numbers or booleans");
          ok = false;
        }
      }
      axes.push_back(MatrixAxis{key, values.get<std::vector<nlohmann::json>>()});
    }
    if (!ok) return std::nullopt;
    // JSON objects forget the written order; the keys' positions remember it.
    auto written_at = [&](const MatrixAxis& axis) {
      const SourceLocation& at = tree_.key_locations[pointer + "/" + escape_pointer_token(axis.key)];
      return std::make_pair(at.line, at.column);
    };
    std::stable_sort(axes.begin(), axes.end(),
                     [&](const auto& a, const auto& b) { return written_at(a) < written_at(b); });
    return axes;
  }

  void substitute(nlohmann::json& value, const std::string& pointer,
                  const std::map<std::string, nlohmann::json>& values, bool report) {
    if (value.is_object()) {
      for (auto& [key, member] : value.items()) {
        substitute(member, pointer + "/" + escape_pointer_token(key), values, report);
      }
    } else if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        substitute(value[i], pointer + "/" + std::to_string(i), values, report);
      }
    } else if (value.is_string() && has_substitution(value.get_ref<const std::string&>())) {
      Substituted result = substitute_matrix(value.get<std::string>(), values);
      if (report) {
        for (auto& message : result.errors) error(pointer, std::move(message));
      }
      if (result.whole && tree_.plain_strings.count(pointer) != 0) {
        value = result.whole_value;
      } else {
        value = std::move(result.text);
      }
    }
  }

  void add_properties(nlohmann::json& builder, const std::string& from, const std::string& to,
                      const std::vector<MatrixAxis>& axes, const std::vector<size_t>& combination,
                      YamlTree& moved, bool report) {
    if (!builder.contains("properties") || builder["properties"].is_null()) {
      builder["properties"] = nlohmann::json::object();
      moved.locations[to + "/properties"] = tree_.locations[from + "/matrix"];
    }
    nlohmann::json& properties = builder["properties"];
    if (!properties.is_object()) return;  // phase 2 reports the type
    for (size_t k = 0; k < axes.size(); ++k) {
      const std::string& key = axes[k].key;
      std::string token = escape_pointer_token(key);
      if (properties.contains(key)) {
        if (report) error(from + "/properties/" + token, "property '" + key + "' is also a matrix key", true);
        continue;
      }
      properties[key] = axes[k].values[combination[k]];
      std::string value_pointer = from + "/matrix/" + token + "/" + std::to_string(combination[k]);
      moved.locations[to + "/properties/" + token] = tree_.locations[value_pointer];
      moved.key_locations[to + "/properties/" + token] = tree_.key_locations[from + "/matrix/" + token];
    }
  }

  YamlTree& tree_;
  std::vector<Diagnostic>& errors_;
};

class SecretSubstituter {
 public:
  SecretSubstituter(ConfigDocument& doc, const std::set<std::string>& plain_strings,
                    const std::map<std::string, fs::path>& folders, std::vector<Diagnostic>& errors)
      : doc_(doc), plain_strings_(plain_strings), folders_(folders), errors_(errors) {}

  // `pointer` is one buffer grown and cut back on the way down: a string
  // per value visited was a tenth of reading a large configuration.
  void walk(nlohmann::json& value, std::string& pointer) {
    const size_t length = pointer.size();
    if (value.is_object()) {
      for (auto& [key, member] : value.items()) {
        pointer += '/';
        pointer += escape_pointer_token(key);
        walk(member, pointer);
        pointer.resize(length);
      }
    } else if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        pointer += '/';
        pointer += std::to_string(i);
        walk(value[i], pointer);
        pointer.resize(length);
      }
    } else if (value.is_string() && has_substitution(value.get_ref<const std::string&>())) {
      SourceLocation at = doc_.locate(pointer);
      auto folder = folders_.find(at.file);
      Substituted result = substitute_secrets(
          value.get<std::string>(), folder == folders_.end() ? fs::path() : folder->second);
      for (auto& message : result.errors) {
        errors_.push_back(Diagnostic{at, pointer_to_path(pointer), std::move(message)});
      }
      if (!result.secrets.empty()) {
        doc_.secret_pointers.insert(pointer);
        for (auto& secret : result.secrets) {
          if (!secret.empty()) doc_.secret_values.insert(std::move(secret));
        }
      }
      // `port: ${env:PORT}` unquoted reads as if the value were written there.
      if (result.whole && result.errors.empty() && plain_strings_.count(pointer) != 0) {
        value = resolve_plain_scalar(result.text);
      } else {
        value = std::move(result.text);
      }
    }
  }

 private:
  ConfigDocument& doc_;
  const std::set<std::string>& plain_strings_;
  const std::map<std::string, fs::path>& folders_;
  std::vector<Diagnostic>& errors_;
};

}  // namespace

SourceLocation ConfigDocument::locate(const std::string& pointer) const {
  std::string current = pointer;
  while (true) {
    if (auto found = locations.find(current); found != locations.end()) return found->second;
    if (current.empty()) break;
    current.erase(current.rfind('/'));
  }
  return SourceLocation{main_file.string(), 0, 0};
}

namespace {

ReadResult read_document(const fs::path& path) {
  ReadResult result;
  std::error_code ec;
  fs::path file = fs::is_directory(path, ec) ? path / "master.yaml" : path;

  DocumentReader reader;
  std::optional<YamlTree> tree = reader.load(file, file.string(), nullptr);
  result.errors = std::move(reader.errors);
  if (!tree) return result;
  MatrixExpander(*tree, result.errors).run();

  ConfigDocument doc;
  doc.main_file = file;
  doc.root = std::move(tree->root);
  doc.locations = std::move(tree->locations);
  doc.key_locations = std::move(tree->key_locations);
  std::string pointer;
  SecretSubstituter(doc, tree->plain_strings, reader.folders, result.errors).walk(doc.root, pointer);

  if (result.errors.empty()) {
    result.document = std::move(doc);
  } else {
    std::stable_sort(result.errors.begin(), result.errors.end(), [](const auto& a, const auto& b) {
      return std::tie(a.location.file, a.location.line, a.location.column) <
             std::tie(b.location.file, b.location.line, b.location.column);
    });
  }
  return result;
}

}  // namespace

ReadResult read_config_document(const fs::path& path) {
  try {
    return read_document(path);
  } catch (const std::exception& e) {
    // A bug here must still come out as a diagnostic, not end the master.
    ReadResult failed;
    failed.errors.push_back(Diagnostic{SourceLocation{path.string(), 0, 0}, "",
                                       std::string("internal error while reading: ") + e.what()});
    return failed;
  }
}

std::vector<fs::path> plugin_paths_of(const ConfigDocument& doc) {
  std::vector<fs::path> paths;
  std::error_code ec;
  fs::path basedir = fs::absolute(doc.main_file, ec).parent_path();
  const nlohmann::json* master = doc.root.contains("master") ? &doc.root["master"] : nullptr;
  if (master == nullptr || !master->is_object() || !master->contains("plugin_paths")) return paths;
  const nlohmann::json& listed = (*master)["plugin_paths"];
  if (!listed.is_array()) return paths;
  for (const auto& entry : listed) {
    if (entry.is_string()) paths.push_back((basedir / entry.get<std::string>()).lexically_normal());
  }
  return paths;
}

std::string redact_secrets(const ConfigDocument& doc, std::string text) {
  // Longest first, so a secret containing another is hidden whole.
  std::vector<const std::string*> secrets;
  for (const auto& secret : doc.secret_values) secrets.push_back(&secret);
  std::sort(secrets.begin(), secrets.end(), [](auto* a, auto* b) { return a->size() > b->size(); });
  for (const std::string* secret : secrets) {
    for (size_t at = text.find(*secret); at != std::string::npos; at = text.find(*secret, at + 3)) {
      text.replace(at, secret->size(), "***");
    }
  }
  return text;
}

}  // namespace kiln::config
