// InventoryModule: the inventory context as the composition root sees it (ContextModule).
//
// Wire() starts the inventory service (engine + command queue) on the context's database,
// subscribes the command consumer "inventory.commands" to every inventory command type and adds
// the HTTP routes; Start() starts the queue pump and the expiry sweeper; Stop() stops them and
// the engine (after the HTTP server has drained, before the bus stops).
//
// Thread-safety: as ContextModule (Wire/Start/Stop from the owner thread); ReadinessProblem from
// any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "inventory/service.h"
#include "platform/context/context_module.h"

namespace emporium::inventory {

inline constexpr std::string_view kCommandConsumer = "inventory.commands";

struct InventoryModuleOptions {
  size_t shard_count = 1;
  int64_t default_reservation_ttl_ms = 15 * 60 * 1000;
  int64_t sweep_interval_ms = 1000;  // real time between expiry sweeps; 0 disables
  // Commands waiting per shard; beyond it a command is answered Unavailable (kQueueFullCode:
  // HTTP 503 + Retry-After; a bus command stays in the durable queue and is dispatched later).
  size_t shard_queue_capacity = EngineOptions{}.queue_capacity;
  int64_t batch_linger_us = EngineOptions{}.batch_linger_us;
  // Settled reservations unchanged this long leave the shards' memory (EngineOptions).
  int64_t settled_retention_ms = EngineOptions{}.settled_retention_ms;
  const Clock* clock = &SystemClock::Instance();  // must outlive the module
};

class InventoryModule final : public ContextModule {
 public:
  explicit InventoryModule(InventoryModuleOptions options) : options_(options) {}
  ~InventoryModule() override;

  std::string_view name() const override { return "inventory"; }
  std::vector<sql::Migration> Migrations() const override;
  absl::Status Wire(const ContextDeps& deps, http::Router& router) override;
  absl::Status Start() override;
  void Stop() override;
  std::string ReadinessProblem() const override;
  // The shards pipeline their batches (EngineOptions::pipeline_batches): one batch's fsync
  // overlaps the next one's statements. Their callbacks only hand completions to the shard.
  bool SupportsDeferredSync() const override { return true; }

  // The service after Wire() (tests, tools); nullptr before.
  InventoryService* service() { return service_.get(); }

 private:
  const InventoryModuleOptions options_;
  std::unique_ptr<InventoryService> service_;
  // Scrape-time gauges over the engine's stats, removed before service_ goes.
  obs::MetricsRegistry* metrics_ = nullptr;
  std::vector<int64_t> gauge_ids_;
};

}  // namespace emporium::inventory
