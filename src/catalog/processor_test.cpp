// The processor's read-ahead: updates prepared off the writer thread (PrepareUpdate +
// ApplyPreparedUpdate) decide exactly what ApplyUpdate decides, and a batch read while the one
// before it commits is applied only when that one settled, never re-applies an update settled
// meanwhile, and isolates a poison payload like the unprepared path.
#include "catalog/processor.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "catalog/store.h"
#include "common/clock.h"
#include "common/ids.h"
#include "gtest/gtest.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::catalog {
namespace {

constexpr int kRunRoundsMax = 50;

Json ProductInput(const std::string& handle, const std::string& title, const std::string& sku) {
  return Json{{"handle", handle},
              {"title", title},
              {"description", "A dependable product for daily use."},
              {"brand", "Acme"},
              {"category", "home/kitchen"},
              {"status", "active"},
              {"attributes", {{"material", "steel"}, {"tags", {"a", "b"}}}},
              {"variants", {{{"sku", sku}, {"prices", {{"USD", "10.00"}, {"EUR", "9.50"}}}}}}};
}

QueuedUpdate Update(UpdateKind kind, const std::string& product_id, const Json& payload,
                    std::optional<int64_t> base_version = std::nullopt) {
  QueuedUpdate update;
  update.seq = 7;
  update.id = "u-1";
  update.product_id = product_id;
  update.kind = kind;
  update.base_version = base_version;
  update.payload = payload.dump();
  return update;
}

void ExpectSameOutcome(const std::optional<Product>& current, const QueuedUpdate& update,
                       const std::string& label) {
  constexpr int64_t kNowMs = 1'700'000'000'000;
  PreparedUpdate prepared = PrepareUpdate(update);
  ASSERT_TRUE(prepared.payload.ok()) << label;
  UpdateOutcome expected = ApplyUpdate(current, update.kind, update.product_id,
                                       Json::parse(update.payload), update.base_version, kNowMs);
  UpdateOutcome actual = ApplyPreparedUpdate(current, update, std::move(prepared), kNowMs);
  EXPECT_EQ(actual.reject, expected.reject) << label;
  EXPECT_EQ(actual.message, expected.message) << label;
  if (expected.reject == RejectReason::kNone) {
    EXPECT_EQ(actual.product, expected.product) << label;
  }
}

TEST(PreparedUpdate, DecidesExactlyWhatApplyUpdateDecides) {
  absl::StatusOr<Product> existing =
      ProductFromInput(ProductInput("pan", "Pan", "PN-1"), "p-1", 3, 1000, 2000);
  ASSERT_TRUE(existing.ok()) << existing.status();
  const std::optional<Product> none;
  const std::optional<Product> some = *existing;
  Json invalid = ProductInput("pan", "Pan", "PN-1");
  invalid.erase("handle");
  Json wrong_type = ProductInput("pan", "Pan", "PN-1");
  wrong_type["variants"] = "many";

  ExpectSameOutcome(none, Update(UpdateKind::kCreate, "p-1", ProductInput("pan", "Pan", "PN-1")),
                    "create");
  ExpectSameOutcome(none, Update(UpdateKind::kCreate, "p-1", ProductInput("pan", "Pan", "PN-1"), 0),
                    "create based on 0");
  ExpectSameOutcome(some, Update(UpdateKind::kCreate, "p-1", ProductInput("pan", "Pan", "PN-1")),
                    "create of an existing id");
  ExpectSameOutcome(none, Update(UpdateKind::kCreate, "p-1", invalid), "create without handle");
  ExpectSameOutcome(none, Update(UpdateKind::kCreate, "p-1", wrong_type), "create, bad variants");
  ExpectSameOutcome(none, Update(UpdateKind::kCreate, "p-1", Json::array({1, 2})),
                    "create of a non-object");
  ExpectSameOutcome(some, Update(UpdateKind::kReplace, "p-1", ProductInput("pot", "Pot", "PT-1")),
                    "replace");
  ExpectSameOutcome(some,
                    Update(UpdateKind::kReplace, "p-1", ProductInput("pot", "Pot", "PT-1"), 3),
                    "replace based on the current version");
  ExpectSameOutcome(some,
                    Update(UpdateKind::kReplace, "p-1", ProductInput("pot", "Pot", "PT-1"), 2),
                    "replace based on a stale version");
  ExpectSameOutcome(none, Update(UpdateKind::kReplace, "p-1", ProductInput("pot", "Pot", "PT-1")),
                    "replace of a missing product");
  ExpectSameOutcome(some, Update(UpdateKind::kReplace, "p-1", invalid), "replace, invalid");
  ExpectSameOutcome(some, Update(UpdateKind::kPatch, "p-1", Json{{"title", "Pan 2"}}), "patch");
  ExpectSameOutcome(some, Update(UpdateKind::kPatch, "p-1", Json{{"title", 5}}), "bad patch");
  ExpectSameOutcome(none, Update(UpdateKind::kPatch, "p-1", Json{{"title", "X"}}),
                    "patch of a missing product");
  ExpectSameOutcome(some, Update(UpdateKind::kArchive, "p-1", Json::object()), "archive");

  // A payload that is not JSON is reported as such, for the job to refuse.
  QueuedUpdate garbage = Update(UpdateKind::kCreate, "p-1", Json::object());
  garbage.payload = "{not json";
  EXPECT_FALSE(PrepareUpdate(garbage).payload.ok());
}

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = sql::OpenSqlite({.path = dir_.File("c.db"), .name = "catalog"});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    ASSERT_TRUE(bus::InstallBusSchema(*db_).ok());
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "catalog", CatalogMigrations()).ok());
    service_ = std::make_unique<CatalogService>(*db_, clock_, ids_, cache_);
    ProcessorOptions options;
    options.batch_updates_max = 2;  // several batches, each read while the previous commits
    options.job_updates_max = 1;
    options.failure_backoff = absl::ZeroDuration();
    processor_ = std::make_unique<Processor>(*db_, clock_, ids_, *service_, nullptr, options);
  }
  void TearDown() override {
    processor_.reset();
    if (db_ != nullptr) db_->Close();
  }

  // Queues `update` directly (a payload the service would refuse, or a chosen id).
  void Queue(QueuedUpdate update) {
    ASSERT_TRUE(db_->Write([&](sql::Transaction& tx) -> absl::Status {
                     return InsertUpdate(tx, update, 0).status();
                   })
                    .ok());
  }
  UpdateRecord Record(const std::string& id) {
    auto record = service_->GetUpdate(id);
    EXPECT_TRUE(record.ok() && record->has_value()) << id;
    return record.ok() && record->has_value() ? **record : UpdateRecord{};
  }
  // RunOnce until the queue is empty, failures included (bounded).
  void RunUntilEmpty() {
    for (int round = 0; round < kRunRoundsMax; ++round) {
      absl::StatusOr<int64_t> settled = processor_->RunOnce();
      if (settled.ok() && *settled == 0) return;
    }
    ADD_FAILURE() << "queue not empty after " << kRunRoundsMax << " rounds";
  }

  sql::TempDir dir_;
  std::unique_ptr<sql::Database> db_;
  ManualClock clock_;
  SequentialIdGenerator ids_{"id_"};
  ProductCache cache_{1 << 20};
  std::unique_ptr<CatalogService> service_;
  std::unique_ptr<Processor> processor_;
};

