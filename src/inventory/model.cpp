#include "inventory/model.h"

#include <algorithm>
#include <cassert>
#include <map>

#include "fmt/format.h"

namespace emporium::inventory {
namespace {

constexpr std::pair<LedgerKind, std::string_view> kLedgerKindNames[] = {
    {LedgerKind::kReceived, "received"},
    {LedgerKind::kAdjusted, "adjusted"},
    {LedgerKind::kReserved, "reserved"},
    {LedgerKind::kReleased, "released"},
    {LedgerKind::kExpired, "expired"},
    {LedgerKind::kAllocated, "allocated"},
    {LedgerKind::kAllocationCancelled, "allocation_cancelled"},
    {LedgerKind::kShipped, "shipped"},
    {LedgerKind::kDelivered, "delivered"},
    {LedgerKind::kReturned, "returned"},
};

constexpr std::pair<ReservationState, std::string_view> kStateNames[] = {
    {ReservationState::kActive, "active"},
    {ReservationState::kAllocated, "allocated"},
    {ReservationState::kReleased, "released"},
    {ReservationState::kExpired, "expired"},
    {ReservationState::kAllocationCancelled, "allocation_cancelled"},
    {ReservationState::kShipped, "shipped"},
    {ReservationState::kDelivered, "delivered"},
};

bool RowValid(const StockLevel& level) {
  return level.on_hand >= 0 && level.reserved >= 0 && level.allocated >= 0 &&
         level.reserved + level.allocated <= level.on_hand;
}

// Lines are valid when non-empty, bounded, with positive bounded quantities and distinct SKUs.
bool LinesValid(const std::vector<LineRequest>& lines) {
  if (lines.empty() || lines.size() > kReservationLinesMax) return false;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].sku.empty() || lines[i].quantity <= 0 || lines[i].quantity > kLineQuantityMax) {
      return false;
    }
    for (size_t j = 0; j < i; ++j) {
      if (lines[j].sku == lines[i].sku) return false;
    }
  }
  return true;
}

bool SameRequest(const Reservation& reservation, const ReserveRequest& request) {
  if (reservation.region != request.region) return false;
  if (reservation.lines.size() != request.lines.size()) return false;
  for (size_t i = 0; i < request.lines.size(); ++i) {
    if (reservation.lines[i].sku != request.lines[i].sku ||
        reservation.lines[i].quantity != request.lines[i].quantity) {
      return false;
    }
  }
  return true;
}

bool Contains(const std::vector<std::string>& ids, std::string_view id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

std::string_view LedgerKindName(LedgerKind kind) {
  for (const auto& [k, name] : kLedgerKindNames) {
    if (k == kind) return name;
  }
  assert(false && "unnamed ledger kind");
  return "unknown";
}

std::optional<LedgerKind> ParseLedgerKind(std::string_view name) {
  for (const auto& [k, n] : kLedgerKindNames) {
    if (n == name) return k;
  }
  return std::nullopt;
}

std::string_view ReservationStateName(ReservationState state) {
  for (const auto& [s, name] : kStateNames) {
    if (s == state) return name;
  }
  assert(false && "unnamed reservation state");
  return "unknown";
}

std::optional<ReservationState> ParseReservationState(std::string_view name) {
  for (const auto& [s, n] : kStateNames) {
    if (n == name) return s;
  }
  return std::nullopt;
}

bool IsSettled(ReservationState state) {
  switch (state) {
    case ReservationState::kActive:
    case ReservationState::kAllocated:
      return false;
    case ReservationState::kReleased:
    case ReservationState::kExpired:
    case ReservationState::kAllocationCancelled:
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      return true;
  }
  return false;
}

std::string_view ReserveOutcomeName(ReserveOutcome outcome) {
  switch (outcome) {
    case ReserveOutcome::kReserved:
      return "reserved";
    case ReserveOutcome::kAlreadyReserved:
      return "already_reserved";
    case ReserveOutcome::kInsufficientStock:
      return "insufficient_stock";
    case ReserveOutcome::kUnknownSku:
      return "unknown_sku";
    case ReserveOutcome::kConflict:
      return "conflict";
    case ReserveOutcome::kInvalidRequest:
      return "invalid_request";
  }
  return "unknown";
}

void ApplyEntry(StockLevel& level, const LedgerEntry& entry) {
  const int64_t q = entry.quantity;
  switch (entry.kind) {
    case LedgerKind::kReceived:
    case LedgerKind::kAdjusted:
    case LedgerKind::kReturned:
      level.on_hand += q;
      break;
    case LedgerKind::kReserved:
      level.reserved += q;
      break;
    case LedgerKind::kReleased:
    case LedgerKind::kExpired:
      level.reserved -= q;
      break;
    case LedgerKind::kAllocated:
      level.reserved -= q;
      level.allocated += q;
      break;
    case LedgerKind::kAllocationCancelled:
      level.allocated -= q;
      break;
    case LedgerKind::kShipped:
      level.allocated -= q;
      level.on_hand -= q;
      break;
    case LedgerKind::kDelivered:
      break;
  }
  level.version = entry.sequence;
}

absl::StatusOr<std::vector<StockLevel>> Project(std::vector<LedgerEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const LedgerEntry& a, const LedgerEntry& b) {
    return std::tie(a.sku, a.location, a.sequence) < std::tie(b.sku, b.location, b.sequence);
  });
  std::vector<StockLevel> levels;
  for (const LedgerEntry& entry : entries) {
    if (levels.empty() || levels.back().sku != entry.sku ||
        levels.back().location != entry.location) {
      levels.push_back(StockLevel{.sku = entry.sku, .location = entry.location});
    }
    StockLevel& level = levels.back();
    if (entry.sequence != level.version + 1) {
      return absl::FailedPreconditionError(
          fmt::format("ledger of {}@{}: expected sequence {}, found {}", entry.sku.value(),
                      entry.location.value(), level.version + 1, entry.sequence));
    }
    ApplyEntry(level, entry);
    if (!RowValid(level)) {
      return absl::FailedPreconditionError(
          fmt::format("ledger of {}@{} breaks the invariant at sequence {}", entry.sku.value(),
                      entry.location.value(), entry.sequence));
    }
  }
  return levels;
}

