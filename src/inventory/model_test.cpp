#include "inventory/model.h"

#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emporium::inventory {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kNow = 1'000'000;
constexpr int64_t kTtl = 60'000;

Sku S(const char* v) { return Sku(v); }
LocationId L(const char* v) { return LocationId(v); }
ReservationId R(const char* v) { return ReservationId(v); }
OrderId O(const char* v) { return OrderId(v); }

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_.UpsertLocation({L("eu1"), "eu", "Berlin"});
    state_.UpsertLocation({L("eu2"), "eu", "Paris"});
    state_.UpsertLocation({L("us1"), "us", "Newark"});
  }
  void TearDown() override { ExpectConsistent(); }

  void ExpectConsistent() {
    ASSERT_TRUE(state_.CheckInvariants().ok()) << state_.CheckInvariants();
    auto projected = Project(ledger_);
    ASSERT_TRUE(projected.ok()) << projected.status();
    EXPECT_EQ(*projected, state_.AllStock());
  }

  template <typename Result>
  Result Keep(Result result) {
    ledger_.insert(ledger_.end(), result.entries.begin(), result.entries.end());
    return result;
  }

  void Receive(const char* sku, const char* location, int64_t quantity) {
    ASSERT_EQ(Keep(state_.Receive(S(sku), L(location), quantity, "po-1", kNow)).outcome,
              StockOutcome::kApplied);
  }

  ReserveResult Reserve(const char* id, std::vector<LineRequest> lines, std::string region = "eu",
                        int64_t now = kNow) {
    return Keep(state_.Reserve(ReserveRequest{.id = R(id),
                                              .lines = std::move(lines),
                                              .region = std::move(region),
                                              .expires_at_ms = now + kTtl},
                               now));
  }

  StockLevel Stock(const char* sku, const char* location) {
    const StockLevel* level = state_.FindStock(StockKey{S(sku), L(location)});
    return level == nullptr ? StockLevel{} : *level;
  }

  InventoryState state_;
  std::vector<LedgerEntry> ledger_;
};

TEST_F(ModelTest, ReceiveAndAdjust) {
  Receive("a", "eu1", 10);
  EXPECT_EQ(Stock("a", "eu1").on_hand, 10);
  EXPECT_EQ(Stock("a", "eu1").version, 1);
  EXPECT_EQ(Keep(state_.Adjust(S("a"), L("eu1"), -3, "count", kNow)).outcome,
            StockOutcome::kApplied);
  EXPECT_EQ(Stock("a", "eu1").on_hand, 7);
  EXPECT_EQ(Stock("a", "eu1").version, 2);
  EXPECT_EQ(state_.Receive(S("a"), L("nowhere"), 1, "x", kNow).outcome,
            StockOutcome::kUnknownLocation);
  EXPECT_EQ(state_.Receive(S("a"), L("eu1"), 0, "x", kNow).outcome, StockOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Receive(S("a"), L("eu1"), -1, "x", kNow).outcome, StockOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Receive(S(""), L("eu1"), 1, "x", kNow).outcome, StockOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Receive(S("a"), L("eu1"), kStockQuantityMax + 1, "x", kNow).outcome,
            StockOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Adjust(S("a"), L("eu1"), 0, "x", kNow).outcome, StockOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Adjust(S("a"), L("eu1"), -8, "x", kNow).outcome, StockOutcome::kBelowCommitted);
  // A negative adjust of a row that does not exist creates nothing.
  EXPECT_EQ(state_.Adjust(S("b"), L("eu1"), -1, "x", kNow).outcome, StockOutcome::kBelowCommitted);
  EXPECT_FALSE(state_.HasSku(S("b")));
  EXPECT_EQ(Stock("a", "eu1").version, 2);
}

TEST_F(ModelTest, AdjustCannotGoBelowReservedPlusAllocated) {
  Receive("a", "eu1", 10);
  ASSERT_EQ(Reserve("r1", {{S("a"), 4}}).outcome, ReserveOutcome::kReserved);
  ASSERT_EQ(Reserve("r2", {{S("a"), 3}}).outcome, ReserveOutcome::kReserved);
  ASSERT_EQ(Keep(state_.Allocate(R("r2"), O("o2"), kNow)).outcome, AllocateOutcome::kAllocated);
  EXPECT_EQ(state_.Adjust(S("a"), L("eu1"), -4, "x", kNow).outcome, StockOutcome::kBelowCommitted);
  EXPECT_EQ(Keep(state_.Adjust(S("a"), L("eu1"), -3, "x", kNow)).outcome, StockOutcome::kApplied);
  EXPECT_EQ(Stock("a", "eu1").available(), 0);
}

