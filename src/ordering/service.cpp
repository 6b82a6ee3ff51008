#include "ordering/service.h"

#include <algorithm>
#include <atomic>
#include <tuple>
#include <utility>

#include "common/errors.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/bus/outbox.h"
#include "platform/http/message.h"

namespace emporium::ordering {
namespace {

constexpr std::string_view kCartCorrelationPrefix = "cart:";
constexpr size_t kEmailLengthMax = 254;
constexpr size_t kRegionLengthMax = 64;
constexpr size_t kAddressBytesMax = 4096;
constexpr size_t kPaymentMethodLengthMax = 200;
// A cart reservation serves a new order as it is (no inventory.extend) when it expires the
// order's reservation TTL from now, give or take this much (a quarter of that TTL when it is
// short): the clocks of two processes.
constexpr int64_t kHeldReservationSlackMs = 60'000;

// Whether a cart reservation inventory confirmed until `expires_at_ms` serves an order created
// at `now_ms` as it is. Shorter might not last the order; longer would hold the stock longer
// than an order's reservation may (extend sets either right).
bool ExpiresLikeAnOrderReservation(int64_t expires_at_ms, int64_t now_ms,
                                   int64_t order_reservation_ttl_ms) {
  const int64_t slack = std::min(kHeldReservationSlackMs, order_reservation_ttl_ms / 4);
  const int64_t wanted = now_ms + order_reservation_ttl_ms;
  return expires_at_ms >= wanted - slack && expires_at_ms <= wanted + slack;
}

absl::Status CheckCartOpen(const Cart& cart) {
  switch (cart.status) {
    case CartStatus::kOpen:
      return absl::OkStatus();
    case CartStatus::kCheckedOut:
      return WithErrorCode(absl::FailedPreconditionError(
                               fmt::format("the cart was checked out as order {}", cart.order_id)),
                           "cart_checked_out");
    case CartStatus::kAbandoned:
      return WithErrorCode(absl::FailedPreconditionError("the cart was abandoned"),
                           "cart_abandoned");
  }
  std::abort();
}

absl::Status CheckCurrency(const std::string& currency) {
  if (!FindCurrency(currency).ok()) {
    return InvalidParam("currency", "unknown currency", "unknown_currency");
  }
  return absl::OkStatus();
}

absl::Status CheckRegion(const std::string& region) {
  if (region.size() > kRegionLengthMax) return InvalidParam("region", "region is too long");
  for (char c : region) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) {
      return InvalidParam("region", "region is lower-case letters, digits, '-' and '_'");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEmail(const std::string& email) {
  if (email.empty()) return absl::OkStatus();
  if (email.size() > kEmailLengthMax || email.find('@') == std::string::npos ||
      email.find_first_of(" \t\r\n") != std::string::npos) {
    return InvalidParam("email", "not an e-mail address");
  }
  return absl::OkStatus();
}

absl::Status CheckAddress(const Json& address) {
  if (!address.is_object()) return InvalidParam("shipping_address", "must be an object");
  if (DumpJson(address).size() > kAddressBytesMax) {
    return InvalidParam("shipping_address", "is too large");
  }
  return absl::OkStatus();
}

Json LinesPayload(const std::vector<CartLine>& lines) {
  Json out = Json::array();
  for (const CartLine& line : lines)
    out.push_back({{"sku", line.sku}, {"quantity", line.quantity}});
  return out;
}

Json LinesPayload(const std::vector<PricedLine>& lines) {
  Json out = Json::array();
  for (const PricedLine& line : lines) {
    out.push_back({{"sku", line.sku}, {"quantity", line.quantity}});
  }
  return out;
}

std::optional<InputKind> InventoryReplyKind(std::string_view command) {
  if (command == "inventory.reserve") return InputKind::kReserveReply;
  if (command == "inventory.extend") return InputKind::kExtendReply;
  if (command == "inventory.allocate") return InputKind::kAllocateReply;
  if (command == "inventory.release") return InputKind::kReleaseReply;
  if (command == "inventory.cancel_allocation") return InputKind::kCancelAllocationReply;
  return std::nullopt;
}

std::optional<InputKind> PaymentEventKind(std::string_view type) {
  if (type == "payment.authorized") return InputKind::kPaymentAuthorized;
  if (type == "payment.declined") return InputKind::kPaymentDeclined;
  if (type == "payment.review_required") return InputKind::kPaymentReviewRequired;
  if (type == "payment.voided") return InputKind::kPaymentVoided;
  if (type == "payment.captured") return InputKind::kPaymentCaptured;
  if (type == "payment.refunded") return InputKind::kPaymentRefunded;
  return std::nullopt;
}

std::vector<std::string> StringList(const Json& object, const char* field) {
  std::vector<std::string> out;
  auto it = object.find(field);
  if (it == object.end() || !it->is_array()) return out;
  for (const Json& item : *it) {
    if (item.is_string() && out.size() < 1000) out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace

std::string HashHex(std::string_view text) {
  uint64_t hash = 1469598103934665603ULL;
  for (char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return fmt::format("{:016x}", hash);
}

OrderingService::OrderingService(sql::Database& db, OrderingOptions options)
    : db_(db),
      options_(std::move(options)),
      clock_(*options_.clock),
      ids_(clock_),
      hub_(std::make_shared<Hub>()) {
  std::weak_ptr<Hub> weak = hub_;
  db_.AddCommitListener([weak] {
    std::shared_ptr<Hub> hub = weak.lock();
    if (!hub) return;
    {
      std::lock_guard lock(hub->mutex);
      if (hub->touched.empty()) return;
      hub->committed.insert(hub->committed.end(), hub->touched.begin(), hub->touched.end());
      hub->touched.clear();
    }
    hub->cv.notify_all();
  });
}

OrderingService::~OrderingService() { Stop(); }

void OrderingService::Start() {
  std::lock_guard lock(sweep_mutex_);
  if (running_) return;
  running_ = true;
  {
    std::lock_guard hub_lock(hub_->mutex);
    hub_->stopping = false;
  }
  notifier_ = std::thread([this] {
    SetCurrentThreadName("ord-notifier");
    RunNotifier();
  });
  if (options_.sweep_interval_ms > 0)
    sweeper_ = std::thread([this] {
      SetCurrentThreadName("ord-sweeper");
      RunSweeper();
    });
}

void OrderingService::Stop() {
  {
    std::lock_guard lock(sweep_mutex_);
    if (!running_) return;
    running_ = false;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  {
    std::lock_guard lock(hub_->mutex);
    hub_->stopping = true;
  }
  hub_->cv.notify_all();
  if (notifier_.joinable()) notifier_.join();
}

// ---- Carts -------------------------------------------------------------------------------

absl::StatusOr<CartView> OrderingService::PriceCart(sql::Transaction& tx, Cart cart) {
  CartView view;
  std::vector<std::string> skus;
  for (const CartLine& line : cart.lines) skus.push_back(line.sku);
  ASSIGN_OR_RETURN(auto prices, FindPrices(tx, skus));
  std::vector<std::string> missing;
  for (const CartLine& line : cart.lines) {
    auto it = prices.find(line.sku);
    if (it == prices.end() || !it->second.active) {
      missing.push_back(line.sku);
      continue;
    }
    auto price = it->second.prices_minor.find(cart.currency);
    if (price == it->second.prices_minor.end()) {
      missing.push_back(line.sku);
      continue;
    }
    ASSIGN_OR_RETURN(Money unit, Money::FromMinor(price->second, cart.currency));
    ASSIGN_OR_RETURN(PricedLine priced, PriceLine(line.sku, it->second.title, line.quantity, unit));
    view.lines.push_back(std::move(priced));
  }
  if (!missing.empty()) {
    std::string list;
    for (const std::string& sku : missing) list += (list.empty() ? "" : ", ") + sku;
    view.pricing_problem = fmt::format("no {} price for: {}", cart.currency, list);
  } else {
    absl::StatusOr<Totals> totals =
        ComputeTotals(view.lines, cart.currency, cart.region, options_.pricing);
    if (totals.ok()) {
      view.totals = *totals;
    } else {
      view.pricing_problem = std::string(totals.status().message());
    }
  }
  view.cart = std::move(cart);
  return view;
}

absl::Status OrderingService::PublishInventory(sql::Transaction& tx, std::string_view type,
                                               const Json& payload, const std::string& key,
                                               const std::string& correlation_id, int64_t now_ms) {
  bus::Envelope envelope;
  envelope.id = ids_.Next();
  envelope.type = std::string(type);
  envelope.source = std::string(kSource);
  envelope.key = key;
  envelope.correlation_id = correlation_id;
  envelope.reply_to = std::string(kInventoryReplyType);
  envelope.occurred_at_ms = now_ms;
  envelope.payload = DumpJson(payload);
  return bus::Publish(tx, envelope);
}

absl::Status OrderingService::ReplaceCartReservation(sql::Transaction& tx, Cart& cart,
                                                     int64_t now_ms) {
  const std::string correlation = fmt::format("{}{}", kCartCorrelationPrefix, cart.id);
  // The reservation the cart may still hold (a pending one may have been applied already).
  std::string previous;
  if (!cart.reservation_id.empty() && (cart.reservation == CartReservation::kPending ||
                                       cart.reservation == CartReservation::kReserved)) {
    previous = cart.reservation_id;
    cart.reservation = CartReservation::kReleased;
  }
  ++cart.lines_version;
  cart.reservation_short_skus.clear();
  if (cart.lines.empty() || cart.status != CartStatus::kOpen) {
    cart.reservation_id.clear();
    cart.reservation = CartReservation::kNone;
    cart.reservation_expires_at_ms = 0;
    if (previous.empty()) return absl::OkStatus();
    return PublishInventory(tx, "inventory.release", Json{{"reservation_id", previous}}, previous,
                            correlation, now_ms);
  }
  cart.reservation_id = fmt::format("cart-{}-{}", cart.id, cart.lines_version);
  cart.reservation = CartReservation::kPending;
  cart.reservation_expires_at_ms = now_ms + options_.cart_reservation_ttl_ms;
  Json payload = {{"reservation_id", cart.reservation_id},
                  {"lines", LinesPayload(cart.lines)},
                  {"region", cart.region},
                  {"ttl_seconds", std::max<int64_t>(1, options_.cart_reservation_ttl_ms / 1000)}};
  // One command instead of a release and a reserve: inventory releases `previous` (if still
  // active) and reserves the new lines atomically, counting the released units as available.
  if (!previous.empty()) payload["replaces"] = previous;
  return PublishInventory(tx, "inventory.reserve", payload, cart.reservation_id, correlation,
                          now_ms);
}

void OrderingService::CreateCart(CartInput input, Callback<CartView> done) {
  if (input.currency.empty()) {
    done(InvalidParam("currency", "currency is required", "missing_param"));
    return;
  }
  for (absl::Status status :
       {CheckCurrency(input.currency), CheckRegion(input.region), CheckEmail(input.email)}) {
    if (!status.ok()) {
      done(status);
      return;
    }
  }
  if (input.shipping_address) {
    if (absl::Status status = CheckAddress(*input.shipping_address); !status.ok()) {
      done(status);
      return;
    }
  }
  auto result = std::make_shared<absl::StatusOr<CartView>>(absl::UnknownError("unset"));
  const int64_t now_ms = clock_.NowMs();
  Cart cart;
  cart.id = ids_.Next();
  cart.customer_id = std::move(input.customer_id);
  cart.account_id = cart.customer_id;
  cart.currency = std::move(input.currency);
  cart.region = std::move(input.region);
  cart.email = std::move(input.email);
  if (input.shipping_address) cart.shipping_address = *std::move(input.shipping_address);
  cart.created_at_ms = now_ms;
  cart.updated_at_ms = now_ms;
  db_.SubmitWrite(
      [this, cart = std::move(cart), result](sql::Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(InsertCart(tx, cart));
        *result = PriceCart(tx, cart);
        return result->status();
      },
      [result, done = std::move(done)](absl::Status status) {
        done(status.ok() ? std::move(*result) : absl::StatusOr<CartView>(status));
      });
}

absl::StatusOr<CartView> OrderingService::EditCartInTx(sql::Transaction& tx,
                                                       const std::string& cart_id,
                                                       const CartEdit& edit) {
  ASSIGN_OR_RETURN(std::optional<Cart> cart, LoadCart(tx, cart_id));
  if (!cart) return WithErrorCode(absl::NotFoundError("cart not found"), "cart_not_found");
  RETURN_IF_ERROR(CheckCartOpen(*cart));
  RETURN_IF_ERROR(edit(tx, *cart));
  ++cart->version;
  cart->updated_at_ms = clock_.NowMs();
  RETURN_IF_ERROR(ordering::UpdateCart(tx, *cart));
  return PriceCart(tx, *std::move(cart));
}

void OrderingService::MutateCart(std::string cart_id, CartEdit edit, Callback<CartView> done) {
  auto result = std::make_shared<absl::StatusOr<CartView>>(absl::UnknownError("unset"));
  db_.SubmitWrite(
      [this, cart_id = std::move(cart_id), edit = std::move(edit),
       result](sql::Transaction& tx) -> absl::Status {
        *result = EditCartInTx(tx, cart_id, edit);
        return result->status();
      },
      [result, done = std::move(done)](absl::Status status) {
        done(status.ok() ? std::move(*result) : absl::StatusOr<CartView>(status));
      });
}

void OrderingService::MutateCartIdempotent(std::string cart_id, CartEdit edit,
                                           IdempotentEdit idempotency,
                                           Callback<CartEditReply> done) {
  if (!idempotency.render) {
    idempotency.render = [](const CartView& view) { return view.cart.id; };
  }
  // Keys are per cart: the same key on another cart is another request.
  std::string scope = fmt::format("{}:{}", kCartEditScope, cart_id);
  std::string inflight;
  if (!idempotency.key.empty()) {
    inflight = fmt::format("{}\n{}", scope, idempotency.key);
    std::lock_guard lock(inflight_mutex_);
    if (!inflight_keys_.insert(inflight).second) {
      done(WithErrorCode(absl::AbortedError("a request with this Idempotency-Key is in progress"),
                         "idempotency_key_in_use"));
      return;
    }
  }
  auto result = std::make_shared<absl::StatusOr<CartEditReply>>(absl::UnknownError("unset"));
  db_.SubmitWrite(
      [this, cart_id = std::move(cart_id), scope = std::move(scope), edit = std::move(edit),
       idempotency = std::move(idempotency), result](sql::Transaction& tx) -> absl::Status {
        const bool keyed = !idempotency.key.empty();
        if (keyed) {
          ASSIGN_OR_RETURN(auto existing, FindIdempotencyKey(tx, scope, idempotency.key));
          if (existing) {
            if (existing->request_hash != idempotency.request_hash) {
              return http::WithHttpStatus(
                  WithErrorCode(absl::FailedPreconditionError(
                                    "this Idempotency-Key was used with another request"),
                                "idempotency_key_reused"),
                  422);
            }
            *result = CartEditReply{existing->response, true};
            return absl::OkStatus();
          }
        }
        ASSIGN_OR_RETURN(CartView view, EditCartInTx(tx, cart_id, edit));
        std::string body = idempotency.render(view);
        if (keyed) {
          RETURN_IF_ERROR(InsertIdempotencyKey(
              tx, scope, idempotency.key, {idempotency.request_hash, "", body}, clock_.NowMs()));
        }
        *result = CartEditReply{std::move(body), false};
        return absl::OkStatus();
      },
      [this, inflight, result, done = std::move(done)](absl::Status status) {
        if (!inflight.empty()) {
          std::lock_guard lock(inflight_mutex_);
          inflight_keys_.erase(inflight);
        }
        done(status.ok() ? std::move(*result) : absl::StatusOr<CartEditReply>(status));
      });
}

OrderingService::CartEdit OrderingService::AddLineEdit(std::string sku, int64_t quantity) {
  return [this, sku = std::move(sku), quantity](sql::Transaction& tx, Cart& cart) -> absl::Status {
    // The price read model must know the SKU in the cart's currency.
    ASSIGN_OR_RETURN(auto prices, FindPrices(tx, {sku}));
    auto it = prices.find(sku);
    if (it == prices.end() || !it->second.active) {
      return http::WithHttpStatus(InvalidParam("sku", "no such product for sale", "unknown_sku"),
                                  422);
    }
    if (!it->second.prices_minor.contains(cart.currency)) {
      return http::WithHttpStatus(
          InvalidParam("sku", fmt::format("not sold in {}", cart.currency), "price_unavailable"),
          422);
    }
    ASSIGN_OR_RETURN(cart.lines,
                     AddCartLine(std::move(cart.lines), sku, quantity, options_.cart_limits));
    return ReplaceCartReservation(tx, cart, clock_.NowMs());
  };
}

OrderingService::CartEdit OrderingService::SetLineEdit(std::string sku, int64_t quantity) {
  return [this, sku = std::move(sku), quantity](sql::Transaction& tx, Cart& cart) -> absl::Status {
    ASSIGN_OR_RETURN(cart.lines, SetCartLineQuantity(std::move(cart.lines), sku, quantity,
                                                     options_.cart_limits));
    return ReplaceCartReservation(tx, cart, clock_.NowMs());
  };
}

OrderingService::CartEdit OrderingService::PatchEdit(CartPatch patch) {
  return [this, patch = std::move(patch)](sql::Transaction& tx, Cart& cart) -> absl::Status {
    const bool region_changed = patch.region && *patch.region != cart.region;
    if (patch.currency) cart.currency = *patch.currency;
    if (patch.region) cart.region = *patch.region;
    if (patch.email) cart.email = *patch.email;
    if (patch.shipping_address) cart.shipping_address = *patch.shipping_address;
    // The reservation's location choice depends on the region.
    if (region_changed && !cart.lines.empty()) {
      return ReplaceCartReservation(tx, cart, clock_.NowMs());
    }
    return absl::OkStatus();
  };
}

absl::Status OrderingService::CheckPatch(const CartPatch& patch) {
  if (patch.currency) RETURN_IF_ERROR(CheckCurrency(*patch.currency));
  if (patch.region) RETURN_IF_ERROR(CheckRegion(*patch.region));
  if (patch.email) RETURN_IF_ERROR(CheckEmail(*patch.email));
  if (patch.shipping_address) RETURN_IF_ERROR(CheckAddress(*patch.shipping_address));
  return absl::OkStatus();
}

void OrderingService::AddLine(std::string cart_id, std::string sku, int64_t quantity,
                              Callback<CartView> done) {
  MutateCart(std::move(cart_id), AddLineEdit(std::move(sku), quantity), std::move(done));
}

void OrderingService::AddLine(std::string cart_id, std::string sku, int64_t quantity,
                              IdempotentEdit idempotency, Callback<CartEditReply> done) {
  MutateCartIdempotent(std::move(cart_id), AddLineEdit(std::move(sku), quantity),
                       std::move(idempotency), std::move(done));
}

void OrderingService::SetLine(std::string cart_id, std::string sku, int64_t quantity,
                              Callback<CartView> done) {
  MutateCart(std::move(cart_id), SetLineEdit(std::move(sku), quantity), std::move(done));
}

void OrderingService::SetLine(std::string cart_id, std::string sku, int64_t quantity,
                              IdempotentEdit idempotency, Callback<CartEditReply> done) {
  MutateCartIdempotent(std::move(cart_id), SetLineEdit(std::move(sku), quantity),
                       std::move(idempotency), std::move(done));
}

void OrderingService::UpdateCart(std::string cart_id, CartPatch patch, Callback<CartView> done) {
  if (absl::Status status = CheckPatch(patch); !status.ok()) return done(status);
  MutateCart(std::move(cart_id), PatchEdit(std::move(patch)), std::move(done));
}

void OrderingService::UpdateCart(std::string cart_id, CartPatch patch, IdempotentEdit idempotency,
                                 Callback<CartEditReply> done) {
  if (absl::Status status = CheckPatch(patch); !status.ok()) return done(status);
  MutateCartIdempotent(std::move(cart_id), PatchEdit(std::move(patch)), std::move(idempotency),
                       std::move(done));
}

void OrderingService::AbandonCart(std::string cart_id, Callback<CartView> done) {
  MutateCart(
      std::move(cart_id),
      [this](sql::Transaction& tx, Cart& cart) -> absl::Status {
        cart.status = CartStatus::kAbandoned;
        return ReplaceCartReservation(tx, cart, clock_.NowMs());
      },
      std::move(done));
}

absl::StatusOr<CartView> OrderingService::GetCart(const std::string& cart_id) {
  absl::StatusOr<CartView> result = absl::UnknownError("unset");
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Cart> cart, LoadCart(tx, cart_id));
    if (!cart) return WithErrorCode(absl::NotFoundError("cart not found"), "cart_not_found");
    result = PriceCart(tx, *std::move(cart));
    return result.status();
  }));
  return result;
}

absl::StatusOr<std::string> OrderingService::CartOwner(const std::string& cart_id) {
  std::optional<Cart> cart;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(cart, LoadCart(tx, cart_id));
    return absl::OkStatus();
  }));
  if (!cart) return WithErrorCode(absl::NotFoundError("cart not found"), "cart_not_found");
  return std::move(cart->customer_id);
}

