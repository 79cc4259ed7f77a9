#pragma once
// The master's log: DIR/kiln.log rotated by size, and the terminal too when
// the master runs in the foreground.

#include <cstdint>
#include <filesystem>
#include <string>

namespace kiln::cli {

void setup_master_logging(const std::filesystem::path& master_dir, bool to_terminal,
                          const std::string& level, uint64_t max_bytes, unsigned max_files);

}  // namespace kiln::cli
