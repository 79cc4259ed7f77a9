// The web reporter's `port` key as master.yaml gives it, checked by the
// real plugin through the core's config checking.

#include "config/master_config.h"
#include "master/master_loading.h"
#include "plugin/registry.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <string>

namespace {

// Every diagnostic of a master whose only reporter is `{type: web, port: PORT}`.
std::string problems_with_port(const std::string& port) {
  kiln::testing::TempDir dir("kiln-web-config");
  std::ofstream(dir / "master.yaml") << "reporters:\n  - {type: web, port: " << port << "}\n";
  kiln::plugin::Registry registry;
  kiln::master::register_builtins(registry);
  for (const auto& e : registry.load_directories({KILN_BUILD_PLUGIN_DIR})) FAIL(e.to_string());
  auto read = kiln::config::read_config_document(dir / "master.yaml");
  for (const auto& d : read.errors) FAIL(d.to_string());
  auto checked = kiln::config::check_master_config(*read.document, registry);
  std::string out;
  for (const auto& d : checked.errors) out += d.to_string() + "\n";
  return out;
}

}  // namespace

TEST_CASE("port takes a number, HOST:PORT, an IPv6 HOST in brackets or Buildbot's tcp:PORT:interface=ADDR") {
  for (const char* good : {"8010", "0", "\"127.0.0.1:8010\"", "\"0.0.0.0:0\"", "\"[::1]:8010\"",
                           "\"tcp:8010\"", "\"tcp:8010:interface=127.0.0.1\""}) {
    INFO(good);
    REQUIRE(problems_with_port(good).empty());
  }
}

TEST_CASE("a port that is no address is refused naming the reporter and the value") {
  const std::string too_big = problems_with_port("70000");
  REQUIRE_THAT(too_big, Catch::Contains("reporters"));
  REQUIRE_THAT(too_big, Catch::Contains("70000"));
  REQUIRE_THAT(problems_with_port("\"localhost:http\""), Catch::Contains("'http' is not a port number"));
  REQUIRE_THAT(problems_with_port("\":8010\""), Catch::Contains("names no host"));
  REQUIRE_THAT(problems_with_port("\"tcp:8010:backlog=5\""), Catch::Contains("interface="));
  REQUIRE_THAT(problems_with_port("true"), Catch::Contains("port"));
}
