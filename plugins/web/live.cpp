// LiveClient: Buildbot's www/ws.py commands (startConsuming,
// stopConsuming, ping) and its answers, code for code.

#include "live.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace kiln::web {
namespace {

using nlohmann::json;

std::string reply(const json& id, int code, const char* key, const std::string& text) {
  return json{{"_id", id}, {"code", code}, {key, text}}.dump(-1, ' ', false,
                                                              json::error_handler_t::replace);
}

}  // namespace

bool live_path_matches(std::string_view path, std::string_view routing_key) {
  while (true) {
    const size_t p_end = path.find('/');
    const size_t k_end = routing_key.find('/');
    const std::string_view p = path.substr(0, p_end);
    if (p != "*" && p != routing_key.substr(0, k_end)) return false;
    const bool p_last = p_end == std::string_view::npos;
    const bool k_last = k_end == std::string_view::npos;
    if (p_last || k_last) return p_last == k_last;
    path.remove_prefix(p_end + 1);
    routing_key.remove_prefix(k_end + 1);
  }
}

std::string LiveClient::on_frame(std::string_view text) {
  json frame = json::parse(text, nullptr, false);
  if (frame.is_discarded() || !frame.is_object()) {
    return reply(nullptr, 400, "error", "the frame is not a JSON object");
  }
  const json id = frame.value("_id", json());
  if (id.is_null()) return reply(nullptr, 400, "error", "no '_id' in websocket frame");
  if (!frame.contains("cmd") || !frame["cmd"].is_string()) {
    return reply(id, 400, "error", "no 'cmd' in websocket frame");
  }
  const std::string cmd = frame["cmd"].get<std::string>();
  if (cmd == "ping") return reply(id, 200, "msg", "pong");
  if (cmd != "startConsuming" && cmd != "stopConsuming") {
    return reply(id, 404, "error", "no such command type '" + cmd + "'");
  }
  if (!frame.contains("path") || !frame["path"].is_string() ||
      frame["path"].get_ref<const std::string&>().empty()) {
    return reply(id, 400, "error", "Invalid method argument: " + cmd + " needs a 'path'");
  }
  const std::string path = frame["path"].get<std::string>();
  auto it = std::find(paths_.begin(), paths_.end(), path);
  if (cmd == "startConsuming") {
    if (it == paths_.end()) paths_.push_back(path);
  } else {
    if (it == paths_.end()) return reply(id, 400, "error", "path was not consumed '" + path + "'");
    paths_.erase(it);
  }
  return reply(id, 200, "msg", "OK");
}

bool LiveClient::wants(std::string_view routing_key) const {
  return std::any_of(paths_.begin(), paths_.end(), [&](const std::string& path) {
    return live_path_matches(path, routing_key);
  });
}

std::string event_frame(std::string_view routing_key, std::string_view event_json) {
  std::string frame = "{\"k\": ";
  frame += json(std::string(routing_key)).dump();
  frame += ", \"m\": ";
  frame += event_json;
  frame += "}";
  return frame;
}

}  // namespace kiln::web