absl::Status OrderingService::HandleCartReply(sql::Transaction& tx, const std::string& cart_id,
                                              const Json& reply) {
  if (reply.value("command", std::string()) != "inventory.reserve") return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<Cart> cart, LoadCart(tx, cart_id));
  if (!cart || cart->reservation_id != reply.value("reservation_id", std::string()) ||
      cart->reservation != CartReservation::kPending) {
    return absl::OkStatus();  // a reply about a reservation the cart has moved on from
  }
  if (reply.value("ok", false)) {
    cart->reservation = CartReservation::kReserved;
    if (auto it = reply.find("expires_at_ms"); it != reply.end() && it->is_number_integer()) {
      cart->reservation_expires_at_ms = it->get<int64_t>();
    }
  } else {
    cart->reservation = CartReservation::kFailed;
    cart->reservation_short_skus = StringList(reply, "short_skus");
    for (std::string& sku : StringList(reply, "unknown_skus")) {
      cart->reservation_short_skus.push_back(std::move(sku));
    }
  }
  ++cart->version;
  cart->updated_at_ms = clock_.NowMs();
  RETURN_IF_ERROR(ordering::UpdateCart(tx, *cart, CartLinesWrite::kUnchanged));
  if (cart->status != CartStatus::kCheckedOut || cart->order_id.empty()) return absl::OkStatus();
  // Checked out before this reply came: the order took the reservation over and waits for this
  // answer (SagaStep::kAwaitCartReservation); an order that has moved on ignores it.
  // Confirmed with another expiry than an order's reservation gets (a cart TTL unlike the
  // order's, or a reply that waited): the order extends it.
  const int64_t now_ms = clock_.NowMs();
  const bool ok = reply.value("ok", false);
  const bool mistimed =
      ok && !ExpiresLikeAnOrderReservation(cart->reservation_expires_at_ms, now_ms,
                                           options_.order_reservation_ttl_ms);
  SagaInput input{mistimed ? InputKind::kCartReservationMistimed : InputKind::kReserveReply, ok,
                  cart->reservation_id, reply.value("outcome", std::string()),
                  cart->reservation_short_skus};
  absl::StatusOr<Order> applied = ApplyInput(tx, cart->order_id, input, now_ms);
  if (applied.ok() || absl::IsNotFound(applied.status())) return absl::OkStatus();
  return applied.status();
}

