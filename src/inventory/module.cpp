#include "inventory/module.h"

#include <utility>

#include "inventory/api.h"
#include "inventory/messages.h"
#include "inventory/store.h"

namespace emporium::inventory {

InventoryModule::~InventoryModule() { Stop(); }

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
