// The inventory service around the engine: a batch's events go to the outbox together (bundled
// into rows of consecutive seqs, in publishing order), and a bus command that finds
// the engine's queue full stays in the durable command queue and is dispatched again later.
#include "inventory/service.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "inventory/messages.h"
#include "platform/bus/outbox.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::inventory {
namespace {

constexpr auto kWaitMax = std::chrono::seconds(60);

// Polls `condition` every millisecond, up to kWaitMax.
bool Eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + kWaitMax;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

// Forwards to a real database; once armed, the next write (Write or SubmitWrite) waits until
// released (the engine's writer stalls on a slow disk while everything else goes on).
class GatedDatabase final : public sql::Database {
 public:
  explicit GatedDatabase(sql::Database& inner) : inner_(inner) {}
  absl::Status Write(sql::WriteJob job) override {
    if (absl::Status gate = Gate(); !gate.ok()) return gate;
    return inner_.Write(std::move(job));
  }
  // The engine hands its batches over with SubmitWrite: held the same way, on its thread.
  void SubmitWrite(sql::WriteJob job, sql::WriteDone done) override {
    if (absl::Status gate = Gate(); !gate.ok()) {
      done(gate);
      return;
    }
    inner_.SubmitWrite(std::move(job), std::move(done));
  }
  absl::Status Read(sql::ReadJob job) override { return inner_.Read(std::move(job)); }
  void AddCommitListener(std::function<void()> listener) override {
    inner_.AddCommitListener(std::move(listener));
  }
  sql::WriteStats stats() const override { return inner_.stats(); }
  std::string_view dialect() const override { return inner_.dialect(); }
  void Close() override { inner_.Close(); }

  void Arm() {
    std::lock_guard lock(mutex_);
    armed_ = true;
  }
  bool WaitCaught() {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, kWaitMax, [this] { return caught_; });
  }
  void Release() {
    std::lock_guard lock(mutex_);
    caught_ = false;
    changed_.notify_all();
  }

 private:
  absl::Status Gate() {
    std::unique_lock lock(mutex_);
    if (armed_) {
      armed_ = false;
      caught_ = true;
      changed_.notify_all();
      if (!changed_.wait_for(lock, kWaitMax, [this] { return !caught_; })) {
        return absl::DeadlineExceededError("test gate never opened");
      }
    }
    return absl::OkStatus();
  }

  sql::Database& inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool armed_ = false;
  bool caught_ = false;
};

class InventoryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    sql::SqliteOptions options;
    options.path = dir_.File("inventory.db");
    options.name = "inventory";
    auto db = sql::OpenSqlite(options);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    ASSERT_TRUE(bus::InstallBusSchema(*db_).ok());
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "inventory", InventoryMigrations()).ok());
    gated_ = std::make_unique<GatedDatabase>(*db_);
  }
  void TearDown() override {
    if (service_) service_->Stop();
    service_.reset();
    if (db_) db_->Close();
  }

  void StartService(size_t queue_capacity) {
    ServiceOptions options;
    options.engine.queue_capacity = queue_capacity;
    options.engine.verify_invariants_each_batch = true;
    options.sweep_interval_ms = 0;
    options.queue_poll_interval_ms = 10;
    auto service = InventoryService::Create(*gated_, SystemClock::Instance(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = std::move(*service);
    ASSERT_TRUE(service_->Start().ok());
    ASSERT_TRUE(service_->AddLocation({LocationId("w1"), "eu", ""}).ok());
    CommandResult received =
        service_->Execute(cmd::Receive{Sku("sku-1"), LocationId("w1"), 1000, "po"});
    ASSERT_TRUE(received.status.ok()) << received.status;
  }

  std::vector<bus::OutboxRow> Outbox() {
    std::vector<bus::OutboxRow> rows;
    absl::Status read = db_->Read([&rows](sql::Transaction& transaction) -> absl::Status {
      absl::StatusOr<std::vector<bus::OutboxRow>> unpublished =
          bus::ReadUnpublished(transaction, 100'000);
      if (!unpublished.ok()) return unpublished.status();
      rows = *std::move(unpublished);
      return absl::OkStatus();
    });
    EXPECT_TRUE(read.ok()) << read;
    return rows;
  }

  sql::TempDir dir_;
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<GatedDatabase> gated_;
  std::unique_ptr<InventoryService> service_;
};

TEST_F(InventoryServiceTest, BatchEventsGetConsecutiveSeqsInPublishingOrder) {
  StartService(/*queue_capacity=*/65'536);
  // Hold the writer so the reserves pile up and commit as one large batch (several insert
  // chunks: 32, 8 and single rows).
  gated_->Arm();
  std::thread first([this] {
    service_->Execute(cmd::Adjust{Sku("sku-1"), LocationId("w1"), 1, "stall"});
  });
  ASSERT_TRUE(gated_->WaitCaught());
  constexpr int kReserves = 45;
  std::atomic<int> answered{0};
  std::atomic<int> reserved{0};
  for (int i = 0; i < kReserves; ++i) {
    service_->Submit(
        cmd::Reserve{ReservationId(fmt::format("r{}", i)), {{Sku("sku-1"), 1}}, "eu", 60'000},
        [&](CommandResult result) {
          if (result.status.ok() &&
              std::get<ReserveOutcome>(result.outcome) == ReserveOutcome::kReserved) {
            reserved.fetch_add(1);
          }
          answered.fetch_add(1);
        });
  }
  gated_->Release();
  first.join();
  ASSERT_TRUE(Eventually([&] { return answered.load() == kReserves; }));
  EXPECT_EQ(reserved.load(), kReserves);
  EXPECT_GE(service_->engine().stats().batch_commands_largest, kReserves);

  const std::vector<bus::OutboxRow> rows = Outbox();
  ASSERT_FALSE(rows.empty());
  std::set<std::string> ids;
  int reserved_events = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    // A bundle's messages share its row's seq; the rows' seqs have no gaps.
    if (i > 0) {
      EXPECT_TRUE(rows[i].seq == rows[i - 1].seq || rows[i].seq == rows[i - 1].seq + 1)
          << "gap at message " << i;
    }
    absl::StatusOr<bus::Envelope> envelope = bus::Deserialize(rows[i].envelope);
    ASSERT_TRUE(envelope.ok()) << envelope.status();
    EXPECT_EQ(envelope->id, rows[i].id);
    EXPECT_EQ(envelope->type, rows[i].type);
    EXPECT_EQ(envelope->key, rows[i].key);
    ids.insert(rows[i].id);
    if (envelope->type == messages::kReserved) ++reserved_events;
  }
  EXPECT_EQ(ids.size(), rows.size());
  EXPECT_EQ(reserved_events, kReserves);
}

// inventory.availability_changed goes out for a batch that changed what is available or on
// hand, not for one that only moved units from reserved to allocated.
TEST_F(InventoryServiceTest, AvailabilityChangedOnlyWhenAvailableOrOnHandChanged) {
  StartService(/*queue_capacity=*/65'536);
  auto availability_events = [this] {
    std::vector<std::string> payloads;
    for (const bus::OutboxRow& row : Outbox()) {
      if (row.type != messages::kAvailabilityChanged) continue;
      absl::StatusOr<bus::Envelope> envelope = bus::Deserialize(row.envelope);
      EXPECT_TRUE(envelope.ok()) << envelope.status();
      if (envelope.ok()) payloads.push_back(envelope->payload);
    }
    return payloads;
  };
  auto run = [this](Command command) {
    CommandResult result = service_->Execute(std::move(command));
    ASSERT_TRUE(result.status.ok()) << result.status;
  };
  ASSERT_EQ(availability_events().size(), 1u);  // the receive
  run(cmd::Reserve{ReservationId("r-1"), {{Sku("sku-1"), 2}}, "eu", 60'000});
  ASSERT_EQ(availability_events().size(), 2u);
  run(cmd::Allocate{ReservationId("r-1"), OrderId("o-1")});  // reserved -> allocated: no event
  ASSERT_EQ(availability_events().size(), 2u);
  run(cmd::Ship{OrderId("o-1"), "s-1", {{Sku("sku-1"), 2}}});  // on hand falls
  std::vector<std::string> events = availability_events();
  ASSERT_EQ(events.size(), 3u);
  absl::StatusOr<messages::AvailabilityChangedEvent> last =
      messages::ParseAvailabilityChanged(events.back());
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(last->available, 998);
  EXPECT_EQ(last->on_hand, 998);
}

TEST_F(InventoryServiceTest, PublishAllFailsWholeOnADuplicateId) {
  StartService(/*queue_capacity=*/65'536);
  const size_t before = Outbox().size();
  std::vector<bus::Envelope> envelopes;
  for (int i = 0; i < 80; ++i) {
    bus::Envelope envelope;
    envelope.id = fmt::format("m{}", i);
    envelope.type = "test.event";
    envelope.source = "test";
    envelope.key = "k";
    envelope.occurred_at_ms = 1;
    envelope.payload = "{}";
    envelopes.push_back(envelope);
  }
  envelopes.push_back(envelopes[3]);  // an id repeated within the call
  absl::Status written = db_->Write([&envelopes](sql::Transaction& transaction) {
    return bus::PublishAll(transaction, envelopes);
  });
  EXPECT_TRUE(absl::IsAlreadyExists(written)) << written;
  EXPECT_EQ(Outbox().size(), before);

  // Two bundles, the second headed by an id already in the outbox: the insert fails after the
  // first bundle's row went in, and the job's savepoint rolls that row back too.
  ASSERT_TRUE(db_->Write([&envelopes](sql::Transaction& transaction) {
                   return bus::PublishAll(transaction, {envelopes[0]});
                 })
                  .ok());
  const size_t with_first = Outbox().size();
  std::vector<bus::Envelope> clashing(envelopes.begin() + 1,
                                      envelopes.begin() + 1 + bus::kBundleMessagesMax);
  clashing.push_back(envelopes[0]);
  clashing.push_back(envelopes[bus::kBundleMessagesMax + 1]);
  written = db_->Write([&clashing](sql::Transaction& transaction) {
    return bus::PublishAll(transaction, clashing);
  });
  EXPECT_TRUE(absl::IsAlreadyExists(written)) << written;
  EXPECT_EQ(Outbox().size(), with_first);  // the job's savepoint rolled every bundle back
  ASSERT_TRUE(db_->Write([&envelopes](sql::Transaction& transaction) -> absl::Status {
                   return transaction.Execute("DELETE FROM outbox WHERE id = ?", {envelopes[0].id})
                       .status();
                 })
                  .ok());

  envelopes.pop_back();
  envelopes.front().type = "Not Valid";
  written = db_->Write([&envelopes](sql::Transaction& transaction) {
    return bus::PublishAll(transaction, envelopes);
  });
  EXPECT_TRUE(absl::IsInvalidArgument(written)) << written;
  EXPECT_EQ(Outbox().size(), before);

  envelopes.front().type = "test.event";
  written = db_->Write([&envelopes](sql::Transaction& transaction) {
    return bus::PublishAll(transaction, envelopes);
  });
  ASSERT_TRUE(written.ok()) << written;
  const std::vector<bus::OutboxRow> rows = Outbox();
  ASSERT_EQ(rows.size(), before + envelopes.size());
  for (size_t i = 0; i < envelopes.size(); ++i) {
    const bus::OutboxRow& row = rows[before + i];
    EXPECT_EQ(row.id, envelopes[i].id);
    EXPECT_EQ(row.envelope, bus::Serialize(envelopes[i]));
    EXPECT_EQ(row.seq, rows[before].seq + static_cast<int64_t>(i / bus::kBundleMessagesMax));
  }
}

TEST_F(InventoryServiceTest, BusCommandRefusedByAFullQueueIsDispatchedAgain) {
  // Two slots: StartService's location and receive fit while the engine starts up.
  StartService(/*queue_capacity=*/2);
  // Stall the engine's writer with one command, and fill both queue slots with two more.
  gated_->Arm();
  std::atomic<int> answered{0};
  auto count = [&answered](CommandResult result) {
    EXPECT_TRUE(result.status.ok()) << result.status;
    answered.fetch_add(1);
  };
  service_->Submit(cmd::Reserve{ReservationId("in-writer"), {{Sku("sku-1"), 1}}, "eu", 60'000},
                   count);
  ASSERT_TRUE(gated_->WaitCaught());
  for (const char* id : {"queued-0", "queued-1"}) {
    service_->Submit(cmd::Reserve{ReservationId(id), {{Sku("sku-1"), 1}}, "eu", 60'000}, count);
  }

  // A bus command arrives: accepted into the durable queue (the consumer's write job), then
  // the pump's dispatch finds the engine queue full.
  bus::Envelope command;
  command.id = "bus-command-1";
  command.type = std::string(messages::kReserve);
  command.source = "ordering";
  command.key = "sku-1";
  command.correlation_id = "order-1";
  command.occurred_at_ms = 1;
  command.payload = messages::CommandPayload(
      cmd::Reserve{ReservationId("from-bus"), {{Sku("sku-1"), 2}}, "eu", 60'000});
  ASSERT_TRUE(db_->Write([&](sql::Transaction& transaction) {
                   return service_->AcceptCommand(transaction, command);
                 })
                  .ok());
  ASSERT_TRUE(Eventually([&] { return service_->engine().stats().queue_full_rejections >= 1; }));
  absl::StatusOr<std::optional<Reservation>> missing =
      service_->FindReservation(ReservationId("from-bus"));
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  // The disk recovers: the queued command is dispatched again and applied once.
  gated_->Release();
  ASSERT_TRUE(Eventually([&] { return answered.load() == 3; }));
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<int64_t> queued = service_->QueuedCommandCount();
    return queued.ok() && *queued == 0;
  }));
  absl::StatusOr<std::optional<Reservation>> applied =
      service_->FindReservation(ReservationId("from-bus"));
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_TRUE(applied->has_value());
  absl::StatusOr<std::vector<StockLevel>> stock = service_->Availability({Sku("sku-1")});
  ASSERT_TRUE(stock.ok()) << stock.status();
  ASSERT_EQ(stock->size(), 1u);
  EXPECT_EQ(stock->front().reserved, 5);  // 1 + 1 + 1 + 2, the bus command exactly once
}

}  // namespace
}  // namespace emporium::inventory
