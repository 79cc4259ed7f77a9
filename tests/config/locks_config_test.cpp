// `locks:` declarations and their uses by builders and steps, as the
// checker reads and refuses them.

#include "config/master_config.h"
#include "config_test_support.h"

#include <catch2/catch.hpp>

using namespace kiln::config;
using namespace kiln::config::testing;

namespace {

const std::string kWorkers =
    "workers:\n"
    "  - {name: w1, type: local}\n"
    "  - {name: w2, type: local}\n";

CheckResult check(const TempDir& dir, const std::string& text, const ComponentCatalog& catalog) {
  ReadResult read = read_config_document(dir.write("master.yaml", text));
  REQUIRE(read.document);
  return check_master_config(*read.document, catalog);
}

}  // namespace

TEST_CASE("locks and their uses are read with Buildbot's defaults: master lock, max_count 1, counting access") {
  FakeCatalog catalog;
  TempDir dir;
  auto checked = check(dir,
                       kWorkers +
                           "locks:\n"
                           "  - {name: db}\n"
                           "  - {name: disk, type: worker, max_count: 2, max_count_for_worker: {w2: 4}}\n"
                           "builders:\n"
                           "  - name: b\n"
                           "    workers: [w1]\n"
                           "    locks: [db]\n"
                           "    steps:\n"
                           "      - {type: shell, command: make, locks: [{name: disk, access: exclusive}, "
                           "{name: db, count: 1}]}\n",
                       catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.config);
  const MasterConfig& c = *checked.config;
  REQUIRE(c.locks.size() == 2);
  CHECK(c.locks[0].name == "db");
  CHECK_FALSE(c.locks[0].per_worker);
  CHECK(c.locks[0].max_count == 1);
  CHECK(c.locks[1].per_worker);
  CHECK(c.locks[1].max_count == 2);
  CHECK(c.locks[1].max_count_for_worker.at("w2") == 4);
  REQUIRE(c.builders[0].locks.size() == 1);
  CHECK(c.builders[0].locks[0] == LockAccess{"db", false, 1});
  // Step locks stay core keys of the step, read when the step starts.
  auto step_uses = lock_accesses(c.builders[0].steps[0].common.at("locks"));
  REQUIRE(step_uses.size() == 2);
  CHECK(step_uses[0] == LockAccess{"disk", true, 1});
  CHECK(step_uses[1] == LockAccess{"db", false, 1});
  CHECK_FALSE(c.builders[0].steps[0].config.contains("locks"));
}

TEST_CASE("a use of an undeclared lock is told the closest declared name, for builders and steps") {
  FakeCatalog catalog;
  TempDir dir;
  auto checked = check(dir,
                       kWorkers +
                           "locks:\n"
                           "  - {name: database}\n"
                           "builders:\n"
                           "  - name: b\n"
                           "    workers: [w1]\n"
                           "    locks: [databse]\n"
                           "    steps:\n"
                           "      - {type: shell, command: make, locks: [{name: datbase, access: exclusive}]}\n",
                       catalog);
  INFO(describe(checked.errors));
  REQUIRE(checked.errors.size() == 2);
  CHECK(checked.errors[0].path == "builders[0].locks[0]");
  CHECK(checked.errors[0].message == "unknown lock 'databse'; did you mean 'database'?");
  CHECK(checked.errors[0].location.line == 9);
  CHECK(checked.errors[1].path == "builders[0].steps[0].locks[0]");
  CHECK(checked.errors[1].message == "unknown lock 'datbase'; did you mean 'database'?");
}

TEST_CASE("a lock use that could never be granted, a bad lock declaration or a duplicate name is refused") {
  FakeCatalog catalog;
  TempDir dir;
  auto checked = check(dir,
                       kWorkers +
                           "locks:\n"
                           "  - {name: db, max_count: 2}\n"
                           "  - {name: db}\n"
                           "  - {name: disk, type: worker, max_count_for_worker: {w3: 2}}\n"
                           "  - {name: slots, max_count_for_worker: {w1: 2}}\n"
                           "  - {name: bad, type: cluster, max_count: 0}\n"
                           "builders:\n"
                           "  - name: b\n"
                           "    workers: [w1]\n"
                           "    locks: [{name: db, count: 3}, {name: db, access: sometimes}]\n"
                           "    steps: [{type: shell, command: make}]\n",
                       catalog);
  const std::string all = describe(checked.errors);
  INFO(all);
  CHECK_FALSE(checked.config);
  CHECK(all.find("locks[1].name: duplicate lock name 'db'") != std::string::npos);
  CHECK(all.find("locks[2].max_count_for_worker.w3: unknown worker 'w3'") != std::string::npos);
  CHECK(all.find("max_count_for_worker needs a worker lock (type: worker)") != std::string::npos);
  CHECK(all.find("locks[4].type") != std::string::npos);
  CHECK(all.find("locks[4].max_count") != std::string::npos);
  CHECK(all.find("builders[0].locks[0]: count 3 of lock 'db' is more than its max_count 2") != std::string::npos);
  CHECK(all.find("builders[0].locks[1].access") != std::string::npos);
}
