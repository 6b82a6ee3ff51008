// Inventory store: the inventory tables behind the SQL Database port (src/platform/sql).
//
// The schema lives in src/inventory/migrations/NNNN_*.sql, embedded at build time as
// InventoryMigrations(). The store writes one shard batch (ledger entries, changed stock rows,
// changed reservations) inside a transaction it is handed, loads state for the shard engine,
// answers availability reads from committed data, and rebuilds the stock projection from the
// ledger.
//
// Thread-safety: InventoryStore is thread-safe (it holds only the thread-safe Database).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "inventory/model.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::inventory {

// Generated from src/inventory/migrations by emporium_embed_migrations().
std::vector<sql::Migration> InventoryMigrations();

// Most SKUs one availability query may ask for.
inline constexpr size_t kAvailabilitySkusMax = 100;

// What one shard batch persists.
struct BatchRecord {
  std::vector<LedgerEntry> entries;
  std::vector<StockLevel> stock;  // final state of every row the batch changed
  // Final state of every reservation it changed, written as one row each (lines inline).
  std::vector<Reservation> reservations;
  // Set: the sorted ids among `reservations` that may still have rows in the pre-0005
  // reservation_lines table (LoadInto reports them); WriteBatch deletes the old line rows of
  // those only. Unset (the safe default): every written reservation's old line rows are
  // deleted, one statement per reservation.
  std::optional<std::vector<ReservationId>> legacy_lines;
  bool empty() const { return entries.empty() && stock.empty() && reservations.empty(); }
};

struct RebuildReport {
  int64_t rows_checked = 0;
  std::vector<std::string> mismatches;  // one line per differing or missing row
  bool repaired = false;
};

class InventoryStore {
 public:
  explicit InventoryStore(sql::Database& db) : db_(db) {}

  absl::Status Migrate(const Clock& clock = SystemClock::Instance());

  absl::Status UpsertLocation(const Location& location);
  absl::StatusOr<std::vector<Location>> LoadLocations();

  // Writes `batch` inside `transaction` (call from a WriteJob).
  static absl::Status WriteBatch(sql::Transaction& transaction, const BatchRecord& batch);

  // Receives a settled reservation's id and order id (empty when never allocated).
  using SettledSink = std::function<void(const std::string& id, const std::string& order_id)>;

  // Loads locations, and the stock rows and reservations whose SKU `owns` accepts (every SKU
  // when `owns` is empty; a reservation belongs to the owner of its first line's SKU), into a
  // fresh `state`. When `legacy_lines` is given, it receives every id that has rows in the
  // pre-0005 reservation_lines table (sorted; see BatchRecord::legacy_lines). When `settled`
  // is given, settled reservations (IsSettled) are not loaded but handed to it (with `owns`
  // empty only their id, state and order id columns are read). Reservations are read in pages
  // of ids, so the transient memory does not grow with the history.
  absl::Status LoadInto(InventoryState& state, const std::function<bool(const Sku&)>& owns,
                        std::vector<ReservationId>* legacy_lines = nullptr,
                        const SettledSink& settled = nullptr);

  // Committed stock rows of up to kAvailabilitySkusMax SKUs (InvalidArgument beyond).
  absl::StatusOr<std::vector<StockLevel>> LoadStock(const std::vector<Sku>& skus);
  absl::StatusOr<std::vector<StockLevel>> LoadAllStock();
  // The committed reservation `id`, or nullopt.
  absl::StatusOr<std::optional<Reservation>> LoadReservation(const ReservationId& id);
  // The shard engine's fault-in, in one read transaction: the committed reservations named by
  // `ids`, and every settled reservation allocated to an order in `order_ids` or to the order
  // of a reservation found by id (live ones are never evicted). Each at most once, in no particular
  // order, of any shard.
  absl::StatusOr<std::vector<Reservation>> LoadForFaultIn(const std::vector<ReservationId>& ids,
                                                          const std::vector<OrderId>& order_ids);
  absl::StatusOr<std::vector<LedgerEntry>> LoadLedger();

  // Recomputes the stock table from the ledger and reports every mismatch; with
  // RebuildMode::kRepair also rewrites the differing rows (in one transaction). Must not run
  // while an engine writes to the same database.
  enum class RebuildMode { kCheckOnly, kRepair };
  absl::StatusOr<RebuildReport> Rebuild(RebuildMode mode);

 private:
  sql::Database& db_;
};

}  // namespace emporium::inventory
