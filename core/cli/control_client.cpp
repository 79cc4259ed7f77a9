#include "cli/control_client.h"

#include "engine/data_api.h"
#include "master/control_server.h"
#include "master/user_requests.h"
#include "store/store.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <sys/un.h>

namespace kiln::cli {

namespace fs = std::filesystem;
using boost::asio::local::stream_protocol;
using nlohmann::json;

// ---- the socket ----------------------------------------------------------------

json control_request(const fs::path& master_dir, const json& request,
                     std::chrono::milliseconds timeout) {
  const std::string dir = master_dir.string();
  const std::string path = master::ControlServer::socket_path_of(master_dir).string();
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw ControlError("control socket path " + path + " is too long for a Unix socket");
  }
  boost::asio::io_context io;
  stream_protocol::socket socket(io);
  boost::system::error_code ec;
  socket.connect(stream_protocol::endpoint(path), ec);
  if (ec == boost::system::errc::no_such_file_or_directory ||
      ec == boost::asio::error::connection_refused) {
    throw ControlError("no master is running in " + dir +
                       " (no control socket); start it with `kiln start " + dir + "`");
  }
  if (ec) throw ControlError("cannot connect to " + path + ": " + ec.message());

  const std::string out = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  boost::asio::streambuf in;
  boost::system::error_code result;
  size_t line_size = 0;
  bool timed_out = false;
  boost::asio::steady_timer timer(io, timeout);
  timer.async_wait([&](const boost::system::error_code& e) {
    if (e) return;
    timed_out = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  boost::asio::async_write(
      socket, boost::asio::buffer(out), [&](const boost::system::error_code& e, size_t) {
        if (e) {
          result = e;
          timer.cancel();
          return;
        }
        boost::asio::async_read_until(socket, in, '\n',
                                      [&](const boost::system::error_code& e2, size_t n) {
                                        result = e2;
                                        line_size = n;
                                        timer.cancel();
                                      });
      });
  io.run();

  if (timed_out) {
    const auto ms = timeout.count();
    throw ControlError(
        "the master in " + dir + " did not answer within " +
        (ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms"));
  }
  if (result == boost::asio::error::eof) {
    throw ControlError("the master in " + dir + " closed the connection without answering");
  }
  if (result) throw ControlError("talking to the master in " + dir + ": " + result.message());
  std::string line(boost::asio::buffers_begin(in.data()),
                   boost::asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(line_size));
  auto response = json::parse(line, nullptr, false);
  if (response.is_discarded()) {
    throw ControlError("the master in " + dir + " sent a response that is not JSON");
  }
  return response;
}

// ---- arguments -------------------------------------------------------------------

namespace {

// Options in the order given ("--name value" or "--name=value"), and the
// positional arguments; "--" ends the options.
struct ParsedArgs {
  std::vector<std::pair<std::string, std::string>> options;
  std::vector<std::string> positional;

  std::optional<std::string> last(std::string_view name) const {
    std::optional<std::string> value;
    for (const auto& [n, v] : options) {
      if (n == name) value = v;
    }
    return value;
  }
  std::vector<std::string> all(std::string_view name) const {
    std::vector<std::string> values;
    for (const auto& [n, v] : options) {
      if (n == name) values.push_back(v);
    }
    return values;
  }
};

// `flags` are options without a value (--wait); each known option takes one.
ParsedArgs parse_args(const Args& args, const std::set<std::string>& known,
                      const std::set<std::string>& flags = {}) {
  ParsedArgs parsed;
  bool options_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_done || a.size() < 3 || !a.starts_with("--")) {
      if (a == "--") {
        options_done = true;
        continue;
      }
      if (!options_done && a.size() > 1 && a[0] == '-' && a != "-") {
        throw UsageError("unknown option " + a);
      }
      parsed.positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (flags.count(name)) {
      if (value) throw UsageError("--" + name + " takes no value");
      parsed.options.emplace_back(std::move(name), "");
      continue;
    }
    if (!known.count(name)) throw UsageError("unknown option --" + name);
    if (!value) {
      if (i + 1 >= args.size()) throw UsageError("--" + name + " needs a value");
      value = args[++i];
    }
    parsed.options.emplace_back(std::move(name), std::move(*value));
  }
  return parsed;
}

int64_t id_argument(const std::string& text, const char* what) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value <= 0) {
    throw UsageError(std::string(what) + " must be a positive integer, not '" + text + "'");
  }
  return value;
}

void require_positional(const ParsedArgs& parsed, size_t n, const char* names) {
  if (parsed.positional.size() != n) {
    throw UsageError(std::string("expected ") + names + ", got " +
                     std::to_string(parsed.positional.size()) + " argument(s)");
  }
}

// "K=V" -> (K, V), as --property takes it.
std::pair<std::string, std::string> key_value(const std::string& text, const char* option) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw UsageError(std::string(option) + " takes NAME=VALUE, not '" + text + "'");
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::string percent_encode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

ControlCall control_call(fs::path dir, std::string path, std::string action, json args) {
  return {std::move(dir), json{{"op", "control"},
                               {"path", std::move(path)},
                               {"action", std::move(action)},
                               {"args", std::move(args)}}};
}

}  // namespace

ControlCall data_call(const Args& args) {
  auto parsed = parse_args(args, {"field", "limit", "offset", "order", "filter", "property"});
  require_positional(parsed, 2, "DIR PATH");
  // The REST query syntax, so `kiln data` and the web API read flags alike.
  std::string query;
  for (const auto& [name, value] : parsed.options) {
    std::string item;
    if (name == "filter") {
      auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw UsageError("--filter takes FIELD=VALUE or FIELD__OP=VALUE, not '" + value + "'");
      }
      item = percent_encode(value.substr(0, eq)) + "=" + percent_encode(value.substr(eq + 1));
    } else {
      item = name + "=" + percent_encode(value);
    }
    query += (query.empty() ? "" : "&") + item;
  }
  json q;
  try {
    q = engine::DataApi::query_from_url(query);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return {parsed.positional[0],
          json{{"op", "data_get"}, {"path", parsed.positional[1]}, {"query", std::move(q)}}};
}

ControlCall force_call(const Args& args) {
  auto parsed =
      parse_args(args, {"scheduler", "reason", "branch", "revision", "property", "owner"});
  require_positional(parsed, 2, "DIR BUILDER");
  json force_args{{"builderNames", json::array({parsed.positional[1]})},
                  {"properties", json::object()}};
  // Left out when not given, so the scheduler's own defaults apply.
  for (const char* key : {"reason", "branch", "revision", "owner"}) {
    if (auto v = parsed.last(key)) force_args[key] = *v;
  }
  for (const auto& p : parsed.all("property")) {
    auto [name, value] = key_value(p, "--property");
    force_args["properties"][name] = value;
  }
  return control_call(parsed.positional[0],
                      "forceschedulers/" + parsed.last("scheduler").value_or(""), "force",
                      std::move(force_args));
}

namespace {

std::string read_text_file(const std::string& path, const char* option) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
    return text;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(std::string(option) + ": cannot read " + path);
  text.assign(std::istreambuf_iterator<char>(in), {});
  return text;
}

// Buildbot writes --property NAME:VALUE; Kiln also took NAME=VALUE. The
// first of ':' and '=' separates, so values may hold either.
std::pair<std::string, std::string> property_argument(const std::string& text) {
  const auto sep = text.find_first_of(":=");
  if (sep == std::string::npos || sep == 0) {
    throw UsageError("--property takes NAME:VALUE (or NAME=VALUE), not '" + text + "'");
  }
  return {text.substr(0, sep), text.substr(sep + 1)};
}

}  // namespace

