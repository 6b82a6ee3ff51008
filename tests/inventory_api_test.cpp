// Inventory end to end: the full app on port 0 driven over HTTP (reserve, idempotent replay,
// conflict, insufficient/unknown stock, bad input, staff auth, availability), and the bus path
// (a redelivered command has one effect; replies and events come from the engine's batch).
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "app/server_app.h"
#include "common/ids.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "inventory/messages.h"
#include "inventory/module.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/schema.h"
#include "platform/http/client.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWaitBound = absl::Seconds(20);
constexpr char kAdminKey[] = "test-admin-key";

bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kWaitBound;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

class InventoryApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    app::Config config;
    config.server.port = 0;
    config.server.io_threads = 2;
    config.data_dir = dir_.path();
    config.admin_api_key = kAdminKey;
    config.log_level = "error";
    absl::StatusOr<std::unique_ptr<app::ServerApp>> app = app::ServerApp::Open(config);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = *std::move(app);
    ASSERT_TRUE(app_->Start().ok());
    http::ClientOptions options;
    options.port = app_->port();
    client_ = std::make_unique<http::HttpClient>(options);
  }
  void TearDown() override {
    client_.reset();
    if (app_) app_->Shutdown();
  }

  http::ClientResponse Call(const std::string& method, const std::string& target,
                            const std::string& body = "", const std::string& idempotency_key = "",
                            const std::string& bearer = "") {
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    request.body = body;
    if (!body.empty()) request.headers.Set("Content-Type", "application/json");
    if (!idempotency_key.empty()) request.headers.Set("Idempotency-Key", idempotency_key);
    // The reservation routes are ops staff routes: they get the admin key unless the caller
    // names another bearer ("-" for none).
    std::string token = bearer;
    if (token.empty() && target.rfind("/api/v1/inventory/reservations", 0) == 0) {
      token = kAdminKey;
    }
    if (!token.empty() && token != "-") request.headers.Set("Authorization", "Bearer " + token);
    absl::StatusOr<http::ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : http::ClientResponse{};
  }
  http::ClientResponse Staff(const std::string& target, const std::string& body) {
    return Call("POST", target, body, "", kAdminKey);
  }
  static Json Body(const http::ClientResponse& response) {
    absl::StatusOr<Json> json = ParseJson(response.body);
    return json.ok() ? *json : Json();
  }
  void Stock(const std::string& sku, int quantity) {
    ASSERT_EQ(Staff("/api/v1/admin/inventory/locations",
                    R"({"id":"w1","region":"eu","address":"Dock 1"})")
                  .status,
              201);
    http::ClientResponse received =
        Staff("/api/v1/admin/inventory/receive",
              fmt::format(R"({{"sku":"{}","location_id":"w1","quantity":{}}})", sku, quantity));
    ASSERT_EQ(received.status, 200) << received.body;
  }
  static std::string Reserve(const std::string& sku, int quantity) {
    return fmt::format(R"({{"lines":[{{"sku":"{}","quantity":{}}}],"region":"eu"}})", sku,
                       quantity);
  }

  sql::TempDir dir_;
  std::unique_ptr<app::ServerApp> app_;
  std::unique_ptr<http::HttpClient> client_;
};

TEST_F(InventoryApiTest, StaffRoutesNeedTheAdminKey) {
  EXPECT_EQ(
      Call("POST", "/api/v1/admin/inventory/locations", R"({"id":"w1","region":"eu"})").status,
      401);
  EXPECT_EQ(Call("GET", "/api/v1/admin/inventory/locations", "", "", "wrong").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/admin/inventory/receive",
                 R"({"sku":"a","location_id":"w1","quantity":5})", "", "wrong")
                .status,
            401);
  Stock("sku-1", 5);
  http::ClientResponse listed = Call("GET", "/api/v1/admin/inventory/locations", "", "", kAdminKey);
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(Body(listed)["items"].size(), 1u);
  http::ClientResponse unknown_location = Staff(
      "/api/v1/admin/inventory/receive", R"({"sku":"a","location_id":"nowhere","quantity":5})");
  EXPECT_EQ(unknown_location.status, 404);
  http::ClientResponse below =
      Staff("/api/v1/admin/inventory/adjust", R"({"sku":"sku-1","location_id":"w1","delta":-6})");
  EXPECT_EQ(below.status, 409) << below.body;
  http::ClientResponse zero =
      Staff("/api/v1/admin/inventory/adjust", R"({"sku":"sku-1","location_id":"w1","delta":0})");
  EXPECT_EQ(zero.status, 400);
  EXPECT_EQ(Body(zero)["error"]["param"], "delta");
}