std::optional<std::vector<Split>> ChooseLocations(
    const std::vector<std::pair<const StockLevel*, const Location*>>& candidates,
    std::string_view region, int64_t quantity) {
  struct Option {
    bool in_region;
    int64_t available;
    const LocationId* id;
  };
  std::vector<Option> options;
  int64_t total = 0;
  for (const auto& [level, location] : candidates) {
    if (level->available() <= 0) continue;
    const bool in_region = location != nullptr && !region.empty() && location->region == region;
    options.push_back(Option{in_region, level->available(), &level->location});
    total += level->available();
  }
  if (total < quantity) return std::nullopt;
  // In region first, then most available, then smallest id: the order of all three steps.
  std::sort(options.begin(), options.end(), [](const Option& a, const Option& b) {
    if (a.in_region != b.in_region) return a.in_region;
    if (a.available != b.available) return a.available > b.available;
    return *a.id < *b.id;
  });
  // Steps 1 and 2: the first option in this order that covers the line alone; an in-region
  // one is found first when it exists.
  for (const Option& option : options) {
    if (option.available >= quantity) {
      return std::vector<Split>{Split{.location = *option.id, .quantity = quantity}};
    }
  }
  // Step 3: split, region tier first, largest first.
  std::vector<Split> splits;
  int64_t remaining = quantity;
  for (const Option& option : options) {
    if (remaining == 0) break;
    const int64_t take = std::min(remaining, option.available);
    splits.push_back(Split{.location = *option.id, .quantity = take});
    remaining -= take;
  }
  return splits;
}

// ---- InventoryState ----

void InventoryState::UpsertLocation(Location location) {
  LocationId id = location.id;
  locations_[id] = std::move(location);
}

const Location* InventoryState::FindLocation(const LocationId& id) const {
  auto it = locations_.find(id);
  return it == locations_.end() ? nullptr : &it->second;
}

std::vector<Location> InventoryState::Locations() const {
  std::vector<Location> out;
  for (const auto& [id, location] : locations_) out.push_back(location);
  std::sort(out.begin(), out.end(),
            [](const Location& a, const Location& b) { return a.id < b.id; });
  return out;
}

StockLevel& InventoryState::StockRow(const Sku& sku, const LocationId& location) {
  StockKey key{sku, location};
  auto [it, inserted] = stock_.try_emplace(key);
  if (inserted) {
    it->second.sku = sku;
    it->second.location = location;
    locations_by_sku_[sku].push_back(location);
  }
  return it->second;
}

StockLevel* InventoryState::MutableStock(const StockKey& key) {
  auto it = stock_.find(key);
  return it == stock_.end() ? nullptr : &it->second;
}

