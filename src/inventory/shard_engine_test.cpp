#include "inventory/shard_engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::inventory {
namespace {

using ::testing::ElementsAre;

constexpr auto kWaitMax = std::chrono::seconds(300);

// Forwards to a real database; fails writes while `fail_writes` is set (fault injection).
class FaultyDatabase final : public sql::Database {
 public:
  explicit FaultyDatabase(sql::Database& inner) : inner_(inner) {}
  absl::Status Write(sql::WriteJob job) override {
    if (fail_writes.load()) return absl::UnavailableError("injected: disk on fire");
    if (absl::Status gate = Gate(); !gate.ok()) return gate;
    return inner_.Write(std::move(job));
  }
  void HoldWrites() {
    std::lock_guard lock(gate_mutex_);
    hold_writes_ = true;
  }
  // Holds only the next write to enter (until ReleaseWrites); the ones after it pass.
  void HoldNextWrite() {
    std::lock_guard lock(gate_mutex_);
    hold_next_write_ = true;
  }
  void ReleaseWrites() {
    std::lock_guard lock(gate_mutex_);
    hold_writes_ = false;
    hold_next_write_ = false;
    holding_one_ = false;
    gate_.notify_all();
  }
  // Waits (bounded) until `count` writes have entered Write() in total.
  bool WaitForWritesEntered(int64_t count) {
    std::unique_lock lock(gate_mutex_);
    return gate_.wait_for(lock, kWaitMax, [&] { return writes_entered_ >= count; });
  }
  int64_t writes_entered() {
    std::lock_guard lock(gate_mutex_);
    return writes_entered_;
  }
  void SubmitWrite(sql::WriteJob job, sql::WriteDone done) override {
    if (fail_writes.load()) {
      done(absl::UnavailableError("injected: disk on fire"));
      return;
    }
    if (absl::Status gate = Gate(); !gate.ok()) {
      done(gate);
      return;
    }
    inner_.SubmitWrite(std::move(job), std::move(done));
  }
  absl::Status Read(sql::ReadJob job) override {
    if (fail_reads.load()) return absl::UnavailableError("injected: unreadable");
    return inner_.Read(std::move(job));
  }
  void AddCommitListener(std::function<void()> listener) override {
    inner_.AddCommitListener(std::move(listener));
  }
  sql::WriteStats stats() const override { return inner_.stats(); }
  std::string_view dialect() const override { return inner_.dialect(); }
  void Close() override { inner_.Close(); }

  std::atomic<bool> fail_writes{false};
  std::atomic<bool> fail_reads{false};

 private:
  // While held, a write waits here: the engine's writer thread, which hands its batches over,
  // stalls as behind a slow disk.
  absl::Status Gate() {
    std::unique_lock lock(gate_mutex_);
    ++writes_entered_;
    gate_.notify_all();
    bool held = hold_writes_;
    if (!held && std::exchange(hold_next_write_, false)) held = holding_one_ = true;
    if (held &&
        !gate_.wait_for(lock, kWaitMax, [this] { return !hold_writes_ && !holding_one_; })) {
      return absl::DeadlineExceededError("test gate never opened");
    }
    return absl::OkStatus();
  }

  sql::Database& inner_;
  std::mutex gate_mutex_;
  std::condition_variable gate_;
  bool hold_writes_ = false;
  bool hold_next_write_ = false;
  bool holding_one_ = false;
  int64_t writes_entered_ = 0;
};

// Counts callbacks and lets a test wait for all of them, bounded.
class Latch {
 public:
  explicit Latch(int64_t count) : remaining_(count) {}
  void CountDown() {
    std::lock_guard lock(mutex_);
    if (--remaining_ == 0) done_.notify_all();
  }
  bool Wait() {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, kWaitMax, [this] { return remaining_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  int64_t remaining_;
};

template <typename T>
T OutcomeOf(const CommandResult& result) {
  EXPECT_TRUE(result.status.ok()) << result.status;
  const T* outcome = std::get_if<T>(&result.outcome);
  return outcome != nullptr ? *outcome : T{};
}

// One random command of hammering thread `t` at step `i`, on reservation ids "<prefix>t<t>-<n>":
// reserve (twice as likely), release, allocate or cancel; with `settling` also ship, deliver,
// return and extend, and reserves that sometimes replace an earlier reservation.
Command RandomHammerCommand(std::mt19937& random, const std::string& prefix, int t, int i,
                            const std::vector<std::string>& skus, bool settling) {
  const std::string id = fmt::format("{}t{}-{}", prefix, t, random() % (i + 1));
  const std::string sku = skus[random() % skus.size()];
  switch (random() % (settling ? 9 : 5)) {
    case 0:
    case 1: {
      // Braced initialization evaluates left to right: the draws keep their order.
      cmd::Reserve reserve{ReservationId(fmt::format("{}t{}-{}", prefix, t, i)),
                           {{Sku(sku), 1 + static_cast<int64_t>(random() % 3)}},
                           random() % 2 ? "eu" : "us",
                           1 + static_cast<int64_t>(random() % 2000)};
      if (settling && random() % 3 == 0) reserve.replaces = ReservationId(id);
      return reserve;
    }
    case 2:
      return cmd::Release{ReservationId(id)};
    case 3:
      return cmd::Allocate{ReservationId(id), OrderId("o" + id)};
    case 4:
      return cmd::CancelAllocation{OrderId("o" + id)};
    case 5:
      return cmd::Ship{OrderId("o" + id), "s" + id, {{Sku(sku), 1}}};
    case 6:
      return cmd::Deliver{OrderId("o" + id)};
    case 7:
      return cmd::Return{OrderId("o" + id), "ret" + id, {{Sku(sku), 1}}};
    default:
      return cmd::Extend{ReservationId(id), 1000};
  }
}

class ShardEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    sql::SqliteOptions options;
    options.path = dir_.File("inventory.db");
    options.name = "inventory";
    auto db = sql::OpenSqlite(options);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    faulty_ = std::make_unique<FaultyDatabase>(*db_);
    store_ = std::make_unique<InventoryStore>(*db_);
    ASSERT_TRUE(store_->Migrate(clock_).ok());
  }
  void TearDown() override {
    if (engine_) engine_->Stop();
    engine_.reset();
    if (db_) db_->Close();
  }

  void StartEngine(size_t shard_count = 1, size_t queue_capacity = 65'536,
                   int64_t batch_linger_us = EngineOptions{}.batch_linger_us) {
    EngineOptions options;
    options.shard_count = shard_count;
    options.queue_capacity = queue_capacity;
    options.batch_linger_us = batch_linger_us;
    options.verify_invariants_each_batch = true;
    auto engine = ShardEngine::Start(*faulty_, clock_, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  // An engine that evicts settled reservations `retention_ms` after their last change.
  void StartEvictingEngine(size_t shard_count, int64_t retention_ms, int hash_bits = 64) {
    EngineOptions options;
    options.shard_count = shard_count;
    options.settled_retention_ms = retention_ms;
    options.evicted_hash_bits = hash_bits;
    options.verify_invariants_each_batch = true;
    auto engine = ShardEngine::Start(*faulty_, clock_, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  // Locations eu1 (region eu) and us1 (us), and `quantity` of SKUs a, b, c and d at each.
  std::vector<std::string> StockFourSkusAtTwoLocations(int64_t quantity) {
    EXPECT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
    EXPECT_TRUE(engine_->AddLocation({LocationId("us1"), "us", "Newark"}).ok());
    const std::vector<std::string> skus = {"a", "b", "c", "d"};
    for (const std::string& sku : skus) {
      Receive(sku, "eu1", quantity);
      Receive(sku, "us1", quantity);
    }
    return skus;
  }

  // Joins `threads` while a sweeper thread expires what is due 20 times alongside them; a failed
  // sweep counts in `errors`.
  void JoinWhileSweeping(std::vector<std::thread>& threads, std::atomic<int>& errors) {
    std::thread sweeper([&] {
      for (int i = 0; i < 20; ++i) {
        if (!engine_->SweepExpired().ok()) errors.fetch_add(1);
      }
    });
    for (auto& thread : threads) thread.join();
    sweeper.join();
  }

  // An engine that evicts every settled reservation at once, 10 units of "a" at "eu1", and r1
  // (4 of them) reserved, released and so evicted.
  void StartWithReleasedR1Evicted() {
    StartEvictingEngine(1, /*retention_ms=*/0);
    ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
    Receive("a", "eu1", 10);
    ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 4)), ReserveOutcome::kReserved);
    ASSERT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("r1")})),
              ReleaseOutcome::kReleased);
    ASSERT_EQ(engine_->stats().resident_reservations, 0);
  }

  void Restart(size_t shard_count = 1) {
    engine_->Stop();
    engine_.reset();
    StartEngine(shard_count);
  }

  void Receive(const std::string& sku, const std::string& location, int64_t quantity) {
    CommandResult result =
        engine_->Execute(cmd::Receive{Sku(sku), LocationId(location), quantity, "po"});
    ASSERT_TRUE(result.status.ok()) << result.status;
    ASSERT_EQ(std::get<StockOutcome>(result.outcome), StockOutcome::kApplied);
  }

  CommandResult Reserve(const std::string& id, const std::string& sku, int64_t quantity,
                        int64_t ttl_ms = 60'000) {
    return engine_->Execute(cmd::Reserve{ReservationId(id), {{Sku(sku), quantity}}, "eu", ttl_ms});
  }

  // The durable ledger projects exactly onto the durable stock table.
  void ExpectLedgerMatchesStock() {
    auto ledger = store_->LoadLedger();
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    auto projected = Project(*ledger);
    ASSERT_TRUE(projected.ok()) << projected.status();
    auto stock = store_->LoadAllStock();
    ASSERT_TRUE(stock.ok()) << stock.status();
    EXPECT_EQ(*projected, *stock);
    auto report = store_->Rebuild(InventoryStore::RebuildMode::kCheckOnly);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->mismatches.empty()) << report->mismatches.front();
  }

  StockLevel DurableStock(const std::string& sku, const std::string& location) {
    auto levels = store_->LoadStock({Sku(sku)});
    EXPECT_TRUE(levels.ok());
    for (const StockLevel& level : *levels) {
      if (level.location == LocationId(location)) return level;
    }
    return StockLevel{};
  }

  sql::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<FaultyDatabase> faulty_;
  std::unique_ptr<InventoryStore> store_;
  std::unique_ptr<ShardEngine> engine_;
};