// A receive retried after a lost answer must not receive twice: the same Idempotency-Key and
// body replays the stored answer; another body under that key is refused; adjust keys are
// separate; a refused adjust records nothing, so its retry is evaluated afresh.
TEST_F(InventoryApiTest, StaffStockChangesHonourIdempotencyKeys) {
  Stock("sku-1", 5);
  const std::string receive = R"({"sku":"sku-1","location_id":"w1","quantity":7})";
  http::ClientResponse first =
      Call("POST", "/api/v1/admin/inventory/receive", receive, "recv-1", kAdminKey);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_FALSE(first.headers.Get("Idempotent-Replayed").has_value());
  http::ClientResponse again =
      Call("POST", "/api/v1/admin/inventory/receive", receive, "recv-1", kAdminKey);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.headers.Get("Idempotent-Replayed"), "true");
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["on_hand"], 12);

  http::ClientResponse other =
      Call("POST", "/api/v1/admin/inventory/receive",
           R"({"sku":"sku-1","location_id":"w1","quantity":8})", "recv-1", kAdminKey);
  EXPECT_EQ(other.status, 422) << other.body;
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["on_hand"], 12);

  // The same key on adjust is another request; a refused adjust is not recorded.
  const std::string too_much = R"({"sku":"sku-1","location_id":"w1","delta":-13})";
  EXPECT_EQ(Call("POST", "/api/v1/admin/inventory/adjust", too_much, "recv-1", kAdminKey).status,
            409);
  const std::string fine = R"({"sku":"sku-1","location_id":"w1","delta":-2})";
  EXPECT_EQ(Call("POST", "/api/v1/admin/inventory/adjust", fine, "recv-1", kAdminKey).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/admin/inventory/adjust", fine, "recv-1", kAdminKey).status, 200);
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["on_hand"], 10);
  EXPECT_EQ(
      Call("POST", "/api/v1/admin/inventory/receive", receive, std::string(300, 'k'), kAdminKey)
          .status,
      400);
}

TEST_F(InventoryApiTest, ReserveReplayConflictAndShortStock) {
  Stock("sku-1", 10);
  http::ClientResponse stock = Call("GET", "/api/v1/inventory/sku-1");
  ASSERT_EQ(stock.status, 200);
  EXPECT_EQ(Body(stock)["available"], 10);
  EXPECT_EQ(Body(stock)["locations"][0]["location_id"], "w1");

  // Shoppers reserve through carts; the direct reservation API is for ops staff only.
  EXPECT_EQ(
      Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 3), "anon-1", "-").status,
      401);
  http::ClientResponse no_key = Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 3));
  EXPECT_EQ(no_key.status, 400);
  EXPECT_EQ(Body(no_key)["error"]["param"], "Idempotency-Key");

  http::ClientResponse reserved =
      Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 3), "cart-1");
  ASSERT_EQ(reserved.status, 201) << reserved.body;
  EXPECT_EQ(Body(reserved)["id"], "cart-1");
  EXPECT_EQ(Body(reserved)["state"], "active");
  EXPECT_GT(Body(reserved)["expires_at_ms"].get<int64_t>(), 0);

  http::ClientResponse replay =
      Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 3), "cart-1");
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.headers.Get("Idempotent-Replayed").value_or(""), "true");
  EXPECT_EQ(Body(replay)["expires_at_ms"], Body(reserved)["expires_at_ms"]);

  http::ClientResponse conflict =
      Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 4), "cart-1");
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(Body(conflict)["error"]["code"], "conflict");

  http::ClientResponse short_stock =
      Call("POST", "/api/v1/inventory/reservations", Reserve("sku-1", 8), "cart-2");
  EXPECT_EQ(short_stock.status, 409);
  EXPECT_EQ(Body(short_stock)["error"]["code"], "insufficient_stock");
  EXPECT_THAT(Body(short_stock)["error"]["message"].get<std::string>(), HasSubstr("sku-1"));

  http::ClientResponse unknown =
      Call("POST", "/api/v1/inventory/reservations", Reserve("nope", 1), "cart-3");
  EXPECT_EQ(unknown.status, 422);
  EXPECT_EQ(Body(unknown)["error"]["code"], "unknown_sku");
  EXPECT_EQ(Body(unknown)["error"]["param"], "lines[0].sku");

  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["available"], 7);

  http::ClientResponse fetched = Call("GET", "/api/v1/inventory/reservations/cart-1");
  ASSERT_EQ(fetched.status, 200);
  EXPECT_EQ(Body(fetched)["lines"][0]["quantity"], 3);
  EXPECT_EQ(Call("GET", "/api/v1/inventory/reservations/none").status, 404);

  http::ClientResponse extended =
      Call("POST", "/api/v1/inventory/reservations/cart-1/extend", R"({"ttl_seconds":3600})");
  EXPECT_EQ(extended.status, 200) << extended.body;
  EXPECT_EQ(Body(extended)["outcome"], "extended");

  http::ClientResponse released = Call("POST", "/api/v1/inventory/reservations/cart-1/release");
  EXPECT_EQ(released.status, 200) << released.body;
  EXPECT_EQ(Body(released)["state"], "released");
  http::ClientResponse again = Call("POST", "/api/v1/inventory/reservations/cart-1/release");
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(Body(again)["outcome"], "already_released");
  EXPECT_EQ(Call("POST", "/api/v1/inventory/reservations/none/release").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/inventory/reservations/cart-1/extend", "{}").status, 409);
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["available"], 10);
}

