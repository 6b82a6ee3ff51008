// Inventory domain core: stock per (SKU, location), the immutable stock ledger, reservations
// with expiry, allocations, shipments and returns.
//
// This module is pure: no I/O, no clock reads (every operation takes `now_ms` from its caller),
// no logging, no randomness. Every state-changing operation validates, mutates the in-memory
// InventoryState and RETURNS the ledger entries it produced together with a business outcome
// enum; an operation that is refused produces no entries and changes nothing.
//
// Stock model: available = on_hand - reserved - allocated, and after every operation
// reserved + allocated <= on_hand with none negative (asserted in debug builds). The stock
// table is a projection of the ledger: Project(all entries) == the stock levels, and a stock
// row's version equals the sequence of the last ledger entry of its (SKU, location).
//
// Reservation state machine (explicit, see the transition functions in model.cpp):
//   kActive --Allocate--> kAllocated --Ship (all units)--> kShipped --Deliver--> kDelivered
//   kActive --Release--> kReleased        kActive --expiry (ExpireDue / late op)--> kExpired
//   kAllocated --CancelAllocation--> kAllocationCancelled
//   Return is allowed from kShipped / kDelivered and puts units back on hand at the location
//   they shipped from.
//
// Thread-safety: InventoryState is not thread-safe; one writer (the shard engine) owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ids.h"

