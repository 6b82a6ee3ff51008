// The platform's own routes: /healthz, /readyz, /metrics, /api/v1/openapi.json, the
// dead-letter admin endpoints and POST /api/v1/admin/audit (the cross-context invariant audit,
// run on its own thread, one at a time). Context APIs are added by their own modules.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "platform/http/router.h"

namespace emporium::bus {
class BusRuntime;
}
namespace emporium::obs {
class MetricsRegistry;
}

namespace emporium::app {

// One readiness check: a name ("inventory.migrations") and a function that answers "" when
// ready or a short reason when not. Checks must be thread-safe.
using ReadinessCheck = std::pair<std::string, std::function<std::string()>>;

struct PlatformRouteDeps {
  obs::MetricsRegistry* metrics = nullptr;  // required
  bus::BusRuntime* bus = nullptr;           // required for the dead-letter routes
  std::vector<ReadinessCheck> readiness_checks;
  std::string admin_api_key;  // empty: admin routes answer 401
  std::string data_dir;       // the audit route audits the databases here
  std::string psp_url;        // and compares the ledger with this PSP; empty: skipped
};

void AddPlatformRoutes(http::Router& router, PlatformRouteDeps deps);

}  // namespace emporium::app
