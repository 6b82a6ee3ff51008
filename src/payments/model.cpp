#include "payments/model.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <utility>

#include "common/errors.h"
#include "fmt/format.h"

namespace emporium::payments {
namespace {

Transition Rejected(TransitionOutcome outcome, IntentState state, const IntentAmounts& amounts) {
  return Transition{outcome, state, amounts};
}

// Checks the event's amount: present, positive, in the intent's currency.
TransitionOutcome CheckAmount(const IntentEvent& event, const IntentAmounts& amounts) {
  if (!event.amount.has_value()) return TransitionOutcome::kAmountMissing;
  if (event.amount->amount_minor() <= 0) return TransitionOutcome::kNonPositiveAmount;
  if (event.amount->currency_code() != amounts.currency) {
    return TransitionOutcome::kCurrencyMismatch;
  }
  return TransitionOutcome::kApplied;
}

constexpr std::array<std::pair<IntentState, std::string_view>, 9> kStateNames = {{
    {IntentState::kRequiresAuthorization, "requires_authorization"},
    {IntentState::kInReview, "in_review"},
    {IntentState::kAuthorized, "authorized"},
    {IntentState::kCaptured, "captured"},
    {IntentState::kPartiallyRefunded, "partially_refunded"},
    {IntentState::kRefunded, "refunded"},
    {IntentState::kVoided, "voided"},
    {IntentState::kFailed, "failed"},
    {IntentState::kExpired, "expired"},
}};

}  // namespace

std::string_view IntentStateName(IntentState state) {
  switch (state) {
    case IntentState::kRequiresAuthorization:
      return "requires_authorization";
    case IntentState::kInReview:
      return "in_review";
    case IntentState::kAuthorized:
      return "authorized";
    case IntentState::kCaptured:
      return "captured";
    case IntentState::kPartiallyRefunded:
      return "partially_refunded";
    case IntentState::kRefunded:
      return "refunded";
    case IntentState::kVoided:
      return "voided";
    case IntentState::kFailed:
      return "failed";
    case IntentState::kExpired:
      return "expired";
  }
  std::abort();
}

std::optional<IntentState> ParseIntentState(std::string_view name) {
  for (const auto& [state, state_name] : kStateNames) {
    if (state_name == name) return state;
  }
  return std::nullopt;
}

bool IsTerminal(IntentState state) {
  switch (state) {
    case IntentState::kRequiresAuthorization:
    case IntentState::kInReview:
    case IntentState::kAuthorized:
    case IntentState::kCaptured:
    case IntentState::kPartiallyRefunded:
      return false;
    case IntentState::kRefunded:
    case IntentState::kVoided:
    case IntentState::kFailed:
    case IntentState::kExpired:
      return true;
  }
  std::abort();
}

std::string_view IntentEventName(IntentEventKind kind) {
  switch (kind) {
    case IntentEventKind::kRequireReview:
      return "require_review";
    case IntentEventKind::kApproveReview:
      return "approve_review";
    case IntentEventKind::kRejectReview:
      return "reject_review";
    case IntentEventKind::kAuthorizeSucceeded:
      return "authorize_succeeded";
    case IntentEventKind::kAuthorizeFailed:
      return "authorize_failed";
    case IntentEventKind::kCapture:
      return "capture";
    case IntentEventKind::kVoid:
      return "void";
    case IntentEventKind::kRefund:
      return "refund";
    case IntentEventKind::kExpire:
      return "expire";
  }
  std::abort();
}

std::string_view TransitionOutcomeName(TransitionOutcome outcome) {
  switch (outcome) {
    case TransitionOutcome::kApplied:
      return "applied";
    case TransitionOutcome::kIllegalTransition:
      return "illegal_transition";
    case TransitionOutcome::kAmountMissing:
      return "amount_missing";
    case TransitionOutcome::kNonPositiveAmount:
      return "non_positive_amount";
    case TransitionOutcome::kCurrencyMismatch:
      return "currency_mismatch";
    case TransitionOutcome::kAmountMismatch:
      return "amount_mismatch";
    case TransitionOutcome::kExceedsAuthorized:
      return "exceeds_authorized";
    case TransitionOutcome::kExceedsRefundable:
      return "exceeds_refundable";
  }
  std::abort();
}

// The table of legal (state, event) pairs; every other pair is illegal.
static bool IsLegal(IntentState state, IntentEventKind kind) {
  switch (state) {
    case IntentState::kRequiresAuthorization:
      return kind == IntentEventKind::kRequireReview ||
             kind == IntentEventKind::kAuthorizeSucceeded ||
             kind == IntentEventKind::kAuthorizeFailed;
    case IntentState::kInReview:
      return kind == IntentEventKind::kApproveReview || kind == IntentEventKind::kRejectReview;
    case IntentState::kAuthorized:
      return kind == IntentEventKind::kCapture || kind == IntentEventKind::kVoid ||
             kind == IntentEventKind::kExpire;
    case IntentState::kCaptured:
    case IntentState::kPartiallyRefunded:
      return kind == IntentEventKind::kRefund;
    case IntentState::kRefunded:
    case IntentState::kVoided:
    case IntentState::kFailed:
    case IntentState::kExpired:
      return false;
  }
  std::abort();
}

Transition ApplyIntentEvent(IntentState state, const IntentAmounts& amounts,
                            const IntentEvent& event) {
  if (!IsLegal(state, event.kind)) {
    return Rejected(TransitionOutcome::kIllegalTransition, state, amounts);
  }
  IntentAmounts next = amounts;
  switch (event.kind) {
    case IntentEventKind::kRequireReview:
      return Transition{TransitionOutcome::kApplied, IntentState::kInReview, next};
    case IntentEventKind::kApproveReview:
      return Transition{TransitionOutcome::kApplied, IntentState::kRequiresAuthorization, next};
    case IntentEventKind::kRejectReview:
    case IntentEventKind::kAuthorizeFailed:
      return Transition{TransitionOutcome::kApplied, IntentState::kFailed, next};
    case IntentEventKind::kAuthorizeSucceeded: {
      if (TransitionOutcome check = CheckAmount(event, amounts);
          check != TransitionOutcome::kApplied) {
        return Rejected(check, state, amounts);
      }
      if (event.amount->amount_minor() != amounts.amount_minor) {
        return Rejected(TransitionOutcome::kAmountMismatch, state, amounts);
      }
      next.authorized_minor = event.amount->amount_minor();
      return Transition{TransitionOutcome::kApplied, IntentState::kAuthorized, next};
    }
    case IntentEventKind::kCapture: {
      if (TransitionOutcome check = CheckAmount(event, amounts);
          check != TransitionOutcome::kApplied) {
        return Rejected(check, state, amounts);
      }
      if (event.amount->amount_minor() > amounts.authorized_minor) {
        return Rejected(TransitionOutcome::kExceedsAuthorized, state, amounts);
      }
      next.captured_minor = event.amount->amount_minor();
      return Transition{TransitionOutcome::kApplied, IntentState::kCaptured, next};
    }
    case IntentEventKind::kVoid:
      return Transition{TransitionOutcome::kApplied, IntentState::kVoided, next};
    case IntentEventKind::kExpire:
      return Transition{TransitionOutcome::kApplied, IntentState::kExpired, next};
    case IntentEventKind::kRefund: {
      if (TransitionOutcome check = CheckAmount(event, amounts);
          check != TransitionOutcome::kApplied) {
        return Rejected(check, state, amounts);
      }
      // refunded <= captured holds before, so the subtraction cannot overflow.
      const int64_t refundable = amounts.captured_minor - amounts.refunded_minor;
      if (event.amount->amount_minor() > refundable) {
        return Rejected(TransitionOutcome::kExceedsRefundable, state, amounts);
      }
      next.refunded_minor = amounts.refunded_minor + event.amount->amount_minor();
      const IntentState to = next.refunded_minor == next.captured_minor
                                 ? IntentState::kRefunded
                                 : IntentState::kPartiallyRefunded;
      return Transition{TransitionOutcome::kApplied, to, next};
    }
  }
  std::abort();
}

// ---------------------------------------------------------------------------------------------

std::string_view LedgerAccountName(LedgerAccount account) {
  switch (account) {
    case LedgerAccount::kCustomerReceivable:
      return "customer_receivable";
    case LedgerAccount::kPspClearing:
      return "psp_clearing";
    case LedgerAccount::kMerchantRevenue:
      return "merchant_revenue";
    case LedgerAccount::kRefunds:
      return "refunds";
  }
  std::abort();
}

std::optional<LedgerAccount> ParseLedgerAccount(std::string_view name) {
  for (LedgerAccount account : {LedgerAccount::kCustomerReceivable, LedgerAccount::kPspClearing,
                                LedgerAccount::kMerchantRevenue, LedgerAccount::kRefunds}) {
    if (LedgerAccountName(account) == name) return account;
  }
  return std::nullopt;
}

std::string_view EntryDirectionName(EntryDirection direction) {
  switch (direction) {
    case EntryDirection::kDebit:
      return "debit";
    case EntryDirection::kCredit:
      return "credit";
  }
  std::abort();
}

std::optional<EntryDirection> ParseEntryDirection(std::string_view name) {
  if (name == "debit") return EntryDirection::kDebit;
  if (name == "credit") return EntryDirection::kCredit;
  return std::nullopt;
}

std::string_view MoneyMovementName(MoneyMovement movement) {
  switch (movement) {
    case MoneyMovement::kCapture:
      return "capture";
    case MoneyMovement::kRefund:
      return "refund";
  }
  std::abort();
}

absl::StatusOr<LedgerTransaction> BuildLedgerTransaction(MoneyMovement movement,
                                                         const Money& amount) {
  if (amount.amount_minor() <= 0) {
    return absl::InvalidArgumentError("a ledger movement needs a positive amount");
  }
  const std::string currency(amount.currency_code());
  const int64_t minor = amount.amount_minor();
  LedgerTransaction transaction;
  transaction.movement = movement;
  switch (movement) {
    case MoneyMovement::kCapture:
      transaction.entries = {
          {LedgerAccount::kCustomerReceivable, EntryDirection::kDebit, minor, currency},
          {LedgerAccount::kMerchantRevenue, EntryDirection::kCredit, minor, currency},
          {LedgerAccount::kPspClearing, EntryDirection::kDebit, minor, currency},
          {LedgerAccount::kCustomerReceivable, EntryDirection::kCredit, minor, currency},
      };
      break;
    case MoneyMovement::kRefund:
      transaction.entries = {
          {LedgerAccount::kRefunds, EntryDirection::kDebit, minor, currency},
          {LedgerAccount::kPspClearing, EntryDirection::kCredit, minor, currency},
      };
      break;
  }
  // The builder is the only producer of transactions, so an unbalanced one is a bug here.
  if (!ValidateBalanced(transaction.entries).ok()) std::abort();
  return transaction;
}

absl::Status ValidateBalanced(const std::vector<LedgerEntry>& entries) {
  if (entries.size() < 2) return absl::DataLossError("a transaction needs at least two entries");
  __extension__ __int128 debits = 0;
  __extension__ __int128 credits = 0;
  for (const LedgerEntry& entry : entries) {
    if (entry.currency != entries.front().currency) {
      return absl::DataLossError("a transaction mixes currencies");
    }
    if (entry.amount_minor <= 0) return absl::DataLossError("an entry has a non-positive amount");
    switch (entry.direction) {
      case EntryDirection::kDebit:
        debits += entry.amount_minor;
        break;
      case EntryDirection::kCredit:
        credits += entry.amount_minor;
        break;
    }
  }
  if (debits != credits) return absl::DataLossError("debits do not equal credits");
  return absl::OkStatus();
}

absl::StatusOr<int64_t> DebitBalance(const std::vector<LedgerEntry>& entries,
                                     LedgerAccount account) {
  __extension__ __int128 balance = 0;
  for (const LedgerEntry& entry : entries) {
    if (entry.account != account) continue;
    switch (entry.direction) {
      case EntryDirection::kDebit:
        balance += entry.amount_minor;
        break;
      case EntryDirection::kCredit:
        balance -= entry.amount_minor;
        break;
    }
  }
  if (balance > INT64_MAX || balance < INT64_MIN) {
    return absl::OutOfRangeError("ledger balance overflows");
  }
  return static_cast<int64_t>(balance);
}

// ---------------------------------------------------------------------------------------------

std::string_view FraudDecisionName(FraudDecision decision) {
  switch (decision) {
    case FraudDecision::kApprove:
      return "approve";
    case FraudDecision::kReview:
      return "review";
    case FraudDecision::kReject:
      return "reject";
  }
  std::abort();
}

bool IsGuestPayer(std::string_view customer_id) {
  return customer_id == "guest" || customer_id.starts_with("guest-");
}

std::string FraudKeyFor(std::string_view customer_id, std::string_view payer_email,
                        std::string_view payment_method) {
  if (!IsGuestPayer(customer_id)) return std::string(customer_id);
  while (!payer_email.empty() && (payer_email.front() == ' ' || payer_email.front() == '\t')) {
    payer_email.remove_prefix(1);
  }
  while (!payer_email.empty() && (payer_email.back() == ' ' || payer_email.back() == '\t')) {
    payer_email.remove_suffix(1);
  }
  if (!payer_email.empty()) {
    std::string email(payer_email);
    for (char& c : email) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return "guest-email:" + email;
  }
  return "guest-card:" + std::string(payment_method);
}

FraudAssessment ScoreFraud(const FraudInput& input, const FraudRules& rules) {
  FraudAssessment assessment;
  auto fire = [&assessment](std::string_view reason, int points) {
    assessment.reasons.emplace_back(reason);
    assessment.score += points;
  };
  if (input.customer_payment_count == 0) {
    if (input.amount_minor > rules.first_purchase_amount_minor_max) {
      fire("large_first_purchase", 30);
    }
  } else if (input.customer_average_amount_minor > 0 &&
             input.amount_minor / rules.history_multiplier_max >
                 input.customer_average_amount_minor) {
    fire("amount_above_history", 30);
  }
  if (input.card_attempts_in_window >= rules.card_attempts_max) fire("card_velocity", 40);
  if (input.customer_attempts_in_window >= rules.customer_attempts_max) {
    fire("customer_velocity", 30);
  }
  if (input.ip_attempts_in_window >= rules.ip_attempts_max) fire("ip_velocity", 30);
  if (!input.billing_country.empty() && !input.shipping_country.empty() &&
      input.billing_country != input.shipping_country) {
    fire("country_mismatch", 20);
  }
  if (input.customer_distinct_cards > rules.customer_distinct_cards_max) {
    fire("many_cards_per_customer", 40);
  }
  assessment.score = std::min(assessment.score, 100);
  if (assessment.score >= rules.reject_score_min) {
    assessment.decision = FraudDecision::kReject;
  } else if (assessment.score >= rules.review_score_min) {
    assessment.decision = FraudDecision::kReview;
  } else {
    assessment.decision = FraudDecision::kApprove;
  }
  return assessment;
}

// ---------------------------------------------------------------------------------------------

std::string_view CardBrandName(CardBrand brand) {
  switch (brand) {
    case CardBrand::kVisa:
      return "visa";
    case CardBrand::kMastercard:
      return "mastercard";
    case CardBrand::kAmex:
      return "amex";
    case CardBrand::kDiscover:
      return "discover";
  }
  std::abort();
}

std::optional<CardBrand> ParseCardBrand(std::string_view name) {
  for (CardBrand brand :
       {CardBrand::kVisa, CardBrand::kMastercard, CardBrand::kAmex, CardBrand::kDiscover}) {
    if (CardBrandName(brand) == name) return brand;
  }
  return std::nullopt;
}

bool LuhnValid(std::string_view digits) {
  if (digits.empty()) return false;
  int sum = 0;
  bool double_it = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    if (*it < '0' || *it > '9') return false;
    int digit = *it - '0';
    if (double_it) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

std::optional<CardBrand> DetectBrand(std::string_view digits) {
  auto prefix = [&digits](size_t length) -> int {
    if (digits.size() < length) return -1;
    int value = 0;
    for (size_t i = 0; i < length; ++i) value = value * 10 + (digits[i] - '0');
    return value;
  };
  const size_t length = digits.size();
  if ((prefix(2) == 34 || prefix(2) == 37) && length == 15) return CardBrand::kAmex;
  if (digits.starts_with("4") && (length == 13 || length == 16 || length == 19)) {
    return CardBrand::kVisa;
  }
  const int two = prefix(2);
  const int four = prefix(4);
  if (length == 16 && ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720))) {
    return CardBrand::kMastercard;
  }
  if ((four == 6011 || two == 65) && length >= 16 && length <= 19) return CardBrand::kDiscover;
  return std::nullopt;
}

