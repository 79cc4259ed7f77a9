// The data API's reads: Store::query with filters, order, paging and parent
// scopes, and the errors for fields it does not know.

#include "store/fixtures.h"
#include "store/store.h"

#include <catch2/catch.hpp>

using namespace kiln::store;
using kiln::testing::ok;
using nlohmann::json;

namespace {

// Two builders; "unit" has builds 1..6 with results 0,1,2,0,1,2 started at
// 10, 20, ... 60; "lint" has one build.
struct Builds {
  std::unique_ptr<Store> store = kiln::testing::open_memory_store();
  int64_t master = ok(store->register_master_sync("m", 1));
  int64_t unit = ok(store->ensure_builder_sync("unit", std::nullopt, {"fast", "linux"}));
  int64_t lint = ok(store->ensure_builder_sync("lint-linux", std::nullopt, {"fast"}));
  int64_t docs = ok(store->ensure_builder_sync("docs", "the manual", {}));

  Builds() {
    for (int i = 0; i < 6; ++i) add(unit, 10 * (i + 1), i % 3);
    add(lint, 15, 0);
  }
  void add(int64_t builder, int64_t started_at, int results) {
    BuildsetRequest r;
    r.builderids = {builder};
    r.submitted_at = started_at;
    int64_t brid = ok(store->add_buildset_sync(r)).brids.at(builder);
    auto b =
        ok(store->add_build_sync(builder, brid, std::nullopt, master, started_at, ""));
    REQUIRE(store->finish_build_sync(b.buildid, results, started_at + 5).ok());
  }
  std::vector<int64_t> numbers(const ResultSpec& spec) {
    std::vector<int64_t> out;
    for (const auto& b : ok(store->query_sync(Resource::kBuilds, spec))) {
      out.push_back(b["number"]);
    }
    return out;
  }
  std::vector<std::string> builder_names(const ResultSpec& spec) {
    std::vector<std::string> out;
    for (const auto& b : ok(store->query_sync(Resource::kBuilders, spec))) {
      out.push_back(b["name"]);
    }
    return out;
  }
};

}  // namespace

TEST_CASE("query filters builds with each operator within a parent builder") {
  Builds w;
  ResultSpec spec;
  spec.parent = Scope{"builderid", w.unit};
  REQUIRE(w.numbers(spec) == std::vector<int64_t>{1, 2, 3, 4, 5, 6});

  auto with = [&](Filter f) {
    ResultSpec s = spec;
    s.filters = {std::move(f)};
    return w.numbers(s);
  };
  REQUIRE(with({"results", FilterOp::kEq, {2}}) == std::vector<int64_t>{3, 6});
  REQUIRE(with({"results", FilterOp::kNe, {0}}) == std::vector<int64_t>{2, 3, 5, 6});
  REQUIRE(with({"results", FilterOp::kIn, {0, 1}}) == std::vector<int64_t>{1, 2, 4, 5});
  REQUIRE(with({"results", FilterOp::kNe, {0, 1}}) == std::vector<int64_t>{3, 6});
  REQUIRE(with({"number", FilterOp::kLt, {3}}) == std::vector<int64_t>{1, 2});
  REQUIRE(with({"number", FilterOp::kLe, {"3"}}) == std::vector<int64_t>{1, 2, 3});
  REQUIRE(with({"started_at", FilterOp::kGt, {40}}) == std::vector<int64_t>{5, 6});
  REQUIRE(with({"started_at", FilterOp::kGe, {40}}) == std::vector<int64_t>{4, 5, 6});
  REQUIRE(with({"complete", FilterOp::kEq, {"true"}}).size() == 6);
  REQUIRE(with({"complete", FilterOp::kEq, {false}}).empty());
  REQUIRE(with({"workerid", FilterOp::kEq, {nullptr}}).size() == 6);

  ResultSpec all;
  all.filters = {{"results", FilterOp::kEq, {0}}};
  REQUIRE(ok(w.store->query_sync(Resource::kBuilds, all)).size() == 3);
}

TEST_CASE(
    "query orders by several fields, descending with '-', and pages with limit and "
    "offset") {
  Builds w;
  ResultSpec spec;
  spec.order = {"-number"};
  spec.parent = Scope{"builderid", w.unit};
  REQUIRE(w.numbers(spec) == std::vector<int64_t>{6, 5, 4, 3, 2, 1});
  spec.order = {"results", "-started_at"};
  REQUIRE(w.numbers(spec) == std::vector<int64_t>{4, 1, 5, 2, 6, 3});
  spec.limit = 2;
  spec.offset = 1;
  REQUIRE(w.numbers(spec) == std::vector<int64_t>{1, 5});
  spec.limit.reset();
  spec.offset = 4;
  REQUIRE(w.numbers(spec) == std::vector<int64_t>{6, 3});
  spec.limit = 0;
  REQUIRE(w.numbers(spec).empty());
}

