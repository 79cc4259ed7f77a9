#include "worker_info.h"

#include <kiln/worker/command_runner.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <unistd.h>

namespace kiln::kiln_worker {

namespace {

std::string file_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// KEY=value lines, quotes stripped, as os_<key>.
void add_os_release(worker_wire::Value& info) {
  std::ifstream in("/etc/os-release");
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0 || line[0] == '#') continue;
    std::string key = line.substr(0, eq), value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    info["os_" + key] = value;
  }
}

}  // namespace

worker_wire::Value worker_info(const WorkerOptions& options, const std::map<std::string, std::string>& environ) {
  worker_wire::Value info = worker_wire::Value::object();
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(options.basedir) / "info", ec)) {
    if (entry.is_regular_file(ec)) info[entry.path().filename().string()] = file_text(entry.path());
  }
  if (!options.admin.empty()) info["admin"] = options.admin;
  if (!options.description.empty()) info["host"] = options.description;
  if (!info.contains("host")) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    info["host"] = std::string(host);
  }
  if (!info.contains("admin")) info["admin"] = "";
  add_os_release(info);
  worker_wire::Value env = worker_wire::Value::object();
  for (const auto& [key, value] : environ) env[key] = value;
  info["environ"] = std::move(env);
  info["system"] = "posix";
  info["basedir"] = options.basedir;
  info["numcpus"] = std::max(1u, std::thread::hardware_concurrency());
  info["version"] = std::string("kiln-worker ") + kVersion;
  info["worker_commands"] = worker_wire::from_json(worker::command_versions());
  info["max_builds"] = options.max_builds;
  info["delete_leftover_dirs"] = false;
  return info;
}

}  // namespace kiln::kiln_worker
