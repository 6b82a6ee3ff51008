// The checkout saga across real contexts over the real bus, without HTTP: ordering and the
// inventory service each on their own SQLite database, and a scripted payments stand-in that
// answers payments.authorize by the payment-method token (authorize, decline, stay silent,
// authorize twice). Checks every path's outcome and, across many concurrent checkouts on
// scarce stock, the invariants: no oversell, every order settled, no confirmed order without an
// authorization, no live authorization on a cancelled order; then a restart resumes a saga.
#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/json.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "inventory/messages.h"
#include "inventory/service.h"
#include "inventory/store.h"
#include "ordering/service.h"
#include "ordering/store.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/outbox.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"
#include "test_support.h"

namespace emporium {
namespace {

using ordering::OrderState;

constexpr char kPmOk[] = "pm_ok";
constexpr char kPmDecline[] = "pm_decline";
constexpr char kPmSilent[] = "pm_silent";
constexpr char kPmDuplicate[] = "pm_duplicate";

// Payments as the saga sees it: commands in, events out, with a ledger of live authorizations.
class FakePayments {
 public:
  absl::Status Handle(sql::Transaction& tx, const bus::Envelope& envelope) {
    absl::StatusOr<Json> payload = ParseJsonObject(envelope.payload);
    if (!payload.ok()) return absl::OkStatus();
    const std::string order = payload->value("order_id", "");
    std::lock_guard lock(mutex_);
    if (envelope.type == "payments.authorize") {
      ++authorize_commands_[order];
      const std::string method = payload->value("payment_method", "");
      if (method == kPmSilent) return absl::OkStatus();
      if (method == kPmDecline) return Emit(tx, "payment.declined", order, "insufficient_funds");
      if (live_.contains(order) || voided_.contains(order)) return absl::OkStatus();
      live_.insert(order);
      if (absl::Status first = Emit(tx, "payment.authorized", order, ""); !first.ok()) {
        return first;
      }
      if (method == kPmDuplicate) return Emit(tx, "payment.authorized", order, "");
      return absl::OkStatus();
    }
    if (envelope.type == "payments.void") {
      if (live_.erase(order) == 0) return absl::OkStatus();  // nothing to void: no event
      voided_.insert(order);
      return Emit(tx, "payment.voided", order, "");
    }
    return absl::OkStatus();
  }

  bool Live(const std::string& order) {
    std::lock_guard lock(mutex_);
    return live_.contains(order);
  }
  int AuthorizeCommands(const std::string& order) {
    std::lock_guard lock(mutex_);
    return authorize_commands_[order];
  }

 private:
  absl::Status Emit(sql::Transaction& tx, const std::string& type, const std::string& order,
                    const std::string& reason) {
    bus::Envelope event;
    event.id = ids_.Next();
    event.type = type;
    event.source = "payments";
    event.key = order;
    event.correlation_id = order;
    event.occurred_at_ms = absl::ToUnixMillis(absl::Now());
    Json payload = {{"order_id", order}};
    if (!reason.empty()) payload["reason"] = reason;
    event.payload = DumpJson(payload);
    return bus::Publish(tx, event);
  }

  std::mutex mutex_;
  SequentialIdGenerator ids_{"pay-"};
  std::set<std::string> live_;
  std::set<std::string> voided_;
  std::map<std::string, int> authorize_commands_;
};

class OrderingSagaTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open() {
    for (const char* name : {"ordering", "inventory", "payments"}) {
      auto db = sql::OpenSqlite({.path = dir_.File(fmt::format("{}.db", name)), .name = name});
      ASSERT_TRUE(db.ok()) << db.status();
      ASSERT_TRUE(bus::InstallBusSchema(**db).ok());
      dbs_[name] = std::move(*db);
    }
    ASSERT_TRUE(
        sql::ApplyMigrations(*dbs_["ordering"], "ordering", ordering::OrderingMigrations()).ok());
    ASSERT_TRUE(
        sql::ApplyMigrations(*dbs_["inventory"], "inventory", inventory::InventoryMigrations())
            .ok());
    bus_ = std::make_unique<bus::BusRuntime>(bus::BusOptions{});
    for (auto& [name, db] : dbs_) ASSERT_TRUE(bus_->AddDatabase(name, *db).ok());