TEST_F(ShardEngineTest, RejectsBadOptions) {
  EngineOptions options;
  options.shard_count = 0;
  EXPECT_EQ(ShardEngine::Start(*db_, clock_, options).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (int64_t linger_us : {int64_t{-1}, kBatchLingerMaxUs + 1}) {
    EngineOptions lingering;
    lingering.batch_linger_us = linger_us;
    EXPECT_EQ(ShardEngine::Start(*db_, clock_, lingering).status().code(),
              absl::StatusCode::kInvalidArgument)
        << linger_us;
  }
}

// Group-commit gathering: after a batch of four, the writer waits (bounded) for four commands
// before committing again: a lone command waits out the bound, then commits alone; after a
// batch of two, two commands submitted one after the other share a commit; Stop() during the
// wait still answers what was queued.
TEST_F(ShardEngineTest, LingersForAsManyCommandsAsTheLastBatchHeld) {
  StartEngine(/*shard_count=*/1, /*queue_capacity=*/65'536, kBatchLingerMaxUs);
  ASSERT_TRUE(engine_->AddLocation({LocationId("w1"), "eu", ""}).ok());
  Receive("sku-1", "w1", 100);
  std::atomic<int> next_id{0};
  auto submit_all = [&](int count) {
    auto answered = std::make_shared<Latch>(count);
    auto failures = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < count; ++i) {
      engine_->Submit(
          cmd::Reserve{
              ReservationId(fmt::format("r{}", next_id++)), {{Sku("sku-1"), 1}}, "eu", 60'000},
          [answered, failures](CommandResult result) {
            if (!result.status.ok() ||
                std::get<ReserveOutcome>(result.outcome) != ReserveOutcome::kReserved) {
              failures->fetch_add(1);
            }
            answered->CountDown();
          });
    }
    return std::make_pair(answered, failures);
  };
  // A batch of `count`: the writer is held in Write() with one command while `count` queue up.
  // Returns the failures among all of them.
  auto held_batch_of = [&](int count) {
    faulty_->HoldWrites();
    const int64_t entered = faulty_->writes_entered();
    auto [held, held_failures] = submit_all(1);
    EXPECT_TRUE(faulty_->WaitForWritesEntered(entered + 1));
    auto [batch, batch_failures] = submit_all(count);
    faulty_->ReleaseWrites();
    EXPECT_TRUE(held->Wait());
    EXPECT_TRUE(batch->Wait());
    return *held_failures + *batch_failures;
  };
  EXPECT_EQ(held_batch_of(4), 0);
  EXPECT_EQ(engine_->stats().batch_commands_largest, 4);

  // A lone command now waits out the bound for three more that never come, then commits alone.
  int64_t batches = engine_->stats().batches_committed;
  const auto lone_start = std::chrono::steady_clock::now();
  auto [lone, lone_failures] = submit_all(1);
  ASSERT_TRUE(lone->Wait());
  EXPECT_GE(std::chrono::steady_clock::now() - lone_start,
            std::chrono::microseconds(kBatchLingerMaxUs));
  EXPECT_EQ(*lone_failures, 0);
  EXPECT_EQ(engine_->stats().batches_committed, batches + 1);

  // A batch of two (held as above); then two commands one after the other share a commit.
  const int held_two_failures = held_batch_of(2);
  batches = engine_->stats().batches_committed;
  auto [pair_a, pair_a_failures] = submit_all(1);
  auto [pair_b, pair_b_failures] = submit_all(1);
  ASSERT_TRUE(pair_a->Wait());
  ASSERT_TRUE(pair_b->Wait());
  EXPECT_EQ(held_two_failures + *pair_a_failures + *pair_b_failures, 0);
  EXPECT_EQ(engine_->stats().batches_committed, batches + 1);

  // Stopping while the writer lingers for a second command: the first is still answered.
  auto [last, last_failures] = submit_all(1);
  engine_->Stop();
  ASSERT_TRUE(last->Wait());
  EXPECT_EQ(*last_failures, 0);
  EXPECT_EQ(DurableStock("sku-1", "w1").reserved, 12);
}

TEST_F(ShardEngineTest, FlashSaleSellsExactlyWhatIsOnHand) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("hot", "eu1", 100);

  constexpr int kAttempts = 10'000;
  constexpr int kThreads = 8;
  std::atomic<int> reserved{0};
  std::atomic<int> insufficient{0};
  std::atomic<int> other{0};
  Latch latch(kAttempts);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kAttempts; i += kThreads) {
        engine_->Submit(
            cmd::Reserve{ReservationId("r" + std::to_string(i)), {{Sku("hot"), 1}}, "eu", 60'000},
            [&](CommandResult result) {
              if (!result.status.ok()) {
                other.fetch_add(1);
              } else {
                switch (std::get<ReserveOutcome>(result.outcome)) {
                  case ReserveOutcome::kReserved:
                    reserved.fetch_add(1);
                    break;
                  case ReserveOutcome::kInsufficientStock:
                    insufficient.fetch_add(1);
                    break;
                  case ReserveOutcome::kAlreadyReserved:
                  case ReserveOutcome::kUnknownSku:
                  case ReserveOutcome::kConflict:
                  case ReserveOutcome::kInvalidRequest:
                    other.fetch_add(1);
                    break;
                }
              }
              latch.CountDown();
            });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(latch.Wait());
  EXPECT_EQ(reserved.load(), 100);
  EXPECT_EQ(insufficient.load(), kAttempts - 100);
  EXPECT_EQ(other.load(), 0);

  StockLevel level = DurableStock("hot", "eu1");
  EXPECT_EQ(level.on_hand, 100);
  EXPECT_EQ(level.reserved, 100);
  EXPECT_EQ(level.available(), 0);
  auto ledger = store_->LoadLedger();
  ASSERT_TRUE(ledger.ok());
  int reserved_entries = 0;
  for (const LedgerEntry& entry : *ledger) {
    if (entry.kind == LedgerKind::kReserved) ++reserved_entries;
  }
  EXPECT_EQ(reserved_entries, 100);
  ExpectLedgerMatchesStock();
  EXPECT_GT(engine_->stats().batch_commands_largest, 1);  // the queue did group commands
}

TEST_F(ShardEngineTest, RedeliveredCommandsHaveOneEffect) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 10);
  CommandResult first = Reserve("r1", "a", 3);
  ASSERT_EQ(std::get<ReserveOutcome>(first.outcome), ReserveOutcome::kReserved);
  CommandResult again = Reserve("r1", "a", 3);
  EXPECT_EQ(std::get<ReserveOutcome>(again.outcome), ReserveOutcome::kAlreadyReserved);
  EXPECT_EQ(again.reservation, first.reservation);
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("r1", "a", 4).outcome), ReserveOutcome::kConflict);
  auto allocate = [&] {
    return std::get<AllocateOutcome>(
        engine_->Execute(cmd::Allocate{ReservationId("r1"), OrderId("o1")}).outcome);
  };
  EXPECT_EQ(allocate(), AllocateOutcome::kAllocated);
  EXPECT_EQ(allocate(), AllocateOutcome::kAlreadyAllocated);
  auto ship = [&] {
    return std::get<ShipOutcome>(
        engine_->Execute(cmd::Ship{OrderId("o1"), "s1", {{Sku("a"), 3}}}).outcome);
  };
  EXPECT_EQ(ship(), ShipOutcome::kShipped);
  EXPECT_EQ(ship(), ShipOutcome::kAlreadyApplied);
  StockLevel level = DurableStock("a", "eu1");
  EXPECT_EQ(level.on_hand, 7);
  EXPECT_EQ(level.reserved, 0);
  EXPECT_EQ(level.allocated, 0);
  ExpectLedgerMatchesStock();
}

TEST_F(ShardEngineTest, ExpiryWithManualClock) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 5);
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("r1", "a", 2, 1000).outcome),
            ReserveOutcome::kReserved);
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("r2", "a", 1, 5000).outcome),
            ReserveOutcome::kReserved);
  auto none = engine_->SweepExpired();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  clock_.Advance(absl::Milliseconds(1000));
  auto expired = engine_->SweepExpired();
  ASSERT_TRUE(expired.ok()) << expired.status();
  EXPECT_THAT(*expired, ElementsAre(ReservationId("r1")));
  EXPECT_TRUE(engine_->SweepExpired()->empty());  // exactly once
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r1"), OrderId("o1")}).outcome),
            AllocateOutcome::kExpired);
  // r2 is due too, unswept: the allocate finds it expired, and the sweep then has nothing.
  clock_.Advance(absl::Milliseconds(4000));
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r2"), OrderId("o2")}).outcome),
            AllocateOutcome::kExpired);
  EXPECT_TRUE(engine_->SweepExpired()->empty());
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 0);
  ExpectLedgerMatchesStock();
}

TEST_F(ShardEngineTest, FailedCommitIsNotAcknowledgedAndRollsBack) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 5);
  faulty_->fail_writes = true;
  CommandResult failed = Reserve("r1", "a", 5);
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable);
  faulty_->fail_writes = false;
  EXPECT_EQ(engine_->stats().commit_failures, 1);
  // The in-memory hold was rolled back: all 5 are still available to someone else.
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("r2", "a", 5).outcome), ReserveOutcome::kReserved);
  // And r1 was never recorded: the same id reserves afresh (nothing left now).
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("r1", "a", 5).outcome),
            ReserveOutcome::kInsufficientStock);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 5);
  ExpectLedgerMatchesStock();
}

// Reservations written before migration 0005 keep their lines in reservation_lines (and
// `lines` NULL): they load as before, and their first rewrite moves the lines inline.
TEST_F(ShardEngineTest, ReservationsStoredBeforeInlineLinesLoadAndMoveInline) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("w1"), "eu", ""}).ok());
  Receive("sku-1", "w1", 10);
  engine_->Stop();
  engine_.reset();
  // What the pre-0005 store wrote for a 3-unit reservation of sku-1.
  ASSERT_TRUE(
      db_->Write([](sql::Transaction& transaction) -> absl::Status {
           for (const char* statement : {
                    "INSERT INTO reservations (id, region, created_at_ms, expires_at_ms, "
                    "state, order_id, shipment_ids, return_ids) VALUES ('legacy', 'eu', 1, "
                    "9000000000000, 'active', '', '[]', '[]')",
                    "INSERT INTO reservation_lines (reservation_id, line_no, split_no, sku, "
                    "line_quantity, location_id, quantity, shipped, returned) VALUES "
                    "('legacy', 0, 0, 'sku-1', 3, 'w1', 3, 0, 0)",
                    "UPDATE stock SET reserved = 3 WHERE sku = 'sku-1'",
                }) {
             absl::StatusOr<int64_t> changed = transaction.Execute(statement);
             if (!changed.ok()) return changed.status();
           }
           return absl::OkStatus();
         })
          .ok());
  StartEngine();
  auto legacy = store_->LoadReservation(ReservationId("legacy"));
  ASSERT_TRUE(legacy.ok()) << legacy.status();
  ASSERT_TRUE(legacy->has_value());
  ASSERT_EQ((*legacy)->lines.size(), 1u);
  EXPECT_EQ((*legacy)->lines[0].splits[0].quantity, 3);
  // The engine loaded it: the same request replays, and allocating works.
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("legacy", "sku-1", 3).outcome),
            ReserveOutcome::kAlreadyReserved);
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("legacy"), OrderId("o1")}).outcome),
            AllocateOutcome::kAllocated);
  // Rewritten once: lines inline, the old rows gone, and a restart still sees the same.
  ASSERT_TRUE(db_->Read([](sql::Transaction& transaction) -> absl::Status {
                   absl::StatusOr<sql::ResultSet> rows = transaction.Query(
                       "SELECT COUNT(*) FROM reservation_lines WHERE reservation_id = 'legacy'");
                   if (!rows.ok()) return rows.status();
                   EXPECT_EQ(rows->rows.front().Int(0), 0);
                   rows = transaction.Query("SELECT lines FROM reservations WHERE id = 'legacy'");
                   if (!rows.ok()) return rows.status();
                   EXPECT_FALSE(rows->rows.front().IsNull(0));
                   return absl::OkStatus();
                 })
                  .ok());
  const Reservation before_restart = **legacy;
  Restart();
  auto reloaded = store_->LoadReservation(ReservationId("legacy"));
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  ASSERT_TRUE(reloaded->has_value());
  EXPECT_EQ((*reloaded)->lines, before_restart.lines);
  EXPECT_EQ((*reloaded)->order_id, OrderId("o1"));
  EXPECT_EQ(std::get<ShipOutcome>(
                engine_->Execute(cmd::Ship{OrderId("o1"), "s1", {{Sku("sku-1"), 3}}}).outcome),
            ShipOutcome::kShipped);
}