QueuedUpdate Queued(const std::string& id, UpdateKind kind, const std::string& product_id,
                    const Json& payload) {
  QueuedUpdate update = Update(kind, product_id, payload);
  update.seq = 0;
  update.id = id;
  return update;
}

TEST_F(ReadAheadTest, ABatchReadAheadIsDroppedWhenTheOneBeforeFailsAndOrderIsKept) {
  Queue(Queued("u-pan", UpdateKind::kCreate, "pan", ProductInput("pan", "Pan", "PN-1")));
  RunUntilEmpty();
  ASSERT_TRUE(db_->Write([](sql::Transaction& tx) {
                   return tx
                       .Execute(
                           "CREATE TRIGGER inject_bad BEFORE UPDATE ON catalog_products "
                           "WHEN NEW.document LIKE '%\"title\":\"Bad\"%' "
                           "BEGIN SELECT RAISE(ABORT, 'injected'); END")
                       .status();
                 })
                  .ok());
  // Batches of two: [bad, good] fails (good is held behind bad); [pot, pot 2] was read ahead
  // meanwhile and must wait; [cup] after.
  Queue(Queued("u-bad", UpdateKind::kPatch, "pan", Json{{"title", "Bad"}}));
  Queue(Queued("u-good", UpdateKind::kPatch, "pan", Json{{"title", "Good"}}));
  Queue(Queued("u-pot", UpdateKind::kCreate, "pot", ProductInput("pot", "Pot", "PT-1")));
  Queue(Queued("u-pot2", UpdateKind::kPatch, "pot", Json{{"title", "Pot 2"}}));
  Queue(Queued("u-cup", UpdateKind::kCreate, "cup", ProductInput("cup", "Cup", "CP-1")));

  EXPECT_FALSE(processor_->RunOnce().ok());
  EXPECT_FALSE(processor_->RunOnce().ok());  // the queue is read again: the same batch fails
  for (const char* id : {"u-bad", "u-good", "u-pot", "u-pot2", "u-cup"}) {
    EXPECT_EQ(Record(id).state, UpdateState::kQueued) << id;
  }
  ASSERT_TRUE(db_->Write([](sql::Transaction& tx) {
                   return tx.Execute("DROP TRIGGER inject_bad").status();
                 })
                  .ok());
  RunUntilEmpty();
  auto pan = service_->GetStoredProduct("pan");
  ASSERT_TRUE(pan.ok() && pan->has_value());
  EXPECT_EQ((*pan)->product.title, "Good");
  EXPECT_EQ((*pan)->product.version, 3);
  auto pot = service_->GetStoredProduct("pot");
  ASSERT_TRUE(pot.ok() && pot->has_value());
  EXPECT_EQ((*pot)->product.title, "Pot 2");
  EXPECT_EQ((*pot)->product.version, 2);
  EXPECT_EQ(Record("u-cup").state, UpdateState::kApplied);
  EXPECT_EQ(processor_->applied_count(), 6);
}