SendchangeCall sendchange_args(const Args& args) {
  auto parsed = parse_args(
      args, {"who", "branch", "revision", "revision_file", "repository", "project", "category",
             "codebase", "comments", "logfile", "property", "when", "vc", "revlink", "master",
             "auth"});
  SendchangeCall call;
  call.master = parsed.last("master").value_or("");
  const bool http = parsed.last("master").has_value();
  if (http) {
    const auto colon = call.master.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == call.master.size()) {
      throw UsageError("--master takes HOST:PORT, not '" + call.master + "'");
    }
    call.auth = parsed.last("auth").value_or("change:changepw");
    if (call.auth.find(':') == std::string::npos) {
      throw UsageError("--auth takes USER:PASS");
    }
  } else {
    if (parsed.last("auth")) throw UsageError("--auth goes with --master HOST:PORT");
    if (parsed.positional.empty()) {
      throw UsageError("expected DIR [FILES...], or --master HOST:PORT [FILES...]");
    }
    call.control.master_dir = parsed.positional[0];
  }
  json change{{"files", json::array()}, {"properties", json::object()}, {"comments", ""}};
  if (auto who = parsed.last("who")) {
    change["author"] = *who;
  } else if (const char* user = std::getenv("USER"); user != nullptr && *user) {
    change["author"] = user;
  } else {
    throw UsageError("--who is needed (no USER in the environment)");
  }
  for (const char* key : {"branch", "revision", "repository", "project", "category", "codebase",
                          "revlink"}) {
    if (auto v = parsed.last(key)) change[key] = *v;
  }
  if (auto vc = parsed.last("vc")) change["src"] = *vc;
  if (auto file = parsed.last("revision_file")) {
    if (parsed.last("revision")) throw UsageError("give --revision or --revision_file, not both");
    change["revision"] = read_text_file(*file, "--revision_file");
  }
  auto comments = parsed.last("comments");
  auto logfile = parsed.last("logfile");
  if (comments && logfile) throw UsageError("give --comments or --logfile, not both");
  if (comments) change["comments"] = *comments;
  if (logfile) change["comments"] = read_text_file(*logfile, "--logfile");
  for (const auto& p : parsed.all("property")) {
    auto [name, value] = property_argument(p);
    change["properties"][name] = value;
  }
  if (auto when = parsed.last("when")) {
    char* end = nullptr;
    double seconds = std::strtod(when->c_str(), &end);
    // Beyond 2^53 s (millions of millennia) a timestamp is a typo, and past
    // 2^63 the conversion below would be undefined.
    if (when->empty() || *end != '\0' || !std::isfinite(seconds) || seconds < 0 ||
        seconds > 9007199254740992.0) {
      throw UsageError("--when takes Unix seconds, not '" + *when + "'");
    }
    change["when_timestamp"] = static_cast<int64_t>(seconds);
  }
  for (size_t i = http ? 0 : 1; i < parsed.positional.size(); ++i) {
    change["files"].push_back(parsed.positional[i]);
  }
  call.control.request = json{{"op", "change_add"}, {"change", std::move(change)}};
  return call;
}