// Only the reservations loaded with rows in the pre-0005 reservation_lines table get their old
// rows deleted when rewritten (the shard remembers which); each loses them on its first
// rewrite, the others keep theirs until then, and a restart after a partial migration loads
// both kinds.
TEST_F(ShardEngineTest, LegacyLineRowsGoOnlyWithTheirReservationsRewrite) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("w1"), "eu", ""}).ok());
  Receive("sku-1", "w1", 10);
  engine_->Stop();
  engine_.reset();
  ASSERT_TRUE(
      db_->Write([](sql::Transaction& transaction) -> absl::Status {
           for (const char* id : {"old-a", "old-b"}) {
             absl::StatusOr<int64_t> changed = transaction.Execute(
                 "INSERT INTO reservations (id, region, created_at_ms, expires_at_ms, state, "
                 "order_id, shipment_ids, return_ids) VALUES (?, 'eu', 1, 9000000000000, "
                 "'active', '', '[]', '[]')",
                 {id});
             if (!changed.ok()) return changed.status();
             changed = transaction.Execute(
                 "INSERT INTO reservation_lines (reservation_id, line_no, split_no, sku, "
                 "line_quantity, location_id, quantity, shipped, returned) VALUES "
                 "(?, 0, 0, 'sku-1', 2, 'w1', 2, 0, 0)",
                 {id});
             if (!changed.ok()) return changed.status();
           }
           return transaction.Execute("UPDATE stock SET reserved = 4 WHERE sku = 'sku-1'").status();
         })
          .ok());
  auto line_rows = [this](const std::string& id) {
    int64_t count = -1;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& transaction) -> absl::Status {
                     absl::StatusOr<sql::ResultSet> rows = transaction.Query(
                         "SELECT COUNT(*) FROM reservation_lines WHERE reservation_id = ?", {id});
                     if (!rows.ok()) return rows.status();
                     count = rows->rows.front().Int(0);
                     return absl::OkStatus();
                   })
                    .ok());
    return count;
  };
  StartEngine();
  // A new reservation in the same batches as the legacy ones' rewrites.
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("new-1", "sku-1", 1).outcome),
            ReserveOutcome::kReserved);
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("old-a"), OrderId("o-a")}).outcome),
            AllocateOutcome::kAllocated);
  EXPECT_EQ(line_rows("old-a"), 0);
  EXPECT_EQ(line_rows("old-b"), 1);
  Restart();
  // Both load: old-a from its inline lines, old-b still from its rows.
  for (const char* id : {"old-a", "old-b"}) {
    auto loaded = store_->LoadReservation(ReservationId(id));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ASSERT_TRUE(loaded->has_value()) << id;
    ASSERT_EQ((*loaded)->lines.size(), 1u);
    EXPECT_EQ((*loaded)->lines[0].splits[0].quantity, 2);
  }
  EXPECT_EQ(
      std::get<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("old-b")}).outcome),
      ReleaseOutcome::kReleased);
  EXPECT_EQ(line_rows("old-b"), 0);
  // Rewritten again after it lost its rows: nothing left to delete, nothing breaks.
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("new-1"), OrderId("o-n")}).outcome),
            AllocateOutcome::kAllocated);
  // (No ledger check: the hand-written legacy reservations have no ledger entries.)
  Restart();
  EXPECT_EQ(DurableStock("sku-1", "w1").reserved, 0);
  EXPECT_EQ(DurableStock("sku-1", "w1").allocated, 3);
}

// Migration 0006 moves the ledger and the stock rows into keyed (WITHOUT ROWID) tables: the
// same rows, the same constraints, and the engine carries on from the stored sequences.
TEST(InventoryMigrationTest, KeyedLedgerAndStockKeepEveryRow) {
  sql::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  sql::SqliteOptions options;
  options.path = dir.File("inventory.db");
  options.name = "inventory";
  auto db = sql::OpenSqlite(options);
  ASSERT_TRUE(db.ok()) << db.status();
  std::vector<sql::Migration> before_0006;
  for (sql::Migration& migration : InventoryMigrations()) {
    if (migration.version < 6) before_0006.push_back(std::move(migration));
  }
  ManualClock clock;
  ASSERT_TRUE(sql::ApplyMigrations(**db, "inventory", before_0006, clock).ok());
  // What the store wrote before 0006: two SKUs' histories, interleaved as batches would.
  ASSERT_TRUE(
      (*db)
          ->Write([](sql::Transaction& transaction) -> absl::Status {
            for (const char* statement : {
                     "INSERT INTO locations (id, region, address) VALUES ('w1', 'eu', '')",
                     "INSERT INTO ledger VALUES ('b', 'w1', 1, 'received', 5, 'po', 10)",
                     "INSERT INTO ledger VALUES ('a', 'w1', 1, 'received', 7, 'po', 11)",
                     "INSERT INTO ledger VALUES ('b', 'w1', 2, 'reserved', 2, 'r1', 12)",
                     "INSERT INTO stock VALUES ('a', 'w1', 7, 0, 0, 1)",
                     "INSERT INTO stock VALUES ('b', 'w1', 5, 2, 0, 2)",
                     "INSERT INTO reservations (id, region, created_at_ms, expires_at_ms, "
                     "state, order_id, shipment_ids, return_ids, lines) VALUES ('r1', 'eu', 12, "
                     "9000000000000, 'active', '', '[]', '[]', "
                     "'[{\"sku\":\"b\",\"quantity\":2,\"splits\":[{\"location\":\"w1\","
                     "\"quantity\":2,\"shipped\":0,\"returned\":0}]}]')",
                 }) {
              absl::StatusOr<int64_t> changed = transaction.Execute(statement);
              if (!changed.ok()) return changed.status();
            }
            return absl::OkStatus();
          })
          .ok());
  InventoryStore store(**db);
  auto ledger_before = store.LoadLedger();
  ASSERT_TRUE(ledger_before.ok()) << ledger_before.status();
  auto stock_before = store.LoadAllStock();
  ASSERT_TRUE(stock_before.ok()) << stock_before.status();
  ASSERT_TRUE(store.Migrate(clock).ok());

  auto ledger_after = store.LoadLedger();
  ASSERT_TRUE(ledger_after.ok()) << ledger_after.status();
  auto by_key = [](const LedgerEntry& a, const LedgerEntry& b) {
    return std::tie(a.sku, a.location, a.sequence) < std::tie(b.sku, b.location, b.sequence);
  };
  std::sort(ledger_before->begin(), ledger_before->end(), by_key);
  EXPECT_EQ(*ledger_after, *ledger_before);  // read back in key order
  auto stock_after = store.LoadAllStock();
  ASSERT_TRUE(stock_after.ok()) << stock_after.status();
  EXPECT_EQ(*stock_after, *stock_before);
  ASSERT_TRUE(
      (*db)
          ->Read([](sql::Transaction& transaction) -> absl::Status {
            for (const char* table : {"ledger", "stock"}) {
              // A WITHOUT ROWID table has no rowid to select.
              EXPECT_FALSE(transaction.Query(fmt::format("SELECT rowid FROM {}", table)).ok())
                  << table;
            }
            return absl::OkStatus();
          })
          .ok());
  // The key and the stock check still hold.
  absl::Status duplicate = (*db)->Write([](sql::Transaction& transaction) {
    return transaction.Execute("INSERT INTO ledger VALUES ('a', 'w1', 1, 'received', 1, 'x', 1)")
        .status();
  });
  EXPECT_FALSE(duplicate.ok());
  absl::Status oversold = (*db)->Write([](sql::Transaction& transaction) {
    return transaction.Execute("UPDATE stock SET reserved = 9 WHERE sku = 'b'").status();
  });
  EXPECT_FALSE(oversold.ok());

  // The engine loads the migrated rows and appends after the stored sequences.
  {
    auto engine = ShardEngine::Start(**db, clock, EngineOptions{});
    ASSERT_TRUE(engine.ok()) << engine.status();
    CommandResult received = (*engine)->Execute(cmd::Receive{Sku("b"), LocationId("w1"), 1, "po"});
    ASSERT_TRUE(received.status.ok()) << received.status;
    ASSERT_EQ(received.entries.size(), 1u);
    EXPECT_EQ(received.entries[0].sequence, 3);
    CommandResult allocated = (*engine)->Execute(cmd::Allocate{ReservationId("r1"), OrderId("o1")});
    ASSERT_TRUE(allocated.status.ok()) << allocated.status;
    EXPECT_EQ(std::get<AllocateOutcome>(allocated.outcome), AllocateOutcome::kAllocated);
    (*engine)->Stop();
  }
  auto ledger = store.LoadLedger();
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto projected = Project(*ledger);
  ASSERT_TRUE(projected.ok()) << projected.status();
  auto stock = store.LoadAllStock();
  ASSERT_TRUE(stock.ok()) << stock.status();
  EXPECT_EQ(*projected, *stock);
  (*db)->Close();
}

TEST_F(ShardEngineTest, StateSurvivesRestart) {
  StartEngine(3);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  ASSERT_TRUE(engine_->AddLocation({LocationId("us1"), "us", "Newark"}).ok());
  for (int i = 0; i < 6; ++i) Receive("sku" + std::to_string(i), i % 2 ? "eu1" : "us1", 10);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(std::get<ReserveOutcome>(
                  Reserve("r" + std::to_string(i), "sku" + std::to_string(i), 4).outcome),
              ReserveOutcome::kReserved);
  }
  ASSERT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r0"), OrderId("o0")}).outcome),
            AllocateOutcome::kAllocated);
  Restart(3);
  // Routing and state were rebuilt from the database.
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("r1", "sku1", 4).outcome),
            ReserveOutcome::kAlreadyReserved);
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r0"), OrderId("o0")}).outcome),
            AllocateOutcome::kAlreadyAllocated);
  EXPECT_EQ(std::get<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r2"), OrderId("o2")}).outcome),
            AllocateOutcome::kAllocated);
  EXPECT_EQ(std::get<ShipOutcome>(
                engine_->Execute(cmd::Ship{OrderId("o0"), "s0", {{Sku("sku0"), 4}}}).outcome),
            ShipOutcome::kShipped);
  EXPECT_EQ(std::get<ReserveOutcome>(Reserve("r9", "sku3", 7).outcome),
            ReserveOutcome::kInsufficientStock);
  ExpectLedgerMatchesStock();
}

