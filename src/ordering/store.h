// Ordering's store: carts, orders (with their price snapshot and saga state), the saga
// timeline, idempotency keys (checkout, cart edits) and the price read model, behind functions that
// run inside the caller's transaction. SQL lives here as named constants; the schema is in
// migrations/ (component "ordering").
//
// Thread-safety: the functions use only the Transaction they are given (see sql::Database).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"
#include "ordering/model.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::ordering {

// Embedded migrations (generated).
std::vector<sql::Migration> OrderingMigrations();

inline constexpr int64_t kListPageMax = 200;

enum class CartStatus { kOpen, kCheckedOut, kAbandoned };
std::string_view CartStatusName(CartStatus status);

// The cart's own inventory reservation ("reserved for you until ...").
enum class CartReservation { kNone, kPending, kReserved, kFailed, kReleased };
std::string_view CartReservationName(CartReservation status);

struct Cart {
  std::string id;
  std::string customer_id;  // "" for a guest cart (its id is the capability)
  // The customer the cart's order will be listed under: customer_id for an owned cart; "" for a
  // guest cart until accounts.customer_verified attaches it by e-mail (access stays as it was).
  std::string account_id;
  std::string currency;
  std::string region;
  std::string email;
  Json shipping_address = Json::object();
  CartStatus status = CartStatus::kOpen;
  std::vector<CartLine> lines;
  int64_t lines_version = 0;
  std::string reservation_id;
  CartReservation reservation = CartReservation::kNone;
  int64_t reservation_expires_at_ms = 0;
  std::vector<std::string> reservation_short_skus;
  std::string order_id;
  int64_t version = 1;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

struct Order {
  std::string id;
  std::string cart_id;
  std::string customer_id;  // the payer: the customer, or the guest owner ("guest", "guest-...")
  // The customer the order is listed under (GET /api/v1/orders): the signed-in customer who
  // placed it, the account of an attached cart, or "" for a guest order until
  // accounts.customer_verified attaches it by e-mail.
  std::string account_id;
  std::string email;
  std::string currency;
  std::string region;
  std::string payment_method;
  Json shipping_address = Json::object();
  int64_t subtotal_minor = 0;
  int64_t shipping_minor = 0;
  int64_t tax_minor = 0;
  int64_t total_minor = 0;
  std::vector<PricedLine> lines;  // loaded by LoadOrder, written by InsertOrder
  SagaState saga;
  int64_t event_seq = 0;  // last timeline seq
  int64_t version = 1;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  OrderState state() const { return saga.order_state; }
};

struct OrderEvent {
  int64_t seq = 0;
  int64_t at_ms = 0;
  std::string kind;
  std::string detail;
  std::string state;  // the order state after the entry
};

// One SKU in the price read model.
struct PriceEntry {
  std::string sku;
  std::string product_id;
  std::string title;
  bool active = false;
  std::map<std::string, int64_t> prices_minor;  // currency -> amount
};

// ---- Saga (de)serialization: the saga column is JSON. ----
// The saga as a JSON object (members in nlohmann's std::map order), written without building a
// DOM: the saga column is rewritten by every saga step, so this runs several times per order
// on the writer thread.
std::string SagaJsonText(const SagaState& saga);
absl::StatusOr<SagaState> SagaFromJson(const Json& json);
// The saga column read back: ParseJson + SagaFromJson, with text exactly as SagaJsonText writes
// it (ASCII) read without the DOM. Same result as the DOM for every input.
absl::StatusOr<SagaState> SagaFromText(std::string_view text);

// ---- Carts ----
absl::Status InsertCart(sql::Transaction& tx, const Cart& cart);
// Whether UpdateCart rewrites the cart's lines: only an edit of the lines needs it; a
// reservation reply, a checkout or an attachment changes the cart row alone.
enum class CartLinesWrite { kReplace, kUnchanged };
// Writes every column of the cart row (the guest e-mail index's columns only when they differ
// from the row's) and, with kReplace, replaces the lines; the caller bumps version.
absl::Status UpdateCart(sql::Transaction& tx, const Cart& cart,
                        CartLinesWrite lines = CartLinesWrite::kReplace);
absl::StatusOr<std::optional<Cart>> LoadCart(sql::Transaction& tx, const std::string& id);

// ---- Orders ----
absl::Status InsertOrder(sql::Transaction& tx, const Order& order);
// Writes the order's mutable columns (state, reason, saga, event_seq, version, updated_at), not
// account_id: assigning that column makes SQLite re-index the row in the guest e-mail index
// (a random page) even when it is unchanged. It changes only when a guest order is attached to
// a customer: UpdateOrderAccount.
absl::Status UpdateOrder(sql::Transaction& tx, const Order& order);
absl::Status UpdateOrderAccount(sql::Transaction& tx, const Order& order);
absl::StatusOr<std::optional<Order>> LoadOrder(sql::Transaction& tx, const std::string& id,
                                               bool with_lines = true);
// Appends `entries` after order.event_seq (advancing it; the caller then UpdateOrder()s).
absl::Status AppendTimeline(sql::Transaction& tx, Order& order,
                            const std::vector<TimelineEntry>& entries, int64_t now_ms);
absl::StatusOr<std::vector<OrderEvent>> LoadTimeline(sql::Transaction& tx,
                                                     const std::string& order_id, int64_t after_seq,
                                                     int64_t limit);

struct OrderQuery {
  std::optional<std::string> account_id;  // orders listed under this customer
  std::optional<OrderState> state;
  std::string after_id;  // cursor: ids greater than this
  int64_t limit = 50;    // clamped to 1..kListPageMax
};
absl::StatusOr<std::vector<Order>> ListOrders(sql::Transaction& tx, const OrderQuery& query);
// Ids (ascending, at most `limit`) of unattached guest orders / open unattached guest carts whose
// e-mail equals `email` ignoring ASCII case.
absl::StatusOr<std::vector<std::string>> GuestOrdersByEmail(sql::Transaction& tx,
                                                            const std::string& email,
                                                            int64_t limit);
// The verified e-mails read model (accounts.customer_verified), matched case-insensitively.
absl::Status RecordVerifiedEmail(sql::Transaction& tx, const std::string& email,
                                 const std::string& customer_id, int64_t now_ms);
absl::StatusOr<std::optional<std::string>> VerifiedCustomerByEmail(sql::Transaction& tx,
                                                                   const std::string& email);
absl::StatusOr<std::vector<std::string>> GuestCartsByEmail(sql::Transaction& tx,
                                                           const std::string& email, int64_t limit);
// Ids of unfinished sagas whose deadline is <= now_ms, earliest first.
absl::StatusOr<std::vector<std::string>> DueSagas(sql::Transaction& tx, int64_t now_ms,
                                                  int64_t limit);
// Unfinished sagas without progress since `before_ms` (stuck), oldest first.
absl::StatusOr<std::vector<Order>> StuckSagas(sql::Transaction& tx, int64_t before_ms,
                                              int64_t limit);
// Every order id (auditor, tests).
absl::StatusOr<int64_t> CountUnfinishedSagas(sql::Transaction& tx);

// The queries whose cost must follow what is live, not the whole order history: the deadline
// sweep (every 100 ms), the unfinished-saga count and the guest look-ups by e-mail. With example
// parameters and the index (a small one) that should answer each, so a test can check the plan.
struct IndexedQuery {
  std::string_view sql;
  std::vector<sql::Value> params;
  std::string_view index;
};
std::vector<IndexedQuery> QueriesThatMustUseAnIndex();

// ---- Idempotency keys ----
struct IdempotencyRecord {
  std::string request_hash;
  std::string order_id;  // checkout: the order it created
  std::string response;  // cart edits: the response body replayed for the same request
};
absl::StatusOr<std::optional<IdempotencyRecord>> FindIdempotencyKey(sql::Transaction& tx,
                                                                    const std::string& scope,
                                                                    const std::string& key);
absl::Status InsertIdempotencyKey(sql::Transaction& tx, const std::string& scope,
                                  const std::string& key, const IdempotencyRecord& record,
                                  int64_t now_ms);

// ---- Price read model ----
// Applies one catalog.product_changed payload: replaces the product's SKUs when `version` is
// newer than the stored one (older or equal versions, i.e. reordered or duplicated events,
// are ignored). InvalidArgument for a payload that is not a product.
absl::Status ApplyProductChanged(sql::Transaction& tx, const Json& product);
absl::StatusOr<std::map<std::string, PriceEntry>> FindPrices(sql::Transaction& tx,
                                                             const std::vector<std::string>& skus);

}  // namespace emporium::ordering