ControlCall sendchange_call(const Args& args) {
  SendchangeCall call = sendchange_args(args);
  if (!call.master.empty()) throw UsageError("--master sends over HTTP, not the control socket");
  return std::move(call.control);
}

TryCall try_args(const Args& args) {
  auto parsed = parse_args(args,
                           {"master", "user", "username", "password", "passwd", "builder", "branch",
                            "baserev", "repository", "project", "codebase", "patchlevel", "diff",
                            "vc", "property", "comment", "who"},
                           {"wait", "dryrun"});
  if (!parsed.positional.empty()) {
    throw UsageError("unexpected argument '" + parsed.positional[0] + "' (the patch goes in --diff FILE)");
  }
  TryCall call;
  call.wait = parsed.last("wait").has_value();
  call.dry_run = parsed.last("dryrun").has_value();
  call.master = parsed.last("master").value_or("");
  const auto colon = call.master.rfind(':');
  if (!call.dry_run && (colon == std::string::npos || colon == 0 || colon + 1 == call.master.size())) {
    throw UsageError(call.master.empty() ? "--master HOST:PORT is needed (the try scheduler's port)"
                                         : "--master takes HOST:PORT, not '" + call.master + "'");
  }
  // Buildbot's tryclient spells them --username and --passwd.
  const auto user = parsed.last("user") ? parsed.last("user") : parsed.last("username");
  const auto password = parsed.last("password") ? parsed.last("password") : parsed.last("passwd");
  if (!call.dry_run && (!user || !password)) throw UsageError("--user and --password are needed");
  if (user && user->find(':') != std::string::npos) throw UsageError("a user name cannot contain ':'");
  call.auth = user.value_or("") + ":" + password.value_or("");

  json job{{"builders", json::array()}, {"properties", json::object()}};
  for (const auto& b : parsed.all("builder")) job["builders"].push_back(b);
  for (const char* key : {"branch", "baserev", "repository", "project", "codebase", "comment"}) {
    if (auto v = parsed.last(key)) job[key] = *v;
  }
  if (auto who = parsed.last("who")) {
    job["who"] = *who;
  } else if (const char* env_user = std::getenv("USER"); env_user != nullptr && *env_user) {
    job["who"] = env_user;
  }
  for (const auto& p : parsed.all("property")) {
    auto [name, value] = key_value(p, "--property");
    job["properties"][name] = value;
  }
  json patch = json::object();
  if (auto level = parsed.last("patchlevel")) {
    int value = -1;
    auto [end, ec] = std::from_chars(level->data(), level->data() + level->size(), value);
    if (level->empty() || ec != std::errc() || end != level->data() + level->size() || value < 0 ||
        value > 100) {
      throw UsageError("--patchlevel takes a number from 0 to 100, not '" + *level + "'");
    }
    patch["level"] = value;
    call.patchlevel_given = true;
  }
  call.vc = parsed.last("vc").value_or("");
  if (auto diff = parsed.last("diff")) {
    patch["body"] = read_text_file(*diff, "--diff");
  } else if (call.vc.empty()) {
    throw UsageError("give the patch with --diff FILE (or - for stdin), or --vc git to make it from this tree");
  } else if (call.vc != "git") {
    throw UsageError("--vc " + call.vc + ": only git trees can make their own patch; give --diff FILE");
  }
  job["patch"] = std::move(patch);
  call.job = std::move(job);
  return call;
}

