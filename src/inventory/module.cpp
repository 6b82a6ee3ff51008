#include "inventory/module.h"

#include <utility>

#include "inventory/api.h"
#include "inventory/messages.h"
#include "inventory/store.h"
#include "platform/obs/metrics.h"

namespace emporium::inventory {

InventoryModule::~InventoryModule() {
  Stop();
  for (int64_t id : gauge_ids_) metrics_->RemoveCallbackGauge(id);
}

std::vector<sql::Migration> InventoryModule::Migrations() const { return InventoryMigrations(); }

absl::Status InventoryModule::Wire(const ContextDeps& deps, http::Router& router) {
  if (deps.database == nullptr || deps.bus == nullptr) {
    return absl::InvalidArgumentError("inventory: database and bus are required");
  }
  if (service_) return absl::FailedPreconditionError("inventory: already wired");
  ServiceOptions options;
  options.engine.shard_count = options_.shard_count;
  options.engine.queue_capacity = options_.shard_queue_capacity;
  options.engine.batch_linger_us = options_.batch_linger_us;
  options.engine.settled_retention_ms = options_.settled_retention_ms;
  options.default_reservation_ttl_ms = options_.default_reservation_ttl_ms;
  options.sweep_interval_ms = options_.sweep_interval_ms;
  absl::StatusOr<std::unique_ptr<InventoryService>> service =
      InventoryService::Create(*deps.database, *options_.clock, options);
  if (!service.ok()) return service.status();
  service_ = *std::move(service);
  InventoryService* raw = service_.get();
  absl::Status subscribed =
      deps.bus->Subscribe(std::string(kCommandConsumer), *deps.database, messages::CommandTypes(),
                          [raw](sql::Transaction& transaction, const bus::Envelope& envelope) {
                            return raw->AcceptCommand(transaction, envelope);
                          });
  if (!subscribed.ok()) return subscribed;
  AddInventoryRoutes(router, *service_, ApiOptions{deps.admin_api_key});
  if (deps.metrics != nullptr) {
    metrics_ = deps.metrics;
    // What a shard keeps in memory and what eviction costs (see docs/architecture.md).
    struct EngineGauge {
      std::string_view name;
      std::string_view help;
      int64_t EngineStats::*field;
    };
    const EngineGauge gauges[] = {
        {"emporium_inventory_reservations_resident",
         "reservations the shards hold in memory (live ones and recently settled ones)",
         &EngineStats::resident_reservations},
        {"emporium_inventory_reservations_evicted",
         "settled reservations evicted from memory since start",
         &EngineStats::evicted_reservations},
        {"emporium_inventory_evicted_record_entries",
         "64-bit hashes kept for reservations and orders not in memory",
         &EngineStats::evicted_record_entries},
        {"emporium_inventory_fault_in_reads",
         "batches that read evicted reservations back from the database since start",
         &EngineStats::fault_in_reads},
        {"emporium_inventory_batches_committed", "shard batches committed since start",
         &EngineStats::batches_committed},
        {"emporium_inventory_queue_full_rejections", "commands answered inventory_busy since start",
         &EngineStats::queue_full_rejections},
    };
    for (const EngineGauge& gauge : gauges) {
      gauge_ids_.push_back(metrics_->AddCallbackGauge(
          gauge.name, gauge.help, {},
          [raw, field = gauge.field] { return raw->engine().stats().*field; }));
    }
  }
  return absl::OkStatus();
}

absl::Status InventoryModule::Start() {
  if (!service_) return absl::FailedPreconditionError("inventory: Start before Wire");
  return service_->Start();
}

void InventoryModule::Stop() {
  if (service_) service_->Stop();
}

std::string InventoryModule::ReadinessProblem() const {
  return service_ ? service_->ReadinessProblem() : "inventory not wired";
}

}  // namespace emporium::inventory