TEST_F(ModelTest, FullLifecycle) {
  Receive("a", "eu1", 10);
  ReserveResult reserved = Reserve("r1", {{S("a"), 3}});
  ASSERT_EQ(reserved.outcome, ReserveOutcome::kReserved);
  EXPECT_EQ(Stock("a", "eu1").reserved, 3);
  EXPECT_EQ(Stock("a", "eu1").available(), 7);
  ASSERT_EQ(reserved.entries.size(), 1u);
  EXPECT_EQ(reserved.entries[0].kind, LedgerKind::kReserved);
  EXPECT_EQ(reserved.entries[0].sequence, 2);
  EXPECT_EQ(reserved.entries[0].reference, "r1");

  ASSERT_EQ(Keep(state_.Allocate(R("r1"), O("o1"), kNow + 1)).outcome, AllocateOutcome::kAllocated);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
  EXPECT_EQ(Stock("a", "eu1").allocated, 3);

  ASSERT_EQ(Keep(state_.Ship(O("o1"), "s1", {{S("a"), 3}}, kNow + 2)).outcome,
            ShipOutcome::kShipped);
  EXPECT_EQ(Stock("a", "eu1").allocated, 0);
  EXPECT_EQ(Stock("a", "eu1").on_hand, 7);
  EXPECT_EQ(state_.FindReservation(R("r1"))->state, ReservationState::kShipped);

  ASSERT_EQ(Keep(state_.Deliver(O("o1"), kNow + 3)).outcome, DeliverOutcome::kDelivered);
  EXPECT_EQ(state_.Deliver(O("o1"), kNow + 3).outcome, DeliverOutcome::kAlreadyDelivered);
  EXPECT_EQ(state_.FindReservation(R("r1"))->state, ReservationState::kDelivered);

  ASSERT_EQ(Keep(state_.Return(O("o1"), "ret1", {{S("a"), 2}}, kNow + 4)).outcome,
            ReturnOutcome::kReturned);
  EXPECT_EQ(Stock("a", "eu1").on_hand, 9);
  EXPECT_EQ(state_.Return(O("o1"), "ret1", {{S("a"), 2}}, kNow + 4).outcome,
            ReturnOutcome::kAlreadyApplied);
  EXPECT_EQ(state_.Return(O("o1"), "ret2", {{S("a"), 2}}, kNow + 4).outcome,
            ReturnOutcome::kExceedsShipped);
  EXPECT_EQ(Keep(state_.Return(O("o1"), "ret2", {{S("a"), 1}}, kNow + 4)).outcome,
            ReturnOutcome::kReturned);
  EXPECT_EQ(Stock("a", "eu1").on_hand, 10);

  std::vector<LedgerKind> kinds;
  for (const LedgerEntry& entry : ledger_) kinds.push_back(entry.kind);
  EXPECT_THAT(kinds,
              ElementsAre(LedgerKind::kReceived, LedgerKind::kReserved, LedgerKind::kAllocated,
                          LedgerKind::kShipped, LedgerKind::kDelivered, LedgerKind::kReturned,
                          LedgerKind::kReturned));
}