    inventory::ServiceOptions inventory_options;
    inventory_options.sweep_interval_ms = 0;
    auto inventory = inventory::InventoryService::Create(
        *dbs_["inventory"], SystemClock::Instance(), inventory_options);
    ASSERT_TRUE(inventory.ok()) << inventory.status();
    inventory_ = std::move(*inventory);

    ordering::OrderingOptions options;
    options.pricing.fallback = ordering::RegionRates{{{"USD", 500}}, 0};
    options.saga.authorize_timeout_ms = 400;
    options.saga.step_timeout_ms = 2000;
    options.saga.attempts_max = 2;
    options.saga.backoff_initial_ms = 10;
    options.sweep_interval_ms = 20;
    options.cart_reservation_ttl_ms = cart_reservation_ttl_ms_;
    ordering_ = std::make_unique<ordering::OrderingService>(*dbs_["ordering"], options);

    inventory::InventoryService* inv = inventory_.get();
    ASSERT_TRUE(bus_->Subscribe("inventory.commands", *dbs_["inventory"],
                                inventory::messages::CommandTypes(),
                                [inv](sql::Transaction& tx, const bus::Envelope& e) {
                                  return inv->AcceptCommand(tx, e);
                                })
                    .ok());
    ordering::OrderingService* ord = ordering_.get();
    ASSERT_TRUE(bus_->Subscribe(std::string(ordering::kSagaConsumer), *dbs_["ordering"],
                                {std::string(ordering::kInventoryReplyType), "payment."},
                                [ord](sql::Transaction& tx, const bus::Envelope& e) {
                                  return ord->HandleSagaMessage(tx, e);
                                })
                    .ok());
    FakePayments* pay = &payments_;
    ASSERT_TRUE(bus_->Subscribe("payments.commands", *dbs_["payments"],
                                {"payments.authorize", "payments.void", "payments.refund"},
                                [pay](sql::Transaction& tx, const bus::Envelope& e) {
                                  return pay->Handle(tx, e);
                                })
                    .ok());
    ASSERT_TRUE(bus_->Start().ok());
    ASSERT_TRUE(inventory_->Start().ok());
    ordering_->Start();
  }

  void Close() {
    if (ordering_) ordering_->Stop();
    if (inventory_) inventory_->Stop();
    if (bus_) bus_->Stop();
    ordering_.reset();
    inventory_.reset();
    bus_.reset();
    for (auto& [name, db] : dbs_) db->Close();
    dbs_.clear();
  }

  void Seed(const std::string& sku, int64_t stock) {
    Json product = {{"id", "prod-" + sku},
                    {"title", "Thing " + sku},
                    {"status", "active"},
                    {"version", 1},
                    {"variants", {{{"sku", sku}, {"prices", {{"USD", "10.00"}}}}}}};
    ASSERT_TRUE(dbs_["ordering"]
                    ->Write([&](sql::Transaction& tx) {
                      return ordering::ApplyProductChanged(tx, product);
                    })
                    .ok());
    ASSERT_TRUE(inventory_->AddLocation({inventory::LocationId("wh"), "us", "Newark"}).ok());
    inventory::CommandResult received = inventory_->Execute(
        inventory::cmd::Receive{inventory::Sku(sku), inventory::LocationId("wh"), stock, "seed"});
    ASSERT_TRUE(inventory::messages::OutcomeSucceeded(received.outcome));
  }

  template <typename T>
  static absl::StatusOr<T> Await(std::function<void(ordering::Callback<T>)> start) {
    auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
    auto future = promise->get_future();
    start([promise](absl::StatusOr<T> value) { promise->set_value(std::move(value)); });
    return future.get();
  }

