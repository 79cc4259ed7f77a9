// The `sendchange` change source of kiln-sendchange.so, loaded for real and
// driven over loopback HTTP by a real client, with a fake engine that
// records what reaches change_add.

#include "config/json_schema.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/event_loop.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;
using nlohmann::json;
using namespace std::chrono_literals;

// What the plugin did, shared with the context (which the instance owns).
struct Recorder {
  std::mutex mutex;  // log() comes from the listener's thread too
  std::vector<std::string> logs;
  std::vector<json> changes;
  // When set, change_add answers this error instead of a changeid.
  std::optional<std::pair<kiln_status, std::string>> refuse;
  // When true, change_add keeps its callback for the test to call.
  bool hold = false;
  std::vector<kiln_ctx::JsonCallback> held;

  std::string all_logs() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& l : logs) out += l + "\n";
    return out;
  }
};

class FakeEngine final : public kiln::plugin::InstanceContext {
 public:
  FakeEngine(kiln::util::EventLoop& loop, std::shared_ptr<Recorder> rec)
      : InstanceContext(loop, nullptr, KILN_KIND_CHANGE_SOURCE, "incoming"), rec_(std::move(rec)) {}

  void log(kiln_log_level, std::string_view message) override {
    std::lock_guard lock(rec_->mutex);
    rec_->logs.emplace_back(message);
  }
  kiln_status change_add(std::string_view change_json, JsonCallback cb) override {
    rec_->changes.push_back(json::parse(change_json));
    if (rec_->hold) {
      rec_->held.push_back(std::move(cb));
      return KILN_OK;
    }
    std::string answer = json{{"changeid", 100 + rec_->changes.size()}}.dump();
    kiln_status status = KILN_OK;
    if (rec_->refuse) {
      status = rec_->refuse->first;
      answer = rec_->refuse->second;
    }
    // Answered later on the loop, as the engine does after its store call.
    if (cb) loop()->post([cb, status, answer] { cb(status, answer); });
    return KILN_OK;
  }

 protected:
  void context_facts(json& facts) const override { facts["common"] = json::object(); }

 private:
  std::shared_ptr<Recorder> rec_;
};

struct Reply {
  unsigned status = 0;
  std::string body;
  std::string www_authenticate;
  json value() const { return json::parse(body, nullptr, false); }
};

// One HTTP/1.1 request, blocking, with a deadline.
Reply http_request(uint16_t port, http::verb method, const std::string& target,
                   const std::string& body, const std::optional<std::string>& authorization) {
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(5s);
  stream.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  if (authorization) req.set(http::field::authorization, *authorization);
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return {res.result_int(), res.body(), std::string(res[http::field::www_authenticate])};
}

// "change:changepw" in Basic form.
const std::string kDefaultLogin = "Basic Y2hhbmdlOmNoYW5nZXB3";
// "alice:s3cret"
const std::string kAliceLogin = "Basic YWxpY2U6czNjcmV0";

class Listener {
 public:
  explicit Listener(json config) {
    const auto library =
        std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-sendchange.so";
    if (auto problem = registry.load_library(library)) {
      error = problem->message;
      return;
    }
    const auto* type = registry.find(KILN_KIND_CHANGE_SOURCE, "sendchange");
    if (type == nullptr) {
      error = "no change source type sendchange";
      return;
    }
    config["port"] = config.value("port", 0);
    auto violations = kiln::config::validate_against_schema(type->schema, config);
    if (!violations.empty()) {
      error = violations.front().instance_pointer + ": " + violations.front().message;
      return;
    }
    kiln::config::apply_schema_defaults(type->schema, config);
    if (auto rejected = registry.check_with_plugin(KILN_KIND_CHANGE_SOURCE, "sendchange", config)) {
      error = *rejected;
      return;
    }
    instance = kiln::plugin::Instance::create(*type, std::make_unique<FakeEngine>(loop, rec),
                                              config, error);
  }
  ~Listener() { instance.reset(); }

  // Starts it; the port it listens on comes from its log line.
  kiln_status start() {
    kiln_error err;
    kiln_status status =
        instance->vtable<kiln_change_source_vtable>()->start(instance->handle(), &err);
    error = err.message;
    std::smatch m;
    const std::string logs = rec->all_logs();
    if (std::regex_search(logs, m, std::regex(R"(http://[^:]+:(\d+)/change)"))) {
      port = static_cast<uint16_t>(std::stoi(m[1]));
    }
    return status;
  }

