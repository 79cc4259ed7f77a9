#include "master/builtin_plugin.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <random>
#include <string>

namespace kiln::master {
namespace {

using nlohmann::json;

const kiln_host_api* g_host = nullptr;

// Every built-in policy is a pure function from its arguments to its answer;
// this adapts one to the C vtable, keeping exceptions on this side.
template <json (*Fn)(const json&)>
kiln_status call_policy(void*, kiln_str args, kiln_text_cb out, void* out_user,
                        kiln_error* err) {
  try {
    json answer = Fn(json::parse(std::string_view(args.ptr, args.len)));
    std::string text = answer.dump();
    out(out_user, kiln_str{text.data(), text.size()});
    return KILN_OK;
  } catch (const std::exception& e) {
    std::string message = std::string("built-in policy: ") + e.what();
    g_host->error_set(err, KILN_ERR_INVALID_ARGUMENT, {message.data(), message.size()});
    return KILN_ERR_INVALID_ARGUMENT;
  }
}

kiln_status create_stateless(kiln_ctx*, kiln_str, void** out, kiln_error*) {
  static int marker;
  *out = &marker;
  return KILN_OK;
}
void destroy_stateless(void*) {}

// Buildbot's default: two requests collapse when their source stamps name
// the same codebases, each on the same repository, branch and project, and
// neither carries a patch (the revision may differ: the newer one wins).
json collapse_same_source(const json& args) {
  auto stamps = [](const json& request) {
    json by_codebase = json::object();
    for (const auto& ss : request.value("sourcestamps", json::array())) {
      if (!ss.value("patch", json()).is_null()) return json();  // never collapse patches
      by_codebase[ss.value("codebase", "")] =
          json{ss.value("repository", ""), ss.value("branch", json()), ss.value("project", "")};
    }
    return by_codebase;
  };
  json a = stamps(args.at("request1"));
  json b = stamps(args.at("request2"));
  return !a.is_null() && !b.is_null() && a == b;
}

// Builders whose oldest pending request is oldest go first; ties by name.
json prioritize_oldest_request(const json& args) {
  std::vector<json> builders = args.at("builders").get<std::vector<json>>();
  std::stable_sort(builders.begin(), builders.end(), [](const json& x, const json& y) {
    auto tx = x.value("oldest_request_time", json());
    auto ty = y.value("oldest_request_time", json());
    if (tx.is_null() != ty.is_null()) return ty.is_null();  // builders with work first
    if (!tx.is_null() && tx != ty) return tx.get<double>() < ty.get<double>();
    return x.value("name", "") < y.value("name", "");
  });
  json names = json::array();
  for (const auto& b : builders) names.push_back(b.at("name"));
  return names;
}

// Highest priority first, then the oldest submission, then the lowest id.
json next_build_oldest(const json& args) {
  const json* best = nullptr;
  auto key = [](const json& r) {
    return std::make_tuple(-r.value("priority", 0), r.value("submitted_at", 0.0),
                           r.value("buildrequestid", 0));
  };
  for (const auto& r : args.at("requests")) {
    if (!best || key(r) < key(*best)) best = &r;
  }
  return best ? best->at("buildrequestid") : json();
}

// Buildbot picks an available worker at random, spreading load.
json next_worker_random(const json& args) {
  const json& workers = args.at("workers");
  if (workers.empty()) return json();
  static std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<size_t> pick(0, workers.size() - 1);
  return workers[pick(rng)];
}

json can_start_build_always(const json&) { return true; }

json file_is_important_always(const json&) { return true; }

// Buildbot's split_file_branches: "trunk/x" is on the default branch,
// "branches/NAME/x" on branch "branches/NAME" (the prefix stays, so that
// base URL + branch is the branch's URL); anything else is not in a branch.
json split_file_branches(const json& args) {
  std::string path = args.at("path").get<std::string>();
  if (path.rfind("trunk/", 0) == 0) return json{{"branch", nullptr}, {"path", path.substr(6)}};
  if (path.rfind("branches/", 0) == 0) {
    auto slash = path.find('/', 9);
    if (slash != std::string::npos && slash > 9) {
      return json{{"branch", path.substr(0, slash)}, {"path", path.substr(slash + 1)}};
    }
  }
  return nullptr;
}

constexpr const char* kNoConfigSchema =
    R"({"type": "object", "properties": {}, "additionalProperties": false})";

#define KILN_BUILTIN_POLICY(var, hook, fn)                                              \
  const kiln_policy_vtable var##_vtable = {sizeof(kiln_policy_vtable), hook, &call_policy<fn>}

KILN_BUILTIN_POLICY(collapse, "collapse_requests", collapse_same_source);
KILN_BUILTIN_POLICY(prioritize, "prioritize_builders", prioritize_oldest_request);
KILN_BUILTIN_POLICY(next_build, "next_build", next_build_oldest);
KILN_BUILTIN_POLICY(next_worker, "next_worker", next_worker_random);
KILN_BUILTIN_POLICY(can_start, "can_start_build", can_start_build_always);
KILN_BUILTIN_POLICY(important, "file_is_important", file_is_important_always);
KILN_BUILTIN_POLICY(split, "split_file", split_file_branches);

kiln_component_desc policy(const char* type_name, const char* summary,
                           const kiln_policy_vtable* vtable) {
  kiln_component_desc d{};
  d.struct_size = sizeof(kiln_component_desc);
  d.kind = KILN_KIND_POLICY;
  d.type_name = type_name;
  d.version = KILN_VERSION;
  d.summary = summary;
  d.config_schema = kNoConfigSchema;
  d.create = &create_stateless;
  d.destroy = &destroy_stateless;
  d.vtable = vtable;
  return d;
}

const kiln_component_desc kComponents[] = {
    policy("collapse-same-source", "collapse requests whose source stamps match but for revision",
           &collapse_vtable),
    policy("oldest-request-first", "builders with the oldest pending request first",
           &prioritize_vtable),
    policy("oldest-build-first", "highest priority, then oldest request", &next_build_vtable),
    policy("random-worker", "any available worker, chosen at random", &next_worker_vtable),
    policy("always-start", "every build may start", &can_start_vtable),
    policy("all-files-important", "every file of a change is important", &important_vtable),
    policy("split-file-branches", "trunk/... and branches/NAME/... layout", &split_vtable),
};
const kiln_component_desc* const kComponentList[] = {
    &kComponents[0], &kComponents[1], &kComponents[2], &kComponents[3],
    &kComponents[4], &kComponents[5], &kComponents[6]};

const kiln_plugin_desc kDescriptor = {
    KILN_PLUGIN_MAGIC,
    sizeof(kiln_plugin_desc),
    KILN_ABI_VERSION,
    "kiln-builtin",
    KILN_VERSION,
    "Buildbot's default policy functions, compiled into the core",
    "MIT",
    sizeof(kComponentList) / sizeof(kComponentList[0]),
    kComponentList,
    nullptr,
};

}  // namespace

const kiln_plugin_desc* builtin_plugin_entry(const kiln_host_api* host, uint32_t, kiln_error*) {
  g_host = host;
  return &kDescriptor;
}

}  // namespace kiln::master
