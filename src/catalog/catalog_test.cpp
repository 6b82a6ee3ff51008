// The catalog end to end inside one process: routes -> service -> queue -> processor -> store,
// search index, cache and outbox, over a real SQLite file and Xapian directory.
#include <xapian.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <set>
#include <thread>

#include "catalog/module.h"
#include "catalog/search_test_util.h"
#include "catalog/seed.h"
#include "common/errors.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/outbox.h"
#include "platform/bus/schema.h"
#include "platform/context/principal.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::catalog {
namespace {

constexpr const char* kKey = "test-admin-key";
constexpr int kPollRoundsMax = 2000;

// A catalog database in `dir` with the bus tables and every catalog migration.
absl::StatusOr<std::unique_ptr<sql::Database>> OpenCatalogDatabase(const sql::TempDir& dir) {
  absl::StatusOr<std::unique_ptr<sql::Database>> db =
      sql::OpenSqlite({.path = dir.File("c.db"), .name = "catalog"});
  if (!db.ok()) return db.status();
  RETURN_IF_ERROR(bus::InstallBusSchema(**db));
  RETURN_IF_ERROR(sql::ApplyMigrations(**db, "catalog", CatalogMigrations()));
  return db;
}

Json Product(const std::string& handle, const std::string& title, const std::string& sku,
             const std::string& usd = "10.00") {
  return Json{{"handle", handle},
              {"title", title},
              {"description", "A dependable product for daily use."},
              {"brand", "Acme"},
              {"category", "home/kitchen"},
              {"status", "active"},
              {"attributes", {{"material", "steel"}}},
              {"variants", {{{"sku", sku}, {"prices", {{"USD", usd}, {"EUR", usd}}}}}}};
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { Close(); }

  void Open(bool start_processor = true) {
    sql::SqliteOptions options;
    options.path = dir_.File("catalog.db");
    options.name = "catalog";
    auto db = sql::OpenSqlite(options);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    ASSERT_TRUE(bus::InstallBusSchema(*db_).ok());
    CatalogOptions catalog;
    catalog.search_directory = dir_.File("search");
    catalog.static_directory = dir_.File("static");
    catalog.processor.idle_poll = absl::Milliseconds(20);
    module_ = std::make_unique<CatalogModule>(catalog);
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "catalog", module_->Migrations()).ok());
    router_ = std::make_unique<http::Router>();
    bus::BusOptions bus_options;
    bus_options.retry.attempts_max = 2;
    bus_options.retry.backoff_base = absl::Milliseconds(1);
    bus_ = std::make_unique<bus::BusRuntime>(bus_options);
    ContextDeps deps;
    deps.database = db_.get();
    deps.bus = bus_.get();
    deps.admin_api_key = kKey;
    ASSERT_TRUE(module_->Wire(deps, *router_).ok());
    ASSERT_TRUE(bus_->Start().ok());
    if (start_processor) {
      ASSERT_TRUE(module_->Start().ok());
    }
  }

  void Close() {
    if (module_) module_->Stop();
    if (bus_) bus_->Stop();
    module_.reset();
    bus_.reset();
    if (db_) db_->Close();
    db_.reset();
  }

  http::Response Call(const std::string& method, const std::string& target, const Json& body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {},
                      std::optional<Principal> principal = std::nullopt) {
    http::Request request;
    if (principal) AttachPrincipal(request, *principal);
    request.method = method;
    request.target = target;
    const size_t question = target.find('?');
    request.path = target.substr(0, question);
    request.query = question == std::string::npos ? "" : target.substr(question + 1);
    if (!body.is_null()) {
      request.body = body.dump();
      request.headers.Set("Content-Type", "application/json");
    }
    if (target.rfind("/api/v1/admin", 0) == 0) {
      request.headers.Set("Authorization", std::string("Bearer ") + kKey);
    }
    for (auto& [name, value] : headers) request.headers.Set(name, value);
    std::promise<http::Response> promise;
    auto future = promise.get_future();
    router_->Dispatch(
        request, [&promise](http::Response response) { promise.set_value(std::move(response)); });
    return future.get();
  }

  static Json Body(const http::Response& response) { return Json::parse(response.body); }

  // Polls (bounded, never sleeps blindly) until the update settles.
  Json WaitForUpdate(const std::string& update_id) {
    for (int round = 0; round < kPollRoundsMax; ++round) {
      http::Response response = Call("GET", "/api/v1/admin/catalog/updates/" + update_id);
      Json body = Body(response);
      if (body.value("status", "") != "queued") return body;
      std::unique_lock lock(poll_mutex_);
      poll_cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "update " << update_id << " did not settle";
    return {};
  }

  std::string Create(const Json& product) {
    http::Response response = Call("POST", "/api/v1/admin/products", product);
    EXPECT_EQ(response.status, 202) << response.body;
    Json body = Body(response);
    EXPECT_EQ(WaitForUpdate(body["update_id"])["status"], "applied");
    return body["product_id"];
  }

  // Publishes an envelope through the in-process transport, which hands it to the catalog's
  // consumer before returning (so the effect is committed when this returns).
  void Deliver(const bus::Envelope& envelope) {
    ASSERT_TRUE(bus_->transport()
                    .Publish({bus::OutgoingMessage{envelope.id, envelope.type, envelope.key,
                                                   bus::Serialize(envelope)}})
                    .ok());
  }
  bus::Envelope Availability(const std::string& sku, int64_t available,
                             std::optional<int64_t> version = std::nullopt) {
    Json payload = {
        {"sku", sku}, {"available", available}, {"on_hand", std::max<int64_t>(available, 0)}};
    if (version) payload["version"] = *version;
    bus::Envelope envelope;
    envelope.id = ids_.Next();
    envelope.type = std::string(kAvailabilityChangedType);
    envelope.source = "inventory";
    envelope.key = sku;
    envelope.correlation_id = sku;
    envelope.occurred_at_ms = 1;
    envelope.payload = payload.dump();
    return envelope;
  }
  std::set<std::string> Handles(const std::string& query) {
    http::Response response = Call("GET", "/api/v1/products?limit=100&" + query);
    EXPECT_EQ(response.status, 200) << response.body;
    std::set<std::string> handles;
    const Json body = Body(response);
    for (const Json& item : body["items"]) handles.insert(item["handle"]);
    return handles;
  }
  std::optional<SkuAvailability> StoredAvailability(const std::string& sku) {
    std::optional<SkuAvailability> stored;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& tx) {
                     absl::StatusOr<std::optional<SkuAvailability>> loaded =
                         LoadAvailability(tx, sku);
                     if (!loaded.ok()) return loaded.status();
                     stored = *loaded;
                     return absl::OkStatus();
                   })
                    .ok());
    return stored;
  }

  sql::TempDir dir_;
  UuidV7Generator ids_{SystemClock::Instance()};
  std::unique_ptr<bus::BusRuntime> bus_;
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<CatalogModule> module_;
  std::unique_ptr<http::Router> router_;
  std::mutex poll_mutex_;
  std::condition_variable poll_cv_;
};