const StockLevel* InventoryState::FindStock(const StockKey& key) const {
  auto it = stock_.find(key);
  return it == stock_.end() ? nullptr : &it->second;
}

void InventoryState::Append(StockLevel& level, LedgerKind kind, int64_t quantity,
                            std::string_view reference, int64_t now_ms,
                            std::vector<LedgerEntry>& entries) {
  LedgerEntry entry{.sku = level.sku,
                    .location = level.location,
                    .sequence = level.version + 1,
                    .kind = kind,
                    .quantity = quantity,
                    .reference = std::string(reference),
                    .time_ms = now_ms};
  ApplyEntry(level, entry);
  changed_stock_.insert(level.key());
  entries.push_back(std::move(entry));
}

void InventoryState::AssertRowsValid(
    [[maybe_unused]] const std::vector<LedgerEntry>& entries) const {
#ifndef NDEBUG
  for (const LedgerEntry& entry : entries) {
    const StockLevel* level = FindStock(StockKey{entry.sku, entry.location});
    assert(level != nullptr && RowValid(*level));
  }
#endif
}

void InventoryState::MarkReservation(const ReservationId& id) { changed_reservations_.insert(id); }

void InventoryState::MarkReservationLines(const ReservationId& id) {
  changed_reservations_.insert(id);
  changed_reservation_lines_.insert(id);
}

void InventoryState::SetState(Reservation& reservation, ReservationState state) {
  if (reservation.state == ReservationState::kActive && state != ReservationState::kActive) {
    active_by_expiry_.erase({reservation.expires_at_ms, reservation.id});
  }
  reservation.state = state;
  MarkReservation(reservation.id);
}

void InventoryState::ReturnReservedStock(Reservation& reservation, LedgerKind kind, int64_t now_ms,
                                         std::vector<LedgerEntry>& entries) {
  for (const ReservationLine& line : reservation.lines) {
    for (const Split& split : line.splits) {
      StockLevel* level = MutableStock(StockKey{line.sku, split.location});
      assert(level != nullptr);
      Append(*level, kind, split.quantity, reservation.id.value(), now_ms, entries);
    }
  }
}

StockResult InventoryState::Receive(const Sku& sku, const LocationId& location, int64_t quantity,
                                    std::string_view reference, int64_t now_ms) {
  StockResult result{StockOutcome::kApplied, {}};
  if (sku.empty() || quantity <= 0 || quantity > kStockQuantityMax ||
      reference.size() > kReferenceLengthMax) {
    result.outcome = StockOutcome::kInvalidRequest;
    return result;
  }
  if (FindLocation(location) == nullptr) {
    result.outcome = StockOutcome::kUnknownLocation;
    return result;
  }
  const StockLevel* existing = FindStock(StockKey{sku, location});
  if (existing != nullptr && existing->on_hand + quantity > kStockQuantityMax) {
    result.outcome = StockOutcome::kInvalidRequest;
    return result;
  }
  Append(StockRow(sku, location), LedgerKind::kReceived, quantity, reference, now_ms,
         result.entries);
  AssertRowsValid(result.entries);
  return result;
}

StockResult InventoryState::Adjust(const Sku& sku, const LocationId& location, int64_t delta,
                                   std::string_view reference, int64_t now_ms) {
  StockResult result{StockOutcome::kApplied, {}};
  if (sku.empty() || delta == 0 || delta > kStockQuantityMax || delta < -kStockQuantityMax ||
      reference.size() > kReferenceLengthMax) {
    result.outcome = StockOutcome::kInvalidRequest;
    return result;
  }
  if (FindLocation(location) == nullptr) {
    result.outcome = StockOutcome::kUnknownLocation;
    return result;
  }
  const StockLevel* existing = FindStock(StockKey{sku, location});
  const StockLevel empty;
  const StockLevel& current = existing != nullptr ? *existing : empty;
  const int64_t new_on_hand = current.on_hand + delta;
  if (new_on_hand < 0 || new_on_hand < current.reserved + current.allocated) {
    result.outcome = StockOutcome::kBelowCommitted;
    return result;
  }
  if (new_on_hand > kStockQuantityMax) {
    result.outcome = StockOutcome::kInvalidRequest;
    return result;
  }
  Append(StockRow(sku, location), LedgerKind::kAdjusted, delta, reference, now_ms, result.entries);
  AssertRowsValid(result.entries);
  return result;
}