// ---- Orders ------------------------------------------------------------------------------

absl::Status OrderingService::PublishCommand(sql::Transaction& tx, const Order& order,
                                             const SagaCommand& command, int64_t now_ms) {
  const std::string& reservation = command.reservation_id;
  const int64_t ttl_seconds = std::max<int64_t>(1, options_.order_reservation_ttl_ms / 1000);
  switch (command.kind) {
    case CommandKind::kExtend:
      return PublishInventory(tx, "inventory.extend",
                              Json{{"reservation_id", reservation}, {"ttl_seconds", ttl_seconds}},
                              reservation, order.id, now_ms);
    case CommandKind::kReserve:
      return PublishInventory(tx, "inventory.reserve",
                              Json{{"reservation_id", reservation},
                                   {"lines", LinesPayload(order.lines)},
                                   {"region", order.region},
                                   {"ttl_seconds", ttl_seconds}},
                              reservation, order.id, now_ms);
    case CommandKind::kAllocate:
      return PublishInventory(tx, "inventory.allocate",
                              Json{{"reservation_id", reservation}, {"order_id", order.id}},
                              reservation, order.id, now_ms);
    case CommandKind::kRelease:
      return PublishInventory(tx, "inventory.release", Json{{"reservation_id", reservation}},
                              reservation, order.id, now_ms);
    case CommandKind::kCancelAllocation:
      return PublishInventory(tx, "inventory.cancel_allocation", Json{{"order_id", order.id}},
                              reservation, order.id, now_ms);
    case CommandKind::kAuthorize:
    case CommandKind::kVoid:
    case CommandKind::kRefund: {
      bus::Envelope envelope;
      envelope.id = ids_.Next();
      envelope.source = std::string(kSource);
      envelope.key = order.id;
      envelope.correlation_id = order.id;
      envelope.occurred_at_ms = now_ms;
      Json payload = {{"order_id", order.id}};
      if (command.kind == CommandKind::kAuthorize) {
        envelope.type = "payments.authorize";
        const std::string country = order.shipping_address.value("country", std::string());
        payload.update({{"customer_id", order.customer_id},
                        {"payment_method", order.payment_method},
                        {"amount_minor", order.total_minor},
                        {"currency", order.currency},
                        // Guests' fraud velocity is counted per payer e-mail.
                        {"payer_email", order.email},
                        {"billing_country", country},
                        {"shipping_country", country}});
      } else if (command.kind == CommandKind::kVoid) {
        envelope.type = "payments.void";
      } else {
        envelope.type = "payments.refund";
        payload["amount_minor"] = order.total_minor;
      }
      envelope.payload = DumpJson(payload);
      return bus::Publish(tx, envelope);
    }
  }
  std::abort();
}