TEST_F(CatalogTest, WriteIsQueuedThenVisible) {
  http::Response accepted = Call("POST", "/api/v1/admin/products", Product("pan", "Pan", "P-1"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Json body = Body(accepted);
  EXPECT_EQ(body["target_version"], 1);
  EXPECT_EQ(body["status"], "queued");
  Json settled = WaitForUpdate(body["update_id"]);
  EXPECT_EQ(settled["status"], "applied");
  EXPECT_EQ(settled["applied_version"], 1);

  http::Response by_id = Call("GET", "/api/v1/products/" + body["product_id"].get<std::string>());
  ASSERT_EQ(by_id.status, 200) << by_id.body;
  EXPECT_EQ(Body(by_id)["title"], "Pan");
  EXPECT_NE(by_id.headers.Get("Cache-Control")->find("stale-while-revalidate"), std::string::npos);
  http::Response by_handle = Call("GET", "/api/v1/products/pan");
  EXPECT_EQ(by_handle.body, by_id.body);
  const std::string etag(*by_id.headers.Get("ETag"));
  EXPECT_EQ(Call("GET", "/api/v1/products/pan", {}, {{"If-None-Match", etag}}).status, 304);
}

TEST_F(CatalogTest, ValidationNamesTheParam) {
  Json bad = Product("pan", "Pan", "P-1");
  bad["variants"][0]["prices"]["USD"] = "1.234";
  http::Response response = Call("POST", "/api/v1/admin/products", bad);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(Body(response)["error"]["param"], "variants[0].prices.USD");

  Json batch = {{"products", {Product("a", "A", "A-1"), Product("b", "", "B-1")}}};
  response = Call("POST", "/api/v1/admin/products/batch", batch);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(Body(response)["error"]["param"], "products[1].title");

  http::Request unauthenticated;
  EXPECT_EQ(
      Call("GET", "/api/v1/admin/catalog/updates/x", {}, {{"Authorization", "Bearer no"}}).status,
      401);
  EXPECT_EQ(Call("GET", "/api/v1/products?limit=1000").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/products?sort=weird").status, 400);
  EXPECT_EQ(Call("GET", "/api/v1/products?cursor=zz").status, 400);
}

TEST_F(CatalogTest, NoStaleReadAfterApplyAndIfMatch) {
  const std::string id = Create(Product("kettle", "Kettle", "K-1"));
  http::Response first = Call("GET", "/api/v1/products/" + id);  // now cached
  const std::string etag(*first.headers.Get("ETag"));

  http::Response stale =
      Call("PATCH", "/api/v1/admin/products/" + id, Json{{"title", "X"}}, {{"If-Match", "\"7\""}});
  EXPECT_EQ(stale.status, 412) << stale.body;

  http::Response patched = Call("PATCH", "/api/v1/admin/products/" + id,
                                Json{{"title", "Electric Kettle"}}, {{"If-Match", "\"1\""}});
  ASSERT_EQ(patched.status, 202) << patched.body;
  EXPECT_EQ(Body(patched)["target_version"], 2);
  EXPECT_EQ(WaitForUpdate(Body(patched)["update_id"])["status"], "applied");

  http::Response second = Call("GET", "/api/v1/products/" + id, {}, {{"If-None-Match", etag}});
  ASSERT_EQ(second.status, 200);
  EXPECT_NE(*second.headers.Get("ETag"), etag);
  EXPECT_EQ(Body(second)["title"], "Electric Kettle");
  EXPECT_EQ(Body(second)["version"], 2);

  http::Response archived = Call("DELETE", "/api/v1/admin/products/" + id);
  ASSERT_EQ(archived.status, 202);
  EXPECT_EQ(WaitForUpdate(Body(archived)["update_id"])["status"], "applied");
  EXPECT_EQ(Call("GET", "/api/v1/products/" + id).status, 404);
  EXPECT_EQ(Body(Call("GET", "/api/v1/admin/products/" + id))["status"], "archived");
}

TEST_F(CatalogTest, IdempotencyKeyReplaysAndRejectsReuse) {
  Json product = Product("mug", "Mug", "M-1");
  http::Response first =
      Call("POST", "/api/v1/admin/products", product, {{"Idempotency-Key", "k1"}});
  http::Response again =
      Call("POST", "/api/v1/admin/products", product, {{"Idempotency-Key", "k1"}});
  ASSERT_EQ(first.status, 202);
  EXPECT_EQ(again.status, 202);
  EXPECT_EQ(first.body, again.body);
  product["title"] = "Other";
  EXPECT_EQ(Call("POST", "/api/v1/admin/products", product, {{"Idempotency-Key", "k1"}}).status,
            422);
}

TEST(CatalogProcessor, OrderingRedeliveryAndStaleRejection) {
  sql::TempDir dir;
  auto db = OpenCatalogDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ManualClock clock;
  SequentialIdGenerator ids("id_");
  ProductCache cache(1 << 20);
  CatalogService service(**db, clock, ids, cache);
  Processor processor(**db, clock, ids, service, nullptr);

  WriteCommand create{UpdateKind::kCreate, "", Product("pot", "Pot", "PT-1"), std::nullopt};
  auto created = service.EnqueueAndWait({create}, CatalogService::Shape::kSingle);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = Json::parse(created->body)["product_id"];
  // Three patches queued before anything applies: they must apply in order.
  for (const char* title : {"Pot 1", "Pot 2", "Pot 3"}) {
    WriteCommand patch{UpdateKind::kPatch, id, Json{{"title", title}}, std::nullopt};
    ASSERT_TRUE(service.EnqueueAndWait({patch}, CatalogService::Shape::kSingle).ok());
  }
  // Based on version 4 (promised by the queue) -> accepted at enqueue.
  WriteCommand guarded{UpdateKind::kPatch, id, Json{{"brand", "Zed"}}, int64_t{4}};
  ASSERT_TRUE(service.EnqueueAndWait({guarded}, CatalogService::Shape::kSingle).ok());
  ASSERT_TRUE(processor.Drain().ok());
  auto stored = service.GetStoredProduct(id);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->product.title, "Pot 3");
  EXPECT_EQ((*stored)->product.brand, "Zed");
  EXPECT_EQ((*stored)->product.version, 5);
  EXPECT_EQ(processor.applied_count(), 5);

  // A redelivered update (the same queue row offered again) changes nothing.
  ASSERT_TRUE((*db)
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    auto again = MarkUpdateApplied(tx, 1, 99, 0);
                    EXPECT_TRUE(again.ok() && !*again);
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(*processor.RunOnce(), 0);

  // A stale base version reaching the processor is rejected with its reason: insert a queue row
  // directly, as a second writer racing the head check would.
  ASSERT_TRUE((*db)
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    QueuedUpdate update;
                    update.id = "u-stale";
                    update.product_id = id;
                    update.kind = UpdateKind::kPatch;
                    update.base_version = 2;
                    update.target_version = 3;
                    update.payload = R"({"title":"Old"})";
                    return InsertUpdate(tx, update, 0).status();
                  })
                  .ok());
  ASSERT_TRUE(processor.Drain().ok());
  auto record = service.GetUpdate("u-stale");
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ((*record)->state, UpdateState::kRejected);
  EXPECT_EQ((*record)->reason, "stale_version");
  EXPECT_EQ((*service.GetStoredProduct(id))->product.title, "Pot 3");

  // Every applied update published exactly one catalog.product_changed.
  ASSERT_TRUE((*db)
                  ->Read([&](sql::Transaction& tx) -> absl::Status {
                    auto rows = bus::ReadUnpublished(tx, 100);
                    EXPECT_TRUE(rows.ok());
                    EXPECT_EQ(rows->size(), 5u);
                    for (const auto& row : *rows) EXPECT_EQ(row.type, "catalog.product_changed");
                    return absl::OkStatus();
                  })
                  .ok());

  // A queued payload that is not JSON fails its job (and, after the bounded attempts, is
  // rejected as processing_failed); one that is JSON but no valid product is rejected as
  // invalid_product; an update queued behind both is applied.
  const std::vector<std::pair<std::string, std::string>> rows = {
      {"u-corrupt", "{\"handle\":\"x\",\x01"},
      {"u-incompatible", R"({"handle":"fern","title":5,"variants":[]})"},
      {"u-good", DumpJson(Product("fern", "Fern", "FE-1"))}};
  ASSERT_TRUE((*db)
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    for (const auto& [update_id, payload] : rows) {
                      QueuedUpdate update;
                      update.id = update_id;
                      update.product_id = "p-" + update_id;
                      update.kind = UpdateKind::kCreate;
                      update.target_version = 1;
                      update.payload = payload;
                      if (absl::Status status = InsertUpdate(tx, update, 0).status(); !status.ok())
                        return status;
                    }
                    return absl::OkStatus();
                  })
                  .ok());
  constexpr int kRunsMax = 4 * kUpdateAttemptsMax;
  for (int run = 0; run < kRunsMax; ++run) {
    absl::StatusOr<int64_t> settled = processor.RunOnce();
    if (settled.ok() && *settled == 0) break;
  }
  auto corrupt = service.GetUpdate("u-corrupt");
  ASSERT_TRUE(corrupt.ok() && corrupt->has_value());
  EXPECT_EQ((*corrupt)->state, UpdateState::kRejected);
  EXPECT_EQ((*corrupt)->reason, "processing_failed");
  EXPECT_NE((*corrupt)->message.find("bad payload"), std::string::npos) << (*corrupt)->message;
  auto incompatible = service.GetUpdate("u-incompatible");
  ASSERT_TRUE(incompatible.ok() && incompatible->has_value());
  EXPECT_EQ((*incompatible)->state, UpdateState::kRejected);
  EXPECT_EQ((*incompatible)->reason, "invalid_product");
  auto good = service.GetUpdate("u-good");
  ASSERT_TRUE(good.ok() && good->has_value());
  EXPECT_EQ((*good)->state, UpdateState::kApplied);
  EXPECT_EQ((*service.GetStoredProduct("p-u-good"))->product.title, "Fern");
  (*db)->Close();
}