ReserveResult InventoryState::Reserve(const ReserveRequest& request, int64_t now_ms) {
  ReserveResult result;
  if (request.id.empty() || request.id.value().size() > kReferenceLengthMax ||
      !LinesValid(request.lines) || request.expires_at_ms <= now_ms ||
      request.region.size() > kReferenceLengthMax ||
      request.replaces.value().size() > kReferenceLengthMax) {
    result.outcome = ReserveOutcome::kInvalidRequest;
    return result;
  }
  if (auto it = reservations_.find(request.id); it != reservations_.end()) {
    if (SameRequest(it->second, request)) {
      result.outcome = ReserveOutcome::kAlreadyReserved;
      result.reservation = it->second;
    } else {
      result.outcome = ReserveOutcome::kConflict;
    }
    return result;
  }
  if (!request.replaces.empty() && request.replaces != request.id) {
    if (auto replaced = reservations_.find(request.replaces);
        replaced != reservations_.end() && replaced->second.state == ReservationState::kActive) {
      ReturnReservedStock(replaced->second, LedgerKind::kReleased, now_ms, result.entries);
      SetState(replaced->second, ReservationState::kReleased);
      result.released_replaced = true;
    }
  }
  for (const LineRequest& line : request.lines) {
    if (!HasSku(line.sku)) result.unknown_skus.push_back(line.sku);
  }
  if (!result.unknown_skus.empty()) {
    result.outcome = ReserveOutcome::kUnknownSku;
    AssertRowsValid(result.entries);
    return result;
  }
  // Plan every line before touching anything: all or nothing.
  Reservation reservation{.id = request.id,
                          .region = request.region,
                          .created_at_ms = now_ms,
                          .expires_at_ms = request.expires_at_ms};
  for (const LineRequest& line : request.lines) {
    std::vector<std::pair<const StockLevel*, const Location*>> candidates;
    for (const LocationId& location : locations_by_sku_.at(line.sku)) {
      candidates.emplace_back(FindStock(StockKey{line.sku, location}), FindLocation(location));
    }
    std::optional<std::vector<Split>> splits =
        ChooseLocations(candidates, request.region, line.quantity);
    if (!splits.has_value()) {
      result.short_skus.push_back(line.sku);
      continue;
    }
    reservation.lines.push_back(
        ReservationLine{.sku = line.sku, .quantity = line.quantity, .splits = *std::move(splits)});
  }
  if (!result.short_skus.empty()) {
    result.outcome = ReserveOutcome::kInsufficientStock;
    AssertRowsValid(result.entries);
    return result;
  }
  for (const ReservationLine& line : reservation.lines) {
    for (const Split& split : line.splits) {
      Append(*MutableStock(StockKey{line.sku, split.location}), LedgerKind::kReserved,
             split.quantity, request.id.value(), now_ms, result.entries);
    }
  }
  active_by_expiry_.insert({reservation.expires_at_ms, reservation.id});
  MarkReservationLines(reservation.id);
  result.outcome = ReserveOutcome::kReserved;
  result.reservation = reservation;
  reservations_.emplace(request.id, std::move(reservation));
  AssertRowsValid(result.entries);
  return result;
}