  std::string Cart(const std::string& sku, int64_t quantity) {
    auto cart = Await<ordering::CartView>([&](auto done) {
      ordering_->CreateCart(ordering::CartInput{"", "USD", "us", "a@b.c", std::nullopt}, done);
    });
    EXPECT_TRUE(cart.ok()) << cart.status();
    auto added = Await<ordering::CartView>(
        [&](auto done) { ordering_->AddLine(cart->cart.id, sku, quantity, done); });
    EXPECT_TRUE(added.ok()) << added.status();
    return cart->cart.id;
  }

  absl::StatusOr<ordering::Order> Checkout(const std::string& cart, const std::string& method,
                                           const std::string& key = "") {
    auto result = Await<ordering::CheckoutResult>([&](auto done) {
      ordering_->Checkout(ordering::CheckoutRequest{cart, method, "", key, "h-" + method, "", ""},
                          done);
    });
    if (!result.ok()) return result.status();
    return result->order;
  }

  // Waits (bounded) until the order is settled and its saga has nothing outstanding.
  ordering::Order Settle(const std::string& order_id) {
    absl::StatusOr<ordering::Order> order = absl::UnknownError("unset");
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          order = ordering_->GetOrder(order_id);
          return order.ok() && IsSettled(order->state()) && SagaFinished(order->saga);
        },
        std::chrono::seconds(20)))
        << (order.ok() ? std::string(OrderStateName(order->state())) + " " +
                             std::string(SagaStepName(order->saga.step))
                       : std::string(order.status().message()));
    return order.ok() ? *order : ordering::Order{};
  }

  inventory::StockLevel Stock(const std::string& sku) {
    auto levels = inventory_->Availability({inventory::Sku(sku)});
    EXPECT_TRUE(levels.ok() && !levels->empty());
    return levels.ok() && !levels->empty() ? levels->front() : inventory::StockLevel{};
  }

  bool StockSettles(const std::string& sku, int64_t allocated) {
    return testing::WaitFor([&] {
      inventory::StockLevel level = Stock(sku);
      return level.reserved == 0 && level.allocated == allocated;
    });
  }

  // Waits (bounded) until inventory confirmed the cart's reservation.
  bool CartReserved(const std::string& cart) {
    return testing::WaitFor([&] {
      auto view = ordering_->GetCart(cart);
      return view.ok() && view->cart.reservation == ordering::CartReservation::kReserved;
    });
  }

  void ReopenWithCartReservationTtl(int64_t ttl_ms) {
    Close();
    cart_reservation_ttl_ms_ = ttl_ms;
    Open();
  }

  // Timeline details of `order_id` that contain `text`.
  int TimelineMentions(const std::string& order_id, std::string_view text) {
    auto timeline = ordering_->Timeline(order_id, 0, 100);
    EXPECT_TRUE(timeline.ok());
    if (!timeline.ok()) return -1;
    int mentions = 0;
    for (const auto& entry : *timeline) {
      if (entry.detail.find(text) != std::string::npos) ++mentions;
    }
    return mentions;
  }

  int64_t cart_reservation_ttl_ms_ = 15 * 60'000;
  sql::TempDir dir_;
  std::map<std::string, std::unique_ptr<sql::Database>> dbs_;
  std::unique_ptr<bus::BusRuntime> bus_;
  std::unique_ptr<inventory::InventoryService> inventory_;
  std::unique_ptr<ordering::OrderingService> ordering_;
  FakePayments payments_;
};

