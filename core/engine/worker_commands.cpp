#include "engine/worker_commands.h"

#include <filesystem>

namespace kiln::engine {

namespace {

using nlohmann::json;

std::string str_arg(const json& args, const char* key, const std::string& fallback = "") {
  if (args.contains(key) && args[key].is_string()) return args[key].get<std::string>();
  return fallback;
}

json common_or(const json& common, const char* key, json fallback) {
  if (common.contains(key) && !common[key].is_null()) return common[key];
  return fallback;
}

json merged_env(const CommandPlace& place, const json& args) {
  json env = place.builder_env.is_object() ? place.builder_env : json::object();
  json step_env = common_or(place.step_common, "env", json::object());
  if (step_env.is_object()) env.update(step_env);
  if (args.contains("env") && args["env"].is_object()) env.update(args["env"]);
  return env;
}

// Paths a step names must stay inside the build's folder: a worker-side
// path escaping it is refused (an absolute one is the author's explicit
// choice and allowed, as in Buildbot).
bool escapes(const std::string& relative) {
  std::filesystem::path p(relative);
  if (p.is_absolute()) return false;
  int depth = 0;
  for (const auto& part : p.lexically_normal()) {
    if (part == "..") {
      if (--depth < 0) return true;
    } else if (part != "." && !part.empty()) {
      ++depth;
    }
  }
  return false;
}

std::string master_side(const CommandPlace& place, const std::string& path) {
  return join_path(place.master_dir, path);
}

}  // namespace

std::string join_path(const std::string& a, const std::string& b) {
  if (b.empty()) return a;
  if (!b.empty() && b[0] == '/') return b;
  if (a.empty()) return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::variant<WireCommand, std::string> to_wire_command(const std::string& name,
                                                       const json& step_args,
                                                       const CommandPlace& place) {
  const json args = step_args.is_object() ? step_args : json::object();
  const std::string builder_base = join_path(place.worker_basedir, place.builder_dir);
  const std::string default_workdir =
      common_or(place.step_common, "workdir", "build").get<std::string>();
  const std::string workdir_rel = str_arg(args, "workdir", default_workdir);
  for (const char* key : {"workdir", "workersrc", "workerdest", "dir", "path", "file",
                          "fromdir", "todir"}) {
    if (args.contains(key) && args[key].is_string() && escapes(args[key].get<std::string>())) {
      return "argument '" + std::string(key) + "' (" + args[key].get<std::string>() +
             ") leads outside the build's folder";
    }
  }
  if (escapes(workdir_rel)) return "workdir '" + workdir_rel + "' leads outside the build's folder";
  const std::string workdir = join_path(builder_base, workdir_rel);

  WireCommand wire;
  if (name == "shell") {
    if (!args.contains("command")) return "shell needs a 'command'";
    wire.name = "shell";
    wire.args = {
        {"command", args["command"]},
        {"workdir", workdir},
        {"env", merged_env(place, args)},
        {"want_stdout", args.value("want_stdout", true)},
        {"want_stderr", args.value("want_stderr", true)},
        {"logfiles", args.value("logfiles", json::object())},
        {"timeout", args.contains("timeout") ? args["timeout"]
                                             : common_or(place.step_common, "timeout", 1200)},
        {"maxTime", args.contains("maxTime") ? args["maxTime"]
                                             : common_or(place.step_common, "max_time", nullptr)},
        {"sigtermTime", args.value("sigtermTime", json())},
        {"usePTY", false},
        {"logEnviron", args.value("logEnviron", true)},
        {"initial_stdin", args.value("initial_stdin", json())},
        {"interruptSignal",
         args.contains("interruptSignal")
             ? args["interruptSignal"]
             : common_or(place.step_common, "interrupt_signal", "KILL")},
    };
    return wire;
  }
  auto dirs = [&](const json& value) {
    json out = json::array();
    if (value.is_string()) out.push_back(join_path(builder_base, value.get<std::string>()));
    if (value.is_array()) {
      for (const auto& d : value) {
        if (d.is_string()) out.push_back(join_path(builder_base, d.get<std::string>()));
      }
    }
    return out;
  };
  if (name == "mkdir" || name == "rmdir") {
    if (!args.contains("dir") && !args.contains("paths")) return name + " needs 'dir'";
    wire.name = name;
    wire.args = {{"paths", args.contains("dir") ? dirs(args["dir"]) : dirs(args["paths"])}};
    return wire;
  }
  if (name == "cpdir") {
    wire.name = name;
    wire.args = {{"from_path", join_path(builder_base, str_arg(args, "fromdir"))},
                 {"to_path", join_path(builder_base, str_arg(args, "todir"))}};
    return wire;
  }
  if (name == "stat") {
    wire.name = name;
    wire.args = {{"path", join_path(join_path(builder_base, str_arg(args, "workdir")),
                                    str_arg(args, "file"))}};
    return wire;
  }
  if (name == "glob" || name == "rmfile") {
    wire.name = name;
    wire.args = {{"path", join_path(builder_base, str_arg(args, "path"))}};
    return wire;
  }
  if (name == "listdir") {
    wire.name = name;
    wire.args = {{"path", join_path(builder_base, str_arg(args, "dir", str_arg(args, "path")))}};
    return wire;
  }
  if (name == "uploadFile" || name == "upload_file" || name == "uploadDirectory" ||
      name == "upload_directory") {
    const bool directory = name == "uploadDirectory" || name == "upload_directory";
    const std::string src = str_arg(args, "workersrc");
    const std::string dest = str_arg(args, "masterdest");
    if (src.empty()) return name + " needs 'workersrc'";
    if (dest.empty()) return name + " needs 'masterdest'";
    wire.name = directory ? "upload_directory" : "upload_file";
    wire.transfer = directory ? WireCommand::Transfer::kUploadDirectory
                              : WireCommand::Transfer::kUploadFile;
    wire.master_path = master_side(place, dest);
    wire.args = {{"path", join_path(workdir, src)},
                 {"blocksize", args.value("blocksize", directory ? 16384 : 262144)},
                 {"maxsize", args.value("maxsize", json())}};
    if (directory) {
      wire.args["compress"] = args.value("compress", json());
    } else {
      wire.args["keepstamp"] = args.value("keepstamp", false);
      if (auto mode = args.find("mode"); mode != args.end() && mode->is_number_integer()) {
        wire.master_mode = mode->get<int>();
      }
    }
    return wire;
  }
  if (name == "downloadFile" || name == "download_file") {
    const std::string src = str_arg(args, "mastersrc");
    const std::string dest = str_arg(args, "workerdest");
    if (src.empty()) return name + " needs 'mastersrc'";
    if (dest.empty()) return name + " needs 'workerdest'";
    wire.name = "download_file";
    wire.transfer = WireCommand::Transfer::kDownloadFile;
    wire.master_path = master_side(place, src);
    wire.args = {{"path", join_path(workdir, dest)},
                 {"blocksize", args.value("blocksize", 16384)},
                 {"maxsize", args.value("maxsize", json())},
                 {"mode", args.value("mode", json())}};
    return wire;
  }
  return "unknown worker command '" + name + "'";
}

}  // namespace kiln::engine
