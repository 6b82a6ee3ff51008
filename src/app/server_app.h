// The composition root of `emporium serve` in embedded mode: opens one SQLite database per
// context under the data directory, applies migrations, wires the in-process bus, builds the
// router (platform routes plus every context's API) and runs the HTTP server.
//
// Lifecycle: Open() -> Start() -> ... -> Shutdown() -> (destructor). Shutdown drains HTTP
// first, then the bus, then closes the databases, so no acknowledged request is cut short.
// Thread-safety: Start/Shutdown/Wait from the owner thread; Shutdown may also come from the
// signal thread. Handlers run on the server's io threads.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "app/config.h"
#include "platform/context/context_module.h"
#include "platform/http/router.h"
#include "platform/sql/migrations.h"

namespace emporium::http {
class HttpServer;
}
namespace emporium::obs {
class MetricsRegistry;
class Logger;
}  // namespace emporium::obs
namespace emporium::sql {
class Database;
}
namespace emporium::gateway {
class Gateway;
}

namespace emporium::app {

// One context: its module and its own database.
struct ContextRuntime {
  std::unique_ptr<ContextModule> module;
  std::unique_ptr<sql::Database> database;  // open after ServerApp::Open
};

class ServerApp {
 public:
  // Opens the databases (creating data_dir), applies every migration and wires the bus and the
  // router. Nothing listens yet.
  static absl::StatusOr<std::unique_ptr<ServerApp>> Open(const Config& config);
  ~ServerApp();
  ServerApp(const ServerApp&) = delete;
  ServerApp& operator=(const ServerApp&) = delete;

  // Starts the bus relays, then the HTTP server.
  absl::Status Start();
  // The bound HTTP port (useful with server.port = 0).
  uint16_t port() const;
  // Graceful stop: HTTP drain (bounded by server.drain_timeout_ms), bus drain, databases
  // closed. Idempotent.
  void Shutdown();
  void Wait();

  const http::Router& router() const { return router_; }
  obs::MetricsRegistry& metrics() { return *metrics_; }

 private:
  explicit ServerApp(const Config& config);
  absl::Status OpenDatabases();
  absl::Status WireBus();
  absl::Status WireContexts();
  void AddPlatformRoutes();

  Config config_;
  std::unique_ptr<obs::MetricsRegistry> metrics_;
  std::unique_ptr<obs::Logger> logger_;
  std::vector<ContextRuntime> contexts_;
  std::unique_ptr<bus::BusRuntime> bus_;
  http::Router router_;
  std::unique_ptr<gateway::Gateway> gateway_;  // in front of router_; the only listener's entry
  http::Router gateway_router_;
  std::unique_ptr<http::HttpServer> server_;
  std::atomic<bool> bus_running_{false};
  std::atomic<bool> shut_down_{false};
};

}  // namespace emporium::app
