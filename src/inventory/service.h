// Inventory application service: the shard engine plus everything around it that makes its
// commands effectively-once and its events transactional.
//
// Bus commands: the consumer handler (AcceptCommand) runs inside the bus's write job on the
// inventory database, together with the inbox insert. It must not wait for the engine (the
// engine commits through the same database writer: waiting would deadlock), so it only
// validates the command and inserts it into the durable `command_queue` table. After that
// batch commits, a commit listener wakes the queue pump, which reads the queued rows and
// submits them to the engine. The engine's batch transaction then deletes the queue row,
// writes the ledger/stock/reservation changes and publishes the command's events and reply to
// the outbox — atomically. A redelivered message is stopped by the inbox; a row the pump
// dispatches twice (a failed batch retried) is stopped by the row delete (0 rows => skipped).
// A crash loses nothing: unapplied rows stay queued and are dispatched again at startup.
//
// HTTP commands go straight to the engine (Submit) and publish their events in the same batch
// transaction. Expiry: a sweeper thread calls the engine's SweepExpired every
// sweep_interval_ms (real time); what is due is decided by the injected Clock.
//
// Thread-safety: InventoryService is thread-safe. Create, Start and Stop from the owner thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "inventory/model.h"
#include "inventory/shard_engine.h"
#include "inventory/store.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::inventory {

struct ServiceOptions {
  EngineOptions engine;  // its batch_hook is the service's
  int64_t default_reservation_ttl_ms = 15 * 60 * 1000;
  // Sweeper period (real time); 0 disables the sweeper (SweepExpired() still works).
  int64_t sweep_interval_ms = 1000;
  // The queue pump re-reads the command queue at least this often, even without a wake-up.
  int64_t queue_poll_interval_ms = 500;
  // Most queued commands read per pump round, and most dispatched and not yet answered.
  size_t queue_fetch_max = 1024;
  size_t queue_in_flight_max = 8192;
};

class InventoryService {
 public:
  // Starts the engine on `db` (migrated, bus schema installed). `db` and `clock` must outlive
  // the service.
  static absl::StatusOr<std::unique_ptr<InventoryService>> Create(sql::Database& db,
                                                                  const Clock& clock,
                                                                  ServiceOptions options);
  ~InventoryService();  // Stop()s
  InventoryService(const InventoryService&) = delete;
  InventoryService& operator=(const InventoryService&) = delete;

  // Starts the queue pump (dispatching whatever a previous run left queued) and the sweeper.
  absl::Status Start();
  // Stops the sweeper and the pump, then the engine (queued engine work is finished).
  // Idempotent.
  void Stop();

  // The bus consumer handler for every inventory command type (see the header comment).
  // A malformed command is consumed with an invalid_request reply (if it asked for one)
  // rather than retried.
  absl::Status AcceptCommand(sql::Transaction& transaction, const bus::Envelope& envelope);

  // Direct commands (HTTP, tests, benchmarks): `done` runs on an engine thread once the
  // command's effects and events are durable (or it failed with no effect).
  void Submit(Command command, CommandCallback done, CommandOrigin origin = {});

  // A staff request recorded under `key` (see CommandOrigin::idempotency_key): its request and
  // response JSON; nullopt when none was applied under that key.
  struct StaffRecord {
    std::string request_json;
    std::string response_json;
  };
  absl::StatusOr<std::optional<StaffRecord>> FindStaffRequest(const std::string& key);
  CommandResult Execute(Command command);

  absl::Status AddLocation(const Location& location);
  absl::StatusOr<std::vector<Location>> Locations();
  // Committed stock rows of up to kAvailabilitySkusMax SKUs.
  absl::StatusOr<std::vector<StockLevel>> Availability(const std::vector<Sku>& skus);
  absl::StatusOr<std::optional<Reservation>> FindReservation(const ReservationId& id);
  // Expires what is due now; waits for the commits.
  absl::StatusOr<std::vector<ReservationId>> SweepExpired();

  int64_t default_reservation_ttl_ms() const { return options_.default_reservation_ttl_ms; }
  const Clock& clock() const { return clock_; }
  ShardEngine& engine() { return *engine_; }
  // "" while running; a reason otherwise.
  std::string ReadinessProblem() const;
  // Commands in the durable queue not yet applied (reads the database).
  absl::StatusOr<int64_t> QueuedCommandCount();

 private:
  struct Pump;
  InventoryService(sql::Database& db, const Clock& clock, ServiceOptions options);
  absl::Status PublishBatch(sql::Transaction& transaction, const BatchView& view);
  void RunPump();
  void DrainQueue();
  void RunSweeper();

  sql::Database& db_;
  const Clock& clock_;
  const ServiceOptions options_;
  InventoryStore store_;
  std::unique_ptr<ShardEngine> engine_;
  std::shared_ptr<Pump> pump_;  // shared with the database's commit listener, which outlives us
};

}  // namespace emporium::inventory
