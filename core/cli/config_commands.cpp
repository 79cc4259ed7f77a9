// `kiln checkconfig`, `kiln create-master` and `kiln version`.

#include "cli/commands.h"
#include "cli/master_template.h"
#include "master/master_loading.h"

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>
#include <spdlog/version.h>
#include <sqlite3.h>
#include <yaml-cpp/yaml.h>
#include <zstd.h>

#include <boost/version.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace kiln::cli {

namespace fs = std::filesystem;

int checkconfig_command(const Args& args) {
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: kiln checkconfig DIR|FILE\n");
    return 2;
  }
  auto load = master::load_master(args[0]);
  if (!load.master) {
    for (const auto& e : load.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "%zu error%s; the configuration was not accepted.\n", load.errors.size(),
                 load.errors.size() == 1 ? "" : "s");
    return 1;
  }
  const auto& c = load.master->config;
  std::printf("%s is valid: %zu workers, %zu builders, %zu schedulers, %zu change sources, "
              "%zu reporters.\n",
              master::master_yaml_path(args[0]).c_str(), c.workers.size(), c.builders.size(),
              c.schedulers.size(), c.change_sources.size(), c.reporters.size());
  return 0;
}

int create_master_command(const Args& args) {
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: kiln create-master DIR\n");
    return 2;
  }
  fs::path dir = args[0];
  fs::path file = dir / "master.yaml";
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::fprintf(stderr, "kiln create-master: %s already exists; not overwriting it.\n",
                 file.c_str());
    return 1;
  }
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "kiln create-master: cannot create %s: %s\n", dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  std::ofstream out(file);
  out << kMasterTemplate;
  out.close();
  if (!out) {
    std::fprintf(stderr, "kiln create-master: cannot write %s\n", file.c_str());
    return 1;
  }
  std::printf("created %s\nnext: kiln checkconfig %s && kiln start %s\n", file.c_str(), dir.c_str(),
              dir.c_str());
  return 0;
}

int version_command(const Args&) {
  std::printf("kiln %s\n", KILN_VERSION);
  std::printf("plugin ABI %u.%u\n", KILN_ABI_MAJOR, KILN_ABI_MINOR);
  std::printf("boost %d.%d.%d, yaml-cpp 0.7, nlohmann_json %d.%d.%d, spdlog %d.%d.%d, "
              "sqlite %s, zstd %s\n",
              BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000, BOOST_VERSION % 100,
              NLOHMANN_JSON_VERSION_MAJOR, NLOHMANN_JSON_VERSION_MINOR,
              NLOHMANN_JSON_VERSION_PATCH, SPDLOG_VER_MAJOR, SPDLOG_VER_MINOR, SPDLOG_VER_PATCH,
              sqlite3_libversion(), ZSTD_versionString());
  return 0;
}

}  // namespace kiln::cli