TEST_F(OrderingSagaTest, ConfirmsTakingOverTheCartReservation) {
  Seed("S-OK", 10);
  const std::string cart = Cart("S-OK", 3);
  ASSERT_TRUE(CartReserved(cart));
  absl::StatusOr<ordering::Order> order = Checkout(cart, kPmOk, "k1");
  ASSERT_TRUE(order.ok()) << order.status();
  // Created PENDING and, its stock already held by the cart's reservation, RESERVED in the
  // same transaction (the timeline records both).
  EXPECT_EQ(order->state(), OrderState::kReserved);
  EXPECT_EQ(order->total_minor, 3500);
  ordering::Order settled = Settle(order->id);
  EXPECT_EQ(settled.state(), OrderState::kConfirmed);
  EXPECT_EQ(settled.saga.reservation_id, fmt::format("cart-{}-1", cart));  // taken over
  EXPECT_TRUE(payments_.Live(order->id));
  EXPECT_TRUE(StockSettles("S-OK", 3));
  EXPECT_EQ(Stock("S-OK").on_hand, 10);
  // Same key: the same order; the saga timeline recorded each step.
  absl::StatusOr<ordering::Order> replay = Checkout(cart, kPmOk, "k1");
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->id, order->id);
  EXPECT_EQ(Checkout(cart, kPmDecline, "k1").status().code(),
            absl::StatusCode::kFailedPrecondition);  // 422 over HTTP
  auto timeline = ordering_->Timeline(order->id, 0, 100);
  ASSERT_TRUE(timeline.ok());
  EXPECT_GE(timeline->size(), 6u);
  // Reserved moments ago with the order's TTL ahead: taken over as held, never extended.
  EXPECT_EQ(TimelineMentions(order->id, "order PENDING"), 1);
  EXPECT_EQ(TimelineMentions(order->id, "taken over as held"), 1);
  EXPECT_EQ(TimelineMentions(order->id, "inventory.extend"), 0);
}

// Checked out right after the cart edit, before (or racing) inventory's reply: the order never
// extends; it takes the reservation over once the cart's own reply confirms it (or as held, if
// the reply won the race). A cart reservation that fails makes the order reserve its own, which
// fails the same way: REJECTED naming the SKU.
TEST_F(OrderingSagaTest, CheckoutBeforeTheCartReplyWaitsForItInsteadOfExtending) {
  Seed("S-FAST", 10);
  const std::string cart = Cart("S-FAST", 2);
  absl::StatusOr<ordering::Order> order = Checkout(cart, kPmOk, "k-fast");
  ASSERT_TRUE(order.ok()) << order.status();
  ordering::Order settled = Settle(order->id);
  EXPECT_EQ(settled.state(), OrderState::kConfirmed);
  EXPECT_EQ(settled.saga.reservation_id, fmt::format("cart-{}-1", cart));
  EXPECT_EQ(TimelineMentions(order->id, "inventory.extend sent"), 0);
  EXPECT_EQ(TimelineMentions(order->id, "cart reservation confirmed and taken over") +
                TimelineMentions(order->id, "taken over as held"),
            1);
  EXPECT_TRUE(StockSettles("S-FAST", 2));

  Seed("S-SCARCE", 1);
  const std::string short_cart = Cart("S-SCARCE", 3);
  absl::StatusOr<ordering::Order> short_order = Checkout(short_cart, kPmOk, "k-scarce");
  ASSERT_TRUE(short_order.ok()) << short_order.status();
  ordering::Order rejected = Settle(short_order->id);
  EXPECT_EQ(rejected.state(), OrderState::kRejected);
  EXPECT_THAT(rejected.saga.short_skus, ::testing::ElementsAre("S-SCARCE"));
  EXPECT_FALSE(payments_.Live(short_order->id));
  EXPECT_TRUE(StockSettles("S-SCARCE", 0));
}

