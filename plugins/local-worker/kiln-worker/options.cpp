#include "options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace kiln::kiln_worker {

namespace {

// Every setting, as a flag (--max-builds) and a config key (max_builds or
// max-builds).
const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = {
      "master", "name",      "password",      "password_file", "basedir",       "max_builds", "admin",
      "host",   "shell",     "keepalive",     "reconnect_min", "reconnect_max", "max_retries", "ca_file"};
  return keys;
}

std::string key_of(std::string text) {
  for (char& c : text) {
    if (c == '-') c = '_';
  }
  return text;
}

bool known(const std::string& key) {
  for (const auto& k : known_keys()) {
    if (k == key) return true;
  }
  return false;
}

std::string trimmed(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r");
  if (first == std::string::npos) return {};
  const auto last = text.find_last_not_of(" \t\r");
  return text.substr(first, last - first + 1);
}

// `key = value`; `#` starts a comment line; a value may be "quoted".
std::optional<std::string> read_config(const std::string& path, std::map<std::string, std::string>& into) {
  std::ifstream in(path);
  if (!in) return "cannot read config file " + path;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string text = trimmed(line);
    if (text.empty() || text[0] == '#') continue;
    const auto eq = text.find('=');
    const std::string where = path + " line " + std::to_string(number);
    if (eq == std::string::npos) return where + ": expected `key = value`";
    const std::string key = key_of(trimmed(text.substr(0, eq)));
    std::string value = trimmed(text.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (!known(key)) return where + ": unknown key '" + key + "'";
    into[key] = value;
  }
  return std::nullopt;
}

std::optional<std::string> number(const std::map<std::string, std::string>& values, const std::string& key,
                                  double min, double& out) {
  auto it = values.find(key);
  if (it == values.end()) return std::nullopt;
  try {
    size_t used = 0;
    const double v = std::stod(it->second, &used);
    if (used != it->second.size() || v < min) throw std::invalid_argument(key);
    out = v;
    return std::nullopt;
  } catch (const std::exception&) {
    return key + ": '" + it->second + "' is not a number of at least " + std::to_string(static_cast<int>(min));
  }
}

std::optional<std::string> integer(const std::map<std::string, std::string>& values, const std::string& key,
                                   int min, int& out) {
  double v = out;
  if (auto error = number(values, key, min, v)) return error;
  if (v != static_cast<double>(static_cast<int>(v))) return key + ": '" + values.at(key) + "' is not a whole number";
  out = static_cast<int>(v);
  return std::nullopt;
}

}  // namespace

std::string usage() {
  return "usage: kiln-worker --master HOST:PORT --name NAME (--password PW | --password-file FILE)\n"
         "                   [--basedir DIR] [--max-builds N] [--config FILE] [options]\n"
         "\n"
         "Connects to a Kiln master's buildbot-worker port (Buildbot's msgpack WebSocket\n"
         "protocol) as worker NAME and runs the master's build commands in DIR.\n"
         "\n"
         "  --config FILE        read `key = value` lines (keys as the flags, - or _);\n"
         "                       flags given on the command line win\n"
         "  --master HOST:PORT   the master's buildbot-worker listen address; wss://HOST:PORT\n"
         "                       for a master that serves TLS (ws://HOST:PORT: plain)\n"
         "  --ca-file FILE       wss://: PEM CA certificates the master's certificate must\n"
         "                       chain to (default: the system's); its name must match HOST\n"
         "  --name NAME          the worker's name in the master's config\n"
         "  --password PW        its password (also: $KILN_WORKER_PASSWORD)\n"
         "  --password-file FILE read the password from FILE (first line)\n"
         "  --basedir DIR        where builds run (default: the current directory)\n"
         "  --max-builds N       builds at once this worker offers (reported to the master; 1)\n"
         "  --admin TEXT         who runs this worker (default: DIR/info/admin)\n"
         "  --host TEXT          a description of this machine (default: DIR/info/host, else its name)\n"
         "  --shell PATH         runs string commands as PATH -c COMMAND (/bin/sh)\n"
         "  --keepalive SECONDS  WebSocket ping interval; a master silent for twice this\n"
         "                       long is dropped and reconnected (300; 0: off)\n"
         "  --reconnect-min S    first reconnect delay (1); doubles per failure, with jitter\n"
         "  --reconnect-max S    longest reconnect delay (60)\n"
         "  --max-retries N      give up after N failed connects in a row (0: never)\n"
         "  --help, --version\n";
}

