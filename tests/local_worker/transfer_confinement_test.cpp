// WorkerSettings::confine_transfers, which kiln-worker turns on: which
// transfer paths the command set refuses as leading outside the basedir.

#include "store/temp_dir.h"

#include <catch2/catch.hpp>
#include <kiln/worker/command_runner.h>

#include <filesystem>

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

}  // namespace

TEST_CASE("a confined worker refuses transfer paths outside its basedir, through .., an absolute path or a symlink") {
  kiln::testing::TempDir base("kiln-confine"), outside("kiln-confine-out");
  fs::create_directories(base.path() / "b" / "build");
  fs::create_symlink(outside.path(), base.path() / "b" / "build" / "out");
  kiln::worker::WorkerSettings settings;
  settings.basedir = base.path().string();
  settings.confine_transfers = true;
  auto refused = [&](const char* command, const std::string& path) {
    return kiln::worker::transfer_escape(settings, command, json{{"path", path}}).has_value();
  };
  const std::string build = (base.path() / "b" / "build").string();

  CHECK(!refused("upload_file", build + "/a.txt"));
  CHECK(!refused("download_file", build + "/new/dir/file"));
  CHECK(!refused("upload_directory", "b/build"));  // relative to the basedir
  CHECK(refused("upload_file", build + "/../../../etc/passwd"));
  CHECK(refused("uploadFile", "/etc/passwd"));
  CHECK(refused("download_file", build + "/out/planted"));
  CHECK(refused("upload_directory", build + "/out"));
  // A sibling whose name starts with the basedir's is still outside.
  CHECK(refused("download_file", base.path().string() + "-x/file"));
  const auto why = kiln::worker::transfer_escape(settings, "upload_file", json{{"path", "/etc/passwd"}});
  REQUIRE(why);
  CHECK(why->find("outside the worker's basedir") != std::string::npos);

  // Other commands, and an unconfined worker, are not checked.
  CHECK(!refused("stat", "/etc/passwd"));
  settings.confine_transfers = false;
  CHECK(!refused("upload_file", "/etc/passwd"));
}