TEST_F(ModelTest, ReserveValidation) {
  Receive("a", "eu1", 10);
  EXPECT_EQ(Reserve("", {{S("a"), 1}}).outcome, ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(Reserve("r", {}).outcome, ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(Reserve("r", {{S("a"), 0}}).outcome, ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(Reserve("r", {{S("a"), -2}}).outcome, ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(Reserve("r", {{S("a"), kLineQuantityMax + 1}}).outcome,
            ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(Reserve("r", {{S("a"), 1}, {S("a"), 1}}).outcome, ReserveOutcome::kInvalidRequest);
  std::vector<LineRequest> too_many;
  for (size_t i = 0; i <= kReservationLinesMax; ++i) {
    too_many.push_back({Sku("s" + std::to_string(i)), 1});
  }
  EXPECT_EQ(Reserve("r", too_many).outcome, ReserveOutcome::kInvalidRequest);
  // Expiry must be in the future.
  EXPECT_EQ(
      state_
          .Reserve(ReserveRequest{.id = R("r"), .lines = {{S("a"), 1}}, .expires_at_ms = kNow},
                   kNow)
          .outcome,
      ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(state_.reservation_count(), 0u);
}

TEST_F(ModelTest, ReserveIsIdempotentAndConflictsOnDifferentLines) {
  Receive("a", "eu1", 10);
  ReserveResult first = Reserve("r1", {{S("a"), 2}});
  ASSERT_EQ(first.outcome, ReserveOutcome::kReserved);
  ReserveResult again = Reserve("r1", {{S("a"), 2}});
  EXPECT_EQ(again.outcome, ReserveOutcome::kAlreadyReserved);
  EXPECT_THAT(again.entries, IsEmpty());
  ASSERT_TRUE(again.reservation.has_value());
  EXPECT_EQ(*again.reservation, *first.reservation);
  EXPECT_EQ(Stock("a", "eu1").reserved, 2);
  EXPECT_EQ(Reserve("r1", {{S("a"), 3}}).outcome, ReserveOutcome::kConflict);
  EXPECT_EQ(Reserve("r1", {{S("a"), 2}}, "us").outcome, ReserveOutcome::kConflict);
  EXPECT_EQ(Stock("a", "eu1").reserved, 2);
}

TEST_F(ModelTest, ReserveIsAllOrNothingAndNamesShortAndUnknownSkus) {
  Receive("a", "eu1", 5);
  Receive("b", "eu1", 1);
  Receive("c", "eu1", 1);
  ReserveResult result = Reserve("r1", {{S("a"), 2}, {S("b"), 2}, {S("c"), 2}});
  EXPECT_EQ(result.outcome, ReserveOutcome::kInsufficientStock);
  EXPECT_THAT(result.short_skus, ElementsAre(S("b"), S("c")));
  EXPECT_THAT(result.entries, IsEmpty());
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
  EXPECT_EQ(state_.FindReservation(R("r1")), nullptr);

  ReserveResult unknown = Reserve("r2", {{S("a"), 1}, {S("zz"), 1}});
  EXPECT_EQ(unknown.outcome, ReserveOutcome::kUnknownSku);
  EXPECT_THAT(unknown.unknown_skus, ElementsAre(S("zz")));
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);

  // The id stays free after a failure: a retry with stock succeeds.
  Receive("b", "eu1", 1);
  Receive("c", "eu1", 1);
  EXPECT_EQ(Reserve("r1", {{S("a"), 2}, {S("b"), 2}, {S("c"), 2}}).outcome,
            ReserveOutcome::kReserved);
}

ReserveResult ReplaceIn(InventoryState& state, const char* id, const char* replaces,
                        std::vector<LineRequest> lines) {
  return state.Reserve(ReserveRequest{.id = R(id),
                                      .lines = std::move(lines),
                                      .region = "eu",
                                      .expires_at_ms = kNow + kTtl,
                                      .replaces = R(replaces)},
                       kNow);
}

TEST_F(ModelTest, ReplaceGrowsALineUsingTheReplacedUnits) {
  Receive("a", "eu1", 3);
  ASSERT_EQ(Reserve("cart-1", {{S("a"), 2}}).outcome, ReserveOutcome::kReserved);
  // Only 1 more is free, but the 2 held by cart-1 count for its replacement.
  ReserveResult grown = Keep(ReplaceIn(state_, "cart-2", "cart-1", {{S("a"), 3}}));
  ASSERT_EQ(grown.outcome, ReserveOutcome::kReserved);
  EXPECT_TRUE(grown.released_replaced);
  ASSERT_EQ(grown.entries.size(), 2u);
  EXPECT_EQ(grown.entries[0].kind, LedgerKind::kReleased);
  EXPECT_EQ(grown.entries[0].quantity, 2);
  EXPECT_EQ(grown.entries[0].reference, "cart-1");
  EXPECT_EQ(grown.entries[1].kind, LedgerKind::kReserved);
  EXPECT_EQ(grown.entries[1].quantity, 3);
  EXPECT_EQ(grown.entries[1].reference, "cart-2");
  EXPECT_EQ(state_.FindReservation(R("cart-1"))->state, ReservationState::kReleased);
  EXPECT_EQ(Stock("a", "eu1").reserved, 3);

  // Shrink: 3 -> 1 frees 2.
  ReserveResult shrunk = Keep(ReplaceIn(state_, "cart-3", "cart-2", {{S("a"), 1}}));
  ASSERT_EQ(shrunk.outcome, ReserveOutcome::kReserved);
  EXPECT_TRUE(shrunk.released_replaced);
  EXPECT_EQ(Stock("a", "eu1").reserved, 1);
  EXPECT_EQ(Stock("a", "eu1").available(), 2);

  // A replay of the same command: the stored answer, no second effect.
  ReserveResult replay = Keep(ReplaceIn(state_, "cart-3", "cart-2", {{S("a"), 1}}));
  EXPECT_EQ(replay.outcome, ReserveOutcome::kAlreadyReserved);
  EXPECT_FALSE(replay.released_replaced);
  EXPECT_THAT(replay.entries, IsEmpty());
  EXPECT_EQ(Stock("a", "eu1").reserved, 1);
}

TEST_F(ModelTest, ReplaceWithAShortLineStillReleasesTheReplaced) {
  Receive("a", "eu1", 2);
  Receive("b", "eu1", 1);
  ASSERT_EQ(Reserve("cart-1", {{S("a"), 2}}).outcome, ReserveOutcome::kReserved);
  ReserveResult failed = Keep(ReplaceIn(state_, "cart-2", "cart-1", {{S("a"), 2}, {S("b"), 5}}));
  EXPECT_EQ(failed.outcome, ReserveOutcome::kInsufficientStock);
  EXPECT_THAT(failed.short_skus, ElementsAre(S("b")));
  EXPECT_TRUE(failed.released_replaced);
  ASSERT_EQ(failed.entries.size(), 1u);
  EXPECT_EQ(failed.entries[0].kind, LedgerKind::kReleased);
  EXPECT_EQ(state_.FindReservation(R("cart-1"))->state, ReservationState::kReleased);
  EXPECT_EQ(state_.FindReservation(R("cart-2")), nullptr);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);

  // Unknown SKU: same, the replaced one is released.
  ASSERT_EQ(Reserve("cart-3", {{S("a"), 1}}).outcome, ReserveOutcome::kReserved);
  ReserveResult unknown = Keep(ReplaceIn(state_, "cart-4", "cart-3", {{S("zz"), 1}}));
  EXPECT_EQ(unknown.outcome, ReserveOutcome::kUnknownSku);
  EXPECT_THAT(unknown.unknown_skus, ElementsAre(S("zz")));
  EXPECT_TRUE(unknown.released_replaced);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);

  // Redelivered after the failure: the replaced one is already released, nothing twice.
  ReserveResult again = Keep(ReplaceIn(state_, "cart-2", "cart-1", {{S("a"), 2}, {S("b"), 5}}));
  EXPECT_EQ(again.outcome, ReserveOutcome::kInsufficientStock);
  EXPECT_FALSE(again.released_replaced);
  EXPECT_THAT(again.entries, IsEmpty());
}

TEST_F(ModelTest, ReplaceOfUnknownReleasedOrAllocatedJustReserves) {
  Receive("a", "eu1", 10);
  ReserveResult fresh = Keep(ReplaceIn(state_, "cart-2", "never-existed", {{S("a"), 1}}));
  EXPECT_EQ(fresh.outcome, ReserveOutcome::kReserved);
  EXPECT_FALSE(fresh.released_replaced);
  EXPECT_EQ(Stock("a", "eu1").reserved, 1);

  ASSERT_EQ(Keep(state_.Release(R("cart-2"), kNow)).outcome, ReleaseOutcome::kReleased);
  ReserveResult after_release = Keep(ReplaceIn(state_, "cart-3", "cart-2", {{S("a"), 2}}));
  EXPECT_EQ(after_release.outcome, ReserveOutcome::kReserved);
  EXPECT_FALSE(after_release.released_replaced);
  EXPECT_EQ(Stock("a", "eu1").reserved, 2);

  // An allocated reservation belongs to an order: a replace never touches it.
  ASSERT_EQ(Keep(state_.Allocate(R("cart-3"), O("o1"), kNow)).outcome, AllocateOutcome::kAllocated);
  ReserveResult beside = Keep(ReplaceIn(state_, "cart-4", "cart-3", {{S("a"), 1}}));
  EXPECT_EQ(beside.outcome, ReserveOutcome::kReserved);
  EXPECT_FALSE(beside.released_replaced);
  EXPECT_EQ(state_.FindReservation(R("cart-3"))->state, ReservationState::kAllocated);
  EXPECT_EQ(Stock("a", "eu1").allocated, 2);
  EXPECT_EQ(Stock("a", "eu1").reserved, 1);
}

TEST_F(ModelTest, RefusedReplaceLeavesTheReplacedHeld) {
  Receive("a", "eu1", 10);
  ASSERT_EQ(Reserve("cart-1", {{S("a"), 2}}).outcome, ReserveOutcome::kReserved);
  ASSERT_EQ(Reserve("other", {{S("a"), 1}}).outcome, ReserveOutcome::kReserved);
  // Invalid (zero quantity) and conflicting (id taken with other lines) requests change nothing.
  ReserveResult invalid = Keep(ReplaceIn(state_, "cart-2", "cart-1", {{S("a"), 0}}));
  EXPECT_EQ(invalid.outcome, ReserveOutcome::kInvalidRequest);
  ReserveResult conflict = Keep(ReplaceIn(state_, "other", "cart-1", {{S("a"), 5}}));
  EXPECT_EQ(conflict.outcome, ReserveOutcome::kConflict);
  ReserveResult too_long = Keep(ReplaceIn(
      state_, "cart-2", std::string(kReferenceLengthMax + 1, 'x').c_str(), {{S("a"), 1}}));
  EXPECT_EQ(too_long.outcome, ReserveOutcome::kInvalidRequest);
  EXPECT_EQ(state_.FindReservation(R("cart-1"))->state, ReservationState::kActive);
  EXPECT_EQ(Stock("a", "eu1").reserved, 3);
}

TEST_F(ModelTest, LocationChoiceRegionFirstThenFewestSplits) {
  Receive("a", "us1", 100);
  Receive("a", "eu1", 5);
  Receive("a", "eu2", 8);
  // One in-region location covers it: the one with the most available.
  auto r1 = Reserve("r1", {{S("a"), 4}}, "eu");
  ASSERT_EQ(r1.outcome, ReserveOutcome::kReserved);
  EXPECT_THAT(r1.reservation->lines[0].splits, ElementsAre(Split{L("eu2"), 4}));
  // No in-region location covers 9 alone (eu1 5, eu2 4 left) but us1 does: one shipment.
  auto r2 = Reserve("r2", {{S("a"), 9}}, "eu");
  EXPECT_THAT(r2.reservation->lines[0].splits, ElementsAre(Split{L("us1"), 9}));
  // A US customer gets us1.
  auto r3 = Reserve("r3", {{S("a"), 2}}, "us");
  EXPECT_THAT(r3.reservation->lines[0].splits, ElementsAre(Split{L("us1"), 2}));
  // Nothing covers 95 alone (us1 has 89): region first, largest first.
  auto r4 = Reserve("r4", {{S("a"), 95}}, "eu");
  ASSERT_EQ(r4.outcome, ReserveOutcome::kReserved);
  EXPECT_THAT(r4.reservation->lines[0].splits,
              ElementsAre(Split{L("eu1"), 5}, Split{L("eu2"), 4}, Split{L("us1"), 86}));
  EXPECT_EQ(Reserve("r5", {{S("a"), 4}}, "eu").outcome, ReserveOutcome::kInsufficientStock);
}

TEST_F(ModelTest, ChooseLocationsTiesBreakOnId) {
  Location x{L("x"), "eu", ""};
  Location y{L("y"), "eu", ""};
  StockLevel sx{.sku = S("a"), .location = L("x"), .on_hand = 5};
  StockLevel sy{.sku = S("a"), .location = L("y"), .on_hand = 5};
  auto splits = ChooseLocations({{&sy, &y}, {&sx, &x}}, "eu", 3);
  ASSERT_TRUE(splits.has_value());
  EXPECT_THAT(*splits, ElementsAre(Split{L("x"), 3}));
  EXPECT_FALSE(ChooseLocations({{&sy, &y}, {&sx, &x}}, "eu", 11).has_value());
}

TEST_F(ModelTest, ReleaseTransitions) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 3}});
  EXPECT_EQ(state_.Release(R("nope"), kNow).outcome, ReleaseOutcome::kNotFound);
  EXPECT_EQ(Keep(state_.Release(R("r1"), kNow)).outcome, ReleaseOutcome::kReleased);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
  EXPECT_EQ(state_.Release(R("r1"), kNow).outcome, ReleaseOutcome::kAlreadyReleased);
  EXPECT_EQ(state_.Allocate(R("r1"), O("o1"), kNow).outcome, AllocateOutcome::kReleased);
  EXPECT_EQ(state_.Extend(R("r1"), kNow + kTtl * 2, kNow).outcome, ExtendOutcome::kNotActive);
  // Replaying the reserve returns the stored (released) reservation, no new hold.
  auto replay = Reserve("r1", {{S("a"), 3}});
  EXPECT_EQ(replay.outcome, ReserveOutcome::kAlreadyReserved);
  EXPECT_EQ(replay.reservation->state, ReservationState::kReleased);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);

  Reserve("r2", {{S("a"), 3}});
  Keep(state_.Allocate(R("r2"), O("o2"), kNow));
  EXPECT_EQ(state_.Release(R("r2"), kNow).outcome, ReleaseOutcome::kNotActive);
}

