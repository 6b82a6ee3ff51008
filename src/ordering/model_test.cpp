#include "ordering/model.h"

#include <string>
#include <utility>

#include "common/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emporium::ordering {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kNow = 1'000'000;
constexpr char kCartRes[] = "cart-c1-3";
constexpr char kOwnRes[] = "order-o1";

Money Usd(int64_t minor) { return *Money::FromMinor(minor, "USD"); }

// ---- Carts ----

TEST(CartTest, AddGrowsAndLimits) {
  CartLimits limits{.line_quantity_max = 5, .lines_max = 2};
  auto lines = AddCartLine({}, "A", 2, limits);
  ASSERT_TRUE(lines.ok());
  lines = AddCartLine(*lines, "A", 3, limits);
  ASSERT_TRUE(lines.ok());
  EXPECT_THAT(*lines, ElementsAre(CartLine{"A", 5}));
  auto over = AddCartLine(*lines, "A", 1, limits);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorParam(over.status()), "quantity");
  lines = AddCartLine(*lines, "B", 1, limits);
  ASSERT_TRUE(lines.ok());
  auto full = AddCartLine(*lines, "C", 1, limits);
  EXPECT_EQ(ErrorCode(full.status()), "cart_full");
  EXPECT_FALSE(AddCartLine({}, "", 1, limits).ok());
  EXPECT_FALSE(AddCartLine({}, "a b", 1, limits).ok());
  EXPECT_FALSE(AddCartLine({}, "A", 0, limits).ok());
  EXPECT_FALSE(AddCartLine({}, "A", -3, limits).ok());
  EXPECT_FALSE(AddCartLine({}, std::string(kSkuLengthMax + 1, 'x'), 1, limits).ok());
}

TEST(CartTest, SetQuantityAndRemove) {
  CartLimits limits;
  std::vector<CartLine> lines = {{"A", 1}, {"B", 2}};
  auto set = SetCartLineQuantity(lines, "B", 7, limits);
  ASSERT_TRUE(set.ok());
  EXPECT_THAT(*set, ElementsAre(CartLine{"A", 1}, CartLine{"B", 7}));
  auto removed = SetCartLineQuantity(lines, "A", 0, limits);
  ASSERT_TRUE(removed.ok());
  EXPECT_THAT(*removed, ElementsAre(CartLine{"B", 2}));
  EXPECT_EQ(SetCartLineQuantity(lines, "Z", 1, limits).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(SetCartLineQuantity(lines, "A", limits.line_quantity_max + 1, limits).ok());
}

TEST(CartTest, Totals) {
  PricingRules rules;
  rules.regions["eu"] = RegionRates{{{"USD", 500}, {"EUR", 400}}, 2000};
  rules.fallback = RegionRates{{{"USD", 1000}}, 0};
  std::vector<PricedLine> lines = {*PriceLine("A", "a", 2, Usd(1250)),
                                   *PriceLine("B", "b", 1, Usd(333))};
  auto totals = ComputeTotals(lines, "USD", "eu", rules);
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->subtotal, Usd(2833));
  EXPECT_EQ(totals->shipping, Usd(500));
  EXPECT_EQ(totals->tax, Usd(667));  // 20 % of 33.33 = 6.666 -> 6.67
  EXPECT_EQ(totals->grand_total, Usd(4000));
  auto fallback = ComputeTotals(lines, "USD", "mars", rules);
  ASSERT_TRUE(fallback.ok());
  EXPECT_EQ(fallback->grand_total, Usd(3833));
  auto empty = ComputeTotals({}, "USD", "eu", rules);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->grand_total.is_zero());
  EXPECT_EQ(ErrorCode(ComputeTotals(lines, "EUR", "eu", rules).status()), "currency_mismatch");
  std::vector<PricedLine> jpy = {*PriceLine("A", "a", 1, *Money::FromMinor(100, "JPY"))};
  EXPECT_EQ(ErrorCode(ComputeTotals(jpy, "JPY", "eu", rules).status()), "currency_not_shipped");
  EXPECT_FALSE(PriceLine("A", "a", 2, Usd(INT64_MAX / 2 + 1)).ok());
}

TEST(PricingRulesTest, DefaultsEqualTheFormerBuiltInRules) {
  PricingRules expected;
  expected.fallback = RegionRates{{{"USD", 999},
                                   {"EUR", 999},
                                   {"GBP", 899},
                                   {"JPY", 1500},
                                   {"CHF", 999},
                                   {"CAD", 1299},
                                   {"AUD", 1299},
                                   {"SEK", 9900}},
                                  0};
  expected.regions["us"] = RegionRates{{{"USD", 499}, {"CAD", 999}}, 800};
  expected.regions["eu"] = RegionRates{{{"EUR", 499}, {"USD", 599}, {"SEK", 4900}}, 2000};
  expected.regions["uk"] = RegionRates{{{"GBP", 399}, {"EUR", 599}}, 2000};
  expected.regions["jp"] = RegionRates{{{"JPY", 800}}, 1000};
  absl::StatusOr<PricingRules> parsed = ParsePricingRules(kDefaultShippingRates, kDefaultTaxRates);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, expected);
}