// A batch rewrites a reservation's lines only when they changed (reserve, ship, return); a
// header-only change (allocate) must still leave the durable reservation equal to memory's.
TEST_F(ShardEngineTest, DurableReservationFollowsHeaderAndLineChanges) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 10);
  CommandResult reserved = Reserve("r1", "a", 4);
  ASSERT_EQ(std::get<ReserveOutcome>(reserved.outcome), ReserveOutcome::kReserved);
  auto durable = store_->LoadReservation(ReservationId("r1"));
  ASSERT_TRUE(durable.ok()) << durable.status();
  ASSERT_TRUE(durable->has_value());
  EXPECT_EQ(**durable, *reserved.reservation);

  CommandResult allocated = engine_->Execute(cmd::Allocate{ReservationId("r1"), OrderId("o1")});
  ASSERT_EQ(std::get<AllocateOutcome>(allocated.outcome), AllocateOutcome::kAllocated);
  durable = store_->LoadReservation(ReservationId("r1"));
  ASSERT_TRUE(durable.ok() && durable->has_value());
  EXPECT_EQ(**durable, *allocated.reservation);
  EXPECT_EQ((*durable)->state, ReservationState::kAllocated);
  EXPECT_EQ((*durable)->order_id, OrderId("o1"));
  ASSERT_EQ((*durable)->lines.size(), 1u);

  ASSERT_EQ(std::get<ShipOutcome>(
                engine_->Execute(cmd::Ship{OrderId("o1"), "s1", {{Sku("a"), 3}}}).outcome),
            ShipOutcome::kShipped);
  ASSERT_EQ(std::get<ReturnOutcome>(
                engine_->Execute(cmd::Return{OrderId("o1"), "ret1", {{Sku("a"), 1}}}).outcome),
            ReturnOutcome::kReturned);
  durable = store_->LoadReservation(ReservationId("r1"));
  ASSERT_TRUE(durable.ok() && durable->has_value());
  ASSERT_EQ((*durable)->lines.size(), 1u);
  ASSERT_EQ((*durable)->lines[0].splits.size(), 1u);
  EXPECT_EQ((*durable)->lines[0].splits[0].shipped, 3);
  EXPECT_EQ((*durable)->lines[0].splits[0].returned, 1);
  EXPECT_EQ((*durable)->shipment_ids, std::vector<std::string>{"s1"});
  EXPECT_EQ((*durable)->return_ids, std::vector<std::string>{"ret1"});

  // What a restart loads is what memory held.
  Restart();
  EXPECT_EQ(std::get<ShipOutcome>(
                engine_->Execute(cmd::Ship{OrderId("o1"), "s2", {{Sku("a"), 1}}}).outcome),
            ShipOutcome::kShipped);
  EXPECT_EQ(std::get<ShipOutcome>(
                engine_->Execute(cmd::Ship{OrderId("o1"), "s3", {{Sku("a"), 1}}}).outcome),
            ShipOutcome::kExceedsAllocation);
  ExpectLedgerMatchesStock();
}

TEST_F(ShardEngineTest, FullQueueAnswersRetryableUnavailableWithNoEffect) {
  constexpr size_t kCapacity = 2;
  StartEngine(/*shard_count=*/1, kCapacity);
  ASSERT_TRUE(engine_->AddLocation({LocationId("w1"), "eu", ""}).ok());
  Receive("sku-1", "w1", 10);
  // Stall the writer on its next batch, so what is submitted next waits in the queue.
  faulty_->HoldWrites();
  const int64_t entered = faulty_->writes_entered();
  Latch answered(static_cast<int64_t>(kCapacity) + 1);
  std::mutex results_mutex;
  std::vector<CommandResult> results;
  auto submit = [&](const std::string& id) {
    engine_->Submit(cmd::Reserve{ReservationId(id), {{Sku("sku-1"), 1}}, "eu", 60'000},
                    [&](CommandResult result) {
                      {
                        std::lock_guard lock(results_mutex);
                        results.push_back(std::move(result));
                      }
                      answered.CountDown();
                    });
  };
  submit("r-in-writer");
  ASSERT_TRUE(faulty_->WaitForWritesEntered(entered + 1));  // popped and stuck in Write()
  for (size_t i = 0; i < kCapacity; ++i) submit(fmt::format("r-queued-{}", i));

  // The queue holds kCapacity commands: the next one is refused at once, on this thread.
  CommandResult refused;
  bool refused_answered = false;
  engine_->Submit(cmd::Reserve{ReservationId("r-refused"), {{Sku("sku-1"), 1}}, "eu", 60'000},
                  [&](CommandResult result) {
                    refused = std::move(result);
                    refused_answered = true;
                  });
  ASSERT_TRUE(refused_answered);
  EXPECT_TRUE(absl::IsUnavailable(refused.status)) << refused.status;
  EXPECT_TRUE(IsQueueFull(refused.status));
  EXPECT_FALSE(IsQueueFull(absl::UnavailableError("disk")));
  EXPECT_FALSE(refused.reservation.has_value());

  faulty_->ReleaseWrites();
  ASSERT_TRUE(answered.Wait());
  for (const CommandResult& result : results) {
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_EQ(std::get<ReserveOutcome>(result.outcome), ReserveOutcome::kReserved);
  }
  // The refused command had no effect; retried later, it applies.
  auto stock = store_->LoadAllStock();
  ASSERT_TRUE(stock.ok()) << stock.status();
  ASSERT_EQ(stock->size(), 1u);
  EXPECT_EQ(stock->front().reserved, static_cast<int64_t>(kCapacity) + 1);
  CommandResult retried = Reserve("r-refused", "sku-1", 1);
  ASSERT_TRUE(retried.status.ok()) << retried.status;
  EXPECT_EQ(std::get<ReserveOutcome>(retried.outcome), ReserveOutcome::kReserved);
  ExpectLedgerMatchesStock();
}

// A SKU that hashes to a shard none of `skus` is in, or "" if none of the candidates does.
std::string SkuOutsideShardsOf(ShardEngine& engine, const std::vector<std::string>& skus) {
  for (int i = 0; i < 1000; ++i) {
    std::string candidate = "x" + std::to_string(i);
    bool outside = true;
    for (const std::string& sku : skus) {
      if (engine.ShardOf(Sku(candidate)) == engine.ShardOf(Sku(sku))) outside = false;
    }
    if (outside) return candidate;
  }
  return "";
}

TEST_F(ShardEngineTest, CrossShardReserveIsRefused) {
  StartEngine(64);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  const std::string other = SkuOutsideShardsOf(*engine_, {"a"});
  ASSERT_FALSE(other.empty());
  CommandResult result = engine_->Execute(
      cmd::Reserve{ReservationId("r"), {{Sku("a"), 1}, {Sku(other), 1}}, "eu", 1000});
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition);
}

CommandResult Replace(ShardEngine& engine, const std::string& id, const std::string& replaces,
                      std::vector<LineRequest> lines) {
  return engine.Execute(cmd::Reserve{.id = ReservationId(id),
                                     .lines = std::move(lines),
                                     .region = "eu",
                                     .ttl_ms = 60'000,
                                     .replaces = ReservationId(replaces)});
}

// A cart edit: the replaced reservation is released and the new one reserved in one durable
// batch, the old units counting for the new one; a redelivery has no second effect; a failed
// commit leaves both as they were.
TEST_F(ShardEngineTest, ReserveReplacingAReservationIsOneDurableStep) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 3);
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("cart-1", "a", 2).outcome), ReserveOutcome::kReserved);

  faulty_->fail_writes = true;
  CommandResult failed = Replace(*engine_, "cart-2", "cart-1", {{Sku("a"), 3}});
  faulty_->fail_writes = false;
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 2);

  const int64_t batches_before = engine_->stats().batches_committed;
  CommandResult grown = Replace(*engine_, "cart-2", "cart-1", {{Sku("a"), 3}});
  ASSERT_TRUE(grown.status.ok()) << grown.status;
  EXPECT_EQ(std::get<ReserveOutcome>(grown.outcome), ReserveOutcome::kReserved);
  EXPECT_TRUE(grown.released_replaced);
  EXPECT_EQ(engine_->stats().batches_committed, batches_before + 1);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 3);

  CommandResult replay = Replace(*engine_, "cart-2", "cart-1", {{Sku("a"), 3}});
  EXPECT_EQ(std::get<ReserveOutcome>(replay.outcome), ReserveOutcome::kAlreadyReserved);
  EXPECT_FALSE(replay.released_replaced);
  EXPECT_TRUE(replay.entries.empty());

  // A replacement that cannot be covered still releases what the cart held.
  CommandResult short_of = Replace(*engine_, "cart-3", "cart-2", {{Sku("a"), 4}});
  EXPECT_EQ(std::get<ReserveOutcome>(short_of.outcome), ReserveOutcome::kInsufficientStock);
  EXPECT_THAT(short_of.short_skus, ElementsAre(Sku("a")));
  EXPECT_TRUE(short_of.released_replaced);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 0);

  Restart();
  auto old_one = store_->LoadReservation(ReservationId("cart-2"));
  ASSERT_TRUE(old_one.ok() && old_one->has_value());
  EXPECT_EQ((*old_one)->state, ReservationState::kReleased);
  EXPECT_EQ(
      std::get<ReserveOutcome>(Replace(*engine_, "cart-4", "cart-2", {{Sku("a"), 3}}).outcome),
      ReserveOutcome::kReserved);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 3);
  ExpectLedgerMatchesStock();
}

// The replaced reservation lives in another shard than the new lines: released there first.
TEST_F(ShardEngineTest, ReplaceAcrossShardsReleasesInTheOtherShard) {
  StartEngine(64);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  const std::string other = SkuOutsideShardsOf(*engine_, {"a"});
  ASSERT_FALSE(other.empty());
  Receive("a", "eu1", 5);
  Receive(other, "eu1", 5);
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("cart-1", "a", 2).outcome), ReserveOutcome::kReserved);
  CommandResult moved = Replace(*engine_, "cart-2", "cart-1", {{Sku(other), 1}});
  ASSERT_TRUE(moved.status.ok()) << moved.status;
  EXPECT_EQ(std::get<ReserveOutcome>(moved.outcome), ReserveOutcome::kReserved);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 0);
  EXPECT_EQ(DurableStock(other, "eu1").reserved, 1);
  ExpectLedgerMatchesStock();
}