TEST_F(ModelTest, ExpiryReturnsStockExactlyOnce) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 3}});
  Reserve("r2", {{S("a"), 2}}, "eu", kNow + 10);
  EXPECT_EQ(state_.NextExpiryMs(), kNow + kTtl);
  EXPECT_THAT(Keep(state_.ExpireDue(kNow + kTtl - 1, 100)).expired, IsEmpty());
  ExpireResult first = Keep(state_.ExpireDue(kNow + kTtl, 100));
  EXPECT_THAT(first.expired, ElementsAre(R("r1")));
  ASSERT_EQ(first.entries.size(), 1u);
  EXPECT_EQ(first.entries[0].kind, LedgerKind::kExpired);
  EXPECT_EQ(Stock("a", "eu1").reserved, 2);
  EXPECT_THAT(Keep(state_.ExpireDue(kNow + kTtl, 100)).entries, IsEmpty());
  EXPECT_EQ(state_.Release(R("r1"), kNow + kTtl).outcome, ReleaseOutcome::kAlreadyExpired);
  EXPECT_EQ(state_.Allocate(R("r1"), O("o1"), kNow + kTtl).outcome, AllocateOutcome::kExpired);
  EXPECT_EQ(state_.Extend(R("r1"), kNow * 9, kNow + kTtl).outcome, ExtendOutcome::kExpired);
  EXPECT_EQ(Keep(state_.ExpireDue(kNow + kTtl + 10, 100)).expired, std::vector{R("r2")});
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
}

