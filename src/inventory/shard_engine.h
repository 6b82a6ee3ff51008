// The hot-SKU engine: one writer thread per SKU shard (hash(SKU) % shard_count).
//
// Commands for a shard go into its bounded queue. The writer pops up to batch_commands_max of
// them, applies them in arrival order to its in-memory InventoryState (the pure model), then
// persists the batch's ledger entries, changed stock rows and changed reservations in ONE
// durable write through the Database port, and only after that commit answers each command.
// When fewer commands are queued than the last batch held, the writer first waits up to
// EngineOptions::batch_linger_us for that many (closed-loop callers answered together come
// back together), so they share one commit.
// A flash sale on one SKU is thus one thread draining a queue: no lock waits, no retries, no
// oversell (the model refuses what the stock cannot cover). If the commit fails, the shard
// reloads its state from the database and every command of the batch is answered with the
// error: nothing is acknowledged that is not durable.
//
// Pipelining (EngineOptions::pipeline_batches): the writer hands a batch to the database
// without waiting and goes on with the next, applied on top of it; batches are answered in
// order, each once its own commit is durable. A batch built on one that was not committed
// refuses to commit (the failed batch's job marks the shard poisoned, a failed COMMIT shows in
// WriteStats::batches_failed), every batch after a failed one is answered with an error, and
// the shard reloads once none is in flight.
//
// Routing: stock commands by SKU; Reserve by its lines' SKUs, which must all fall in one
// shard (with shard_count = 1, the embedded default, they always do; a cross-shard reserve is
// refused with FailedPrecondition — a two-phase reserve is future work), except that a Reserve
// whose id a shard already holds goes to that shard (a replay or a conflict is answered where
// the id lives, never taken for a new reservation elsewhere); reservation and order
// commands by an in-memory index filled when the reservation / allocation is applied. A Reserve
// that `replaces` a reservation held by another shard is applied as a Release there, then (once
// that committed) the Reserve in its own shard; a failed release fails the command unapplied.
//
// Eviction: a settled reservation (released, expired, allocation-cancelled, shipped,
// delivered) that no batch changed for EngineOptions::settled_retention_ms (Clock time) is
// dropped from its shard's memory after a batch, at most evict_per_batch_max per batch. The
// shard keeps only a compact record: 64-bit hashes of the evicted ids and of their order ids.
// Before applying a batch the shard makes every reservation and order its commands name either
// resident or proven absent: a name that is not resident and whose hash is in the record is
// read back from the database (fault-in: ONE read per batch, only when needed; a hash
// collision just reads a row that is not there), with every reservation of the orders found,
// so each outcome is exactly what it was without eviction. A new id costs a hash lookup, no
// read. Start-up (and the reload after a failed commit) loads only live reservations fully and
// the compact record of the settled ones. With shard_count > 1 the routing index keeps full ids
// only for resident reservations, and hash -> shard for evicted ones (a colliding hash of
// another shard keeps its full id).
//
// Expiry: SweepExpired() (or the optional background sweeper) expires every reservation due at
// the Clock's now. An Allocate that arrives after the expiry time loses even if the sweep has
// not run yet (the model expires the reservation instead), so there is exactly one winner.
//
// Events: EngineOptions::batch_hook runs inside the batch's write transaction, after the
// ledger/stock/reservation rows, with every applied command, its origin and result, and the
// totals of every SKU the batch changed. The service publishes its events (outbox) and consumes
// the durable command-queue rows there, so effects, events and a bus command's consumption
// commit together or not at all. A hook error fails the whole batch like a failed commit.
//
// Thread-safety: ShardEngine is thread-safe. Callbacks run on a shard's writer thread (or
// inline in Submit when the command is rejected before queueing) and must be quick; they must
// not block on another command of the engine.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "inventory/model.h"
#include "inventory/store.h"
#include "platform/sql/database.h"

