// http_bench_server: serves a fixed ~1 KB JSON document at GET /bench.json through the full
// Router + server middleware path (request ids, traceparent, metrics), for the wrk-vs-nginx
// benchmark. Stops cleanly on SIGINT or SIGTERM.
//
//   http_bench_server --port 8080 --threads 2
#include <csignal>
#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "common/json.h"
#include "platform/http/router.h"
#include "platform/http/server.h"
#include "platform/obs/metrics.h"

namespace {

constexpr int kProductCount = 6;

// About 1 KB of catalog-like JSON, built once.
std::string BenchBody() {
  emporium::Json products = emporium::Json::array();
  for (int i = 0; i < kProductCount; ++i) {
    products.push_back({{"id", "prod_0192f3a17c2e7b3d9f1a" + std::to_string(i)},
                        {"title", "Merino wool crew-neck sweater, size M"},
                        {"price", {{"amount_minor", 8900 + i}, {"currency", "EUR"}}},
                        {"in_stock", i % 2 == 0}});
  }
  return emporium::DumpJson({{"data", products}, {"next_cursor", nullptr}});
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Emporium HTTP benchmark server"};
  int port = 8080;
  int threads = 0;
  app.add_option("--port", port, "TCP port (0 = ephemeral)")->check(CLI::Range(0, 65535));
  app.add_option("--threads", threads, "io threads (0 = one per core)")->check(CLI::Range(0, 256));
  CLI11_PARSE(app, argc, argv);

  // Block the stop signals before any thread starts so only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const std::string body = BenchBody();
  emporium::http::Router router;
  router.AddSync("GET", "/bench.json", [&body](const emporium::http::Request&) {
    emporium::http::Response response;
    response.headers.Set("Content-Type", "application/json");
    response.body = body;
    return response;
  });

  emporium::obs::MetricsRegistry metrics;
  emporium::http::ServerOptions options;
  options.port = static_cast<uint16_t>(port);
  options.io_threads = threads;
  options.metrics = &metrics;
  emporium::http::HttpServer server(options, router);
  absl::Status started = server.Start();
  if (!started.ok()) {
    std::fprintf(stderr, "http_bench_server: %s\n", started.ToString().c_str());
    return 1;
  }
  std::printf("http_bench_server listening on port %u (%zu-byte body)\n", server.port(),
              body.size());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server.Shutdown(absl::Seconds(2));
  return 0;
}
