// OrderingService against a real SQLite database without the bus running: guest orders and
// carts attaching to a customer on accounts.customer_verified.
#include "ordering/service.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "common/errors.h"
#include "common/json.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "ordering/store.h"
#include "platform/bus/envelope.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::ordering {
namespace {

constexpr char kSku[] = "SVC-1";

template <typename T>
absl::StatusOr<T> Await(const std::function<void(Callback<T>)>& start) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
  auto future = promise->get_future();
  start([promise](absl::StatusOr<T> value) { promise->set_value(std::move(value)); });
  return future.get();
}

class OrderingServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = sql::OpenSqlite({.path = dir_.File("ordering.db"), .name = "ordering"});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = *std::move(db);
    ASSERT_TRUE(bus::InstallBusSchema(*db_).ok());
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "ordering", OrderingMigrations()).ok());
    OrderingOptions options;
    options.pricing.fallback = RegionRates{{{"USD", 500}}, 0};
    options.sweep_interval_ms = 0;
    options.watchers_per_order_max = 2;
    service_ = std::make_unique<OrderingService>(*db_, options);
    Json product = {{"id", "prod-svc"},
                    {"title", "Thing"},
                    {"status", "active"},
                    {"version", 1},
                    {"variants", {{{"sku", kSku}, {"prices", {{"USD", "10.00"}}}}}}};
    ASSERT_TRUE(
        db_->Write([&](sql::Transaction& tx) { return ApplyProductChanged(tx, product); }).ok());
  }
  void TearDown() override {
    service_.reset();
    if (db_) db_->Close();
  }

  std::string NewCart(const std::string& email, const std::string& customer_id = "",
                      bool with_line = true) {
    auto cart = Await<CartView>([&](auto done) {
      service_->CreateCart(CartInput{customer_id, "USD", "us", email, std::nullopt}, done);
    });
    EXPECT_TRUE(cart.ok()) << cart.status();
    if (!cart.ok()) return "";
    if (with_line) {
      auto added =
          Await<CartView>([&](auto done) { service_->AddLine(cart->cart.id, kSku, 1, done); });
      EXPECT_TRUE(added.ok()) << added.status();
    }
    return cart->cart.id;
  }

  Order Checkout(const std::string& cart, const std::string& payer,
                 const std::string& account = "") {
    auto result = Await<CheckoutResult>([&](auto done) {
      CheckoutRequest request;
      request.cart_id = cart;
      request.payment_method = "pm_1";
      request.customer_id = payer;
      request.account_id = account;
      service_->Checkout(std::move(request), done);
    });
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->order : Order{};
  }

  absl::Status Verified(const std::string& payload) {
    bus::Envelope envelope;
    envelope.id = "evt-1";
    envelope.type = std::string(kCustomerVerifiedType);
    envelope.source = "accounts";
    envelope.payload = payload;
    return db_->Write(
        [&](sql::Transaction& tx) { return service_->HandleCustomerVerified(tx, envelope); });
  }

  Cart LoadCartOrDie(const std::string& id) {
    std::optional<Cart> cart;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                     absl::StatusOr<std::optional<Cart>> loaded = LoadCart(tx, id);
                     if (!loaded.ok()) return loaded.status();
                     cart = *loaded;
                     return absl::OkStatus();
                   })
                    .ok());
    EXPECT_TRUE(cart.has_value());
    return cart.value_or(Cart{});
  }

  std::vector<Order> Listed(const std::string& account) {
    OrderQuery query;
    query.account_id = account;
    absl::StatusOr<std::vector<Order>> orders = service_->ListOrders(query);
    EXPECT_TRUE(orders.ok()) << orders.status();
    return orders.value_or(std::vector<Order>{});
  }

  sql::TempDir dir_;
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<OrderingService> service_;
};