TEST(PricingRulesTest, ParsesTheCompactFormWithSpacesAndFallbackTax) {
  absl::StatusOr<PricingRules> rules =
      ParsePricingRules(" us : USD=499 , CAD=999 ; eu:EUR=0 ; *:USD=999 ", "us=800; *=150");
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ(rules->regions.at("us"), (RegionRates{{{"USD", 499}, {"CAD", 999}}, 800}));
  EXPECT_EQ(rules->regions.at("eu"), (RegionRates{{{"EUR", 0}}, 150}));  // the '*' tax
  EXPECT_EQ(rules->fallback, (RegionRates{{{"USD", 999}}, 150}));
  EXPECT_EQ(rules->ForRegion("mars").shipping_minor.at("USD"), 999);

  // No '*': unlisted regions are not shipped to. Empty text: no rules at all.
  absl::StatusOr<PricingRules> only_us = ParsePricingRules("us:USD=1", "");
  ASSERT_TRUE(only_us.ok());
  EXPECT_TRUE(only_us->fallback.shipping_minor.empty());
  EXPECT_EQ(only_us->regions.at("us").tax_basis_points, 0);
  absl::StatusOr<PricingRules> none = ParsePricingRules("", "  ");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, PricingRules{});
}

TEST(PricingRulesTest, RejectsHostileAndMalformedText) {
  const std::pair<const char*, const char*> bad[] = {
      {"us", ""},                 // no ':'
      {"us:", ""},                // no rates
      {"us:USD", ""},             // no '='
      {"us:USD=", ""},            // no amount
      {"us:USD=-5", ""},          // negative
      {"us:USD=4.99", ""},        // not minor units
      {"us:USD=1000000001", ""},  // above kShippingMinorMax
      {"us:USD=99999999999999999999", ""},
      {"us:XXX=1", ""},  // unknown currency
      {"us:usd=1", ""},  // currency codes are upper-case
      {"US:USD=1", ""},  // regions are lower-case
      {"u s:USD=1", ""},
      {"us:USD=1;us:CAD=1", ""},  // region twice
      {"*:USD=1;*:EUR=1", ""},    // fallback twice
      {"us:USD=1,USD=2", ""},     // currency twice
      {"us:USD=1;", ""},          // empty group
      {"us:USD=1", "us"},         // no '='
      {"us:USD=1", "us=10001"},   // above 100 %
      {"us:USD=1", "us=-1"},
      {"us:USD=1", "ca=100"},     // tax for a region without shipping
      {"us:USD=1", "us=1,us=2"},  // twice
      {"us:USD=1", "us=1,"},      // empty item
  };
  for (const auto& [shipping, tax] : bad) {
    absl::StatusOr<PricingRules> rules = ParsePricingRules(shipping, tax);
    EXPECT_EQ(rules.status().code(), absl::StatusCode::kInvalidArgument)
        << "shipping='" << shipping << "' tax='" << tax << "'";
  }
  std::string many;
  for (size_t i = 0; i <= kPricingRegionsMax; ++i) many += "r" + std::to_string(i) + ":USD=1;";
  many.pop_back();
  EXPECT_FALSE(ParsePricingRules(many, "").ok());
}

TEST(OrderStateTest, NamesRoundTripAndClassify) {
  for (OrderState state : {OrderState::kPending, OrderState::kReserved, OrderState::kAuthorized,
                           OrderState::kConfirmed, OrderState::kRejected, OrderState::kCancelled}) {
    EXPECT_EQ(ParseOrderState(OrderStateName(state)), state);
  }
  EXPECT_FALSE(ParseOrderState("SHIPPED").has_value());
  EXPECT_TRUE(IsTerminal(OrderState::kRejected));
  EXPECT_TRUE(IsTerminal(OrderState::kCancelled));
  EXPECT_FALSE(IsTerminal(OrderState::kConfirmed));
  EXPECT_TRUE(IsSettled(OrderState::kConfirmed));
  EXPECT_FALSE(IsSettled(OrderState::kAuthorized));
  for (SagaStep step : {SagaStep::kExtend, SagaStep::kReserve, SagaStep::kAuthorize,
                        SagaStep::kAllocate, SagaStep::kVoid, SagaStep::kRefund,
                        SagaStep::kCancelAllocation, SagaStep::kRelease, SagaStep::kDone}) {
    EXPECT_EQ(ParseSagaStep(SagaStepName(step)), step);
  }
}

// ---- Saga ----