void OrderingService::Touched(const Order& order) {
  const OrderChange change =
      IsSettled(order.state()) ? OrderChange::kMaybeSettled : OrderChange::kInProgress;
  std::lock_guard lock(hub_->mutex);
  hub_->touched.push_back(TouchedOrder{order.id, change});
}

absl::StatusOr<Order> OrderingService::ApplyInput(sql::Transaction& tx, const std::string& order_id,
                                                  const SagaInput& input, int64_t now_ms) {
  ASSIGN_OR_RETURN(std::optional<Order> order, LoadOrder(tx, order_id));
  if (!order) return WithErrorCode(absl::NotFoundError("order not found"), "order_not_found");
  ASSIGN_OR_RETURN(SagaDecision decision, Decide(order->saga, input, now_ms, options_.saga));
  if (!decision.changed) return *std::move(order);
  order->saga = decision.state;
  for (const SagaCommand& command : decision.commands) {
    RETURN_IF_ERROR(PublishCommand(tx, *order, command, now_ms));
  }
  RETURN_IF_ERROR(AppendTimeline(tx, *order, decision.timeline, now_ms));
  ++order->version;
  order->updated_at_ms = now_ms;
  RETURN_IF_ERROR(UpdateOrder(tx, *order));
  Touched(*order);
  return *std::move(order);
}