ControlCall user_call(const Args& args) {
  auto parsed = parse_args(args, {"identifier", "id", "set-identifier", "info", "username",
                                  "password"});
  if (parsed.positional.size() < 2) {
    throw UsageError("expected DIR ACTION (add, update, remove or show)");
  }
  const std::string action = parsed.positional[1];
  std::vector<std::string> rest(parsed.positional.begin() + 2, parsed.positional.end());
  json request{{"op", "user"}, {"action", action}};
  auto allow = [&](std::initializer_list<const char*> options) {
    for (const auto& [name, value] : parsed.options) {
      if (std::none_of(options.begin(), options.end(),
                       [&](const char* o) { return name == o; })) {
        throw UsageError("--" + name + " does not apply to `user " + action + "`");
      }
    }
  };
  // --id / --identifier / one positional name the user to act on.
  auto select = [&](bool required) {
    auto id = parsed.last("id");
    auto identifier = parsed.last("identifier");
    if (rest.size() > 1) throw UsageError("name one user, not " + std::to_string(rest.size()));
    if (!rest.empty()) {
      if (identifier) throw UsageError("give the user as an argument or --identifier, not both");
      identifier = rest[0];
    }
    if (id && identifier) throw UsageError("give --id or --identifier, not both");
    if (id) request["uid"] = id_argument(*id, "--id");
    if (identifier) request["identifier"] = *identifier;
    if (required && !id && !identifier) throw UsageError("name the user with --id N or --identifier ID");
  };
  json info = json::object();
  std::string first_value;
  for (const auto& text : parsed.all("info")) {
    const auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError("--info takes TYPE=VALUE (e.g. git='Name <email>'), not '" + text + "'");
    }
    const std::string type = text.substr(0, eq);
    const auto& types = master::user_attribute_types();
    if (std::find(types.begin(), types.end(), type) == types.end()) {
      std::string list;
      for (const auto& t : types) list += (list.empty() ? "" : ", ") + t;
      throw UsageError("unknown attribute type '" + type + "' in --info (expected one of " + list +
                       ")");
    }
    info[type] = text.substr(eq + 1);
    if (first_value.empty()) first_value = text.substr(eq + 1);
  }
  auto login = [&] {
    if (auto username = parsed.last("username")) request["username"] = *username;
    if (auto password = parsed.last("password")) {
      std::string plain = *password;
      if (plain == "-") {
        std::getline(std::cin, plain);
        if (!plain.empty() && plain.back() == '\r') plain.pop_back();
      }
      auto hashed = store::hash_password(plain);
      if (!hashed.ok()) throw UsageError("--password: " + hashed.status.message);
      request["password_hash"] = hashed.value;
    }
  };

  if (action == "add") {
    allow({"identifier", "info", "username", "password"});
    if (!rest.empty()) throw UsageError("`user add` takes options only");
    if (info.empty() && !parsed.last("username")) {
      throw UsageError("a new user needs --info TYPE=VALUE or --username");
    }
    for (const auto& [type, value] : info.items()) {
      if (value.get<std::string>().empty()) throw UsageError("--info " + type + "= needs a value");
    }
    if (auto identifier = parsed.last("identifier")) {
      request["identifier"] = *identifier;
    } else {
      request["identifier"] = !first_value.empty() ? first_value : *parsed.last("username");
    }
    request["info"] = std::move(info);
    login();
  } else if (action == "update") {
    allow({"id", "identifier", "set-identifier", "info", "username", "password"});
    select(true);
    if (auto rename = parsed.last("set-identifier")) request["set_identifier"] = *rename;
    if (!info.empty()) request["info"] = std::move(info);
    login();
    if (request.size() <= 3) {
      throw UsageError("nothing to update: give --info, --set-identifier, --username or --password");
    }
  } else if (action == "remove") {
    allow({"id", "identifier"});
    select(true);
  } else if (action == "show") {
    allow({"id", "identifier"});
    if (!parsed.last("id") && !parsed.last("identifier")) {
      if (rest.size() > 1) throw UsageError("show takes at most one name");
      if (!rest.empty()) request["match"] = rest[0];
    } else {
      select(false);
    }
  } else {
    throw UsageError("unknown action '" + action + "' (expected add, update, remove or show)");
  }
  return {parsed.positional[0], std::move(request)};
}

