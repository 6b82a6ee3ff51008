// The contract between a bounded context and the composition root (src/app).
//
// Each context exposes one ContextModule (src/<context>/module.h). The app opens the
// context's own database, installs the bus schema and the context's migrations, then calls
// Wire() so the context can subscribe its consumers and add its HTTP routes, starts the bus,
// calls Start() (background workers such as sweepers), serves, and on shutdown calls Stop()
// before the bus and the database close. The app builds each module with its own typed options,
// so this interface carries only what every context needs.
//
// Thread-safety: Wire/Start/Stop are called from the app's owner thread, in that order.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "platform/bus/bus_runtime.h"
#include "platform/http/router.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::obs {
class MetricsRegistry;
}

namespace emporium {

// What the composition root lends a context for its lifetime.
struct ContextDeps {
  sql::Database* database = nullptr;  // the context's own database, migrations applied
  bus::BusRuntime* bus = nullptr;     // subscribe before the bus starts
  obs::MetricsRegistry* metrics = nullptr;
  // Staff routes accept `Authorization: Bearer <admin_api_key>` until accounts land.
  std::string admin_api_key;
};

class ContextModule {
 public:
  virtual ~ContextModule() = default;
  // The context's name: its database file stem and its migrations component ("inventory").
  virtual std::string_view name() const = 0;
  virtual std::vector<sql::Migration> Migrations() const = 0;
  // Subscribes consumers and adds routes. Called once, before the bus starts.
  virtual absl::Status Wire(const ContextDeps& deps, http::Router& router) = 0;
  // Starts background work; called after the bus has started.
  virtual absl::Status Start() { return absl::OkStatus(); }
  // Stops background work and refuses new commands; called before the bus stops.
  virtual void Stop() {}
  // "" when ready, else a short reason; polled by /readyz. Must be thread-safe.
  virtual std::string ReadinessProblem() const { return ""; }
  // Whether the context's database may make its commits durable on a sync thread behind the
  // writer (sql::SqliteOptions::deferred_sync; the storage.deferred_sync setting): its
  // WriteDone callbacks then run on that thread, after later batches may have committed, and
  // must not read the database expecting to see only their own batch.
  virtual bool SupportsDeferredSync() const { return false; }
};

}  // namespace emporium