// A cart reservation with less than the order's TTL ahead (here the cart's TTL is one minute,
// the order's fifteen) is extended before the order goes on.
TEST_F(OrderingSagaTest, ExtendsACartReservationThatWouldNotLastTheOrder) {
  ReopenWithCartReservationTtl(60'000);
  Seed("S-SHORT", 10);
  const std::string cart = Cart("S-SHORT", 2);
  ASSERT_TRUE(CartReserved(cart));
  absl::StatusOr<ordering::Order> order = Checkout(cart, kPmOk, "k-short");
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(order->state(), OrderState::kPending);
  ordering::Order settled = Settle(order->id);
  EXPECT_EQ(settled.state(), OrderState::kConfirmed);
  EXPECT_EQ(settled.saga.reservation_id, fmt::format("cart-{}-1", cart));  // taken over
  EXPECT_EQ(TimelineMentions(order->id, "taken over as held"), 0);
  EXPECT_EQ(TimelineMentions(order->id, "inventory.extend sent"), 1);
  EXPECT_EQ(TimelineMentions(order->id, "cart reservation taken over"), 1);
  EXPECT_TRUE(StockSettles("S-SHORT", 2));

  // Checked out before the cart's reply: whether the reply comes first (cart reserved, too
  // short) or after (passed on as mistimed), the order extends the reservation once.
  const std::string fast_cart = Cart("S-SHORT", 1);
  absl::StatusOr<ordering::Order> fast = Checkout(fast_cart, kPmOk, "k-short-fast");
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(Settle(fast->id).state(), OrderState::kConfirmed);
  EXPECT_EQ(TimelineMentions(fast->id, "inventory.extend sent"), 1);
  EXPECT_EQ(TimelineMentions(fast->id, "taken over as held"), 0);
  EXPECT_TRUE(StockSettles("S-SHORT", 3));
}

// A cart reservation that would outlast an order's (the cart's TTL is a week) is extended too:
// extend sets it to the order's TTL, so a stuck order cannot hold the stock for a week.
TEST_F(OrderingSagaTest, ExtendsACartReservationThatWouldOutlastTheOrder) {
  ReopenWithCartReservationTtl(7 * 24 * 3'600'000LL);
  Seed("S-LONG", 10);
  const std::string cart = Cart("S-LONG", 2);
  ASSERT_TRUE(CartReserved(cart));
  absl::StatusOr<ordering::Order> order = Checkout(cart, kPmOk, "k-long");
  ASSERT_TRUE(order.ok()) << order.status();
  EXPECT_EQ(Settle(order->id).state(), OrderState::kConfirmed);
  EXPECT_EQ(TimelineMentions(order->id, "inventory.extend sent"), 1);
  EXPECT_EQ(TimelineMentions(order->id, "taken over as held"), 0);
  EXPECT_TRUE(StockSettles("S-LONG", 2));
}

TEST_F(OrderingSagaTest, DeclineReleasesAndDuplicatesAreHarmless) {
  Seed("S-D", 4);
  ordering::Order declined = Settle(Checkout(Cart("S-D", 2), kPmDecline)->id);
  EXPECT_EQ(declined.state(), OrderState::kCancelled);
  EXPECT_EQ(declined.saga.reason, "payment_declined");
  EXPECT_TRUE(StockSettles("S-D", 0));
  ordering::Order duplicated = Settle(Checkout(Cart("S-D", 2), kPmDuplicate)->id);
  EXPECT_EQ(duplicated.state(), OrderState::kConfirmed);
  EXPECT_TRUE(StockSettles("S-D", 2));
}

TEST_F(OrderingSagaTest, ShortStockRejectsAndSilentPaymentTimesOut) {
  Seed("S-T", 2);
  ordering::Order rejected = Settle(Checkout(Cart("S-T", 5), kPmOk)->id);
  EXPECT_EQ(rejected.state(), OrderState::kRejected);
  EXPECT_EQ(rejected.saga.reason, "insufficient_stock");
  EXPECT_THAT(rejected.saga.short_skus, ::testing::ElementsAre("S-T"));

  absl::StatusOr<ordering::Order> silent = Checkout(Cart("S-T", 2), kPmSilent);
  ASSERT_TRUE(silent.ok());
  ordering::Order timed_out = Settle(silent->id);
  EXPECT_EQ(timed_out.state(), OrderState::kCancelled);
  EXPECT_EQ(timed_out.saga.reason, "payment_timeout");
  EXPECT_EQ(payments_.AuthorizeCommands(silent->id), 2);  // first send + one retry
  EXPECT_TRUE(StockSettles("S-T", 0));
  EXPECT_FALSE(payments_.Live(silent->id));
}

TEST_F(OrderingSagaTest, CustomerCancelVoidsAndReturnsStock) {
  Seed("S-C", 3);
  ordering::Order confirmed = Settle(Checkout(Cart("S-C", 3), kPmOk)->id);
  ASSERT_EQ(confirmed.state(), OrderState::kConfirmed);
  auto cancelled =
      Await<ordering::Order>([&](auto done) { ordering_->Cancel(confirmed.id, done); });
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), OrderState::kCancelled);
  ordering::Order settled = Settle(confirmed.id);
  EXPECT_FALSE(settled.saga.authorized);
  EXPECT_FALSE(payments_.Live(confirmed.id));
  EXPECT_TRUE(StockSettles("S-C", 0));
  EXPECT_EQ(Stock("S-C").on_hand, 3);
}