// The sweep runs every 100 ms for the life of the process: a plan that scans the orders table
// would cost the whole order history each time. SQLite's own plan, read with EXPLAIN QUERY PLAN.
TEST_F(OrderingServiceTest, PeriodicAndGuestQueriesAreAnsweredFromIndexes) {
  NewCart("guest@example.com");  // some rows, so the plans are not of empty tables
  for (const IndexedQuery& query : QueriesThatMustUseAnIndex()) {
    absl::StatusOr<std::vector<std::string>> plan = sql::QueryPlan(*db_, query.sql, query.params);
    ASSERT_TRUE(plan.ok()) << query.sql << ": " << plan.status();
    ASSERT_FALSE(plan->empty()) << query.sql;
    for (const std::string& step : *plan) {
      // Each step reads the query's own small index ("SEARCH t USING INDEX x (...)", or for the
      // count "SCAN t USING COVERING INDEX x"); never the table ("SCAN orders") nor a temp B-tree
      // that sorts every row found.
      EXPECT_NE(step.find(fmt::format("INDEX {}", query.index)), std::string::npos)
          << query.sql << ": " << step;
      EXPECT_EQ(step.find("TEMP B-TREE"), std::string::npos) << query.sql << ": " << step;
    }
  }
}

TEST_F(OrderingServiceTest, VerifiedCustomerGetsTheGuestOrdersAndCartsOfTheirEmail) {
  const Order guest = Checkout(NewCart("Buyer@Example.com"), "guest");
  const Order other_guest = Checkout(NewCart("someone@example.com"), "guest-2");
  const Order customer_order =
      Checkout(NewCart("buyer@example.com", "cust-other"), "cust-other", "cust-other");
  const std::string open_cart = NewCart("BUYER@example.COM");
  ASSERT_TRUE(guest.account_id.empty());
  ASSERT_EQ(customer_order.account_id, "cust-other");
  EXPECT_TRUE(Listed("cust-1").empty());

  ASSERT_TRUE(
      Verified(DumpJson(Json{{"customer_id", "cust-1"}, {"email", "buyer@EXAMPLE.com"}})).ok());

  std::vector<Order> listed = Listed("cust-1");
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, guest.id);
  EXPECT_EQ(listed[0].account_id, "cust-1");
  EXPECT_EQ(listed[0].customer_id, "guest");  // still the payer the saga authorizes
  absl::StatusOr<std::vector<OrderEvent>> timeline = service_->Timeline(guest.id, 0, 100);
  ASSERT_TRUE(timeline.ok());
  ASSERT_FALSE(timeline->empty());
  EXPECT_EQ(timeline->back().kind, "attached_to_customer");
  EXPECT_EQ(timeline->back().detail, "cust-1");
  const int64_t events_after_attach = static_cast<int64_t>(timeline->size());

  EXPECT_EQ(service_->GetOrder(other_guest.id)->account_id, "");
  EXPECT_EQ(service_->GetOrder(customer_order.id)->account_id, "cust-other");
  const Cart attached = LoadCartOrDie(open_cart);
  EXPECT_EQ(attached.account_id, "cust-1");
  EXPECT_EQ(attached.customer_id, "");  // the guest's capability still works

  // Redelivery (or a second verification) changes nothing.
  ASSERT_TRUE(
      Verified(DumpJson(Json{{"customer_id", "cust-1"}, {"email", "buyer@example.com"}})).ok());
  EXPECT_EQ(static_cast<int64_t>(service_->Timeline(guest.id, 0, 100)->size()),
            events_after_attach);
  EXPECT_EQ(Listed("cust-1").size(), 1u);

  // The attached cart's order is listed under the customer even when a guest checks it out.
  const Order from_attached = Checkout(open_cart, "guest");
  EXPECT_EQ(from_attached.account_id, "cust-1");
  EXPECT_EQ(Listed("cust-1").size(), 2u);

  // A guest checkout after the verification, with that e-mail in any case, is listed under the
  // customer at once; another e-mail stays a guest's.
  const Order later = Checkout(NewCart("BUYER@example.com"), "guest");
  EXPECT_EQ(later.account_id, "cust-1");
  EXPECT_EQ(service_->Timeline(later.id, 0, 100)->back().kind, "attached_to_customer");
  EXPECT_EQ(Listed("cust-1").size(), 3u);
  EXPECT_EQ(Checkout(NewCart("nobody@example.com"), "guest").account_id, "");
}