TEST_F(InventoryApiTest, BulkAvailability) {
  Stock("sku-1", 4);
  http::ClientResponse bulk = Call("GET", "/api/v1/inventory?skus=sku-1,nope,sku-1");
  ASSERT_EQ(bulk.status, 200) << bulk.body;
  Json items = Body(bulk)["items"];
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["available"], 4);
  EXPECT_EQ(items[1]["known"], false);

  std::string many;
  for (int i = 0; i <= 100; ++i) many += fmt::format("{}s{}", i == 0 ? "" : ",", i);
  http::ClientResponse too_many = Call("GET", "/api/v1/inventory?skus=" + many);
  EXPECT_EQ(too_many.status, 400);
  EXPECT_EQ(Body(too_many)["error"]["param"], "skus");
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory"))["error"]["param"], "skus");
  EXPECT_EQ(Call("GET", "/api/v1/inventory?skus=a,,b").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/inventory/never-stocked").status, 404);
}

TEST_F(InventoryApiTest, BadInputNamesTheParamAndWritesNothing) {
  Stock("sku-1", 5);
  struct Case {
    std::string body;
    std::string param;
  };
  const std::vector<Case> cases = {
      {R"({"lines":[{"sku":"sku-1","quantity":0}]})", "lines[0].quantity"},
      {R"({"lines":[{"sku":"sku-1","quantity":"2"}]})", "lines[0].quantity"},
      {R"({"lines":[{"sku":"sku-1","quantity":1},{"sku":"sku-1","quantity":1}]})", "lines[1].sku"},
      {R"({"lines":[]})", "lines"},
      {R"({"lines":[{"sku":"sku-1","quantity":1}],"ttl_seconds":0})", "ttl_seconds"},
      {R"({"lines":[{"sku":"sku-1","quantity":1}],"region":7})", "region"},
      {R"({"reservation_id":"","lines":[{"sku":"sku-1","quantity":1}]})", "reservation_id"},
  };
  int n = 0;
  for (const Case& c : cases) {
    http::ClientResponse response =
        Call("POST", "/api/v1/inventory/reservations", c.body, fmt::format("bad-{}", n++));
    EXPECT_EQ(response.status, 400) << c.body;
    EXPECT_EQ(Body(response)["error"]["param"], c.param) << c.body << " -> " << response.body;
  }
  EXPECT_EQ(Call("POST", "/api/v1/inventory/reservations", "{not json", "bad-x").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/inventory/reservations", std::string(100, '['), "bad-y").status,
            400);
  // A two-line reservation whose second line is short takes nothing.
  http::ClientResponse partial =
      Call("POST", "/api/v1/inventory/reservations",
           R"({"lines":[{"sku":"sku-1","quantity":2},{"sku":"nope","quantity":1}]})", "partial");
  EXPECT_EQ(partial.status, 422);
  EXPECT_EQ(Body(Call("GET", "/api/v1/inventory/sku-1"))["available"], 5);
}