class SagaTest : public ::testing::Test {
 protected:
  SagaState Start(bool take_over = false) {
    SagaDecision d =
        StartSaga(take_over ? kCartRes : "", CartHold::kExtend, kOwnRes, now_, policy_);
    EXPECT_EQ(d.commands.size(), 1u);
    return d.state;
  }
  SagaDecision Apply(const SagaState& state, SagaInput input) {
    absl::StatusOr<SagaDecision> d = Decide(state, input, now_, policy_);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? *std::move(d) : SagaDecision{state, {}, {}, false};
  }
  static SagaInput Reply(InputKind kind, bool ok, std::string reservation = kOwnRes,
                         std::string outcome = "") {
    return SagaInput{kind, ok, std::move(reservation), std::move(outcome), {}};
  }
  static SagaInput Event(InputKind kind, std::string outcome = "") {
    return SagaInput{kind, false, "", std::move(outcome), {}};
  }
  static std::vector<CommandKind> Kinds(const SagaDecision& d) {
    std::vector<CommandKind> kinds;
    for (const SagaCommand& c : d.commands) kinds.push_back(c.kind);
    return kinds;
  }
  // PENDING -> RESERVED -> AUTHORIZED.
  SagaState Authorized() {
    SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
    return Apply(s, Event(InputKind::kPaymentAuthorized)).state;
  }
  SagaState Confirmed() {
    return Apply(Authorized(), Reply(InputKind::kAllocateReply, true)).state;
  }

  int64_t now_ = kNow;
  SagaPolicy policy_;
};

TEST_F(SagaTest, HappyPathReservesAuthorizesAllocates) {
  SagaDecision start = StartSaga("", CartHold::kExtend, kOwnRes, now_, policy_);
  EXPECT_EQ(start.state.order_state, OrderState::kPending);
  EXPECT_EQ(start.state.step, SagaStep::kReserve);
  EXPECT_EQ(start.state.deadline_ms, kNow + policy_.step_timeout_ms);
  EXPECT_THAT(start.commands, ElementsAre(SagaCommand{CommandKind::kReserve, kOwnRes, 1}));
  EXPECT_FALSE(start.timeline.empty());

  SagaDecision reserved = Apply(start.state, Reply(InputKind::kReserveReply, true));
  EXPECT_EQ(reserved.state.order_state, OrderState::kReserved);
  EXPECT_EQ(reserved.state.step, SagaStep::kAuthorize);
  EXPECT_EQ(reserved.state.deadline_ms, kNow + policy_.authorize_timeout_ms);
  EXPECT_THAT(Kinds(reserved), ElementsAre(CommandKind::kAuthorize));

  SagaDecision authorized = Apply(reserved.state, Event(InputKind::kPaymentAuthorized));
  EXPECT_EQ(authorized.state.order_state, OrderState::kAuthorized);
  EXPECT_TRUE(authorized.state.authorized);
  EXPECT_THAT(Kinds(authorized), ElementsAre(CommandKind::kAllocate));

  SagaDecision confirmed = Apply(authorized.state, Reply(InputKind::kAllocateReply, true));
  EXPECT_EQ(confirmed.state.order_state, OrderState::kConfirmed);
  EXPECT_EQ(confirmed.state.step, SagaStep::kDone);
  EXPECT_TRUE(confirmed.state.allocated);
  EXPECT_TRUE(confirmed.commands.empty());
  EXPECT_TRUE(SagaFinished(confirmed.state));
}

TEST_F(SagaTest, TakesOverTheCartReservation) {
  SagaState s = Start(/*take_over=*/true);
  EXPECT_EQ(s.step, SagaStep::kExtend);
  EXPECT_EQ(s.reservation_id, kCartRes);
  SagaDecision d = Apply(s, Reply(InputKind::kExtendReply, true, kCartRes, "extended"));
  EXPECT_EQ(d.state.order_state, OrderState::kReserved);
  EXPECT_EQ(d.state.reservation_id, kCartRes);
  EXPECT_THAT(Kinds(d), ElementsAre(CommandKind::kAuthorize));
}

// A cart reservation inventory confirmed with the order's TTL still ahead is taken over as it
// is: RESERVED at once, authorize first, no inventory.extend; an extend reply arriving anyway is
// ignored, and a decline releases the cart's reservation.
TEST_F(SagaTest, TakesOverAHeldCartReservationWithoutExtending) {
  SagaDecision start = StartSaga(kCartRes, CartHold::kHeld, kOwnRes, now_, policy_);
  EXPECT_EQ(start.state.order_state, OrderState::kReserved);
  EXPECT_EQ(start.state.step, SagaStep::kAuthorize);
  EXPECT_EQ(start.state.reservation_id, kCartRes);
  EXPECT_THAT(Kinds(start), ElementsAre(CommandKind::kAuthorize));
  SagaDecision stray = Apply(start.state, Reply(InputKind::kExtendReply, true, kCartRes));
  EXPECT_FALSE(stray.changed);
  SagaDecision declined = Apply(start.state, Event(InputKind::kPaymentDeclined));
  EXPECT_THAT(Kinds(declined), ElementsAre(CommandKind::kRelease));
  EXPECT_EQ(declined.commands.front().reservation_id, kCartRes);
  // Held means nothing without a cart reservation: the order reserves its own.
  SagaDecision own = StartSaga("", CartHold::kHeld, kOwnRes, now_, policy_);
  EXPECT_EQ(own.state.step, SagaStep::kReserve);
  EXPECT_THAT(own.commands, ElementsAre(SagaCommand{CommandKind::kReserve, kOwnRes, 1}));
}

