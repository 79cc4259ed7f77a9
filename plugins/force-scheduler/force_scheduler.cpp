// kiln-force-scheduler: Buildbot's ForceScheduler (type `force`). Builds on
// demand: the web or the CLI sends control("force", args) with the form's
// values; the scheduler checks them against its parameters and submits one
// buildset. control("describe") lists the parameters for a form.
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::force_scheduler {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

// One text field of a source stamp (branch, revision, ...), as configured.
constexpr const char* kFieldSchema = R"({
      "type": "object", "additionalProperties": false, "default": {},
      "properties": {
        "default": {"type": "string", "default": "", "description": "Value when the form leaves the field out."},
        "label": {"type": "string", "description": "The field's label on a form (default: its name)."},
        "hide": {"type": "boolean", "default": false, "description": "Leave the field off forms (the default is then used unless a value is sent)."}
      }})";

const std::string& config_schema() {
  static const std::string schema = std::string(R"json({
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "label": {"type": ["string", "null"], "default": null, "description": "Title of the force form (default: the scheduler's name)."},
    "button_name": {"type": ["string", "null"], "default": null, "description": "Text of the form's button (default: the label)."},
    "reason": {
      "type": "object", "additionalProperties": false, "default": {},
      "properties": {
        "default": {"type": "string", "default": "force build", "description": "Reason when none is given."},
        "label": {"type": "string", "default": "reason", "description": "The field's label on a form."},
        "hide": {"type": "boolean", "default": false, "description": "Leave the field off forms."},
        "required": {"type": "boolean", "default": false, "description": "Refuse to force without a non-empty reason."}
      },
      "description": "The reason field."
    },
    "reason_string": {"type": "string", "default": "A build was forced by '%(owner)s': %(reason)s",
      "description": "The buildset's reason; %(owner)s and %(reason)s are replaced."},
    "username_required": {"type": "boolean", "default": false,
      "description": "Refuse to force without a username (else the owner is 'anonymous')."},
    "branch": )json") + kFieldSchema + R"json(,
    "revision": )json" + kFieldSchema + R"json(,
    "repository": )json" + kFieldSchema + R"json(,
    "project": )json" + kFieldSchema + R"json(,
    "codebases": {
      "type": ["array", "null"], "default": null,
      "items": {"type": ["string", "object"]},
      "description": "Codebases to build, each a name or {codebase, branch, revision, repository, project} with fields as above (default: the one codebase \"\", using the top-level fields)."
    },
    "parameters": {
      "type": "array", "default": [],
      "items": {
        "type": "object", "additionalProperties": false, "required": ["name"],
        "properties": {
          "name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$", "description": "The build property it sets."},
          "label": {"type": "string", "description": "The field's label (default: its name)."},
          "type": {"enum": ["string", "text", "int", "bool", "choice"], "default": "string", "description": "How the value is checked and stored."},
          "default": {"description": "Value when none is given (default: \"\", 0, false, or the first choice)."},
          "choices": {"type": "array", "items": {"type": "string"}, "description": "The allowed values of a choice."},
          "required": {"type": "boolean", "default": false, "description": "Refuse to force when the value is empty."},
          "hide": {"type": "boolean", "default": false, "description": "Leave the field off forms."}
        }
      },
      "description": "Extra fields of the form, each setting the build property of its name (Buildbot's ForceScheduler properties=[...]; named parameters here because properties is the core's scheduler key)."
    }
  }
})json";
  return schema;
}

const std::set<std::string, std::less<>> kReserved = {"reason", "username", "owner", "scheduler", "builderNames",
                                                      "properties", "branch", "revision", "repository", "project",
                                                      "codebases", "parameters"};
const char* const kFields[] = {"branch", "revision", "repository", "project"};

struct Field {
  std::string codebase, field;  // field: branch, revision, repository or project
  std::string default_value, label;
  bool hide = false;
  std::string full_name() const { return codebase.empty() ? field : codebase + "_" + field; }
};

struct Param {
  std::string name, label, type;
  json default_value;
  std::vector<std::string> choices;
  bool required = false, hide = false;
};

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : std::string(sep)) + item;
  return out;
}

Field read_field(const json& spec, const Field& fallback) {
  Field f = fallback;
  if (!spec.is_object()) return f;
  if (auto it = spec.find("default"); it != spec.end() && it->is_string()) f.default_value = it->get<std::string>();
  if (auto it = spec.find("label"); it != spec.end() && it->is_string()) f.label = it->get<std::string>();
  if (auto it = spec.find("hide"); it != spec.end() && it->is_boolean()) f.hide = it->get<bool>();
  return f;
}