ControlCall stop_build_call(const Args& args) {
  auto parsed = parse_args(args, {"reason"});
  require_positional(parsed, 2, "DIR BUILDID");
  const int64_t id = id_argument(parsed.positional[1], "BUILDID");
  json a = json::object();
  if (auto r = parsed.last("reason")) a["reason"] = *r;
  return control_call(parsed.positional[0], "builds/" + std::to_string(id), "stop", a);
}

ControlCall cancel_call(const Args& args) {
  auto parsed = parse_args(args, {"reason"});
  require_positional(parsed, 2, "DIR BUILDREQUESTID");
  const int64_t id = id_argument(parsed.positional[1], "BUILDREQUESTID");
  json a = json::object();
  if (auto r = parsed.last("reason")) a["reason"] = *r;
  return control_call(parsed.positional[0], "buildrequests/" + std::to_string(id), "cancel", a);
}

ControlCall rebuild_call(const Args& args) {
  auto parsed = parse_args(args, {});
  require_positional(parsed, 2, "DIR BUILDID");
  const int64_t id = id_argument(parsed.positional[1], "BUILDID");
  return control_call(parsed.positional[0], "builds/" + std::to_string(id), "rebuild",
                      json::object());
}

ControlCall status_call(const Args& args) {
  auto parsed = parse_args(args, {});
  require_positional(parsed, 1, "DIR");
  return {parsed.positional[0], json{{"op", "status"}}};
}

ControlCall poll_call(const Args& args) {
  auto parsed = parse_args(args, {});
  if (parsed.positional.empty() || parsed.positional.size() > 2) {
    throw UsageError("expected DIR [CHANGE_SOURCE], got " + std::to_string(parsed.positional.size()) +
                     " argument(s)");
  }
  const std::string name = parsed.positional.size() == 2 ? parsed.positional[1] : "";
  return control_call(parsed.positional[0], "changesources/" + name, "poll", json::object());
}

ControlCall reconfig_call(const Args& args) {
  auto parsed = parse_args(args, {});
  require_positional(parsed, 1, "DIR");
  return {parsed.positional[0], json{{"op", "reconfig"}}};
}

// ---- output --------------------------------------------------------------------------

std::string result_word(const json& results) {
  if (!results.is_number_integer()) return "-";
  static const char* kWords[] = {"success",   "warnings", "failure",  "skipped",
                                 "exception", "retry",    "cancelled"};
  const int64_t r = results.get<int64_t>();
  if (r < 0 || r >= static_cast<int64_t>(std::size(kWords))) return "result " + std::to_string(r);
  return kWords[r];
}

namespace {

std::string duration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  const int64_t d = seconds / 86400, h = seconds % 86400 / 3600, m = seconds % 3600 / 60,
                s = seconds % 60;
  if (d > 0) return std::to_string(d) + "d " + std::to_string(h) + "h";
  if (h > 0) return std::to_string(h) + "h " + std::to_string(m) + "m";
  if (m > 0) return std::to_string(m) + "m " + std::to_string(s) + "s";
  return std::to_string(s) + "s";
}

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return v.dump();
}