TEST_CASE("query filters text with contains and lists of tags by membership") {
  Builds w;
  ResultSpec spec;
  spec.filters = {{"name", FilterOp::kContains, {"linux"}}};
  REQUIRE(w.builder_names(spec) == std::vector<std::string>{"lint-linux"});
  spec.filters = {{"tags", FilterOp::kContains, {"fast"}}};
  REQUIRE(w.builder_names(spec) == std::vector<std::string>{"unit", "lint-linux"});
  spec.filters = {{"tags", FilterOp::kContains, {"linux"}}};
  REQUIRE(w.builder_names(spec) == std::vector<std::string>{"unit"});
  spec.filters = {{"description", FilterOp::kEq, {nullptr}}};
  spec.order = {"name"};
  REQUIRE(w.builder_names(spec) == std::vector<std::string>{"lint-linux", "unit"});

  ResultSpec by_id;
  by_id.filters = {{"builderid", FilterOp::kEq, {w.docs}}};
  json docs = ok(w.store->query_sync(Resource::kBuilders, by_id));
  REQUIRE(docs.size() == 1);
  REQUIRE(docs[0] == json{{"builderid", w.docs},
                          {"name", "docs"},
                          {"description", "the manual"},
                          {"description_format", nullptr},
                          {"description_html", nullptr},
                          {"projectid", nullptr},
                          {"masterids", json::array()},
                          {"tags", json::array()}});
}

TEST_CASE("a filter, order or scope on an unknown field is an error naming the field") {
  Builds w;
  ResultSpec spec;
  spec.filters = {{"colour", FilterOp::kEq, {"red"}}};
  auto r = w.store->query_sync(Resource::kBuilds, spec);
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message,
               Catch::Contains("'colour'") && Catch::Contains("builds"));

  ResultSpec order;
  order.order = {"-colour"};
  r = w.store->query_sync(Resource::kSteps, order);
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message, Catch::Contains("'colour'"));

  ResultSpec scope;
  scope.parent = Scope{"stepid", 1};
  r = w.store->query_sync(Resource::kBuilds, scope);
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message, Catch::Contains("'stepid'"));
}

TEST_CASE("filter values of the wrong type are refused, never spliced into SQL") {
  Builds w;
  ResultSpec spec;
  spec.filters = {{"number", FilterOp::kEq, {"1 OR 1=1"}}};
  auto r = w.store->query_sync(Resource::kBuilds, spec);
  REQUIRE(r.status.code == StatusCode::kInvalidArgument);
  REQUIRE_THAT(r.status.message, Catch::Contains("'number'"));

  // A text value with SQL in it is just text that matches nothing.
  spec.filters = {{"state_string", FilterOp::kEq, {"' OR 1=1 --"}}};
  REQUIRE(ok(w.store->query_sync(Resource::kBuilds, spec)).empty());

  spec.filters = {{"number", FilterOp::kLt, {1, 2}}};
  REQUIRE(w.store->query_sync(Resource::kBuilds, spec).status.code ==
          StatusCode::kInvalidArgument);
  spec.filters = {{"properties", FilterOp::kEq, {"x"}}};
  REQUIRE(w.store->query_sync(Resource::kBuilds, spec).status.code ==
          StatusCode::kInvalidArgument);
  spec.filters = {};
  spec.limit = -1;
  REQUIRE(w.store->query_sync(Resource::kBuilds, spec).status.code ==
          StatusCode::kInvalidArgument);
}

TEST_CASE("the changes of a build are those its buildset was made for") {
  Builds w;
  auto change = [&](std::string rev) {
    ChangeRecord c;
    c.author = "a";
    c.branch = "main";
    c.revision = std::move(rev);
    c.when_timestamp = 5;
    return ok(w.store->add_change_sync(c));
  };
  int64_t c1 = change("r1");
  int64_t c2 = change("r2");
  int64_t c3 = change("r3");
  BuildsetRequest r;
  r.builderids = {w.unit};
  SourceStampSpec ss;
  ss.branch = "main";
  ss.revision = "r2";
  ss.changeids = {c1, c2};
  r.sourcestamps = {ss};
  int64_t brid = ok(w.store->add_buildset_sync(r)).brids.at(w.unit);
  auto build = ok(w.store->add_build_sync(w.unit, brid, std::nullopt, w.master, 99, ""));

  ResultSpec spec;
  spec.parent = Scope{"buildid", build.buildid};
  std::vector<int64_t> ids;
  for (const auto& c : ok(w.store->query_sync(Resource::kChanges, spec))) {
    ids.push_back(c["changeid"]);
  }
  REQUIRE(ids == std::vector<int64_t>{c1, c2});

  ResultSpec builds_of;
  builds_of.parent = Scope{"changeid", c2};
  json builds = ok(w.store->query_sync(Resource::kBuilds, builds_of));
  REQUIRE(builds.size() == 1);
  REQUIRE(builds[0]["buildid"] == build.buildid);
  builds_of.parent = Scope{"changeid", c3};
  REQUIRE(ok(w.store->query_sync(Resource::kBuilds, builds_of)).empty());
}

