#pragma once
// The master's reading of a worker's messages: what the pairs of an
// `update` mean and what the host keeps of `get_worker_info`. The codec,
// envelopes and credentials are the shared <kiln/worker_wire/wire.h>,
// whose names are used here unqualified.

#include <kiln/worker_wire/wire.h>

namespace kiln::buildbot_worker {

using worker_wire::base64_decode;
using worker_wire::bytes_of;
using worker_wire::Credentials;
using worker_wire::decode;
using worker_wire::encode;
using worker_wire::error_response;
using worker_wire::from_json;
using worker_wire::parse_basic_auth;
using worker_wire::plain;
using worker_wire::request;
using worker_wire::response;
using worker_wire::to_json;
using worker_wire::Value;

// --- what a worker's `update` says -------------------------------------------

struct UpdateItem {
  enum class Kind { kOutput, kLog, kRc, kElapsed, kOther };
  Kind kind = Kind::kOther;
  int stream = 0;           // kOutput: 0 stdout, 1 stderr, 2 header (kiln_stream)
  std::string name;         // kLog: the log's name; kOther: the key
  std::string text;         // kOutput, kLog
  int64_t rc = 0;           // kRc
  double elapsed = 0;       // kElapsed
  Value value;              // kOther
};

// The [key, value] pairs of an update's `args`, in order (keys may repeat;
// `rc` need not be last). Output values are [text, [newlines], [times]].
inline std::optional<std::vector<UpdateItem>> read_update(const Value& args, std::string& error) {
  if (!args.is_array()) {
    error = "update args are not a list of pairs";
    return std::nullopt;
  }
  std::vector<UpdateItem> items;
  for (const auto& pair : args) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string()) {
      error = "update args hold something that is not a [key, value] pair";
      return std::nullopt;
    }
    const std::string key = pair[0].get<std::string>();
    const Value& v = pair[1];
    UpdateItem item;
    auto line_text = [&](const Value& lines) -> std::optional<std::string> {
      if (lines.is_array() && !lines.empty()) return bytes_of(lines[0]);
      return bytes_of(lines);
    };
    if (key == "stdout" || key == "stderr" || key == "header") {
      auto text = line_text(v);
      if (!text) {
        error = "update '" + key + "' carries no text";
        return std::nullopt;
      }
      item.kind = UpdateItem::Kind::kOutput;
      item.stream = key == "stdout" ? 0 : key == "stderr" ? 1 : 2;
      item.text = std::move(*text);
    } else if (key == "log") {
      std::optional<std::string> name, text;
      if (v.is_array() && v.size() == 2) {
        name = bytes_of(v[0]);
        text = line_text(v[1]);
      }
      if (!name || !text) {
        error = "update 'log' is not [name, lines]";
        return std::nullopt;
      }
      item.kind = UpdateItem::Kind::kLog;
      item.name = std::move(*name);
      item.text = std::move(*text);
    } else if (key == "rc" && v.is_number_integer()) {
      item.kind = UpdateItem::Kind::kRc;
      item.rc = v.get<int64_t>();
    } else if (key == "elapsed" && v.is_number()) {
      item.kind = UpdateItem::Kind::kElapsed;
      item.elapsed = v.get<double>();
    } else {
      item.kind = UpdateItem::Kind::kOther;
      item.name = key;
      item.value = v;
    }
    items.push_back(std::move(item));
  }
  return items;
}

// What the host keeps of `get_worker_info` (plugin_api.h, worker_connected):
// everything the worker said, `admin`/`host` without their trailing newline
// (they are files in the worker's info/ folder), plus "os".
inline nlohmann::json host_info(const Value& info) {
  nlohmann::json out = info.is_object() ? to_json(info) : nlohmann::json::object();
  for (const char* key : {"admin", "host", "access_uri"}) {
    if (out.contains(key) && out[key].is_string()) {
      std::string s = out[key].get<std::string>();
      while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
      out[key] = s;
    }
  }
  if (!out.contains("os")) {
    if (out.contains("os_pretty_name") && out["os_pretty_name"].is_string()) {
      out["os"] = out["os_pretty_name"];
    } else {
      out["os"] = out.value("system", std::string("unknown"));
    }
  }
  return out;
}

}  // namespace kiln::buildbot_worker
