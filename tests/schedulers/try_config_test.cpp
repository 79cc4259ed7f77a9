// What checkconfig says of a `try` scheduler's settings: every error at
// once, each at its line (the jobs themselves are tested end to end in
// tests/integration/try_test.cpp).

#include "util/config_errors.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

TEST_CASE("checkconfig refuses a try scheduler without a port and one that lists a user twice or a bad interface") {
  const std::string errors = kiln::testing::config_errors(
      "workers:\n"
      "  - {name: w1, type: local}\n"
      "builders:\n"
      "  - {name: b, workers: [w1], steps: [{type: shell, command: 'true'}]}\n"
      "schedulers:\n"
      "  - {name: t1, type: try, builders: [b], userpass: [{user: a, password: p}]}\n"
      "  - {name: t2, type: try, builders: [b], port: 8031, userpass: [{user: a, password: p}, {user: a, password: q}]}\n"
      "  - {name: t3, type: try, builders: [b], port: 8032, interface: localhost, userpass: [{user: a, password: p}]}\n"
      "  - {name: ok, type: try, builders: [b], port: 0, userpass: [{user: a, password: '$6$x$y'}]}\n");
  INFO(errors);
  CHECK(std::count(errors.begin(), errors.end(), '\n') == 3);
  CHECK_THAT(errors, Catch::Contains("master.yaml:6:") && Catch::Contains("port"));
  CHECK_THAT(errors, Catch::Contains("master.yaml:7:") && Catch::Contains("userpass lists user 'a' twice"));
  CHECK_THAT(errors, Catch::Contains("master.yaml:8:") && Catch::Contains("'localhost' is not an IP address"));
}
