#include "store/log_chunks.h"

#include <catch2/catch.hpp>

#include <random>

using namespace kiln::store;

namespace {

std::string build_log(int lines) {
  std::string text;
  for (int i = 0; i < lines; ++i) {
    text += "[" + std::to_string(i) + "/" + std::to_string(lines) +
            "] g++ -O2 -Wall -c src/module_" + std::to_string(i % 37) +
            ".cpp -o build/module_" + std::to_string(i % 37) + ".o\n";
  }
  return text;
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

}  // namespace

TEST_CASE("a build log chunk is stored zstd-compressed and decodes to the same text") {
  const std::string text = build_log(2000);
  auto chunk = encode_log_chunk(text);
  REQUIRE(chunk.compression == ChunkCompression::kZstd);
  REQUIRE(chunk.bytes.size() * 4 < text.size());
  auto decoded = decode_log_chunk(chunk.bytes, chunk.compression);
  REQUIRE(decoded.ok());
  REQUIRE(decoded.value == text);
}

TEST_CASE("chunks that compression would not shrink are stored raw and decode unchanged") {
  for (const std::string& text :
       {std::string(), std::string("ok\n"), random_bytes(4096, 7)}) {
    auto chunk = encode_log_chunk(text);
    REQUIRE(chunk.compression == ChunkCompression::kRaw);
    REQUIRE(std::string(chunk.bytes.begin(), chunk.bytes.end()) == text);
    auto decoded = decode_log_chunk(chunk.bytes, chunk.compression);
    REQUIRE(decoded.ok());
    REQUIRE(decoded.value == text);
  }
}

TEST_CASE("zstd round-trips text larger than one decoder buffer") {
  const std::string text = build_log(40000);  // a few MB, many output blocks
  auto packed = zstd_compress(text, 3);
  REQUIRE_FALSE(packed.empty());
  auto back = zstd_decompress(packed);
  REQUIRE(back.ok());
  REQUIRE(back.value == text);
}

TEST_CASE("a corrupt or truncated compressed chunk is an error, not a crash") {
  const std::string text = build_log(500);
  auto chunk = encode_log_chunk(text);
  REQUIRE(chunk.compression == ChunkCompression::kZstd);

  auto truncated = chunk.bytes;
  truncated.resize(truncated.size() / 2);
  auto r1 = decode_log_chunk(truncated, ChunkCompression::kZstd);
  REQUIRE(r1.status.code == StatusCode::kInvalidArgument);

  auto garbage = random_bytes(300, 11);
  auto r2 = decode_log_chunk(
      std::span(reinterpret_cast<const uint8_t*>(garbage.data()), garbage.size()),
      ChunkCompression::kZstd);
  REQUIRE(r2.status.code == StatusCode::kInvalidArgument);

  auto doubled = chunk.bytes;
  doubled.insert(doubled.end(), {0x01, 0x02, 0x03});
  REQUIRE_FALSE(decode_log_chunk(doubled, ChunkCompression::kZstd).ok());

  REQUIRE_FALSE(decode_log_chunk({}, ChunkCompression::kZstd).ok());
}

TEST_CASE("a chunk with a compression code Kiln does not read is refused by code") {
  auto r = decode_log_chunk({}, static_cast<ChunkCompression>(1));
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message, Catch::Contains("unsupported code 1"));
}
