// `kiln upgrade-master DIR`: migrate the store named by master.db.

#include "cli/commands.h"
#include "master/master_loading.h"
#include "store/store.h"

#include "config/master_config.h"

#include <cstdio>
#include <iostream>

namespace kiln::cli {

namespace fs = std::filesystem;

int upgrade_master_command(const Args& args) {
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: kiln upgrade-master DIR\n");
    return 2;
  }
  // Only the document is needed (master.db); plugins need not load to migrate.
  auto read = config::read_config_document(master::master_yaml_path(args[0]));
  if (!read.document) {
    for (const auto& d : read.errors) std::fprintf(stderr, "%s\n", d.to_string().c_str());
    return 1;
  }
  std::string db = "sqlite:state.sqlite";
  const auto& root = read.document->root;
  if (root.contains("master") && root["master"].contains("db") && root["master"]["db"].is_string()) {
    db = root["master"]["db"].get<std::string>();
  }
  fs::path dir = read.document->main_file.parent_path();
  if (dir.empty()) dir = ".";
  auto status = store::upgrade_master(db, dir, std::cout);
  if (!status.ok()) {
    std::fprintf(stderr, "kiln upgrade-master: %s\n", status.message.c_str());
    return 1;
  }
  return 0;
}

}  // namespace kiln::cli