// Checked out while the cart's own reserve was still on its way: the order sends nothing and
// waits for that reply (which the service passes on), falling back to an extend if none comes.
TEST_F(SagaTest, WaitsForThePendingCartReservationInsteadOfExtendingIt) {
  SagaDecision start = StartSaga(kCartRes, CartHold::kPending, kOwnRes, now_, policy_);
  const SagaState waiting = start.state;
  EXPECT_EQ(waiting.order_state, OrderState::kPending);
  EXPECT_EQ(waiting.step, SagaStep::kAwaitCartReservation);
  EXPECT_EQ(waiting.reservation_id, kCartRes);
  EXPECT_TRUE(start.commands.empty());
  EXPECT_GT(waiting.deadline_ms, now_);
  EXPECT_EQ(ParseSagaStep(SagaStepName(SagaStep::kAwaitCartReservation)),
            SagaStep::kAwaitCartReservation);

  SagaDecision confirmed = Apply(waiting, Reply(InputKind::kReserveReply, true, kCartRes));
  EXPECT_EQ(confirmed.state.order_state, OrderState::kReserved);
  EXPECT_THAT(Kinds(confirmed), ElementsAre(CommandKind::kAuthorize));

  // Confirmed, but expiring unlike an order's reservation (the service compares): extended.
  SagaDecision mistimed =
      Apply(waiting, Reply(InputKind::kCartReservationMistimed, true, kCartRes));
  EXPECT_EQ(mistimed.state.order_state, OrderState::kPending);
  EXPECT_EQ(mistimed.state.step, SagaStep::kExtend);
  EXPECT_THAT(mistimed.commands, ElementsAre(SagaCommand{CommandKind::kExtend, kCartRes, 1}));
  EXPECT_FALSE(
      Apply(mistimed.state, Reply(InputKind::kCartReservationMistimed, true, kCartRes)).changed);

  SagaDecision failed =
      Apply(waiting, Reply(InputKind::kReserveReply, false, kCartRes, "insufficient_stock"));
  EXPECT_EQ(failed.state.order_state, OrderState::kPending);
  EXPECT_EQ(failed.state.step, SagaStep::kReserve);
  EXPECT_THAT(failed.commands, ElementsAre(SagaCommand{CommandKind::kReserve, kOwnRes, 1}));

  // A reply about another reservation (an older cart reservation it replaced) changes nothing.
  EXPECT_FALSE(Apply(waiting, Reply(InputKind::kReserveReply, true, "cart-1-0")).changed);
  // Too early for the deadline: nothing; past it: the order asks inventory itself.
  EXPECT_FALSE(Apply(waiting, Event(InputKind::kTimeout)).changed);
  now_ = waiting.deadline_ms;
  SagaDecision timed_out = Apply(waiting, Event(InputKind::kTimeout));
  EXPECT_EQ(timed_out.state.step, SagaStep::kExtend);
  EXPECT_THAT(timed_out.commands, ElementsAre(SagaCommand{CommandKind::kExtend, kCartRes, 1}));
  SagaDecision retried = Apply(waiting, Event(InputKind::kStaffRetry));
  EXPECT_EQ(retried.state.step, SagaStep::kExtend);

  // Cancelled while waiting: the cart's reservation is released, and a late confirmation is
  // released again (idempotent) rather than kept.
  SagaDecision cancelled = Apply(waiting, Event(InputKind::kCustomerCancel));
  EXPECT_EQ(cancelled.state.order_state, OrderState::kCancelled);
  EXPECT_THAT(cancelled.commands, ElementsAre(SagaCommand{CommandKind::kRelease, kCartRes, 1}));
}

TEST_F(SagaTest, ExpiredCartReservationIsRetriedWithItsOwn) {
  SagaState s = Start(/*take_over=*/true);
  SagaDecision d = Apply(s, Reply(InputKind::kExtendReply, false, kCartRes, "expired"));
  EXPECT_EQ(d.state.order_state, OrderState::kPending);
  EXPECT_EQ(d.state.step, SagaStep::kReserve);
  EXPECT_THAT(d.commands, ElementsAre(SagaCommand{CommandKind::kReserve, kOwnRes, 1}));
  // The extend never answers at all: the same fallback after the retry budget.
  SagaState t = Start(true);
  for (int i = 1; i < policy_.attempts_max; ++i) {
    now_ = t.deadline_ms;
    t = Apply(t, Event(InputKind::kTimeout)).state;
    EXPECT_EQ(t.step, SagaStep::kExtend);
  }
  now_ = t.deadline_ms;
  t = Apply(t, Event(InputKind::kTimeout)).state;
  EXPECT_EQ(t.step, SagaStep::kReserve);
  EXPECT_EQ(t.reservation_id, kOwnRes);
}