// A batch goes to the database as several jobs (here one update each) committed together: a
// job that fails rolls back alone, the other products' updates commit, and a later update of
// the failed product is held (still queued) until the failed one settles -- order per product.
TEST(CatalogProcessor, FailedJobHoldsItsProductOnlyAndOrderIsKept) {
  sql::TempDir dir;
  auto db = OpenCatalogDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ManualClock clock;
  SequentialIdGenerator ids("id_");
  ProductCache cache(1 << 20);
  CatalogService service(**db, clock, ids, cache);
  ProcessorOptions options;
  options.job_updates_max = 1;
  Processor processor(**db, clock, ids, service, nullptr, options);

  WriteCommand create{UpdateKind::kCreate, "", Product("pan", "Pan", "PN-1"), std::nullopt};
  auto created = service.EnqueueAndWait({create}, CatalogService::Shape::kSingle);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string pan = Json::parse(created->body)["product_id"];
  ASSERT_TRUE(processor.Drain().ok());
  ASSERT_TRUE((*db)
                  ->Write([](sql::Transaction& tx) {
                    return tx
                        .Execute(
                            "CREATE TRIGGER inject_bad BEFORE UPDATE ON catalog_products "
                            "WHEN NEW.document LIKE '%\"title\":\"Bad\"%' "
                            "BEGIN SELECT RAISE(ABORT, 'injected'); END")
                        .status();
                  })
                  .ok());
  WriteCommand bad{UpdateKind::kPatch, pan, Json{{"title", "Bad"}}, std::nullopt};
  WriteCommand good{UpdateKind::kPatch, pan, Json{{"title", "Good"}}, std::nullopt};
  WriteCommand other{UpdateKind::kCreate, "", Product("pot", "Pot", "PT-1"), std::nullopt};
  auto queued = service.EnqueueAndWait({bad, good, other}, CatalogService::Shape::kBatch);
  ASSERT_TRUE(queued.ok()) << queued.status();
  const Json updates = Json::parse(queued->body)["updates"];

  absl::StatusOr<int64_t> first = processor.RunOnce();
  EXPECT_FALSE(first.ok());
  EXPECT_FALSE(IsTransientFailure(first.status())) << first.status();
  // The other product committed; the pan stayed at version 1 with both patches queued.
  auto pot = service.GetUpdate(updates[2]["update_id"]);
  ASSERT_TRUE(pot.ok() && pot->has_value());
  EXPECT_EQ((*pot)->state, UpdateState::kApplied);
  for (int i : {0, 1}) {
    auto record = service.GetUpdate(updates[i]["update_id"]);
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->state, UpdateState::kQueued) << i;
  }
  EXPECT_EQ((*service.GetStoredProduct(pan))->product.version, 1);

  // The fault goes away: both patches apply, in order.
  ASSERT_TRUE((*db)
                  ->Write([](sql::Transaction& tx) {
                    return tx.Execute("DROP TRIGGER inject_bad").status();
                  })
                  .ok());
  ASSERT_TRUE(processor.Drain(20).ok());
  auto stored = service.GetStoredProduct(pan);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->product.title, "Good");
  EXPECT_EQ((*stored)->product.version, 3);
  EXPECT_EQ(processor.applied_count(), 4);
  EXPECT_EQ(processor.poisoned_count(), 0);
  (*db)->Close();
}

TEST_F(CatalogTest, SkuAndHandleConflictsAreRejected) {
  Create(Product("one", "One", "SKU-1"));
  http::Response taken = Call("POST", "/api/v1/admin/products", Product("one", "Two", "SKU-2"));
  EXPECT_EQ(taken.status, 409);
  EXPECT_EQ(Body(taken)["error"]["param"], "handle");
  http::Response sku = Call("POST", "/api/v1/admin/products", Product("two", "Two", "SKU-1"));
  ASSERT_EQ(sku.status, 202);
  Json settled = WaitForUpdate(Body(sku)["update_id"]);
  EXPECT_EQ(settled["status"], "rejected");
  EXPECT_EQ(settled["reason"], "sku_taken");
}

TEST_F(CatalogTest, ListFiltersSortsAndPaginates) {
  Json batch = {{"products", Json::array()}};
  for (int i = 0; i < 25; ++i) {
    Json product = Product("item-" + std::to_string(i), "Item " + std::to_string(i),
                           "I-" + std::to_string(i), std::to_string(10 + i) + ".00");
    if (i % 2 == 0) product["brand"] = "Zeta";
    if (i % 5 == 0) product["category"] = "home/garden";
    batch["products"].push_back(product);
  }
  http::Response accepted = Call("POST", "/api/v1/admin/products/batch", batch);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  EXPECT_EQ(WaitForUpdate(Body(accepted)["updates"][24]["update_id"])["status"], "applied");

  Json page = Body(Call("GET", "/api/v1/products?brand=Zeta&limit=100"));
  EXPECT_EQ(page["items"].size(), 13u);
  page = Body(Call("GET", "/api/v1/products?category=home&limit=100"));
  EXPECT_EQ(page["items"].size(), 25u);
  page = Body(Call("GET", "/api/v1/products?category=home/garden&limit=100"));
  EXPECT_EQ(page["items"].size(), 5u);
  page = Body(Call("GET", "/api/v1/products?price_min=20&price_max=24.99&currency=USD"));
  EXPECT_EQ(page["items"].size(), 5u);
  page = Body(Call("GET", "/api/v1/products?attr.material=steel&limit=1"));
  EXPECT_EQ(page["items"].size(), 1u);

  // Walk every page sorted by price: each product once, in ascending price.
  std::vector<std::string> seen;
  std::string cursor;
  for (int round = 0; round < 10; ++round) {
    Json body = Body(Call("GET", "/api/v1/products?sort=price&limit=7" +
                                     (cursor.empty() ? "" : "&cursor=" + cursor)));
    for (const Json& item : body["items"]) seen.push_back(item["variants"][0]["prices"]["USD"]);
    if (body["next_cursor"].is_null()) break;
    cursor = body["next_cursor"];
  }
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(seen.front(), "10.00");
  EXPECT_EQ(seen.back(), "34.00");

  Json tree = Body(Call("GET", "/api/v1/categories"));
  ASSERT_EQ(tree["categories"].size(), 1u);
  EXPECT_EQ(tree["categories"][0]["path"], "home");
  EXPECT_EQ(tree["categories"][0]["count"], 25);
  EXPECT_EQ(tree["categories"][0]["children"].size(), 2u);
}

TEST_F(CatalogTest, SearchRanksExactTitleFirstAndFacetsAgree) {
  Json batch = {{"products", Json::array()}};
  for (int i = 0; i < 200; ++i) batch["products"].push_back(SeedProduct(7, i));
  Json exact = Product("waterproof-trail-shoe", "Waterproof Trail Shoe", "WTS-1");
  exact["brand"] = "Kestrel";
  batch["products"].push_back(exact);
  http::Response accepted = Call("POST", "/api/v1/admin/products/batch", batch);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  EXPECT_EQ(WaitForUpdate(Body(accepted)["updates"][200]["update_id"])["status"], "applied");

  // The index follows the store's commit: poll (bounded) until it has caught up.
  for (int round = 0; round < kPollRoundsMax; ++round) {
    if (Body(Call("GET", "/api/v1/search?q="))["total"] == 201) break;
    std::unique_lock lock(poll_mutex_);
    poll_cv_.wait_for(lock, std::chrono::milliseconds(5));
  }
  Json result = Body(Call("GET", "/api/v1/search?q=waterproof+trail+shoe"));
  ASSERT_FALSE(result["hits"].empty()) << result.dump();
  EXPECT_EQ(result["hits"][0]["handle"], "waterproof-trail-shoe");

  for (const std::string query : {"q=shoe", "q=", "q=boot&brand=Acme", "q=hea"}) {
    Json answer = Body(Call("GET", "/api/v1/search?limit=100&" + query));
    int64_t brand_total = 0;
    for (const Json& facet : answer["facets"]["brand"])
      brand_total += facet["count"].get<int64_t>();
    int64_t category_total = 0;
    for (const Json& facet : answer["facets"]["category"]) {
      category_total += facet["count"].get<int64_t>();
    }
    EXPECT_EQ(brand_total, answer["total"]) << query;
    EXPECT_EQ(category_total, answer["total"]) << query;
    if (answer["total"].get<int64_t>() <= 100) {
      EXPECT_EQ(answer["hits"].size(), answer["total"].get<size_t>()) << query;
    }
  }
  // Prefix matching for type-ahead: "headph" finds headphones.
  Json prefix = Body(Call("GET", "/api/v1/search?q=headph"));
  EXPECT_GT(prefix["total"].get<int64_t>(), 0);

  module_->search()->SetStateForTest(SearchIndex::State::kRebuilding);
  http::Response down = Call("GET", "/api/v1/search?q=shoe");
  EXPECT_EQ(down.status, 503);
  EXPECT_TRUE(down.headers.Has("Retry-After"));
  EXPECT_EQ(Call("GET", "/api/v1/products/waterproof-trail-shoe").status, 200);
  module_->search()->SetStateForTest(SearchIndex::State::kReady);
}

SearchQuery TextQuery(std::string text) {
  SearchQuery query;
  query.text = std::move(text);
  return query;
}