// Many threads hammer reserve / release / allocate / cancel / expire on a few SKUs; the engine
// checks the invariant after every batch (verify_invariants_each_batch) and at the end the
// durable ledger projects onto the durable stock table, also after a restart.
TEST_F(ShardEngineTest, ConcurrentHammering) {
  StartEngine(2);
  const std::vector<std::string> skus = StockFourSkusAtTwoLocations(20);
  constexpr int kThreads = 6;
  constexpr int kOpsPerThread = 600;
  std::atomic<int> errors{0};
  std::atomic<int> reserved{0};
  Latch latch(int64_t{kThreads} * kOpsPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t) + 7);
      for (int i = 0; i < kOpsPerThread; ++i) {
        Command command = RandomHammerCommand(random, "", t, i, skus, /*settling=*/false);
        engine_->Submit(std::move(command), [&](CommandResult result) {
          if (!result.status.ok()) errors.fetch_add(1);
          if (const auto* outcome = std::get_if<ReserveOutcome>(&result.outcome);
              outcome != nullptr && *outcome == ReserveOutcome::kReserved) {
            reserved.fetch_add(1);
          }
          latch.CountDown();
        });
        if (i % 50 == 0) clock_.Advance(absl::Milliseconds(100));
      }
    });
  }
  JoinWhileSweeping(threads, errors);
  ASSERT_TRUE(latch.Wait());
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reserved.load(), 40);  // at least 13 per SKU fit before any runs out
  ExpectLedgerMatchesStock();
  Restart(2);
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(engine_->SweepExpired().ok());
  ExpectLedgerMatchesStock();
  // Everything unallocated has expired: only allocations hold stock now.
  auto stock = store_->LoadAllStock();
  ASSERT_TRUE(stock.ok());
  for (const StockLevel& level : *stock) EXPECT_EQ(level.reserved, 0);
}

}  // namespace
}  // namespace emporium::inventory

namespace emporium::inventory {
namespace {

// Batches in flight build on each other (pipeline_batches = 2, with the deferred sync): when
// one is not committed, the ones applied after it are refused too, the shard reloads, and every
// acknowledged reservation, and only those, is durable. Bursts of reserves with a failing
// batch among them, many rounds.
TEST_F(ShardEngineTest, AFailedBatchFailsTheBatchesAppliedAfterItAndNothingElse) {
  engine_.reset();
  db_->Close();
  sql::SqliteOptions db_options;
  db_options.path = dir_.File("pipelined.db");
  db_options.name = "pipelined";
  db_options.deferred_sync = true;
  auto opened = sql::OpenSqlite(db_options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  db_ = std::move(*opened);
  store_ = std::make_unique<InventoryStore>(*db_);
  ASSERT_TRUE(store_->Migrate(clock_).ok());
  // The hook fails the batch holding the Adjust referenced "poison" (its job is rolled back),
  // or throws for "poison-throw" (the database turns the throw into the job's error).
  EngineOptions options;
  options.verify_invariants_each_batch = true;
  options.pipeline_batches = 2;
  options.batch_hook = [](sql::Transaction&, const BatchView& view) -> absl::Status {
    for (const AppliedCommand& applied : view.applied) {
      const auto* adjust = std::get_if<cmd::Adjust>(applied.command);
      if (adjust != nullptr && adjust->reference == "poison") {
        return absl::UnavailableError("injected: the batch with the poison");
      }
      if (adjust != nullptr && adjust->reference == "poison-throw") {
        throw std::runtime_error("injected: the batch with the poison throws");
      }
    }
    return absl::OkStatus();
  };
  auto engine = ShardEngine::Start(*db_, clock_, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  engine_ = std::move(*engine);
  ASSERT_TRUE(engine_->AddLocation({LocationId("w1"), "eu", ""}).ok());
  constexpr int64_t kStock = 100'000;
  Receive("a", "w1", kStock);

  int64_t acknowledged = 0;  // units reserved and acknowledged
  int64_t refused = 0;
  for (int round = 0; round < 20; ++round) {
    constexpr int kBurst = 120;
    auto answered = std::make_shared<Latch>(kBurst + 1);
    auto ok = std::make_shared<std::atomic<int64_t>>(0);
    auto failed = std::make_shared<std::atomic<int64_t>>(0);
    for (int i = 0; i <= kBurst; ++i) {
      if (i == 30 + round * 3) {
        engine_->Submit(
            cmd::Adjust{Sku("a"), LocationId("w1"), 1, round % 2 == 0 ? "poison" : "poison-throw"},
            [answered, failed](CommandResult result) {
              EXPECT_FALSE(result.status.ok());
              answered->CountDown();
            });
        continue;
      }
      engine_->Submit(
          cmd::Reserve{
              ReservationId(fmt::format("r{}-{}", round, i)), {{Sku("a"), 1}}, "eu", 600'000},
          [answered, ok, failed](CommandResult result) {
            if (result.status.ok()) {
              EXPECT_EQ(std::get<ReserveOutcome>(result.outcome), ReserveOutcome::kReserved);
              ok->fetch_add(1);
            } else {
              EXPECT_TRUE(absl::IsUnavailable(result.status)) << result.status;
              failed->fetch_add(1);
            }
            answered->CountDown();
          });
    }
    ASSERT_TRUE(answered->Wait());
    acknowledged += ok->load();
    refused += failed->load();
    // Durable = acknowledged, and the shard's memory agrees (it reserves exactly the rest).
    EXPECT_EQ(DurableStock("a", "w1").reserved, acknowledged) << "round " << round;
  }
  EXPECT_GT(refused, 0);  // the poison's batch-mates at least
  EXPECT_GE(engine_->stats().commit_failures, 20);
  ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("rest", "a", kStock - acknowledged)),
            ReserveOutcome::kReserved);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("one-more", "a", 1)),
            ReserveOutcome::kInsufficientStock);
  ExpectLedgerMatchesStock();
  // And a restart loads the same.
  engine_->Stop();
  engine_.reset();
  auto restarted = ShardEngine::Start(*db_, clock_, EngineOptions{});
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  engine_ = std::move(*restarted);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("after-restart", "a", 1)),
            ReserveOutcome::kInsufficientStock);
}

TEST_F(ShardEngineTest, RebuildReportsAndRepairsATamperedProjection) {
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 10);
  ASSERT_EQ(std::get<ReserveOutcome>(Reserve("r1", "a", 3).outcome), ReserveOutcome::kReserved);
  engine_->Stop();
  ASSERT_TRUE(
      db_->Write([](sql::Transaction& transaction) {
           return transaction.Execute("UPDATE stock SET on_hand = 99 WHERE sku = 'a'").status();
         })
          .ok());
  auto check = store_->Rebuild(InventoryStore::RebuildMode::kCheckOnly);
  ASSERT_TRUE(check.ok()) << check.status();
  ASSERT_EQ(check->mismatches.size(), 1u);
  EXPECT_FALSE(check->repaired);
  auto repair = store_->Rebuild(InventoryStore::RebuildMode::kRepair);
  ASSERT_TRUE(repair.ok());
  EXPECT_TRUE(repair->repaired);
  EXPECT_EQ(DurableStock("a", "eu1").on_hand, 10);
  ExpectLedgerMatchesStock();
}

}  // namespace
}  // namespace emporium::inventory

// ---- eviction of settled reservations, and fault-in ----

namespace emporium::inventory {
namespace {

constexpr int64_t kNeverEvict = 365LL * 24 * 3600 * 1000;  // a retention the tests never reach

TEST_F(ShardEngineTest, EvictionOptionsAreChecked) {
  for (auto bad : std::vector<std::function<void(EngineOptions&)>>{
           [](EngineOptions& o) { o.settled_retention_ms = -1; },
           [](EngineOptions& o) { o.evict_per_batch_max = 0; },
           [](EngineOptions& o) { o.evicted_hash_bits = 0; },
           [](EngineOptions& o) { o.evicted_hash_bits = 65; },
       }) {
    EngineOptions options;
    bad(options);
    EXPECT_EQ(ShardEngine::Start(*db_, clock_, options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// Settled reservations leave memory once unchanged for the retention; active and allocated
// ones never do, however old.
TEST_F(ShardEngineTest, SettledReservationsAreEvictedAfterTheRetention) {
  StartEvictingEngine(1, /*retention_ms=*/1000);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 100);
  for (const char* id : {"r1", "r2", "r3", "r4"}) {
    ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(id, "a", 1, kReservationTtlMaxMs)),
              ReserveOutcome::kReserved);
  }
  ASSERT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("r1")})),
            ReleaseOutcome::kReleased);
  ASSERT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r2"), OrderId("o2")})),
            AllocateOutcome::kAllocated);
  ASSERT_EQ(
      OutcomeOf<ShipOutcome>(engine_->Execute(cmd::Ship{OrderId("o2"), "s1", {{Sku("a"), 1}}})),
      ShipOutcome::kShipped);
  ASSERT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r4"), OrderId("o4")})),
            AllocateOutcome::kAllocated);
  EXPECT_EQ(engine_->stats().resident_reservations, 4);
  clock_.Advance(absl::Milliseconds(999));
  Receive("a", "eu1", 1);  // any batch
  EXPECT_EQ(engine_->stats().resident_reservations, 4);
  EXPECT_EQ(engine_->stats().evicted_reservations, 0);
  clock_.Advance(absl::Milliseconds(1));
  Receive("a", "eu1", 1);
  EXPECT_EQ(engine_->stats().resident_reservations, 2);  // r3 active, r4 allocated
  EXPECT_EQ(engine_->stats().evicted_reservations, 2);
  EXPECT_EQ(engine_->stats().evicted_record_entries, 3);  // r1, r2 and order o2
  clock_.Advance(absl::Hours(24));
  Receive("a", "eu1", 1);
  EXPECT_EQ(engine_->stats().resident_reservations, 2);
  EXPECT_EQ(engine_->stats().fault_in_reads, 0);
  // A command naming an evicted one reads it back; it leaves again after the retention.
  EXPECT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("r1")})),
            ReleaseOutcome::kAlreadyReleased);
  EXPECT_EQ(engine_->stats().fault_in_reads, 1);
  EXPECT_EQ(engine_->stats().resident_reservations, 3);
  clock_.Advance(absl::Milliseconds(1000));
  Receive("a", "eu1", 1);
  EXPECT_EQ(engine_->stats().resident_reservations, 2);
  EXPECT_EQ(engine_->stats().evicted_reservations, 3);
  ExpectLedgerMatchesStock();
}

// One step of a scenario: a command, or a clock advance, or an expiry sweep.
struct Step {
  std::optional<Command> command;
  int64_t advance_ms = 0;
};

Step Do(Command command) { return Step{std::move(command), 0}; }
Step Wait(int64_t ms) { return Step{std::nullopt, ms}; }
Step Sweep() { return Step{std::nullopt, -1}; }