std::string trimmed(std::string_view s) {
  const char* space = " \t\r\n";
  const size_t a = s.find_first_not_of(space);
  if (a == std::string_view::npos) return {};
  return std::string(s.substr(a, s.find_last_not_of(space) - a + 1));
}

// A form value as the parameter's type wants it, or why it is not one.
sdk::Result<json> coerce(const Param& p, const json& value) {
  const std::string quoted = value.is_string() ? "'" + value.get<std::string>() + "'" : value.dump();
  if (p.type == "int") {
    if (value.is_number_integer()) return value;
    if (value.is_string()) {
      const std::string text = trimmed(value.get<std::string>());
      int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) return json(n);
    }
    return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "'" + p.label + "': " + quoted + " is not an integer");
  }
  if (p.type == "bool") {
    if (value.is_boolean()) return value;
    if (value.is_number_integer()) return json(value.get<int64_t>() != 0);
    if (value.is_string()) {
      std::string text = trimmed(value.get<std::string>());
      std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
      if (text == "true" || text == "1" || text == "on" || text == "yes") return json(true);
      if (text == "false" || text == "0" || text == "off" || text == "no" || text.empty()) return json(false);
    }
    return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "'" + p.label + "': " + quoted + " is not a boolean");
  }
  // string, text, choice
  std::string text;
  if (value.is_string()) {
    text = value.get<std::string>();
  } else if (value.is_number()) {
    text = value.dump();
  } else {
    return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "'" + p.label + "': " + quoted + " is not a string");
  }
  if (p.type == "choice" && std::find(p.choices.begin(), p.choices.end(), text) == p.choices.end()) {
    return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "'" + p.label + "': '" + text +
                                                      "' is not one of the choices (" + join(p.choices) + ")");
  }
  return json(text);
}

class ForceScheduler : public sdk::Scheduler {
 public:
  ForceScheduler(sdk::Context ctx, const json& config) : Scheduler(std::move(ctx), config) {
    // The config was checked by validate(); read() cannot fail here.
    read(config, fields_, params_).throw_if_error();
    auto info = context().info();
    if (info.ok() && info->is_object()) {
      name_ = info->value("name", std::string("force"));
      const json common = info->value("common", json::object());
      for (const auto& b : common.value("builders", json::array())) {
        if (b.is_string()) builders_.push_back(b.get<std::string>());
      }
      if (auto it = common.find("properties"); it != common.end() && it->is_object()) properties_ = *it;
    }
  }