TEST_F(ModelTest, ExpireDueIsBounded) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 1}});
  Reserve("r2", {{S("a"), 1}});
  Reserve("r3", {{S("a"), 1}});
  EXPECT_EQ(Keep(state_.ExpireDue(kNow + kTtl, 2)).expired.size(), 2u);
  EXPECT_EQ(Keep(state_.ExpireDue(kNow + kTtl, 2)).expired.size(), 1u);
}

TEST_F(ModelTest, AllocateAfterExpiryTimeLosesEvenBeforeTheSweep) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 3}});
  AllocateResult late = Keep(state_.Allocate(R("r1"), O("o1"), kNow + kTtl));
  EXPECT_EQ(late.outcome, AllocateOutcome::kExpired);
  ASSERT_EQ(late.entries.size(), 1u);
  EXPECT_EQ(late.entries[0].kind, LedgerKind::kExpired);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
  // The sweep finds nothing left to do: the stock came back once.
  EXPECT_THAT(Keep(state_.ExpireDue(kNow + kTtl * 2, 100)).entries, IsEmpty());
}

TEST_F(ModelTest, ExpireAfterAllocateDoesNothing) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 3}});
  ASSERT_EQ(Keep(state_.Allocate(R("r1"), O("o1"), kNow + 1)).outcome, AllocateOutcome::kAllocated);
  EXPECT_THAT(Keep(state_.ExpireDue(kNow + kTtl * 10, 100)).expired, IsEmpty());
  EXPECT_EQ(Stock("a", "eu1").allocated, 3);
  EXPECT_EQ(state_.FindReservation(R("r1"))->state, ReservationState::kAllocated);
}

