#include "ordering/model.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "common/errors.h"
#include "common/status_macros.h"
#include "fmt/format.h"

namespace emporium::ordering {

// ---- Carts -------------------------------------------------------------------------------

namespace {

absl::Status CheckQuantity(int64_t quantity, const CartLimits& limits) {
  if (quantity < 1 || quantity > limits.line_quantity_max) {
    return InvalidParam("quantity", fmt::format("quantity must be 1..{}", limits.line_quantity_max),
                        "quantity_out_of_range");
  }
  return absl::OkStatus();
}

absl::Status CheckSku(std::string_view sku) {
  if (sku.empty() || sku.size() > kSkuLengthMax) {
    return InvalidParam("sku", fmt::format("sku must be 1..{} characters", kSkuLengthMax));
  }
  for (char c : sku) {
    if (c <= ' ' || c == ',' || c > '~') return InvalidParam("sku", "sku has invalid characters");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<CartLine>> AddCartLine(std::vector<CartLine> lines, std::string_view sku,
                                                  int64_t quantity, const CartLimits& limits) {
  RETURN_IF_ERROR(CheckSku(sku));
  RETURN_IF_ERROR(CheckQuantity(quantity, limits));
  for (CartLine& line : lines) {
    if (line.sku == sku) {
      RETURN_IF_ERROR(CheckQuantity(line.quantity + quantity, limits));
      line.quantity += quantity;
      return lines;
    }
  }
  if (lines.size() >= limits.lines_max) {
    return InvalidParam("sku", fmt::format("a cart holds at most {} lines", limits.lines_max),
                        "cart_full");
  }
  lines.push_back(CartLine{std::string(sku), quantity});
  return lines;
}

absl::StatusOr<std::vector<CartLine>> SetCartLineQuantity(std::vector<CartLine> lines,
                                                          std::string_view sku, int64_t quantity,
                                                          const CartLimits& limits) {
  auto it = std::find_if(lines.begin(), lines.end(),
                         [&](const CartLine& line) { return line.sku == sku; });
  if (it == lines.end()) {
    return WithErrorCode(absl::NotFoundError("the cart has no line with this sku"),
                         "line_not_found");
  }
  if (quantity == 0) {
    lines.erase(it);
    return lines;
  }
  RETURN_IF_ERROR(CheckQuantity(quantity, limits));
  it->quantity = quantity;
  return lines;
}

const RegionRates& PricingRules::ForRegion(std::string_view region) const {
  auto it = regions.find(std::string(region));
  return it == regions.end() ? fallback : it->second;
}

namespace {

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Splits on any of `separators`, trimming each piece; an empty text gives no pieces.
std::vector<std::string_view> SplitTrimmed(std::string_view text, std::string_view separators) {
  std::vector<std::string_view> out;
  if (Trim(text).empty()) return out;
  while (true) {
    const size_t at = text.find_first_of(separators);
    out.push_back(Trim(text.substr(0, at)));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

absl::Status CheckRuleRegion(std::string_view region) {
  if (region == "*") return absl::OkStatus();
  if (region.empty() || region.size() > 64) {
    return absl::InvalidArgumentError(fmt::format("bad region '{}'", region));
  }
  for (char c : region) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return absl::InvalidArgumentError(
          fmt::format("bad region '{}': lower-case letters, digits, '-' and '_', or '*'", region));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParseBounded(std::string_view text, int64_t max, std::string_view what) {
  if (text.empty() || text.size() > 12) {
    return absl::InvalidArgumentError(fmt::format("bad {} '{}'", what, text));
  }
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return absl::InvalidArgumentError(fmt::format("bad {} '{}'", what, text));
    value = value * 10 + (c - '0');
  }
  if (value > max) {
    return absl::InvalidArgumentError(fmt::format("{} '{}' is above {}", what, text, max));
  }
  return value;
}

// "name=value" -> (name, value) trimmed.
absl::StatusOr<std::pair<std::string_view, std::string_view>> SplitPair(std::string_view item,
                                                                        char separator) {
  const size_t at = item.find(separator);
  if (at == std::string_view::npos) {
    return absl::InvalidArgumentError(fmt::format("expected '{}' in '{}'", separator, item));
  }
  return std::pair{Trim(item.substr(0, at)), Trim(item.substr(at + 1))};
}

}  // namespace

absl::StatusOr<PricingRules> ParsePricingRules(std::string_view shipping, std::string_view tax_bp) {
  PricingRules rules;
  bool has_fallback = false;
  for (std::string_view group : SplitTrimmed(shipping, ";")) {
    ASSIGN_OR_RETURN(auto region_rates, SplitPair(group, ':'));
    const auto [region, rates_text] = region_rates;
    RETURN_IF_ERROR(CheckRuleRegion(region));
    if (rules.regions.size() >= kPricingRegionsMax) {
      return absl::InvalidArgumentError(fmt::format("more than {} regions", kPricingRegionsMax));
    }
    const bool fallback = region == "*";
    if (fallback ? has_fallback : rules.regions.contains(std::string(region))) {
      return absl::InvalidArgumentError(fmt::format("region '{}' is listed twice", region));
    }
    RegionRates rates;
    for (std::string_view item : SplitTrimmed(rates_text, ",")) {
      ASSIGN_OR_RETURN(auto currency_amount, SplitPair(item, '='));
      const auto [currency, amount_text] = currency_amount;
      if (!FindCurrency(currency).ok()) {
        return absl::InvalidArgumentError(
            fmt::format("region '{}': unknown currency '{}'", region, currency));
      }
      ASSIGN_OR_RETURN(int64_t amount, ParseBounded(amount_text, kShippingMinorMax, "amount"));
      if (!rates.shipping_minor.emplace(std::string(currency), amount).second) {
        return absl::InvalidArgumentError(
            fmt::format("region '{}': currency '{}' is listed twice", region, currency));
      }
    }
    if (rates.shipping_minor.empty()) {
      return absl::InvalidArgumentError(fmt::format("region '{}' has no rates", region));
    }
    if (fallback) {
      rules.fallback = std::move(rates);
      has_fallback = true;
    } else {
      rules.regions.emplace(std::string(region), std::move(rates));
    }
  }
  std::map<std::string, int64_t> taxes;
  for (std::string_view item : SplitTrimmed(tax_bp, ",;")) {
    ASSIGN_OR_RETURN(auto region_bp, SplitPair(item, '='));
    const auto [region, bp_text] = region_bp;
    RETURN_IF_ERROR(CheckRuleRegion(region));
    ASSIGN_OR_RETURN(int64_t bp, ParseBounded(bp_text, kTaxBasisPointsMax, "tax basis points"));
    if (region != "*" && !rules.regions.contains(std::string(region))) {
      return absl::InvalidArgumentError(
          fmt::format("tax for region '{}', which has no shipping rates", region));
    }
    if (!taxes.emplace(std::string(region), bp).second) {
      return absl::InvalidArgumentError(fmt::format("tax for region '{}' is listed twice", region));
    }
  }
  if (auto it = taxes.find("*"); it != taxes.end()) rules.fallback.tax_basis_points = it->second;
  for (auto& [region, rates] : rules.regions) {
    auto it = taxes.find(region);
    rates.tax_basis_points = it != taxes.end() ? it->second : rules.fallback.tax_basis_points;
  }
  return rules;
}

absl::StatusOr<PricedLine> PriceLine(std::string sku, std::string title, int64_t quantity,
                                     const Money& unit_price) {
  ASSIGN_OR_RETURN(Money total, unit_price.Multiply(quantity));
  return PricedLine{std::move(sku), std::move(title), quantity, unit_price, total};
}

absl::StatusOr<Totals> ComputeTotals(const std::vector<PricedLine>& lines,
                                     std::string_view currency, std::string_view region,
                                     const PricingRules& rules) {
  ASSIGN_OR_RETURN(Money subtotal, Money::Zero(currency));
  for (const PricedLine& line : lines) {
    if (line.line_total.currency_code() != currency) {
      return InvalidParam("currency", "a line is priced in another currency", "currency_mismatch");
    }
    ASSIGN_OR_RETURN(subtotal, subtotal.Add(line.line_total));
  }
  ASSIGN_OR_RETURN(Money shipping, Money::Zero(currency));
  const RegionRates& rates = rules.ForRegion(region);
  if (!lines.empty()) {
    auto rate = rates.shipping_minor.find(std::string(currency));
    if (rate == rates.shipping_minor.end()) {
      return InvalidParam("currency",
                          fmt::format("no shipping to region '{}' in {}", region, currency),
                          "currency_not_shipped");
    }
    ASSIGN_OR_RETURN(shipping, Money::FromMinor(rate->second, currency));
  }
  ASSIGN_OR_RETURN(Money taxable, subtotal.Add(shipping));
  ASSIGN_OR_RETURN(Money tax, taxable.MultiplyBasisPoints(rates.tax_basis_points));
  ASSIGN_OR_RETURN(Money grand_total, taxable.Add(tax));
  return Totals{subtotal, shipping, tax, grand_total};
}

// ---- Orders ------------------------------------------------------------------------------

std::string_view OrderStateName(OrderState state) {
  switch (state) {
    case OrderState::kPending:
      return "PENDING";
    case OrderState::kReserved:
      return "RESERVED";
    case OrderState::kAuthorized:
      return "AUTHORIZED";
    case OrderState::kConfirmed:
      return "CONFIRMED";
    case OrderState::kRejected:
      return "REJECTED";
    case OrderState::kCancelled:
      return "CANCELLED";
  }
  std::abort();
}

std::optional<OrderState> ParseOrderState(std::string_view name) {
  for (OrderState state : {OrderState::kPending, OrderState::kReserved, OrderState::kAuthorized,
                           OrderState::kConfirmed, OrderState::kRejected, OrderState::kCancelled}) {
    if (OrderStateName(state) == name) return state;
  }
  return std::nullopt;
}

bool IsTerminal(OrderState state) {
  switch (state) {
    case OrderState::kPending:
    case OrderState::kReserved:
    case OrderState::kAuthorized:
    case OrderState::kConfirmed:
      return false;
    case OrderState::kRejected:
    case OrderState::kCancelled:
      return true;
  }
  std::abort();
}

bool IsSettled(OrderState state) { return state == OrderState::kConfirmed || IsTerminal(state); }

// ---- Saga --------------------------------------------------------------------------------

namespace {

constexpr SagaStep kAllSteps[] = {SagaStep::kExtend,   SagaStep::kAwaitCartReservation,
                                  SagaStep::kReserve,  SagaStep::kAuthorize,
                                  SagaStep::kAllocate, SagaStep::kVoid,
                                  SagaStep::kRefund,   SagaStep::kCancelAllocation,
                                  SagaStep::kRelease,  SagaStep::kDone};

// The command a step sends; none for kAwaitCartReservation (the cart sent it) and kDone.
std::optional<CommandKind> CommandForStep(SagaStep step) {
  switch (step) {
    case SagaStep::kExtend:
      return CommandKind::kExtend;
    case SagaStep::kReserve:
      return CommandKind::kReserve;
    case SagaStep::kAuthorize:
      return CommandKind::kAuthorize;
    case SagaStep::kAllocate:
      return CommandKind::kAllocate;
    case SagaStep::kVoid:
      return CommandKind::kVoid;
    case SagaStep::kRefund:
      return CommandKind::kRefund;
    case SagaStep::kCancelAllocation:
      return CommandKind::kCancelAllocation;
    case SagaStep::kRelease:
      return CommandKind::kRelease;
    case SagaStep::kAwaitCartReservation:
    case SagaStep::kDone:
      return std::nullopt;
  }
  std::abort();
}

int64_t TimeoutFor(SagaStep step, const SagaPolicy& policy) {
  switch (step) {
    case SagaStep::kAuthorize:
      return policy.authorize_timeout_ms;
    case SagaStep::kExtend:
    case SagaStep::kAwaitCartReservation:
    case SagaStep::kReserve:
    case SagaStep::kAllocate:
    case SagaStep::kVoid:
    case SagaStep::kRefund:
    case SagaStep::kCancelAllocation:
    case SagaStep::kRelease:
      return policy.step_timeout_ms;
    case SagaStep::kDone:
      return 0;
  }
  std::abort();
}

class Decider {
 public:
  Decider(const SagaState& state, int64_t now_ms, const SagaPolicy& policy)
      : now_ms_(now_ms), policy_(policy) {
    decision_.state = state;
  }

  SagaState& state() { return decision_.state; }

  void Note(std::string kind, std::string detail) {
    decision_.timeline.push_back(TimelineEntry{std::move(kind), std::move(detail)});
  }

  void Send(CommandKind kind, int attempt) {
    decision_.commands.push_back(SagaCommand{kind, state().reservation_id, attempt});
    Note("command", fmt::format("{} sent (attempt {})", CommandKindName(kind), attempt));
  }

  // Starts `step` with a fresh retry budget.
  void Enter(SagaStep step) {
    state().step = step;
    if (step == SagaStep::kDone) {
      state().attempt = 0;
      state().deadline_ms = 0;
      Note("step", "saga finished");
      return;
    }
    state().attempt = 1;
    state().deadline_ms = now_ms_ + TimeoutFor(step, policy_);
    if (step == SagaStep::kAuthorize) state().authorization_requested = true;
    Note("step", std::string(SagaStepName(step)));
    if (std::optional<CommandKind> command = CommandForStep(step)) Send(*command, 1);
  }

  // Re-sends the current step's command, counting it against the budget. Waiting for the cart's
  // reserve has nothing to re-send: the order asks inventory itself (extend) instead.
  void Retry(int attempt) {
    if (state().step == SagaStep::kAwaitCartReservation) {
      Note("retry", "no answer for the cart's reservation; extending it instead");
      Enter(SagaStep::kExtend);
      return;
    }
    state().attempt = attempt;
    state().deadline_ms = now_ms_ + TimeoutFor(state().step, policy_) +
                          RetryBackoffMs(policy_, attempt, state().reservation_id);
    Note("retry", fmt::format("{} attempt {}", SagaStepName(state().step), attempt));
    if (std::optional<CommandKind> command = CommandForStep(state().step)) {
      Send(*command, attempt);
    }
  }

  void SetOrderState(OrderState order_state) {
    if (state().order_state == order_state) return;
    Note("state",
         fmt::format("{} -> {}", OrderStateName(state().order_state), OrderStateName(order_state)));
    state().order_state = order_state;
  }

  void NextCompensation() {
    std::vector<SagaStep>& queue = state().compensations;
    while (!queue.empty()) {
      const SagaStep step = queue.front();
      queue.erase(queue.begin());
      if (step == SagaStep::kRelease && state().reservation_id.empty()) continue;
      Note("compensation", std::string(SagaStepName(step)));
      Enter(step);
      return;
    }
    Enter(SagaStep::kDone);
  }

  // Adds a compensation to run (or re-sends it when it is the current step).
  void AddCompensation(SagaStep step) {
    if (state().step == step) {
      Retry(1);
      return;
    }
    std::vector<SagaStep>& queue = state().compensations;
    if (std::find(queue.begin(), queue.end(), step) == queue.end()) queue.push_back(step);
    if (state().step == SagaStep::kDone) NextCompensation();
  }

  // Moves the order to terminal `order_state` and runs `steps` in order. A void of an
  // authorization nobody has confirmed yet is sent without waiting: payments only answers a
  // void that found an authorization, and a late authorization is voided when it arrives.
  void Compensate(OrderState order_state, std::string reason, std::vector<SagaStep> steps) {
    SetOrderState(order_state);
    state().reason = std::move(reason);
    Note("compensation", fmt::format("compensating: {}", state().reason));
    state().compensations.clear();
    for (SagaStep step : steps) {
      if (step == SagaStep::kVoid && !state().authorized) {
        if (state().authorization_requested) Send(CommandKind::kVoid, 1);
        continue;
      }
      state().compensations.push_back(step);
    }
    NextCompensation();
  }

  void Reserved() {
    SetOrderState(OrderState::kReserved);
    Enter(SagaStep::kAuthorize);
  }

  // The cart's reservation cannot be taken over: the order reserves its own.
  void ReserveOwn() {
    state().reservation_id = state().own_reservation_id;
    Enter(SagaStep::kReserve);
  }

  void Ignore(const SagaInput& input) {
    ignored_ = true;
    Note("ignored", fmt::format("{} while {} / {}", InputKindName(input.kind),
                                OrderStateName(state().order_state), SagaStepName(state().step)));
  }

  SagaDecision Finish(const SagaState& before) {
    decision_.changed = !ignored_ || !(decision_.state == before);
    if (decision_.changed) decision_.state.updated_at_ms = now_ms_;
    return std::move(decision_);
  }

 private:
  const int64_t now_ms_;
  const SagaPolicy& policy_;
  SagaDecision decision_;
  bool ignored_ = false;
};

std::string JoinSkus(const std::vector<std::string>& skus) {
  std::string out;
  for (const std::string& sku : skus) {
    if (!out.empty()) out += ", ";
    out += sku;
  }
  return out;
}

std::vector<SagaStep> CancelSteps(const SagaState& state) {
  switch (state.order_state) {
    case OrderState::kPending:
      return {SagaStep::kRelease};
    case OrderState::kReserved:
      return {SagaStep::kVoid, SagaStep::kRelease};
    case OrderState::kAuthorized:
      return {SagaStep::kVoid, SagaStep::kCancelAllocation, SagaStep::kRelease};
    case OrderState::kConfirmed:
      return {state.captured ? SagaStep::kRefund : SagaStep::kVoid, SagaStep::kCancelAllocation};
    case OrderState::kRejected:
    case OrderState::kCancelled:
      return {};
  }
  std::abort();
}

}  // namespace

std::string_view SagaStepName(SagaStep step) {
  switch (step) {
    case SagaStep::kExtend:
      return "extend";
    case SagaStep::kAwaitCartReservation:
      return "await_cart_reservation";
    case SagaStep::kReserve:
      return "reserve";
    case SagaStep::kAuthorize:
      return "authorize";
    case SagaStep::kAllocate:
      return "allocate";
    case SagaStep::kVoid:
      return "void";
    case SagaStep::kRefund:
      return "refund";
    case SagaStep::kCancelAllocation:
      return "cancel_allocation";
    case SagaStep::kRelease:
      return "release";
    case SagaStep::kDone:
      return "done";
  }
  std::abort();
}

std::optional<SagaStep> ParseSagaStep(std::string_view name) {
  for (SagaStep step : kAllSteps) {
    if (SagaStepName(step) == name) return step;
  }
  return std::nullopt;
}

std::string_view CommandKindName(CommandKind kind) {
  switch (kind) {
    case CommandKind::kExtend:
      return "inventory.extend";
    case CommandKind::kReserve:
      return "inventory.reserve";
    case CommandKind::kAuthorize:
      return "payments.authorize";
    case CommandKind::kAllocate:
      return "inventory.allocate";
    case CommandKind::kVoid:
      return "payments.void";
    case CommandKind::kRefund:
      return "payments.refund";
    case CommandKind::kCancelAllocation:
      return "inventory.cancel_allocation";
    case CommandKind::kRelease:
      return "inventory.release";
  }
  std::abort();
}

std::string_view InputKindName(InputKind kind) {
  switch (kind) {
    case InputKind::kReserveReply:
      return "reserve_reply";
    case InputKind::kCartReservationMistimed:
      return "cart_reservation_mistimed";
    case InputKind::kExtendReply:
      return "extend_reply";
    case InputKind::kAllocateReply:
      return "allocate_reply";
    case InputKind::kReleaseReply:
      return "release_reply";
    case InputKind::kCancelAllocationReply:
      return "cancel_allocation_reply";
    case InputKind::kPaymentAuthorized:
      return "payment.authorized";
    case InputKind::kPaymentDeclined:
      return "payment.declined";
    case InputKind::kPaymentReviewRequired:
      return "payment.review_required";
    case InputKind::kPaymentVoided:
      return "payment.voided";
    case InputKind::kPaymentCaptured:
      return "payment.captured";
    case InputKind::kPaymentRefunded:
      return "payment.refunded";
    case InputKind::kTimeout:
      return "timeout";
    case InputKind::kCustomerCancel:
      return "customer_cancel";
    case InputKind::kStaffRetry:
      return "staff_retry";
    case InputKind::kStaffCompensate:
      return "staff_compensate";
  }
  std::abort();
}

int64_t RetryBackoffMs(const SagaPolicy& policy, int attempt, std::string_view jitter_key) {
  int64_t backoff = policy.backoff_initial_ms;
  for (int i = 2; i < attempt && backoff < policy.backoff_max_ms; ++i) backoff *= 2;
  backoff = std::min(backoff, policy.backoff_max_ms);
  // FNV-1a over the key and the attempt: deterministic, spread over [50 %, 100 %].
  uint64_t hash = 1469598103934665603ULL;
  for (char c : jitter_key) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  hash = (hash ^ static_cast<uint64_t>(attempt)) * 1099511628211ULL;
  const int64_t half = backoff / 2;
  return half + (half > 0 ? static_cast<int64_t>(hash % static_cast<uint64_t>(half + 1)) : 0);
}

SagaDecision StartSaga(std::string cart_reservation_id, CartHold hold,
                       std::string own_reservation_id, int64_t now_ms, const SagaPolicy& policy) {
  SagaState initial;
  initial.own_reservation_id = std::move(own_reservation_id);
  const bool take_over = !cart_reservation_id.empty();
  initial.reservation_id = take_over ? std::move(cart_reservation_id) : initial.own_reservation_id;
  Decider decider(initial, now_ms, policy);
  decider.Note("state", "order PENDING");
  if (!take_over) {
    decider.Enter(SagaStep::kReserve);
  } else {
    switch (hold) {
      case CartHold::kHeld:
        // Extending would only restate what inventory already confirmed: one round trip saved.
        decider.Note("state", "cart reservation taken over as held (no extend needed)");
        decider.Reserved();
        break;
      case CartHold::kPending:
        // Its reply is on its way already; asking again would only add a round trip.
        decider.Enter(SagaStep::kAwaitCartReservation);
        break;
      case CartHold::kExtend:
        decider.Enter(SagaStep::kExtend);
        break;
    }
  }
  SagaDecision decision = decider.Finish(initial);
  decision.changed = true;
  return decision;
}

absl::StatusOr<SagaDecision> Decide(const SagaState& state, const SagaInput& input, int64_t now_ms,
                                    const SagaPolicy& policy) {
  Decider d(state, now_ms, policy);
  SagaState& s = d.state();
  const bool same_reservation =
      !input.reservation_id.empty() && input.reservation_id == s.reservation_id;
  switch (input.kind) {
    case InputKind::kCartReservationMistimed:
      if (s.step != SagaStep::kAwaitCartReservation || !same_reservation) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", "cart reservation confirmed, but not for the order's TTL; extending it");
      d.Enter(SagaStep::kExtend);
      break;

    case InputKind::kExtendReply:
      if (s.step != SagaStep::kExtend || !same_reservation) {
        d.Ignore(input);
        break;
      }
      if (input.ok) {
        d.Note("reply", "cart reservation taken over");
        d.Reserved();
      } else {
        d.Note("reply",
               fmt::format("cart reservation not taken over ({}); reserving anew", input.outcome));
        d.ReserveOwn();
      }
      break;

    case InputKind::kReserveReply:
      if (s.step == SagaStep::kAwaitCartReservation && same_reservation) {
        if (input.ok) {
          d.Note("reply", "cart reservation confirmed and taken over");
          d.Reserved();
        } else {
          d.Note("reply",
                 fmt::format("cart reservation failed ({}); reserving anew", input.outcome));
          d.ReserveOwn();
        }
      } else if (s.step == SagaStep::kReserve && same_reservation) {
        if (input.ok) {
          d.Note("reply", "stock reserved");
          d.Reserved();
        } else {
          d.Note("reply", fmt::format("reservation failed: {} {}", input.outcome,
                                      JoinSkus(input.short_skus)));
          s.short_skus = input.short_skus;
          d.SetOrderState(OrderState::kRejected);
          s.reason = input.outcome.empty() ? "reservation_failed" : input.outcome;
          d.Enter(SagaStep::kDone);
        }
      } else if (input.ok && same_reservation && IsTerminal(s.order_state) &&
                 s.step == SagaStep::kDone) {
        // A reservation that succeeded after the order gave up on it: give the stock back.
        d.Note("compensation", "late reservation released");
        d.AddCompensation(SagaStep::kRelease);
      } else {
        d.Ignore(input);
      }
      break;

    case InputKind::kAllocateReply:
      if (s.step != SagaStep::kAllocate || !same_reservation) {
        d.Ignore(input);
        break;
      }
      if (input.ok) {
        d.Note("reply", "stock allocated");
        s.allocated = true;
        d.SetOrderState(OrderState::kConfirmed);
        d.Enter(SagaStep::kDone);
      } else {
        d.Note("reply", fmt::format("allocation failed: {}", input.outcome));
        d.Compensate(OrderState::kCancelled, "allocation_failed",
                     {SagaStep::kVoid, SagaStep::kRelease});
      }
      break;

    case InputKind::kReleaseReply:
      if (s.step != SagaStep::kRelease || !same_reservation) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", fmt::format("release: {}", input.outcome));
      if (input.outcome == "not_active") d.AddCompensation(SagaStep::kCancelAllocation);
      d.NextCompensation();
      break;

    case InputKind::kCancelAllocationReply:
      if (s.step != SagaStep::kCancelAllocation) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", fmt::format("cancel allocation: {}", input.outcome));
      if (input.ok) s.allocated = false;
      if (input.outcome == "not_found") d.AddCompensation(SagaStep::kRelease);
      d.NextCompensation();
      break;

    case InputKind::kPaymentAuthorized:
      if (s.step == SagaStep::kAuthorize && s.order_state == OrderState::kReserved) {
        d.Note("reply", "payment authorized");
        s.authorized = true;
        d.SetOrderState(OrderState::kAuthorized);
        d.Enter(SagaStep::kAllocate);
      } else if (IsTerminal(s.order_state) && !s.authorized) {
        d.Note("compensation", "late authorization on a closed order: voiding it");
        s.authorized = true;
        d.AddCompensation(SagaStep::kVoid);
      } else {
        d.Ignore(input);
      }
      break;

    case InputKind::kPaymentDeclined:
      if (s.step == SagaStep::kAuthorize && s.order_state == OrderState::kReserved) {
        d.Note("reply", fmt::format("payment declined: {}", input.outcome));
        d.Compensate(OrderState::kCancelled, "payment_declined", {SagaStep::kRelease});
      } else if (s.step == SagaStep::kVoid && s.authorized) {
        // Nothing to void after all (the authorization never went through).
        d.Note("reply", "payment declined: nothing to void");
        s.authorized = false;
        d.NextCompensation();
      } else {
        d.Ignore(input);
      }
      break;

    case InputKind::kPaymentReviewRequired:
      if (s.step != SagaStep::kAuthorize) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", "payment in fraud review; waiting longer");
      s.deadline_ms = now_ms + policy.review_timeout_ms;
      break;

    case InputKind::kPaymentVoided:
      if (!s.authorized && s.step != SagaStep::kVoid) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", "authorization voided");
      s.authorized = false;
      if (s.step == SagaStep::kVoid) d.NextCompensation();
      break;

    case InputKind::kPaymentCaptured:
      if (s.captured) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", "payment captured");
      s.captured = true;
      s.authorized = false;
      if (IsTerminal(s.order_state)) d.AddCompensation(SagaStep::kRefund);
      break;

    case InputKind::kPaymentRefunded:
      if (!s.captured) {
        d.Ignore(input);
        break;
      }
      d.Note("reply", "payment refunded");
      s.captured = false;
      if (s.step == SagaStep::kRefund) d.NextCompensation();
      break;

    case InputKind::kTimeout: {
      if (s.step == SagaStep::kDone || now_ms < s.deadline_ms) {
        d.Ignore(input);
        break;
      }
      if (s.attempt < policy.attempts_max) {
        d.Retry(s.attempt + 1);
        break;
      }
      d.Note("step", fmt::format("{} gave up after {} attempts", SagaStepName(s.step), s.attempt));
      switch (s.step) {
        case SagaStep::kAwaitCartReservation:
          d.Retry(1);  // extends
          break;
        case SagaStep::kExtend:
          d.ReserveOwn();
          break;
        case SagaStep::kReserve:
          d.Compensate(OrderState::kRejected, "reservation_timeout", {SagaStep::kRelease});
          break;
        case SagaStep::kAuthorize:
          d.Compensate(OrderState::kCancelled, "payment_timeout",
                       {SagaStep::kVoid, SagaStep::kRelease});
          break;
        case SagaStep::kAllocate:
          d.Compensate(OrderState::kCancelled, "allocation_timeout",
                       {SagaStep::kVoid, SagaStep::kCancelAllocation, SagaStep::kRelease});
          break;
        case SagaStep::kVoid:
        case SagaStep::kRefund:
        case SagaStep::kCancelAllocation:
        case SagaStep::kRelease:
          d.Note("compensation",
                 fmt::format("{} unconfirmed; left for staff", SagaStepName(s.step)));
          d.NextCompensation();
          break;
        case SagaStep::kDone:
          std::abort();  // handled above
      }
      break;
    }

    case InputKind::kCustomerCancel:
    case InputKind::kStaffCompensate: {
      const bool staff = input.kind == InputKind::kStaffCompensate;
      if (s.order_state == OrderState::kCancelled && !staff) {
        d.Ignore(input);  // cancelling twice is the same as once
        break;
      }
      if (IsTerminal(s.order_state)) {
        if (staff && s.step != SagaStep::kDone) {
          d.Note("manual", "staff re-drove the compensation");
          d.Retry(1);
          break;
        }
        return WithErrorCode(
            absl::FailedPreconditionError(fmt::format("the order is {} and cannot be cancelled",
                                                      OrderStateName(s.order_state))),
            staff ? "saga_finished" : "order_not_cancellable");
      }
      d.Note("manual", staff ? "staff compensation" : "customer cancelled");
      d.Compensate(OrderState::kCancelled, staff ? "staff_compensated" : "customer_cancelled",
                   CancelSteps(s));
      break;
    }

    case InputKind::kStaffRetry:
      if (s.step == SagaStep::kDone) {
        return WithErrorCode(absl::FailedPreconditionError("the saga has nothing outstanding"),
                             "saga_finished");
      }
      d.Note("manual", "staff retried the step");
      d.Retry(1);
      break;
  }
  return d.Finish(state);
}

}  // namespace emporium::ordering
