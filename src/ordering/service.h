// The ordering application service: carts, checkout and the orchestrated checkout saga.
//
// Every command is one write transaction on the ordering database: state + outbox + timeline
// (+ the idempotency key for checkout and keyed cart edits). The saga's decisions come from the
// pure Decide() (model.h); the service loads the saga, applies the decision, and publishes the
// commands it names through the outbox in the same transaction, so a step is persisted before its
// command is sent, by construction.
//
// Bus: the consumer "ordering.saga" takes inventory's replies (type kInventoryReplyType, sent
// because every inventory command carries reply_to) and payments' events (payment.*) and runs
// Decide() inside the consumer's transaction with the inbox row. The consumer
// "ordering.prices" keeps the price read model from catalog.product_changed. The consumer
// "ordering.accounts" takes accounts.customer_verified {customer_id, email} and, in the
// consumer's transaction, attaches every guest order and open guest cart with that e-mail
// (ASCII case-insensitive) to the customer: their account_id becomes the customer id (so
// GET /api/v1/orders lists them) and each order records an "attached_to_customer" timeline
// entry. Attached rows are no longer guest rows, so a redelivered event changes nothing. Guest
// access is unchanged: a guest cart's and its order's ids stay capabilities.
// A sweeper thread feeds Decide() a timeout for every saga whose deadline passed: the step's
// idempotent command is re-sent with backoff, and when its retry budget is spent the saga
// compensates. Because deadlines are persisted, a restarted process resumes every unfinished
// saga simply by sweeping.
//
// Waiting without blocking: WaitSettled() parks a callback until the order is CONFIRMED or
// terminal, or its deadline passes. Every job that changes an order records its id; after
// the batch commits, a notifier thread re-reads those orders and completes the waiters and
// watchers (SSE). No io thread and not the database writer ever waits.
//
// Thread-safety: all public methods are thread-safe. Start/Stop from the owner thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/ids.h"
#include "ordering/model.h"
#include "ordering/store.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::ordering {

inline constexpr std::string_view kSagaConsumer = "ordering.saga";
inline constexpr std::string_view kPriceConsumer = "ordering.prices";
inline constexpr std::string_view kAccountsConsumer = "ordering.accounts";
// The accounts context's event (its wire contract; ordering does not link accounts).
inline constexpr std::string_view kCustomerVerifiedType = "accounts.customer_verified";
// Guest orders (and, separately, carts) attached per accounts.customer_verified event.
inline constexpr int64_t kAttachPerEventMax = 10'000;
inline constexpr std::string_view kInventoryReplyType = "ordering.inventory_replied";
inline constexpr std::string_view kSource = "ordering";
inline constexpr std::string_view kCheckoutScope = "checkout";
inline constexpr std::string_view kCartEditScope = "cart_edit";  // + ":<cart id>"

struct OrderingOptions {
  CartLimits cart_limits;
  PricingRules pricing;
  SagaPolicy saga;
  int64_t cart_reservation_ttl_ms = 15 * 60'000;
  int64_t order_reservation_ttl_ms = 15 * 60'000;
  int64_t sweep_interval_ms = 100;       // real time between deadline sweeps; 0 disables
  int64_t sweep_batch_max = 512;         // sagas timed out per sweep round
  int64_t wait_max_ms = 10'000;          // Prefer: wait is clamped to this
  size_t waiters_max = 65'536;           // parked requests (wait + SSE); beyond: ResourceExhausted
  size_t watchers_per_order_max = 64;    // SSE streams of one order; beyond: Unavailable (503)
  int64_t stream_heartbeat_ms = 15'000;  // an SSE comment this often while nothing changes
  int64_t stream_duration_max_ms = 300'000;  // an SSE stream ends after this at the latest
  const Clock* clock = &SystemClock::Instance();
};

// A cart with its prices (from the read model) and totals.
struct CartView {
  Cart cart;
  std::vector<PricedLine> lines;
  std::optional<Totals> totals;
  std::string pricing_problem;  // why totals are missing ("price_unavailable: SKU-1")
};

struct CartInput {
  std::string customer_id;
  std::string currency;
  std::string region;
  std::string email;
  std::optional<Json> shipping_address;
};

struct CartPatch {
  std::optional<std::string> currency;
  std::optional<std::string> region;
  std::optional<std::string> email;
  std::optional<Json> shipping_address;
};

// An optional Idempotency-Key on a cart edit (POST/PUT/DELETE lines, PATCH cart). Keys are
// per cart. The first request with a key stores render(view) with the key in the edit's
// transaction; the same key with the same request_hash replays that body; with another
// request_hash: 422 "idempotency_key_reused"; while the first is being written: Aborted (409)
// "idempotency_key_in_use". An empty key: no idempotency (render still makes the body).
struct IdempotentEdit {
  std::string key;
  std::string request_hash;
  std::function<std::string(const CartView&)> render;  // the response body; runs in the write
};

