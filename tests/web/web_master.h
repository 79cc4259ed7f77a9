#pragma once
// A real master (tests/schedulers' SchedulerMaster: engine, store, the
// local worker, std-steps, the force scheduler) with the web plugin
// loaded on a free loopback port, and HTTP/WebSocket calls made off the
// loop while the test pumps it.

#include "schedulers/scheduler_master.h"
#include "web/web_client.h"

#include <catch2/catch.hpp>

#include <future>
#include <filesystem>
#include <map>
#include <vector>
#include <string>
#include <utility>

namespace kiln::testing {

// Builders on local workers, all forced by `force`: `unit` writes stdout
// and stderr lines, `lint` fails, `slow` runs until it is stopped (two
// minutes, a line "tick N" every 0.2 s) on a worker that takes one build
// at a time (so a second request waits).
// `web_options` are more keys of the web reporter, as YAML lines at
// column 0 ("auth:\n  users: ...").
inline std::string web_master_yaml(uint16_t port, const std::string& web_options = "") {
  std::string options;
  size_t start = 0;
  while (start < web_options.size()) {
    size_t end = web_options.find('\n', start);
    if (end == std::string::npos) end = web_options.size();
    options += "    " + web_options.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return R"yaml(
workers:
  - {name: w1, type: local, max_builds: 2}
  - {name: w2, type: local, max_builds: 1}
builders:
  - name: unit
    workers: [w1]
    tags: [fast]
    steps:
      - {type: shell, name: hello, command: "printf 'line 1\nline 2\n'; echo oops >&2"}
      - {type: shell, name: count, command: "seq 1 5000"}
  - name: lint
    workers: [w1]
    steps:
      - {type: shell, name: check, command: "false"}
  - name: slow
    workers: [w2]
    steps:
      - {type: shell, name: wait, command: "i=0; while [ $i -lt 600 ]; do i=$((i+1)); echo tick $i; sleep 0.2; done"}
schedulers:
  - {name: force, type: force, builders: [unit, lint, slow]}
reporters:
  - type: web
    port: )yaml" + std::to_string(port) + "\n" + options;
}

class WebMaster {
 public:
  explicit WebMaster(uint16_t port = free_port()) : WebMaster("", port) {}
  // `more_yaml`: top-level keys added to the master's config (policies:
  // ...); `plugin_dirs`: test plugins loaded besides the built ones.
  explicit WebMaster(const std::string& web_options, uint16_t port = free_port(),
                     const std::string& more_yaml = "",
                     std::vector<std::filesystem::path> plugin_dirs = {})
      : port_(port),
        master_(web_master_yaml(port, web_options) + more_yaml, kJan31_2330, std::move(plugin_dirs)) {
    master_.start();
  }

  SchedulerMaster& master() { return master_; }
  uint16_t port() const { return port_; }

  // Runs fn on a thread of its own while the loop turns, and returns what
  // it returned.
  template <class F>
  auto off_loop(F fn) {
    auto result = std::async(std::launch::async, std::move(fn));
    REQUIRE(master_.run_until([&] {
      return result.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    }));
    return result.get();
  }

  HttpReply get(const std::string& target) {
    return off_loop([this, target] { return HttpConnection(port_).get(target); });
  }

  HttpReply request(const std::string& method, const std::string& target, const std::string& body,
                    const std::map<std::string, std::string>& headers) {
    return off_loop([this, method, target, body, headers] {
      return HttpConnection(port_).request(method, target, body, headers);
    });
  }

  // A JSON-RPC call; `headers` carry credentials ("Authorization", "Cookie").
  HttpReply rpc(const std::string& target, const std::string& method,
                const nlohmann::json& params = nlohmann::json::object(),
                const std::map<std::string, std::string>& headers = {}) {
    const std::string body =
        nlohmann::json{{"jsonrpc", "2.0"}, {"method", method}, {"params", params}, {"id", 1}}
            .dump();
    return request("POST", target, body, headers);
  }

  // Forces a build of `builder` over JSON-RPC and waits until it finished;
  // returns the build as the REST API shows it.
  nlohmann::json force_and_finish(const std::string& builder) {
    const size_t finished = master_.finished_builds().size();
    auto reply = rpc("/api/v2/forceschedulers/force", "force",
                     {{"builderNames", {builder}}, {"reason", "test"}, {"owner", "ann"}});
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    REQUIRE(master_.run_until([&] { return master_.finished_builds().size() > finished; }));
    const auto buildid = master_.finished_builds().back()["buildid"];
    auto build = get("/api/v2/builds/" + buildid.dump()).json();
    return build["builds"][0];
  }

 private:
  uint16_t port_;
  SchedulerMaster master_;
};

}  // namespace kiln::testing