TEST_F(OrderingServiceTest, MalformedVerificationEventsAreIgnored) {
  const Order guest = Checkout(NewCart("x@example.com"), "guest");
  for (const char* payload :
       {"not json", "[]", "{}", R"({"customer_id": "c"})", R"({"email": "x@example.com"})",
        R"({"customer_id": 7, "email": "x@example.com"})",
        R"({"customer_id": "", "email": "x@example.com"})",
        R"({"customer_id": "c", "email": ""})"}) {
    EXPECT_TRUE(Verified(payload).ok()) << payload;
  }
  EXPECT_EQ(service_->GetOrder(guest.id)->account_id, "");
  // An e-mail that only shares a prefix or a LIKE pattern attaches nothing.
  ASSERT_TRUE(Verified(R"({"customer_id": "c", "email": "x@example.co"})").ok());
  ASSERT_TRUE(Verified(R"({"customer_id": "c", "email": "%@example.com"})").ok());
  EXPECT_EQ(service_->GetOrder(guest.id)->account_id, "");
}

// Watchers (SSE) are bounded per order, get heartbeats while nothing changes, and go away when a
// callback says so.
TEST_F(OrderingServiceTest, WatchersAreBoundedPerOrderAndHeartbeat) {
  service_->Start();
  const Order order = Checkout(NewCart("w@example.com"), "guest");
  std::atomic<int> changes{0};
  std::atomic<int> beats{0};
  std::atomic<bool> keep{true};
  auto on_change = [&](absl::StatusOr<Order> current) {
    if (current.ok()) ++changes;
    return keep.load();
  };
  auto on_beat = [&] {
    ++beats;
    return keep.load();
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  ASSERT_TRUE(service_->Watch(order.id, deadline, on_change, absl::Milliseconds(10), on_beat).ok());
  ASSERT_TRUE(service_->Watch(order.id, deadline, on_change).ok());
  absl::Status full = service_->Watch(order.id, deadline, on_change);
  EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(full), "too_many_watchers");

  // Both watchers hear the order at once; the first one also hears heartbeats.
  auto wait = [](const std::function<bool()>& condition) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!condition() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return condition();
  };
  EXPECT_TRUE(wait([&] { return changes.load() >= 2 && beats.load() >= 3; }));
  // A watcher that answers false is removed: after the next heartbeat and change there is room.
  keep = false;
  ASSERT_TRUE(wait([&] {
    // A heartbeat removes the first; a change (any committed touch) removes the second.
    (void)Verified(R"({"customer_id": "c", "email": "w@example.com"})");
    absl::Status room =
        service_->Watch(order.id, deadline, [](absl::StatusOr<Order>) { return false; });
    return room.ok();
  }));
  service_->Stop();
}

// A reservation reply and a checkout change the cart row only: the lines stay as edited.
// A parked Prefer: wait request is answered once the order settles or its deadline passes,
// not at an in-progress step.
TEST_F(OrderingServiceTest, ReservationReplyAndCheckoutKeepTheCartLines) {
  const std::string cart_id = NewCart("lines@example.com");
  Json other = {{"id", "prod-svc-2"},
                {"title", "Other"},
                {"status", "active"},
                {"version", 1},
                {"variants", {{{"sku", "SVC-2"}, {"prices", {{"USD", "3.00"}}}}}}};
  ASSERT_TRUE(
      db_->Write([&](sql::Transaction& tx) { return ApplyProductChanged(tx, other); }).ok());
  ASSERT_TRUE(
      Await<CartView>([&](auto done) { service_->AddLine(cart_id, "SVC-2", 2, done); }).ok());
  const Cart edited = LoadCartOrDie(cart_id);
  ASSERT_EQ(edited.lines.size(), 2u);
  ASSERT_EQ(edited.reservation, CartReservation::kPending);

  bus::Envelope reply;
  reply.id = "reply-1";
  reply.type = std::string(kInventoryReplyType);
  reply.source = "inventory";
  reply.correlation_id = "cart:" + cart_id;
  reply.payload = DumpJson(Json{{"command", "inventory.reserve"},
                                {"reservation_id", edited.reservation_id},
                                {"ok", true},
                                {"expires_at_ms", 123}});
  ASSERT_TRUE(
      db_->Write([&](sql::Transaction& tx) { return service_->HandleSagaMessage(tx, reply); })
          .ok());
  const Cart reserved = LoadCartOrDie(cart_id);
  EXPECT_EQ(reserved.reservation, CartReservation::kReserved);
  EXPECT_EQ(reserved.reservation_expires_at_ms, 123);
  ASSERT_EQ(reserved.lines.size(), 2u);
  EXPECT_EQ(reserved.lines[0].sku, kSku);
  EXPECT_EQ(reserved.lines[1].sku, "SVC-2");
  EXPECT_EQ(reserved.lines[1].quantity, 2);

  service_->Start();
  const Order order = Checkout(cart_id, "guest");
  ASSERT_EQ(order.lines.size(), 2u);
  const Cart checked_out = LoadCartOrDie(cart_id);
  EXPECT_EQ(checked_out.status, CartStatus::kCheckedOut);
  EXPECT_EQ(checked_out.lines.size(), 2u);

  // The order is in progress: the waiter is answered at its deadline with the pending order.
  auto waited = std::make_shared<std::promise<absl::StatusOr<Order>>>();
  ASSERT_TRUE(service_
                  ->WaitSettled(order.id, absl::Now() + absl::Milliseconds(300),
                                [waited](absl::StatusOr<Order> value) {
                                  waited->set_value(std::move(value));
                                })
                  .ok());
  auto future = waited->get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  absl::StatusOr<Order> answered = future.get();
  ASSERT_TRUE(answered.ok()) << answered.status();
  EXPECT_EQ(answered->id, order.id);
  EXPECT_FALSE(IsSettled(answered->state()));
  service_->Stop();
}

