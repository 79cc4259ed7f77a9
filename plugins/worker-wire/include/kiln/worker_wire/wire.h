#pragma once
// The wire format of Buildbot 3.x's msgpack worker protocol
// (`msgpack_experimental_v7`, reference/worker-protocol-msgpack.md), for
// both ends: one msgpack map per WebSocket message <-> an insertion-ordered
// JSON value in which msgpack bin is JSON binary; the request / response
// envelopes; and the HTTP Basic credentials of the upgrade request.
// Header-only and free of the plugin ABI: the buildbot-worker plugin (the
// master's side) and kiln-worker (a worker) both use it, and the tests
// check it against captured traffic.

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>

#include <kiln/sdk/base64.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::worker_wire {

// Ordered, so that a decoded message re-encodes to the very same bytes and
// requests go out with `op` first and `seq_number` last, as Buildbot's do.
using Value = nlohmann::ordered_json;

// Nesting deeper than this is refused: no protocol message comes close.
constexpr size_t kMaxDepth = 64;

namespace detail {

inline void pack(msgpack::packer<msgpack::sbuffer>& pk, const Value& v) {
  using T = Value::value_t;
  switch (v.type()) {
    case T::boolean:
      if (v.get<bool>()) {
        pk.pack_true();
      } else {
        pk.pack_false();
      }
      return;
    case T::number_integer: pk.pack_int64(v.get<int64_t>()); return;
    case T::number_unsigned: pk.pack_uint64(v.get<uint64_t>()); return;
    case T::number_float: pk.pack_double(v.get<double>()); return;
    case T::string: {
      const auto& s = v.get_ref<const std::string&>();
      pk.pack_str(static_cast<uint32_t>(s.size()));
      pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
      return;
    }
    case T::binary: {
      const auto& b = v.get_binary();
      pk.pack_bin(static_cast<uint32_t>(b.size()));
      pk.pack_bin_body(reinterpret_cast<const char*>(b.data()), static_cast<uint32_t>(b.size()));
      return;
    }
    case T::array:
      pk.pack_array(static_cast<uint32_t>(v.size()));
      for (const auto& item : v) pack(pk, item);
      return;
    case T::object:
      pk.pack_map(static_cast<uint32_t>(v.size()));
      for (const auto& [key, item] : v.items()) {
        pk.pack_str(static_cast<uint32_t>(key.size()));
        pk.pack_str_body(key.data(), static_cast<uint32_t>(key.size()));
        pack(pk, item);
      }
      return;
    case T::null:
    case T::discarded:
      pk.pack_nil();
      return;
  }
}

// Map keys must be text: the worker's own decoder refuses anything else.
inline bool unpack(const msgpack::object& o, Value& out, std::string& error) {
  switch (o.type) {
    case msgpack::type::NIL: out = nullptr; return true;
    case msgpack::type::BOOLEAN: out = o.via.boolean; return true;
    case msgpack::type::POSITIVE_INTEGER: out = o.via.u64; return true;
    case msgpack::type::NEGATIVE_INTEGER: out = o.via.i64; return true;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: out = o.via.f64; return true;
    case msgpack::type::STR: out = std::string(o.via.str.ptr, o.via.str.size); return true;
    case msgpack::type::BIN: {
      const auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
      out = Value::binary(std::vector<uint8_t>(p, p + o.via.bin.size));
      return true;
    }
    case msgpack::type::ARRAY:
      out = Value::array();
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        Value item;
        if (!unpack(o.via.array.ptr[i], item, error)) return false;
        out.push_back(std::move(item));
      }
      return true;
    case msgpack::type::MAP:
      out = Value::object();
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (kv.key.type != msgpack::type::STR) {
          error = "a map key is not a string";
          return false;
        }
        Value item;
        if (!unpack(kv.val, item, error)) return false;
        out[std::string(kv.key.via.str.ptr, kv.key.via.str.size)] = std::move(item);
      }
      return true;
    case msgpack::type::EXT:
      error = "msgpack ext types are not part of the protocol";
      return false;
  }
  error = "unknown msgpack type";
  return false;
}

}  // namespace detail

inline std::string encode(const Value& message) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> pk(buffer);
  detail::pack(pk, message);
  return std::string(buffer.data(), buffer.size());
}

