#include "store/log_chunks.h"

#include <zstd.h>

#include <memory>

namespace kiln::store {
namespace {

// Below this, zstd's frame header outweighs what it could save.
constexpr size_t kMinCompressSize = 64;

struct FreeDStream {
  void operator()(ZSTD_DStream* s) const { ZSTD_freeDStream(s); }
};

Result<std::string> corrupt(std::string_view why) {
  return {Status::error(StatusCode::kInvalidArgument,
                        "corrupt log chunk: " + std::string(why)),
          {}};
}

}  // namespace

std::vector<uint8_t> zstd_compress(std::string_view text, int level) {
  std::vector<uint8_t> out(ZSTD_compressBound(text.size()));
  size_t n = ZSTD_compress(out.data(), out.size(), text.data(), text.size(), level);
  // Compression into a buffer of compressBound size cannot run out of room;
  // the only failures left are bad parameters, which callers never pass.
  if (ZSTD_isError(n)) return {};
  out.resize(n);
  return out;
}

Result<std::string> zstd_decompress(std::span<const uint8_t> bytes) {
  // Streaming, so a frame that does not record its size (or lies about it)
  // is still decoded within the bytes it really holds.
  std::unique_ptr<ZSTD_DStream, FreeDStream> stream(ZSTD_createDStream());
  if (!stream) return {Status::error(StatusCode::kInternal, "zstd: out of memory"), {}};
  ZSTD_initDStream(stream.get());
  std::string out;
  std::vector<char> buffer(ZSTD_DStreamOutSize());
  ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
  size_t last = 1;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(stream.get(), &o, &in);
    if (ZSTD_isError(last)) return corrupt(ZSTD_getErrorName(last));
    out.append(buffer.data(), o.pos);
    if (last == 0 && in.pos < in.size) {
      // A second frame after the first: not something encode wrote.
      return corrupt("trailing bytes after the zstd frame");
    }
  }
  // Flush whatever the decoder still holds for a frame already fully read.
  while (last != 0) {
    ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(stream.get(), &o, &in);
    if (ZSTD_isError(last)) return corrupt(ZSTD_getErrorName(last));
    out.append(buffer.data(), o.pos);
    if (o.pos == 0 && last != 0) {
      return corrupt("the zstd frame is truncated");
    }
  }
  return {{}, std::move(out)};
}

EncodedChunk encode_log_chunk(std::string_view text, int level) {
  EncodedChunk chunk;
  if (text.size() >= kMinCompressSize) {
    auto packed = zstd_compress(text, level);
    if (!packed.empty() && packed.size() < text.size()) {
      chunk.bytes = std::move(packed);
      chunk.compression = ChunkCompression::kZstd;
      return chunk;
    }
  }
  chunk.bytes.assign(text.begin(), text.end());
  return chunk;
}

Result<std::string> decode_log_chunk(std::span<const uint8_t> bytes,
                                     ChunkCompression compression) {
  switch (compression) {
    case ChunkCompression::kRaw:
      return {{}, std::string(bytes.begin(), bytes.end())};
    case ChunkCompression::kZstd:
      return zstd_decompress(bytes);
  }
  return {Status::error(StatusCode::kInvalidArgument,
                        "log chunk compressed with unsupported code " +
                            std::to_string(static_cast<int>(compression))),
          {}};
}

}  // namespace kiln::store