TEST_F(ModelTest, ExtendTransitions) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 1}});
  EXPECT_EQ(state_.Extend(R("nope"), kNow + 1, kNow).outcome, ExtendOutcome::kNotFound);
  EXPECT_EQ(state_.Extend(R("r1"), kNow, kNow).outcome, ExtendOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Extend(R("r1"), kNow + 5 * kTtl, kNow + 1).outcome, ExtendOutcome::kExtended);
  EXPECT_EQ(state_.Extend(R("r1"), kNow + 5 * kTtl, kNow + 1).outcome, ExtendOutcome::kExtended);
  EXPECT_EQ(state_.NextExpiryMs(), kNow + 5 * kTtl);
  EXPECT_THAT(Keep(state_.ExpireDue(kNow + kTtl, 100)).expired, IsEmpty());
  // Extending once the expiry has passed expires it instead.
  ExtendResult late = Keep(state_.Extend(R("r1"), kNow + 9 * kTtl, kNow + 5 * kTtl));
  EXPECT_EQ(late.outcome, ExtendOutcome::kExpired);
  EXPECT_EQ(Stock("a", "eu1").reserved, 0);
}

TEST_F(ModelTest, AllocateTransitions) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 1}});
  Reserve("r2", {{S("a"), 1}});
  EXPECT_EQ(state_.Allocate(R("nope"), O("o1"), kNow).outcome, AllocateOutcome::kNotFound);
  EXPECT_EQ(state_.Allocate(R("r1"), O(""), kNow).outcome, AllocateOutcome::kInvalidRequest);
  EXPECT_EQ(Keep(state_.Allocate(R("r1"), O("o1"), kNow)).outcome, AllocateOutcome::kAllocated);
  EXPECT_EQ(state_.Allocate(R("r1"), O("o1"), kNow).outcome, AllocateOutcome::kAlreadyAllocated);
  EXPECT_EQ(state_.Allocate(R("r1"), O("o9"), kNow).outcome, AllocateOutcome::kConflict);
  // One order, one allocation.
  EXPECT_EQ(state_.Allocate(R("r2"), O("o1"), kNow).outcome, AllocateOutcome::kConflict);
  EXPECT_EQ(Stock("a", "eu1").allocated, 1);
  EXPECT_EQ(Stock("a", "eu1").reserved, 1);
}

TEST_F(ModelTest, CancelAllocationTransitions) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 4}});
  EXPECT_EQ(state_.CancelAllocation(O("o1"), kNow).outcome, CancelAllocationOutcome::kNotFound);
  Keep(state_.Allocate(R("r1"), O("o1"), kNow));
  EXPECT_EQ(Keep(state_.CancelAllocation(O("o1"), kNow)).outcome,
            CancelAllocationOutcome::kCancelled);
  EXPECT_EQ(Stock("a", "eu1").allocated, 0);
  EXPECT_EQ(Stock("a", "eu1").available(), 10);
  EXPECT_EQ(state_.CancelAllocation(O("o1"), kNow).outcome,
            CancelAllocationOutcome::kAlreadyCancelled);
  EXPECT_EQ(state_.Allocate(R("r1"), O("o1"), kNow).outcome, AllocateOutcome::kConflict);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {{S("a"), 1}}, kNow).outcome, ShipOutcome::kNotAllocated);
  // The order may reserve and allocate again after its allocation was cancelled.
  Reserve("r2", {{S("a"), 4}});
  EXPECT_EQ(Keep(state_.Allocate(R("r2"), O("o1"), kNow)).outcome, AllocateOutcome::kAllocated);
  Keep(state_.Ship(O("o1"), "s1", {{S("a"), 1}}, kNow));
  EXPECT_EQ(state_.CancelAllocation(O("o1"), kNow).outcome,
            CancelAllocationOutcome::kAlreadyShipped);
}