// Left-aligned columns two spaces apart, no trailing blanks.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string format_table(const std::vector<std::vector<std::string>>& rows) { return table(rows); }

std::string format_status(const json& status, int64_t now) {
  std::vector<std::vector<std::string>> builders{{"BUILDER", "PENDING", "RUNNING", "LAST"}};
  for (const auto& b : status.value("builders", json::array())) {
    std::string running;
    for (const auto& r : b.value("running", json::array())) {
      std::string cell = "#" + text_of(r.value("number", json()));
      if (auto w = text_of(r.value("worker", json())); !w.empty()) cell += " on " + w;
      if (auto s = text_of(r.value("step", json())); !s.empty()) cell += ", " + s;
      if (r.value("started_at", json()).is_number()) {
        cell += ", " + duration(now - r["started_at"].get<int64_t>());
      }
      running += (running.empty() ? "" : "; ") + cell;
    }
    std::string last = "-";
    if (const auto l = b.value("last", json()); l.is_object()) {
      last =
          "#" + text_of(l.value("number", json())) + " " + result_word(l.value("results", json()));
      if (l.value("complete_at", json()).is_number()) {
        last += ", " + duration(now - l["complete_at"].get<int64_t>()) + " ago";
      }
    }
    std::string pending = text_of(b.value("pending", json(0)));
    if (const auto lock = b.value("waiting_for_lock", json()); lock.is_string()) {
      pending += " (waiting for lock '" + lock.get<std::string>() + "')";
    }
    builders.push_back({text_of(b.value("name", json())), pending, running.empty() ? "-" : running, last});
  }
  std::vector<std::vector<std::string>> workers{{"WORKER", "CONNECTED", "BUILDS"}};
  for (const auto& w : status.value("workers", json::array())) {
    std::string builds = text_of(w.value("running", json(0)));
    if (const auto max = w.value("max_builds", json()); max.is_number()) {
      builds += "/" + max.dump();
    }
    std::string connected = w.value("connected", false) ? "yes" : "no";
    if (w.value("latent", false)) {
      if (w.value("insubstantiating", false)) {
        connected += " (latent, stopping)";
      } else if (w.value("substantiating", 0) > 0 && !w.value("connected", false)) {
        connected += " (latent, starting)";
      } else {
        connected += " (latent)";
      }
    }
    if (const auto quarantine = w.value("quarantine", json()); quarantine.is_object()) {
      for (const auto& [builder, seconds] : quarantine.items()) {
        connected += " (quarantined for " + builder + ": " + text_of(seconds) + " s)";
      }
    }
    if (const auto problem = w.value("problem", json()); problem.is_string()) {
      connected += " (" + problem.get<std::string>() + ")";
    }
    workers.push_back({text_of(w.value("name", json())), connected, builds});
  }
  std::string out = builders.size() > 1 ? table(builders) : "no builders\n";
  out += "\n";
  out += workers.size() > 1 ? table(workers) : "no workers\n";
  // Only locks in use or waited for are listed; none is the usual case.
  std::vector<std::vector<std::string>> locks{{"LOCK", "HELD", "WAITING"}};
  for (const auto& l : status.value("locks", json::array())) {
    std::string name = text_of(l.value("name", json()));
    if (const auto worker = l.value("worker", json()); worker.is_string()) name += " on " + worker.get<std::string>();
    std::string held = l.value("exclusive", false) ? std::string("exclusive")
                                                    : text_of(l.value("counting", json(0))) + "/" +
                                                          text_of(l.value("max_count", json(1)));
    std::string waiting;
    for (const auto& w : l.value("waiting", json::array())) waiting += (waiting.empty() ? "" : ", ") + text_of(w);
    locks.push_back({name, held, waiting.empty() ? "-" : waiting});
  }
  if (locks.size() > 1) out += "\n" + table(locks);
  return out;
}

std::string format_buildset(const json& response) {
  if (!response.is_object() || !response.contains("bsid")) return response.dump();
  std::string out = "buildset " + text_of(response["bsid"]) + " submitted";
  std::string requests;
  // Named, not iterated as a temporary: items() would outlive it.
  const json brids = response.value("brids", json::object());
  for (const auto& [builder, brid] : brids.items()) {
    requests += (requests.empty() ? ": " : ", ") + ("request " + text_of(brid)) + " on builder '" +
                builder + "'";
  }
  return out + requests;
}

}  // namespace kiln::cli