Command Res(const std::string& id, int64_t quantity, int64_t ttl_ms = 60'000,
            const std::string& replaces = "") {
  return cmd::Reserve{
      ReservationId(id), {{Sku("a"), quantity}}, "eu", ttl_ms, ReservationId(replaces)};
}
Command Rel(const std::string& id) { return cmd::Release{ReservationId(id)}; }
Command Ext(const std::string& id) { return cmd::Extend{ReservationId(id), 60'000}; }
Command Alloc(const std::string& id, const std::string& order) {
  return cmd::Allocate{ReservationId(id), OrderId(order)};
}
Command Cancel(const std::string& order) { return cmd::CancelAllocation{OrderId(order)}; }
Command ShipIt(const std::string& order, const std::string& shipment, int64_t quantity) {
  return cmd::Ship{OrderId(order), shipment, {{Sku("a"), quantity}}};
}
Command Deliv(const std::string& order) { return cmd::Deliver{OrderId(order)}; }
Command Ret(const std::string& order, const std::string& return_id, int64_t quantity) {
  return cmd::Return{OrderId(order), return_id, {{Sku("a"), quantity}}};
}

// What a scenario produced: every answer and the durable ledger and stock.
struct ScenarioRun {
  std::vector<CommandResult> results;
  std::vector<LedgerEntry> ledger;
  std::vector<StockLevel> stock;
  EngineStats stats;
};

// Runs `steps` on a fresh database with the given retention (0: every settled reservation is
// evicted after each batch), then once more on a restarted engine (replays after a restart).
ScenarioRun RunScenario(const std::string& path, int64_t retention_ms, size_t shard_count,
                        int hash_bits, const std::vector<Step>& steps,
                        const std::vector<std::string>& skus = {"a"}) {
  ScenarioRun run;
  sql::SqliteOptions sqlite;
  sqlite.path = path;
  sqlite.name = "inventory";
  auto db = sql::OpenSqlite(sqlite);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return run;
  ManualClock clock;
  InventoryStore store(**db);
  EXPECT_TRUE(store.Migrate(clock).ok());
  EngineOptions options;
  options.shard_count = shard_count;
  options.settled_retention_ms = retention_ms;
  options.evicted_hash_bits = hash_bits;
  options.verify_invariants_each_batch = true;
  for (int pass = 0; pass < 2; ++pass) {
    auto engine = ShardEngine::Start(**db, clock, options);
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return run;
    if (pass == 0) {
      EXPECT_TRUE((*engine)->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
      for (const std::string& sku : skus) {
        EXPECT_TRUE(
            (*engine)->Execute(cmd::Receive{Sku(sku), LocationId("eu1"), 50, "po"}).status.ok());
      }
    }
    for (const Step& step : steps) {
      if (step.command.has_value()) {
        run.results.push_back((*engine)->Execute(*step.command));
      } else if (step.advance_ms < 0) {
        EXPECT_TRUE((*engine)->SweepExpired().ok());
      } else {
        clock.Advance(absl::Milliseconds(step.advance_ms));
      }
    }
    EngineStats stats = (*engine)->stats();
    run.stats.evicted_reservations += stats.evicted_reservations;
    run.stats.fault_in_reads += stats.fault_in_reads;
    run.stats.faulted_in_reservations += stats.faulted_in_reservations;
    (*engine)->Stop();
  }
  run.ledger = *store.LoadLedger();
  run.stock = *store.LoadAllStock();
  (*db)->Close();
  return run;
}

void ExpectSameRuns(const ScenarioRun& resident, const ScenarioRun& evicting,
                    const std::string& name) {
  ASSERT_EQ(resident.results.size(), evicting.results.size()) << name;
  for (size_t i = 0; i < resident.results.size(); ++i) {
    const CommandResult& a = resident.results[i];
    const CommandResult& b = evicting.results[i];
    SCOPED_TRACE(fmt::format("{}: step result {}", name, i));
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.outcome, b.outcome);
    EXPECT_EQ(a.reservation, b.reservation);
    EXPECT_EQ(a.entries, b.entries);
    EXPECT_EQ(a.short_skus, b.short_skus);
    EXPECT_EQ(a.released_replaced, b.released_replaced);
  }
  EXPECT_EQ(resident.ledger, evicting.ledger) << name;
  EXPECT_EQ(resident.stock, evicting.stock) << name;
  auto projected = Project(evicting.ledger);
  ASSERT_TRUE(projected.ok()) << projected.status();
  EXPECT_EQ(*projected, evicting.stock) << name;
}

struct Scenario {
  std::string name;
  std::vector<Step> steps;
};

std::vector<Scenario> ReplayScenarios() {
  return {
      {"released",
       {Do(Res("r1", 2)), Do(Rel("r1")), Do(Rel("r1")), Do(Res("r1", 2)), Do(Res("r1", 3)),
        Do(Ext("r1")), Do(Alloc("r1", "o1")), Do(Res("r1b", 1, 60'000, "r1"))}},
      {"expired",
       {Do(Res("r2", 2, 1000)), Wait(2000), Sweep(), Do(Rel("r2")), Do(Ext("r2")),
        Do(Alloc("r2", "o2")), Do(Res("r2", 2, 1000)), Do(Res("r2x", 1, 1000)), Wait(2000),
        Do(Alloc("r2x", "o2x")), Do(Alloc("r2x", "o2x")), Do(Rel("r2x"))}},
      {"allocation cancelled",
       {Do(Res("r3", 2)), Do(Alloc("r3", "o3")), Do(Alloc("r3", "o3")), Do(Cancel("o3")),
        Do(Cancel("o3")), Do(Alloc("r3", "o3")), Do(ShipIt("o3", "s1", 1)), Do(Deliv("o3")),
        Do(Ret("o3", "x1", 1)), Do(Rel("r3"))}},
      {"order taken by a shipped reservation",
       {Do(Res("r4", 3)), Do(Alloc("r4", "o4")), Do(ShipIt("o4", "s1", 3)), Do(Res("r5", 1)),
        Do(Alloc("r5", "o4")), Do(ShipIt("o4", "s1", 3)), Do(ShipIt("o4", "s2", 1)),
        Do(Cancel("o4")), Do(Deliv("o4")), Do(Deliv("o4")), Do(Ret("o4", "ret1", 1)),
        Do(Ret("o4", "ret1", 1)), Do(Ret("o4", "ret2", 5)), Do(Alloc("r4", "o4")),
        Do(Alloc("r4", "o9")), Do(Rel("r4")), Do(Ext("r4")), Do(Res("r4", 3))}},
      {"order allocated again after a cancellation",
       {Do(Res("r6", 1)), Do(Alloc("r6", "o6")), Do(Cancel("o6")), Do(Res("r7", 2)),
        Do(Alloc("r7", "o6")), Do(Cancel("o6")), Do(Res("r8", 1)), Do(Alloc("r8", "o6")),
        Do(ShipIt("o6", "s1", 1)), Do(Deliv("o6")), Do(Cancel("o6")), Do(Res("r9", 1)),
        Do(Alloc("r9", "o6")), Do(Ret("o6", "ret1", 1)), Do(Alloc("r6", "o6"))}},
      {"cart replacements",
       {Do(Res("c1", 2)), Do(Res("c2", 3, 60'000, "c1")), Do(Res("c2", 3, 60'000, "c1")),
        Do(Res("c3", 1, 60'000, "c1")), Do(Rel("c1")), Do(Res("c1", 2)),
        Do(Res("c1", 2, 60'000, "c3"))}},
      {"unknown names",
       {Do(Rel("nope")), Do(Ext("nope")), Do(Alloc("nope", "o-nope")), Do(Cancel("o-nope")),
        Do(ShipIt("o-nope", "s", 1)), Do(Deliv("o-nope")), Do(Ret("o-nope", "r", 1))}},
  };
}

// Every replay and late command gives against an evicted reservation exactly what it gives
// against a resident one: each scenario runs with no eviction and with eviction after every
// batch (and with 2-bit hashes, so that nearly every name collides), then again after a
// restart; answers, ledger and stock must be equal.
TEST_F(ShardEngineTest, EvictedReservationsAnswerAsResidentOnes) {
  int scenario_index = 0;
  for (const Scenario& scenario : ReplayScenarios()) {
    ++scenario_index;
    const ScenarioRun resident =
        RunScenario(dir_.File(fmt::format("resident-{}.db", scenario_index)), kNeverEvict, 1, 64,
                    scenario.steps);
    EXPECT_EQ(resident.stats.evicted_reservations, 0);
    for (int hash_bits : {64, 2}) {
      const ScenarioRun evicting =
          RunScenario(dir_.File(fmt::format("evicting-{}-{}.db", scenario_index, hash_bits)),
                      /*retention_ms=*/0, 1, hash_bits, scenario.steps);
      ExpectSameRuns(resident, evicting, fmt::format("{} ({} bits)", scenario.name, hash_bits));
      if (scenario.name != "unknown names") {
        EXPECT_GT(evicting.stats.evicted_reservations, 0) << scenario.name;
        EXPECT_GT(evicting.stats.faulted_in_reservations, 0) << scenario.name;
      }
    }
  }
}

// Random histories over a few reservations and orders, with the clock moving between commands
// so that, with a retention between "every batch" and "never", some reservations are evicted
// and some resident at any moment (and an order's reservations can be split between the two).
// Every answer, the ledger and the stock must equal the run that never evicts.
TEST_F(ShardEngineTest, RandomHistoriesAnswerTheSameWithSomeReservationsEvicted) {
  constexpr int kSeeds = 8;
  constexpr int kSteps = 120;
  // With three shards, three SKUs that live in three different ones (shards are chosen by a
  // hash that is stable within this process), so reservations of one order and a reservation
  // and the one it replaces can sit in different shards.
  StartEvictingEngine(3, kNeverEvict);
  std::vector<std::string> spread_skus = {"a"};
  spread_skus.push_back(SkuOutsideShardsOf(*engine_, spread_skus));
  spread_skus.push_back(SkuOutsideShardsOf(*engine_, spread_skus));
  ASSERT_FALSE(spread_skus[1].empty());
  ASSERT_FALSE(spread_skus[2].empty());
  engine_->Stop();
  engine_.reset();
  // Per shard count and retention: evictions and read-backs summed over the seeds (both must
  // happen).
  std::map<std::pair<size_t, int64_t>, std::pair<int64_t, int64_t>> evicted_and_read_back;
  for (size_t shard_count : {size_t{1}, size_t{3}}) {
    const std::vector<std::string> skus =
        shard_count == 1 ? std::vector<std::string>{"a"} : spread_skus;
    for (int seed = 1; seed <= kSeeds; ++seed) {
      std::mt19937 random(static_cast<uint32_t>(seed));
      auto pick = [&random](int n) {
        return static_cast<int>(random() % static_cast<uint32_t>(n));
      };
      auto reservation = [&] { return fmt::format("r{}", pick(6)); };
      auto order = [&] { return OrderId(fmt::format("o{}", pick(3))); };
      auto sku = [&] {
        return Sku(skus[static_cast<size_t>(pick(static_cast<int>(skus.size())))]);
      };
      std::vector<Step> steps;
      for (int i = 0; i < kSteps; ++i) {
        switch (pick(11)) {
          case 0:
            steps.push_back(Wait(100 * pick(15)));
            break;
          case 1:
            steps.push_back(Sweep());
            break;
          case 2:
            steps.push_back(Do(cmd::Reserve{ReservationId(reservation()),
                                            {{sku(), 1 + pick(3)}},
                                            "eu",
                                            pick(2) == 0 ? 1'000 : 60'000,
                                            ReservationId(pick(3) == 0 ? reservation() : "")}));
            break;
          case 3:
            steps.push_back(Do(Rel(reservation())));
            break;
          case 4:
            steps.push_back(Do(Ext(reservation())));
            break;
          case 5:
          case 6:
            steps.push_back(Do(cmd::Allocate{ReservationId(reservation()), order()}));
            break;
          case 7:
            steps.push_back(Do(cmd::CancelAllocation{order()}));
            break;
          case 8:
            steps.push_back(
                Do(cmd::Ship{order(), fmt::format("s{}", pick(3)), {{sku(), 1 + pick(2)}}}));
            break;
          case 9:
            steps.push_back(Do(cmd::Deliver{order()}));
            break;
          default:
            steps.push_back(Do(cmd::Return{order(), fmt::format("x{}", pick(3)), {{sku(), 1}}}));
            break;
        }
      }
      const ScenarioRun resident =
          RunScenario(dir_.File(fmt::format("random-resident-{}-{}.db", shard_count, seed)),
                      kNeverEvict, shard_count, 64, steps, skus);
      for (int64_t retention_ms : {int64_t{0}, int64_t{700}}) {
        const ScenarioRun evicting = RunScenario(
            dir_.File(fmt::format("random-evicting-{}-{}-{}.db", shard_count, seed, retention_ms)),
            retention_ms, shard_count, 64, steps, skus);
        ExpectSameRuns(
            resident, evicting,
            fmt::format("{} shards, seed {}, retention {} ms", shard_count, seed, retention_ms));
        auto& counts = evicted_and_read_back[{shard_count, retention_ms}];
        counts.first += evicting.stats.evicted_reservations;
        counts.second += evicting.stats.faulted_in_reservations;
      }
    }
  }
  for (const auto& [run, counts] : evicted_and_read_back) {
    EXPECT_GT(counts.first, 0) << run.first << " shards, " << run.second << " ms";
    EXPECT_GT(counts.second, 0) << run.first << " shards, " << run.second << " ms";
  }
}

// The hot path: a new reservation id is neither resident nor in the compact record, so it is
// reserved without a database read.
TEST_F(ShardEngineTest, NewReservationsDoNotReadTheDatabase) {
  StartEvictingEngine(1, /*retention_ms=*/0);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 1000);
  for (int i = 0; i < 200; ++i) {
    const std::string id = fmt::format("old-{}", i);
    ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(id, "a", 1)), ReserveOutcome::kReserved);
    ASSERT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId(id)})),
              ReleaseOutcome::kReleased);
  }
  EXPECT_EQ(engine_->stats().evicted_reservations, 200);
  EXPECT_EQ(engine_->stats().resident_reservations, 0);
  const int64_t reads = engine_->stats().fault_in_reads;
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(fmt::format("new-{}", i), "a", 1)),
              ReserveOutcome::kReserved);
  }
  EXPECT_EQ(engine_->stats().fault_in_reads, reads);
  EXPECT_EQ(engine_->stats().resident_reservations, 200);
  // Allocating takes no read either (a new order id), and an evicted order id does.
  ASSERT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("new-0"), OrderId("o-new")})),
            AllocateOutcome::kAllocated);
  EXPECT_EQ(engine_->stats().fault_in_reads, reads);
  EXPECT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("old-7")})),
            ReleaseOutcome::kAlreadyReleased);
  EXPECT_EQ(engine_->stats().fault_in_reads, reads + 1);
  ExpectLedgerMatchesStock();
}