  // The request runs on a thread of its own while this one runs the loop,
  // as the master would: the listener needs the loop to answer.
  Reply send(http::verb method, const std::string& target, const std::string& body,
             const std::optional<std::string>& authorization = kDefaultLogin) {
    auto reply = std::async(std::launch::async, [&] {
      return http_request(port, method, target, body, authorization);
    });
    REQUIRE(run_until([&] { return reply.wait_for(0s) == std::future_status::ready; }));
    return reply.get();
  }
  Reply post(const json& change, const std::optional<std::string>& authorization = kDefaultLogin) {
    return send(http::verb::post, "/change", change.dump(), authorization);
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (loop.poll() == 0) std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  kiln::util::EventLoop loop;
  kiln::plugin::Registry registry;
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  std::unique_ptr<kiln::plugin::Instance> instance;
  std::string error;
  uint16_t port = 0;
};

const json kChange = {{"who", "Ann <ann@example.org>"},
                      {"files", {"src/a.c", "doc/b.md"}},
                      {"comments", "fix the frobnicator"},
                      {"project", "frob"},
                      {"repository", "https://example.org/frob.git"},
                      {"revision", "abc123"},
                      {"branch", "main"},
                      {"category", "bugfix"},
                      {"codebase", "core"},
                      {"properties", {{"ticket", "42"}}},
                      {"links", {"https://example.org/frob/commit/abc123"}},
                      {"vc", "git"},
                      {"when", 1700000000.75}};

}  // namespace

TEST_CASE("a change POSTed with the right login reaches change_add and is answered with its id") {
  Listener l(json::object());
  REQUIRE(l.error.empty());
  REQUIRE(l.start() == KILN_OK);
  REQUIRE(l.port != 0);

  Reply r = l.post(kChange);
  INFO(r.body);
  CHECK(r.status == 200);
  CHECK(r.value() == json{{"changeid", 101}});
  REQUIRE(l.rec->changes.size() == 1);
  CHECK(l.rec->changes[0] == json{{"author", "Ann <ann@example.org>"},
                                  {"files", {"src/a.c", "doc/b.md"}},
                                  {"comments", "fix the frobnicator"},
                                  {"project", "frob"},
                                  {"repository", "https://example.org/frob.git"},
                                  {"revision", "abc123"},
                                  {"branch", "main"},
                                  {"category", "bugfix"},
                                  {"codebase", "core"},
                                  {"properties", {{"ticket", "42"}}},
                                  {"revlink", "https://example.org/frob/commit/abc123"},
                                  {"src", "git"},
                                  {"when_timestamp", 1700000000}});
  // Keep-alive or not, a second change on a new connection works too.
  CHECK(l.post({{"who", "bob"}, {"revision", 1234}}).value() == json{{"changeid", 102}});
  CHECK(l.rec->changes[1]["revision"] == "1234");
}

TEST_CASE("the answer is sent only once change_add has completed") {
  Listener l(json::object());
  REQUIRE(l.start() == KILN_OK);
  l.rec->hold = true;
  auto reply = std::async(std::launch::async, [&] {
    return http_request(l.port, http::verb::post, "/change", kChange.dump(), kDefaultLogin);
  });
  REQUIRE(l.run_until([&] { return !l.rec->held.empty(); }));
  // The change is with the engine; the client still waits.
  l.run_until([] { return false; }, 200ms);
  CHECK(reply.wait_for(0s) == std::future_status::timeout);
  l.rec->held[0](KILN_OK, R"({"changeid": 7})");
  REQUIRE(l.run_until([&] { return reply.wait_for(0s) == std::future_status::ready; }));
  Reply r = reply.get();
  CHECK(r.status == 200);
  CHECK(r.value() == json{{"changeid", 7}});
}

TEST_CASE("a wrong or missing login is answered 401 and adds no change") {
  Listener l(json{{"user", "alice"}, {"password", "s3cret"}});
  REQUIRE(l.start() == KILN_OK);
  for (const std::optional<std::string>& auth :
       {std::optional<std::string>(kDefaultLogin),          // Buildbot's default, changed here
        std::optional<std::string>("Basic YWxpY2U6czNjcmV4"),  // alice:s3crex
        std::optional<std::string>("Basic YWxpY2U="),          // alice, no password
        std::optional<std::string>("Bearer s3cret"), std::optional<std::string>()}) {
    Reply r = l.post(kChange, auth);
    INFO(auth.value_or("(none)"));
    CHECK(r.status == 401);
    CHECK_THAT(r.www_authenticate, Catch::StartsWith("Basic realm="));
    CHECK_THAT(r.value().value("error", ""), Catch::Contains("wrong user or password"));
  }
  CHECK(l.rec->changes.empty());
  CHECK(l.post(kChange, kAliceLogin).status == 200);
  CHECK(l.rec->changes.size() == 1);
  CHECK_THAT(l.rec->all_logs(), Catch::Contains("refused POST /change from 127.0.0.1"));
}

