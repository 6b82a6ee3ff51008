#include "ordering/store.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "common/errors.h"
#include "common/exact_json_reader.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "fmt/format.h"

namespace emporium::ordering {
namespace {

using sql::Row;
using sql::Value;

constexpr std::string_view kCartColumns =
    "id, customer_id, currency, region, email, shipping_address, status, lines_version, "
    "reservation_id, reservation_status, reservation_expires_at_ms, reservation_short_skus, "
    "order_id, version, created_at_ms, updated_at_ms, account_id";
// Columns in the order of CartValues, then the guest e-mail index's three (see kUpdateCart).
constexpr std::string_view kInsertCart =
    "INSERT INTO carts (id, customer_id, currency, region, shipping_address, lines_version, "
    "reservation_id, reservation_status, reservation_expires_at_ms, reservation_short_skus, "
    "order_id, version, created_at_ms, updated_at_ms, email, status, account_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
// The columns of the guest e-mail index (email, status, account_id) are written by a second
// statement, and only when one of them differs from the row: SQLite rewrites a row's entry in
// every index whose columns an UPDATE assigns, equal or not, and that index's entries sit at
// random places (e-mail order), so assigning them on every cart edit cost a page per edit.
constexpr std::string_view kUpdateCart =
    "UPDATE carts SET customer_id = ?, currency = ?, region = ?, shipping_address = ?, "
    "lines_version = ?, reservation_id = ?, reservation_status = ?, "
    "reservation_expires_at_ms = ?, reservation_short_skus = ?, order_id = ?, version = ?, "
    "created_at_ms = ?, updated_at_ms = ? WHERE id = ?";
constexpr std::string_view kUpdateCartIndexed =
    "UPDATE carts SET email = ?1, status = ?2, account_id = ?3 WHERE id = ?4 "
    "AND (email IS NOT ?1 OR status IS NOT ?2 OR account_id IS NOT ?3)";
constexpr std::string_view kDeleteCartLines = "DELETE FROM cart_lines WHERE cart_id = ?";
constexpr std::string_view kInsertCartLine =
    "INSERT INTO cart_lines (cart_id, position, sku, quantity) VALUES (?, ?, ?, ?)";
constexpr std::string_view kSelectCartLines =
    "SELECT sku, quantity FROM cart_lines WHERE cart_id = ? ORDER BY position";

constexpr std::string_view kOrderColumns =
    "id, cart_id, customer_id, email, state, reason, currency, region, payment_method, "
    "shipping_address, subtotal_minor, shipping_minor, tax_minor, total_minor, saga, saga_step, "
    "saga_deadline_ms, event_seq, version, created_at_ms, updated_at_ms, account_id";
constexpr std::string_view kInsertOrder =
    "INSERT INTO orders (id, cart_id, customer_id, email, state, reason, currency, region, "
    "payment_method, shipping_address, subtotal_minor, shipping_minor, tax_minor, total_minor, "
    "saga, saga_step, saga_deadline_ms, event_seq, version, created_at_ms, updated_at_ms, "
    "account_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr std::string_view kUpdateOrder =
    "UPDATE orders SET state = ?, reason = ?, saga = ?, saga_step = ?, saga_deadline_ms = ?, "
    "event_seq = ?, version = ?, updated_at_ms = ? WHERE id = ?";
// account_id alone (see UpdateOrder: assigning it re-indexes the row in the guest e-mail index).
constexpr std::string_view kUpdateOrderAccount = "UPDATE orders SET account_id = ? WHERE id = ?";
// Guest orders and open guest carts with an e-mail, case-insensitively (partial indexes).
constexpr std::string_view kSelectGuestOrdersByEmail =
    "SELECT id FROM orders WHERE account_id = '' AND lower(email) = lower(?) ORDER BY id LIMIT ?";
constexpr std::string_view kSelectGuestCartsByEmail =
    "SELECT id FROM carts WHERE account_id = '' AND status = 'open' AND lower(email) = lower(?) "
    "ORDER BY id LIMIT ?";
constexpr std::string_view kUpsertVerifiedEmail =
    "INSERT INTO verified_emails (email, customer_id, verified_at_ms) VALUES (lower(?), ?, ?) "
    "ON CONFLICT (email) DO UPDATE SET customer_id = excluded.customer_id, "
    "verified_at_ms = excluded.verified_at_ms";
constexpr std::string_view kSelectVerifiedEmail =
    "SELECT customer_id FROM verified_emails WHERE email = lower(?)";
constexpr std::string_view kInsertOrderLine =
    "INSERT INTO order_lines (order_id, position, sku, title, quantity, unit_price_minor, "
    "line_total_minor) VALUES (?, ?, ?, ?, ?, ?, ?)";
constexpr std::string_view kSelectOrderLines =
    "SELECT sku, title, quantity, unit_price_minor, line_total_minor FROM order_lines "
    "WHERE order_id = ? ORDER BY position";
constexpr std::string_view kInsertEvent =
    "INSERT INTO order_events (order_id, seq, at_ms, kind, detail, state) "
    "VALUES (?, ?, ?, ?, ?, ?)";
constexpr std::string_view kSelectEvents =
    "SELECT seq, at_ms, kind, detail, state FROM order_events WHERE order_id = ? AND seq > ? "
    "ORDER BY seq LIMIT ?";
constexpr std::string_view kSelectDue =
    "SELECT id FROM orders WHERE saga_step <> 'done' AND saga_deadline_ms <= ? "
    "ORDER BY saga_deadline_ms LIMIT ?";
constexpr std::string_view kCountUnfinished =
    "SELECT COUNT(*) FROM orders WHERE saga_step <> 'done'";

constexpr std::string_view kSelectKey =
    "SELECT request_hash, order_id, response FROM idempotency_keys "
    "WHERE scope = ? AND idempotency_key = ?";
constexpr std::string_view kInsertKey =
    "INSERT INTO idempotency_keys (scope, idempotency_key, request_hash, order_id, "
    "created_at_ms, response) VALUES (?, ?, ?, ?, ?, ?)";

constexpr std::string_view kSelectProductVersion =
    "SELECT version FROM price_products WHERE product_id = ?";
constexpr std::string_view kUpsertProductVersion =
    "INSERT INTO price_products (product_id, version) VALUES (?, ?) "
    "ON CONFLICT (product_id) DO UPDATE SET version = excluded.version";
constexpr std::string_view kDeleteProductPrices = "DELETE FROM prices WHERE product_id = ?";
constexpr std::string_view kUpsertPrice =
    "INSERT INTO prices (sku, product_id, title, active, prices) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sku) DO UPDATE SET product_id = excluded.product_id, title = excluded.title, "
    "active = excluded.active, prices = excluded.prices";

constexpr size_t kProductVariantsMax = 1000;

std::string StatusText(CartStatus status) { return std::string(CartStatusName(status)); }

CartStatus ParseCartStatus(std::string_view text) {
  if (text == "checked_out") return CartStatus::kCheckedOut;
  if (text == "abandoned") return CartStatus::kAbandoned;
  return CartStatus::kOpen;
}

CartReservation ParseCartReservation(std::string_view text) {
  for (CartReservation r :
       {CartReservation::kNone, CartReservation::kPending, CartReservation::kReserved,
        CartReservation::kFailed, CartReservation::kReleased}) {
    if (CartReservationName(r) == text) return r;
  }
  return CartReservation::kNone;
}

std::string JoinComma(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}

std::vector<std::string> SplitComma(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

Json ParseStoredJson(const std::string& text) {
  absl::StatusOr<Json> json = ParseJson(text);
  return json.ok() ? *json : Json::object();
}

// The cart row's columns outside the guest e-mail index, in kUpdateCart's order.
std::vector<Value> CartValues(const Cart& cart) {
  return {cart.customer_id,
          cart.currency,
          cart.region,
          DumpJson(cart.shipping_address),
          cart.lines_version,
          cart.reservation_id,
          std::string(CartReservationName(cart.reservation)),
          cart.reservation_expires_at_ms,
          JoinComma(cart.reservation_short_skus),
          cart.order_id,
          cart.version,
          cart.created_at_ms,
          cart.updated_at_ms};
}

absl::Status WriteCartLines(sql::Transaction& tx, const Cart& cart) {
  RETURN_IF_ERROR(tx.Execute(kDeleteCartLines, {cart.id}).status());
  int64_t position = 0;
  for (const CartLine& line : cart.lines) {
    RETURN_IF_ERROR(
        tx.Execute(kInsertCartLine, {cart.id, position++, line.sku, line.quantity}).status());
  }
  return absl::OkStatus();
}

// Reads exactly the text SagaJsonText writes -- every member in its order, no whitespace,
// ASCII strings without escapes, non-negative integers -- and gives up (nullopt) at the first
// byte that differs, leaving the text to the DOM. Whatever it accepts, ParseJson + SagaFromJson
// read as the same SagaState. LoadOrder runs on every saga step and every settled-order read.
class SagaTextReader {
 public:
  explicit SagaTextReader(std::string_view text) : in_(text) {}

  std::optional<SagaState> Read() {
    SagaState saga;
    int64_t attempt = 0;
    std::string_view state;
    std::string_view step;
    if (!in_.Literal("{\"allocated\":") || !in_.Bool(saga.allocated) ||
        !in_.Literal(",\"attempt\":") || !in_.Integer(attempt, kAttemptDigitsMax) ||
        !in_.Literal(",\"authorization_requested\":") || !in_.Bool(saga.authorization_requested) ||
        !in_.Literal(",\"authorized\":") || !in_.Bool(saga.authorized) ||
        !in_.Literal(",\"captured\":") || !in_.Bool(saga.captured) ||
        !in_.Literal(",\"compensations\":[")) {
      return std::nullopt;
    }
    saga.attempt = static_cast<int>(attempt);
    for (bool first = true; !in_.Literal("]"); first = false) {
      std::string_view name;
      if ((!first && !in_.Literal(",")) || !in_.PlainString(name)) return std::nullopt;
      std::optional<SagaStep> compensation = ParseSagaStep(name);
      if (!compensation) return std::nullopt;
      saga.compensations.push_back(*compensation);
    }
    std::string_view own_reservation_id, reason, reservation_id;
    if (!in_.Literal(",\"deadline_ms\":") || !in_.Integer(saga.deadline_ms, kInt64DigitsMax) ||
        !in_.Literal(",\"order_state\":") || !in_.PlainString(state) ||
        !in_.Literal(",\"own_reservation_id\":") || !in_.PlainString(own_reservation_id) ||
        !in_.Literal(",\"reason\":") || !in_.PlainString(reason) ||
        !in_.Literal(",\"reservation_id\":") || !in_.PlainString(reservation_id) ||
        !in_.Literal(",\"short_skus\":[")) {
      return std::nullopt;
    }
    for (bool first = true; !in_.Literal("]"); first = false) {
      std::string_view sku;
      if ((!first && !in_.Literal(",")) || !in_.PlainString(sku)) return std::nullopt;
      saga.short_skus.emplace_back(sku);
    }
    if (!in_.Literal(",\"step\":") || !in_.PlainString(step) ||
        !in_.Literal(",\"updated_at_ms\":") || !in_.Integer(saga.updated_at_ms, kInt64DigitsMax) ||
        !in_.Literal("}") || !in_.AtEnd()) {
      return std::nullopt;
    }
    std::optional<OrderState> order_state = ParseOrderState(state);
    std::optional<SagaStep> saga_step = ParseSagaStep(step);
    if (!order_state || !saga_step) return std::nullopt;  // the DOM path names the problem
    saga.order_state = *order_state;
    saga.step = *saga_step;
    saga.own_reservation_id = std::string(own_reservation_id);
    saga.reason = std::string(reason);
    saga.reservation_id = std::string(reservation_id);
    return saga;
  }

 private:
  static constexpr size_t kAttemptDigitsMax = 9;  // fits an int as SagaFromJson reads it
  static constexpr size_t kInt64DigitsMax = 18;

  ExactJsonReader in_;
};

absl::StatusOr<Order> OrderFromRow(const Row& row) {
  Order order;
  order.id = row.Text(0);
  order.cart_id = row.Text(1);
  order.customer_id = row.Text(2);
  order.email = row.Text(3);
  order.currency = row.Text(6);
  order.region = row.Text(7);
  order.payment_method = row.Text(8);
  order.shipping_address = ParseStoredJson(row.Text(9));
  order.subtotal_minor = row.Int(10);
  order.shipping_minor = row.Int(11);
  order.tax_minor = row.Int(12);
  order.total_minor = row.Int(13);
  ASSIGN_OR_RETURN(order.saga, SagaFromText(row.Text(14)));
  order.event_seq = row.Int(17);
  order.version = row.Int(18);
  order.created_at_ms = row.Int(19);
  order.updated_at_ms = row.Int(20);
  order.account_id = row.Text(21);
  return order;
}

absl::Status LoadOrderLines(sql::Transaction& tx, Order& order) {
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kSelectOrderLines, {order.id}));
  order.lines.clear();
  for (const Row& row : rows.rows) {
    ASSIGN_OR_RETURN(Money unit, Money::FromMinor(row.Int(3), order.currency));
    ASSIGN_OR_RETURN(Money total, Money::FromMinor(row.Int(4), order.currency));
    order.lines.push_back(PricedLine{row.Text(0), row.Text(1), row.Int(2), unit, total});
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view CartStatusName(CartStatus status) {
  switch (status) {
    case CartStatus::kOpen:
      return "open";
    case CartStatus::kCheckedOut:
      return "checked_out";
    case CartStatus::kAbandoned:
      return "abandoned";
  }
  std::abort();
}

std::string_view CartReservationName(CartReservation status) {
  switch (status) {
    case CartReservation::kNone:
      return "none";
    case CartReservation::kPending:
      return "pending";
    case CartReservation::kReserved:
      return "reserved";
    case CartReservation::kFailed:
      return "failed";
    case CartReservation::kReleased:
      return "released";
  }
  std::abort();
}

// ---- Saga JSON ----

std::string SagaJsonText(const SagaState& saga) {
  // Keys in the order nlohmann's std::map keeps them (byte order); store_test compares the
  // output with the DOM's (DumpJson of the same members).
  std::string out = fmt::format(
      "{{\"allocated\":{},\"attempt\":{},\"authorization_requested\":{},\"authorized\":{},"
      "\"captured\":{},\"compensations\":[",
      saga.allocated, saga.attempt, saga.authorization_requested, saga.authorized, saga.captured);
  for (size_t i = 0; i < saga.compensations.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(out, SagaStepName(saga.compensations[i]));
  }
  out += fmt::format("],\"deadline_ms\":{},\"order_state\":", saga.deadline_ms);
  AppendJsonString(out, OrderStateName(saga.order_state));
  out += ",\"own_reservation_id\":";
  AppendJsonString(out, saga.own_reservation_id);
  out += ",\"reason\":";
  AppendJsonString(out, saga.reason);
  out += ",\"reservation_id\":";
  AppendJsonString(out, saga.reservation_id);
  out += ",\"short_skus\":";
  AppendJsonStringArray(out, saga.short_skus);
  out += ",\"step\":";
  AppendJsonString(out, SagaStepName(saga.step));
  out += fmt::format(",\"updated_at_ms\":{}}}", saga.updated_at_ms);
  return out;
}

absl::StatusOr<SagaState> SagaFromJson(const Json& json) {
  if (!json.is_object()) return absl::DataLossError("stored saga is not an object");
  try {
    SagaState saga;
    std::optional<OrderState> state = ParseOrderState(json.at("order_state").get<std::string>());
    std::optional<SagaStep> step = ParseSagaStep(json.at("step").get<std::string>());
    if (!state || !step) return absl::DataLossError("stored saga has an unknown state or step");
    saga.order_state = *state;
    saga.step = *step;
    saga.attempt = json.at("attempt").get<int>();
    saga.deadline_ms = json.at("deadline_ms").get<int64_t>();
    saga.updated_at_ms = json.value("updated_at_ms", int64_t{0});
    saga.reservation_id = json.at("reservation_id").get<std::string>();
    saga.own_reservation_id = json.at("own_reservation_id").get<std::string>();
    saga.authorization_requested = json.at("authorization_requested").get<bool>();
    saga.authorized = json.at("authorized").get<bool>();
    saga.captured = json.at("captured").get<bool>();
    saga.allocated = json.at("allocated").get<bool>();
    saga.reason = json.at("reason").get<std::string>();
    saga.short_skus = json.at("short_skus").get<std::vector<std::string>>();
    for (const Json& item : json.at("compensations")) {
      std::optional<SagaStep> compensation = ParseSagaStep(item.get<std::string>());
      if (!compensation) return absl::DataLossError("stored saga has an unknown compensation");
      saga.compensations.push_back(*compensation);
    }
    return saga;
  } catch (const Json::exception& error) {
    return absl::DataLossError(fmt::format("stored saga is malformed: {}", error.what()));
  }
}

absl::StatusOr<SagaState> SagaFromText(std::string_view text) {
  if (std::optional<SagaState> saga = SagaTextReader(text).Read()) return *std::move(saga);
  ASSIGN_OR_RETURN(Json json, ParseJson(text));
  return SagaFromJson(json);
}

// ---- Carts ----

absl::Status InsertCart(sql::Transaction& tx, const Cart& cart) {
  std::vector<Value> values = {cart.id};
  for (Value& value : CartValues(cart)) values.push_back(std::move(value));
  values.push_back(cart.email);
  values.push_back(StatusText(cart.status));
  values.push_back(cart.account_id);
  RETURN_IF_ERROR(tx.Execute(kInsertCart, values).status());
  return WriteCartLines(tx, cart);
}

absl::Status UpdateCart(sql::Transaction& tx, const Cart& cart, CartLinesWrite lines) {
  std::vector<Value> values = CartValues(cart);
  values.push_back(cart.id);
  ASSIGN_OR_RETURN(int64_t changed, tx.Execute(kUpdateCart, values));
  if (changed != 1) return absl::NotFoundError("cart not found");
  RETURN_IF_ERROR(tx.Execute(kUpdateCartIndexed,
                             {cart.email, StatusText(cart.status), cart.account_id, cart.id})
                      .status());
  switch (lines) {
    case CartLinesWrite::kReplace:
      return WriteCartLines(tx, cart);
    case CartLinesWrite::kUnchanged:
      return absl::OkStatus();
  }
  std::abort();
}

absl::StatusOr<std::optional<Cart>> LoadCart(sql::Transaction& tx, const std::string& id) {
  ASSIGN_OR_RETURN(sql::ResultSet rows,
                   tx.Query(fmt::format("SELECT {} FROM carts WHERE id = ?", kCartColumns), {id}));
  if (rows.empty()) return std::nullopt;
  const Row& row = rows.rows.front();
  Cart cart;
  cart.id = row.Text(0);
  cart.customer_id = row.Text(1);
  cart.currency = row.Text(2);
  cart.region = row.Text(3);
  cart.email = row.Text(4);
  cart.shipping_address = ParseStoredJson(row.Text(5));
  cart.status = ParseCartStatus(row.Text(6));
  cart.lines_version = row.Int(7);
  cart.reservation_id = row.Text(8);
  cart.reservation = ParseCartReservation(row.Text(9));
  cart.reservation_expires_at_ms = row.Int(10);
  cart.reservation_short_skus = SplitComma(row.Text(11));
  cart.order_id = row.Text(12);
  cart.version = row.Int(13);
  cart.created_at_ms = row.Int(14);
  cart.updated_at_ms = row.Int(15);
  cart.account_id = row.Text(16);
  ASSIGN_OR_RETURN(sql::ResultSet lines, tx.Query(kSelectCartLines, {id}));
  for (const Row& line : lines.rows) cart.lines.push_back(CartLine{line.Text(0), line.Int(1)});
  return cart;
}

// ---- Orders ----

absl::Status InsertOrder(sql::Transaction& tx, const Order& order) {
  RETURN_IF_ERROR(tx.Execute(kInsertOrder, {order.id,
                                            order.cart_id,
                                            order.customer_id,
                                            order.email,
                                            std::string(OrderStateName(order.state())),
                                            order.saga.reason,
                                            order.currency,
                                            order.region,
                                            order.payment_method,
                                            DumpJson(order.shipping_address),
                                            order.subtotal_minor,
                                            order.shipping_minor,
                                            order.tax_minor,
                                            order.total_minor,
                                            SagaJsonText(order.saga),
                                            std::string(SagaStepName(order.saga.step)),
                                            order.saga.deadline_ms,
                                            order.event_seq,
                                            order.version,
                                            order.created_at_ms,
                                            order.updated_at_ms,
                                            order.account_id})
                      .status());
  int64_t position = 0;
  for (const PricedLine& line : order.lines) {
    RETURN_IF_ERROR(tx.Execute(kInsertOrderLine,
                               {order.id, position++, line.sku, line.title, line.quantity,
                                line.unit_price.amount_minor(), line.line_total.amount_minor()})
                        .status());
  }
  return absl::OkStatus();
}

absl::Status UpdateOrder(sql::Transaction& tx, const Order& order) {
  ASSIGN_OR_RETURN(
      int64_t changed,
      tx.Execute(kUpdateOrder, {std::string(OrderStateName(order.state())), order.saga.reason,
                                SagaJsonText(order.saga),
                                std::string(SagaStepName(order.saga.step)), order.saga.deadline_ms,
                                order.event_seq, order.version, order.updated_at_ms, order.id}));
  if (changed != 1) return absl::NotFoundError("order not found");
  return absl::OkStatus();
}

absl::Status UpdateOrderAccount(sql::Transaction& tx, const Order& order) {
  ASSIGN_OR_RETURN(int64_t changed, tx.Execute(kUpdateOrderAccount, {order.account_id, order.id}));
  if (changed != 1) return absl::NotFoundError("order not found");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Order>> LoadOrder(sql::Transaction& tx, const std::string& id,
                                               bool with_lines) {
  ASSIGN_OR_RETURN(
      sql::ResultSet rows,
      tx.Query(fmt::format("SELECT {} FROM orders WHERE id = ?", kOrderColumns), {id}));
  if (rows.empty()) return std::nullopt;
  ASSIGN_OR_RETURN(Order order, OrderFromRow(rows.rows.front()));
  if (with_lines) RETURN_IF_ERROR(LoadOrderLines(tx, order));
  return order;
}

absl::Status AppendTimeline(sql::Transaction& tx, Order& order,
                            const std::vector<TimelineEntry>& entries, int64_t now_ms) {
  const std::string state(OrderStateName(order.state()));
  for (const TimelineEntry& entry : entries) {
    ++order.event_seq;
    RETURN_IF_ERROR(tx.Execute(kInsertEvent,
                               {order.id, order.event_seq, now_ms, entry.kind, entry.detail, state})
                        .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OrderEvent>> LoadTimeline(sql::Transaction& tx,
                                                     const std::string& order_id, int64_t after_seq,
                                                     int64_t limit) {
  ASSIGN_OR_RETURN(
      sql::ResultSet rows,
      tx.Query(kSelectEvents, {order_id, after_seq, std::clamp<int64_t>(limit, 1, 10'000)}));
  std::vector<OrderEvent> events;
  for (const Row& row : rows.rows) {
    events.push_back(OrderEvent{row.Int(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4)});
  }
  return events;
}

namespace {
absl::StatusOr<std::vector<std::string>> SelectIds(sql::Transaction& tx, std::string_view sql,
                                                   const std::string& email, int64_t limit) {
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(sql, {email, std::max<int64_t>(limit, 1)}));
  std::vector<std::string> ids;
  for (const Row& row : rows.rows) ids.push_back(row.Text(0));
  return ids;
}
}  // namespace

absl::StatusOr<std::vector<std::string>> GuestOrdersByEmail(sql::Transaction& tx,
                                                            const std::string& email,
                                                            int64_t limit) {
  return SelectIds(tx, kSelectGuestOrdersByEmail, email, limit);
}

absl::Status RecordVerifiedEmail(sql::Transaction& tx, const std::string& email,
                                 const std::string& customer_id, int64_t now_ms) {
  return tx.Execute(kUpsertVerifiedEmail, {email, customer_id, now_ms}).status();
}

absl::StatusOr<std::optional<std::string>> VerifiedCustomerByEmail(sql::Transaction& tx,
                                                                   const std::string& email) {
  ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(kSelectVerifiedEmail, {email}));
  if (result.rows.empty()) return std::optional<std::string>();
  return std::optional<std::string>(result.rows.front().Text(0));
}

absl::StatusOr<std::vector<std::string>> GuestCartsByEmail(sql::Transaction& tx,
                                                           const std::string& email,
                                                           int64_t limit) {
  return SelectIds(tx, kSelectGuestCartsByEmail, email, limit);
}

absl::StatusOr<std::vector<Order>> ListOrders(sql::Transaction& tx, const OrderQuery& query) {
  std::string sql = fmt::format("SELECT {} FROM orders WHERE id > ?", kOrderColumns);
  std::vector<Value> params = {query.after_id};
  if (query.account_id) {
    sql += " AND account_id = ?";
    params.push_back(*query.account_id);
  }
  if (query.state) {
    sql += " AND state = ?";
    params.push_back(std::string(OrderStateName(*query.state)));
  }
  sql += " ORDER BY id LIMIT ?";
  params.push_back(std::clamp<int64_t>(query.limit, 1, kListPageMax));
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(sql, params));
  std::vector<Order> orders;
  for (const Row& row : rows.rows) {
    ASSIGN_OR_RETURN(Order order, OrderFromRow(row));
    RETURN_IF_ERROR(LoadOrderLines(tx, order));
    orders.push_back(std::move(order));
  }
  return orders;
}

std::vector<IndexedQuery> QueriesThatMustUseAnIndex() {
  return {
      {kSelectDue, {int64_t{0}, int64_t{1}}, "orders_running_by_deadline"},
      {kCountUnfinished, {}, "orders_running_by_deadline"},
      {kSelectGuestOrdersByEmail,
       {std::string("guest@example.com"), int64_t{1}},
       "orders_guest_by_email"},
      {kSelectGuestCartsByEmail,
       {std::string("guest@example.com"), int64_t{1}},
       "carts_guest_by_email"},
  };
}

absl::StatusOr<std::vector<std::string>> DueSagas(sql::Transaction& tx, int64_t now_ms,
                                                  int64_t limit) {
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kSelectDue, {now_ms, limit}));
  std::vector<std::string> ids;
  for (const Row& row : rows.rows) ids.push_back(row.Text(0));
  return ids;
}

absl::StatusOr<std::vector<Order>> StuckSagas(sql::Transaction& tx, int64_t before_ms,
                                              int64_t limit) {
  ASSIGN_OR_RETURN(
      sql::ResultSet rows,
      tx.Query(fmt::format("SELECT {} FROM orders WHERE saga_step <> 'done' AND updated_at_ms < ? "
                           "ORDER BY updated_at_ms LIMIT ?",
                           kOrderColumns),
               {before_ms, std::clamp<int64_t>(limit, 1, kListPageMax)}));
  std::vector<Order> orders;
  for (const Row& row : rows.rows) {
    ASSIGN_OR_RETURN(Order order, OrderFromRow(row));
    orders.push_back(std::move(order));
  }
  return orders;
}

absl::StatusOr<int64_t> CountUnfinishedSagas(sql::Transaction& tx) {
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kCountUnfinished));
  return rows.rows.front().Int(0);
}

// ---- Idempotency keys ----

absl::StatusOr<std::optional<IdempotencyRecord>> FindIdempotencyKey(sql::Transaction& tx,
                                                                    const std::string& scope,
                                                                    const std::string& key) {
  ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kSelectKey, {scope, key}));
  if (rows.empty()) return std::nullopt;
  const Row& row = rows.rows.front();
  return IdempotencyRecord{row.Text(0), row.Text(1), row.Text(2)};
}

absl::Status InsertIdempotencyKey(sql::Transaction& tx, const std::string& scope,
                                  const std::string& key, const IdempotencyRecord& record,
                                  int64_t now_ms) {
  return tx
      .Execute(kInsertKey,
               {scope, key, record.request_hash, record.order_id, now_ms, record.response})
      .status();
}

// ---- Price read model ----

absl::Status ApplyProductChanged(sql::Transaction& tx, const Json& product) {
  if (!product.is_object() || !product.contains("id") || !product["id"].is_string() ||
      !product.contains("variants") || !product["variants"].is_array() ||
      product["variants"].size() > kProductVariantsMax) {
    return absl::InvalidArgumentError("product_changed payload is not a product");
  }
  const std::string product_id = product["id"].get<std::string>();
  const int64_t version = product.contains("version") && product["version"].is_number_integer()
                              ? product["version"].get<int64_t>()
                              : 0;
  ASSIGN_OR_RETURN(sql::ResultSet stored, tx.Query(kSelectProductVersion, {product_id}));
  if (!stored.empty() && stored.rows.front().Int(0) >= version) return absl::OkStatus();
  RETURN_IF_ERROR(tx.Execute(kUpsertProductVersion, {product_id, version}).status());
  RETURN_IF_ERROR(tx.Execute(kDeleteProductPrices, {product_id}).status());
  const bool active = product.value("status", std::string()) == "active";
  const std::string title = product.value("title", std::string());
  for (const Json& variant : product["variants"]) {
    if (!variant.is_object() || !variant.contains("sku") || !variant["sku"].is_string()) continue;
    Json prices = Json::object();
    if (auto it = variant.find("prices"); it != variant.end() && it->is_object()) {
      for (const auto& [code, amount] : it->items()) {
        if (!amount.is_string()) continue;
        absl::StatusOr<Money> money = Money::Parse(amount.get<std::string>(), code);
        if (money.ok() && !money->is_negative()) prices[code] = money->amount_minor();
      }
    }
    RETURN_IF_ERROR(tx.Execute(kUpsertPrice, {variant["sku"].get<std::string>(), product_id, title,
                                              int64_t{active ? 1 : 0}, DumpJson(prices)})
                        .status());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, PriceEntry>> FindPrices(sql::Transaction& tx,
                                                             const std::vector<std::string>& skus) {
  std::map<std::string, PriceEntry> out;
  if (skus.empty()) return out;
  std::string placeholders;
  std::vector<Value> params;
  for (const std::string& sku : skus) {
    placeholders += placeholders.empty() ? "?" : ", ?";
    params.push_back(sku);
  }
  ASSIGN_OR_RETURN(
      sql::ResultSet rows,
      tx.Query(fmt::format("SELECT sku, product_id, title, active, prices FROM prices WHERE sku "
                           "IN ({})",
                           placeholders),
               params));
  for (const Row& row : rows.rows) {
    PriceEntry entry{row.Text(0), row.Text(1), row.Text(2), row.Int(3) != 0, {}};
    Json prices = ParseStoredJson(row.Text(4));
    for (const auto& [code, amount] : prices.items()) {
      if (amount.is_number_integer()) entry.prices_minor[code] = amount.get<int64_t>();
    }
    out.emplace(entry.sku, std::move(entry));
  }
  return out;
}

}  // namespace emporium::ordering