// Exactly one msgpack value filling `bytes`, or nullopt with `error` set.
inline std::optional<Value> decode(std::string_view bytes, std::string& error) {
  try {
    const msgpack::unpack_limit limit(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
                                      kMaxDepth);
    std::size_t offset = 0;
    msgpack::object_handle handle =
        msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr, nullptr, limit);
    if (offset != bytes.size()) {
      error = "trailing bytes after the message";
      return std::nullopt;
    }
    Value out;
    if (!detail::unpack(handle.get(), out, error)) return std::nullopt;
    return out;
  } catch (const std::exception& e) {
    error = std::string("invalid msgpack: ") + e.what();
    return std::nullopt;
  }
}

// --- envelopes -------------------------------------------------------------

// {"op": op, fields..., "seq_number": seq}
inline Value request(std::string_view op, uint64_t seq, const Value& fields = Value::object()) {
  Value out = Value::object();
  out["op"] = op;
  for (const auto& [key, item] : fields.items()) out[key] = item;
  out["seq_number"] = seq;
  return out;
}

inline Value response(uint64_t seq, Value result) {
  return Value{{"op", "response"}, {"seq_number", seq}, {"result", std::move(result)}};
}

// Buildbot's receivers take `result` as the error text when is_exception.
inline Value error_response(uint64_t seq, std::string_view text) {
  return Value{{"op", "response"}, {"seq_number", seq}, {"result", text}, {"is_exception", true}};
}

// Bytes of a str or bin value (text fields may come either way).
inline std::optional<std::string> bytes_of(const Value& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_binary()) {
    const auto& b = v.get_binary();
    return std::string(b.begin(), b.end());
  }
  return std::nullopt;
}

// The value with every binary turned into a string of its bytes, so that it
// can become JSON text (dump with error_handler_t::replace).
inline Value plain(const Value& v) {
  if (v.is_binary()) return *bytes_of(v);
  if (v.is_array() || v.is_object()) {
    Value out = v;
    for (auto& item : out) item = plain(item);
    return out;
  }
  return v;
}

inline nlohmann::json to_json(const Value& v) {
  return nlohmann::json::parse(plain(v).dump(-1, ' ', false, Value::error_handler_t::replace));
}

// Converted value by value rather than through text, so that strings that
// are not UTF-8 (file names, log bytes) pass unchanged.
inline Value from_json(const nlohmann::json& v) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::object: {
      Value out = Value::object();
      for (const auto& [key, item] : v.items()) out[key] = from_json(item);
      return out;
    }
    case T::array: {
      Value out = Value::array();
      for (const auto& item : v) out.push_back(from_json(item));
      return out;
    }
    case T::string: return v.get<std::string>();
    case T::boolean: return v.get<bool>();
    case T::number_integer: return v.get<int64_t>();
    case T::number_unsigned: return v.get<uint64_t>();
    case T::number_float: return v.get<double>();
    case T::binary: return Value::binary(std::vector<uint8_t>(v.get_binary().begin(), v.get_binary().end()));
    case T::null:
    case T::discarded: return nullptr;
  }
  return nullptr;
}

// --- the upgrade request's credentials ---------------------------------------

struct Credentials {
  std::string name;
  std::string password;
};

using sdk::base64_decode;
using sdk::base64_encode;

// The Authorization header value a worker sends: "Basic base64(name:password)".
inline std::string basic_auth(const Credentials& credentials) {
  return "Basic " + base64_encode(credentials.name + ":" + credentials.password);
}

// The HTTP status the real master answers for a bad header: 401 when it is
// absent, 400 when it is no Basic credential; otherwise the credentials,
// split at the first ':' (a password may hold ':').
inline std::variant<Credentials, int> parse_basic_auth(std::optional<std::string_view> header) {
  if (!header) return 401;
  std::string_view h = *header;
  while (!h.empty() && (h.front() == ' ' || h.front() == '\t')) h.remove_prefix(1);
  while (!h.empty() && (h.back() == ' ' || h.back() == '\t')) h.remove_suffix(1);
  if (h.substr(0, 6) != "Basic ") return 400;
  auto text = base64_decode(h.substr(6));
  if (!text) return 400;
  const auto colon = text->find(':');
  if (colon == std::string::npos) return 400;
  return Credentials{text->substr(0, colon), text->substr(colon + 1)};
}

}  // namespace kiln::worker_wire