namespace emporium::inventory {

inline constexpr int64_t kReservationTtlMaxMs = 7 * 24 * 3600 * 1000LL;
// Longest EngineOptions::batch_linger_us accepted (a tenth of a second).
inline constexpr int64_t kBatchLingerMaxUs = 100'000;

struct BatchView;  // below

// The answer to a command that finds its shard's queue full: Unavailable (retryable: the
// command had no effect) carrying this error code. The HTTP API answers 503 with
// Retry-After: kQueueFullRetryAfterSeconds; a bus command stays in the durable command queue
// and is dispatched again later.
inline constexpr std::string_view kQueueFullCode = "inventory_busy";
inline constexpr int64_t kQueueFullRetryAfterSeconds = 1;
// True for the queue-full answer above.
bool IsQueueFull(const absl::Status& status);

struct EngineOptions {
  size_t shard_count = 1;
  // Commands waiting per shard (the bound of the in-memory queue); Submit answers the
  // queue-full Unavailable (kQueueFullCode) beyond it.
  size_t queue_capacity = 65'536;
  // Most commands applied and committed together.
  size_t batch_commands_max = 1024;
  // Group-commit gathering: when fewer commands are queued than the previous batch held, the
  // writer waits up to this long (real time) for that many before taking the next batch.
  // Closed-loop callers (a blocking handler, a saga step) submit again as soon as they are
  // answered; sharing one commit costs less CPU per command than splitting them over two. The
  // trade-off: a command can wait this much longer when fewer callers come back. 0: never.
  int64_t batch_linger_us = 200;
  // Batches a shard may have written and not yet durable at once (>= 1). With 2, the shard
  // applies and writes its next batch while the previous one's commit is being made durable
  // (with SqliteOptions::deferred_sync its fsync overlaps the next batch's statements); every
  // answer still waits for its own batch's durable commit, and batches are answered in order.
  // With free slots and at least 16 commands queued, the shard splits them over the slots,
  // so that closed-loop callers answered together form groups whose commits overlap instead
  // of all waiting behind one fsync. 1: one batch at a time.
  size_t pipeline_batches = 2;
  // Most reservations one shard expires per sweep.
  size_t expire_per_sweep_max = 10'000;
  // Background sweeper period (real time); 0 disables it, SweepExpired() still works.
  int64_t sweep_interval_ms = 0;
  // Settled reservations unchanged for this long (Clock time) are evicted from memory after a
  // batch, and read back by the batch that names one again. 0: evicted after the first batch
  // that follows their last change.
  int64_t settled_retention_ms = 10 * 60 * 1000;
  // Most reservations one shard evicts after a batch (bounds the work a batch adds).
  size_t evict_per_batch_max = 1000;
  // Bits kept of the 64-bit hashes that record evicted ids (1..64). Tests force collisions
  // with a few; production keeps 64.
  int evicted_hash_bits = 64;
  // Runs the full InventoryState::CheckInvariants() after every batch and aborts the process
  // on a violation. O(shard size) per batch: for tests.
  bool verify_invariants_each_batch = false;
  // Runs in every batch's write transaction (see the header comment); optional.
  std::function<absl::Status(sql::Transaction&, const BatchView&)> batch_hook;
};

// The commands the engine accepts (the service layer maps wire messages onto these).
namespace cmd {
struct Receive {
  Sku sku;
  LocationId location;
  int64_t quantity = 0;
  std::string reference;
};
struct Adjust {
  Sku sku;
  LocationId location;
  int64_t delta = 0;
  std::string reference;
};
struct Reserve {
  ReservationId id;
  std::vector<LineRequest> lines;
  std::string region;
  int64_t ttl_ms = 0;  // 1 .. kReservationTtlMaxMs
  // Optional: the reservation this one replaces, released in the same command (see
  // InventoryState::Reserve). When it lives in another shard than the new lines, the engine
  // first releases it there (durably) and then reserves; otherwise both happen in one batch.
  ReservationId replaces{};
};
struct Extend {
  ReservationId id;
  int64_t ttl_ms = 0;  // new expiry = now + ttl_ms
};
struct Release {
  ReservationId id;
};
struct Allocate {
  ReservationId id;
  OrderId order_id;
};
struct CancelAllocation {
  OrderId order_id;
};
struct Ship {
  OrderId order_id;
  std::string shipment_id;
  std::vector<LineRequest> lines;
};
struct Deliver {
  OrderId order_id;
};
struct Return {
  OrderId order_id;
  std::string return_id;
  std::vector<LineRequest> lines;
};
}  // namespace cmd

using Command =
    std::variant<cmd::Receive, cmd::Adjust, cmd::Reserve, cmd::Extend, cmd::Release, cmd::Allocate,
                 cmd::CancelAllocation, cmd::Ship, cmd::Deliver, cmd::Return>;

using Outcome = std::variant<std::monostate, StockOutcome, ReserveOutcome, ExtendOutcome,
                             ReleaseOutcome, AllocateOutcome, CancelAllocationOutcome, ShipOutcome,
                             DeliverOutcome, ReturnOutcome>;

struct CommandResult {
  // Not OK: the command had no effect (queue full, engine stopped, commit failed, cross-shard
  // reserve). OK: `outcome` holds the business outcome of the command's kind, durable.
  absl::Status status;
  Outcome outcome;
  std::vector<Sku> short_skus;    // Reserve: kInsufficientStock
  std::vector<Sku> unknown_skus;  // Reserve: kUnknownSku
  // Reserve with `replaces`: true when this command released the replaced reservation (the
  // kReleased entries are in `entries`; the service publishes inventory.released for it).
  bool released_replaced = false;
  // Reserve: kReserved / kAlreadyReserved; Extend, Release, Allocate: the reservation after
  // the command, when it exists.
  std::optional<Reservation> reservation;
  std::vector<LedgerEntry> entries;    // what the command appended to the ledger
  std::vector<ReservationId> expired;  // SweepExpired only
};
using CommandCallback = std::function<void(CommandResult)>;

// Where a command came from, handed back to the batch hook.
struct CommandOrigin {
  // Not empty: the id of the durable command-queue row (a bus command's message id) the batch
  // must consume.
  std::string queue_id;
  // The serialized bus envelope of a queued command (for replies and causation); else empty.
  std::string envelope;
  // Not empty: a staff request's Idempotency-Key (scoped by route) and its canonical request
  // JSON, recorded by the batch hook with the answer when the command applies.
  std::string idempotency_key;
  std::string request_json;
};

// One SKU's stock summed over its locations, after the batch.
struct SkuTotals {
  Sku sku;
  int64_t on_hand = 0;
  int64_t reserved = 0;
  int64_t allocated = 0;
  int64_t available() const { return on_hand - reserved - allocated; }
};

struct AppliedCommand {
  const Command* command = nullptr;  // nullptr: an expiry sweep
  const CommandOrigin* origin = nullptr;
  const CommandResult* result = nullptr;
};

// What a batch did, for the batch hook. Pointers are valid during the hook call only.
struct BatchView {
  int64_t now_ms = 0;
  std::vector<AppliedCommand> applied;  // in apply order; sweeps and commands
  // Every SKU whose available or on-hand total the batch changed from what the shard's batches
  // last reported (since it loaded): its stock rows changed, and not only between reserved and
  // allocated.
  std::vector<SkuTotals> changed_skus;
};

struct EngineStats {
  int64_t batches_committed = 0;
  int64_t commands_applied = 0;
  int64_t commit_failures = 0;
  int64_t batch_commands_largest = 0;
  int64_t queue_full_rejections = 0;  // commands answered kQueueFullCode
  // Memory bounds: reservations held in memory now, reservations evicted so far, entries of
  // the compact record of evicted ids and order ids (hashes) now.
  int64_t resident_reservations = 0;
  int64_t evicted_reservations = 0;
  int64_t evicted_record_entries = 0;
  // Fault-in: database reads (at most one per batch) and reservations they brought back.
  int64_t fault_in_reads = 0;
  int64_t faulted_in_reservations = 0;
};

class ShardEngine {
 public:
  // Loads every shard's state from `db` (which must be migrated) and starts the writers.
  // `db` and `clock` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<ShardEngine>> Start(sql::Database& db, const Clock& clock,
                                                            EngineOptions options);
  ~ShardEngine();
  ShardEngine(const ShardEngine&) = delete;
  ShardEngine& operator=(const ShardEngine&) = delete;

