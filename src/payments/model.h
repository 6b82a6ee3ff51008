// The pure domain core of payments: the payment-intent state machine with capture/refund
// arithmetic, the double-entry ledger transaction builder, the fraud rules engine, card
// validation (Luhn, brand, expiry) and the derivation of PSP idempotency keys.
//
// No I/O, no clock, no randomness: time comes in as arguments. Card numbers handed to these
// functions never appear in any error message or result other than CardDetails::number.
//
// Thread-safety: free functions over values; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/money.h"

namespace emporium::payments {

// ---------------------------------------------------------------------------------------------
// Payment intent state machine.
//
//   requires_authorization --authorize ok--> authorized --capture--> captured
//        |    \--review--> in_review --approve--> requires_authorization
//        |                     \--reject--> failed
//        |--declined / error--> failed                authorized --void--> voided
//        |                                            authorized --expire--> expired
//   captured --refund (part)--> partially_refunded --refund (rest)--> refunded
// Refunds never exceed the captured amount; a capture never exceeds the authorized amount.
enum class IntentState {
  kRequiresAuthorization,
  kInReview,
  kAuthorized,
  kCaptured,
  kPartiallyRefunded,
  kRefunded,
  kVoided,
  kFailed,
  kExpired,
};

std::string_view IntentStateName(IntentState state);  // "requires_authorization", ...
std::optional<IntentState> ParseIntentState(std::string_view name);
// True for states no event can leave (refunded, voided, failed, expired).
bool IsTerminal(IntentState state);

enum class IntentEventKind {
  kRequireReview,       // fraud screening parked the payment
  kApproveReview,       // staff approved: authorization may proceed
  kRejectReview,        // staff rejected: the intent fails
  kAuthorizeSucceeded,  // the PSP authorized `amount` (must equal the intent amount)
  kAuthorizeFailed,     // declined, rejected by fraud rules, or a definitive PSP error
  kCapture,             // the PSP captured `amount` (partial allowed, once)
  kVoid,                // the PSP voided the authorization
  kRefund,              // the PSP refunded `amount` (partial allowed, repeatedly)
  kExpire,              // the uncaptured authorization lapsed
};

std::string_view IntentEventName(IntentEventKind kind);

struct IntentEvent {
  IntentEventKind kind = IntentEventKind::kAuthorizeSucceeded;
  std::optional<Money> amount;  // required for kAuthorizeSucceeded, kCapture, kRefund
};

struct IntentAmounts {
  int64_t amount_minor = 0;      // what the order asked for
  int64_t authorized_minor = 0;  // what the PSP holds
  int64_t captured_minor = 0;
  int64_t refunded_minor = 0;
  std::string currency;  // ISO code
};

enum class TransitionOutcome {
  kApplied,
  kIllegalTransition,  // the event is not allowed in the current state
  kAmountMissing,      // the event needs an amount and has none
  kNonPositiveAmount,  // zero or negative amount
  kCurrencyMismatch,   // the amount is in another currency than the intent
  kAmountMismatch,     // an authorization for a different amount than the intent's
  kExceedsAuthorized,  // capture larger than the authorization
  kExceedsRefundable,  // refunds would exceed what was captured
};

std::string_view TransitionOutcomeName(TransitionOutcome outcome);

struct Transition {
  TransitionOutcome outcome = TransitionOutcome::kIllegalTransition;
  IntentState state = IntentState::kRequiresAuthorization;  // the new state when applied
  IntentAmounts amounts;                                    // the new amounts when applied
};

// Applies `event` to an intent in `state` with `amounts`. On anything but kApplied the
// returned state and amounts equal the inputs.
Transition ApplyIntentEvent(IntentState state, const IntentAmounts& amounts,
                            const IntentEvent& event);

// ---------------------------------------------------------------------------------------------
// Double-entry ledger.
enum class LedgerAccount {
  kCustomerReceivable,  // what customers owe us for captured goods
  kPspClearing,         // what the PSP holds for us (settles to the bank)
  kMerchantRevenue,     // earned revenue
  kRefunds,             // contra-revenue: money given back
};
std::string_view LedgerAccountName(LedgerAccount account);
std::optional<LedgerAccount> ParseLedgerAccount(std::string_view name);

enum class EntryDirection { kDebit, kCredit };
std::string_view EntryDirectionName(EntryDirection direction);
std::optional<EntryDirection> ParseEntryDirection(std::string_view name);

struct LedgerEntry {
  LedgerAccount account = LedgerAccount::kCustomerReceivable;
  EntryDirection direction = EntryDirection::kDebit;
  int64_t amount_minor = 0;  // > 0
  std::string currency;
  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

enum class MoneyMovement { kCapture, kRefund };
std::string_view MoneyMovementName(MoneyMovement movement);

// A balanced set of entries; only the builders below (and ValidateBalanced) make one.
struct LedgerTransaction {
  MoneyMovement movement = MoneyMovement::kCapture;
  std::vector<LedgerEntry> entries;
};

// The entries for a money movement of `amount` (> 0):
//   capture: Dr customer_receivable / Cr merchant_revenue (revenue earned) and
//            Dr psp_clearing / Cr customer_receivable (the PSP collected it);
//   refund:  Dr refunds / Cr psp_clearing.
// InvalidArgument for a non-positive amount.
absl::StatusOr<LedgerTransaction> BuildLedgerTransaction(MoneyMovement movement,
                                                         const Money& amount);

// OK when `entries` has at least two entries, one currency, positive amounts and debits equal
// to credits (checked without overflow); DataLoss naming the problem otherwise.
absl::Status ValidateBalanced(const std::vector<LedgerEntry>& entries);

// The balance of `account` over `entries`, debits positive (for asset accounts).
absl::StatusOr<int64_t> DebitBalance(const std::vector<LedgerEntry>& entries,
                                     LedgerAccount account);

// ---------------------------------------------------------------------------------------------
// Fraud screening.
enum class FraudDecision { kApprove, kReview, kReject };
std::string_view FraudDecisionName(FraudDecision decision);

struct FraudInput {
  int64_t amount_minor = 0;
  // The customer's history of successful authorizations (before this one).
  int64_t customer_payment_count = 0;
  int64_t customer_average_amount_minor = 0;
  // Attempts in the velocity window, this one excluded.
  int64_t card_attempts_in_window = 0;
  int64_t customer_attempts_in_window = 0;
  int64_t ip_attempts_in_window = 0;
  // Distinct cards the customer used in the velocity window, this one included.
  int64_t customer_distinct_cards = 1;
  std::string billing_country;   // ISO 3166 alpha-2, may be empty
  std::string shipping_country;  // may be empty
};

struct FraudRules {
  // A first purchase above this is suspicious.
  int64_t first_purchase_amount_minor_max = 50'000;
  // An amount above history average times this factor is suspicious.
  int64_t history_multiplier_max = 5;
  int64_t card_attempts_max = 5;
  int64_t customer_attempts_max = 10;
  int64_t ip_attempts_max = 20;
  int64_t customer_distinct_cards_max = 3;
  // Score thresholds (0..100).
  int review_score_min = 40;
  int reject_score_min = 80;
};

struct FraudAssessment {
  int score = 0;  // 0..100
  FraudDecision decision = FraudDecision::kApprove;
  std::vector<std::string> reasons;  // machine-readable rule names that fired
};

FraudAssessment ScoreFraud(const FraudInput& input, const FraudRules& rules = {});

// A guest payer: "guest" or "guest-..." (ordering's guest checkout); customer ids never look
// like this.
bool IsGuestPayer(std::string_view customer_id);
inline constexpr size_t kPayerEmailBytesMax = 254;
// Who the customer-level velocity rules count an intent against: a signed-in customer's id;
// for a guest, "guest-email:" + the trimmed, lower-cased payer e-mail when there is one, else
// "guest-card:" + the payment method, so guests are not all one customer.
std::string FraudKeyFor(std::string_view customer_id, std::string_view payer_email,
                        std::string_view payment_method);

// ---------------------------------------------------------------------------------------------
// Cards.
enum class CardBrand { kVisa, kMastercard, kAmex, kDiscover };
std::string_view CardBrandName(CardBrand brand);
std::optional<CardBrand> ParseCardBrand(std::string_view name);

bool LuhnValid(std::string_view digits);
// The brand for a digits-only number, by prefix and length; nullopt when unknown.
std::optional<CardBrand> DetectBrand(std::string_view digits);

struct CardInput {
  std::string number;  // digits, spaces or dashes allowed
  int expiry_month = 0;
  int expiry_year = 0;  // four digits
  std::string cvc;
  std::string holder;
};

struct CardDetails {
  std::string number;  // digits only; the only place the PAN survives
  CardBrand brand = CardBrand::kVisa;
  std::string last4;
  int expiry_month = 0;
  int expiry_year = 0;
  std::string holder;
};

// Validates a card as of (`now_year`, `now_month`): digits 12..19 passing Luhn, a known brand,
// an expiry month not in the past, a CVC of 3 digits (4 for Amex), a holder of 1..100 chars.
// Errors are InvalidParam naming the field, never echoing the number or the CVC.
absl::StatusOr<CardDetails> ValidateCard(const CardInput& input, int now_year, int now_month);

// ---------------------------------------------------------------------------------------------
// PSP idempotency keys.
enum class PspOperation { kAuthorize, kCapture, kVoid, kRefund };
std::string_view PspOperationName(PspOperation operation);
std::optional<PspOperation> ParsePspOperation(std::string_view name);

// The Idempotency-Key for a PSP call: stable for (intent, operation, attempt group), so every
// retry of one logical call carries the same key and the PSP can never act twice. A new
// attempt group is only started after the previous one reached a definitive outcome.
std::string PspIdempotencyKey(std::string_view intent_id, PspOperation operation,
                              int64_t attempt_group);

}  // namespace emporium::payments