// Every cart edit holds the cart's lines with ONE inventory command: a reserve that replaces
// the previous reservation (inventory releases it in the same step), not a release + reserve.
TEST_F(OrderingServiceTest, CartLineEditsPublishOneReplacingReserve) {
  struct Published {
    std::string type;
    Json payload;
  };
  auto outbox = [&] {
    std::vector<Published> rows;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                     absl::StatusOr<sql::ResultSet> result =
                         tx.Query("SELECT envelope FROM outbox ORDER BY seq");
                     if (!result.ok()) return result.status();
                     for (const sql::Row& row : result->rows) {
                       absl::StatusOr<bus::Envelope> envelope = bus::Deserialize(row.Text(0));
                       if (!envelope.ok()) return envelope.status();
                       rows.push_back({envelope->type, Json::parse(envelope->payload)});
                     }
                     return absl::OkStatus();
                   })
                    .ok());
    return rows;
  };
  const std::string cart_id = NewCart("one@example.com");
  std::vector<Published> first = outbox();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].type, "inventory.reserve");
  EXPECT_FALSE(first[0].payload.contains("replaces"));
  const std::string first_id = first[0].payload.at("reservation_id").get<std::string>();

  ASSERT_TRUE(Await<CartView>([&](auto done) { service_->AddLine(cart_id, kSku, 2, done); }).ok());
  std::vector<Published> second = outbox();
  ASSERT_EQ(second.size(), 2u);  // exactly one more command for the edit
  EXPECT_EQ(second[1].type, "inventory.reserve");
  EXPECT_EQ(second[1].payload.at("replaces").get<std::string>(), first_id);
  const std::string second_id = second[1].payload.at("reservation_id").get<std::string>();
  EXPECT_NE(second_id, first_id);
  EXPECT_EQ(LoadCartOrDie(cart_id).reservation_id, second_id);
  EXPECT_EQ(LoadCartOrDie(cart_id).reservation, CartReservation::kPending);

  // Removing the last line leaves nothing to hold: a plain release of what the cart held.
  ASSERT_TRUE(Await<CartView>([&](auto done) { service_->SetLine(cart_id, kSku, 0, done); }).ok());
  std::vector<Published> third = outbox();
  ASSERT_EQ(third.size(), 3u);
  EXPECT_EQ(third[2].type, "inventory.release");
  EXPECT_EQ(third[2].payload.at("reservation_id").get<std::string>(), second_id);
  EXPECT_EQ(LoadCartOrDie(cart_id).reservation, CartReservation::kNone);

  // A line again: nothing is held, so nothing is replaced.
  ASSERT_TRUE(Await<CartView>([&](auto done) { service_->AddLine(cart_id, kSku, 1, done); }).ok());
  std::vector<Published> fourth = outbox();
  ASSERT_EQ(fourth.size(), 4u);
  EXPECT_EQ(fourth[3].type, "inventory.reserve");
  EXPECT_FALSE(fourth[3].payload.contains("replaces"));
}

}  // namespace
}  // namespace emporium::ordering