// Evict drops only settled reservations with no pending change; FaultIn brings one back and,
// given every holder of an order, restores the order index (the allocated holder over an
// allocation-cancelled one, in either load order).
TEST_F(ModelTest, EvictAndFaultInKeepTheOrderIndex) {
  Receive("a", "eu1", 10);
  Reserve("r1", {{S("a"), 1}});
  Keep(state_.Allocate(R("r1"), O("o1"), kNow));
  Keep(state_.CancelAllocation(O("o1"), kNow));
  Reserve("r2", {{S("a"), 2}});
  Keep(state_.Allocate(R("r2"), O("o1"), kNow));
  Reserve("r3", {{S("a"), 1}});
  EXPECT_FALSE(state_.Evict(R("r1")));  // changed since the last TakeChanges
  state_.TakeChanges();
  EXPECT_FALSE(state_.Evict(R("r2")));  // allocated
  EXPECT_FALSE(state_.Evict(R("r3")));  // active
  EXPECT_FALSE(state_.Evict(R("nope")));
  Keep(state_.Ship(O("o1"), "s1", {{S("a"), 2}}, kNow));
  state_.TakeChanges();
  const Reservation r1 = *state_.FindReservation(R("r1"));
  const Reservation r2 = *state_.FindReservation(R("r2"));
  for (bool allocated_first : {true, false}) {
    ASSERT_TRUE(state_.Evict(R("r1")));
    ASSERT_TRUE(state_.Evict(R("r2")));
    EXPECT_EQ(state_.FindReservation(R("r1")), nullptr);
    EXPECT_EQ(state_.FindReservationByOrder(O("o1")), nullptr);
    EXPECT_EQ(state_.reservation_count(), 1u);
    if (allocated_first) {
      state_.FaultIn(r2);
      state_.FaultIn(r1);
    } else {
      state_.FaultIn(r1);
      state_.FaultIn(r2);
    }
    EXPECT_EQ(*state_.FindReservation(R("r1")), r1);
    ASSERT_NE(state_.FindReservationByOrder(O("o1")), nullptr);
    EXPECT_EQ(state_.FindReservationByOrder(O("o1"))->id, R("r2"));
    state_.FaultIn(r2);  // already resident: unchanged
    EXPECT_EQ(*state_.FindReservation(R("r2")), r2);
  }
  // The cancelled one resident, the shipped one evicted: faulting the shipped one in wins.
  ASSERT_TRUE(state_.Evict(R("r2")));
  EXPECT_EQ(state_.FindReservationByOrder(O("o1")), nullptr);
  state_.FaultIn(r1);  // resident: re-claims the order
  EXPECT_EQ(state_.FindReservationByOrder(O("o1"))->id, R("r1"));
  state_.FaultIn(r2);
  EXPECT_EQ(state_.FindReservationByOrder(O("o1"))->id, R("r2"));
  EXPECT_EQ(Keep(state_.Deliver(O("o1"), kNow)).outcome, DeliverOutcome::kDelivered);
}

TEST_F(ModelTest, ShipTransitionsAndPartialShipments) {
  Receive("a", "eu1", 3);
  Receive("a", "eu2", 3);
  Receive("b", "eu1", 5);
  auto reserved = Reserve("r1", {{S("a"), 5}, {S("b"), 2}});
  ASSERT_EQ(reserved.outcome, ReserveOutcome::kReserved);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {{S("a"), 1}}, kNow).outcome, ShipOutcome::kNotFound);
  Keep(state_.Allocate(R("r1"), O("o1"), kNow));
  EXPECT_EQ(state_.Ship(O("o1"), "", {{S("a"), 1}}, kNow).outcome, ShipOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {}, kNow).outcome, ShipOutcome::kInvalidRequest);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {{S("a"), 6}}, kNow).outcome,
            ShipOutcome::kExceedsAllocation);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {{S("zz"), 1}}, kNow).outcome,
            ShipOutcome::kExceedsAllocation);
  EXPECT_EQ(Keep(state_.Ship(O("o1"), "s1", {{S("a"), 4}}, kNow)).outcome, ShipOutcome::kShipped);
  EXPECT_EQ(state_.Ship(O("o1"), "s1", {{S("a"), 1}}, kNow).outcome, ShipOutcome::kAlreadyApplied);
  EXPECT_EQ(state_.FindReservation(R("r1"))->state, ReservationState::kAllocated);
  EXPECT_EQ(state_.Deliver(O("o1"), kNow).outcome, DeliverOutcome::kNotShipped);
  EXPECT_EQ(state_.Ship(O("o1"), "s2", {{S("a"), 2}}, kNow).outcome,
            ShipOutcome::kExceedsAllocation);
  EXPECT_EQ(Keep(state_.Ship(O("o1"), "s2", {{S("a"), 1}, {S("b"), 2}}, kNow)).outcome,
            ShipOutcome::kShipped);
  EXPECT_EQ(state_.FindReservation(R("r1"))->state, ReservationState::kShipped);
  EXPECT_EQ(state_.Ship(O("o1"), "s3", {{S("a"), 1}}, kNow).outcome,
            ShipOutcome::kExceedsAllocation);
  EXPECT_EQ(Stock("a", "eu1").on_hand + Stock("a", "eu2").on_hand, 1);
  EXPECT_EQ(Stock("b", "eu1").on_hand, 3);
}

TEST_F(ModelTest, ReturnTransitions) {
  Receive("a", "eu1", 3);
  Reserve("r1", {{S("a"), 2}});
  EXPECT_EQ(state_.Return(O("o1"), "ret", {{S("a"), 1}}, kNow).outcome, ReturnOutcome::kNotFound);
  Keep(state_.Allocate(R("r1"), O("o1"), kNow));
  EXPECT_EQ(state_.Return(O("o1"), "ret", {{S("a"), 1}}, kNow).outcome,
            ReturnOutcome::kExceedsShipped);
  EXPECT_EQ(state_.Return(O("o1"), "", {{S("a"), 1}}, kNow).outcome,
            ReturnOutcome::kInvalidRequest);
  Keep(state_.CancelAllocation(O("o1"), kNow));
  EXPECT_EQ(state_.Return(O("o1"), "ret", {{S("a"), 1}}, kNow).outcome, ReturnOutcome::kNotShipped);
}