void OrderingService::Checkout(CheckoutRequest request, Callback<CheckoutResult> done) {
  if (request.payment_method.empty() || request.payment_method.size() > kPaymentMethodLengthMax) {
    done(InvalidParam("payment_method", "payment_method is required", "missing_param"));
    return;
  }
  const std::string key = request.idempotency_key;
  if (!key.empty()) {
    std::lock_guard lock(inflight_mutex_);
    if (!inflight_keys_.insert(key).second) {
      done(WithErrorCode(absl::AbortedError("a request with this Idempotency-Key is in progress"),
                         "idempotency_key_in_use"));
      return;
    }
  }
  auto result = std::make_shared<absl::StatusOr<CheckoutResult>>(absl::UnknownError("unset"));
  db_.SubmitWrite(
      [this, request = std::move(request), result](sql::Transaction& tx) -> absl::Status {
        const int64_t now_ms = clock_.NowMs();
        if (!request.idempotency_key.empty()) {
          ASSIGN_OR_RETURN(auto existing, FindIdempotencyKey(tx, std::string(kCheckoutScope),
                                                             request.idempotency_key));
          if (existing) {
            if (existing->request_hash != request.request_hash) {
              return http::WithHttpStatus(
                  WithErrorCode(absl::FailedPreconditionError(
                                    "this Idempotency-Key was used with another request"),
                                "idempotency_key_reused"),
                  422);
            }
            ASSIGN_OR_RETURN(std::optional<Order> order, LoadOrder(tx, existing->order_id));
            if (!order) return absl::DataLossError("idempotency key names a missing order");
            *result = CheckoutResult{*std::move(order), true};
            return absl::OkStatus();
          }
        }
        ASSIGN_OR_RETURN(std::optional<Cart> cart, LoadCart(tx, request.cart_id));
        if (!cart) return WithErrorCode(absl::NotFoundError("cart not found"), "cart_not_found");
        RETURN_IF_ERROR(CheckCartOpen(*cart));
        if (cart->lines.empty()) {
          return http::WithHttpStatus(
              WithErrorCode(absl::FailedPreconditionError("the cart is empty"), "cart_empty"), 422);
        }
        ASSIGN_OR_RETURN(CartView view, PriceCart(tx, *cart));
        if (!view.totals) {
          return http::WithHttpStatus(
              WithErrorCode(absl::FailedPreconditionError(view.pricing_problem), "not_priceable"),
              422);
        }
        Order order;
        order.id = ids_.Next();
        order.cart_id = cart->id;
        order.customer_id = request.customer_id.empty() ? cart->customer_id : request.customer_id;
        order.account_id = request.account_id.empty() ? cart->account_id : request.account_id;
        order.email = cart->email;
        order.currency = cart->currency;
        order.region = cart->region;
        order.payment_method = request.payment_method;
        order.shipping_address = cart->shipping_address;
        order.subtotal_minor = view.totals->subtotal.amount_minor();
        order.shipping_minor = view.totals->shipping.amount_minor();
        order.tax_minor = view.totals->tax.amount_minor();
        order.total_minor = view.totals->grand_total.amount_minor();
        order.lines = view.lines;
        order.created_at_ms = now_ms;
        order.updated_at_ms = now_ms;
        // Take over the cart's reservation when it is (or is about to be) held for these lines.
        const bool take_over =
            !cart->reservation_id.empty() && (cart->reservation == CartReservation::kPending ||
                                              cart->reservation == CartReservation::kReserved);
        // Held: inventory confirmed it for these lines and it expires as an order's reservation
        // would (ExpiresLikeAnOrderReservation), so extending it would change nothing the order
        // needs. Pending: its reply is on its way (HandleCartReply passes it on to the order).
        // Otherwise inventory.extend.
        CartHold hold = CartHold::kExtend;
        if (cart->reservation == CartReservation::kPending) {
          hold = CartHold::kPending;
        } else if (ExpiresLikeAnOrderReservation(cart->reservation_expires_at_ms, now_ms,
                                                 options_.order_reservation_ttl_ms)) {
          hold = CartHold::kHeld;
        }
        SagaDecision start = StartSaga(take_over ? cart->reservation_id : "", hold,
                                       fmt::format("order-{}", order.id), now_ms, options_.saga);
        order.saga = start.state;
        std::vector<TimelineEntry> timeline = start.timeline;
        if (order.account_id.empty() && !order.email.empty()) {
          // A guest using an e-mail its owner has verified: listed under that customer now.
          ASSIGN_OR_RETURN(std::optional<std::string> owner,
                           VerifiedCustomerByEmail(tx, order.email));
          if (owner.has_value()) {
            order.account_id = *owner;
            timeline.push_back(TimelineEntry{"attached_to_customer", *owner});
          }
        }
        RETURN_IF_ERROR(AppendTimeline(tx, order, timeline, now_ms));
        RETURN_IF_ERROR(InsertOrder(tx, order));
        for (const SagaCommand& command : start.commands) {
          RETURN_IF_ERROR(PublishCommand(tx, order, command, now_ms));
        }
        cart->status = CartStatus::kCheckedOut;
        cart->order_id = order.id;
        ++cart->version;
        cart->updated_at_ms = now_ms;
        RETURN_IF_ERROR(ordering::UpdateCart(tx, *cart, CartLinesWrite::kUnchanged));
        if (!request.idempotency_key.empty()) {
          RETURN_IF_ERROR(InsertIdempotencyKey(tx, std::string(kCheckoutScope),
                                               request.idempotency_key,
                                               {request.request_hash, order.id, ""}, now_ms));
        }
        Touched(order);
        *result = CheckoutResult{std::move(order), false};
        return absl::OkStatus();
      },
      [this, key, result, done = std::move(done)](absl::Status status) {
        if (!key.empty()) {
          std::lock_guard lock(inflight_mutex_);
          inflight_keys_.erase(key);
        }
        done(status.ok() ? std::move(*result) : absl::StatusOr<CheckoutResult>(status));
      });
}