TEST_F(ReadAheadTest, AnUpdateSettledAfterItWasReadAheadIsNotAppliedAgain) {
  Queue(Queued("u-a", UpdateKind::kCreate, "a", ProductInput("a", "A", "A-1")));
  Queue(Queued("u-b", UpdateKind::kCreate, "b", ProductInput("b", "B", "B-1")));
  Queue(Queued("u-c", UpdateKind::kCreate, "c", ProductInput("c", "C", "C-1")));
  Queue(Queued("u-d", UpdateKind::kCreate, "d", ProductInput("d", "D", "D-1")));
  // The first batch [a, b] applies and [c, d] is read ahead while it commits.
  absl::StatusOr<int64_t> first = processor_->RunOnce();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 2);
  // Someone settles c in between (a redelivery's first delivery, as it were).
  const int64_t c_seq = Record("u-c").update.seq;
  ASSERT_TRUE(db_->Write([&](sql::Transaction& tx) -> absl::Status {
                   return MarkUpdateRejected(tx, c_seq, RejectReason::kProcessingFailed,
                                             "settled elsewhere", 0)
                       .status();
                 })
                  .ok());
  RunUntilEmpty();
  EXPECT_EQ(Record("u-c").state, UpdateState::kRejected);
  auto c = service_->GetStoredProduct("c");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());
  EXPECT_EQ(Record("u-d").state, UpdateState::kApplied);
  EXPECT_EQ(processor_->applied_count(), 3);
}

TEST_F(ReadAheadTest, APoisonPayloadReadAheadIsIsolatedAndTheQueueMovesOn) {
  Queue(Queued("u-a", UpdateKind::kCreate, "a", ProductInput("a", "A", "A-1")));
  Queue(Queued("u-b", UpdateKind::kCreate, "b", ProductInput("b", "B", "B-1")));
  QueuedUpdate garbage = Queued("u-x", UpdateKind::kCreate, "x", Json::object());
  garbage.payload = "\xff{not json";
  Queue(garbage);
  Queue(Queued("u-c", UpdateKind::kCreate, "c", ProductInput("c", "C", "C-1")));
  RunUntilEmpty();
  EXPECT_EQ(Record("u-a").state, UpdateState::kApplied);
  EXPECT_EQ(Record("u-b").state, UpdateState::kApplied);
  EXPECT_EQ(Record("u-x").state, UpdateState::kRejected);
  EXPECT_EQ(Record("u-x").reason, "processing_failed");
  EXPECT_EQ(Record("u-c").state, UpdateState::kApplied);
  EXPECT_EQ(processor_->poisoned_count(), 1);
}

}  // namespace
}  // namespace emporium::catalog