  static sdk::Status validate(const json& config) {
    std::vector<Field> fields;
    std::vector<Param> params;
    return read(config, fields, params);
  }

  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override {
    if (action == "describe") {
      reply.ok(describe());
      return {};
    }
    if (action != "force") {
      return sdk::Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) +
                                                   "' (the force scheduler answers force and describe)");
    }
    // Refusals go through the reply: control() has no error slot, and the
    // user must see why.
    auto request = build_request(args.is_object() ? args : json::object());
    if (!request) {
      reply.fail(request.status());
      return {};
    }
    return add_buildset(*request, [reply](sdk::Result<json> result) {
      if (!result) {
        reply.fail(result.status());
        return;
      }
      reply.ok(json{{"bsid", result->value("bsid", json())}, {"brids", result->value("brids", json::object())}});
    });
  }

 private:
  static sdk::Status read(const json& config, std::vector<Field>& fields, std::vector<Param>& params) {
    // Source stamp fields: top-level ones, overridden per codebase.
    std::vector<Field> top;
    for (const char* name : kFields) top.push_back(read_field(config.value(name, json()), Field{"", name, "", name}));
    const json codebases = config.value("codebases", json());
    if (codebases.is_array() && !codebases.empty()) {
      std::set<std::string> seen;
      for (const auto& cb : codebases) {
        const std::string name = cb.is_string() ? cb.get<std::string>() : cb.value("codebase", std::string());
        if (!cb.is_string() && !(cb.is_object() && cb.contains("codebase") && cb["codebase"].is_string())) {
          return sdk::invalid_config("each entry of codebases is a name or a mapping with a 'codebase' name");
        }
        if (!seen.insert(name).second) return sdk::invalid_config("codebase '" + name + "' is listed twice");
        for (const Field& base : top) {
          Field f = base;
          f.codebase = name;
          f.label = name.empty() ? base.label : name + " " + base.label;
          fields.push_back(cb.is_object() ? read_field(cb.value(base.field, json()), f) : f);
        }
      }
    } else {
      fields = top;
    }

    std::set<std::string> names;
    for (const auto& spec : config.value("parameters", json::array())) {
      Param p;
      p.name = spec.value("name", std::string());
      p.label = spec.value("label", p.name);
      p.type = spec.value("type", std::string("string"));
      p.required = spec.value("required", false);
      p.hide = spec.value("hide", false);
      const std::string where = "property parameter '" + p.name + "'";
      if (p.name.empty()) return sdk::invalid_config("a property parameter has no name");
      if (kReserved.count(p.name) != 0) {
        return sdk::invalid_config(where + ": the name is reserved for the force form's own fields");
      }
      if (!names.insert(p.name).second) return sdk::invalid_config(where + " is given twice");
      for (const auto& c : spec.value("choices", json::array())) {
        if (c.is_string()) p.choices.push_back(c.get<std::string>());
      }
      if (p.type == "choice" && p.choices.empty()) return sdk::invalid_config(where + ": a choice needs choices");
      if (spec.contains("default")) {
        auto value = coerce(p, spec["default"]);
        if (!value) return sdk::invalid_config(where + ": bad default: " + value.status().message());
        p.default_value = *value;
      } else if (p.type == "int") {
        p.default_value = 0;
      } else if (p.type == "bool") {
        p.default_value = false;
      } else if (p.type == "choice") {
        p.default_value = p.choices.front();
      } else {
        p.default_value = "";
      }
      params.push_back(std::move(p));
    }
    return {};
  }

  // The arguments' value for a form field: args[name], or for a property
  // parameter args.properties[name] too; null when absent.
  static json lookup(const json& args, const std::string& name, const json* nested) {
    if (nested != nullptr && nested->is_object()) {
      if (auto it = nested->find(name); it != nested->end() && !it->is_null()) return *it;
    }
    if (auto it = args.find(name); it != args.end() && !it->is_null()) return *it;
    return json();
  }

  static std::string text_of(const json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_null()) return {};
    return value.dump();
  }

  sdk::Result<json> build_request(const json& args) const {
    std::vector<std::string> errors;

    // Builders: all of ours by default; unknown names are refused, not dropped.
    std::vector<std::string> builders;
    const json wanted = args.value("builderNames", json());
    if (wanted.is_array() && !wanted.empty()) {
      std::vector<std::string> unknown;
      for (const auto& b : wanted) {
        const std::string name = text_of(b);
        if (std::find(builders_.begin(), builders_.end(), name) == builders_.end()) {
          unknown.push_back("'" + name + "'");
        } else if (std::find(builders.begin(), builders.end(), name) == builders.end()) {
          builders.push_back(name);
        }
      }
      if (!unknown.empty()) {
        errors.push_back(std::string(unknown.size() == 1 ? "builder " : "builders ") + join(unknown) +
                         " cannot be forced by scheduler '" + name_ + "', which forces only: " +
                         (builders_.empty() ? std::string("(no builders)") : join(builders_)));
      }
    } else if (!wanted.is_null() && !wanted.is_array()) {
      errors.push_back("builderNames must be a list of builder names");
    } else {
      builders = builders_;
    }
    if (builders.empty() && errors.empty()) errors.push_back("scheduler '" + name_ + "' has no builders to force");

    // Owner and reason.
    std::string owner = trimmed(text_of(lookup(args, "username", nullptr)));
    if (owner.empty()) owner = trimmed(text_of(lookup(args, "owner", nullptr)));
    if (owner.empty()) {
      if (config().value("username_required", false)) errors.push_back("a username is required to force a build");
      owner = "anonymous";
    }
    const json reason_cfg = config().value("reason", json::object());
    std::string reason = text_of(lookup(args, "reason", nullptr));
    if (reason.empty()) reason = reason_cfg.value("default", std::string("force build"));
    if (reason_cfg.value("required", false) && trimmed(reason).empty()) {
      errors.push_back("'" + reason_cfg.value("label", std::string("reason")) + "' needs to be specified");
    }

    // Source stamps, one per codebase, in configured order.
    json sourcestamps = json::array();
    const json* per_codebase = args.contains("codebases") ? &args["codebases"] : nullptr;
    for (const Field& f : fields_) {
      if (sourcestamps.empty() || sourcestamps.back()["codebase"] != f.codebase) {
        sourcestamps.push_back({{"codebase", f.codebase}});
      }
      json value = lookup(args, f.full_name(), nullptr);
      if (value.is_null() && per_codebase != nullptr && per_codebase->is_object()) {
        if (auto cb = per_codebase->find(f.codebase); cb != per_codebase->end() && cb->is_object()) {
          value = cb->value(f.field, json());
        }
      }
      sourcestamps.back()[f.field] = value.is_null() ? f.default_value : text_of(value);
    }

    // Properties: the scheduler's, then the form's parameters.
    json properties = properties_.is_object() ? properties_ : json::object();
    const json* given = args.contains("properties") ? &args["properties"] : nullptr;
    for (const Param& p : params_) {
      json value = lookup(args, p.name, given);
      if (value.is_null()) value = p.default_value;
      auto typed = coerce(p, value);
      if (!typed) {
        errors.push_back(typed.status().message());
        continue;
      }
      if (p.required && typed->is_string() && typed->get<std::string>().empty()) {
        errors.push_back("'" + p.label + "' needs to be specified");
        continue;
      }
      properties[p.name] = *typed;
    }
    if (!errors.empty()) return sdk::Status(KILN_ERR_INVALID_ARGUMENT, join(errors, "; "));

    properties["reason"] = reason;
    properties["owner"] = owner;
    properties["scheduler"] = name_;
    return json{{"builders", builders},
                {"reason", expand_reason(owner, reason)},
                {"sourcestamps", sourcestamps},
                {"properties", properties}};
  }

  std::string expand_reason(const std::string& owner, const std::string& reason) const {
    std::string text = config().value("reason_string", std::string("A build was forced by '%(owner)s': %(reason)s"));
    std::string out;
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, 9, "%(owner)s") == 0) {
        out += owner;
        i += 9;
      } else if (text.compare(i, 10, "%(reason)s") == 0) {
        out += reason;
        i += 10;
      } else {
        out += text[i++];
      }
    }
    return out;
  }

  json describe() const {
    json parameters = json::array();
    parameters.push_back({{"name", "username"},
                          {"label", "Your name:"},
                          {"type", "username"},
                          {"default", ""},
                          {"required", config().value("username_required", false)},
                          {"hide", false}});
    const json reason_cfg = config().value("reason", json::object());
    parameters.push_back({{"name", "reason"},
                          {"label", reason_cfg.value("label", std::string("reason"))},
                          {"type", "text"},
                          {"default", reason_cfg.value("default", std::string("force build"))},
                          {"required", reason_cfg.value("required", false)},
                          {"hide", reason_cfg.value("hide", false)}});
    for (const Field& f : fields_) {
      parameters.push_back({{"name", f.full_name()},
                            {"label", f.label},
                            {"type", "string"},
                            {"codebase", f.codebase},
                            {"field", f.field},
                            {"default", f.default_value},
                            {"required", false},
                            {"hide", f.hide}});
    }
    for (const Param& p : params_) {
      json entry = {{"name", p.name},         {"label", p.label},       {"type", p.type},
                    {"default", p.default_value}, {"required", p.required}, {"hide", p.hide}};
      if (p.type == "choice") entry["choices"] = p.choices;
      parameters.push_back(std::move(entry));
    }
    const json label = config().value("label", json());
    const json button = config().value("button_name", json());
    const std::string title = label.is_string() ? label.get<std::string>() : name_;
    return json{{"name", name_},
                {"label", title},
                {"button_name", button.is_string() ? button.get<std::string>() : title},
                {"builders", builders_},
                {"parameters", parameters}};
  }

  std::string name_ = "force";
  std::vector<std::string> builders_;
  json properties_ = json::object();
  std::vector<Field> fields_;
  std::vector<Param> params_;
};

}  // namespace
}  // namespace kiln::force_scheduler

KILN_PLUGIN("kiln-force-scheduler", "0.1.0", "Buildbot's ForceScheduler: builds on demand", "MIT",
            kiln::sdk::component<kiln::force_scheduler::ForceScheduler>(
                KILN_KIND_SCHEDULER, "force", "0.1.0", "Starts builds on demand from the web or the CLI",
                kiln::force_scheduler::config_schema().c_str()));
