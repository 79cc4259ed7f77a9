// Benchmark: the web plugin's server-rendered pages at scale. A master with
// B builders (one `true` step each, every tenth `false`) and the web
// reporter runs two rounds of builds over every builder, each round on a
// change of its own (so grid and console have revisions with B builds
// each); then a client thread GETs each page R times over one keep-alive
// HTTP connection on loopback while the loop runs, and the median and p99
// of the whole request (sent to last byte read) are printed. A second
// master with W builders does the same for the waterfall alone.
//
//   bench_web_pages [B=4000] [R=40] [W=1000]

#include "bench_common.h"

#include "web/web_client.h"

#include <thread>

using namespace kiln::bench;

namespace {

std::string master_yaml(int builders, uint16_t port) {
  std::string yaml = "master: {collapse_requests: false}\nworkers:\n";
  for (int w = 1; w <= 4; ++w) yaml += "  - {name: w" + std::to_string(w) + ", type: local, max_builds: 4}\n";
  yaml += "builders:\n";
  for (int i = 0; i < builders; ++i) {
    yaml += "  - {name: builder-" + std::to_string(i) + ", workers: [w1, w2, w3, w4], tags: [" +
            (i % 2 ? "odd" : "even") + "], steps: [{type: shell, command: [\"" +
            (i % 10 == 9 ? "false" : "true") + "\"]}]}\n";
  }
  yaml += "reporters:\n  - {type: web, port: " + std::to_string(port) + "}\n";
  return yaml;
}

struct Timing {
  double median_ms, p99_ms, bytes;
};

// Starts B builders' master, runs `rounds` builds on each, then times the
// pages; returns (page, timing) in order.
std::vector<std::pair<std::string, Timing>> measure(int builders, int rounds, int requests,
                                                    const std::vector<std::string>& pages) {
  TempDir dir("kiln-bench-web-pages");
  const uint16_t port = kiln::testing::free_port();
  write_text(dir.path() / "master.yaml", master_yaml(builders, port));
  BenchMaster master(dir.path());
  master.start();

  int finished = 0;
  const int wanted = builders * rounds;
  master.engine().events().subscribe("builds/+/finished", [&](const std::string&, const json&) {
    if (++finished == wanted) {
      master.store().flush([&](kiln::store::Status) { master.stop_loop(); });
    }
  });
  const double start = now_s();
  for (int round = 0; round < rounds; ++round) {
    const std::string revision = "rev" + std::to_string(round);
    json stamp = {{"repository", "https://example.org/app.git"}, {"project", "app"},
                  {"branch", "main"}, {"revision", revision}, {"codebase", ""}};
    json change = stamp;
    change["author"] = "dev" + std::to_string(round) + " <dev@example.org>";
    change["comments"] = "change " + revision;
    master.engine().add_change(change, [&master, stamp, builders](kiln_status status, json value) mutable {
      if (status != KILN_OK) die("add_change: " + value.dump());
      stamp["changeids"] = json::array({value["changeid"]});
      json names = json::array();
      for (int i = 0; i < builders; ++i) names.push_back("builder-" + std::to_string(i));
      master.engine().add_buildset({{"builders", names}, {"reason", "bench"}, {"sourcestamps", {stamp}}},
                                   [](kiln_status s, json v) {
                                     if (s != KILN_OK) die("add_buildset: " + v.dump());
                                   });
    });
  }
  if (!master.run(1200)) die("builds timed out at " + std::to_string(finished) + " of " + std::to_string(wanted));
  std::printf("web_pages: %d builders, %d builds stored in %.1f s\n", builders, wanted, now_s() - start);

  std::vector<std::pair<std::string, Timing>> out;
  std::string failure;
  std::thread client([&] {
    try {
      kiln::testing::HttpConnection http(port);
      for (const auto& target : pages) {
        std::vector<double> samples;
        size_t bytes = 0;
        for (int i = 0; i < requests + 2; ++i) {
          const double t = now_s();
          auto reply = http.get(target);
          const double ms = (now_s() - t) * 1000.0;
          if (reply.status != 200) {
            failure = target + ": HTTP " + std::to_string(reply.status) + " " + reply.body.substr(0, 300);
            break;
          }
          bytes = reply.body.size();
          if (i >= 2) samples.push_back(ms);  // two untimed warm-ups
        }
        if (!failure.empty()) break;
        out.emplace_back(target, Timing{quantile(samples, 0.5), quantile(samples, 0.99),
                                        static_cast<double>(bytes)});
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    master.loop().post([&] { master.stop_loop(); });
  });
  master.run(3600);
  client.join();
  if (!failure.empty()) die(failure);
  return out;
}

void print(int builders, const std::vector<std::pair<std::string, Timing>>& timings) {
  for (const auto& [page, t] : timings) {
    std::printf("web_pages: %d builders %-40s median %7.2f ms  p99 %7.2f ms  %8.0f KiB\n", builders,
                page.c_str(), t.median_ms, t.p99_ms, t.bytes / 1024.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int builders = argc > 1 ? std::atoi(argv[1]) : 4000;
  const int requests = argc > 2 ? std::atoi(argv[2]) : 40;
  const int waterfall_builders = argc > 3 ? std::atoi(argv[3]) : 1000;

  const auto big = measure(builders, 2, requests,
                           {"/builders", "/builders?search=builder-12", "/builders?tag=odd",
                            "/waterfall", "/waterfall?failures_only=true", "/grid", "/tgrid",
                            "/console", "/one_line_per_build", "/rss"});
  print(builders, big);
  const auto small = measure(waterfall_builders, 2, requests, {"/waterfall"});
  print(waterfall_builders, small);

  double worst = 0;
  std::string worst_page;
  for (const auto& [page, t] : big) {
    if (t.median_ms > worst) worst = t.median_ms, worst_page = page;
  }
  char figure[256];
  std::snprintf(figure, sizeof figure,
                "builders %.1f ms, waterfall %.1f ms, grid %.1f ms, console %.1f ms (median); "
                "slowest %s %.1f ms",
                big[0].second.median_ms, big[3].second.median_ms, big[5].second.median_ms,
                big[7].second.median_ms, worst_page.c_str(), worst);
  summary("web pages, " + std::to_string(builders) + " builders", figure,
          "<= 50 ms per page (Buildbot: builders page ~5 s)");
  summary("waterfall, " + std::to_string(waterfall_builders) + " builders",
          format("median %.1f ms, p99 %.1f ms", small[0].second.median_ms, small[0].second.p99_ms),
          "<= 50 ms");
  return 0;
}