absl::StatusOr<CardDetails> ValidateCard(const CardInput& input, int now_year, int now_month) {
  constexpr size_t kDigitsMin = 12;
  constexpr size_t kDigitsMax = 19;
  constexpr size_t kNumberCharsMax = 32;
  constexpr size_t kHolderCharsMax = 100;
  constexpr int kExpiryYearsAheadMax = 30;
  if (input.number.size() > kNumberCharsMax) {
    return InvalidParam("number", "the card number is too long", "invalid_number");
  }
  std::string digits;
  for (char c : input.number) {
    if (c >= '0' && c <= '9') {
      digits.push_back(c);
    } else if (c != ' ' && c != '-') {
      return InvalidParam("number", "the card number may hold only digits, spaces and dashes",
                          "invalid_number");
    }
  }
  if (digits.size() < kDigitsMin || digits.size() > kDigitsMax) {
    return InvalidParam("number", "the card number has the wrong length", "invalid_number");
  }
  if (!LuhnValid(digits)) {
    return InvalidParam("number", "the card number is not valid", "invalid_number");
  }
  const std::optional<CardBrand> brand = DetectBrand(digits);
  if (!brand.has_value()) {
    return InvalidParam("number", "the card brand is not supported", "unsupported_brand");
  }
  if (input.expiry_month < 1 || input.expiry_month > 12) {
    return InvalidParam("expiry_month", "the expiry month must be 1..12", "invalid_expiry_month");
  }
  if (input.expiry_year < now_year || input.expiry_year > now_year + kExpiryYearsAheadMax ||
      (input.expiry_year == now_year && input.expiry_month < now_month)) {
    return InvalidParam("expiry_year", "the card has expired or the year is invalid",
                        "expired_card");
  }
  const size_t cvc_length = *brand == CardBrand::kAmex ? 4 : 3;
  if (input.cvc.size() != cvc_length || !std::all_of(input.cvc.begin(), input.cvc.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; })) {
    return InvalidParam("cvc", "the security code is not valid", "invalid_cvc");
  }
  if (input.holder.empty() || input.holder.size() > kHolderCharsMax) {
    return InvalidParam("holder", "the card holder must be 1..100 characters", "invalid_holder");
  }
  CardDetails details;
  details.last4 = digits.substr(digits.size() - 4);
  details.number = std::move(digits);
  details.brand = *brand;
  details.expiry_month = input.expiry_month;
  details.expiry_year = input.expiry_year;
  details.holder = input.holder;
  return details;
}

// ---------------------------------------------------------------------------------------------

std::string_view PspOperationName(PspOperation operation) {
  switch (operation) {
    case PspOperation::kAuthorize:
      return "authorize";
    case PspOperation::kCapture:
      return "capture";
    case PspOperation::kVoid:
      return "void";
    case PspOperation::kRefund:
      return "refund";
  }
  std::abort();
}

std::optional<PspOperation> ParsePspOperation(std::string_view name) {
  for (PspOperation operation : {PspOperation::kAuthorize, PspOperation::kCapture,
                                 PspOperation::kVoid, PspOperation::kRefund}) {
    if (PspOperationName(operation) == name) return operation;
  }
  return std::nullopt;
}

std::string PspIdempotencyKey(std::string_view intent_id, PspOperation operation,
                              int64_t attempt_group) {
  return fmt::format("{}:{}:{}", intent_id, PspOperationName(operation), attempt_group);
}

}  // namespace emporium::payments