void OrderingService::Cancel(std::string order_id, Callback<Order> done) {
  auto result = std::make_shared<absl::StatusOr<Order>>(absl::UnknownError("unset"));
  db_.SubmitWrite(
      [this, order_id = std::move(order_id), result](sql::Transaction& tx) -> absl::Status {
        *result = ApplyInput(tx, order_id, SagaInput{InputKind::kCustomerCancel, false, "", "", {}},
                             clock_.NowMs());
        return result->status();
      },
      [result, done = std::move(done)](absl::Status status) {
        done(status.ok() ? std::move(*result) : absl::StatusOr<Order>(status));
      });
}

void OrderingService::Staff(std::string order_id, StaffAction action, Callback<Order> done) {
  const InputKind kind =
      action == StaffAction::kRetry ? InputKind::kStaffRetry : InputKind::kStaffCompensate;
  auto result = std::make_shared<absl::StatusOr<Order>>(absl::UnknownError("unset"));
  db_.SubmitWrite(
      [this, order_id = std::move(order_id), kind, result](sql::Transaction& tx) -> absl::Status {
        *result = ApplyInput(tx, order_id, SagaInput{kind, false, "", "", {}}, clock_.NowMs());
        return result->status();
      },
      [result, done = std::move(done)](absl::Status status) {
        done(status.ok() ? std::move(*result) : absl::StatusOr<Order>(status));
      });
}

absl::StatusOr<Order> OrderingService::GetOrder(const std::string& order_id) {
  std::optional<Order> out;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(out, LoadOrder(tx, order_id));
    return absl::OkStatus();
  }));
  if (!out) return WithErrorCode(absl::NotFoundError("order not found"), "order_not_found");
  return *std::move(out);
}

absl::StatusOr<std::vector<Order>> OrderingService::ListOrders(const OrderQuery& query) {
  std::vector<Order> out;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(out, ordering::ListOrders(tx, query));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::vector<OrderEvent>> OrderingService::Timeline(const std::string& order_id,
                                                                  int64_t after_seq,
                                                                  int64_t limit) {
  std::vector<OrderEvent> out;
  bool found = false;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::optional<Order> order, LoadOrder(tx, order_id, false));
    found = order.has_value();
    if (!found) return absl::OkStatus();
    ASSIGN_OR_RETURN(out, LoadTimeline(tx, order_id, after_seq, limit));
    return absl::OkStatus();
  }));
  if (!found) return WithErrorCode(absl::NotFoundError("order not found"), "order_not_found");
  return out;
}

absl::StatusOr<std::vector<Order>> OrderingService::Stuck(int64_t no_progress_ms, int64_t limit) {
  std::vector<Order> out;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(out, StuckSagas(tx, clock_.NowMs() - no_progress_ms, limit));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<int64_t> OrderingService::UnfinishedSagaCount() {
  int64_t count = 0;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(count, CountUnfinishedSagas(tx));
    return absl::OkStatus();
  }));
  return count;
}