// A batch whose fault-in read fails applies nothing and answers Unavailable; the retry works.
TEST_F(ShardEngineTest, FailedFaultInReadAppliesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartWithReleasedR1Evicted());
  faulty_->fail_reads = true;
  CommandResult failed = Reserve("r1", "a", 4);
  faulty_->fail_reads = false;
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable) << failed.status;
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 0);
  CommandResult replay = Reserve("r1", "a", 4);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(replay), ReserveOutcome::kAlreadyReserved);
  ASSERT_TRUE(replay.reservation.has_value());
  EXPECT_EQ(replay.reservation->state, ReservationState::kReleased);
  ExpectLedgerMatchesStock();
}

// A location AddLocation stored is queued to the shards once; if it lands in a batch whose
// fault-in read fails, the shard must still learn it (it reloads before its next batch).
TEST_F(ShardEngineTest, ALocationInABatchWhoseFaultInFailsIsStillLearnt) {
  ASSERT_NO_FATAL_FAILURE(StartWithReleasedR1Evicted());

  // The shard's writer is held in the write of one command; meanwhile the location (whose own
  // row write passes) and a command naming the evicted r1 queue up behind it: one batch.
  faulty_->HoldNextWrite();
  const int64_t entered = faulty_->writes_entered();
  Latch held(1);
  engine_->Submit(cmd::Receive{Sku("a"), LocationId("eu1"), 1, "po"},
                  [&held](CommandResult) { held.CountDown(); });
  ASSERT_TRUE(faulty_->WaitForWritesEntered(entered + 1));
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu2"), "eu", "Hamburg"}).ok());
  faulty_->fail_reads = true;
  Latch replayed(1);
  CommandResult replay;
  engine_->Submit(cmd::Reserve{ReservationId("r1"), {{Sku("a"), 4}}, "eu", 60'000},
                  [&](CommandResult result) {
                    replay = std::move(result);
                    replayed.CountDown();
                  });
  faulty_->ReleaseWrites();
  ASSERT_TRUE(held.Wait());
  ASSERT_TRUE(replayed.Wait());
  faulty_->fail_reads = false;
  EXPECT_EQ(replay.status.code(), absl::StatusCode::kUnavailable) << replay.status;

  // kUnknownLocation here would mean the shard dropped eu2 with the failed batch.
  CommandResult received = engine_->Execute(cmd::Receive{Sku("a"), LocationId("eu2"), 5, "po"});
  ASSERT_TRUE(received.status.ok()) << received.status;
  EXPECT_EQ(std::get<StockOutcome>(received.outcome), StockOutcome::kApplied);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 4)), ReserveOutcome::kAlreadyReserved);
  ExpectLedgerMatchesStock();
}

// With several shards a Reserve goes to the shard of its lines, unless its id is already held
// by a shard (in memory or evicted): that one answers, so other lines under the same id are a
// conflict there, not a second reservation in another shard under the same id.
TEST_F(ShardEngineTest, AKnownReservationIdIsAnsweredByItsShardWhateverTheLines) {
  constexpr int64_t kRetentionMs = 1'000;
  StartEvictingEngine(3, kRetentionMs);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  const std::string other_sku = SkuOutsideShardsOf(*engine_, {"a"});
  ASSERT_FALSE(other_sku.empty());
  Receive("a", "eu1", 10);
  Receive(other_sku, "eu1", 10);
  ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 2)), ReserveOutcome::kReserved);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", other_sku, 1)), ReserveOutcome::kConflict);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 2)), ReserveOutcome::kAlreadyReserved);
  // Evicted, it is confirmed against the database and answered the same way.
  ASSERT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("r1")})),
            ReleaseOutcome::kReleased);
  clock_.Advance(absl::Milliseconds(2 * kRetentionMs));
  Receive("a", "eu1", 1);  // a batch in r1's shard, past the retention: r1 leaves memory
  ASSERT_EQ(engine_->stats().resident_reservations, 0);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", other_sku, 1)), ReserveOutcome::kConflict);
  CommandResult replay = Reserve("r1", "a", 2);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(replay), ReserveOutcome::kAlreadyReserved);
  ASSERT_TRUE(replay.reservation.has_value());
  EXPECT_EQ(replay.reservation->state, ReservationState::kReleased);
  EXPECT_EQ(DurableStock(other_sku, "eu1").reserved, 0);
  EXPECT_EQ(DurableStock("a", "eu1").reserved, 0);
  ExpectLedgerMatchesStock();
}

// One order allocated in two shards (allocated in A, cancelled, then allocated in B): commands
// for it go to B, where it was allocated last, whichever shard evicts its reservation last.
TEST_F(ShardEngineTest, AnOrderAllocatedInTwoShardsRoutesToTheLatestAllocation) {
  constexpr int64_t kRetentionMs = 1'000;
  StartEvictingEngine(3, kRetentionMs);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  // Two SKUs in different shards.
  const std::string sku_a = "sku0";
  const std::string sku_b = SkuOutsideShardsOf(*engine_, {sku_a});
  ASSERT_FALSE(sku_b.empty());
  Receive(sku_a, "eu1", 10);
  Receive(sku_b, "eu1", 10);
  const OrderId order("o-two-shards");
  ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r-a", sku_a, 1)), ReserveOutcome::kReserved);
  ASSERT_EQ(
      OutcomeOf<AllocateOutcome>(engine_->Execute(cmd::Allocate{ReservationId("r-a"), order})),
      AllocateOutcome::kAllocated);
  ASSERT_EQ(OutcomeOf<CancelAllocationOutcome>(engine_->Execute(cmd::CancelAllocation{order})),
            CancelAllocationOutcome::kCancelled);
  ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r-b", sku_b, 1)), ReserveOutcome::kReserved);
  ASSERT_EQ(
      OutcomeOf<AllocateOutcome>(engine_->Execute(cmd::Allocate{ReservationId("r-b"), order})),
      AllocateOutcome::kAllocated);
  ASSERT_EQ(OutcomeOf<ShipOutcome>(engine_->Execute(cmd::Ship{order, "s1", {{Sku(sku_b), 1}}})),
            ShipOutcome::kShipped);
  ASSERT_EQ(OutcomeOf<DeliverOutcome>(engine_->Execute(cmd::Deliver{order})),
            DeliverOutcome::kDelivered);
  // B evicts r-b first, then A evicts r-a (each after a batch of its own, past the retention).
  clock_.Advance(absl::Milliseconds(2 * kRetentionMs));
  Receive(sku_b, "eu1", 1);
  Receive(sku_a, "eu1", 1);
  ASSERT_EQ(engine_->stats().resident_reservations, 0);
  EXPECT_EQ(OutcomeOf<DeliverOutcome>(engine_->Execute(cmd::Deliver{order})),
            DeliverOutcome::kAlreadyDelivered);
  EXPECT_EQ(
      OutcomeOf<ReturnOutcome>(engine_->Execute(cmd::Return{order, "ret1", {{Sku(sku_b), 1}}})),
      ReturnOutcome::kReturned);
  EXPECT_EQ(OutcomeOf<CancelAllocationOutcome>(engine_->Execute(cmd::CancelAllocation{order})),
            CancelAllocationOutcome::kAlreadyShipped);
  ExpectLedgerMatchesStock();
}