namespace emporium::inventory {

using Sku = Id<struct SkuTag>;
using LocationId = Id<struct LocationTag>;
using ReservationId = Id<struct ReservationTag>;
using OrderId = Id<struct OrderTag>;

// Limits on what one command may carry.
inline constexpr size_t kReservationLinesMax = 100;
inline constexpr int64_t kLineQuantityMax = 1'000'000;
inline constexpr int64_t kStockQuantityMax = 1'000'000'000;
inline constexpr size_t kReferenceLengthMax = 200;

struct Location {
  LocationId id{};
  std::string region{};
  std::string address{};
  friend bool operator==(const Location&, const Location&) = default;
};

struct StockKey {
  Sku sku{};
  LocationId location{};
  friend auto operator<=>(const StockKey&, const StockKey&) = default;
  template <typename H>
  friend H AbslHashValue(H hash, const StockKey& key) {
    return H::combine(std::move(hash), key.sku, key.location);
  }
};

struct StockLevel {
  Sku sku{};
  LocationId location{};
  int64_t on_hand = 0;
  int64_t reserved = 0;
  int64_t allocated = 0;
  // Equals the sequence of the last ledger entry for this (SKU, location); 0 before any.
  int64_t version = 0;
  int64_t available() const { return on_hand - reserved - allocated; }
  StockKey key() const { return StockKey{sku, location}; }
  friend bool operator==(const StockLevel&, const StockLevel&) = default;
};

enum class LedgerKind {
  kReceived,             // on_hand += q
  kAdjusted,             // on_hand += q (q signed)
  kReserved,             // reserved += q
  kReleased,             // reserved -= q
  kExpired,              // reserved -= q
  kAllocated,            // reserved -= q, allocated += q
  kAllocationCancelled,  // allocated -= q
  kShipped,              // allocated -= q, on_hand -= q
  kDelivered,            // no stock change; records the delivery
  kReturned,             // on_hand += q (restocked at the location it shipped from)
};
std::string_view LedgerKindName(LedgerKind kind);  // "received", "allocation_cancelled", ...
std::optional<LedgerKind> ParseLedgerKind(std::string_view name);

struct LedgerEntry {
  Sku sku{};
  LocationId location{};
  int64_t sequence = 0;  // per (SKU, location), starting at 1, without gaps
  LedgerKind kind = LedgerKind::kReceived;
  int64_t quantity = 0;
  std::string reference{};  // reservation id, order id, shipment id or a staff reference
  int64_t time_ms = 0;
  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

struct LineRequest {
  Sku sku{};
  int64_t quantity = 0;
  friend bool operator==(const LineRequest&, const LineRequest&) = default;
};

// Part of a reservation line held at one location.
struct Split {
  LocationId location{};
  int64_t quantity = 0;
  int64_t shipped = 0;
  int64_t returned = 0;
  friend bool operator==(const Split&, const Split&) = default;
};

struct ReservationLine {
  Sku sku{};
  int64_t quantity = 0;
  std::vector<Split> splits{};  // the location choice, recorded; quantities sum to `quantity`
  friend bool operator==(const ReservationLine&, const ReservationLine&) = default;
};

enum class ReservationState {
  kActive,
  kAllocated,
  kReleased,
  kExpired,
  kAllocationCancelled,
  kShipped,
  kDelivered,
};
std::string_view ReservationStateName(ReservationState state);
std::optional<ReservationState> ParseReservationState(std::string_view name);
// Settled: neither kActive nor kAllocated. A settled reservation holds no stock; commands can
// still name it (replays, late commands, deliveries and returns), so it must stay findable.
bool IsSettled(ReservationState state);

struct Reservation {
  ReservationId id{};
  std::vector<ReservationLine> lines{};
  std::string region{};
  int64_t created_at_ms = 0;
  int64_t expires_at_ms = 0;
  ReservationState state = ReservationState::kActive;
  OrderId order_id{};                       // set by Allocate
  std::vector<std::string> shipment_ids{};  // applied shipments, for idempotent Ship
  std::vector<std::string> return_ids{};    // applied returns, for idempotent Return
  friend bool operator==(const Reservation&, const Reservation&) = default;
};

struct ReserveRequest {
  ReservationId id{};
  std::vector<LineRequest> lines{};
  std::string region{};  // the customer's region; may be empty (no preference)
  int64_t expires_at_ms = 0;
  // Optional: the reservation this one replaces (a cart whose lines changed). See Reserve().
  ReservationId replaces{};
};

// ---- outcomes ----

enum class ReserveOutcome {
  kReserved,
  kAlreadyReserved,    // idempotent replay of the same request: the stored reservation
  kInsufficientStock,  // short_skus names the lines that could not be covered
  kUnknownSku,         // unknown_skus names SKUs never stocked anywhere
  kConflict,           // the id exists with different lines or region
  kInvalidRequest,     // empty id/lines, bad quantity, duplicate SKU, expiry not in future
};
enum class ExtendOutcome { kExtended, kNotFound, kNotActive, kExpired, kInvalidRequest };
enum class ReleaseOutcome { kReleased, kAlreadyReleased, kAlreadyExpired, kNotFound, kNotActive };
enum class AllocateOutcome {
  kAllocated,
  kAlreadyAllocated,  // same order again (also once shipped/delivered)
  kExpired,           // expiry came first (swept now if the sweeper had not yet run)
  kReleased,
  kNotFound,
  kConflict,  // allocated to another order, allocation cancelled, or the order is taken
  kInvalidRequest,
};
enum class CancelAllocationOutcome {
  kCancelled,
  kAlreadyCancelled,
  kNotFound,
  kAlreadyShipped,  // some units have left; cancellation is refused
};
enum class ShipOutcome {
  kShipped,
  kAlreadyApplied,  // this shipment id was applied before
  kNotFound,
  kNotAllocated,
  kExceedsAllocation,
  kInvalidRequest,
};
enum class DeliverOutcome { kDelivered, kAlreadyDelivered, kNotFound, kNotShipped };
enum class ReturnOutcome {
  kReturned,
  kAlreadyApplied,
  kNotFound,
  kNotShipped,
  kExceedsShipped,
  kInvalidRequest,
};
enum class StockOutcome {
  kApplied,
  kUnknownLocation,
  kInvalidRequest,  // quantity 0 / out of range, or reference too long
  kBelowCommitted,  // adjust would take on_hand below reserved + allocated (or below 0)
};
std::string_view ReserveOutcomeName(ReserveOutcome outcome);

template <typename Outcome>
struct OpResult {
  Outcome outcome;
  std::vector<LedgerEntry> entries{};
};
using ExtendResult = OpResult<ExtendOutcome>;
using ReleaseResult = OpResult<ReleaseOutcome>;
using AllocateResult = OpResult<AllocateOutcome>;
using CancelAllocationResult = OpResult<CancelAllocationOutcome>;
using ShipResult = OpResult<ShipOutcome>;
using DeliverResult = OpResult<DeliverOutcome>;
using ReturnResult = OpResult<ReturnOutcome>;
using StockResult = OpResult<StockOutcome>;

struct ReserveResult {
  ReserveOutcome outcome = ReserveOutcome::kInvalidRequest;
  std::vector<Sku> short_skus{};
  std::vector<Sku> unknown_skus{};
  std::optional<Reservation> reservation{};  // set for kReserved and kAlreadyReserved
  // True when the request's `replaces` reservation was released by this call (its kReleased
  // entries come first in `entries`).
  bool released_replaced = false;
  std::vector<LedgerEntry> entries{};
};

struct ExpireResult {
  std::vector<ReservationId> expired{};
  std::vector<LedgerEntry> entries{};
};

// Chooses locations for `quantity` units of one SKU. `candidates` are the SKU's stock rows.
// Algorithm (documented contract):
//   1. one location in the customer's region that covers the whole quantity, the one with
//      the most available (ties: smallest location id);
//   2. otherwise one location anywhere that covers it (most available, then id);
//   3. otherwise a split: in-region locations by available descending, then the others by
//      available descending, taking as much as each has until covered. Taking the largest
//      first minimises the number of splits within each tier.
// Returns nullopt when the total available is short.
std::optional<std::vector<Split>> ChooseLocations(
    const std::vector<std::pair<const StockLevel*, const Location*>>& candidates,
    std::string_view region, int64_t quantity);

class InventoryState {
 public:
  // Changes since the last TakeChanges(): what a store must persist.
  struct Changes {
    std::vector<StockKey> stock;
    std::vector<ReservationId> reservations;
    // The subset of `reservations` whose lines (or their splits' shipped/returned counts)
    // changed; the others changed only their header (state, expiry, order, ids).
    std::vector<ReservationId> reservation_lines;
  };

