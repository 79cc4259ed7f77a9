// `kiln user DIR add|update|remove|show`: Buildbot's `buildbot user`.
// With a master running in DIR the request goes through its control socket
// and runs on its loop through its store (op "user"); with none, this
// process opens the store named by master.yaml itself, as `kiln
// upgrade-master` does. Either way the same handler
// (master/user_requests.h) answers, so the output does not depend on
// whether the master runs. Exit codes: 0 done, 2 bad input (bad
// arguments, a duplicate, no such user), 1 anything else.

#include "cli/commands.h"
#include "cli/control_client.h"
#include "config/master_config.h"
#include "master/control_server.h"
#include "master/master_loading.h"
#include "master/user_requests.h"
#include "store/store.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <cstdio>
#include <future>
#include <string>
#include <vector>

namespace kiln::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A master answers on the socket; a crashed one leaves a file that refuses.
bool master_running(const fs::path& dir) {
  boost::asio::io_context io;
  boost::asio::local::stream_protocol::socket socket(io);
  boost::system::error_code ec;
  socket.connect(master::ControlServer::socket_path_of(dir).string(), ec);
  return !ec;
}

json error_json(const std::string& message, const std::string& code = "io") {
  return json{{"error", message}, {"code", code}};
}

// The store of master.yaml's master.db, opened here while no master runs.
json run_offline(const fs::path& dir_arg, const json& request) {
  auto read = config::read_config_document(master::master_yaml_path(dir_arg));
  if (!read.document) {
    std::string message;
    for (const auto& d : read.errors) message += (message.empty() ? "" : "\n") + d.to_string();
    return error_json(message);
  }
  std::string db = "sqlite:state.sqlite";
  const auto& root = read.document->root;
  if (root.contains("master") && root["master"].contains("db") &&
      root["master"]["db"].is_string()) {
    db = root["master"]["db"].get<std::string>();
  }
  fs::path dir = read.document->main_file.parent_path();
  if (dir.empty()) dir = ".";
  auto location = store::parse_store_url(db, dir);
  if (!location.ok()) return error_json(location.status.message);
  std::error_code ec;
  const bool fresh = location.value.backend == store::StoreLocation::Backend::kSqliteFile &&
                     !fs::exists(location.value.path, ec);
  store::OpenOptions options;
  options.url = db;
  options.base_dir = dir;
  // A master that never started has no store yet: users may come first.
  options.mode = fresh ? store::OpenMode::kCreate : store::OpenMode::kNormal;
  auto opened = store::open_store(std::move(options));
  if (!opened.ok()) return error_json(opened.status.message);
  // No loop here: the answer comes on the store thread.
  std::promise<json> answer;
  master::handle_user_request(*opened.value, request,
                              [&answer](json response) { answer.set_value(std::move(response)); });
  return answer.get_future().get();
}

std::string info_text(const json& info) {
  std::string out;
  for (const auto& [type, value] : info.items()) {
    out += (out.empty() ? "" : ", ") + type + "=" +
           (value.is_string() ? value.get<std::string>() : value.dump());
  }
  return out.empty() ? "-" : out;
}

int print_users(const json& response, const json& request) {
  const json users = response.value("users", json::array());
  if (users.empty()) {
    if (request.contains("match")) {
      std::fprintf(stderr, "kiln user: no user matches '%s'\n",
                   request["match"].get<std::string>().c_str());
      return 2;
    }
    std::printf("no users\n");
    return 0;
  }
  // The password column says whether one is set: the hash is never shown.
  std::vector<std::vector<std::string>> rows{
      {"UID", "IDENTIFIER", "USERNAME", "PASSWORD", "INFO"}};
  for (const auto& u : users) {
    const json username = u.value("username", json());
    rows.push_back({u.value("uid", json()).dump(), u.value("identifier", std::string()),
                    username.is_string() ? username.get<std::string>() : "-",
                    u.value("password", false) ? "set" : "-", info_text(u.value("info", json()))});
  }
  std::fputs(format_table(rows).c_str(), stdout);
  return 0;
}

}  // namespace

int user_command(const Args& args) {
  ControlCall call;
  try {
    call = user_call(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln user: %s (see `kiln user --help`)\n", e.what());
    return 2;
  }
  const json response = master_running(call.master_dir)
                            ? control_request(call.master_dir, call.request)
                            : run_offline(call.master_dir, call.request);
  if (response.is_object() && response.contains("error")) {
    const std::string code = response.value("code", "");
    std::fprintf(stderr, "kiln user: %s\n", response.value("error", std::string()).c_str());
    return code == "invalid_argument" || code == "not_found" ? 2 : 1;
  }
  const std::string action = call.request.value("action", "");
  if (action == "show") return print_users(response, call.request);
  const json uid = response.value("uid", json());
  if (action == "add") {
    std::printf("user %s added: %s\n", uid.dump().c_str(),
                call.request.value("identifier", std::string()).c_str());
  } else if (action == "update") {
    const std::string who = uid.is_number()
                                ? "user " + uid.dump()
                                : "user '" + response.value("identifier", std::string()) + "'";
    std::printf("%s updated\n", who.c_str());
  } else {
    std::printf("%s removed\n", response.value("removed", std::string("user")).c_str());
  }
  return 0;
}

}  // namespace kiln::cli