TEST_F(OrderingSagaTest, ConcurrentCheckoutsOnScarceStockKeepEveryInvariant) {
  constexpr int kStock = 7;
  constexpr int kOrders = 40;
  Seed("S-HOT", kStock);
  std::vector<std::string> carts;
  for (int i = 0; i < kOrders; ++i) carts.push_back(Cart("S-HOT", 1 + i % 2));
  const char* methods[] = {kPmOk, kPmOk, kPmOk, kPmDecline, kPmDuplicate};
  std::vector<std::future<absl::StatusOr<ordering::Order>>> futures;
  for (int i = 0; i < kOrders; ++i) {
    futures.push_back(std::async(std::launch::async, [&, i] {
      return Checkout(carts[i], methods[i % 5], fmt::format("race-{}", i));
    }));
  }
  std::vector<std::string> ids;
  for (auto& future : futures) {
    absl::StatusOr<ordering::Order> order = future.get();
    ASSERT_TRUE(order.ok()) << order.status();
    ids.push_back(order->id);
  }
  int64_t confirmed_units = 0;
  for (const std::string& id : ids) {
    ordering::Order order = Settle(id);
    ASSERT_TRUE(IsSettled(order.state()));
    if (order.state() == OrderState::kConfirmed) {
      EXPECT_TRUE(payments_.Live(id)) << "confirmed without an authorization";
      for (const auto& line : order.lines) confirmed_units += line.quantity;
    } else {
      EXPECT_FALSE(payments_.Live(id)) << "authorization left live on " << id;
    }
  }
  EXPECT_GT(confirmed_units, 0);
  EXPECT_LE(confirmed_units, kStock);
  EXPECT_TRUE(StockSettles("S-HOT", confirmed_units));
  auto unfinished = ordering_->UnfinishedSagaCount();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_EQ(*unfinished, 0);
}

TEST_F(OrderingSagaTest, RestartResumesAnUnfinishedSaga) {
  Seed("S-R", 2);
  absl::StatusOr<ordering::Order> order = Checkout(Cart("S-R", 1), kPmSilent);
  ASSERT_TRUE(order.ok());
  // Stop before the authorization step gives up; the saga is left mid-flight on disk.
  ASSERT_TRUE(testing::WaitFor([&] {
    auto current = ordering_->GetOrder(order->id);
    return current.ok() && current->state() == OrderState::kReserved;
  }));
  Close();
  Open();
  ordering::Order resumed = Settle(order->id);
  EXPECT_EQ(resumed.state(), OrderState::kCancelled);
  EXPECT_EQ(resumed.saga.reason, "payment_timeout");
  EXPECT_TRUE(StockSettles("S-R", 0));
}

}  // namespace
}  // namespace emporium