// ---- The bus path, with the module wired on its own database and bus. ----

class InventoryBusTest : public ::testing::Test {
 protected:
  std::unique_ptr<sql::Database> Open(const std::string& name) {
    sql::SqliteOptions options;
    options.path = dir_.File(name + ".db");
    options.name = name;
    absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
    EXPECT_TRUE(db.ok()) << db.status();
    EXPECT_TRUE(bus::InstallBusSchema(**db).ok());
    return std::move(*db);
  }

  void SetUp() override {
    inventory_db_ = Open("inventory");
    observer_db_ = Open("observer");
    ASSERT_TRUE(
        sql::ApplyMigrations(*inventory_db_, "inventory", inventory::InventoryMigrations()).ok());
    bus_ = std::make_unique<bus::BusRuntime>(bus::BusOptions{});
    ASSERT_TRUE(bus_->AddDatabase("inventory", *inventory_db_).ok());
    module_ = std::make_unique<inventory::InventoryModule>(
        inventory::InventoryModuleOptions{.sweep_interval_ms = 0});
    ContextDeps deps;
    deps.database = inventory_db_.get();
    deps.bus = bus_.get();
    ASSERT_TRUE(module_->Wire(deps, router_).ok());
    ASSERT_TRUE(bus_->Subscribe("observer", *observer_db_, {"inventory.", "test."},
                                [this](sql::Transaction&, const bus::Envelope& envelope) {
                                  std::lock_guard lock(mutex_);
                                  seen_.push_back(envelope);
                                  return absl::OkStatus();
                                })
                    .ok());
    ASSERT_TRUE(bus_->Start().ok());
    ASSERT_TRUE(module_->Start().ok());
    inventory::InventoryService& service = *module_->service();
    ASSERT_TRUE(service.AddLocation({inventory::LocationId("w1"), "eu", ""}).ok());
    ASSERT_TRUE(service
                    .Execute(inventory::cmd::Receive{inventory::Sku("sku-1"),
                                                     inventory::LocationId("w1"), 10, "po-1"})
                    .status.ok());
  }
  void TearDown() override {
    module_->Stop();
    bus_->Stop();
    inventory_db_->Close();
    observer_db_->Close();
  }

  bus::Envelope Command(const inventory::Command& command, const std::string& correlation) {
    bus::Envelope envelope;
    envelope.id = ids_.Next();
    envelope.type = std::string(inventory::messages::CommandType(command));
    envelope.source = "test";
    envelope.key = correlation;
    envelope.correlation_id = correlation;
    envelope.reply_to = "test.reply";
    envelope.occurred_at_ms = 1;
    envelope.payload = inventory::messages::CommandPayload(command);
    return envelope;
  }
  void Deliver(const bus::Envelope& envelope) {
    ASSERT_TRUE(bus_->transport()
                    .Publish({bus::OutgoingMessage{envelope.id, envelope.type, envelope.key,
                                                   bus::Serialize(envelope)}})
                    .ok());
  }
  std::vector<bus::Envelope> Seen(const std::string& type) {
    std::lock_guard lock(mutex_);
    std::vector<bus::Envelope> matching;
    for (const bus::Envelope& envelope : seen_) {
      if (envelope.type == type) matching.push_back(envelope);
    }
    return matching;
  }
  int64_t Reserved() {
    absl::StatusOr<std::vector<inventory::StockLevel>> levels =
        module_->service()->Availability({inventory::Sku("sku-1")});
    return levels.ok() && !levels->empty() ? levels->front().reserved : -1;
  }

  sql::TempDir dir_;
  UuidV7Generator ids_{SystemClock::Instance()};
  std::unique_ptr<sql::Database> inventory_db_;
  std::unique_ptr<sql::Database> observer_db_;
  std::unique_ptr<bus::BusRuntime> bus_;
  std::unique_ptr<inventory::InventoryModule> module_;
  http::Router router_;
  std::mutex mutex_;
  std::vector<bus::Envelope> seen_;
};