// Searches on several threads share the pooled readers: a reader goes back to the pool only
// after every Xapian object referring to its database is gone (their reference counts are not
// atomic), and a query without text does not share Xapian::Query::MatchAll. Before the fix this
// crashed (SIGSEGV in Xapian::Database::get_doccount, or a call through a freed vtable) within
// a few thousand searches; ThreadSanitizer reports the MatchAll race on the first ones.
TEST(CatalogSearch, ConcurrentSearchesShareThePoolSafely) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  std::vector<StoredProduct> products;
  for (int64_t n = 1; n <= 40; ++n) {
    products.push_back(IndexedProduct(n, n % 2 == 0 ? "Running shoe" : "Coffee grinder",
                                      n % 3 == 0 ? "Acme" : "Orbit", "home", 1'000 * n));
  }
  ASSERT_TRUE(index.Apply(products, 40).ok());
  constexpr int kThreads = 4;
  constexpr int kSearchesPerThread = 2'000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&index, &wrong, t] {
      for (int i = 0; i < kSearchesPerThread; ++i) {
        SearchQuery query;
        query.limit = 5;
        switch ((i + t) % 3) {
          case 0:
            query.text = "runn";  // a type-ahead prefix
            break;
          case 1:
            query.text = "coffee";
            break;
          case 2:
            query.brand = "Acme";  // no text: match everything, then filter
            break;
        }
        absl::StatusOr<SearchResult> result = index.Search(query);
        if (!result.ok() || result->total != (query.brand ? 13 : 20) || result->hits.empty()) {
          wrong.fetch_add(1);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

// Brands and categories may hold any bytes, including the separators of the facet encoding.
TEST(CatalogSearch, FacetsKeepHostileBrandAndCategoryBytes) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  const std::string odd_brand = std::string("12:3,Co\0:9", 10);
  const std::string odd_category = "a:1/b:";
  ASSERT_TRUE(index
                  .Apply({IndexedProduct(1, "Lamp one", odd_brand, odd_category, 1'000),
                          IndexedProduct(2, "Lamp two", odd_brand, "home", 30'000),
                          IndexedProduct(3, "Lamp three", "", "home", 6'000),
                          IndexedProduct(4, "Chair", "Acme", "home", 6'000)},
                         4)
                  .ok());
  absl::StatusOr<SearchResult> result = index.Search(TextQuery("lamp"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 3);
  EXPECT_TRUE(result->exact);
  ASSERT_EQ(result->brands.size(), 1u);  // the product without a brand has no brand facet
  EXPECT_EQ(result->brands[0].value, odd_brand);
  EXPECT_EQ(result->brands[0].count, 2);
  ASSERT_EQ(result->categories.size(), 2u);
  EXPECT_EQ(result->categories[0].value, "home");
  EXPECT_EQ(result->categories[0].count, 2);
  EXPECT_EQ(result->categories[1].value, odd_category);
  EXPECT_EQ(result->categories[1].count, 1);
  ASSERT_EQ(result->price_buckets.size(), 3u);
  int64_t bucket_total = 0;
  for (const FacetCount& bucket : result->price_buckets) bucket_total += bucket.count;
  EXPECT_EQ(bucket_total, 3);
}

// The type-ahead prefix expands to at most 50 terms (the most frequent), so a short prefix
// cannot make one query open every posting list of the vocabulary.
TEST(CatalogSearch, PrefixExpansionIsBounded) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  constexpr int kWords = 80;
  std::vector<StoredProduct> products;
  for (int i = 0; i < kWords; ++i) {
    // "zqword<i>" occurs in i + 1 products' titles: the 50 most frequent are words 30..79.
    for (int copy = 0; copy <= i; ++copy) {
      const int64_t n = static_cast<int64_t>(products.size()) + 1;
      products.push_back(IndexedProduct(n, fmt::format("zqword{}", i), "Acme", "home", 1'000));
    }
  }
  ASSERT_TRUE(index.Apply(products, static_cast<int64_t>(products.size())).ok());
  absl::StatusOr<SearchResult> full = index.Search(TextQuery("zqword7"));
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_GE(full->total, 8);  // a longer prefix still finds its own word ("zqword7", "zqword7x")
  absl::StatusOr<SearchResult> result = index.Search(TextQuery("zq"));
  ASSERT_TRUE(result.ok()) << result.status();
  int64_t expected = 0;
  for (int i = kWords - 50; i < kWords; ++i) expected += i + 1;
  EXPECT_EQ(result->total, expected);
  ASSERT_EQ(result->brands.size(), 1u);
  EXPECT_EQ(result->brands[0].count, expected);  // facets agree with the bounded match set
}

// Documents indexed before the facets moved into one value slot (brand, category and price
// bucket in slots 0, 1 and 2) are still counted, so an upgrade needs no reindex.
TEST(CatalogSearch, FacetsOfDocumentsInTheOlderSlotLayout) {
  sql::TempDir dir;
  {
    Xapian::WritableDatabase legacy(dir.File("search"), Xapian::DB_CREATE_OR_OPEN);
    for (int i = 0; i < 3; ++i) {
      Xapian::Document document;
      Xapian::TermGenerator generator;
      generator.set_stemmer(Xapian::Stem("english"));
      generator.set_document(document);
      generator.index_text("old lamp");
      document.add_boolean_term(fmt::format("Qold{}", i));
      document.add_value(0, i == 0 ? "Acme" : "Orbit");
      document.add_value(1, "home");
      document.add_value(2, "0-25");
      document.set_data(fmt::format(R"({{"id":"old{}"}})", i));
      legacy.replace_document(fmt::format("Qold{}", i), document);
    }
    legacy.commit();
  }
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  absl::StatusOr<SearchResult> legacy_only = index.Search(TextQuery("lamp"));
  ASSERT_TRUE(legacy_only.ok()) << legacy_only.status();
  EXPECT_EQ(legacy_only->total, 3);
  ASSERT_EQ(legacy_only->brands.size(), 2u);
  EXPECT_EQ(legacy_only->brands[0].value, "Orbit");
  EXPECT_EQ(legacy_only->brands[0].count, 2);
  ASSERT_EQ(legacy_only->price_buckets.size(), 1u);
  EXPECT_EQ(legacy_only->price_buckets[0].count, 3);

  // One document in the new layout beside the older ones: both are counted.
  ASSERT_TRUE(index.Apply({IndexedProduct(1, "New lamp", "Acme", "home", 1'000)}, 1).ok());
  absl::StatusOr<SearchResult> result = index.Search(TextQuery("lamp"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 4);
  ASSERT_EQ(result->brands.size(), 2u);
  EXPECT_EQ(result->brands[0].value, "Acme");
  EXPECT_EQ(result->brands[0].count, 2);
  EXPECT_EQ(result->brands[1].value, "Orbit");
  EXPECT_EQ(result->brands[1].count, 2);
  ASSERT_EQ(result->categories.size(), 1u);
  EXPECT_EQ(result->categories[0].count, 4);
  ASSERT_EQ(result->price_buckets.size(), 1u);
  EXPECT_EQ(result->price_buckets[0].value, "0-25");
  EXPECT_EQ(result->price_buckets[0].count, 4);
}

// Terms carry no positions: a quoted phrase is answered as the AND of its words (in any order)
// rather than failing, on a new index and on an older one written with positions alike (a mixed
// index must not lose its new documents from phrase queries).
TEST(CatalogSearch, QuotedPhraseMatchesAsAndOfItsWords) {
  sql::TempDir dir;
  {
    Xapian::WritableDatabase legacy(dir.File("search"), Xapian::DB_CREATE_OR_OPEN);
    Xapian::Document document;
    Xapian::TermGenerator generator;
    generator.set_stemmer(Xapian::Stem("english"));
    generator.set_document(document);
    generator.index_text("brass desk lamp");  // with positions, as indexes used to be written
    document.add_boolean_term("Qold");
    document.set_data(R"({"id":"old"})");
    legacy.replace_document("Qold", document);
    legacy.commit();
  }
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  ASSERT_TRUE(index
                  .Apply({IndexedProduct(1, "Desk lamp", "Acme", "home", 1'000),
                          IndexedProduct(2, "Lamp for a desk", "Acme", "home", 1'000),
                          IndexedProduct(3, "Floor lamp", "Acme", "home", 1'000)},
                         3)
                  .ok());
  {
    Xapian::Database reader(dir.File("search"));
    Xapian::PositionIterator positions = reader.positionlist_begin(2, "desk");
    EXPECT_EQ(positions, reader.positionlist_end(2, "desk"));  // new documents: no positions
    // Their summary is a value, not the (compressed) data; the old document's is in its data:
    // the hits below name both.
    EXPECT_TRUE(reader.get_document(2).get_data().empty());
  }
  for (const std::string text : {"\"desk lamp\"", "\"lamp desk\"", "\"Desk lamp\" lam"}) {
    absl::StatusOr<SearchResult> result = index.Search(TextQuery(text));
    ASSERT_TRUE(result.ok()) << text << ": " << result.status();
    std::set<std::string> ids;
    for (const SearchHit& hit : result->hits) ids.insert(hit.product_id);
    EXPECT_EQ(ids, (std::set<std::string>{"old", "p1", "p2"})) << text;
  }
  absl::StatusOr<SearchResult> unmatched = index.Search(TextQuery("\"floor desk\""));
  ASSERT_TRUE(unmatched.ok()) << unmatched.status();
  EXPECT_EQ(unmatched->total, 0);
  // Field weights still hold without positions: the title match ranks above the description.
  StoredProduct in_description = IndexedProduct(4, "Stool", "Acme", "home", 1'000);
  in_description.product.description = "A stool to stand beside a zebrawood table.";
  ASSERT_TRUE(
      index.Apply({in_description, IndexedProduct(5, "Zebrawood table", "Acme", "home", 1'000)}, 5)
          .ok());
  absl::StatusOr<SearchResult> weighted = index.Search(TextQuery("\"zebrawood table\""));
  ASSERT_TRUE(weighted.ok()) << weighted.status();
  ASSERT_EQ(weighted->hits.size(), 2u);
  EXPECT_EQ(weighted->hits[0].product_id, "p5");
}

TEST_F(CatalogTest, ReviewsUpdateRatingAndEtag) {
  const std::string id = Create(Product("lamp", "Lamp", "L-1"));
  const std::string path = "/api/v1/products/" + id + "/reviews";
  const Principal ann = Principal::Customer("cust-ann");
  const Principal bob = Principal::Customer("cust-bob");
  http::Response before = Call("GET", "/api/v1/products/" + id);
  Json review = {{"author", "Ann"}, {"rating", 4}, {"title", "Nice"}, {"body", "Bright."}};
  http::Response created = Call("POST", path, review, {}, ann);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(Body(created)["author"], "Ann");
  EXPECT_FALSE(Body(created).contains("customer_id"));
  // One review per customer per product, whatever display name the second one claims.
  review["author"] = "Someone else";
  http::Response again = Call("POST", path, review, {}, ann);
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(Body(again)["error"]["code"], "review_exists");
  // Another customer may use the same display name; without one it gets the default.
  review.erase("author");
  review["rating"] = 2;
  http::Response by_bob = Call("POST", path, review, {}, bob);
  EXPECT_EQ(by_bob.status, 201) << by_bob.body;
  EXPECT_EQ(Body(by_bob)["author"], std::string(kReviewDefaultAuthor));
  review["rating"] = 9;
  EXPECT_EQ(Body(Call("POST", path, review, {}, Principal::Customer("cust-cy")))["error"]["param"],
            "rating");
  http::Response after = Call("GET", "/api/v1/products/" + id);
  EXPECT_NE(*after.headers.Get("ETag"), *before.headers.Get("ETag"));
  EXPECT_EQ(Body(after)["rating"]["count"], 2);
  EXPECT_EQ(Body(after)["rating"]["average"], 3.0);
  Json page = Body(Call("GET", path + "?limit=1"));
  EXPECT_EQ(page["items"].size(), 1u);
  page = Body(Call("GET", path + "?limit=1&cursor=" + page["next_cursor"].get<std::string>()));
  EXPECT_EQ(page["items"].size(), 1u);
  EXPECT_TRUE(page["next_cursor"].is_null());
}

TEST_F(CatalogTest, ReviewsNeedASignedInCustomer) {
  const std::string id = Create(Product("desk", "Desk", "D-1"));
  const std::string path = "/api/v1/products/" + id + "/reviews";
  const Json review = {{"rating", 5}};
  // No principal at all (in-process dispatch) and an anonymous one: 401, nothing written.
  http::Response none = Call("POST", path, review);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(Body(none)["error"]["code"], "authentication_required");
  EXPECT_EQ(Call("POST", path, review, {}, Principal::Anonymous()).status, 401);
  // Staff are not customers.
  EXPECT_EQ(Call("POST", path, review, {}, Principal::Staff(Role::kAdmin, "admin-config")).status,
            403);
  EXPECT_EQ(Body(Call("GET", "/api/v1/products/" + id))["rating"]["count"], 0);
  // A body "customer_id" cannot pick the author.
  Json forged = review;
  forged["customer_id"] = "cust-victim";
  EXPECT_EQ(Call("POST", path, forged, {}, Principal::Customer("cust-eve")).status, 400);
  // Idempotency-Key is per customer: the same key from another customer is its own request.
  const std::vector<std::pair<std::string, std::string>> key = {{"Idempotency-Key", "k-1"}};
  http::Response first = Call("POST", path, review, key, Principal::Customer("cust-1"));
  ASSERT_EQ(first.status, 201) << first.body;
  http::Response replay = Call("POST", path, review, key, Principal::Customer("cust-1"));
  EXPECT_EQ(replay.status, 201);
  EXPECT_EQ(replay.body, first.body);
  http::Response other = Call("POST", path, review, key, Principal::Customer("cust-2"));
  EXPECT_EQ(other.status, 201);
  EXPECT_NE(Body(other)["id"], Body(first)["id"]);
  EXPECT_EQ(Body(Call("GET", "/api/v1/products/" + id))["rating"]["count"], 2);
}

TEST_F(CatalogTest, StaticFilesAreImmutableAndConfined) {
  std::filesystem::create_directories(dir_.File("static/img"));
  std::ofstream(dir_.File("static/img/logo.3f2a9c1b.svg")) << "<svg/>";
  std::ofstream(dir_.File("secret.txt")) << "secret";
  http::Response ok = Call("GET", "/static/img/logo.3f2a9c1b.svg");
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "<svg/>");
  EXPECT_EQ(*ok.headers.Get("Cache-Control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(*ok.headers.Get("Content-Type"), "image/svg+xml");
  for (const char* hostile :
       {"/static/../secret.txt", "/static/img/../../secret.txt", "/static/%2e%2e/secret.txt",
        "/static/img/%2F..%2Fsecret.txt", "/static/.hidden", "/static/img/"}) {
    EXPECT_EQ(Call("GET", hostile).status, 404) << hostile;
  }
  std::filesystem::create_symlink(dir_.File("secret.txt"), dir_.File("static/link.txt"));
  EXPECT_EQ(Call("GET", "/static/link.txt").status, 404);
}

TEST_F(CatalogTest, BatchCreatesAndUpdatesAnsweredPerItem) {
  const std::string shelf = Create(Product("shelf", "Shelf", "S-1"));
  Json batch = {{"products",
                 {Json{{"id", shelf}, {"expected_version", 1}, {"title", "Shelf v2"}},
                  Json{{"id", shelf}, {"expected_version", 1}, {"title", "Lost the race"}},
                  Json{{"id", "no-such-product"}, {"title", "Ghost"}},
                  Product("stool", "Stool", "ST-1"), Product("shelf", "Another shelf", "S-2")}}};
  const std::vector<std::pair<std::string, std::string>> key = {{"Idempotency-Key", "batch-1"}};
  http::Response response = Call("POST", "/api/v1/admin/products/batch", batch, key);
  ASSERT_EQ(response.status, 202) << response.body;
  const Json updates = Body(response)["updates"];
  ASSERT_EQ(updates.size(), 5u);
  for (size_t i = 0; i < updates.size(); ++i) EXPECT_EQ(updates[i]["index"], i);
  EXPECT_EQ(updates[0]["status"], "queued");
  EXPECT_EQ(updates[0]["kind"], "patch");
  EXPECT_EQ(updates[0]["target_version"], 2);
  // The second update's expected version was consumed by the first one in the same batch.
  EXPECT_EQ(updates[1]["status"], "rejected");
  EXPECT_EQ(updates[1]["http_status"], 412);
  EXPECT_EQ(updates[1]["error"]["code"], "version_mismatch");
  EXPECT_EQ(updates[1]["error"]["param"], "products[1].expected_version");
  EXPECT_EQ(updates[2]["http_status"], 404);
  EXPECT_EQ(updates[2]["error"]["code"], "product_not_found");
  EXPECT_EQ(updates[3]["status"], "queued");
  EXPECT_EQ(updates[3]["kind"], "create");
  EXPECT_EQ(updates[4]["http_status"], 409);
  EXPECT_EQ(updates[4]["error"]["code"], "handle_taken");
  EXPECT_TRUE(updates[4]["product_id"].is_null());
  EXPECT_EQ(WaitForUpdate(updates[0]["update_id"])["status"], "applied");
  EXPECT_EQ(WaitForUpdate(updates[3]["update_id"])["status"], "applied");
  Json product = Body(Call("GET", "/api/v1/products/" + shelf));
  EXPECT_EQ(product["title"], "Shelf v2");
  EXPECT_EQ(product["version"], 2);
  EXPECT_EQ(Call("GET", "/api/v1/products/stool").status, 200);
  // The same key and body replays the per-item answer; nothing is queued twice.
  http::Response replay = Call("POST", "/api/v1/admin/products/batch", batch, key);
  EXPECT_EQ(replay.body, response.body);
  // An update without expected_version applies to whatever version is current.
  http::Response blind = Call("POST", "/api/v1/admin/products/batch",
                              Json{{"products", {Json{{"id", shelf}, {"brand", "Oak & Co"}}}}});
  ASSERT_EQ(blind.status, 202) << blind.body;
  EXPECT_EQ(Body(blind)["updates"][0]["target_version"], 3);
}

TEST_F(CatalogTest, BatchRejectsMalformedItemsWhole) {
  const std::string shelf = Create(Product("rack", "Rack", "R-1"));
  const std::vector<std::pair<Json, std::string>> cases = {
      {Json{{"products", {Json{{"expected_version", 1}, {"title", "x"}}}}},
       "products[0].expected_version"},
      {Json{{"products", {Json{{"id", 5}}}}}, "products[0].id"},
      {Json{{"products", {Json{{"id", ""}}}}}, "products[0].id"},
      {Json{{"products", {Json{{"id", shelf}, {"expected_version", -1}}}}},
       "products[0].expected_version"},
      {Json{{"products", {Json{{"id", shelf}, {"colour", "red"}}}}}, "products[0].colour"},
      {Json{{"products", {Json{{"id", shelf}, {"handle", "Not A Slug"}}}}}, "products[0].handle"},
      {Json{{"products", {Json("not an object")}}}, "products[0]"},
  };
  for (const auto& [batch, param] : cases) {
    http::Response response = Call("POST", "/api/v1/admin/products/batch", batch);
    EXPECT_EQ(response.status, 400) << batch.dump() << " " << response.body;
    EXPECT_EQ(Body(response)["error"]["param"], param) << batch.dump();
  }
  Json too_many = {{"products", Json::array()}};
  for (size_t i = 0; i <= kBatchProductsMax; ++i) too_many["products"].push_back(Json::object());
  EXPECT_EQ(Call("POST", "/api/v1/admin/products/batch", too_many).status, 400);
  EXPECT_EQ(Body(Call("GET", "/api/v1/admin/products/" + shelf))["version"], 1);
}

// A sql::Database that fails the next `failures` writes with `error` and otherwise forwards to
// the real one (LevelDB's EnvWrapper pattern): the database's own transient failures.
class FailingWrites final : public sql::Database {
 public:
  explicit FailingWrites(sql::Database& base) : base_(base) {}
  void FailNext(int64_t failures, absl::Status error) {
    failures_ = failures;
    error_ = std::move(error);
  }
  absl::Status Write(sql::WriteJob job) override {
    if (failures_ > 0) {
      --failures_;
      return error_;
    }
    return base_.Write(std::move(job));
  }
  void SubmitWrite(sql::WriteJob job, sql::WriteDone done) override {
    if (failures_ > 0) {
      --failures_;
      done(error_);
      return;
    }
    base_.SubmitWrite(std::move(job), std::move(done));
  }
  absl::Status Read(sql::ReadJob job) override { return base_.Read(std::move(job)); }
  void AddCommitListener(std::function<void()> listener) override {
    base_.AddCommitListener(std::move(listener));
  }
  sql::WriteStats stats() const override { return base_.stats(); }
  std::string_view dialect() const override { return base_.dialect(); }
  void Close() override {}

 private:
  sql::Database& base_;
  int64_t failures_ = 0;
  absl::Status error_;
};

TEST(ProcessorFailures, TransientOnlyExceptUnavailableAndFriends) {
  EXPECT_TRUE(IsTransientFailure(absl::UnavailableError("busy")));
  EXPECT_TRUE(IsTransientFailure(absl::ResourceExhaustedError("queue full")));
  EXPECT_TRUE(IsTransientFailure(absl::AbortedError("lost race")));
  EXPECT_FALSE(IsTransientFailure(absl::FailedPreconditionError("constraint")));
  EXPECT_FALSE(IsTransientFailure(absl::DataLossError("bad payload")));
  EXPECT_FALSE(IsTransientFailure(absl::InternalError("bug")));
}

TEST(ProcessorFailures, BackoffDoublesUpToItsCap) {
  ProcessorOptions options;
  options.failure_backoff = absl::Milliseconds(100);
  options.failure_backoff_max = absl::Seconds(1);
  EXPECT_EQ(FailureBackoff(options, 1), absl::Milliseconds(100));
  EXPECT_EQ(FailureBackoff(options, 2), absl::Milliseconds(200));
  EXPECT_EQ(FailureBackoff(options, 4), absl::Milliseconds(800));
  EXPECT_EQ(FailureBackoff(options, 5), absl::Seconds(1));
  EXPECT_EQ(FailureBackoff(options, 1'000'000), absl::Seconds(1));
}

TEST_F(CatalogTest, PoisonUpdateIsRejectedAfterBoundedAttemptsAndTheQueueMovesOn) {
  Close();
  Open(/*start_processor=*/false);
  // The injected failure: the store refuses to save the product with handle "poison" (a
  // permanent constraint error, FailedPrecondition), every time.
  ASSERT_TRUE(db_->Write([](sql::Transaction& tx) {
                   return tx
                       .Execute(
                           "CREATE TRIGGER inject_poison BEFORE INSERT ON catalog_products "
                           "WHEN NEW.handle = 'poison' BEGIN SELECT RAISE(ABORT, 'injected'); END")
                       .status();
                 })
                  .ok());
  Json batch = {{"products",
                 {Product("good-a", "A", "GA-1"), Product("poison", "P", "PO-1"),
                  Product("good-b", "B", "GB-1")}}};
  http::Response accepted = Call("POST", "/api/v1/admin/products/batch", batch);
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  Processor& processor = module_->processor();
  int64_t failures = 0;
  int64_t settled_total = 0;
  // Bounded: one failed batch, one attempt per good update, kUpdateAttemptsMax at the poison.
  for (int round = 0; round < 3 * static_cast<int>(kUpdateAttemptsMax) + 10; ++round) {
    absl::StatusOr<int64_t> settled = processor.RunOnce();
    if (!settled.ok()) {
      EXPECT_FALSE(IsTransientFailure(settled.status())) << settled.status();
      ++failures;
      continue;
    }
    if (*settled == 0) break;
    settled_total += *settled;
  }
  EXPECT_EQ(settled_total, 3);
  EXPECT_EQ(failures, 1 + (kUpdateAttemptsMax - 1));
  EXPECT_EQ(processor.poisoned_count(), 1);
  const Json updates = Body(accepted)["updates"];
  EXPECT_EQ(WaitForUpdate(updates[0]["update_id"])["status"], "applied");
  Json poison = WaitForUpdate(updates[1]["update_id"]);
  EXPECT_EQ(poison["status"], "rejected");
  EXPECT_EQ(poison["reason"], "processing_failed");
  EXPECT_NE(poison["message"].get<std::string>().find("injected"), std::string::npos);
  EXPECT_EQ(WaitForUpdate(updates[2]["update_id"])["status"], "applied");
  EXPECT_EQ(Call("GET", "/api/v1/products/good-b").status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/products/poison").status, 404);
  // The queue is open again: the poison product's handle can be used once the fault is gone.
  ASSERT_TRUE(db_->Write([](sql::Transaction& tx) {
                   return tx.Execute("DROP TRIGGER inject_poison").status();
                 })
                  .ok());
  http::Response retry = Call("POST", "/api/v1/admin/products", Product("poison", "P", "PO-1"));
  ASSERT_EQ(retry.status, 202) << retry.body;
  ASSERT_TRUE(processor.Drain(10).ok());
  EXPECT_EQ(WaitForUpdate(Body(retry)["update_id"])["status"], "applied");
}

TEST_F(CatalogTest, TransientFailuresRetryAndNeverPoison) {
  Close();
  Open(/*start_processor=*/false);
  http::Response accepted = Call("POST", "/api/v1/admin/products", Product("mug", "Mug", "M-1"));
  ASSERT_EQ(accepted.status, 202) << accepted.body;
  FailingWrites failing(*db_);
  UuidV7Generator ids(SystemClock::Instance());
  Processor processor(failing, SystemClock::Instance(), ids, module_->service(), nullptr);
  const int64_t transient_failures = 3 * kUpdateAttemptsMax;
  failing.FailNext(transient_failures, absl::UnavailableError("sqlite: database is locked"));
  for (int64_t attempt = 0; attempt < transient_failures; ++attempt) {
    EXPECT_TRUE(absl::IsUnavailable(processor.RunOnce().status()));
  }
  absl::StatusOr<int64_t> settled = processor.RunOnce();
  ASSERT_TRUE(settled.ok()) << settled.status();
  EXPECT_EQ(*settled, 1);
  EXPECT_EQ(processor.poisoned_count(), 0);
  EXPECT_EQ(WaitForUpdate(Body(accepted)["update_id"])["status"], "applied");
}

TEST_F(CatalogTest, SeedAndReindexAndRestartCatchUp) {
  Close();
  Open(/*start_processor=*/false);
  auto seeded =
      SeedCatalog(*db_, module_->service(), module_->processor(), 300, 11, SeedMode::kOnlyIfEmpty);
  ASSERT_TRUE(seeded.ok()) << seeded.status();
  EXPECT_EQ(*seeded, 300);
  EXPECT_EQ(
      *SeedCatalog(*db_, module_->service(), module_->processor(), 300, 11, SeedMode::kOnlyIfEmpty),
      0);
  EXPECT_EQ(module_->search()->document_count(), 300);
  ASSERT_TRUE(module_->processor().RebuildSearch().ok());
  EXPECT_EQ(module_->search()->document_count(), 300);
  Json all = Body(Call("GET", "/api/v1/search?q="));
  EXPECT_EQ(all["total"], 300);

  // Remove the index: a restart rebuilds it from the store (catch-up from seq 0).
  Close();
  std::filesystem::remove_all(dir_.File("search"));
  Open(/*start_processor=*/false);
  ASSERT_TRUE(module_->processor().CatchUpSearch().ok());
  EXPECT_EQ(Body(Call("GET", "/api/v1/search?q="))["total"], 300);
}

}  // namespace
}  // namespace emporium::catalog

namespace emporium::catalog {
namespace {

TEST_F(CatalogTest, InStockFilterFollowsAvailabilityEvents) {
  Create(Product("anvil", "Anvil", "A-1"));
  Json bell = Product("bell", "Bell", "B-1");
  bell["variants"].push_back({{"sku", "B-2"}, {"prices", {{"USD", "12.00"}}}});
  Create(bell);
  Create(Product("cog", "Cog", "C-1"));  // inventory never reports it: out of stock

  // Before any event nothing is in stock.
  EXPECT_TRUE(Handles("in_stock=true").empty());
  EXPECT_EQ(Handles("in_stock=false").size(), 3u);

  const bus::Envelope anvil_in = Availability("A-1", 5);
  Deliver(anvil_in);
  Deliver(Availability("B-1", 0));
  Deliver(Availability("B-2", 3));  // one variant in stock is enough
  EXPECT_EQ(Handles("in_stock=true"), (std::set<std::string>{"anvil", "bell"}));
  EXPECT_EQ(Handles("in_stock=false"), (std::set<std::string>{"cog"}));
  EXPECT_EQ(Handles("in_stock=true&brand=Acme&sort=price").size(), 2u);

  // Last write wins per SKU, in message order.
  Deliver(Availability("A-1", 0));
  EXPECT_EQ(Handles("in_stock=true"), (std::set<std::string>{"bell"}));

  // A redelivered (older) message has no second effect: the inbox settles it.
  const std::optional<SkuAvailability> before = StoredAvailability("A-1");
  ASSERT_TRUE(before.has_value());
  Deliver(anvil_in);
  const std::optional<SkuAvailability> after = StoredAvailability("A-1");
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->available, 0);
  EXPECT_EQ(after->updated_seq, before->updated_seq);
  EXPECT_EQ(Handles("in_stock=true"), (std::set<std::string>{"bell"}));

  // Negative availability (adjusted below what is committed) is out of stock.
  Deliver(Availability("B-2", -2));
  EXPECT_TRUE(Handles("in_stock=true").empty());

  EXPECT_EQ(Call("GET", "/api/v1/products?in_stock=yes").status, 400);
  EXPECT_EQ(Body(Call("GET", "/api/v1/products?in_stock="))["error"]["param"], "in_stock");
  // The product JSON stays what the ETag describes: no stock in it.
  http::Response product = Call("GET", "/api/v1/products/bell");
  EXPECT_EQ(Body(product).count("in_stock"), 0u);
}

TEST_F(CatalogTest, VersionedAvailabilityIgnoresOlderUpdates) {
  Create(Product("drum", "Drum", "D-1"));
  Deliver(Availability("D-1", 4, 7));
  Deliver(Availability("D-1", 0, 6));  // older: ignored
  EXPECT_EQ(Handles("in_stock=true"), (std::set<std::string>{"drum"}));
  EXPECT_EQ(StoredAvailability("D-1")->source_version, 7);
  Deliver(Availability("D-1", 0, 8));
  EXPECT_TRUE(Handles("in_stock=true").empty());
}

TEST_F(CatalogTest, MalformedAvailabilityIsDeadLetteredWithoutEffect) {
  Create(Product("drum", "Drum", "D-1"));
  Deliver(Availability("D-1", 4));
  bus::Envelope bad = Availability("D-1", 0);
  bad.payload = R"({"sku":"D-1","available":"lots","on_hand":1})";
  Deliver(bad);
  EXPECT_EQ(StoredAvailability("D-1")->available, 4);
  int64_t dead = 0;
  ASSERT_TRUE(db_->Read([&](sql::Transaction& tx) {
                   absl::StatusOr<sql::ResultSet> rows = tx.Query(
                       "SELECT COUNT(*) FROM dead_letters WHERE consumer = 'catalog.availability'");
                   if (!rows.ok()) return rows.status();
                   dead = rows->rows.front().Int(0);
                   return absl::OkStatus();
                 })
                  .ok());
  EXPECT_EQ(dead, 1);
}

TEST(CatalogAvailability, HandlerInsideWriteJobAndHostilePayloads) {
  sql::TempDir dir;
  sql::SqliteOptions options;
  options.path = dir.File("catalog.db");
  options.name = "catalog";
  auto db = sql::OpenSqlite(options);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(sql::ApplyMigrations(**db, "catalog", CatalogMigrations()).ok());
  bus::Envelope envelope;
  envelope.payload = R"({"sku":"S-1","available":3,"on_hand":5})";
  ASSERT_TRUE(
      (*db)
          ->Write([&](sql::Transaction& tx) { return HandleAvailabilityChanged(tx, envelope, 42); })
          .ok());
  std::optional<SkuAvailability> stored;
  ASSERT_TRUE((*db)
                  ->Read([&](sql::Transaction& tx) {
                    absl::StatusOr<std::optional<SkuAvailability>> loaded =
                        LoadAvailability(tx, "S-1");
                    if (!loaded.ok()) return loaded.status();
                    stored = *loaded;
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->available, 3);
  EXPECT_EQ(stored->on_hand, 5);
  EXPECT_EQ(stored->updated_at_ms, 42);
  EXPECT_FALSE(stored->source_version.has_value());

  for (const std::string& hostile : std::vector<std::string>{
           "", "[]", "null", "{", R"({"available":1,"on_hand":1})",
           R"({"sku":"","available":1,"on_hand":1})", R"({"sku":7,"available":1,"on_hand":1})",
           R"({"sku":"S","available":1.5,"on_hand":1})",
           R"({"sku":"S","available":1,"on_hand":-1})",
           R"({"sku":"S","available":1e300,"on_hand":1})",
           R"({"sku":"S","available":1,"on_hand":1,"version":-3})",
           R"({"sku":")" + std::string(kAvailabilitySkuBytesMax + 1, 'x') +
               R"(","available":1,"on_hand":1})",
           R"({"sku":"S","available":1,"on_hand":1,"pad":")" +
               std::string(kAvailabilityPayloadBytesMax, ' ') + R"("})"}) {
    absl::StatusOr<SkuAvailability> parsed = ParseAvailabilityChanged(hostile);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << hostile;
  }
  (*db)->Close();
}

// Migration 0004 rebuilds prices, attributes and SKUs as keyed (WITHOUT ROWID) tables: rows
// written under the old schema survive (a repeated attribute row becomes one), and the
// processor then writes, replaces and filters on the keyed rows, a repeated list item included.
TEST(CatalogStore, KeyedChildRowsSurviveTheMigrationAndRepeatedItemsApply) {
  sql::TempDir dir;
  auto db = sql::OpenSqlite({.path = dir.File("c.db"), .name = "catalog"});
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(bus::InstallBusSchema(**db).ok());
  std::vector<sql::Migration> before_keyed;
  for (const sql::Migration& migration : CatalogMigrations()) {
    if (migration.version < 4) before_keyed.push_back(migration);
  }
  ASSERT_TRUE(sql::ApplyMigrations(**db, "catalog", before_keyed).ok());
  ASSERT_TRUE((*db)
                  ->Write([](sql::Transaction& tx) -> absl::Status {
                    for (const char* statement :
                         {"INSERT INTO catalog_prices VALUES ('old', 'USD', 500)",
                          "INSERT INTO catalog_attributes VALUES ('old', 'tag', 'a')",
                          "INSERT INTO catalog_attributes VALUES ('old', 'tag', 'a')",
                          "INSERT INTO catalog_attributes VALUES ('old', 'tag', 'b')",
                          "INSERT INTO catalog_skus VALUES ('OLD-1', 'old')"}) {
                      if (auto status = tx.Execute(statement); !status.ok()) return status.status();
                    }
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_TRUE(sql::ApplyMigrations(**db, "catalog", CatalogMigrations()).ok());
  auto count = [&](const char* query) {
    int64_t value = -1;
    EXPECT_TRUE((*db)
                    ->Read([&](sql::Transaction& tx) -> absl::Status {
                      auto result = tx.Query(query);
                      if (!result.ok()) return result.status();
                      value = result->rows.at(0).Int(0);
                      return absl::OkStatus();
                    })
                    .ok());
    return value;
  };
  EXPECT_EQ(count("SELECT COUNT(*) FROM catalog_attributes WHERE product_id = 'old'"), 2);
  EXPECT_EQ(count("SELECT amount_minor FROM catalog_prices WHERE product_id = 'old'"), 500);
  EXPECT_EQ(count("SELECT COUNT(*) FROM catalog_skus WHERE sku = 'OLD-1' AND product_id = 'old'"),
            1);

  ManualClock clock;
  SequentialIdGenerator ids("id_");
  ProductCache cache(1 << 20);
  CatalogService service(**db, clock, ids, cache);
  Processor processor(**db, clock, ids, service, nullptr);
  Json product = Product("lamp", "Lamp", "LA-1");
  product["attributes"]["colours"] = Json::array({"red", "red", "blue"});
  product["variants"].push_back(Json{{"sku", "LA-2"}, {"prices", {{"USD", "7.00"}}}});
  auto created = service.EnqueueAndWait({WriteCommand{UpdateKind::kCreate, "", product, {}}},
                                        CatalogService::Shape::kSingle);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string id = Json::parse(created->body)["product_id"];
  ASSERT_TRUE(processor.Drain().ok());
  EXPECT_EQ(processor.applied_count(), 1);
  EXPECT_EQ(processor.rejected_count(), 0);
  const std::string rows = fmt::format(
      "SELECT (SELECT COUNT(*) FROM catalog_attributes WHERE product_id = '{0}') * 100 + "
      "(SELECT COUNT(*) FROM catalog_skus WHERE product_id = '{0}') * 10 + "
      "(SELECT COUNT(*) FROM catalog_prices WHERE product_id = '{0}')",
      id);
  EXPECT_EQ(count(rows.c_str()), 322);  // material + red + blue; two SKUs; USD and EUR
  auto listed = [&](const std::string& value) {
    size_t items = 0;
    EXPECT_TRUE((*db)
                    ->Read([&](sql::Transaction& tx) -> absl::Status {
                      ProductQuery query;
                      query.attributes = {{"colours", value}};
                      query.sort = ProductSort::kPriceAscending;
                      absl::StatusOr<ProductPage> page = ListProducts(tx, query);
                      if (!page.ok()) return page.status();
                      items = page->items.size();
                      return absl::OkStatus();
                    })
                    .ok());
    return items;
  };
  EXPECT_EQ(listed("red"), 1u);
  EXPECT_EQ(listed("green"), 0u);

  // A replace rewrites the keyed rows (the repeated item again, one SKU gone, one currency).
  Json replacement = Product("lamp", "Lamp II", "LA-1", "12.00");
  replacement["attributes"]["colours"] = Json::array({"green", "green"});
  replacement["variants"][0]["prices"].erase("EUR");
  ASSERT_TRUE(service
                  .EnqueueAndWait({WriteCommand{UpdateKind::kReplace, id, replacement, {}}},
                                  CatalogService::Shape::kSingle)
                  .ok());
  ASSERT_TRUE(processor.Drain().ok());
  EXPECT_EQ(processor.applied_count(), 2);
  EXPECT_EQ(count(rows.c_str()), 211);
  EXPECT_EQ(listed("red"), 0u);
  EXPECT_EQ(listed("green"), 1u);
  EXPECT_EQ(count("SELECT COUNT(*) FROM catalog_updates WHERE state = 'queued'"), 0);
}

// The enqueue answer is written as text: it must be the bytes the DOM would dump (sorted keys,
// nlohmann's escaping), for single writes and for batches mixing accepted and refused items.
TEST(CatalogService, EnqueueAnswersAreTheDomBytes) {
  sql::TempDir dir;
  auto db = OpenCatalogDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ManualClock clock;
  SequentialIdGenerator ids("id\"\\\n_");
  ProductCache cache(1 << 20);
  CatalogService service(**db, clock, ids, cache);
  auto expect_dom_bytes = [](const std::string& body) {
    absl::StatusOr<Json> parsed = ParseJson(body);
    ASSERT_TRUE(parsed.ok()) << body;
    EXPECT_EQ(DumpJson(*parsed), body);
  };
  auto single = service.EnqueueAndWait(
      {WriteCommand{UpdateKind::kCreate, "", Product("mug", "Mug", "MU-1"), {}}},
      CatalogService::Shape::kSingle);
  ASSERT_TRUE(single.ok()) << single.status();
  expect_dom_bytes(single->body);
  const Json answer = Json::parse(single->body);
  EXPECT_EQ(answer["status"], "queued");
  EXPECT_EQ(answer["target_version"], 1);
  const std::string mug = answer["product_id"];

  auto batch = service.EnqueueAndWait(
      {WriteCommand{UpdateKind::kCreate, "", Product("cup", "Cup", "CU-1"), {}},
       WriteCommand{UpdateKind::kPatch, "no \"such\" \x01 product", Json{{"title", "X"}}, {}},
       WriteCommand{UpdateKind::kPatch, mug, Json{{"title", "Mug 2"}}, int64_t{1}},
       WriteCommand{UpdateKind::kArchive, mug, nullptr, int64_t{1}}},
      CatalogService::Shape::kBatch);
  ASSERT_TRUE(batch.ok()) << batch.status();
  expect_dom_bytes(batch->body);
  const Json updates = Json::parse(batch->body)["updates"];
  ASSERT_EQ(updates.size(), 4u);
  EXPECT_EQ(updates[0]["status"], "queued");
  EXPECT_EQ(updates[0]["kind"], "create");
  EXPECT_EQ(updates[1]["status"], "rejected");
  EXPECT_EQ(updates[2]["target_version"], 2);
  EXPECT_EQ(updates[2]["index"], 2);
  EXPECT_EQ(updates[3]["status"], "rejected");  // version 1 is stale once the patch is queued

  auto empty = service.EnqueueAndWait({}, CatalogService::Shape::kBatch);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->body, R"({"updates":[]})");
}

// The SKU ownership check covers every variant: with 11 variants a taken SKU at any position
// rejects the update, naming the first taken SKU in variant order.
TEST(CatalogProcessor, SkuTakenIsFoundInEveryChunk) {
  sql::TempDir dir;
  auto db = OpenCatalogDatabase(dir);
  ASSERT_TRUE(db.ok()) << db.status();
  ManualClock clock;
  SequentialIdGenerator ids("id_");
  ProductCache cache(1 << 20);
  CatalogService service(**db, clock, ids, cache);
  Processor processor(**db, clock, ids, service, nullptr);
  auto many = [](const std::string& handle, const std::string& sku_prefix) {
    Json product = Product(handle, "Many", sku_prefix + "-0");
    for (int i = 1; i < 11; ++i) {
      product["variants"].push_back(
          Json{{"sku", fmt::format("{}-{}", sku_prefix, i)}, {"prices", {{"USD", "1.00"}}}});
    }
    return product;
  };
  auto enqueue = [&](const Json& product) {
    auto answer = service.EnqueueAndWait({WriteCommand{UpdateKind::kCreate, "", product, {}}},
                                         CatalogService::Shape::kSingle);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? Json::parse(answer->body)["update_id"].get<std::string>() : "";
  };
  enqueue(many("first", "A"));
  ASSERT_TRUE(processor.Drain().ok());
  for (int taken : {0, 7, 8, 9, 10}) {
    Json product = many(fmt::format("second-{}", taken), fmt::format("B{}", taken));
    product["variants"][static_cast<size_t>(taken)]["sku"] = fmt::format("A-{}", taken);
    if (taken == 9) product["variants"][10]["sku"] = "A-10";  // two taken: the first is named
    const std::string update_id = enqueue(product);
    ASSERT_TRUE(processor.Drain().ok());
    auto record = service.GetUpdate(update_id);
    ASSERT_TRUE(record.ok() && record->has_value());
    EXPECT_EQ((*record)->state, UpdateState::kRejected) << taken;
    EXPECT_EQ((*record)->reason, "sku_taken");
    EXPECT_NE((*record)->message.find(fmt::format("SKU A-{} belongs", taken)), std::string::npos)
        << (*record)->message;
  }
  const std::string clean = enqueue(many("third", "C"));
  ASSERT_TRUE(processor.Drain().ok());
  auto record = service.GetUpdate(clean);
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ((*record)->state, UpdateState::kApplied);
}

}  // namespace
}  // namespace emporium::catalog