TEST(ProjectTest, RejectsGapsAndInvariantBreaks) {
  std::vector<LedgerEntry> gap = {
      {S("a"), L("x"), 1, LedgerKind::kReceived, 5, "", 0},
      {S("a"), L("x"), 3, LedgerKind::kReceived, 5, "", 0},
  };
  EXPECT_FALSE(Project(gap).ok());
  std::vector<LedgerEntry> oversold = {
      {S("a"), L("x"), 1, LedgerKind::kReceived, 1, "", 0},
      {S("a"), L("x"), 2, LedgerKind::kReserved, 2, "r", 0},
  };
  EXPECT_FALSE(Project(oversold).ok());
  std::vector<LedgerEntry> fine = {
      {S("a"), L("x"), 2, LedgerKind::kReserved, 1, "r", 0},
      {S("a"), L("x"), 1, LedgerKind::kReceived, 1, "", 0},
  };
  auto levels = Project(fine);
  ASSERT_TRUE(levels.ok());
  EXPECT_EQ(levels->at(0).reserved, 1);
  EXPECT_EQ(levels->at(0).version, 2);
}

TEST(NamesTest, RoundTrip) {
  for (LedgerKind kind :
       {LedgerKind::kReceived, LedgerKind::kAllocationCancelled, LedgerKind::kReturned}) {
    EXPECT_EQ(ParseLedgerKind(LedgerKindName(kind)), kind);
  }
  EXPECT_EQ(ParseLedgerKind("bogus"), std::nullopt);
  EXPECT_EQ(ParseReservationState(ReservationStateName(ReservationState::kAllocationCancelled)),
            ReservationState::kAllocationCancelled);
}

// Thousands of random operations: invariants after each, ledger projection == state at the end.
TEST_F(ModelTest, RandomizedOperationsKeepInvariants) {
  std::mt19937_64 random(20260101);
  const std::vector<Sku> skus = {S("a"), S("b"), S("c"), S("d")};
  const std::vector<LocationId> locations = {L("eu1"), L("eu2"), L("us1")};
  auto pick = [&](auto& items) -> decltype(auto) { return items[random() % items.size()]; };
  int64_t now = kNow;
  int reservation_count = 0;
  int64_t total_reserved_ok = 0;
  constexpr int kOperations = 5000;
  for (int i = 0; i < kOperations; ++i) {
    now += static_cast<int64_t>(random() % 2000);
    const std::string rid = "r" + std::to_string(random() % (reservation_count + 1));
    const std::string oid = "o" + std::to_string(random() % (reservation_count + 1));
    switch (random() % 11) {
      case 0:
        Keep(state_.Receive(pick(skus), pick(locations), 1 + random() % 5, "po", now));
        break;
      case 1:
        Keep(state_.Adjust(pick(skus), pick(locations), static_cast<int64_t>(random() % 7) - 3,
                           "count", now));
        break;
      case 2:
      case 3: {
        std::vector<LineRequest> lines = {{pick(skus), 1 + static_cast<int64_t>(random() % 4)}};
        if (random() % 3 == 0 && lines[0].sku != S("d")) lines.push_back({S("d"), 1});
        const std::string id = "r" + std::to_string(reservation_count++);
        auto result = Keep(state_.Reserve(
            ReserveRequest{.id = ReservationId(id),
                           .lines = lines,
                           .region = random() % 2 ? "eu" : "us",
                           .expires_at_ms = now + 1 + static_cast<int64_t>(random() % 30000)},
            now));
        if (result.outcome == ReserveOutcome::kReserved) ++total_reserved_ok;
        break;
      }
      case 4:
        Keep(state_.Release(ReservationId(rid), now));
        break;
      case 5:
        Keep(state_.Allocate(ReservationId(rid), OrderId(oid), now));
        break;
      case 6:
        Keep(state_.ExpireDue(now, 1 + random() % 5));
        break;
      case 7:
        Keep(state_.CancelAllocation(OrderId(oid), now));
        break;
      case 8:
        if (const Reservation* r = state_.FindReservationByOrder(OrderId(oid))) {
          Keep(state_.Ship(OrderId(oid), "s" + std::to_string(i),
                           {{r->lines[0].sku, 1 + static_cast<int64_t>(random() % 2)}}, now));
        }
        break;
      case 9:
        Keep(state_.Deliver(OrderId(oid), now));
        break;
      case 10:
        if (const Reservation* r = state_.FindReservationByOrder(OrderId(oid))) {
          Keep(state_.Return(OrderId(oid), "ret" + std::to_string(i), {{r->lines[0].sku, 1}}, now));
        }
        break;
    }
    ASSERT_TRUE(state_.CheckInvariants().ok())
        << "after op " << i << ": " << state_.CheckInvariants();
  }
  EXPECT_GT(total_reserved_ok, 100);
  // TearDown checks ledger projection == state.
}

}  // namespace
}  // namespace emporium::inventory