TEST_F(InventoryBusTest, RedeliveredCommandHasOneEffect) {
  const bus::Envelope reserve = Command(
      inventory::cmd::Reserve{
          inventory::ReservationId("r-1"), {{inventory::Sku("sku-1"), 3}}, "eu", 60'000},
      "order-1");
  Deliver(reserve);
  Deliver(reserve);
  Deliver(reserve);
  // A marker after the duplicates: once its reply is out, the duplicates were handled.
  Deliver(Command(inventory::cmd::Release{inventory::ReservationId("marker")}, "order-2"));
  ASSERT_TRUE(Eventually([&] { return Seen("test.reply").size() >= 2; }));
  ASSERT_TRUE(
      Eventually([&] { return !Seen(std::string(inventory::messages::kReserved)).empty(); }));
  EXPECT_EQ(Seen(std::string(inventory::messages::kReserved)).size(), 1u);
  EXPECT_EQ(Reserved(), 3);

  std::vector<bus::Envelope> replies = Seen("test.reply");
  ASSERT_EQ(replies.size(), 2u);
  absl::StatusOr<inventory::messages::CommandReply> reply =
      inventory::messages::ParseReply(replies[0].payload);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->outcome, "reserved");
  EXPECT_TRUE(reply->ok);
  EXPECT_EQ(replies[0].correlation_id, "order-1");
  EXPECT_EQ(replies[0].causation_id, reserve.id);
  EXPECT_EQ(inventory::messages::ParseReply(replies[1].payload)->outcome, "not_found");

  // The reserved event carries the causation; availability followed the change.
  EXPECT_EQ(Seen(std::string(inventory::messages::kReserved))[0].causation_id, reserve.id);
  ASSERT_TRUE(Eventually(
      [&] { return !Seen(std::string(inventory::messages::kAvailabilityChanged)).empty(); }));
  absl::StatusOr<int64_t> queued = module_->service()->QueuedCommandCount();
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(*queued, 0);
}

TEST_F(InventoryBusTest, SagaStepsAndMalformedCommands) {
  Deliver(Command(
      inventory::cmd::Reserve{
          inventory::ReservationId("r-2"), {{inventory::Sku("sku-1"), 2}}, "eu", 60'000},
      "o-2"));
  Deliver(Command(
      inventory::cmd::Allocate{inventory::ReservationId("r-2"), inventory::OrderId("o-2")}, "o-2"));
  Deliver(Command(
      inventory::cmd::Ship{inventory::OrderId("o-2"), "s-1", {{inventory::Sku("sku-1"), 2}}},
      "o-2"));
  bus::Envelope hostile;
  hostile.id = ids_.Next();
  hostile.type = "inventory.reserve";
  hostile.source = "test";
  hostile.reply_to = "test.reply";
  hostile.payload = R"({"reservation_id":"x","lines":[{"sku":"sku-1","quantity":-5}]})";
  Deliver(hostile);
  ASSERT_TRUE(Eventually([&] { return Seen("test.reply").size() >= 4; }));
  std::vector<std::string> outcomes;
  for (const bus::Envelope& reply : Seen("test.reply")) {
    outcomes.push_back(inventory::messages::ParseReply(reply.payload)->outcome);
  }
  // Replies for one key (the order) keep their order; the malformed command has no such key,
  // so its reply may come anywhere among them.
  EXPECT_THAT(outcomes, ::testing::UnorderedElementsAre("reserved", "allocated", "shipped",
                                                        "invalid_request"));
  std::vector<std::string> order_outcomes;
  for (const std::string& outcome : outcomes) {
    if (outcome != "invalid_request") order_outcomes.push_back(outcome);
  }
  EXPECT_THAT(order_outcomes, ::testing::ElementsAre("reserved", "allocated", "shipped"));
  ASSERT_TRUE(
      Eventually([&] { return Seen(std::string(inventory::messages::kShipped)).size() == 1; }));
  EXPECT_EQ(Seen(std::string(inventory::messages::kAllocated)).size(), 1u);
  absl::StatusOr<std::vector<inventory::StockLevel>> levels =
      module_->service()->Availability({inventory::Sku("sku-1")});
  ASSERT_TRUE(levels.ok());
  EXPECT_EQ(levels->front().on_hand, 8);
  EXPECT_EQ(levels->front().allocated, 0);
}

}  // namespace
}  // namespace emporium