// ---- Bus handlers ------------------------------------------------------------------------

absl::Status OrderingService::HandleSagaMessage(sql::Transaction& tx,
                                                const bus::Envelope& envelope) {
  absl::StatusOr<Json> payload = ParseJsonObject(envelope.payload);
  if (!payload.ok()) return absl::OkStatus();  // malformed: nothing we can act on
  SagaInput input;
  std::string order_id;
  if (envelope.type == kInventoryReplyType) {
    if (envelope.correlation_id.starts_with(kCartCorrelationPrefix)) {
      return HandleCartReply(tx, envelope.correlation_id.substr(kCartCorrelationPrefix.size()),
                             *payload);
    }
    std::optional<InputKind> kind = InventoryReplyKind(payload->value("command", std::string()));
    if (!kind) return absl::OkStatus();
    input.kind = *kind;
    input.ok = payload->value("ok", false);
    input.outcome = payload->value("outcome", std::string());
    input.reservation_id = payload->value("reservation_id", std::string());
    input.short_skus = StringList(*payload, "short_skus");
    for (std::string& sku : StringList(*payload, "unknown_skus")) {
      input.short_skus.push_back(std::move(sku));
    }
    order_id = envelope.correlation_id;
  } else {
    std::optional<InputKind> kind = PaymentEventKind(envelope.type);
    if (!kind) return absl::OkStatus();
    input.kind = *kind;
    input.outcome = payload->value("reason", std::string());
    order_id = payload->value("order_id", std::string());
  }
  if (order_id.empty()) return absl::OkStatus();
  absl::StatusOr<Order> applied = ApplyInput(tx, order_id, input, clock_.NowMs());
  if (applied.ok() || applied.status().code() == absl::StatusCode::kNotFound ||
      applied.status().code() == absl::StatusCode::kFailedPrecondition) {
    return absl::OkStatus();  // not ours / nothing to do
  }
  return applied.status();
}

absl::Status OrderingService::HandleProductChanged(sql::Transaction& tx,
                                                   const bus::Envelope& envelope) {
  absl::StatusOr<Json> payload = ParseJsonObject(envelope.payload);
  if (!payload.ok()) return absl::OkStatus();
  absl::Status status = ApplyProductChanged(tx, *payload);
  return status.code() == absl::StatusCode::kInvalidArgument ? absl::OkStatus() : status;
}

absl::Status OrderingService::HandleCustomerVerified(sql::Transaction& tx,
                                                     const bus::Envelope& envelope) {
  absl::StatusOr<Json> payload = ParseJsonObject(envelope.payload);
  if (!payload.ok()) return absl::OkStatus();
  const auto customer = payload->find("customer_id");
  const auto email = payload->find("email");
  if (customer == payload->end() || email == payload->end() || !customer->is_string() ||
      !email->is_string()) {
    return absl::OkStatus();
  }
  const std::string customer_id = customer->get<std::string>();
  const std::string address = email->get<std::string>();
  if (customer_id.empty() || address.empty() || address.size() > kEmailLengthMax) {
    return absl::OkStatus();
  }
  const int64_t now_ms = clock_.NowMs();
  RETURN_IF_ERROR(RecordVerifiedEmail(tx, address, customer_id, now_ms));
  ASSIGN_OR_RETURN(std::vector<std::string> order_ids,
                   GuestOrdersByEmail(tx, address, kAttachPerEventMax));
  for (const std::string& id : order_ids) {
    ASSIGN_OR_RETURN(std::optional<Order> order, LoadOrder(tx, id, false));
    if (!order || !order->account_id.empty()) continue;
    order->account_id = customer_id;
    RETURN_IF_ERROR(
        AppendTimeline(tx, *order, {TimelineEntry{"attached_to_customer", customer_id}}, now_ms));
    ++order->version;
    order->updated_at_ms = now_ms;
    RETURN_IF_ERROR(UpdateOrder(tx, *order));
    RETURN_IF_ERROR(UpdateOrderAccount(tx, *order));
    Touched(*order);
  }
  ASSIGN_OR_RETURN(std::vector<std::string> cart_ids,
                   GuestCartsByEmail(tx, address, kAttachPerEventMax));
  for (const std::string& id : cart_ids) {
    ASSIGN_OR_RETURN(std::optional<Cart> cart, LoadCart(tx, id));
    if (!cart || !cart->account_id.empty()) continue;
    cart->account_id = customer_id;
    ++cart->version;
    cart->updated_at_ms = now_ms;
    RETURN_IF_ERROR(ordering::UpdateCart(tx, *cart, CartLinesWrite::kUnchanged));
  }
  return absl::OkStatus();
}

// ---- Sweeper -----------------------------------------------------------------------------

absl::StatusOr<int64_t> OrderingService::SweepOnce() {
  const int64_t now_ms = clock_.NowMs();
  std::vector<std::string> due;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(due, DueSagas(tx, now_ms, options_.sweep_batch_max));
    return absl::OkStatus();
  }));
  if (due.empty()) return 0;
  struct Round {
    std::mutex mutex;
    std::condition_variable cv;
    size_t remaining = 0;
    absl::Status first_error;
  };
  auto round = std::make_shared<Round>();
  round->remaining = due.size();
  for (const std::string& id : due) {
    db_.SubmitWrite(
        [this, id](sql::Transaction& tx) -> absl::Status {
          absl::StatusOr<Order> applied =
              ApplyInput(tx, id, SagaInput{InputKind::kTimeout, false, "", "", {}}, clock_.NowMs());
          return applied.status();
        },
        [round](absl::Status status) {
          std::lock_guard lock(round->mutex);
          if (!status.ok() && round->first_error.ok()) round->first_error = status;
          if (--round->remaining == 0) round->cv.notify_all();
        });
  }
  std::unique_lock lock(round->mutex);
  round->cv.wait(lock, [&] { return round->remaining == 0; });
  if (!round->first_error.ok()) return round->first_error;
  return static_cast<int64_t>(due.size());
}

