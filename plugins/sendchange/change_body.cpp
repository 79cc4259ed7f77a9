#include "change_body.h"

#include <cmath>
#include <initializer_list>
#include <set>

namespace kiln::sendchange {

using nlohmann::json;

namespace {

ParsedChange refuse(std::string message) {
  ParsedChange p;
  p.error = std::move(message);
  return p;
}

// "field 'x' must be ..., not <type>"
std::string wrong_type(std::string_view field, std::string_view expected, const json& value) {
  return "field '" + std::string(field) + "' must be " + std::string(expected) + ", not " +
         value.type_name();
}

// The first of `names` present in the body, or nullptr.
const json* field(const json& body, std::initializer_list<const char*> names,
                  std::string& which) {
  for (const char* name : names) {
    auto it = body.find(name);
    if (it != body.end()) {
      which = name;
      return &*it;
    }
  }
  return nullptr;
}

}  // namespace

ParsedChange parse_change_body(std::string_view body, std::string_view prefix) {
  if (body.size() > kMaxBodyBytes) {
    return refuse("the body is larger than " + std::to_string(kMaxBodyBytes) + " bytes");
  }
  json in = json::parse(body, nullptr, false);
  if (in.is_discarded()) return refuse("the body is not valid JSON");
  if (!in.is_object()) {
    return refuse(std::string("the body must be a JSON object of change fields, not ") +
                  in.type_name());
  }
  static const std::set<std::string> kKnown = {
      "who",      "author",   "committer", "files",    "comments", "project",
      "repository", "revision", "branch",  "category", "codebase", "revlink",
      "links",    "src",      "vc",        "properties", "when",   "when_timestamp"};
  for (const auto& [name, value] : in.items()) {
    if (!kKnown.count(name)) return refuse("unknown field '" + name + "'");
  }

  json change = json::object();
  std::string which;
  // Each string field, under its name in the host's change.
  struct Text {
    std::initializer_list<const char*> names;
    const char* out;
  };
  for (const Text& t : {Text{{"who", "author"}, "author"}, Text{{"committer"}, "committer"},
                        Text{{"comments"}, "comments"}, Text{{"project"}, "project"},
                        Text{{"repository"}, "repository"}, Text{{"branch"}, "branch"},
                        Text{{"category"}, "category"}, Text{{"codebase"}, "codebase"},
                        Text{{"revlink"}, "revlink"}, Text{{"src", "vc"}, "src"}}) {
    const json* v = field(in, t.names, which);
    if (v == nullptr || v->is_null()) continue;
    if (!v->is_string()) return refuse(wrong_type(which, "a string", *v));
    change[t.out] = *v;
  }
  if (!change.contains("author") || change["author"].get<std::string>().empty()) {
    return refuse("field 'who' is required: who made the change");
  }

  if (const json* v = field(in, {"revision"}, which); v != nullptr && !v->is_null()) {
    if (v->is_string()) {
      change["revision"] = *v;
    } else if (v->is_number_integer()) {
      change["revision"] = v->dump();  // svn revisions come as numbers
    } else {
      return refuse(wrong_type("revision", "a string", *v));
    }
  }

  if (const json* v = field(in, {"links"}, which); v != nullptr && !v->is_null()) {
    if (!v->is_array()) return refuse(wrong_type("links", "a list of URLs", *v));
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) {
        return refuse(wrong_type("links[" + std::to_string(i) + "]", "a string", (*v)[i]));
      }
    }
    if (!v->empty() && !change.contains("revlink")) change["revlink"] = (*v)[0];
  }

  if (const json* v = field(in, {"properties"}, which); v != nullptr && !v->is_null()) {
    if (!v->is_object()) return refuse(wrong_type("properties", "an object", *v));
    change["properties"] = *v;
  }

  if (const json* v = field(in, {"when", "when_timestamp"}, which); v != nullptr && !v->is_null()) {
    // Up to 2^53 s: beyond, a timestamp is a typo and loses its precision.
    if (!v->is_number() || !std::isfinite(v->get<double>()) || v->get<double>() < 0 ||
        v->get<double>() > 9007199254740992.0) {
      return refuse("field '" + which + "' must be Unix seconds (a number >= 0)");
    }
    change["when_timestamp"] = static_cast<int64_t>(v->get<double>());
  }

  json files = json::array();
  bool had_files = false;
  if (const json* v = field(in, {"files"}, which); v != nullptr && !v->is_null()) {
    if (!v->is_array()) return refuse(wrong_type("files", "a list of paths", *v));
    for (size_t i = 0; i < v->size(); ++i) {
      const json& f = (*v)[i];
      if (!f.is_string()) {
        return refuse(wrong_type("files[" + std::to_string(i) + "]", "a string", f));
      }
      had_files = true;
      const std::string& path = f.get_ref<const std::string&>();
      if (prefix.empty()) {
        files.push_back(path);
      } else if (path.starts_with(prefix) && path.size() > prefix.size()) {
        files.push_back(path.substr(prefix.size()));
      }
    }
  }
  change["files"] = std::move(files);

  ParsedChange out;
  if (had_files && change["files"].empty()) {
    out.ignored = "no file is under the prefix '" + std::string(prefix) + "'";
  }
  out.change = std::move(change);
  return out;
}

}  // namespace kiln::sendchange
