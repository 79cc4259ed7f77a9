// Benchmark: the web status target's REST API under load. The store is
// first filled directly (no master running) with N finished builds spread
// over 10 builders, each with one step; then a master with the `web`
// reporter starts on it, and `wrk -t2 -c16 -d10s --latency` (Debian
// package wrk) is run against /api/v2/builds?limit=50 and
// /api/v2/builders while the loop runs as under `kiln start`:
// requests/s and latency percentiles. The access log http.log is on, as it
// is by default.
//
//   bench_web_api [builds=10000] [seconds=10]

#include "bench_common.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdio>
#include <regex>
#include <sstream>
#include <thread>

using namespace kiln::bench;

namespace {

constexpr int kBuilders = 10;

uint16_t free_loopback_port() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

// The completion of a store call that returns nothing: the benchmark stops
// at the first error.
auto checked(const char* what) {
  return [what](kiln::store::Status status) {
    if (!status.ok()) die(std::string(what) + ": " + status.message);
  };
}

void fill_store(const fs::path& dir, int builds) {
  kiln::store::OpenOptions options;
  options.url = "sqlite:state.sqlite";
  options.base_dir = dir;
  options.mode = kiln::store::OpenMode::kCreate;
  auto opened = kiln::store::open_store(std::move(options));
  if (!opened.ok()) die(opened.status.message);
  auto& store = *opened.value;
  auto masterid = store.register_master_sync("bench-fill", 0);
  if (!masterid.ok()) die(masterid.status.message);
  std::vector<int64_t> builderids;
  for (int b = 0; b < kBuilders; ++b) {
    auto id = store.ensure_builder_sync("b" + std::to_string(b), std::string("builder ") + std::to_string(b),
                                        {"bench"});
    if (!id.ok()) die(id.status.message);
    builderids.push_back(id.value);
  }
  // Each phase is queued whole before it is waited for, so the store's
  // group commit batches it as a busy master's would be.
  std::vector<kiln::store::BuildsetIds> sets(static_cast<size_t>(builds));
  for (int i = 0; i < builds; ++i) {
    kiln::store::BuildsetRequest bs;
    bs.reason = "bench";
    bs.submitted_at = 1'700'000'000 + i;
    bs.builderids = {builderids[static_cast<size_t>(i % kBuilders)]};
    bs.sourcestamps.emplace_back();
    store.add_buildset(std::move(bs), [&sets, i](kiln::store::Result<kiln::store::BuildsetIds> r) {
      if (!r.ok()) die("add_buildset: " + r.status.message);
      sets[static_cast<size_t>(i)] = std::move(r.value);
    });
  }
  if (!store.wait().ok()) die("add_buildset");
  std::vector<int64_t> buildids(static_cast<size_t>(builds));
  for (int i = 0; i < builds; ++i) {
    const auto& [builderid, brid] = *sets[static_cast<size_t>(i)].brids.begin();
    store.add_build(builderid, brid, std::nullopt, masterid.value, 1'700'000'000 + i, "building",
                    [&buildids, i](kiln::store::Result<kiln::store::BuildIds> r) {
                      if (!r.ok()) die("add_build: " + r.status.message);
                      buildids[static_cast<size_t>(i)] = r.value.buildid;
                    });
  }
  if (!store.wait().ok()) die("add_build");
  std::vector<int64_t> stepids(static_cast<size_t>(builds));
  for (int i = 0; i < builds; ++i) {
    store.add_step(buildids[static_cast<size_t>(i)], "compile",
                   [&stepids, i](kiln::store::Result<kiln::store::StepIds> r) {
                     if (!r.ok()) die("add_step: " + r.status.message);
                     stepids[static_cast<size_t>(i)] = r.value.stepid;
                   });
  }
  if (!store.wait().ok()) die("add_step");
  for (int i = 0; i < builds; ++i) {
    const int results = i % 7 == 0 ? 2 : 0;
    const int64_t at = 1'700'000'000 + i;
    const auto& set = sets[static_cast<size_t>(i)];
    store.start_step(stepids[static_cast<size_t>(i)], at, checked("start_step"));
    store.finish_step(stepids[static_cast<size_t>(i)], results, false, at + 30, checked("finish_step"));
    store.set_build_state_string(buildids[static_cast<size_t>(i)], results ? "failed compile" : "build successful",
                                 checked("set_build_state_string"));
    store.finish_build(buildids[static_cast<size_t>(i)], results, at + 31, checked("finish_build"));
    store.complete_requests({set.brids.begin()->second}, results, at + 31, checked("complete_requests"));
    store.complete_buildset(set.bsid, results, at + 31, checked("complete_buildset"));
  }
  if (!store.wait().ok()) die("finishing the builds");
  store.set_master_active_sync(masterid.value, false, 0);
}

struct WrkFigures {
  double requests_per_s = -1;
  double p50_ms = -1, p90_ms = -1, p99_ms = -1;
  long requests = 0;
  long errors = 0;  // non-2xx answers and socket errors
  std::string output;
};

double to_ms(double value, const std::string& unit) {
  if (unit == "us") return value / 1000;
  if (unit == "s") return value * 1000;
  if (unit == "m") return value * 60000;
  return value;  // ms
}

WrkFigures run_wrk(uint16_t port, const std::string& path, int seconds) {
  const std::string command = "wrk -t2 -c16 -d" + std::to_string(seconds) + "s --latency 'http://127.0.0.1:" +
                              std::to_string(port) + path + "' 2>&1";
  WrkFigures f;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) die("cannot run wrk (Debian package wrk)");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) f.output.append(buf, n);
  if (::pclose(pipe) != 0) die("wrk failed (is the Debian package wrk installed?):\n" + f.output);
  std::smatch m;
  if (std::regex_search(f.output, m, std::regex(R"(Requests/sec:\s+([0-9.]+))"))) f.requests_per_s = std::stod(m[1]);
  if (std::regex_search(f.output, m, std::regex(R"((\d+) requests in)"))) f.requests = std::stol(m[1]);
  for (auto [label, out] : {std::pair{"50%", &f.p50_ms}, {"90%", &f.p90_ms}, {"99%", &f.p99_ms}}) {
    if (std::regex_search(f.output, m, std::regex(std::string(R"(\s)") + label + R"(\s+([0-9.]+)(us|ms|s|m)\b)"))) {
      *out = to_ms(std::stod(m[1]), m[2]);
    }
  }
  if (std::regex_search(f.output, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) f.errors += std::stol(m[1]);
  if (std::regex_search(f.output, m, std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))"))) {
    for (int i = 1; i <= 4; ++i) f.errors += std::stol(m[i]);
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int builds = argc > 1 ? std::atoi(argv[1]) : 10000;
  const int seconds = argc > 2 ? std::atoi(argv[2]) : 10;
  TempDir dir("kiln-bench-web");
  const uint16_t port = free_loopback_port();
  std::ostringstream yaml;
  yaml << "workers:\n  - {name: w1, type: local, max_builds: 1}\nbuilders:\n";
  for (int b = 0; b < kBuilders; ++b) {
    yaml << "  - {name: b" << b << ", workers: [w1], tags: [bench], steps: [{type: shell, name: compile, command: [\"true\"]}]}\n";
  }
  yaml << "reporters:\n  - {type: web, port: " << port << "}\n";
  write_text(dir.path() / "master.yaml", yaml.str());

  double t = now_s();
  fill_store(dir.path(), builds);
  std::printf("web_api: filled the store with %d finished builds on %d builders in %.2f s\n", builds, kBuilders,
              now_s() - t);

  BenchMaster master(dir.path());
  master.start();
  std::printf("web_api: the master serves http://127.0.0.1:%u/\n", port);

  struct Target {
    std::string path;
    WrkFigures figures;
  };
  std::vector<Target> targets = {{"/api/v2/builds?limit=50", {}}, {"/api/v2/builders", {}}};
  const double cpu_before = cpu_s(RUSAGE_SELF);
  std::thread load([&] {
    for (auto& target : targets) target.figures = run_wrk(port, target.path, seconds);
    master.loop().post([&] { master.stop_loop(); });
  });
  master.run(seconds * 2.0 * static_cast<double>(targets.size()) + 60);
  load.join();
  const double cpu = cpu_s(RUSAGE_SELF) - cpu_before;

  long requests = 0;
  for (const auto& target : targets) {
    const auto& f = target.figures;
    requests += f.requests;
    std::printf("web_api: GET %s: %.0f requests/s, latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms; %ld "
                "requests, %ld errors\n",
                target.path.c_str(), f.requests_per_s, f.p50_ms, f.p90_ms, f.p99_ms, f.requests, f.errors);
    if (f.requests_per_s < 0 || f.errors > 0) std::printf("%s\n", f.output.c_str());
  }
  std::printf("web_api: master CPU %.1f us per request (all threads)\n",
              requests > 0 ? cpu * 1e6 / static_cast<double>(requests) : 0.0);
  const auto& builds_figures = targets[0].figures;
  const auto& builders_figures = targets[1].figures;
  summary("REST API, 10,000 builds stored (wrk -t2 -c16)",
          format("builds?limit=50: %.0f req/s, p99 %.2f ms", builds_figures.requests_per_s, builds_figures.p99_ms) +
              format("; builders: %.0f req/s, p99 %.2f ms", builders_figures.requests_per_s, builders_figures.p99_ms),
          ">= 20,000 req/s, p99 <= 5 ms (Buildbot 453 req/s, p99 77 ms)");
  return 0;
}
