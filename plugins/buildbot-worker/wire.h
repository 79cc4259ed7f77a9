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

// The common `update` read in place (worker_wire::Reader), without a Value
// tree: every pair output (stdout, stderr, header), rc or elapsed, the text
// a view into the payload. Anything else, or anything malformed, is nullopt
// and goes the general way (decode, then read_update), which also says
// what is wrong.
struct OutputUpdate {
  struct Item {
    UpdateItem::Kind kind = UpdateItem::Kind::kOutput;
    int stream = 0;
    std::string_view text;
    int64_t rc = 0;
    double elapsed = 0;
  };
  uint64_t seq = 0;
  std::string_view command_id;
  std::vector<Item> items;
};

inline std::optional<OutputUpdate> read_output_update(std::string_view payload) {
  worker_wire::Reader in(payload);
  uint32_t fields = 0;
  if (!in.map(fields)) return std::nullopt;
  OutputUpdate out;
  bool op_seen = false, seq_seen = false, id_seen = false, args_seen = false;
  for (uint32_t f = 0; f < fields; ++f) {
    std::string_view key;
    if (!in.text(key)) return std::nullopt;
    if (key == "op") {
      std::string_view op;
      if (!in.text(op) || op != "update") return std::nullopt;
      op_seen = true;
    } else if (key == "seq_number") {
      int64_t seq = 0;
      if (!in.integer(seq) || seq < 0) return std::nullopt;
      out.seq = static_cast<uint64_t>(seq);
      seq_seen = true;
    } else if (key == "command_id") {
      if (!in.text(out.command_id)) return std::nullopt;
      id_seen = true;
    } else if (key == "args") {
      uint32_t pairs = 0;
      if (!in.array(pairs)) return std::nullopt;
      out.items.reserve(pairs);
      for (uint32_t i = 0; i < pairs; ++i) {
        uint32_t two = 0;
        std::string_view name;
        if (!in.array(two) || two != 2 || !in.text(name)) return std::nullopt;
        OutputUpdate::Item item;
        if (name == "stdout" || name == "stderr" || name == "header") {
          item.stream = name == "stdout" ? 0 : name == "stderr" ? 1 : 2;
          // [text, [newlines], [times]]: only the text matters here.
          uint32_t parts = 0;
          if (!in.array(parts) || parts == 0 || !in.text(item.text)) return std::nullopt;
          for (uint32_t p = 1; p < parts; ++p) {
            if (!in.skip()) return std::nullopt;
          }
        } else if (name == "rc") {
          item.kind = UpdateItem::Kind::kRc;
          if (!in.integer(item.rc)) return std::nullopt;
        } else if (name == "elapsed") {
          item.kind = UpdateItem::Kind::kElapsed;
          if (!in.number(item.elapsed)) return std::nullopt;
        } else {
          return std::nullopt;
        }
        out.items.push_back(item);
      }
      args_seen = true;
    } else if (!in.skip()) {
      return std::nullopt;
    }
  }
  if (!in.at_end() || !op_seen || !seq_seen || !id_seen || !args_seen) return std::nullopt;
  return out;
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
