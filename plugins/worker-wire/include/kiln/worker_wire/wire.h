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
#include <cstring>
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

// Packs straight into the message's string: no second buffer to copy from.
struct StringStream {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};

template <class Stream>
void pack(msgpack::packer<Stream>& pk, const Value& v) {
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
  std::string out;
  detail::StringStream stream{out};
  msgpack::packer<detail::StringStream> pk(stream);
  detail::pack(pk, message);
  return out;
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

// --- output without a Value tree ----------------------------------------------
// A busy step's output is nearly all of a worker's traffic, and as Values
// its [text, [newline indexes], [times]] form costs two JSON elements per
// line at each end. The worker writes `update`s with Writer and the master
// reads them with Reader, both straight on the message bytes.

// Code points of UTF-8 text: bytes that are not continuation bytes,
// counted a word at a time.
inline size_t code_points(std::string_view text) {
  size_t continuation = 0, i = 0;
  constexpr uint64_t kHigh = 0x8080808080808080ull;
  for (; i + 8 <= text.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    // bit 7 set and bit 6 clear: 10xxxxxx; then the byte flags summed by
    // a multiply (no popcnt instruction in the baseline x86-64).
    const uint64_t flags = (word & ~(word << 1) & kHigh) >> 7;
    continuation += static_cast<size_t>((flags * 0x0101010101010101ull) >> 56);
  }
  for (; i < text.size(); ++i) continuation += (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
  return text.size() - continuation;
}

// Builds one message in place.
class Writer {
 public:
  Writer() : stream_{bytes_}, pk_(stream_) {}
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void map(uint32_t size) { pk_.pack_map(size); }
  void array(uint32_t size) { pk_.pack_array(size); }
  void text(std::string_view s) {
    pk_.pack_str(static_cast<uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
  }
  void number(uint64_t n) { pk_.pack_uint64(n); }
  void value(const Value& v) { detail::pack(pk_, v); }
  // Output as Buildbot's worker sends it: [text, [index of each newline in
  // code points], [`now` once per line]].
  void output_lines(std::string_view text, double now) {
    size_t lines = 0;
    for (const char* p = text.data(); (p = static_cast<const char*>(
                                           std::memchr(p, '\n', text.size() - static_cast<size_t>(p - text.data()))));
         ++p) {
      ++lines;
    }
    pk_.pack_array(3);
    this->text(text);
    pk_.pack_array(static_cast<uint32_t>(lines));
    size_t index = 0, from = 0;
    for (size_t i = 0; i < lines; ++i) {
      const size_t nl = text.find('\n', from);
      index += code_points(text.substr(from, nl - from));
      pk_.pack_uint64(index);
      ++index;
      from = nl + 1;
    }
    pk_.pack_array(static_cast<uint32_t>(lines));
    for (size_t i = 0; i < lines; ++i) pk_.pack_double(now);
  }
  void reserve(size_t size) { bytes_.reserve(size); }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
  detail::StringStream stream_;
  msgpack::packer<detail::StringStream> pk_;
};

// Reads msgpack bytes in place; every call returns false on anything but
// the asked-for type (or truncated input), leaving the position undefined.
class Reader {
 public:
  explicit Reader(std::string_view bytes)
      : p_(reinterpret_cast<const uint8_t*>(bytes.data())), end_(p_ + bytes.size()) {}

  bool at_end() const { return p_ == end_; }

  bool map(uint32_t& size) { return header(0x80, 0xde, size); }
  bool array(uint32_t& size) { return header(0x90, 0xdc, size); }
  // A str or bin: a view into the bytes.
  bool text(std::string_view& out) {
    if (p_ >= end_) return false;
    const uint8_t tag = *p_;
    uint64_t size = 0;
    if ((tag & 0xe0) == 0xa0) {
      size = tag & 0x1f;
      ++p_;
    } else if (tag == 0xd9 || tag == 0xc4) {
      if (!big_endian(1, 1, size)) return false;
    } else if (tag == 0xda || tag == 0xc5) {
      if (!big_endian(1, 2, size)) return false;
    } else if (tag == 0xdb || tag == 0xc6) {
      if (!big_endian(1, 4, size)) return false;
    } else {
      return false;
    }
    if (static_cast<uint64_t>(end_ - p_) < size) return false;
    out = std::string_view(reinterpret_cast<const char*>(p_), size);
    p_ += size;
    return true;
  }
  bool integer(int64_t& out) {
    if (p_ >= end_) return false;
    const uint8_t tag = *p_;
    uint64_t u = 0;
    if (tag <= 0x7f) {
      out = tag;
      ++p_;
      return true;
    }
    if (tag >= 0xe0) {
      out = static_cast<int8_t>(tag);
      ++p_;
      return true;
    }
    if (tag >= 0xcc && tag <= 0xcf) {
      if (!big_endian(1, size_t{1} << (tag - 0xcc), u) || u > static_cast<uint64_t>(INT64_MAX)) return false;
      out = static_cast<int64_t>(u);
      return true;
    }
    if (tag >= 0xd0 && tag <= 0xd3) {
      const size_t width = size_t{1} << (tag - 0xd0);
      if (!big_endian(1, width, u)) return false;
      // sign-extend from `width` bytes
      const unsigned shift = static_cast<unsigned>(64 - 8 * width);
      out = static_cast<int64_t>(u << shift) >> shift;
      return true;
    }
    return false;
  }
  bool number(double& out) {
    if (p_ >= end_) return false;
    uint64_t bits = 0;
    if (*p_ == 0xcb) {
      if (!big_endian(1, 8, bits)) return false;
      std::memcpy(&out, &bits, 8);
      return true;
    }
    if (*p_ == 0xca) {
      if (!big_endian(1, 4, bits)) return false;
      const auto narrow = static_cast<uint32_t>(bits);
      float f;
      std::memcpy(&f, &narrow, 4);
      out = f;
      return true;
    }
    int64_t i = 0;
    if (!integer(i)) return false;
    out = static_cast<double>(i);
    return true;
  }
  // Steps over one value of any type (nested ones up to kMaxDepth).
  bool skip(size_t depth = 0) {
    if (p_ >= end_ || depth > kMaxDepth) return false;
    const uint8_t tag = *p_;
    uint32_t count = 0;
    if (header(0x90, 0xdc, count)) {
      for (uint32_t i = 0; i < count; ++i) {
        if (!skip(depth + 1)) return false;
      }
      return true;
    }
    if (header(0x80, 0xde, count)) {
      for (uint64_t i = 0; i < uint64_t{count} * 2; ++i) {
        if (!skip(depth + 1)) return false;
      }
      return true;
    }
    std::string_view ignored;
    if (text(ignored)) return true;
    size_t size = 0;  // of a scalar, tag included
    if (tag <= 0x7f || tag >= 0xe0 || tag == 0xc0 || tag == 0xc2 || tag == 0xc3) {
      size = 1;
    } else if ((tag >= 0xcc && tag <= 0xcf) || (tag >= 0xd0 && tag <= 0xd3)) {
      size = 1 + (size_t{1} << (tag & 0x03));
    } else if (tag == 0xca || tag == 0xcb) {
      size = tag == 0xca ? 5 : 9;
    }
    if (size == 0 || static_cast<size_t>(end_ - p_) < size) return false;
    p_ += size;
    return true;
  }

 private:
  // fixmap/fixarray (`fix`: 4-bit size), or `wide` (16-bit size) / wide+1 (32-bit).
  bool header(uint8_t fix, uint8_t wide, uint32_t& size) {
    if (p_ >= end_) return false;
    const uint8_t tag = *p_;
    uint64_t n = 0;
    if ((tag & 0xf0) == fix) {
      size = tag & 0x0f;
      ++p_;
      return true;
    }
    if (tag == wide) {
      if (!big_endian(1, 2, n)) return false;
    } else if (tag == wide + 1) {
      if (!big_endian(1, 4, n)) return false;
    } else {
      return false;
    }
    size = static_cast<uint32_t>(n);
    return true;
  }
  // Skips `skip` tag bytes, then reads a `width`-byte big-endian number.
  bool big_endian(size_t skip, size_t width, uint64_t& out) {
    if (static_cast<size_t>(end_ - p_) < skip + width) return false;
    out = 0;
    for (size_t i = 0; i < width; ++i) out = (out << 8) | p_[skip + i];
    p_ += skip + width;
    return true;
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

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
