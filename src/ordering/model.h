// Ordering's pure domain core: carts and their totals, the order state machine and the checkout
// saga as a decision function.
//
// The saga is orchestrated: ordering sends inventory and payments commands and reacts to their
// replies and events. Decide() is the whole of its logic and has no I/O, clock or randomness:
//   (saga state, one input: a reply, an event, a timeout or a manual action, now) ->
//   (new state, commands to send, timeline entries)
// The service persists the new state, the commands (outbox) and the timeline in ONE
// transaction, so every step is persisted before its command leaves.
//
// Order states: PENDING -> RESERVED -> AUTHORIZED -> CONFIRMED, terminal REJECTED / CANCELLED.
// A terminal order may still have compensations running (void, cancel allocation, release):
// the saga's `step` says what it is waiting for and is kDone once nothing is outstanding.
// Replies that do not match the step in progress (duplicates, reordered or late ones) change
// nothing, except the ones that matter for money and stock: a late payment.authorized on an
// order that is no longer going to confirm is voided, a late successful reservation on a
// terminal order is released.
//
// Thread-safety: free functions over values; safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/money.h"

namespace emporium::ordering {

// ---- Carts -------------------------------------------------------------------------------

inline constexpr int64_t kLineQuantityMaxDefault = 100;
inline constexpr size_t kCartLinesMaxDefault = 50;
inline constexpr size_t kSkuLengthMax = 200;

struct CartLimits {
  int64_t line_quantity_max = kLineQuantityMaxDefault;  // per line
  size_t lines_max = kCartLinesMaxDefault;              // distinct SKUs per cart
};

struct CartLine {
  std::string sku;
  int64_t quantity = 0;
  friend bool operator==(const CartLine&, const CartLine&) = default;
};

// Adds `quantity` of `sku` (growing an existing line). InvalidParam (param "quantity" / "sku")
// when the quantity is out of 1..line_quantity_max after adding or the cart is full.
absl::StatusOr<std::vector<CartLine>> AddCartLine(std::vector<CartLine> lines, std::string_view sku,
                                                  int64_t quantity, const CartLimits& limits);
// Sets the quantity of an existing line; 0 removes it. NotFound for a SKU not in the cart.
absl::StatusOr<std::vector<CartLine>> SetCartLineQuantity(std::vector<CartLine> lines,
                                                          std::string_view sku, int64_t quantity,
                                                          const CartLimits& limits);

// Flat shipping per currency and a tax rate, for one region.
struct RegionRates {
  std::map<std::string, int64_t> shipping_minor;  // currency -> flat shipping, minor units
  int64_t tax_basis_points = 0;                   // 1 bp = 0.01 %
  friend bool operator==(const RegionRates&, const RegionRates&) = default;
};

struct PricingRules {
  std::map<std::string, RegionRates> regions;  // by region code
  RegionRates fallback;                        // regions not listed
  const RegionRates& ForRegion(std::string_view region) const;
  friend bool operator==(const PricingRules&, const PricingRules&) = default;
};

// Pricing rules as configuration text ([ordering] shipping / tax_bp), compact and validated:
//   shipping = "us:USD=499,CAD=999;eu:EUR=499;*:USD=999"
//     region ':' CUR=minor[,CUR=minor...], regions separated by ';'. A region is lower-case
//     letters, digits, '-' and '_' (at most 64); '*' is the fallback for unlisted regions (no
//     '*': unlisted regions are not shipped to). CUR is a known ISO 4217 code; minor is flat
//     shipping in minor units, 0..kShippingMinorMax.
//   tax_bp = "us=800,eu=2000;*=0"
//     region=basis points (0..10000), separated by ',' or ';'; '*' sets the fallback's tax and
//     the tax of every shipping region not listed here (default 0). A region here must have
//     shipping rates.
// Spaces around tokens are ignored. Empty text means "none" (no regions, fallback tax 0).
// InvalidArgument naming the offending piece; duplicates are errors.
inline constexpr int64_t kShippingMinorMax = 1'000'000'000;
inline constexpr int64_t kTaxBasisPointsMax = 10'000;
inline constexpr size_t kPricingRegionsMax = 1'000;
absl::StatusOr<PricingRules> ParsePricingRules(std::string_view shipping, std::string_view tax_bp);

// The built-in rules (what an empty [ordering] shipping / tax_bp means).
inline constexpr std::string_view kDefaultShippingRates =
    "us:USD=499,CAD=999;eu:EUR=499,USD=599,SEK=4900;uk:GBP=399,EUR=599;jp:JPY=800;"
    "*:USD=999,EUR=999,GBP=899,JPY=1500,CHF=999,CAD=1299,AUD=1299,SEK=9900";
inline constexpr std::string_view kDefaultTaxRates = "us=800,eu=2000,uk=2000,jp=1000,*=0";

// A cart line with the price the order context's read model knows for it.
struct PricedLine {
  std::string sku;
  std::string title;
  int64_t quantity = 0;
  Money unit_price;
  Money line_total;
};

struct Totals {
  Money subtotal;
  Money shipping;
  Money tax;  // on subtotal + shipping, rounded half away from zero
  Money grand_total;
};

// Prices `quantity` units at `unit_price`. OutOfRange on overflow.
absl::StatusOr<PricedLine> PriceLine(std::string sku, std::string title, int64_t quantity,
                                     const Money& unit_price);

// Totals of `lines` in `currency` for `region`. An empty cart costs nothing (no shipping).
// InvalidArgument when a line is in another currency or the region has no shipping rate for
// the currency (code "currency_not_shipped"), OutOfRange on overflow.
absl::StatusOr<Totals> ComputeTotals(const std::vector<PricedLine>& lines,
                                     std::string_view currency, std::string_view region,
                                     const PricingRules& rules);

// ---- Orders ------------------------------------------------------------------------------

enum class OrderState { kPending, kReserved, kAuthorized, kConfirmed, kRejected, kCancelled };

std::string_view OrderStateName(OrderState state);
std::optional<OrderState> ParseOrderState(std::string_view name);
// REJECTED or CANCELLED.
bool IsTerminal(OrderState state);
// CONFIRMED or terminal: what `Prefer: wait` waits for.
bool IsSettled(OrderState state);

// ---- The checkout saga -------------------------------------------------------------------

// What the saga is waiting for. Forward steps first, then compensations.
enum class SagaStep {
  kExtend,                // taking over the cart's reservation (inventory.extend)
  kAwaitCartReservation,  // taking over the cart's reservation: its reserve is on its way
                          // already, so no command; its reply decides (a timeout extends)
  kReserve,               // a reservation of its own (inventory.reserve)
  kAuthorize,             // payments.authorize
  kAllocate,              // inventory.allocate
  kVoid,                  // payments.void
  kRefund,                // payments.refund
  kCancelAllocation,      // inventory.cancel_allocation
  kRelease,               // inventory.release
  kDone,                  // nothing outstanding
};
std::string_view SagaStepName(SagaStep step);
std::optional<SagaStep> ParseSagaStep(std::string_view name);

enum class CommandKind {
  kExtend,
  kReserve,
  kAuthorize,
  kAllocate,
  kVoid,
  kRefund,
  kCancelAllocation,
  kRelease,
};
std::string_view CommandKindName(CommandKind kind);

// A command for the service to build and publish. Order data (lines, amount, payment method)
// comes from the order; the saga names the reservation it means.
struct SagaCommand {
  CommandKind kind = CommandKind::kReserve;
  std::string reservation_id;
  int attempt = 1;
  friend bool operator==(const SagaCommand&, const SagaCommand&) = default;
};

struct TimelineEntry {
  std::string kind;  // "step", "command", "reply", "retry", "compensation", "state", "ignored",
                     // "manual"; the service adds "attached_to_customer" (detail: customer id)
  std::string detail;
  friend bool operator==(const TimelineEntry&, const TimelineEntry&) = default;
};

struct SagaPolicy {
  int64_t step_timeout_ms = 5'000;          // reserve, extend, allocate, compensations
  int64_t authorize_timeout_ms = 15'000;    // payments talks to a PSP
  int64_t review_timeout_ms = 30 * 60'000;  // a payment in fraud review waits this long
  int attempts_max = 4;                     // sends per step (first + retries)
  int64_t backoff_initial_ms = 200;         // added to the deadline of a retry, doubling
  int64_t backoff_max_ms = 5'000;
};

struct SagaState {
  OrderState order_state = OrderState::kPending;
  SagaStep step = SagaStep::kReserve;
  int attempt = 0;          // sends of the current step's command so far
  int64_t deadline_ms = 0;  // the current step times out then; 0 when kDone
  int64_t updated_at_ms = 0;
  std::string reservation_id;            // held or being acquired
  std::string own_reservation_id;        // used when the cart's reservation cannot be taken over
  bool authorization_requested = false;  // payments.authorize was sent at least once
  bool authorized = false;               // payments reported an authorization not yet voided
  bool captured = false;
  bool allocated = false;
  std::string reason;                   // why REJECTED / CANCELLED
  std::vector<std::string> short_skus;  // on REJECTED for stock
  std::vector<SagaStep> compensations;  // still to run after the current step, in order
  friend bool operator==(const SagaState&, const SagaState&) = default;
};

enum class InputKind {
  kReserveReply,
  // The cart's reservation an order waits for (kAwaitCartReservation) was confirmed, but its
  // expiry does not match the order's reservation TTL: the order extends it.
  kCartReservationMistimed,
  kExtendReply,
  kAllocateReply,
  kReleaseReply,
  kCancelAllocationReply,
  kPaymentAuthorized,
  kPaymentDeclined,
  kPaymentReviewRequired,
  kPaymentVoided,
  kPaymentCaptured,
  kPaymentRefunded,
  kTimeout,
  kCustomerCancel,
  kStaffRetry,
  kStaffCompensate,
};
std::string_view InputKindName(InputKind kind);

struct SagaInput {
  InputKind kind = InputKind::kTimeout;
  bool ok = false;                      // inventory replies
  std::string reservation_id;           // inventory replies
  std::string outcome;                  // inventory outcome name, decline reason
  std::vector<std::string> short_skus;  // reservation failures (short and unknown)
};

struct SagaDecision {
  SagaState state;
  std::vector<SagaCommand> commands;
  std::vector<TimelineEntry> timeline;
  bool changed = false;  // false: the input was ignored (state identical)
};

// What a new order knows of the cart reservation it takes over.
enum class CartHold {
  kPending,  // the cart's reserve is on its way: its reply (or a timeout) decides
  kHeld,     // inventory confirmed it for these lines with the order's TTL still ahead
  kExtend,   // confirmed, but it would not last the order: inventory.extend
};

// The first decision of a new order. `cart_reservation_id` non-empty: take over the cart's
// reservation as `hold` says (kHeld: RESERVED at once, on to authorize; kPending: wait for the
// cart's own reserve reply, no command; kExtend: inventory.extend). Otherwise reserve
// `own_reservation_id`.
SagaDecision StartSaga(std::string cart_reservation_id, CartHold hold,
                       std::string own_reservation_id, int64_t now_ms, const SagaPolicy& policy);

// The saga's reaction to `input` at `now_ms`. Errors only for manual actions that are not
// allowed in the current state (FailedPrecondition with code "order_not_cancellable" /
// "saga_finished"); replies and timeouts never fail (an unexpected one is ignored).
absl::StatusOr<SagaDecision> Decide(const SagaState& state, const SagaInput& input, int64_t now_ms,
                                    const SagaPolicy& policy);

// The extra wait added to a retry's deadline: exponential from backoff_initial_ms, capped,
// with deterministic jitter in [50 %, 100 %] derived from `jitter_key` and `attempt`.
int64_t RetryBackoffMs(const SagaPolicy& policy, int attempt, std::string_view jitter_key);

// True when the saga has nothing outstanding.
inline bool SagaFinished(const SagaState& state) { return state.step == SagaStep::kDone; }

}  // namespace emporium::ordering