struct CartEditReply {
  std::string body;       // render(view), or the stored body on a replay
  bool replayed = false;  // an earlier request with the same key made it
};

struct CheckoutRequest {
  std::string cart_id;
  std::string payment_method;
  std::string customer_id;
  std::string idempotency_key;  // may be empty
  std::string request_hash;     // of the request that carried the key
  std::string client_ip;
  // The signed-in customer placing the order ("" for a guest): the order is listed under them.
  std::string account_id;
};

struct CheckoutResult {
  Order order;
  bool replayed = false;  // an earlier request with the same Idempotency-Key created it
};

enum class StaffAction { kRetry, kCompensate };

template <typename T>
using Callback = std::function<void(absl::StatusOr<T>)>;

class OrderingService {
 public:
  // `db` (migrated, bus schema installed) must outlive the service.
  OrderingService(sql::Database& db, OrderingOptions options);
  ~OrderingService();  // Stop()s
  OrderingService(const OrderingService&) = delete;
  OrderingService& operator=(const OrderingService&) = delete;

  // Starts the deadline sweeper (which first resumes every overdue saga) and the notifier.
  void Start();
  // Stops both; parked waiters are answered with their order as it stands. Idempotent.
  void Stop();

  // ---- Carts (asynchronous: `done` runs on the database writer thread; keep it short) ----
  void CreateCart(CartInput input, Callback<CartView> done);
  void AddLine(std::string cart_id, std::string sku, int64_t quantity, Callback<CartView> done);
  // quantity 0 removes the line.
  void SetLine(std::string cart_id, std::string sku, int64_t quantity, Callback<CartView> done);
  void UpdateCart(std::string cart_id, CartPatch patch, Callback<CartView> done);
  // The same edits honouring an Idempotency-Key (see IdempotentEdit).
  void AddLine(std::string cart_id, std::string sku, int64_t quantity, IdempotentEdit idempotency,
               Callback<CartEditReply> done);
  void SetLine(std::string cart_id, std::string sku, int64_t quantity, IdempotentEdit idempotency,
               Callback<CartEditReply> done);
  void UpdateCart(std::string cart_id, CartPatch patch, IdempotentEdit idempotency,
                  Callback<CartEditReply> done);
  // Releases the cart's reservation; the cart can no longer be used.
  void AbandonCart(std::string cart_id, Callback<CartView> done);
  absl::StatusOr<CartView> GetCart(const std::string& cart_id);
  // The customer the cart belongs to, "" for a guest cart; NotFound ("cart_not_found") when
  // there is no such cart. A cart's owner never changes, so the API may check it before a write.
  absl::StatusOr<std::string> CartOwner(const std::string& cart_id);

  // ---- Orders ----
  // Creates the order PENDING and starts the saga. Errors: NotFound (cart), FailedPrecondition
  // (cart empty / already checked out / not priceable, code names it), 422 for a reused
  // Idempotency-Key with another request, Aborted (409) for a concurrent duplicate.
  void Checkout(CheckoutRequest request, Callback<CheckoutResult> done);
  void Cancel(std::string order_id, Callback<Order> done);
  void Staff(std::string order_id, StaffAction action, Callback<Order> done);
  absl::StatusOr<Order> GetOrder(const std::string& order_id);
  absl::StatusOr<std::vector<Order>> ListOrders(const OrderQuery& query);
  absl::StatusOr<std::vector<OrderEvent>> Timeline(const std::string& order_id, int64_t after_seq,
                                                   int64_t limit);
  absl::StatusOr<std::vector<Order>> Stuck(int64_t no_progress_ms, int64_t limit);

  // Calls `done` (on the notifier thread) once the order is settled (CONFIRMED or terminal) or
  // at `deadline`, with the order as it then stands. ResourceExhausted when too many wait.
  absl::Status WaitSettled(const std::string& order_id, absl::Time deadline, Callback<Order> done);
  // Calls `on_change` (notifier thread) with the order at once and after every committed change,
  // and `on_heartbeat` (if set) every `heartbeat` of real time, until either returns false or
  // `deadline` passes (then on_change once more with DeadlineExceeded). For SSE. Unavailable
  // ("too_many_watchers", 503) when the order already has watchers_per_order_max watchers or
  // waiters_max requests are parked.
  absl::Status Watch(const std::string& order_id, absl::Time deadline,
                     std::function<bool(absl::StatusOr<Order>)> on_change,
                     absl::Duration heartbeat = absl::InfiniteDuration(),
                     std::function<bool()> on_heartbeat = nullptr);

  // ---- Bus handlers (run inside the consumer's write transaction) ----
  absl::Status HandleSagaMessage(sql::Transaction& tx, const bus::Envelope& envelope);
  absl::Status HandleProductChanged(sql::Transaction& tx, const bus::Envelope& envelope);
  // accounts.customer_verified: attaches the e-mail's guest orders and open guest carts to the
  // customer (see the header comment). A malformed payload is acknowledged and ignored.
  absl::Status HandleCustomerVerified(sql::Transaction& tx, const bus::Envelope& envelope);