TEST_CASE("every resource answers a plain listing with Buildbot's field names") {
  Builds w;
  const std::map<Resource, std::vector<std::string>> fields{
      {Resource::kBuilds,
       {"buildid", "number", "builderid", "buildrequestid", "workerid", "masterid",
        "started_at", "complete", "complete_at", "results", "state_string"}},
      {Resource::kBuildrequests,
       {"buildrequestid", "buildsetid", "builderid", "priority", "claimed", "claimed_at",
        "claimed_by_masterid", "complete", "results", "submitted_at", "complete_at",
        "waited_for"}},
      {Resource::kBuildsets,
       {"bsid", "external_idstring", "reason", "submitted_at", "complete", "complete_at",
        "results", "parent_buildid", "parent_relationship", "sourcestamps"}},
      {Resource::kMasters, {"masterid", "name", "active", "last_active"}},
  };
  for (const auto& [resource, names] : fields) {
    INFO(resource_name(resource));
    json rows = ok(w.store->query_sync(resource, {}));
    REQUIRE_FALSE(rows.empty());
    for (const auto& name : names) {
      INFO(name);
      REQUIRE(rows[0].contains(name));
    }
    REQUIRE(rows[0].size() == names.size());
  }
  REQUIRE(resource_from_name("buildrequests") == Resource::kBuildrequests);
  REQUIRE_FALSE(resource_from_name("nothing").has_value());
  REQUIRE(filter_op_from_name("contains") == FilterOp::kContains);
}

TEST_CASE("latest and latest_complete pick the newest build and newest finished build of each builder") {
  Builds w;
  // A running build on lint: newest there, but not finished.
  BuildsetRequest r;
  r.builderids = {w.lint};
  r.submitted_at = 70;
  int64_t brid = ok(w.store->add_buildset_sync(r)).brids.at(w.lint);
  ok(w.store->add_build_sync(w.lint, brid, std::nullopt, w.master, 70, ""));

  auto picked = [&](const char* flag, json value, FilterOp op = FilterOp::kEq) {
    ResultSpec spec;
    spec.filters = {{flag, op, {std::move(value)}}};
    spec.order = {"builderid", "number"};
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const auto& b : ok(w.store->query_sync(Resource::kBuilds, spec))) {
      REQUIRE_FALSE(b.contains(flag));
      out.emplace_back(b["builderid"], b["number"]);
    }
    return out;
  };
  using Pairs = std::vector<std::pair<int64_t, int64_t>>;
  REQUIRE(picked("latest", true) == Pairs{{w.unit, 6}, {w.lint, 2}});
  REQUIRE(picked("latest", "true") == Pairs{{w.unit, 6}, {w.lint, 2}});
  REQUIRE(picked("latest_complete", true) == Pairs{{w.unit, 6}, {w.lint, 1}});
  REQUIRE(picked("latest", false).size() == 6);
  REQUIRE(picked("latest", true, FilterOp::kNe).size() == 6);

  ResultSpec bad;
  bad.filters = {{"latest", FilterOp::kGt, {1}}};
  auto refused = w.store->query_sync(Resource::kBuilds, bad);
  REQUIRE_FALSE(refused.ok());
  REQUIRE_THAT(refused.status.message, Catch::Contains("latest"));
  bad.filters = {{"latest", FilterOp::kEq, {"maybe"}}};
  REQUIRE_FALSE(w.store->query_sync(Resource::kBuilds, bad).ok());
}

TEST_CASE("a list field left out of fields is not read") {
  Builds w;
  ResultSpec spec;
  spec.fields = {"builderid", "name"};
  for (const auto& b : ok(w.store->query_sync(Resource::kBuilders, spec))) {
    REQUIRE_FALSE(b.contains("tags"));
    REQUIRE_FALSE(b.contains("masterids"));
  }
  spec.fields = {"name", "tags"};
  auto rows = ok(w.store->query_sync(Resource::kBuilders, spec));
  REQUIRE(rows[0]["tags"] == json::array({"fast", "linux"}));
  REQUIRE_FALSE(rows[0].contains("masterids"));
}

TEST_CASE("tags of a long page of builders are read in one pass and match those read per row") {
  std::unique_ptr<Store> store = kiln::testing::open_memory_store();
  for (int i = 0; i < 100; ++i) {
    std::vector<std::string> tags;
    if (i % 2) tags.push_back("odd");
    if (i % 3 == 0) tags.push_back("three");
    ok(store->ensure_builder_sync("b" + std::to_string(i), std::nullopt, tags));
  }
  ResultSpec all;
  const json many = ok(store->query_sync(Resource::kBuilders, all));
  REQUIRE(many.size() == 100);
  for (const auto& b : many) {
    ResultSpec one;
    one.filters = {{"builderid", FilterOp::kEq, {b["builderid"]}}};
    INFO(b["name"]);
    REQUIRE(ok(store->query_sync(Resource::kBuilders, one))[0]["tags"] == b["tags"]);
  }
  REQUIRE(many[3]["tags"] == json::array({"odd", "three"}));
  REQUIRE(many[2]["tags"] == json::array());
}