  // Queues `command`; `done` is called exactly once with its result. `origin` is handed to
  // the batch hook with the result.
  void Submit(Command command, CommandCallback done, CommandOrigin origin = {});
  // Submit and wait for the result.
  CommandResult Execute(Command command);

  // Stores the location and makes it known to every shard (commands queued after this call
  // returns see it).
  absl::Status AddLocation(const Location& location);

  // Expires, in every shard, the reservations due at the clock's now; waits for the commits.
  // Returns the expired ids, or the first error.
  absl::StatusOr<std::vector<ReservationId>> SweepExpired();

  // Committed stock rows of up to kAvailabilitySkusMax SKUs (reads the database).
  absl::StatusOr<std::vector<StockLevel>> Availability(const std::vector<Sku>& skus);

  // Finishes the queued commands and stops the writers. Idempotent.
  void Stop();

  EngineStats stats() const;
  size_t ShardOf(const Sku& sku) const;

 private:
  class Shard;
  ShardEngine(sql::Database& db, const Clock& clock, EngineOptions options);
  size_t RouteReservation(const ReservationId& id) const;
  // With several shards: the shard that holds reservation `id` (in memory or evicted), nullopt
  // when none does. A hash-only entry is confirmed against the database (the id or another
  // with the same hash); Unavailable when that read fails.
  absl::StatusOr<std::optional<size_t>> HolderOfReservation(const ReservationId& id);
  size_t RouteOrder(const OrderId& order_id) const;
  void NoteReservation(const ReservationId& id, size_t shard);
  void NoteOrder(const OrderId& order_id, size_t shard);
  // Routing of an id evicted from `shard` (or loaded settled): its full id leaves the index
  // for hash -> shard, unless another shard's entry for that hash keeps it.
  void NoteEvictedReservation(std::string_view id, size_t shard);
  void NoteEvictedOrder(std::string_view order_id, size_t shard);
  // The compact record's hash of an id (EngineOptions::evicted_hash_bits of a 64-bit hash).
  uint64_t EvictedKey(std::string_view id) const;
  void RunSweeper();

  sql::Database& db_;
  const Clock& clock_;
  const EngineOptions options_;
  InventoryStore store_;
  std::vector<std::unique_ptr<Shard>> shards_;

  struct Index;
  std::unique_ptr<Index> index_;

  struct Sweeper;
  std::unique_ptr<Sweeper> sweeper_;
  std::atomic<bool> stopped_{false};
};

}  // namespace emporium::inventory