  void UpsertLocation(Location location);
  const Location* FindLocation(const LocationId& id) const;
  std::vector<Location> Locations() const;

  // Staff operations. Receive needs quantity > 0; Adjust takes a signed delta that is not 0.
  StockResult Receive(const Sku& sku, const LocationId& location, int64_t quantity,
                      std::string_view reference, int64_t now_ms);
  StockResult Adjust(const Sku& sku, const LocationId& location, int64_t delta,
                     std::string_view reference, int64_t now_ms);

  // Reserves request.lines under request.id, all or nothing.
  // With request.replaces set (a different id), the call is one atomic replace: when request.id
  // is new and the request valid, the replaced reservation is released first if it is still
  // kActive (ledger kReleased entries, state kReleased), so its units count as available to the
  // new one; then the new one is reserved. The release stands even when the new reservation
  // fails (kInsufficientStock / kUnknownSku), exactly as a Release followed by a Reserve would.
  // A replaced id that is unknown or no longer active (released, expired, and also allocated or
  // later: those are never touched) is ignored: the call just reserves. A replay of request.id
  // (kAlreadyReserved), kConflict and kInvalidRequest change nothing, the replaced one included.
  ReserveResult Reserve(const ReserveRequest& request, int64_t now_ms);
  ExtendResult Extend(const ReservationId& id, int64_t expires_at_ms, int64_t now_ms);
  ReleaseResult Release(const ReservationId& id, int64_t now_ms);
  // Expires up to `count_max` active reservations whose expires_at_ms <= now_ms, earliest
  // first. Each reservation's stock returns exactly once.
  ExpireResult ExpireDue(int64_t now_ms, size_t count_max);
  AllocateResult Allocate(const ReservationId& id, const OrderId& order_id, int64_t now_ms);
  CancelAllocationResult CancelAllocation(const OrderId& order_id, int64_t now_ms);
  ShipResult Ship(const OrderId& order_id, std::string_view shipment_id,
                  const std::vector<LineRequest>& lines, int64_t now_ms);
  DeliverResult Deliver(const OrderId& order_id, int64_t now_ms);
  ReturnResult Return(const OrderId& order_id, std::string_view return_id,
                      const std::vector<LineRequest>& lines, int64_t now_ms);