void OrderingService::RunSweeper() {
  std::unique_lock lock(sweep_mutex_);
  while (running_) {
    lock.unlock();
    (void)SweepOnce();  // errors are retried next round; sagas keep their deadlines
    lock.lock();
    sweep_cv_.wait_for(lock, std::chrono::milliseconds(options_.sweep_interval_ms),
                       [&] { return !running_; });
  }
}

// ---- Waiting and watching ----------------------------------------------------------------

absl::Status OrderingService::WaitSettled(const std::string& order_id, absl::Time deadline,
                                          Callback<Order> done) {
  {
    std::lock_guard lock(hub_->mutex);
    if (waiters_.size() >= options_.waiters_max) {
      return WithErrorCode(absl::ResourceExhaustedError("too many waiting requests"),
                           "too_many_waiters");
    }
    Waiter waiter;
    waiter.deadline = deadline;
    waiter.done = std::move(done);
    waiter.id = next_waiter_id_++;
    waiters_.emplace(order_id, std::move(waiter));
    // Check at once: it may already be settled.
    hub_->committed.push_back(TouchedOrder{order_id, OrderChange::kMaybeSettled});
  }
  hub_->cv.notify_all();
  return absl::OkStatus();
}

absl::Status OrderingService::Watch(const std::string& order_id, absl::Time deadline,
                                    std::function<bool(absl::StatusOr<Order>)> on_change,
                                    absl::Duration heartbeat, std::function<bool()> on_heartbeat) {
  {
    std::lock_guard lock(hub_->mutex);
    size_t watching_order = 0;
    auto [begin, end] = waiters_.equal_range(order_id);
    for (auto it = begin; it != end; ++it) watching_order += it->second.watch ? 1 : 0;
    if (waiters_.size() >= options_.waiters_max ||
        watching_order >= options_.watchers_per_order_max) {
      return WithErrorCode(absl::UnavailableError("too many watchers; retry later"),
                           "too_many_watchers");
    }
    Waiter waiter;
    waiter.deadline = deadline;
    waiter.watch = std::move(on_change);
    waiter.id = next_waiter_id_++;
    if (on_heartbeat && heartbeat > absl::ZeroDuration() && heartbeat != absl::InfiniteDuration()) {
      waiter.heartbeat = heartbeat;
      waiter.next_heartbeat = absl::Now() + heartbeat;
      waiter.on_heartbeat = std::move(on_heartbeat);
    }
    waiters_.emplace(order_id, std::move(waiter));
    hub_->committed.push_back(TouchedOrder{order_id, OrderChange::kMaybeSettled});
  }
  hub_->cv.notify_all();
  return absl::OkStatus();
}

void OrderingService::EraseWaiter(const std::string& order_id, uint64_t id) {
  auto [begin, end] = waiters_.equal_range(order_id);
  for (auto it = begin; it != end; ++it) {
    if (it->second.id == id) {
      waiters_.erase(it);
      return;
    }
  }
}

void OrderingService::Notify(const std::vector<TouchedOrder>& changes, absl::Time now,
                             bool stopping) {
  // Orders that someone waits for, read once each: every change for a watcher, only a change
  // that may have settled the order for a one-shot waiter.
  std::set<std::string> wanted;
  std::vector<std::pair<std::string, Waiter>> expired;
  std::vector<std::tuple<std::string, uint64_t, std::function<bool()>>> heartbeats;
  {
    std::lock_guard lock(hub_->mutex);
    for (const TouchedOrder& touched : changes) {
      auto [begin, end] = waiters_.equal_range(touched.id);
      for (auto it = begin; it != end; ++it) {
        if (touched.change == OrderChange::kMaybeSettled || it->second.watch) {
          wanted.insert(touched.id);
          break;
        }
      }
    }
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (stopping || it->second.deadline <= now) {
        expired.emplace_back(it->first, std::move(it->second));
        it = waiters_.erase(it);
        continue;
      }
      if (it->second.on_heartbeat && it->second.next_heartbeat <= now) {
        it->second.next_heartbeat = now + it->second.heartbeat;
        heartbeats.emplace_back(it->first, it->second.id, it->second.on_heartbeat);
      }
      ++it;
    }
  }
  for (auto& [order_id, waiter_id, beat] : heartbeats) {
    if (!beat()) {
      std::lock_guard lock(hub_->mutex);
      EraseWaiter(order_id, waiter_id);
    }
  }
  for (auto& [id, waiter] : expired) {
    absl::StatusOr<Order> order = GetOrder(id);
    if (waiter.done) {
      waiter.done(std::move(order));
    } else if (waiter.watch) {
      waiter.watch(absl::DeadlineExceededError("watch ended"));
    }
  }
  for (const std::string& id : wanted) {
    absl::StatusOr<Order> order = GetOrder(id);
    std::vector<Waiter> fire;
    {
      std::lock_guard lock(hub_->mutex);
      auto [begin, end] = waiters_.equal_range(id);
      for (auto it = begin; it != end;) {
        const bool settled = order.ok() && IsSettled(order->state());
        if (it->second.watch || settled || !order.ok()) {
          fire.push_back(it->second);
          if (it->second.done) {
            it = waiters_.erase(it);
            continue;
          }
        }
        ++it;
      }
    }
    for (Waiter& waiter : fire) {
      if (waiter.done) {
        waiter.done(order);
      } else if (waiter.watch && !waiter.watch(order)) {
        // The watcher is finished (e.g. the order settled or the client left).
        std::lock_guard lock(hub_->mutex);
        EraseWaiter(id, waiter.id);
      }
    }
  }
}

void OrderingService::RunNotifier() {
  constexpr absl::Duration kTick = absl::Milliseconds(50);
  std::unique_lock lock(hub_->mutex);
  while (true) {
    hub_->cv.wait_for(lock, std::chrono::milliseconds(absl::ToInt64Milliseconds(kTick)),
                      [&] { return hub_->stopping || !hub_->committed.empty(); });
    const bool stopping = hub_->stopping;
    std::vector<TouchedOrder> changes;
    changes.swap(hub_->committed);
    lock.unlock();
    Notify(changes, absl::Now(), stopping);  // waits are real time, like the HTTP deadline
    lock.lock();
    if (stopping) return;
  }
}

}  // namespace emporium::ordering
