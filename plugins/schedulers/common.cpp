#include "common.h"

#include <map>

namespace kiln::schedulers {

Identity Identity::read(const sdk::Context& ctx, std::string_view fallback_name) {
  Identity id;
  id.name = std::string(fallback_name);
  auto info = ctx.info();
  if (!info.ok() || !info->is_object()) return id;
  id.name = info->value("name", id.name);
  const json common = info->value("common", json::object());
  for (const auto& b : common.value("builders", json::array())) {
    if (b.is_string()) id.builders.push_back(b.get<std::string>());
  }
  if (auto it = common.find("properties"); it != common.end() && it->is_object()) id.properties = *it;
  return id;
}

std::string format_reason(std::string_view text, std::string_view name, std::string_view classname) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 8, "%(name)s") == 0) {
      out += name;
      i += 8;
    } else if (text.compare(i, 13, "%(classname)s") == 0) {
      out += classname;
      i += 13;
    } else {
      out += text[i++];
    }
  }
  return out;
}

json kept_change(const json& change, bool important) {
  json kept = {{"changeid", change.value("changeid", json())}, {"important", important}};
  for (const char* key : {"branch", "revision", "repository", "project", "codebase", "when_timestamp"}) {
    kept[key] = change.value(key, json());
  }
  // The data API shows properties as {name: [value, source]}; the buildset
  // takes plain values.
  json properties = json::object();
  const json given = change.value("properties", json::object());
  for (const auto& [name, entry] : given.items()) {
    properties[name] = entry.is_array() && entry.size() == 2 ? entry[0] : entry;
  }
  kept["properties"] = std::move(properties);
  return kept;
}

json buildset_for_changes(const Identity& id, const std::string& reason, const json& changes) {
  std::map<std::string, json> stamps;  // codebase -> stamp
  json properties = id.properties.is_object() ? id.properties : json::object();
  json change_properties = json::object();
  for (const auto& c : changes) {
    const std::string codebase = c.value("codebase", json()).is_string() ? c["codebase"].get<std::string>() : "";
    json& ss = stamps[codebase];
    if (ss.is_null()) ss = {{"codebase", codebase}, {"changeids", json::array()}};
    ss["changeids"].push_back(c["changeid"]);
    // The latest change decides what is built; changes arrive in changeid
    // order, but a restart may interleave, so compare ids.
    const int64_t cid = c.value("changeid", int64_t{0});
    if (cid >= ss.value("latest", int64_t{0})) {
      ss["latest"] = cid;
      // No branch or revision means the default branch and its latest
      // revision; repository and project are always text.
      for (const char* key : {"branch", "revision"}) {
        const json value = c.value(key, json());
        ss[key] = value.is_string() ? value : json();
      }
      for (const char* key : {"repository", "project"}) {
        const json value = c.value(key, json());
        ss[key] = value.is_string() ? value : json("");
      }
    }
    const json kept_properties = c.value("properties", json::object());
    for (const auto& [name, value] : kept_properties.items()) change_properties[name] = value;
  }
  json sourcestamps = json::array();
  for (auto& [codebase, ss] : stamps) {
    ss.erase("latest");
    sourcestamps.push_back(std::move(ss));
  }
  for (const auto& [name, value] : change_properties.items()) properties[name] = value;
  properties["scheduler"] = id.name;
  return json{{"builders", id.builders},
              {"reason", reason},
              {"sourcestamps", std::move(sourcestamps)},
              {"properties", std::move(properties)}};
}

namespace {
int rank(int result) {
  // Index in Buildbot's order of badness.
  switch (result) {
    case KILN_SKIPPED: return 0;
    case KILN_SUCCESS: return 1;
    case KILN_WARNINGS: return 2;
    case KILN_FAILURE: return 3;
    case KILN_EXCEPTION: return 4;
    case KILN_RETRY: return 5;
    case KILN_CANCELLED: return 6;
  }
  return 4;  // unknown codes count as exceptions
}
}  // namespace

int worst_result(int a, int b) { return rank(a) >= rank(b) ? a : b; }

std::vector<std::string> string_list(const json& value) {
  std::vector<std::string> out;
  if (value.is_string()) out.push_back(value.get<std::string>());
  if (value.is_array()) {
    for (const auto& v : value) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

}  // namespace kiln::schedulers
