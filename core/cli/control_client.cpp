#include "cli/control_client.h"

#include "engine/data_api.h"
#include "master/control_server.h"

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

ParsedArgs parse_args(const Args& args, const std::set<std::string>& known) {
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

ControlCall sendchange_call(const Args& args) {
  auto parsed = parse_args(args, {"who", "branch", "revision", "repository", "project", "category",
                                  "codebase", "comments", "logfile", "property", "when"});
  if (parsed.positional.empty()) throw UsageError("expected DIR [FILES...]");
  json change{{"files", json::array()}, {"properties", json::object()}, {"comments", ""}};
  if (auto who = parsed.last("who")) {
    change["author"] = *who;
  } else if (const char* user = std::getenv("USER"); user != nullptr && *user) {
    change["author"] = user;
  } else {
    throw UsageError("--who is needed (no USER in the environment)");
  }
  for (const char* key : {"branch", "revision", "repository", "project", "category", "codebase"}) {
    if (auto v = parsed.last(key)) change[key] = *v;
  }
  auto comments = parsed.last("comments");
  auto logfile = parsed.last("logfile");
  if (comments && logfile) throw UsageError("give --comments or --logfile, not both");
  if (comments) change["comments"] = *comments;
  if (logfile) {
    std::string text;
    if (*logfile == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), {});
    } else {
      std::ifstream in(*logfile, std::ios::binary);
      if (!in) throw UsageError("--logfile: cannot read " + *logfile);
      text.assign(std::istreambuf_iterator<char>(in), {});
    }
    change["comments"] = text;
  }
  for (const auto& p : parsed.all("property")) {
    auto [name, value] = key_value(p, "--property");
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
  for (size_t i = 1; i < parsed.positional.size(); ++i) {
    change["files"].push_back(parsed.positional[i]);
  }
  return {parsed.positional[0], json{{"op", "change_add"}, {"change", std::move(change)}}};
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
    builders.push_back({text_of(b.value("name", json())), text_of(b.value("pending", json(0))),
                        running.empty() ? "-" : running, last});
  }
  std::vector<std::vector<std::string>> workers{{"WORKER", "CONNECTED", "BUILDS"}};
  for (const auto& w : status.value("workers", json::array())) {
    std::string builds = text_of(w.value("running", json(0)));
    if (const auto max = w.value("max_builds", json()); max.is_number()) {
      builds += "/" + max.dump();
    }
    std::string connected = w.value("connected", false) ? "yes" : "no";
    if (const auto problem = w.value("problem", json()); problem.is_string()) {
      connected += " (" + problem.get<std::string>() + ")";
    }
    workers.push_back({text_of(w.value("name", json())), connected, builds});
  }
  std::string out = builders.size() > 1 ? table(builders) : "no builders\n";
  out += "\n";
  out += workers.size() > 1 ? table(workers) : "no workers\n";
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
