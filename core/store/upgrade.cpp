#include "store/migrations.h"
#include "store/store.h"

#include <ostream>

namespace kiln::store {

Status upgrade_master(const std::string& db_url,
                      const std::filesystem::path& master_dir, std::ostream& out,
                      std::vector<Migration> migrations) {
  auto location = parse_store_url(db_url, master_dir);
  if (!location.ok()) return location.status;
  OpenOptions options;
  options.url = db_url;
  options.base_dir = master_dir;
  options.migrations = std::move(migrations);
  options.mode = OpenMode::kUpgrade;
  if (location.value.backend == StoreLocation::Backend::kSqliteFile) {
    std::error_code ec;
    if (!std::filesystem::exists(location.value.path, ec)) {
      out << "creating store at " << location.value.path.string() << "\n";
      options.mode = OpenMode::kCreate;
    } else {
      out << "upgrading store at " << location.value.path.string() << "\n";
    }
  }
  bool applied = false;
  options.progress = [&](std::string_view line) {
    applied = true;
    out << line << "\n" << std::flush;
  };
  auto opened = open_store(std::move(options));
  if (!opened.ok()) return opened.status;
  const int version = opened.value->schema_version();
  opened.value.reset();  // closes the file (and checkpoints its WAL)
  if (applied) {
    out << "store is at schema version " << version << "\n";
  } else {
    out << "store is already at schema version " << version
        << "; nothing to do\n";
  }
  return {};
}

}  // namespace kiln::store