ParsedOptions parse_options(const std::vector<std::string>& args) {
  std::map<std::string, std::string> flags;
  std::string config_path;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") return {std::nullopt, usage(), 0};
    if (arg == "--version") return {std::nullopt, "kiln-worker 0.1.0\n", 0};
    if (arg.rfind("--", 0) != 0) return {std::nullopt, "unexpected argument '" + arg + "'\n" + usage(), 2};
    std::string key = arg.substr(2), value;
    if (const auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return {std::nullopt, "flag " + arg + " needs a value\n", 2};
    }
    key = key_of(key);
    if (key == "config") {
      config_path = value;
    } else if (known(key)) {
      flags[key] = value;
    } else {
      return {std::nullopt, "unknown flag --" + key + "\n" + usage(), 2};
    }
  }

  std::map<std::string, std::string> values;
  if (!config_path.empty()) {
    if (auto error = read_config(config_path, values)) return {std::nullopt, *error + "\n", 2};
  }
  for (auto& [key, value] : flags) values[key] = value;
  auto fail = [](const std::string& text) { return ParsedOptions{std::nullopt, text + "\n", 2}; };

  WorkerOptions o;
  const std::string master = values.count("master") ? values["master"] : "";
  if (master.empty()) return fail("no master given (--master HOST:PORT)");
  std::string address = master;
  if (address.rfind("wss://", 0) == 0) {
    o.tls = true;
    address = address.substr(6);
  } else if (address.rfind("ws://", 0) == 0) {
    address = address.substr(5);
  }
  if (!address.empty() && address.back() == '/') address.pop_back();
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return fail("master '" + master + "' is not HOST:PORT, ws://HOST:PORT or wss://HOST:PORT");
  }
  o.master_host = address.substr(0, colon);
  o.master_port = address.substr(colon + 1);
  if (o.master_host.size() >= 2 && o.master_host.front() == '[' && o.master_host.back() == ']') {
    o.master_host = o.master_host.substr(1, o.master_host.size() - 2);
  }
  if (o.master_port.find_first_not_of("0123456789") != std::string::npos || std::stoul(o.master_port) > 65535) {
    return fail("master '" + master + "' has no valid port");
  }
  o.name = values["name"];
  if (o.name.empty()) return fail("no worker name given (--name NAME)");
  if (o.name.find(':') != std::string::npos) return fail("worker name '" + o.name + "' may not contain ':'");

  if (values.count("password")) {
    o.password = values["password"];
  } else if (values.count("password_file")) {
    std::ifstream in(values["password_file"]);
    if (!in) return fail("cannot read password file " + values["password_file"]);
    std::getline(in, o.password);
    if (!o.password.empty() && o.password.back() == '\r') o.password.pop_back();
  } else if (const char* env = std::getenv("KILN_WORKER_PASSWORD")) {
    o.password = env;
  } else {
    return fail("no password given (--password, --password-file or $KILN_WORKER_PASSWORD)");
  }

  std::error_code ec;
  std::filesystem::path basedir = values.count("basedir") ? values["basedir"] : ".";
  basedir = std::filesystem::absolute(basedir, ec).lexically_normal();
  std::string base = basedir.string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  o.basedir = base;

  if (auto e = integer(values, "max_builds", 1, o.max_builds)) return fail(*e);
  if (auto e = integer(values, "max_retries", 0, o.max_retries)) return fail(*e);
  if (auto e = number(values, "keepalive", 0, o.keepalive_seconds)) return fail(*e);
  if (auto e = number(values, "reconnect_min", 0, o.reconnect_min_seconds)) return fail(*e);
  if (auto e = number(values, "reconnect_max", 0, o.reconnect_max_seconds)) return fail(*e);
  if (o.reconnect_max_seconds < o.reconnect_min_seconds) return fail("reconnect_max is below reconnect_min");
  o.ca_file = values["ca_file"];
  if (!o.ca_file.empty() && !o.tls) return fail("ca_file is for a wss:// master");
  if (!o.ca_file.empty()) {
    o.ca_file = std::filesystem::absolute(o.ca_file, ec).lexically_normal().string();
    if (!std::filesystem::is_regular_file(o.ca_file, ec)) return fail("cannot read CA file " + o.ca_file);
  }
  o.admin = values["admin"];
  o.description = values["host"];
  if (values.count("shell") && !values["shell"].empty()) o.shell = values["shell"];
  return {o, "", 0};
}

}  // namespace kiln::kiln_worker
