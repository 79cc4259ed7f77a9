#pragma once
// How log chunks are stored: zstd-compressed when that saves space, raw
// otherwise. The engine streams every log chunk through encode_log_chunk()
// before it reaches logchunks.content and through decode_log_chunk() on the
// way out. Codes are Buildbot's logchunks.compressed values, so a chunk
// copied from a Buildbot database keeps its meaning.

#include "store/store.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::store {

enum class ChunkCompression : int {
  kRaw = 0,
  kZstd = 4,  // Buildbot: 1 gzip, 2 bzip2, 3 lz4 (read by nobody here yet)
};

struct EncodedChunk {
  std::vector<uint8_t> bytes;
  ChunkCompression compression = ChunkCompression::kRaw;
};

// zstd at `level` (1 is fast and already shrinks build logs several times);
// a chunk too small or too random to shrink is kept raw, so reading it costs
// nothing.
EncodedChunk encode_log_chunk(std::string_view text, int level = 1);

// The original text. kInvalidArgument for an unknown code or bytes that are
// not a complete zstd frame; never reads past `bytes`.
Result<std::string> decode_log_chunk(std::span<const uint8_t> bytes,
                                     ChunkCompression compression);

// The raw zstd primitives under the two above.
std::vector<uint8_t> zstd_compress(std::string_view text, int level);
Result<std::string> zstd_decompress(std::span<const uint8_t> bytes);

}  // namespace kiln::store