TEST_F(SagaTest, ReservationFailureRejectsNamingSkus) {
  SagaInput failed = Reply(InputKind::kReserveReply, false, kOwnRes, "insufficient_stock");
  failed.short_skus = {"SKU-1", "SKU-9"};
  SagaDecision d = Apply(Start(), failed);
  EXPECT_EQ(d.state.order_state, OrderState::kRejected);
  EXPECT_EQ(d.state.reason, "insufficient_stock");
  EXPECT_THAT(d.state.short_skus, ElementsAre("SKU-1", "SKU-9"));
  EXPECT_EQ(d.state.step, SagaStep::kDone);
  EXPECT_TRUE(d.commands.empty());  // nothing was reserved, nothing to compensate
}

TEST_F(SagaTest, DeclinedPaymentReleasesAndCancels) {
  SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  SagaDecision d = Apply(s, Event(InputKind::kPaymentDeclined, "insufficient_funds"));
  EXPECT_EQ(d.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(d.state.reason, "payment_declined");
  EXPECT_EQ(d.state.step, SagaStep::kRelease);
  EXPECT_THAT(d.commands, ElementsAre(SagaCommand{CommandKind::kRelease, kOwnRes, 1}));
  SagaDecision done = Apply(d.state, Reply(InputKind::kReleaseReply, true, kOwnRes, "released"));
  EXPECT_EQ(done.state.step, SagaStep::kDone);
  EXPECT_EQ(done.state.order_state, OrderState::kCancelled);
}

TEST_F(SagaTest, PaymentTimeoutRetriesWithBackoffThenVoidsAndReleases) {
  SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  // Early timeouts (a sweep racing the deadline) change nothing.
  now_ = s.deadline_ms - 1;
  EXPECT_FALSE(Apply(s, Event(InputKind::kTimeout)).changed);
  int64_t previous_deadline = s.deadline_ms;
  for (int attempt = 2; attempt <= policy_.attempts_max; ++attempt) {
    now_ = s.deadline_ms;
    SagaDecision d = Apply(s, Event(InputKind::kTimeout));
    EXPECT_THAT(d.commands, ElementsAre(SagaCommand{CommandKind::kAuthorize, kOwnRes, attempt}));
    EXPECT_EQ(d.state.attempt, attempt);
    EXPECT_GE(d.state.deadline_ms, now_ + policy_.authorize_timeout_ms + 100);
    EXPECT_GT(d.state.deadline_ms, previous_deadline);
    previous_deadline = d.state.deadline_ms;
    s = d.state;
  }
  now_ = s.deadline_ms;
  SagaDecision gave_up = Apply(s, Event(InputKind::kTimeout));
  EXPECT_EQ(gave_up.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(gave_up.state.reason, "payment_timeout");
  // The void goes out at once (nobody confirmed an authorization), the release is awaited.
  EXPECT_THAT(Kinds(gave_up), ElementsAre(CommandKind::kVoid, CommandKind::kRelease));
  EXPECT_EQ(gave_up.state.step, SagaStep::kRelease);
  // The lost authorization turns up after all: it is voided and the void awaited.
  SagaState released =
      Apply(gave_up.state, Reply(InputKind::kReleaseReply, true, kOwnRes, "released")).state;
  SagaDecision late = Apply(released, Event(InputKind::kPaymentAuthorized));
  EXPECT_THAT(Kinds(late), ElementsAre(CommandKind::kVoid));
  EXPECT_EQ(late.state.step, SagaStep::kVoid);
  EXPECT_TRUE(late.state.authorized);
  SagaDecision voided = Apply(late.state, Event(InputKind::kPaymentVoided));
  EXPECT_FALSE(voided.state.authorized);
  EXPECT_EQ(voided.state.step, SagaStep::kDone);
  EXPECT_EQ(voided.state.order_state, OrderState::kCancelled);
}

TEST_F(SagaTest, AllocationFailureVoidsThenReleases) {
  SagaDecision d = Apply(Authorized(), Reply(InputKind::kAllocateReply, false, kOwnRes, "expired"));
  EXPECT_EQ(d.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(d.state.reason, "allocation_failed");
  EXPECT_EQ(d.state.step, SagaStep::kVoid);
  EXPECT_THAT(Kinds(d), ElementsAre(CommandKind::kVoid));
  SagaDecision voided = Apply(d.state, Event(InputKind::kPaymentVoided));
  EXPECT_EQ(voided.state.step, SagaStep::kRelease);
  EXPECT_THAT(Kinds(voided), ElementsAre(CommandKind::kRelease));
  SagaDecision done = Apply(voided.state, Reply(InputKind::kReleaseReply, true));
  EXPECT_EQ(done.state.step, SagaStep::kDone);
  EXPECT_FALSE(done.state.authorized);
}

TEST_F(SagaTest, AllocationTimeoutCompensatesEverything) {
  SagaState s = Authorized();
  for (int i = 0; i < policy_.attempts_max; ++i) {
    now_ = s.deadline_ms;
    s = Apply(s, Event(InputKind::kTimeout)).state;
  }
  EXPECT_EQ(s.order_state, OrderState::kCancelled);
  EXPECT_EQ(s.reason, "allocation_timeout");
  EXPECT_EQ(s.step, SagaStep::kVoid);
  EXPECT_THAT(s.compensations, ElementsAre(SagaStep::kCancelAllocation, SagaStep::kRelease));
  s = Apply(s, Event(InputKind::kPaymentVoided)).state;
  EXPECT_EQ(s.step, SagaStep::kCancelAllocation);
  s = Apply(s, SagaInput{InputKind::kCancelAllocationReply, false, "", "not_found", {}}).state;
  EXPECT_EQ(s.step, SagaStep::kRelease);
  s = Apply(s, Reply(InputKind::kReleaseReply, true)).state;
  EXPECT_EQ(s.step, SagaStep::kDone);
}

TEST_F(SagaTest, ReservationTimeoutRejectsAndReleases) {
  SagaState s = Start();
  for (int i = 0; i < policy_.attempts_max; ++i) {
    now_ = s.deadline_ms;
    s = Apply(s, Event(InputKind::kTimeout)).state;
  }
  EXPECT_EQ(s.order_state, OrderState::kRejected);
  EXPECT_EQ(s.reason, "reservation_timeout");
  EXPECT_EQ(s.step, SagaStep::kRelease);
  s = Apply(s, Reply(InputKind::kReleaseReply, false, kOwnRes, "not_found")).state;
  EXPECT_EQ(s.step, SagaStep::kDone);
  // The reservation lands after all: it is released.
  SagaDecision late = Apply(s, Reply(InputKind::kReserveReply, true));
  EXPECT_THAT(Kinds(late), ElementsAre(CommandKind::kRelease));
  EXPECT_EQ(late.state.order_state, OrderState::kRejected);
}

TEST_F(SagaTest, CompensationThatNeverConfirmsFinishesForStaff) {
  SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  s = Apply(s, Event(InputKind::kPaymentDeclined)).state;
  for (int i = 0; i < policy_.attempts_max; ++i) {
    now_ = s.deadline_ms;
    s = Apply(s, Event(InputKind::kTimeout)).state;
  }
  EXPECT_EQ(s.step, SagaStep::kDone);
  // Staff can still act on it? Nothing is outstanding: retry is refused.
  absl::StatusOr<SagaDecision> retry = Decide(s, Event(InputKind::kStaffRetry), now_, policy_);
  EXPECT_EQ(ErrorCode(retry.status()), "saga_finished");
}

TEST_F(SagaTest, DuplicateAndReorderedRepliesAreIgnored) {
  SagaState reserved = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  // A duplicate reserve reply, a reply for another reservation, an allocate reply before
  // allocation and a void nobody asked for change nothing.
  for (const SagaInput& input :
       {Reply(InputKind::kReserveReply, true), Reply(InputKind::kReserveReply, false),
        Reply(InputKind::kExtendReply, true), Reply(InputKind::kAllocateReply, true),
        Reply(InputKind::kReleaseReply, true), Event(InputKind::kPaymentVoided),
        Event(InputKind::kPaymentRefunded),
        SagaInput{InputKind::kCancelAllocationReply, true, "", "cancelled", {}}}) {
    SagaDecision d = Apply(reserved, input);
    EXPECT_FALSE(d.changed) << InputKindName(input.kind);
    EXPECT_EQ(d.state, reserved);
    EXPECT_TRUE(d.commands.empty());
  }
  SagaState confirmed = Confirmed();
  for (const SagaInput& input :
       {Event(InputKind::kPaymentAuthorized), Reply(InputKind::kAllocateReply, true),
        Reply(InputKind::kAllocateReply, false), Event(InputKind::kPaymentDeclined),
        Event(InputKind::kPaymentReviewRequired), Event(InputKind::kTimeout)}) {
    SagaDecision d = Apply(confirmed, input);
    EXPECT_FALSE(d.changed) << InputKindName(input.kind);
    EXPECT_EQ(d.state.order_state, OrderState::kConfirmed);
  }
  // Allocation reply for a different reservation id is not ours.
  SagaDecision other = Apply(Authorized(), Reply(InputKind::kAllocateReply, true, "other"));
  EXPECT_FALSE(other.changed);
}

TEST_F(SagaTest, ReviewExtendsTheDeadline) {
  SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  SagaDecision d = Apply(s, Event(InputKind::kPaymentReviewRequired));
  EXPECT_EQ(d.state.deadline_ms, kNow + policy_.review_timeout_ms);
  EXPECT_TRUE(d.commands.empty());
  EXPECT_EQ(d.state.order_state, OrderState::kReserved);
}

TEST_F(SagaTest, CustomerCancelInEveryState) {
  // PENDING: release whatever the in-flight reservation becomes.
  SagaDecision pending = Apply(Start(), Event(InputKind::kCustomerCancel));
  EXPECT_EQ(pending.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(pending.state.reason, "customer_cancelled");
  EXPECT_THAT(Kinds(pending), ElementsAre(CommandKind::kRelease));
  // RESERVED (authorization in flight): void at once, release awaited.
  SagaState reserved = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  SagaDecision r = Apply(reserved, Event(InputKind::kCustomerCancel));
  EXPECT_THAT(Kinds(r), ElementsAre(CommandKind::kVoid, CommandKind::kRelease));
  // AUTHORIZED: void awaited, then cancel allocation, then release.
  SagaDecision a = Apply(Authorized(), Event(InputKind::kCustomerCancel));
  EXPECT_EQ(a.state.step, SagaStep::kVoid);
  EXPECT_THAT(a.state.compensations, ElementsAre(SagaStep::kCancelAllocation, SagaStep::kRelease));
  // CONFIRMED: void + cancel allocation (which returns the stock).
  SagaDecision c = Apply(Confirmed(), Event(InputKind::kCustomerCancel));
  EXPECT_EQ(c.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(c.state.step, SagaStep::kVoid);
  EXPECT_THAT(c.state.compensations, ElementsAre(SagaStep::kCancelAllocation));
  SagaState s = Apply(c.state, Event(InputKind::kPaymentVoided)).state;
  EXPECT_EQ(s.step, SagaStep::kCancelAllocation);
  s = Apply(s, SagaInput{InputKind::kCancelAllocationReply, true, "", "cancelled", {}}).state;
  EXPECT_EQ(s.step, SagaStep::kDone);
  EXPECT_FALSE(s.allocated);
  // Cancelling again is a no-op; cancelling a rejected order is refused.
  EXPECT_FALSE(Apply(s, Event(InputKind::kCustomerCancel)).changed);
  SagaInput failed = Reply(InputKind::kReserveReply, false, kOwnRes, "insufficient_stock");
  SagaState rejected = Apply(Start(), failed).state;
  absl::StatusOr<SagaDecision> refused =
      Decide(rejected, Event(InputKind::kCustomerCancel), now_, policy_);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorCode(refused.status()), "order_not_cancellable");
}

TEST_F(SagaTest, CapturedOrderIsRefundedOnCancel) {
  SagaState s = Apply(Confirmed(), Event(InputKind::kPaymentCaptured)).state;
  EXPECT_TRUE(s.captured);
  SagaDecision d = Apply(s, Event(InputKind::kCustomerCancel));
  EXPECT_EQ(d.state.step, SagaStep::kRefund);
  EXPECT_THAT(Kinds(d), ElementsAre(CommandKind::kRefund));
  s = Apply(d.state, Event(InputKind::kPaymentRefunded)).state;
  EXPECT_EQ(s.step, SagaStep::kCancelAllocation);
  // A capture that lands on a cancelled order is refunded.
  SagaState declined = Apply(Apply(Start(), Reply(InputKind::kReserveReply, true)).state,
                             Event(InputKind::kPaymentDeclined))
                           .state;
  declined = Apply(declined, Reply(InputKind::kReleaseReply, true)).state;
  SagaDecision late = Apply(declined, Event(InputKind::kPaymentCaptured));
  EXPECT_THAT(Kinds(late), ElementsAre(CommandKind::kRefund));
}

TEST_F(SagaTest, ReleaseOfAnAllocatedReservationCancelsTheAllocation) {
  SagaState s = Apply(Authorized(), Event(InputKind::kCustomerCancel)).state;
  s = Apply(s, Event(InputKind::kPaymentVoided)).state;
  s = Apply(s, SagaInput{InputKind::kCancelAllocationReply, false, "", "not_found", {}}).state;
  EXPECT_EQ(s.step, SagaStep::kRelease);
  SagaDecision d = Apply(s, Reply(InputKind::kReleaseReply, false, kOwnRes, "not_active"));
  EXPECT_EQ(d.state.step, SagaStep::kCancelAllocation);
  EXPECT_THAT(Kinds(d), ElementsAre(CommandKind::kCancelAllocation));
}

TEST_F(SagaTest, StaffRetryAndCompensate) {
  SagaState s = Apply(Start(), Reply(InputKind::kReserveReply, true)).state;
  now_ += 1000;
  SagaDecision retry = Apply(s, Event(InputKind::kStaffRetry));
  EXPECT_THAT(retry.commands, ElementsAre(SagaCommand{CommandKind::kAuthorize, kOwnRes, 1}));
  EXPECT_EQ(retry.state.deadline_ms,
            now_ + policy_.authorize_timeout_ms + RetryBackoffMs(policy_, 1, kOwnRes));
  SagaDecision compensate = Apply(s, Event(InputKind::kStaffCompensate));
  EXPECT_EQ(compensate.state.order_state, OrderState::kCancelled);
  EXPECT_EQ(compensate.state.reason, "staff_compensated");
  // On a terminal saga with a compensation outstanding, compensate re-drives it.
  SagaDecision again = Apply(compensate.state, Event(InputKind::kStaffCompensate));
  EXPECT_THAT(Kinds(again), ElementsAre(CommandKind::kRelease));
  SagaState done = Apply(compensate.state, Reply(InputKind::kReleaseReply, true)).state;
  EXPECT_EQ(ErrorCode(Decide(done, Event(InputKind::kStaffCompensate), now_, policy_).status()),
            "saga_finished");
}

TEST_F(SagaTest, LateDeclineWhileVoidingEndsTheVoid) {
  // Allocation failed while the authorization was in fact declined later (reordered events).
  SagaState s = Apply(Authorized(), Reply(InputKind::kAllocateReply, false)).state;
  ASSERT_EQ(s.step, SagaStep::kVoid);
  s = Apply(s, Event(InputKind::kPaymentDeclined)).state;
  EXPECT_FALSE(s.authorized);
  EXPECT_EQ(s.step, SagaStep::kRelease);
}

TEST(RetryBackoffTest, GrowsCapsAndJitters) {
  SagaPolicy policy;
  policy.backoff_initial_ms = 100;
  policy.backoff_max_ms = 1000;
  for (int attempt = 1; attempt < 20; ++attempt) {
    int64_t nominal = 100;
    for (int i = 2; i < attempt && nominal < 1000; ++i) nominal *= 2;
    nominal = std::min<int64_t>(nominal, 1000);
    const int64_t backoff = RetryBackoffMs(policy, attempt, "order-x");
    EXPECT_GE(backoff, nominal / 2);
    EXPECT_LE(backoff, nominal);
    EXPECT_EQ(backoff, RetryBackoffMs(policy, attempt, "order-x"));  // deterministic
  }
}

TEST_F(SagaTest, EveryInputOnEveryStateNeverCrashesAndTerminalStaysTerminal) {
  std::vector<SagaState> states = {Start(), Start(true), Authorized(), Confirmed()};
  states.push_back(StartSaga(kCartRes, CartHold::kPending, kOwnRes, now_, policy_).state);
  states.push_back(StartSaga(kCartRes, CartHold::kHeld, kOwnRes, now_, policy_).state);
  states.push_back(Apply(Start(), Event(InputKind::kCustomerCancel)).state);
  states.push_back(
      Apply(Start(), Reply(InputKind::kReserveReply, false, kOwnRes, "unknown_sku")).state);
  const InputKind kinds[] = {InputKind::kReserveReply,
                             InputKind::kCartReservationMistimed,
                             InputKind::kExtendReply,
                             InputKind::kAllocateReply,
                             InputKind::kReleaseReply,
                             InputKind::kCancelAllocationReply,
                             InputKind::kPaymentAuthorized,
                             InputKind::kPaymentDeclined,
                             InputKind::kPaymentReviewRequired,
                             InputKind::kPaymentVoided,
                             InputKind::kPaymentCaptured,
                             InputKind::kPaymentRefunded,
                             InputKind::kTimeout,
                             InputKind::kCustomerCancel,
                             InputKind::kStaffRetry,
                             InputKind::kStaffCompensate};
  now_ += 10'000'000;  // every deadline has passed
  for (const SagaState& state : states) {
    for (InputKind kind : kinds) {
      for (bool ok : {true, false}) {
        for (const char* reservation : {kOwnRes, kCartRes, "other"}) {
          absl::StatusOr<SagaDecision> d =
              Decide(state, SagaInput{kind, ok, reservation, "x", {}}, now_, policy_);
          if (!d.ok()) {
            EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
            continue;
          }
          if (IsTerminal(state.order_state)) {
            EXPECT_EQ(d->state.order_state, state.order_state);
          }
          if (d->state.step != SagaStep::kDone) {
            EXPECT_GT(d->state.deadline_ms, 0);
          }
          // A confirmed order never goes back, and no order confirms without authorization.
          if (d->state.order_state == OrderState::kConfirmed) {
            EXPECT_TRUE(d->state.authorization_requested);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace emporium::ordering