  // Runs one sweep now (tests): times out every due saga. Returns how many were handled.
  absl::StatusOr<int64_t> SweepOnce();
  absl::StatusOr<int64_t> UnfinishedSagaCount();

  const OrderingOptions& options() const { return options_; }

 private:
  // A changed order as the notifier sees it. kInProgress (the job left it neither confirmed nor
  // terminal) wakes only watchers: a one-shot waiter waits for a settled order, so the notifier
  // does not re-read the order for it. The hint only saves reads; waiters are always answered
  // from a fresh read (a job may still roll back after recording the change).
  enum class OrderChange { kInProgress, kMaybeSettled };
  struct TouchedOrder {
    std::string id;
    OrderChange change = OrderChange::kMaybeSettled;
  };
  struct Waiter {
    absl::Time deadline;
    Callback<Order> done;                              // one-shot wait
    std::function<bool(absl::StatusOr<Order>)> watch;  // SSE
    uint64_t id = 0;                                   // unique per waiter
    absl::Duration heartbeat = absl::InfiniteDuration();
    absl::Time next_heartbeat = absl::InfiniteFuture();
    std::function<bool()> on_heartbeat;
  };
  // Removes the waiter `id` of `order_id` (hub_->mutex held).
  void EraseWaiter(const std::string& order_id, uint64_t id);

  absl::StatusOr<CartView> PriceCart(sql::Transaction& tx, Cart cart);
  // Re-reserves the cart's lines after a change: one inventory.reserve that `replaces` the
  // reservation the cart held (released in the same inventory command), or an
  // inventory.release alone when the cart is left empty or no longer open.
  absl::Status ReplaceCartReservation(sql::Transaction& tx, Cart& cart, int64_t now_ms);
  using CartEdit = std::function<absl::Status(sql::Transaction&, Cart&)>;
  // Loads the open cart, applies `edit`, bumps the version, writes and prices it.
  absl::StatusOr<CartView> EditCartInTx(sql::Transaction& tx, const std::string& cart_id,
                                        const CartEdit& edit);
  void MutateCart(std::string cart_id, CartEdit edit, Callback<CartView> done);
  void MutateCartIdempotent(std::string cart_id, CartEdit edit, IdempotentEdit idempotency,
                            Callback<CartEditReply> done);
  CartEdit AddLineEdit(std::string sku, int64_t quantity);
  CartEdit SetLineEdit(std::string sku, int64_t quantity);
  CartEdit PatchEdit(CartPatch patch);
  static absl::Status CheckPatch(const CartPatch& patch);
  absl::Status PublishCommand(sql::Transaction& tx, const Order& order, const SagaCommand& command,
                              int64_t now_ms);
  absl::Status PublishInventory(sql::Transaction& tx, std::string_view type, const Json& payload,
                                const std::string& key, const std::string& correlation_id,
                                int64_t now_ms);
  // Loads the order, applies `input`, persists state + timeline + commands.
  absl::StatusOr<Order> ApplyInput(sql::Transaction& tx, const std::string& order_id,
                                   const SagaInput& input, int64_t now_ms);
  absl::Status HandleCartReply(sql::Transaction& tx, const std::string& cart_id, const Json& reply);
  // Records, inside a write job, that `order` changed (its state as the job left it).
  void Touched(const Order& order);
  void RunSweeper();
  void RunNotifier();
  void Notify(const std::vector<TouchedOrder>& changes, absl::Time now, bool stopping);

  sql::Database& db_;
  const OrderingOptions options_;
  const Clock& clock_;
  UuidV7Generator ids_;

  std::mutex inflight_mutex_;
  std::set<std::string> inflight_keys_;  // Idempotency-Keys of checkouts / cart edits in flight

  // Notification plumbing, shared with the database's commit listener (which outlives the
  // service, hence shared_ptr). Write jobs (writer thread) add orders to `touched`; the
  // commit listener moves them to `committed`; the notifier drains `committed`.
  struct Hub {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<TouchedOrder> touched;
    std::vector<TouchedOrder> committed;
    bool stopping = false;
  };
  std::shared_ptr<Hub> hub_;
  std::multimap<std::string, Waiter> waiters_;  // guarded by hub_->mutex
  uint64_t next_waiter_id_ = 1;                 // guarded by hub_->mutex
  std::thread notifier_;
  std::thread sweeper_;
  std::mutex sweep_mutex_;
  std::condition_variable sweep_cv_;
  bool running_ = false;
};

// FNV-1a 64 of `text` as 16 hex digits (request hashes).
std::string HashHex(std::string_view text);

}  // namespace emporium::ordering