ExtendResult InventoryState::Extend(const ReservationId& id, int64_t expires_at_ms,
                                    int64_t now_ms) {
  ExtendResult result{ExtendOutcome::kExtended, {}};
  auto it = reservations_.find(id);
  if (it == reservations_.end()) {
    result.outcome = ExtendOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = it->second;
  switch (reservation.state) {
    case ReservationState::kActive:
      if (reservation.expires_at_ms <= now_ms) {
        // Already due but not yet swept: it expires now, exactly once, and stays expired.
        ReturnReservedStock(reservation, LedgerKind::kExpired, now_ms, result.entries);
        SetState(reservation, ReservationState::kExpired);
        result.outcome = ExtendOutcome::kExpired;
        break;
      }
      if (expires_at_ms <= now_ms) {
        result.outcome = ExtendOutcome::kInvalidRequest;
        break;
      }
      active_by_expiry_.erase({reservation.expires_at_ms, reservation.id});
      reservation.expires_at_ms = expires_at_ms;
      active_by_expiry_.insert({reservation.expires_at_ms, reservation.id});
      MarkReservation(reservation.id);
      break;
    case ReservationState::kExpired:
      result.outcome = ExtendOutcome::kExpired;
      break;
    case ReservationState::kAllocated:
    case ReservationState::kReleased:
    case ReservationState::kAllocationCancelled:
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      result.outcome = ExtendOutcome::kNotActive;
      break;
  }
  AssertRowsValid(result.entries);
  return result;
}

ReleaseResult InventoryState::Release(const ReservationId& id, int64_t now_ms) {
  ReleaseResult result{ReleaseOutcome::kReleased, {}};
  auto it = reservations_.find(id);
  if (it == reservations_.end()) {
    result.outcome = ReleaseOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = it->second;
  switch (reservation.state) {
    case ReservationState::kActive:
      ReturnReservedStock(reservation, LedgerKind::kReleased, now_ms, result.entries);
      SetState(reservation, ReservationState::kReleased);
      break;
    case ReservationState::kReleased:
      result.outcome = ReleaseOutcome::kAlreadyReleased;
      break;
    case ReservationState::kExpired:
      result.outcome = ReleaseOutcome::kAlreadyExpired;
      break;
    case ReservationState::kAllocated:
    case ReservationState::kAllocationCancelled:
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      result.outcome = ReleaseOutcome::kNotActive;
      break;
  }
  AssertRowsValid(result.entries);
  return result;
}

ExpireResult InventoryState::ExpireDue(int64_t now_ms, size_t count_max) {
  ExpireResult result;
  std::vector<ReservationId> due;
  for (auto it = active_by_expiry_.begin();
       it != active_by_expiry_.end() && it->first <= now_ms && due.size() < count_max; ++it) {
    due.push_back(it->second);
  }
  for (const ReservationId& id : due) {
    Reservation& reservation = reservations_.at(id);
    assert(reservation.state == ReservationState::kActive);
    ReturnReservedStock(reservation, LedgerKind::kExpired, now_ms, result.entries);
    SetState(reservation, ReservationState::kExpired);
    result.expired.push_back(id);
  }
  AssertRowsValid(result.entries);
  return result;
}

AllocateResult InventoryState::Allocate(const ReservationId& id, const OrderId& order_id,
                                        int64_t now_ms) {
  AllocateResult result{AllocateOutcome::kAllocated, {}};
  if (order_id.empty() || order_id.value().size() > kReferenceLengthMax) {
    result.outcome = AllocateOutcome::kInvalidRequest;
    return result;
  }
  auto it = reservations_.find(id);
  if (it == reservations_.end()) {
    result.outcome = AllocateOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = it->second;
  switch (reservation.state) {
    case ReservationState::kActive: {
      if (reservation.expires_at_ms <= now_ms) {
        // The expiry won the race even though the sweeper has not run yet.
        ReturnReservedStock(reservation, LedgerKind::kExpired, now_ms, result.entries);
        SetState(reservation, ReservationState::kExpired);
        result.outcome = AllocateOutcome::kExpired;
        break;
      }
      if (const Reservation* holder = FindReservationByOrder(order_id);
          holder != nullptr && holder->state != ReservationState::kAllocationCancelled) {
        result.outcome = AllocateOutcome::kConflict;
        break;
      }
      for (const ReservationLine& line : reservation.lines) {
        for (const Split& split : line.splits) {
          Append(*MutableStock(StockKey{line.sku, split.location}), LedgerKind::kAllocated,
                 split.quantity, order_id.value(), now_ms, result.entries);
        }
      }
      reservation.order_id = order_id;
      reservation_by_order_[order_id] = id;
      SetState(reservation, ReservationState::kAllocated);
      break;
    }
    case ReservationState::kAllocated:
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      result.outcome = reservation.order_id == order_id ? AllocateOutcome::kAlreadyAllocated
                                                        : AllocateOutcome::kConflict;
      break;
    case ReservationState::kReleased:
      result.outcome = AllocateOutcome::kReleased;
      break;
    case ReservationState::kExpired:
      result.outcome = AllocateOutcome::kExpired;
      break;
    case ReservationState::kAllocationCancelled:
      result.outcome = AllocateOutcome::kConflict;
      break;
  }
  AssertRowsValid(result.entries);
  return result;
}

CancelAllocationResult InventoryState::CancelAllocation(const OrderId& order_id, int64_t now_ms) {
  CancelAllocationResult result{CancelAllocationOutcome::kCancelled, {}};
  auto found = reservation_by_order_.find(order_id);
  if (found == reservation_by_order_.end()) {
    result.outcome = CancelAllocationOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = reservations_.at(found->second);
  switch (reservation.state) {
    case ReservationState::kAllocated: {
      bool any_shipped = false;
      for (const ReservationLine& line : reservation.lines) {
        for (const Split& split : line.splits) any_shipped = any_shipped || split.shipped > 0;
      }
      if (any_shipped) {
        result.outcome = CancelAllocationOutcome::kAlreadyShipped;
        break;
      }
      for (const ReservationLine& line : reservation.lines) {
        for (const Split& split : line.splits) {
          Append(*MutableStock(StockKey{line.sku, split.location}),
                 LedgerKind::kAllocationCancelled, split.quantity, order_id.value(), now_ms,
                 result.entries);
        }
      }
      SetState(reservation, ReservationState::kAllocationCancelled);
      break;
    }
    case ReservationState::kAllocationCancelled:
      result.outcome = CancelAllocationOutcome::kAlreadyCancelled;
      break;
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      result.outcome = CancelAllocationOutcome::kAlreadyShipped;
      break;
    case ReservationState::kActive:
    case ReservationState::kReleased:
    case ReservationState::kExpired:
      // Only allocation puts a reservation in the order index, so these cannot be found.
      assert(false && "order index points at an unallocated reservation");
      result.outcome = CancelAllocationOutcome::kNotFound;
      break;
  }
  AssertRowsValid(result.entries);
  return result;
}

ShipResult InventoryState::Ship(const OrderId& order_id, std::string_view shipment_id,
                                const std::vector<LineRequest>& lines, int64_t now_ms) {
  ShipResult result{ShipOutcome::kShipped, {}};
  if (shipment_id.empty() || shipment_id.size() > kReferenceLengthMax || !LinesValid(lines)) {
    result.outcome = ShipOutcome::kInvalidRequest;
    return result;
  }
  auto found = reservation_by_order_.find(order_id);
  if (found == reservation_by_order_.end()) {
    result.outcome = ShipOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = reservations_.at(found->second);
  if (Contains(reservation.shipment_ids, shipment_id)) {
    result.outcome = ShipOutcome::kAlreadyApplied;
    return result;
  }
  switch (reservation.state) {
    case ReservationState::kAllocated:
      break;
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
      result.outcome = ShipOutcome::kExceedsAllocation;
      return result;
    case ReservationState::kActive:
    case ReservationState::kReleased:
    case ReservationState::kExpired:
    case ReservationState::kAllocationCancelled:
      result.outcome = ShipOutcome::kNotAllocated;
      return result;
  }
  // Check every line first so a refused shipment changes nothing.
  std::vector<ReservationLine*> targets;
  for (const LineRequest& request : lines) {
    auto line = std::find_if(reservation.lines.begin(), reservation.lines.end(),
                             [&](const ReservationLine& l) { return l.sku == request.sku; });
    if (line == reservation.lines.end()) {
      result.outcome = ShipOutcome::kExceedsAllocation;
      return result;
    }
    int64_t unshipped = 0;
    for (const Split& split : line->splits) unshipped += split.quantity - split.shipped;
    if (request.quantity > unshipped) {
      result.outcome = ShipOutcome::kExceedsAllocation;
      return result;
    }
    targets.push_back(&*line);
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    int64_t remaining = lines[i].quantity;
    for (Split& split : targets[i]->splits) {
      const int64_t take = std::min(remaining, split.quantity - split.shipped);
      if (take <= 0) continue;
      Append(*MutableStock(StockKey{targets[i]->sku, split.location}), LedgerKind::kShipped, take,
             shipment_id, now_ms, result.entries);
      split.shipped += take;
      remaining -= take;
    }
  }
  reservation.shipment_ids.emplace_back(shipment_id);
  bool all_shipped = true;
  for (const ReservationLine& line : reservation.lines) {
    for (const Split& split : line.splits)
      all_shipped = all_shipped && split.shipped == split.quantity;
  }
  MarkReservationLines(reservation.id);
  if (all_shipped) SetState(reservation, ReservationState::kShipped);
  AssertRowsValid(result.entries);
  return result;
}

DeliverResult InventoryState::Deliver(const OrderId& order_id, int64_t now_ms) {
  DeliverResult result{DeliverOutcome::kDelivered, {}};
  auto found = reservation_by_order_.find(order_id);
  if (found == reservation_by_order_.end()) {
    result.outcome = DeliverOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = reservations_.at(found->second);
  switch (reservation.state) {
    case ReservationState::kShipped:
      for (const ReservationLine& line : reservation.lines) {
        for (const Split& split : line.splits) {
          Append(*MutableStock(StockKey{line.sku, split.location}), LedgerKind::kDelivered,
                 split.shipped, order_id.value(), now_ms, result.entries);
        }
      }
      SetState(reservation, ReservationState::kDelivered);
      break;
    case ReservationState::kDelivered:
      result.outcome = DeliverOutcome::kAlreadyDelivered;
      break;
    case ReservationState::kActive:
    case ReservationState::kAllocated:
    case ReservationState::kReleased:
    case ReservationState::kExpired:
    case ReservationState::kAllocationCancelled:
      result.outcome = DeliverOutcome::kNotShipped;
      break;
  }
  AssertRowsValid(result.entries);
  return result;
}

ReturnResult InventoryState::Return(const OrderId& order_id, std::string_view return_id,
                                    const std::vector<LineRequest>& lines, int64_t now_ms) {
  ReturnResult result{ReturnOutcome::kReturned, {}};
  if (return_id.empty() || return_id.size() > kReferenceLengthMax || !LinesValid(lines)) {
    result.outcome = ReturnOutcome::kInvalidRequest;
    return result;
  }
  auto found = reservation_by_order_.find(order_id);
  if (found == reservation_by_order_.end()) {
    result.outcome = ReturnOutcome::kNotFound;
    return result;
  }
  Reservation& reservation = reservations_.at(found->second);
  if (Contains(reservation.return_ids, return_id)) {
    result.outcome = ReturnOutcome::kAlreadyApplied;
    return result;
  }
  switch (reservation.state) {
    case ReservationState::kShipped:
    case ReservationState::kDelivered:
    case ReservationState::kAllocated:  // a partial shipment can come back too
      break;
    case ReservationState::kActive:
    case ReservationState::kReleased:
    case ReservationState::kExpired:
    case ReservationState::kAllocationCancelled:
      result.outcome = ReturnOutcome::kNotShipped;
      return result;
  }
  std::vector<ReservationLine*> targets;
  for (const LineRequest& request : lines) {
    auto line = std::find_if(reservation.lines.begin(), reservation.lines.end(),
                             [&](const ReservationLine& l) { return l.sku == request.sku; });
    if (line == reservation.lines.end()) {
      result.outcome = ReturnOutcome::kExceedsShipped;
      return result;
    }
    int64_t returnable = 0;
    for (const Split& split : line->splits) returnable += split.shipped - split.returned;
    if (request.quantity > returnable) {
      result.outcome = ReturnOutcome::kExceedsShipped;
      return result;
    }
    targets.push_back(&*line);
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    int64_t remaining = lines[i].quantity;
    for (Split& split : targets[i]->splits) {
      const int64_t take = std::min(remaining, split.shipped - split.returned);
      if (take <= 0) continue;
      Append(StockRow(targets[i]->sku, split.location), LedgerKind::kReturned, take, return_id,
             now_ms, result.entries);
      split.returned += take;
      remaining -= take;
    }
  }
  reservation.return_ids.emplace_back(return_id);
  MarkReservationLines(reservation.id);
  AssertRowsValid(result.entries);
  return result;
}

std::vector<StockLevel> InventoryState::StockForSku(const Sku& sku) const {
  std::vector<StockLevel> out;
  auto it = locations_by_sku_.find(sku);
  if (it == locations_by_sku_.end()) return out;
  for (const LocationId& location : it->second) out.push_back(stock_.at(StockKey{sku, location}));
  std::sort(out.begin(), out.end(),
            [](const StockLevel& a, const StockLevel& b) { return a.location < b.location; });
  return out;
}

std::vector<StockLevel> InventoryState::AllStock() const {
  std::vector<StockLevel> out;
  out.reserve(stock_.size());
  for (const auto& [key, level] : stock_) out.push_back(level);
  std::sort(out.begin(), out.end(),
            [](const StockLevel& a, const StockLevel& b) { return a.key() < b.key(); });
  return out;
}

const Reservation* InventoryState::FindReservation(const ReservationId& id) const {
  auto it = reservations_.find(id);
  return it == reservations_.end() ? nullptr : &it->second;
}

const Reservation* InventoryState::FindReservationByOrder(const OrderId& order_id) const {
  auto it = reservation_by_order_.find(order_id);
  return it == reservation_by_order_.end() ? nullptr : FindReservation(it->second);
}

std::optional<int64_t> InventoryState::NextExpiryMs() const {
  if (active_by_expiry_.empty()) return std::nullopt;
  return active_by_expiry_.begin()->first;
}

absl::Status InventoryState::CheckInvariants() const {
  std::map<StockKey, std::pair<int64_t, int64_t>> held;  // reserved, allocated
  for (const auto& [id, reservation] : reservations_) {
    for (const ReservationLine& line : reservation.lines) {
      int64_t total = 0;
      for (const Split& split : line.splits) {
        total += split.quantity;
        if (split.shipped < 0 || split.shipped > split.quantity || split.returned < 0 ||
            split.returned > split.shipped) {
          return absl::InternalError(fmt::format("reservation {} has a bad split", id.value()));
        }
        auto& [reserved, allocated] = held[StockKey{line.sku, split.location}];
        switch (reservation.state) {
          case ReservationState::kActive:
            reserved += split.quantity;
            break;
          case ReservationState::kAllocated:
            allocated += split.quantity - split.shipped;
            break;
          case ReservationState::kReleased:
          case ReservationState::kExpired:
          case ReservationState::kAllocationCancelled:
          case ReservationState::kShipped:
          case ReservationState::kDelivered:
            break;
        }
      }
      if (total != line.quantity) {
        return absl::InternalError(
            fmt::format("reservation {} splits do not sum to its line", id.value()));
      }
    }
  }
  for (const auto& [key, level] : stock_) {
    if (!RowValid(level)) {
      return absl::InternalError(
          fmt::format("stock {}@{} broken: on_hand={} reserved={} allocated={}", key.sku.value(),
                      key.location.value(), level.on_hand, level.reserved, level.allocated));
    }
    auto it = held.find(key);
    const std::pair<int64_t, int64_t> expected =
        it == held.end() ? std::pair<int64_t, int64_t>{0, 0} : it->second;
    if (expected.first != level.reserved || expected.second != level.allocated) {
      return absl::InternalError(fmt::format(
          "stock {}@{}: reserved={} allocated={} but reservations hold {} / {}", key.sku.value(),
          key.location.value(), level.reserved, level.allocated, expected.first, expected.second));
    }
  }
  return absl::OkStatus();
}

void InventoryState::LoadStock(const StockLevel& level) {
  StockLevel& row = StockRow(level.sku, level.location);
  row = level;
}

void InventoryState::IndexOrder(const Reservation& reservation) {
  if (reservation.order_id.empty()) return;
  const Reservation* holder = FindReservationByOrder(reservation.order_id);
  if (holder == nullptr || holder->state == ReservationState::kAllocationCancelled) {
    reservation_by_order_[reservation.order_id] = reservation.id;
  }
}

void InventoryState::LoadReservation(Reservation reservation) {
  const ReservationId id = reservation.id;
  if (reservation.state == ReservationState::kActive) {
    active_by_expiry_.insert({reservation.expires_at_ms, id});
  }
  IndexOrder(reservation);
  reservations_[id] = std::move(reservation);
}

bool InventoryState::Evict(const ReservationId& id) {
  auto it = reservations_.find(id);
  if (it == reservations_.end() || !IsSettled(it->second.state) ||
      changed_reservations_.contains(id)) {
    return false;
  }
  const OrderId& order_id = it->second.order_id;
  if (!order_id.empty()) {
    if (auto held = reservation_by_order_.find(order_id);
        held != reservation_by_order_.end() && held->second == id) {
      reservation_by_order_.erase(held);
    }
  }
  reservations_.erase(it);
  return true;
}

void InventoryState::FaultIn(Reservation reservation) {
  if (const Reservation* resident = FindReservation(reservation.id); resident != nullptr) {
    IndexOrder(*resident);
    return;
  }
  LoadReservation(std::move(reservation));
}

InventoryState::Changes InventoryState::TakeChanges() {
  Changes changes;
  changes.stock.assign(changed_stock_.begin(), changed_stock_.end());
  changes.reservations.assign(changed_reservations_.begin(), changed_reservations_.end());
  changes.reservation_lines.assign(changed_reservation_lines_.begin(),
                                   changed_reservation_lines_.end());
  std::sort(changes.stock.begin(), changes.stock.end());
  std::sort(changes.reservations.begin(), changes.reservations.end());
  std::sort(changes.reservation_lines.begin(), changes.reservation_lines.end());
  changed_stock_.clear();
  changed_reservations_.clear();
  changed_reservation_lines_.clear();
  return changes;
}

}  // namespace emporium::inventory
