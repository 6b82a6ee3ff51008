// kill -9 with catalog updates queued: a child process accepts updates (each acknowledged only
// once durable) and applies them with the processor; the parent SIGKILLs it mid-flight,
// reopens the same files and drains. Every accepted update must be applied exactly once: one
// product per create at version 1, one catalog.product_changed per product, nothing queued.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "catalog/module.h"
#include "catalog/seed.h"
#include "gtest/gtest.h"
#include "platform/bus/outbox.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::catalog {
namespace {

constexpr int kBatches = 20;
constexpr int kBatchProducts = 100;

std::unique_ptr<sql::Database> OpenDb(const std::string& path) {
  auto db = sql::OpenSqlite({.path = path, .name = "catalog"});
  if (!db.ok()) return nullptr;
  if (!bus::InstallBusSchema(**db).ok()) return nullptr;
  if (!sql::ApplyMigrations(**db, "catalog", CatalogMigrations()).ok()) return nullptr;
  return std::move(*db);
}

// The child: enqueue batches while the processor thread applies them; report each accepted
// batch by appending a line to `accepted_path` after its 202 is durable.
[[noreturn]] void RunChild(const std::string& dir) {
  std::unique_ptr<sql::Database> db = OpenDb(dir + "/catalog.db");
  if (!db) _exit(3);
  UuidV7Generator ids(SystemClock::Instance());
  ProductCache cache(1 << 20);
  CatalogService service(*db, SystemClock::Instance(), ids, cache);
  SearchIndex search(dir + "/search");
  (void)search.Open();
  Processor processor(*db, SystemClock::Instance(), ids, service, &search);
  service.set_enqueued_listener([&processor] { processor.Notify(); });
  processor.Start();
  std::ofstream accepted(dir + "/accepted", std::ios::app);
  for (int batch = 0; batch < kBatches; ++batch) {
    std::vector<WriteCommand> commands;
    for (int i = 0; i < kBatchProducts; ++i) {
      commands.push_back(
          {UpdateKind::kCreate, "", SeedProduct(5, batch * kBatchProducts + i), std::nullopt});
    }
    auto response = service.EnqueueAndWait(std::move(commands), CatalogService::Shape::kBatch);
    if (!response.ok()) _exit(4);
    accepted << batch << std::endl;
  }
  while (true) std::this_thread::sleep_for(std::chrono::seconds(1));  // wait to be killed
}

TEST(CatalogCrash, EveryAcceptedUpdateIsAppliedExactlyOnceAfterKill9) {
  sql::TempDir dir;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) RunChild(dir.path());
  // Kill once a few batches were accepted (bounded poll on the child's progress file).
  for (int round = 0; round < 3000; ++round) {
    std::ifstream accepted(dir.File("accepted"));
    int lines = 0;
    std::string line;
    while (std::getline(accepted, line)) ++lines;
    if (lines >= 5) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << WEXITSTATUS(status);

  int accepted_batches = 0;
  {
    std::ifstream accepted(dir.File("accepted"));
    std::string line;
    while (std::getline(accepted, line)) ++accepted_batches;
  }
  ASSERT_GE(accepted_batches, 5);

  std::unique_ptr<sql::Database> db = OpenDb(dir.File("catalog.db"));
  ASSERT_NE(db, nullptr);
  SequentialIdGenerator ids("after_");
  ProductCache cache(1 << 20);
  CatalogService service(*db, SystemClock::Instance(), ids, cache);
  SearchIndex search(dir.File("search"));
  ASSERT_TRUE(search.Open().ok());
  Processor processor(*db, SystemClock::Instance(), ids, service, &search);
  ASSERT_TRUE(processor.CatchUpSearch().ok());
  ASSERT_TRUE(processor.Drain().ok());

  ASSERT_TRUE(db->Read([&](sql::Transaction& tx) -> absl::Status {
                  auto products = tx.Query("SELECT COUNT(*), MAX(version) FROM catalog_products");
                  auto updates =
                      tx.Query("SELECT state, COUNT(*) FROM catalog_updates GROUP BY state");
                  // Nothing relays in this test: every message is still unpublished (a batch's
                  // events are one bundle row; ReadUnpublished unpacks them).
                  auto messages = bus::ReadUnpublished(tx, 1'000'000);
                  EXPECT_TRUE(products.ok() && updates.ok() && messages.ok());
                  if (!products.ok() || !updates.ok() || !messages.ok()) return absl::OkStatus();
                  int64_t events = 0;
                  std::set<std::string> event_keys;
                  for (const bus::OutboxRow& message : *messages) {
                    if (message.type != "catalog.product_changed") continue;
                    ++events;
                    event_keys.insert(message.key);
                  }
                  const int64_t product_count = products->rows[0].Int(0);
                  // Accepted batches all applied; a batch in flight at the kill may or may not
                  // have committed, but never partly.
                  EXPECT_GE(product_count, accepted_batches * kBatchProducts);
                  EXPECT_EQ(product_count % kBatchProducts, 0);
                  EXPECT_EQ(products->rows[0].Int(1), 1);  // nothing applied twice
                  EXPECT_EQ(updates->rows.size(), 1u);
                  if (updates->rows.size() != 1) return absl::OkStatus();
                  EXPECT_EQ(updates->rows[0].Text(0), "applied");
                  EXPECT_EQ(updates->rows[0].Int(1), product_count);
                  EXPECT_EQ(events, product_count);
                  EXPECT_EQ(static_cast<int64_t>(event_keys.size()), product_count);
                  return absl::OkStatus();
                }).ok());
  auto all = search.Search(SearchQuery{});
  ASSERT_TRUE(all.ok());
  int64_t product_total = 0;
  ASSERT_TRUE(db->Read([&](sql::Transaction& tx) -> absl::Status {
                  product_total = *CountProducts(tx);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(all->total, product_total);  // the index caught up with the store after restart
  db->Close();
}

}  // namespace
}  // namespace emporium::catalog
