#include "payments/model.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "common/errors.h"

namespace emporium::payments {
namespace {

constexpr IntentState kAllStates[] = {
    IntentState::kRequiresAuthorization,
    IntentState::kInReview,
    IntentState::kAuthorized,
    IntentState::kCaptured,
    IntentState::kPartiallyRefunded,
    IntentState::kRefunded,
    IntentState::kVoided,
    IntentState::kFailed,
    IntentState::kExpired,
};
constexpr IntentEventKind kAllEvents[] = {
    IntentEventKind::kRequireReview,
    IntentEventKind::kApproveReview,
    IntentEventKind::kRejectReview,
    IntentEventKind::kAuthorizeSucceeded,
    IntentEventKind::kAuthorizeFailed,
    IntentEventKind::kCapture,
    IntentEventKind::kVoid,
    IntentEventKind::kRefund,
    IntentEventKind::kExpire,
};

Money Usd(int64_t minor) { return *Money::FromMinor(minor, "USD"); }

IntentAmounts AmountsFor(IntentState state) {
  IntentAmounts amounts{10'000, 0, 0, 0, "USD"};
  switch (state) {
    case IntentState::kRequiresAuthorization:
    case IntentState::kInReview:
    case IntentState::kFailed:
      break;
    case IntentState::kAuthorized:
    case IntentState::kVoided:
    case IntentState::kExpired:
      amounts.authorized_minor = 10'000;
      break;
    case IntentState::kCaptured:
      amounts.authorized_minor = 10'000;
      amounts.captured_minor = 8'000;
      break;
    case IntentState::kPartiallyRefunded:
      amounts.authorized_minor = 10'000;
      amounts.captured_minor = 8'000;
      amounts.refunded_minor = 3'000;
      break;
    case IntentState::kRefunded:
      amounts.authorized_minor = 10'000;
      amounts.captured_minor = 8'000;
      amounts.refunded_minor = 8'000;
      break;
  }
  return amounts;
}

IntentEvent EventFor(IntentEventKind kind) {
  IntentEvent event{kind, std::nullopt};
  switch (kind) {
    case IntentEventKind::kAuthorizeSucceeded:
      event.amount = Usd(10'000);
      break;
    case IntentEventKind::kCapture:
      event.amount = Usd(5'000);
      break;
    case IntentEventKind::kRefund:
      event.amount = Usd(1'000);
      break;
    case IntentEventKind::kRequireReview:
    case IntentEventKind::kApproveReview:
    case IntentEventKind::kRejectReview:
    case IntentEventKind::kAuthorizeFailed:
    case IntentEventKind::kVoid:
    case IntentEventKind::kExpire:
      break;
  }
  return event;
}

// The expected result of every (state, event) pair: the target state, or nullopt if illegal.
std::optional<IntentState> Expected(IntentState state, IntentEventKind kind) {
  using S = IntentState;
  using E = IntentEventKind;
  if (state == S::kRequiresAuthorization) {
    if (kind == E::kRequireReview) return S::kInReview;
    if (kind == E::kAuthorizeSucceeded) return S::kAuthorized;
    if (kind == E::kAuthorizeFailed) return S::kFailed;
  }
  if (state == S::kInReview) {
    if (kind == E::kApproveReview) return S::kRequiresAuthorization;
    if (kind == E::kRejectReview) return S::kFailed;
  }
  if (state == S::kAuthorized) {
    if (kind == E::kCapture) return S::kCaptured;
    if (kind == E::kVoid) return S::kVoided;
    if (kind == E::kExpire) return S::kExpired;
  }
  if ((state == S::kCaptured || state == S::kPartiallyRefunded) && kind == E::kRefund) {
    return S::kPartiallyRefunded;
  }
  return std::nullopt;
}

TEST(IntentStateMachine, EveryStateEventPairIsLegalOrIllegalAsSpecified) {
  int legal_count = 0;
  for (IntentState state : kAllStates) {
    for (IntentEventKind kind : kAllEvents) {
      const IntentAmounts amounts = AmountsFor(state);
      const Transition transition = ApplyIntentEvent(state, amounts, EventFor(kind));
      const std::optional<IntentState> expected = Expected(state, kind);
      SCOPED_TRACE(std::string(IntentStateName(state)) + " + " +
                   std::string(IntentEventName(kind)));
      if (expected.has_value()) {
        ++legal_count;
        EXPECT_EQ(transition.outcome, TransitionOutcome::kApplied);
        EXPECT_EQ(transition.state, *expected);
      } else {
        EXPECT_EQ(transition.outcome, TransitionOutcome::kIllegalTransition);
        EXPECT_EQ(transition.state, state);
        EXPECT_EQ(transition.amounts.refunded_minor, amounts.refunded_minor);
        EXPECT_EQ(transition.amounts.captured_minor, amounts.captured_minor);
      }
    }
  }
  EXPECT_EQ(legal_count, 10);
}

TEST(IntentStateMachine, TerminalStatesAcceptNothing) {
  for (IntentState state : kAllStates) {
    if (!IsTerminal(state)) continue;
    for (IntentEventKind kind : kAllEvents) {
      EXPECT_EQ(ApplyIntentEvent(state, AmountsFor(state), EventFor(kind)).outcome,
                TransitionOutcome::kIllegalTransition);
    }
  }
}

TEST(IntentStateMachine, NamesRoundTrip) {
  std::set<std::string_view> names;
  for (IntentState state : kAllStates) {
    names.insert(IntentStateName(state));
    EXPECT_EQ(ParseIntentState(IntentStateName(state)), state);
  }
  EXPECT_EQ(names.size(), std::size(kAllStates));
  EXPECT_EQ(ParseIntentState("AUTHORIZED"), std::nullopt);
  EXPECT_EQ(ParseIntentState(""), std::nullopt);
}

TEST(IntentStateMachine, AuthorizationMustMatchTheIntentAmountAndCurrency) {
  const IntentAmounts amounts = AmountsFor(IntentState::kRequiresAuthorization);
  EXPECT_EQ(ApplyIntentEvent(IntentState::kRequiresAuthorization, amounts,
                             {IntentEventKind::kAuthorizeSucceeded, Usd(9'999)})
                .outcome,
            TransitionOutcome::kAmountMismatch);
  EXPECT_EQ(
      ApplyIntentEvent(IntentState::kRequiresAuthorization, amounts,
                       {IntentEventKind::kAuthorizeSucceeded, *Money::FromMinor(10'000, "EUR")})
          .outcome,
      TransitionOutcome::kCurrencyMismatch);
  EXPECT_EQ(ApplyIntentEvent(IntentState::kRequiresAuthorization, amounts,
                             {IntentEventKind::kAuthorizeSucceeded, std::nullopt})
                .outcome,
            TransitionOutcome::kAmountMissing);
  const Transition ok = ApplyIntentEvent(IntentState::kRequiresAuthorization, amounts,
                                         {IntentEventKind::kAuthorizeSucceeded, Usd(10'000)});
  EXPECT_EQ(ok.outcome, TransitionOutcome::kApplied);
  EXPECT_EQ(ok.amounts.authorized_minor, 10'000);
}

TEST(IntentStateMachine, CaptureArithmetic) {
  const IntentAmounts amounts = AmountsFor(IntentState::kAuthorized);
  EXPECT_EQ(
      ApplyIntentEvent(IntentState::kAuthorized, amounts, {IntentEventKind::kCapture, Usd(10'001)})
          .outcome,
      TransitionOutcome::kExceedsAuthorized);
  EXPECT_EQ(ApplyIntentEvent(IntentState::kAuthorized, amounts, {IntentEventKind::kCapture, Usd(0)})
                .outcome,
            TransitionOutcome::kNonPositiveAmount);
  EXPECT_EQ(
      ApplyIntentEvent(IntentState::kAuthorized, amounts, {IntentEventKind::kCapture, Usd(-5)})
          .outcome,
      TransitionOutcome::kNonPositiveAmount);
  const Transition partial =
      ApplyIntentEvent(IntentState::kAuthorized, amounts, {IntentEventKind::kCapture, Usd(2'500)});
  EXPECT_EQ(partial.outcome, TransitionOutcome::kApplied);
  EXPECT_EQ(partial.state, IntentState::kCaptured);
  EXPECT_EQ(partial.amounts.captured_minor, 2'500);
  const Transition full =
      ApplyIntentEvent(IntentState::kAuthorized, amounts, {IntentEventKind::kCapture, Usd(10'000)});
  EXPECT_EQ(full.amounts.captured_minor, 10'000);
}

TEST(IntentStateMachine, RefundsNeverExceedCaptures) {
  IntentState state = IntentState::kAuthorized;
  IntentAmounts amounts = AmountsFor(state);
  Transition t = ApplyIntentEvent(state, amounts, {IntentEventKind::kCapture, Usd(6'000)});
  ASSERT_EQ(t.outcome, TransitionOutcome::kApplied);
  state = t.state;
  amounts = t.amounts;
  t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, Usd(6'001)});
  EXPECT_EQ(t.outcome, TransitionOutcome::kExceedsRefundable);
  t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, Usd(2'000)});
  ASSERT_EQ(t.outcome, TransitionOutcome::kApplied);
  EXPECT_EQ(t.state, IntentState::kPartiallyRefunded);
  state = t.state;
  amounts = t.amounts;
  t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, Usd(4'001)});
  EXPECT_EQ(t.outcome, TransitionOutcome::kExceedsRefundable);
  t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, *Money::FromMinor(10, "EUR")});
  EXPECT_EQ(t.outcome, TransitionOutcome::kCurrencyMismatch);
  t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, Usd(4'000)});
  ASSERT_EQ(t.outcome, TransitionOutcome::kApplied);
  EXPECT_EQ(t.state, IntentState::kRefunded);
  EXPECT_EQ(t.amounts.refunded_minor, 6'000);
  EXPECT_EQ(ApplyIntentEvent(t.state, t.amounts, {IntentEventKind::kRefund, Usd(1)}).outcome,
            TransitionOutcome::kIllegalTransition);
}

TEST(IntentStateMachine, RandomWalkKeepsInvariants) {
  std::mt19937_64 random(42);
  for (int run = 0; run < 2'000; ++run) {
    IntentState state = IntentState::kRequiresAuthorization;
    IntentAmounts amounts{static_cast<int64_t>(random() % 100'000) + 1, 0, 0, 0, "USD"};
    for (int step = 0; step < 20; ++step) {
      const IntentEventKind kind = kAllEvents[random() % std::size(kAllEvents)];
      IntentEvent event{kind, Usd(static_cast<int64_t>(random() % 120'000) - 10'000)};
      if (kind == IntentEventKind::kAuthorizeSucceeded && random() % 2 == 0) {
        event.amount = Usd(amounts.amount_minor);
      }
      const Transition t = ApplyIntentEvent(state, amounts, event);
      if (t.outcome == TransitionOutcome::kApplied) {
        state = t.state;
        amounts = t.amounts;
      } else {
        ASSERT_EQ(t.state, state);
      }
      ASSERT_LE(amounts.refunded_minor, amounts.captured_minor);
      ASSERT_LE(amounts.captured_minor, amounts.authorized_minor);
      ASSERT_LE(amounts.authorized_minor, amounts.amount_minor);
      ASSERT_GE(amounts.refunded_minor, 0);
    }
  }
}

// ---------------------------------------------------------------------------------------------

TEST(Ledger, BuildersProduceBalancedTransactions) {
  for (MoneyMovement movement : {MoneyMovement::kCapture, MoneyMovement::kRefund}) {
    auto transaction = BuildLedgerTransaction(movement, Usd(1'234));
    ASSERT_TRUE(transaction.ok());
    EXPECT_TRUE(ValidateBalanced(transaction->entries).ok());
    EXPECT_FALSE(BuildLedgerTransaction(movement, Usd(0)).ok());
    EXPECT_FALSE(BuildLedgerTransaction(movement, Usd(-1)).ok());
  }
}

TEST(Ledger, ValidateBalancedRejectsBrokenSets) {
  const LedgerEntry debit{LedgerAccount::kPspClearing, EntryDirection::kDebit, 100, "USD"};
  const LedgerEntry credit{LedgerAccount::kMerchantRevenue, EntryDirection::kCredit, 100, "USD"};
  EXPECT_TRUE(ValidateBalanced({debit, credit}).ok());
  EXPECT_FALSE(ValidateBalanced({}).ok());
  EXPECT_FALSE(ValidateBalanced({debit}).ok());
  LedgerEntry off = credit;
  off.amount_minor = 99;
  EXPECT_FALSE(ValidateBalanced({debit, off}).ok());
  LedgerEntry euro = credit;
  euro.currency = "EUR";
  EXPECT_FALSE(ValidateBalanced({debit, euro}).ok());
  LedgerEntry zero_debit = debit;
  zero_debit.amount_minor = 0;
  LedgerEntry zero_credit = credit;
  zero_credit.amount_minor = 0;
  EXPECT_FALSE(ValidateBalanced({zero_debit, zero_credit}).ok());
  LedgerEntry huge = debit;
  huge.amount_minor = INT64_MAX;
  LedgerEntry huge_credit = credit;
  huge_credit.amount_minor = INT64_MAX;
  EXPECT_TRUE(ValidateBalanced({huge, huge, huge_credit, huge_credit}).ok());
  EXPECT_FALSE(ValidateBalanced({huge, huge, huge_credit}).ok());
}

TEST(Ledger, RandomizedRunBalancesAndClearingEqualsNetCaptured) {
  std::mt19937_64 random(7);
  std::vector<LedgerEntry> all;
  int64_t captured = 0;
  int64_t refunded = 0;
  for (int i = 0; i < 5'000; ++i) {
    IntentState state = IntentState::kAuthorized;
    IntentAmounts amounts{static_cast<int64_t>(random() % 50'000) + 1, 0, 0, 0, "USD"};
    amounts.authorized_minor = amounts.amount_minor;
    const int64_t capture = static_cast<int64_t>(random() % amounts.amount_minor) + 1;
    Transition t = ApplyIntentEvent(state, amounts, {IntentEventKind::kCapture, Usd(capture)});
    ASSERT_EQ(t.outcome, TransitionOutcome::kApplied);
    auto transaction = BuildLedgerTransaction(MoneyMovement::kCapture, Usd(capture));
    ASSERT_TRUE(transaction.ok());
    all.insert(all.end(), transaction->entries.begin(), transaction->entries.end());
    captured += capture;
    state = t.state;
    amounts = t.amounts;
    for (int r = 0; r < 3; ++r) {
      const int64_t refund = static_cast<int64_t>(random() % (capture + 1)) + 1;
      t = ApplyIntentEvent(state, amounts, {IntentEventKind::kRefund, Usd(refund)});
      if (t.outcome != TransitionOutcome::kApplied) continue;
      auto refund_tx = BuildLedgerTransaction(MoneyMovement::kRefund, Usd(refund));
      ASSERT_TRUE(refund_tx.ok());
      ASSERT_TRUE(ValidateBalanced(refund_tx->entries).ok());
      all.insert(all.end(), refund_tx->entries.begin(), refund_tx->entries.end());
      refunded += refund;
      state = t.state;
      amounts = t.amounts;
    }
  }
  EXPECT_TRUE(ValidateBalanced(all).ok());
  EXPECT_EQ(*DebitBalance(all, LedgerAccount::kPspClearing), captured - refunded);
  EXPECT_EQ(*DebitBalance(all, LedgerAccount::kCustomerReceivable), 0);
  EXPECT_EQ(*DebitBalance(all, LedgerAccount::kMerchantRevenue), -captured);
  EXPECT_EQ(*DebitBalance(all, LedgerAccount::kRefunds), refunded);
}

TEST(Ledger, NamesRoundTrip) {
  for (LedgerAccount account : {LedgerAccount::kCustomerReceivable, LedgerAccount::kPspClearing,
                                LedgerAccount::kMerchantRevenue, LedgerAccount::kRefunds}) {
    EXPECT_EQ(ParseLedgerAccount(LedgerAccountName(account)), account);
  }
  EXPECT_EQ(ParseLedgerAccount("cash"), std::nullopt);
  EXPECT_EQ(ParseEntryDirection("debit"), EntryDirection::kDebit);
  EXPECT_EQ(ParseEntryDirection("credit"), EntryDirection::kCredit);
  EXPECT_EQ(ParseEntryDirection("x"), std::nullopt);
}

// ---------------------------------------------------------------------------------------------

TEST(Fraud, CleanPaymentIsApproved) {
  FraudInput input;
  input.amount_minor = 5'000;
  input.customer_payment_count = 3;
  input.customer_average_amount_minor = 4'000;
  input.billing_country = "US";
  input.shipping_country = "US";
  const FraudAssessment assessment = ScoreFraud(input);
  EXPECT_EQ(assessment.decision, FraudDecision::kApprove);
  EXPECT_EQ(assessment.score, 0);
  EXPECT_TRUE(assessment.reasons.empty());
}

TEST(Fraud, EachRuleFires) {
  FraudInput base;
  base.amount_minor = 5'000;
  base.customer_payment_count = 3;
  base.customer_average_amount_minor = 4'000;
  auto reasons = [](const FraudInput& input) { return ScoreFraud(input).reasons; };
  using Reasons = std::vector<std::string>;
  FraudInput input = base;
  input.customer_payment_count = 0;
  input.amount_minor = 60'000;
  EXPECT_EQ(reasons(input), Reasons{"large_first_purchase"});
  input = base;
  input.amount_minor = 4'000 * 6;
  EXPECT_EQ(reasons(input), Reasons{"amount_above_history"});
  input = base;
  input.card_attempts_in_window = 5;
  EXPECT_EQ(reasons(input), Reasons{"card_velocity"});
  EXPECT_EQ(ScoreFraud(input).decision, FraudDecision::kReview);
  input = base;
  input.customer_attempts_in_window = 10;
  EXPECT_EQ(reasons(input), Reasons{"customer_velocity"});
  input = base;
  input.ip_attempts_in_window = 20;
  EXPECT_EQ(reasons(input), Reasons{"ip_velocity"});
  input = base;
  input.billing_country = "US";
  input.shipping_country = "NG";
  EXPECT_EQ(reasons(input), Reasons{"country_mismatch"});
  EXPECT_EQ(ScoreFraud(input).decision, FraudDecision::kApprove);
  input = base;
  input.customer_distinct_cards = 4;
  EXPECT_EQ(reasons(input), Reasons{"many_cards_per_customer"});
}

TEST(Fraud, ScoresCombineIntoReviewAndReject) {
  FraudInput input;
  input.amount_minor = 60'000;  // large first purchase: 30
  input.billing_country = "US";
  input.shipping_country = "FR";  // 20
  EXPECT_EQ(ScoreFraud(input).score, 50);
  EXPECT_EQ(ScoreFraud(input).decision, FraudDecision::kReview);
  input.customer_distinct_cards = 9;  // 40
  EXPECT_EQ(ScoreFraud(input).decision, FraudDecision::kReject);
  input.card_attempts_in_window = 100;
  input.customer_attempts_in_window = 100;
  input.ip_attempts_in_window = 100;
  EXPECT_EQ(ScoreFraud(input).score, 100);
}

// ---------------------------------------------------------------------------------------------

TEST(Cards, LuhnAndBrands) {
  EXPECT_TRUE(LuhnValid("4242424242424242"));
  EXPECT_FALSE(LuhnValid("4242424242424241"));
  EXPECT_FALSE(LuhnValid(""));
  EXPECT_FALSE(LuhnValid("42a2"));
  EXPECT_EQ(DetectBrand("4242424242424242"), CardBrand::kVisa);
  EXPECT_EQ(DetectBrand("5555555555554444"), CardBrand::kMastercard);
  EXPECT_EQ(DetectBrand("2223003122003222"), CardBrand::kMastercard);
  EXPECT_EQ(DetectBrand("378282246310005"), CardBrand::kAmex);
  EXPECT_EQ(DetectBrand("6011111111111117"), CardBrand::kDiscover);
  EXPECT_EQ(DetectBrand("9999999999999995"), std::nullopt);
  for (CardBrand brand :
       {CardBrand::kVisa, CardBrand::kMastercard, CardBrand::kAmex, CardBrand::kDiscover}) {
    EXPECT_EQ(ParseCardBrand(CardBrandName(brand)), brand);
  }
}

CardInput GoodCard() { return CardInput{"4242 4242 4242 4242", 12, 2030, "123", "Ada Lovelace"}; }

TEST(Cards, ValidCardIsNormalized) {
  auto details = ValidateCard(GoodCard(), 2026, 1);
  ASSERT_TRUE(details.ok()) << details.status();
  EXPECT_EQ(details->number, "4242424242424242");
  EXPECT_EQ(details->last4, "4242");
  EXPECT_EQ(details->brand, CardBrand::kVisa);
  CardInput amex{"3782-822463-10005", 1, 2026, "1234", "X"};
  EXPECT_TRUE(ValidateCard(amex, 2026, 1).ok());
}

TEST(Cards, InvalidCardsNameTheFieldAndNeverEchoTheNumber) {
  struct Case {
    CardInput input;
    std::string param;
  };
  std::vector<Case> cases;
  auto with = [](auto mutate) {
    CardInput input = GoodCard();
    mutate(input);
    return input;
  };
  cases.push_back({with([](CardInput& c) { c.number = "4242424242424241"; }), "number"});
  cases.push_back({with([](CardInput& c) { c.number = "4242"; }), "number"});
  cases.push_back({with([](CardInput& c) { c.number = "4242x42424242424"; }), "number"});
  cases.push_back({with([](CardInput& c) { c.number = std::string(40, '4'); }), "number"});
  cases.push_back({with([](CardInput& c) { c.number = "9999999999999995"; }), "number"});
  cases.push_back({with([](CardInput& c) { c.expiry_month = 13; }), "expiry_month"});
  cases.push_back({with([](CardInput& c) { c.expiry_month = 0; }), "expiry_month"});
  cases.push_back({with([](CardInput& c) { c.expiry_year = 2025; }), "expiry_year"});
  cases.push_back({with([](CardInput& c) {
                     c.expiry_year = 2026;
                     c.expiry_month = 1;
                   }),
                   ""});  // the current month is still valid
  cases.push_back({with([](CardInput& c) { c.expiry_year = 2099; }), "expiry_year"});
  cases.push_back({with([](CardInput& c) { c.cvc = "12"; }), "cvc"});
  cases.push_back({with([](CardInput& c) { c.cvc = "1234"; }), "cvc"});
  cases.push_back({with([](CardInput& c) { c.cvc = "12a"; }), "cvc"});
  cases.push_back({with([](CardInput& c) { c.holder = ""; }), "holder"});
  cases.push_back({with([](CardInput& c) { c.holder = std::string(101, 'a'); }), "holder"});
  for (const Case& c : cases) {
    auto result = ValidateCard(c.input, 2026, 1);
    if (c.param.empty()) {
      EXPECT_TRUE(result.ok());
      continue;
    }
    ASSERT_FALSE(result.ok()) << c.param;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorParam(result.status()), c.param);
    EXPECT_EQ(std::string(result.status().ToString()).find("4242"), std::string::npos);
  }
}

TEST(PspKeys, StablePerIntentOperationAndGroup) {
  EXPECT_EQ(PspIdempotencyKey("pi_1", PspOperation::kAuthorize, 0), "pi_1:authorize:0");
  EXPECT_EQ(PspIdempotencyKey("pi_1", PspOperation::kAuthorize, 0),
            PspIdempotencyKey("pi_1", PspOperation::kAuthorize, 0));
  EXPECT_NE(PspIdempotencyKey("pi_1", PspOperation::kAuthorize, 0),
            PspIdempotencyKey("pi_1", PspOperation::kAuthorize, 1));
  EXPECT_NE(PspIdempotencyKey("pi_1", PspOperation::kCapture, 0),
            PspIdempotencyKey("pi_1", PspOperation::kRefund, 0));
  for (PspOperation op : {PspOperation::kAuthorize, PspOperation::kCapture, PspOperation::kVoid,
                          PspOperation::kRefund}) {
    EXPECT_EQ(ParsePspOperation(PspOperationName(op)), op);
  }
}

}  // namespace
}  // namespace emporium::payments