TEST_CASE("a password given as its crypt hash accepts the password and nothing else") {
  // `openssl passwd -6 -salt kilnsalt s3cret`
  Listener l(json{{"user", "alice"},
                  {"password", "$6$kilnsalt$L/yHRzBIlN3kM4VSnCbHHddLWbN42x5ryNZgxgH.3JNZ0EhKFXEy0OTOcsoHqBfNX2D3raoQjAtQ0Qgkm5qNX1"}});
  REQUIRE(l.start() == KILN_OK);
  CHECK(l.post(kChange, "Basic YWxpY2U6czNjcmV4").status == 401);  // alice:s3crex
  CHECK(l.post(kChange, kAliceLogin).status == 200);
  CHECK(l.post(kChange, kAliceLogin).status == 200);  // remembered, still right
  CHECK(l.rec->changes.size() == 2);
}

TEST_CASE("malformed bodies are answered 400 naming the problem, and the listener keeps serving") {
  Listener l(json::object());
  REQUIRE(l.start() == KILN_OK);
  struct Case {
    std::string body;
    std::string message;
  };
  json bad_files = kChange;
  bad_files["files"] = {"a.c", 3};
  json bad_props = kChange;
  bad_props["properties"] = json::array({1});
  json typo = kChange;
  typo["brnach"] = "main";
  json no_who = kChange;
  no_who.erase("who");
  json bad_when = kChange;
  bad_when["when"] = "yesterday";
  json bad_branch = kChange;
  bad_branch["branch"] = json::object();
  const std::vector<Case> cases = {
      {"{\"who\": ", "not valid JSON"},
      {"[1, 2]", "must be a JSON object"},
      {bad_files.dump(), "field 'files[1]' must be a string, not number"},
      {bad_props.dump(), "field 'properties' must be an object, not array"},
      {typo.dump(), "unknown field 'brnach'"},
      {no_who.dump(), "field 'who' is required"},
      {bad_when.dump(), "field 'when' must be Unix seconds"},
      {bad_branch.dump(), "field 'branch' must be a string, not object"},
  };
  for (const auto& c : cases) {
    Reply r = l.send(http::verb::post, "/change", c.body);
    INFO(c.body << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK_THAT(r.value().value("error", ""), Catch::Contains(c.message));
  }

  // Over 1 MiB: refused without reading it all.
  json huge = kChange;
  huge["comments"] = std::string((1 << 20) + 10, 'x');
  Reply big = l.post(huge);
  CHECK(big.status == 400);
  CHECK_THAT(big.value().value("error", ""), Catch::Contains("1 MiB"));

  CHECK(l.rec->changes.empty());
  CHECK(l.post(kChange).status == 200);
  CHECK(l.rec->changes.size() == 1);
}

TEST_CASE("other methods and paths are refused, and a change the engine refuses is a 400") {
  Listener l(json::object());
  REQUIRE(l.start() == KILN_OK);
  CHECK(l.send(http::verb::get, "/change", "").status == 405);
  CHECK(l.send(http::verb::post, "/changes", kChange.dump()).status == 404);

  l.rec->refuse = std::make_pair(KILN_ERR_INVALID_ARGUMENT,
                                 std::string("change field 'properties': bad name 'a b'"));
  json change = kChange;
  change["properties"] = {{"a b", 1}};
  Reply r = l.post(change);
  CHECK(r.status == 400);
  CHECK_THAT(r.value().value("error", ""), Catch::Contains("bad name 'a b'"));
}

TEST_CASE("with a prefix, files lose it, files outside are dropped, and a change with none is ignored") {
  Listener l(json{{"prefix", "trunk/"}});
  REQUIRE(l.start() == KILN_OK);
  json change = kChange;
  change["files"] = {"trunk/src/a.c", "branches/x/b.c", "trunk/README"};
  REQUIRE(l.post(change).status == 200);
  REQUIRE(l.rec->changes.size() == 1);
  CHECK(l.rec->changes[0]["files"] == json{"src/a.c", "README"});

  change["files"] = {"branches/x/b.c"};
  Reply ignored = l.post(change);
  CHECK(ignored.status == 200);
  CHECK(ignored.value()["changeid"].is_null());
  CHECK_THAT(ignored.value().value("ignored", ""), Catch::Contains("trunk/"));
  CHECK(l.rec->changes.size() == 1);
}

TEST_CASE("a port already in use fails start with the address named and the defaults are Buildbot's") {
  boost::asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  const int port = taken.local_endpoint().port();
  Listener l(json{{"port", port}});
  REQUIRE(l.error.empty());
  CHECK(l.start() == KILN_ERR_RETRY);
  CHECK_THAT(l.error, Catch::Contains("127.0.0.1:" + std::to_string(port)));

  const auto* type = l.registry.find(KILN_KIND_CHANGE_SOURCE, "sendchange");
  REQUIRE(type != nullptr);
  json config = json::object();
  kiln::config::apply_schema_defaults(type->schema, config);
  CHECK(config["port"] == 9989);
  CHECK(config["interface"] == "127.0.0.1");
  CHECK(config["user"] == "change");
  CHECK(config["password"] == "changepw");

  Listener bad(json{{"interface", "localhost:80"}});
  CHECK_THAT(bad.error, Catch::Contains("not an IP address"));
}
