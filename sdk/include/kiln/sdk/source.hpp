#pragma once
// What every source-checkout step written as a SimpleStep needs besides its
// VCS commands: the build's source stamp for one codebase (branch, revision,
// patch), and Buildbot's way of applying a stamp's patch on the worker
// (Source.applyPatch: the diff is sent as a file, `patch -p<level>` applies
// it, and a marker file tells the next checkout that the tree was patched).
//
//   kiln::sdk::SourceStamp ss = kiln::sdk::build_source_stamp(*this, codebase);
//   ... check out ss.branch at ss.revision into workdir ...
//   if (ss.patch && !kiln::sdk::apply_patch(*this, *ss.patch, workdir, stdio)) return KILN_FAILURE;
//
// Call these from SimpleStep::run() only: they wait for the host.

#include <kiln/sdk/step.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace kiln::sdk {

// A source stamp's patch: Buildbot's (level, body, subdir).
struct Patch {
  int level = 1;
  std::string body;
  std::string subdir;  // where in the checkout it applies; empty for the top
};

struct SourceStamp {
  std::string branch;    // empty: the step's default branch
  std::string revision;  // empty: the branch's latest
  std::string repository;
  std::optional<Patch> patch;
};

namespace detail {

inline std::string text_member(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

inline SourceStamp stamp_from_json(const nlohmann::json& ss) {
  SourceStamp out;
  out.branch = text_member(ss, "branch");
  out.revision = text_member(ss, "revision");
  out.repository = text_member(ss, "repository");
  if (ss.is_object() && ss.contains("patch") && ss["patch"].is_object()) {
    const nlohmann::json& p = ss["patch"];
    Patch patch;
    patch.body = text_member(p, "body");
    patch.subdir = text_member(p, "subdir");
    if (p.contains("level") && p["level"].is_number_integer()) patch.level = p["level"].get<int>();
    if (!patch.body.empty()) out.patch = std::move(patch);
  }
  return out;
}

}  // namespace detail

// The build's source stamp for `codebase` (builds/N -> its request -> its
// buildset). When the data API cannot say (a step run outside a build), the
// build's branch and revision properties stand in, without a patch.
inline SourceStamp build_source_stamp(SimpleStep& step, std::string_view codebase) {
  auto from_properties = [&] {
    SourceStamp out;
    nlohmann::json cb = step.property("codebase");
    if (codebase.empty() || (cb.is_string() && cb.get<std::string>() == codebase)) {
      nlohmann::json props = {{"branch", step.property("branch")}, {"revision", step.property("revision")}};
      out = detail::stamp_from_json(props);
    }
    return out;
  };
  auto buildid = step.info().find("buildid");
  if (buildid == step.info().end() || !buildid->is_number_integer()) return from_properties();
  try {
    const nlohmann::json build = step.data_get("builds/" + std::to_string(buildid->get<int64_t>()));
    if (!build.contains("buildrequestid") || !build["buildrequestid"].is_number_integer()) return from_properties();
    const nlohmann::json request =
        step.data_get("buildrequests/" + std::to_string(build["buildrequestid"].get<int64_t>()));
    if (!request.contains("buildsetid") || !request["buildsetid"].is_number_integer()) return from_properties();
    const nlohmann::json buildset =
        step.data_get("buildsets/" + std::to_string(request["buildsetid"].get<int64_t>()));
    for (const auto& ss : buildset.value("sourcestamps", nlohmann::json::array())) {
      if (ss.is_object() && ss.value("codebase", "") == codebase) return detail::stamp_from_json(ss);
    }
    return {};
  } catch (const Error& e) {
    if (e.code() == KILN_ERR_CANCELLED) throw;
    step.log(KILN_LOG_WARN, std::string("cannot read the build's source stamp (") + e.what() +
                                "); using its properties");
    return from_properties();
  }
}

// The marker apply_patch leaves in the checkout (Buildbot's .buildbot-patched).
inline constexpr const char* kPatchedMarker = ".kiln-patched";

// True when a patch was applied in `workdir` since the marker was last
// removed: the step then cleans the tree before it updates it.
inline bool was_patched(SimpleStep& step, const std::string& workdir) {
  return step.command("stat", {{"file", workdir + "/" + kPatchedMarker}}).ok();
}

// Sends the patch to `workdir` on the worker and applies it there with
// `patch -p<level> --remove-empty-files --force --forward` (in the patch's
// subdir). The patch program's output goes to `log`. Returns whether it
// applied; on false the reason is in the log.
inline bool apply_patch(SimpleStep& step, const Patch& patch, const std::string& workdir, const StepLog& log) {
  namespace fs = std::filesystem;
  static std::atomic<unsigned> counter{0};
  const nlohmann::json& info = step.info();
  const fs::path master_dir = detail::text_member(info, "master_dir").empty()
                                  ? fs::path(".")
                                  : fs::path(detail::text_member(info, "master_dir"));
  // Unique per build, step and call: two builds may patch at once.
  const std::string stem = std::to_string(info.value("buildid", int64_t{0})) + "-" +
                           std::to_string(info.value("step_number", int64_t{0})) + "-" +
                           std::to_string(counter.fetch_add(1));
  const fs::path dir = master_dir / "source-patches";
  const fs::path diff = dir / (stem + ".diff");
  const fs::path marker = dir / (stem + ".patched");
  auto say = [&](const std::string& text) { log.write(text, KILN_STREAM_HEADER); };
  std::error_code ec;
  fs::create_directories(dir, ec);
  {
    // The step's own thread: writing a large diff here holds up no one.
    std::ofstream(diff, std::ios::binary | std::ios::trunc) << patch.body;
    std::ofstream(marker, std::ios::binary | std::ios::trunc) << "patched\n";
  }
  auto cleanup = [&] {
    fs::remove(diff, ec);
    fs::remove(marker, ec);
  };
  if (!fs::exists(diff) || !fs::exists(marker)) {
    cleanup();
    say("cannot write the patch under " + dir.string() + "\n");
    return false;
  }
  const std::string diff_name = ".kiln-diff";
  CommandOutcome sent = step.command(
      "downloadFile", {{"mastersrc", diff.string()}, {"workerdest", diff_name}, {"workdir", workdir}});
  CommandOutcome marked = sent.ok() ? step.command("downloadFile", {{"mastersrc", marker.string()},
                                                                   {"workerdest", kPatchedMarker},
                                                                   {"workdir", workdir}})
                                    : sent;
  cleanup();
  if (!sent.ok() || !marked.ok()) {
    say("cannot send the patch to the worker" + (sent.failure.empty() ? std::string() : ": " + sent.failure) + "\n");
    return false;
  }
  std::string where = workdir;
  std::string diff_path = diff_name;
  if (!patch.subdir.empty() && patch.subdir != ".") {
    where += "/" + patch.subdir;
    // From the subdir, the diff is as many folders up as the subdir is deep.
    std::string up;
    for (const auto& part : fs::path(patch.subdir).lexically_normal()) {
      if (!part.empty() && part != ".") up += "../";
    }
    diff_path = up + diff_name;
  }
  ShellOptions options;
  options.workdir = where;
  options.log = log.name();
  options.log_environ = false;
  CommandOutcome applied = step.shell(nlohmann::json::array({"patch", "-p" + std::to_string(patch.level),
                                                             "--remove-empty-files", "--force", "--forward",
                                                             "-i", diff_path}),
                                      options);
  step.command("rmfile", {{"path", workdir + "/" + diff_name}});
  if (!applied.ok()) {
    say("the patch does not apply\n");
    return false;
  }
  return true;
}

}  // namespace kiln::sdk