// A restart loads only the live reservations into memory, and the settled ones still answer.
TEST_F(ShardEngineTest, RestartLoadsOnlyLiveReservations) {
  StartEvictingEngine(1, kNeverEvict);
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 100);
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(fmt::format("r{}", i), "a", 1)),
              ReserveOutcome::kReserved);
  }
  for (int i = 0; i < 4; ++i) {  // r0..r3 released
    ASSERT_EQ(OutcomeOf<ReleaseOutcome>(
                  engine_->Execute(cmd::Release{ReservationId(fmt::format("r{}", i))})),
              ReleaseOutcome::kReleased);
  }
  for (int i = 4; i < 7; ++i) {  // r4..r6 allocated, r4 shipped
    ASSERT_EQ(OutcomeOf<AllocateOutcome>(engine_->Execute(cmd::Allocate{
                  ReservationId(fmt::format("r{}", i)), OrderId(fmt::format("o{}", i))})),
              AllocateOutcome::kAllocated);
  }
  ASSERT_EQ(
      OutcomeOf<ShipOutcome>(engine_->Execute(cmd::Ship{OrderId("o4"), "s4", {{Sku("a"), 1}}})),
      ShipOutcome::kShipped);
  EXPECT_EQ(engine_->stats().resident_reservations, 10);
  EXPECT_EQ(engine_->stats().evicted_reservations, 0);
  engine_->Stop();
  engine_.reset();
  StartEvictingEngine(1, kNeverEvict);
  EXPECT_EQ(engine_->stats().resident_reservations, 5);   // r5, r6 allocated; r7..r9 active
  EXPECT_EQ(engine_->stats().evicted_record_entries, 6);  // r0..r4 and order o4
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r0", "a", 1)), ReserveOutcome::kAlreadyReserved);
  EXPECT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 2)), ReserveOutcome::kConflict);
  EXPECT_EQ(
      OutcomeOf<ShipOutcome>(engine_->Execute(cmd::Ship{OrderId("o4"), "s4", {{Sku("a"), 1}}})),
      ShipOutcome::kAlreadyApplied);
  EXPECT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r7"), OrderId("o4")})),
            AllocateOutcome::kConflict);
  EXPECT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r5"), OrderId("o5")})),
            AllocateOutcome::kAlreadyAllocated);
  EXPECT_EQ(engine_->stats().resident_reservations, 8);  // r0, r1, r4 read back
  // A failed commit reloads the same way: only live ones stay in memory.
  faulty_->fail_writes = true;
  EXPECT_FALSE(Reserve("r-new", "a", 1).status.ok());
  faulty_->fail_writes = false;
  EXPECT_EQ(engine_->stats().resident_reservations, 5);
  EXPECT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId("r2")})),
            ReleaseOutcome::kAlreadyReleased);
  ExpectLedgerMatchesStock();
}

// With three shards, commands naming evicted reservations and orders are routed to the shard
// that holds them, also when their hashes collide (2 bits: four values for ~30 ids), and after
// a restart.
TEST_F(ShardEngineTest, EvictedIdsRouteToTheirShard) {
  constexpr int kCount = 30;
  for (int hash_bits : {64, 2}) {
    SCOPED_TRACE(hash_bits);
    if (engine_) engine_->Stop();
    engine_.reset();
    const std::string prefix = fmt::format("b{}-", hash_bits);
    StartEvictingEngine(3, /*retention_ms=*/0, hash_bits);
    ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
    std::vector<size_t> shard_of(kCount);
    for (int i = 0; i < kCount; ++i) {
      const std::string sku = fmt::format("sku{}", i);
      shard_of[i] = engine_->ShardOf(Sku(sku));
      Receive(sku, "eu1", 10);
      const std::string id = prefix + std::to_string(i);
      ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(id, sku, 2)), ReserveOutcome::kReserved);
      ASSERT_EQ(OutcomeOf<AllocateOutcome>(
                    engine_->Execute(cmd::Allocate{ReservationId(id), OrderId("o" + id)})),
                AllocateOutcome::kAllocated);
      ASSERT_EQ(OutcomeOf<ShipOutcome>(
                    engine_->Execute(cmd::Ship{OrderId("o" + id), "s", {{Sku(sku), 2}}})),
                ShipOutcome::kShipped);
    }
    EXPECT_EQ(engine_->stats().resident_reservations, 0);
    EXPECT_EQ(engine_->stats().evicted_reservations, kCount);
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kCount; ++i) {
        const std::string id = prefix + std::to_string(i);
        const std::string sku = fmt::format("sku{}", i);
        SCOPED_TRACE(id);
        // kNotFound would mean another shard answered.
        EXPECT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId(id)})),
                  ReleaseOutcome::kNotActive);
        EXPECT_EQ(OutcomeOf<AllocateOutcome>(
                      engine_->Execute(cmd::Allocate{ReservationId(id), OrderId("o" + id)})),
                  AllocateOutcome::kAlreadyAllocated);
        EXPECT_EQ(OutcomeOf<ShipOutcome>(
                      engine_->Execute(cmd::Ship{OrderId("o" + id), "s", {{Sku(sku), 2}}})),
                  ShipOutcome::kAlreadyApplied);
        EXPECT_EQ(OutcomeOf<ReturnOutcome>(engine_->Execute(cmd::Return{
                      OrderId("o" + id), fmt::format("ret{}", round), {{Sku(sku), 1}}})),
                  ReturnOutcome::kReturned);
        // The order is taken: a second reservation in the same shard cannot have it.
        const std::string other = id + "-again-" + std::to_string(round);
        ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve(other, sku, 1)), ReserveOutcome::kReserved);
        EXPECT_EQ(OutcomeOf<AllocateOutcome>(
                      engine_->Execute(cmd::Allocate{ReservationId(other), OrderId("o" + id)})),
                  AllocateOutcome::kConflict);
        EXPECT_EQ(OutcomeOf<ReleaseOutcome>(engine_->Execute(cmd::Release{ReservationId(other)})),
                  ReleaseOutcome::kReleased);
      }
      engine_->Stop();
      engine_.reset();
      StartEvictingEngine(3, /*retention_ms=*/0, hash_bits);
    }
    EXPECT_EQ(engine_->stats().resident_reservations, 0);
    ExpectLedgerMatchesStock();
  }
}

// The randomized hammering of ConcurrentHammering with every settled reservation evicted after
// each batch (and, in a second run, 3-bit hashes so that most names collide): eviction and
// fault-in happen constantly; the invariant is checked after every batch and the ledger
// projects onto the stock table at the end, also after a restart.
TEST_F(ShardEngineTest, ConcurrentHammeringWithConstantEviction) {
  for (int hash_bits : {64, 3}) {
    SCOPED_TRACE(hash_bits);
    if (engine_) engine_->Stop();
    engine_.reset();
    StartEvictingEngine(2, /*retention_ms=*/0, hash_bits);
    const std::string run = fmt::format("h{}", hash_bits);
    const std::vector<std::string> skus = StockFourSkusAtTwoLocations(200);
    constexpr int kThreads = 6;
    constexpr int kOpsPerThread = 600;
    std::atomic<int> errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937 random(static_cast<unsigned>(t) + 11);
        for (int i = 0; i < kOpsPerThread; ++i) {
          Command command = RandomHammerCommand(random, run, t, i, skus, /*settling=*/true);
          // Closed loops (each caller waits for its answer): many small batches, so the
          // reservations settled by one are evicted before the next names them.
          if (!engine_->Execute(std::move(command)).status.ok()) errors.fetch_add(1);
          if (i % 50 == 0) clock_.Advance(absl::Milliseconds(100));
        }
      });
    }
    JoinWhileSweeping(threads, errors);
    EXPECT_EQ(errors.load(), 0);
    EXPECT_GT(engine_->stats().evicted_reservations, 100);
    EXPECT_GT(engine_->stats().faulted_in_reservations, 10);
    std::printf("evicted %lld, faulted in %lld in %lld reads\n",
                static_cast<long long>(engine_->stats().evicted_reservations),
                static_cast<long long>(engine_->stats().faulted_in_reservations),
                static_cast<long long>(engine_->stats().fault_in_reads));
    ExpectLedgerMatchesStock();
    engine_->Stop();
    engine_.reset();
    StartEvictingEngine(2, /*retention_ms=*/0, hash_bits);
    clock_.Advance(absl::Hours(1));
    ASSERT_TRUE(engine_->SweepExpired().ok());
    ExpectLedgerMatchesStock();
    auto stock = store_->LoadAllStock();
    ASSERT_TRUE(stock.ok());
    for (const StockLevel& level : *stock) EXPECT_EQ(level.reserved, 0);
  }
}

// The order lookup of fault-in is served by migration 0007's partial index, which holds only
// settled rows with an order: reserving and allocating leave it alone.
TEST_F(ShardEngineTest, ReservationsOfAnOrderComeFromThePartialIndex) {
  ASSERT_TRUE(db_->Read([](sql::Transaction& transaction) -> absl::Status {
                   absl::StatusOr<sql::ResultSet> plan = transaction.Query(
                       "EXPLAIN QUERY PLAN SELECT id, lines FROM reservations "
                       "WHERE order_id = ? AND order_id <> '' AND state NOT IN ('active', "
                       "'allocated')",
                       {"o1"});
                   if (!plan.ok()) return plan.status();
                   std::string detail;
                   for (const sql::Row& row : plan->rows) detail += row.Text(row.size() - 1);
                   EXPECT_THAT(detail, ::testing::HasSubstr("reservations_by_order")) << detail;
                   return absl::OkStatus();
                 })
                  .ok());
  auto indexed = [this] {
    int64_t count = -1;
    EXPECT_TRUE(db_->Read([&count](sql::Transaction& transaction) -> absl::Status {
                     absl::StatusOr<sql::ResultSet> rows = transaction.Query(
                         "SELECT COUNT(*) FROM reservations INDEXED BY reservations_by_order "
                         "WHERE order_id <> '' AND state NOT IN ('active', 'allocated')");
                     if (!rows.ok()) return rows.status();
                     count = rows->rows.front().Int(0);
                     return absl::OkStatus();
                   })
                    .ok());
    return count;
  };
  StartEngine();
  ASSERT_TRUE(engine_->AddLocation({LocationId("eu1"), "eu", "Berlin"}).ok());
  Receive("a", "eu1", 10);
  ASSERT_EQ(OutcomeOf<ReserveOutcome>(Reserve("r1", "a", 2)), ReserveOutcome::kReserved);
  ASSERT_EQ(OutcomeOf<AllocateOutcome>(
                engine_->Execute(cmd::Allocate{ReservationId("r1"), OrderId("o1")})),
            AllocateOutcome::kAllocated);
  EXPECT_EQ(indexed(), 0);
  ASSERT_EQ(
      OutcomeOf<ShipOutcome>(engine_->Execute(cmd::Ship{OrderId("o1"), "s1", {{Sku("a"), 2}}})),
      ShipOutcome::kShipped);
  EXPECT_EQ(indexed(), 1);
}

}  // namespace
}  // namespace emporium::inventory