  // Queries.
  bool HasSku(const Sku& sku) const { return locations_by_sku_.contains(sku); }
  const StockLevel* FindStock(const StockKey& key) const;
  std::vector<StockLevel> StockForSku(const Sku& sku) const;  // sorted by location id
  std::vector<StockLevel> AllStock() const;                   // sorted by key
  const Reservation* FindReservation(const ReservationId& id) const;
  const Reservation* FindReservationByOrder(const OrderId& order_id) const;
  size_t reservation_count() const { return reservations_.size(); }
  std::optional<int64_t> NextExpiryMs() const;
  template <typename F>  // F(const Reservation&)
  void ForEachReservation(F&& visit) const {
    for (const auto& [id, reservation] : reservations_) visit(reservation);
  }

  // Full check: every stock row obeys 0 <= reserved, 0 <= allocated,
  // reserved + allocated <= on_hand, and the reserved/allocated totals equal what the live
  // reservations hold.
  absl::Status CheckInvariants() const;

  // Loading persisted state (trusted input from this module's own store).
  void LoadStock(const StockLevel& level);
  void LoadReservation(Reservation reservation);

  // Eviction and fault-in (the shard engine bounds its memory with these). Evict drops a
  // settled reservation with no change pending (TakeChanges() ran since its last change) from
  // memory, and from the order index when it is the order's entry there; it returns false and
  // changes nothing otherwise. FaultIn takes a reservation read back from the store: it loads
  // it when it is not resident, and in both cases lets it claim its order in the order index
  // as LoadReservation does (an allocated / shipped / delivered holder wins over an
  // allocation-cancelled one), so that after faulting in every stored reservation of an order
  // the index names the same holder it named before any eviction.
  bool Evict(const ReservationId& id);
  void FaultIn(Reservation reservation);

  Changes TakeChanges();

 private:
  StockLevel& StockRow(const Sku& sku, const LocationId& location);
  StockLevel* MutableStock(const StockKey& key);
  void Append(StockLevel& level, LedgerKind kind, int64_t quantity, std::string_view reference,
              int64_t now_ms, std::vector<LedgerEntry>& entries);
  void ReturnReservedStock(Reservation& reservation, LedgerKind kind, int64_t now_ms,
                           std::vector<LedgerEntry>& entries);
  void SetState(Reservation& reservation, ReservationState state);
  void MarkReservation(const ReservationId& id);
  void MarkReservationLines(const ReservationId& id);  // marks the header too
  void AssertRowsValid(const std::vector<LedgerEntry>& entries) const;
  void IndexOrder(const Reservation& reservation);

  absl::flat_hash_map<LocationId, Location> locations_;
  absl::flat_hash_map<StockKey, StockLevel> stock_;
  absl::flat_hash_map<Sku, std::vector<LocationId>> locations_by_sku_;
  absl::flat_hash_map<ReservationId, Reservation> reservations_;
  absl::flat_hash_map<OrderId, ReservationId> reservation_by_order_;
  std::set<std::pair<int64_t, ReservationId>> active_by_expiry_;
  absl::flat_hash_set<StockKey> changed_stock_;
  absl::flat_hash_set<ReservationId> changed_reservations_;
  absl::flat_hash_set<ReservationId> changed_reservation_lines_;
};

// Applies one entry's effect to `level` (the same deltas the operations use).
void ApplyEntry(StockLevel& level, const LedgerEntry& entry);

// Rebuilds stock levels from ledger entries (any order). Fails (FailedPrecondition) on a
// sequence gap or duplicate, or when a prefix of the ledger breaks the invariant. Sorted by key.
absl::StatusOr<std::vector<StockLevel>> Project(std::vector<LedgerEntry> entries);

}  // namespace emporium::inventory
