// The contract every Database driver must honour, as a value-parameterized GoogleTest suite.
// A driver's test instantiates it with a factory for fresh databases:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, SqlContractTest,
//                            ::testing::Values(ContractParam{"sqlite", MakeSqliteBackend}),
//                            ContractParamName);
//
// Include this header in exactly one .cpp per test binary (it defines the tests).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::sql::contract {

struct ContractOpenOptions {
  size_t write_queue_capacity = 16384;
};

// One database for one test. Every Open() reaches the same database (initially empty), so a
// test can close and reopen it; the destructor deletes it.
class ContractBackend {
 public:
  virtual ~ContractBackend() = default;
  virtual absl::StatusOr<std::unique_ptr<Database>> Open(const ContractOpenOptions& options) = 0;
};

struct ContractParam {
  std::string name;
  std::function<std::unique_ptr<ContractBackend>()> make_backend;
};

inline std::string ContractParamName(const ::testing::TestParamInfo<ContractParam>& info) {
  return info.param.name;
}

// Bound on every wait in these tests, so a broken driver fails instead of hanging.
constexpr auto kWaitBound = std::chrono::seconds(30);

// A one-shot gate with a bounded wait.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitBound, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Collects SubmitWrite outcomes and waits for an expected number of them.
class Outcomes {
 public:
  WriteDone Slot(size_t index) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (statuses_.size() <= index) statuses_.resize(index + 1, absl::UnknownError("pending"));
    }
    return [this, index](absl::Status status) {
      std::lock_guard<std::mutex> lock(mu_);
      statuses_[index] = std::move(status);
      ++done_;
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kWaitBound, [&] { return done_ >= count; });
  }
  absl::Status at(size_t index) {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_.at(index);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<absl::Status> statuses_;
  size_t done_ = 0;
};

class SqlContractTest : public ::testing::TestWithParam<ContractParam> {
 protected:
  void SetUp() override {
    backend_ = GetParam().make_backend();
    ASSERT_NE(backend_, nullptr);
    Reopen();
  }

  void TearDown() override {
    if (db_ != nullptr) db_->Close();
    db_.reset();
    backend_.reset();
  }

  void Reopen(ContractOpenOptions options = {}) {
    if (db_ != nullptr) db_->Close();
    db_.reset();
    auto db = backend_->Open(options);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  absl::Status Exec(std::string sql, std::vector<Value> params = {}) {
    return db_->Write([&](Transaction& transaction) -> absl::Status {
      return transaction.Execute(sql, params).status();
    });
  }

  absl::StatusOr<ResultSet> Select(std::string sql, std::vector<Value> params = {}) {
    ResultSet result;
    absl::Status status = db_->Read([&](Transaction& transaction) -> absl::Status {
      auto rows = transaction.Query(sql, params);
      if (!rows.ok()) return rows.status();
      result = std::move(*rows);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return result;
  }

  int64_t Count(const std::string& table) {
    auto result = Select("SELECT COUNT(*) FROM " + table);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->rows.at(0).Int(0) : -1;
  }

  // Queues a job that holds the writer until `release` opens; returns once it is running, so
  // everything submitted afterwards queues up behind it and lands in the next batch.
  void HoldWriter(Gate& started, Gate& release, Outcomes& outcomes, size_t slot) {
    db_->SubmitWrite(
        [&started, &release](Transaction&) -> absl::Status {
          started.Open();
          return release.Wait() ? absl::OkStatus() : absl::DeadlineExceededError("gate");
        },
        outcomes.Slot(slot));
    ASSERT_TRUE(started.Wait());
  }

  std::unique_ptr<ContractBackend> backend_;
  std::unique_ptr<Database> db_;
};

TEST_P(SqlContractTest, EveryValueTypeRoundTrips) {
  ASSERT_TRUE(Exec("CREATE TABLE vals (id BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, "
                   "t TEXT, b BLOB)")
                  .ok());
  const std::string binary("\0a\0\xff\x01\0", 6);
  const std::vector<std::vector<Value>> rows = {
      {int64_t{1}, std::numeric_limits<int64_t>::min(), -1.5, std::string("héllo 'quoted' ?"),
       Blob{binary}},
      {int64_t{2}, std::numeric_limits<int64_t>::max(), 1e300, std::string(""), Blob{""}},
      {int64_t{3}, std::monostate{}, std::monostate{}, std::monostate{}, std::monostate{}},
  };
  for (const auto& row : rows) {
    ASSERT_TRUE(Exec("INSERT INTO vals (id, i, d, t, b) VALUES (?, ?, ?, ?, ?)", row).ok());
  }
  auto result = Select("SELECT id, i, d, t, b FROM vals ORDER BY id");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->columns, (std::vector<std::string>{"id", "i", "d", "t", "b"}));
  ASSERT_EQ(result->rows.size(), rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size(); ++c) {
      EXPECT_EQ(result->rows[r].value(c), rows[r][c]) << "row " << r << " column " << c;
    }
  }
  const Row& first = result->rows[0];
  EXPECT_EQ(first.Int(1), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(first.Double(2), -1.5);
  EXPECT_EQ(first.Text(3), "héllo 'quoted' ?");
  EXPECT_EQ(first.Text(4), binary);
  EXPECT_EQ(first.Text(4).size(), 6u);
  const Row& nulls = result->rows[2];
  EXPECT_TRUE(nulls.IsNull(1));
  EXPECT_EQ(nulls.OptionalInt(1), std::nullopt);
  EXPECT_EQ(nulls.OptionalText(3), std::nullopt);
  EXPECT_EQ(result->rows[1].OptionalText(3), std::optional<std::string>(""));
}

// Callers pass parameters as braced lists whose strings are often temporaries; the driver may
// view them without copying, so they must still read back intact.
TEST_P(SqlContractTest, BracedListParametersWithTemporariesRoundTrip) {
  ASSERT_TRUE(Exec("CREATE TABLE vals (id BIGINT PRIMARY KEY, i BIGINT, d DOUBLE PRECISION, "
                   "t TEXT, b BLOB, n TEXT)")
                  .ok());
  const std::string long_text(200, 'x');
  ASSERT_TRUE(
      db_->Write([&](Transaction& transaction) -> absl::Status {
           for (int64_t id = 1; id <= 3; ++id) {
             auto inserted = transaction.Execute(
                 "INSERT INTO vals (id, i, d, t, b, n) VALUES (?, ?, ?, ?, ?, ?)",
                 {id, 40 + id, 0.5 * static_cast<double>(id), long_text + std::to_string(id),
                  Blob{std::string("\0z", 2)}, std::monostate{}});
             if (!inserted.ok()) return inserted.status();
           }
           return transaction.Execute("UPDATE vals SET t = ? WHERE id = ?", {"", 3}).status();
         })
          .ok());
  auto result = db_->Read([&](Transaction& transaction) -> absl::Status {
    auto rows =
        transaction.Query("SELECT i, d, t, b, n FROM vals WHERE id >= ? ORDER BY id", {int64_t{1}});
    if (!rows.ok()) return rows.status();
    EXPECT_EQ(rows->rows.size(), 3u);
    for (int64_t id = 1; id <= static_cast<int64_t>(rows->rows.size()); ++id) {
      const Row& row = rows->rows[static_cast<size_t>(id - 1)];
      EXPECT_EQ(row.Int(0), 40 + id);
      EXPECT_EQ(row.Double(1), 0.5 * static_cast<double>(id));
      EXPECT_EQ(row.Text(2), id == 3 ? "" : long_text + std::to_string(id));
      EXPECT_FALSE(row.IsNull(2));  // Empty text is text, not NULL.
      EXPECT_EQ(row.value(3), Value(Blob{std::string("\0z", 2)}));
      EXPECT_TRUE(row.IsNull(4));
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(result.ok()) << result;
}

TEST_P(SqlContractTest, ExecuteReturnsChangedRows) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)").ok());
  absl::StatusOr<int64_t> changed;
  ASSERT_TRUE(db_->Write([&](Transaction& transaction) -> absl::Status {
                   for (int64_t i = 0; i < 5; ++i) {
                     auto inserted = transaction.Execute("INSERT INTO t (id, n) VALUES (?, ?)",
                                                         {i, int64_t{0}});
                     if (!inserted.ok()) return inserted.status();
                   }
                   changed =
                       transaction.Execute("UPDATE t SET n = n + 1 WHERE id < ?", {int64_t{3}});
                   return changed.status();
                 })
                  .ok());
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, 3);
}

TEST_P(SqlContractTest, ConstraintViolationsMapToCanonicalErrors) {
  ASSERT_TRUE(Exec("CREATE TABLE parent (id BIGINT PRIMARY KEY, email TEXT NOT NULL UNIQUE)").ok());
  ASSERT_TRUE(Exec("CREATE TABLE child (id BIGINT PRIMARY KEY, "
                   "parent_id BIGINT NOT NULL REFERENCES parent (id))")
                  .ok());
  ASSERT_TRUE(Exec("INSERT INTO parent (id, email) VALUES (?, ?)", {int64_t{1}, "a@x"}).ok());
  EXPECT_EQ(Exec("INSERT INTO parent (id, email) VALUES (?, ?)", {int64_t{1}, "b@x"}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Exec("INSERT INTO parent (id, email) VALUES (?, ?)", {int64_t{2}, "a@x"}).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(
      Exec("INSERT INTO parent (id, email) VALUES (?, ?)", {int64_t{3}, std::monostate{}}).code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      Exec("INSERT INTO child (id, parent_id) VALUES (?, ?)", {int64_t{1}, int64_t{99}}).code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Exec("INSERT INTO nowhere VALUES (1)").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Exec("SELEKT 1").code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(Exec("INSERT INTO parent (id, email) VALUES (?, ?)", {int64_t{4}}).ok());
  EXPECT_EQ(Count("parent"), 1);
}

TEST_P(SqlContractTest, FailingJobRollsBackAloneWhileBatchMatesCommit) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  const int64_t batches_before = db_->stats().batches_committed;
  Gate started, release;
  Outcomes outcomes;
  HoldWriter(started, release, outcomes, 0);
  constexpr int kThreads = 8;
  constexpr int kJobsPerThread = 25;
  constexpr int kJobs = kThreads * kJobsPerThread;
  for (int j = 0; j < kJobs; ++j) outcomes.Slot(static_cast<size_t>(j) + 1);
  std::vector<std::thread> submitters;
  for (int t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      for (int k = 0; k < kJobsPerThread; ++k) {
        int64_t id = t * kJobsPerThread + k;
        db_->SubmitWrite(
            [id](Transaction& transaction) -> absl::Status {
              auto inserted = transaction.Execute("INSERT INTO t (id) VALUES (?)", {id});
              if (!inserted.ok()) return inserted.status();
              // Every fourth job fails after writing; every fourth+1 hits a unique violation
              // after writing. Their rows must vanish.
              if (id % 4 == 0) return absl::AbortedError("changed my mind");
              if (id % 4 == 1) {
                return transaction.Execute("INSERT INTO t (id) VALUES (?)", {id}).status();
              }
              return absl::OkStatus();
            },
            outcomes.Slot(static_cast<size_t>(id) + 1));
      }
    });
  }
  for (auto& thread : submitters) thread.join();
  release.Open();
  ASSERT_TRUE(outcomes.WaitFor(kJobs + 1));
  for (int64_t id = 0; id < kJobs; ++id) {
    absl::Status status = outcomes.at(static_cast<size_t>(id) + 1);
    if (id % 4 == 0) {
      EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << id;
    } else if (id % 4 == 1) {
      EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << id;
    } else {
      EXPECT_TRUE(status.ok()) << id << ": " << status;
    }
  }
  auto ids = Select("SELECT id FROM t ORDER BY id");
  ASSERT_TRUE(ids.ok());
  std::vector<int64_t> got;
  for (const Row& row : ids->rows) got.push_back(row.Int(0));
  std::vector<int64_t> want;
  for (int64_t id = 0; id < kJobs; ++id) {
    if (id % 4 >= 2) want.push_back(id);
  }
  EXPECT_EQ(got, want);
  // The jobs queued behind the held writer shared few transactions.
  EXPECT_LE(db_->stats().batches_committed - batches_before, kJobs / 10);
}

TEST_P(SqlContractTest, ThrowingJobFailsAloneWithInternal) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  Gate started, release;
  Outcomes outcomes;
  HoldWriter(started, release, outcomes, 0);
  db_->SubmitWrite(
      [](Transaction& transaction) -> absl::Status {
        return transaction.Execute("INSERT INTO t (id) VALUES (1)").status();
      },
      outcomes.Slot(1));
  db_->SubmitWrite(
      [](Transaction& transaction) -> absl::Status {
        auto inserted = transaction.Execute("INSERT INTO t (id) VALUES (2)");
        if (inserted.ok()) throw std::runtime_error("boom");
        return inserted.status();
      },
      outcomes.Slot(2));
  db_->SubmitWrite([](Transaction&) -> absl::Status { throw 42; }, outcomes.Slot(3));
  db_->SubmitWrite(
      [](Transaction& transaction) -> absl::Status {
        return transaction.Execute("INSERT INTO t (id) VALUES (3)").status();
      },
      outcomes.Slot(4));
  release.Open();
  ASSERT_TRUE(outcomes.WaitFor(5));
  EXPECT_TRUE(outcomes.at(1).ok());
  EXPECT_EQ(outcomes.at(2).code(), absl::StatusCode::kInternal);
  EXPECT_NE(outcomes.at(2).message().find("boom"), absl::string_view::npos);
  EXPECT_EQ(outcomes.at(3).code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(outcomes.at(4).ok());
  auto ids = Select("SELECT id FROM t ORDER BY id");
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->rows.size(), 2u);
  EXPECT_EQ(ids->rows[0].Int(0), 1);
  EXPECT_EQ(ids->rows[1].Int(0), 3);
  EXPECT_EQ(
      db_->Read([](Transaction&) -> absl::Status { throw std::logic_error("read boom"); }).code(),
      absl::StatusCode::kInternal);
}

TEST_P(SqlContractTest, ReadSeesOnlyCommittedData) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  Gate inserted, release;
  absl::Status write_status = absl::UnknownError("not run");
  std::thread writer([&] {
    write_status = db_->Write([&](Transaction& transaction) -> absl::Status {
      auto result = transaction.Execute("INSERT INTO t (id) VALUES (1)");
      inserted.Open();
      if (!release.Wait()) return absl::DeadlineExceededError("gate");
      return result.status();
    });
  });
  ASSERT_TRUE(inserted.Wait());
  EXPECT_EQ(Count("t"), 0);
  release.Open();
  writer.join();
  ASSERT_TRUE(write_status.ok()) << write_status;
  EXPECT_EQ(Count("t"), 1);
}

TEST_P(SqlContractTest, WritesThroughAReadTransactionFail) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  absl::Status status = db_->Read([](Transaction& transaction) -> absl::Status {
    return transaction.Execute("INSERT INTO t (id) VALUES (1)").status();
  });
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(Count("t"), 0);
}

TEST_P(SqlContractTest, ConcurrentWritersLoseNothing) {
  ASSERT_TRUE(Exec("CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)").ok());
  ASSERT_TRUE(Exec("INSERT INTO counter (id, n) VALUES (1, 0)").ok());
  constexpr int kThreads = 8;
  constexpr int kIncrements = 500;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        // Read-modify-write: only correct if jobs are serialized.
        absl::Status status = db_->Write([](Transaction& transaction) -> absl::Status {
          auto current = transaction.Query("SELECT n FROM counter WHERE id = 1");
          if (!current.ok()) return current.status();
          return transaction
              .Execute("UPDATE counter SET n = ? WHERE id = 1", {current->rows.at(0).Int(0) + 1})
              .status();
        });
        if (!status.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  auto result = Select("SELECT n FROM counter WHERE id = 1");
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->rows.at(0).Int(0), kThreads * kIncrements);
  EXPECT_GE(db_->stats().jobs_committed, kThreads * kIncrements);
}

TEST_P(SqlContractTest, FullQueueIsResourceExhausted) {
  constexpr size_t kCapacity = 4;
  Reopen({.write_queue_capacity = kCapacity});
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  Gate started, release;
  Outcomes outcomes;
  HoldWriter(started, release, outcomes, 0);
  for (size_t i = 0; i < kCapacity; ++i) {
    db_->SubmitWrite(
        [i](Transaction& transaction) -> absl::Status {
          return transaction.Execute("INSERT INTO t (id) VALUES (?)", {static_cast<int64_t>(i)})
              .status();
        },
        outcomes.Slot(i + 1));
  }
  EXPECT_EQ(db_->stats().queue_depth, static_cast<int64_t>(kCapacity));
  EXPECT_EQ(Exec("INSERT INTO t (id) VALUES (100)").code(), absl::StatusCode::kResourceExhausted);
  absl::Status rejected = absl::UnknownError("not called");
  db_->SubmitWrite([](Transaction&) { return absl::OkStatus(); },
                   [&rejected](absl::Status status) { rejected = std::move(status); });
  EXPECT_EQ(rejected.code(), absl::StatusCode::kResourceExhausted);
  release.Open();
  ASSERT_TRUE(outcomes.WaitFor(kCapacity + 1));
  for (size_t i = 0; i <= kCapacity; ++i) EXPECT_TRUE(outcomes.at(i).ok()) << i;
  EXPECT_EQ(Count("t"), static_cast<int64_t>(kCapacity));
}

TEST_P(SqlContractTest, CloseDrainsQueueThenRefusesWork) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  Gate started, release;
  Outcomes outcomes;
  HoldWriter(started, release, outcomes, 0);
  constexpr size_t kQueued = 10;
  for (size_t i = 0; i < kQueued; ++i) {
    db_->SubmitWrite(
        [i](Transaction& transaction) -> absl::Status {
          return transaction.Execute("INSERT INTO t (id) VALUES (?)", {static_cast<int64_t>(i)})
              .status();
        },
        outcomes.Slot(i + 1));
  }
  std::thread closer([&] { db_->Close(); });
  release.Open();
  closer.join();
  ASSERT_TRUE(outcomes.WaitFor(kQueued + 1));
  for (size_t i = 0; i <= kQueued; ++i) EXPECT_TRUE(outcomes.at(i).ok()) << i;

  EXPECT_EQ(Exec("INSERT INTO t (id) VALUES (100)").code(), absl::StatusCode::kUnavailable);
  absl::Status submitted = absl::UnknownError("not called");
  db_->SubmitWrite([](Transaction&) { return absl::OkStatus(); },
                   [&submitted](absl::Status status) { submitted = std::move(status); });
  EXPECT_EQ(submitted.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(db_->Read([](Transaction&) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kUnavailable);
  db_->Close();  // Idempotent.

  Reopen();
  EXPECT_EQ(Count("t"), static_cast<int64_t>(kQueued));
}

TEST_P(SqlContractTest, CommittedWritesSurviveReopen) {
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY, payload BLOB NOT NULL)").ok());
  for (int64_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(Exec("INSERT INTO t (id, payload) VALUES (?, ?)",
                     {i, Blob{std::string(static_cast<size_t>(i), '\0')}})
                    .ok());
  }
  Reopen();
  auto result = Select("SELECT id, payload FROM t ORDER BY id");
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->rows.size(), 20u);
  for (int64_t i = 0; i < 20; ++i) {
    EXPECT_EQ(result->rows[static_cast<size_t>(i)].value(1),
              Value(Blob{std::string(static_cast<size_t>(i), '\0')}));
  }
}

TEST_P(SqlContractTest, CommitListenersRunAfterCommit) {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  db_->AddCommitListener([&] {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    cv.notify_all();
  });
  ASSERT_TRUE(Exec("CREATE TABLE t (id BIGINT PRIMARY KEY)").ok());
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_TRUE(cv.wait_for(lock, kWaitBound, [&] { return calls >= 1; }));
}

inline std::vector<Migration> ContractMigrations() {
  return {
      {1, "create_items",
       "CREATE TABLE items (\n  id BIGINT PRIMARY KEY,\n  name TEXT NOT NULL\n);\n"
       "CREATE INDEX items_by_name ON items (name);\n"},
      {2, "seed_items", "INSERT INTO items (id, name) VALUES (1, 'a;b');\n"},
  };
}

TEST_P(SqlContractTest, MigrationsApplyOnceAndAreIdempotent) {
  ManualClock clock;
  std::vector<Migration> migrations = ContractMigrations();
  auto current = MigrationsCurrent(*db_, "shop", migrations);
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_FALSE(*current);
  ASSERT_TRUE(ApplyMigrations(*db_, "shop", migrations, clock).ok());
  ASSERT_TRUE(ApplyMigrations(*db_, "shop", migrations, clock).ok());
  EXPECT_EQ(Count("items"), 1);
  auto name = Select("SELECT name FROM items WHERE id = 1");
  ASSERT_TRUE(name.ok());
  EXPECT_EQ(name->rows.at(0).Text(0), "a;b");
  current = MigrationsCurrent(*db_, "shop", migrations);
  ASSERT_TRUE(current.ok());
  EXPECT_TRUE(*current);
  auto recorded = Select(
      "SELECT version, name, applied_at_ms FROM schema_migrations WHERE component = ? "
      "ORDER BY version",
      {"shop"});
  ASSERT_TRUE(recorded.ok());
  ASSERT_EQ(recorded->rows.size(), 2u);
  EXPECT_EQ(recorded->rows[1].Text(1), "seed_items");
  EXPECT_EQ(recorded->rows[1].Int(2), clock.NowMs());
  // Another component's history is separate.
  current = MigrationsCurrent(*db_, "other", migrations);
  ASSERT_TRUE(current.ok());
  EXPECT_FALSE(*current);
  // Only the pending one runs when the binary gains a migration.
  migrations.push_back({3, "more", "INSERT INTO items (id, name) VALUES (2, 'c');"});
  ASSERT_TRUE(ApplyMigrations(*db_, "shop", migrations, clock).ok());
  EXPECT_EQ(Count("items"), 2);
}

TEST_P(SqlContractTest, MigrationsRefuseANewerDatabase) {
  std::vector<Migration> migrations = ContractMigrations();
  ASSERT_TRUE(ApplyMigrations(*db_, "shop", migrations).ok());
  migrations.pop_back();
  absl::Status status = ApplyMigrations(*db_, "shop", migrations);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find("newer than this binary"), absl::string_view::npos);
  auto current = MigrationsCurrent(*db_, "shop", migrations);
  ASSERT_TRUE(current.ok());
  EXPECT_FALSE(*current);
}

TEST_P(SqlContractTest, FailedMigrationRollsBackAndKeepsEarlierOnes) {
  std::vector<Migration> migrations = {
      {1, "create_items", "CREATE TABLE items (id BIGINT PRIMARY KEY);"},
      {2, "half_broken", "CREATE TABLE extra (id BIGINT);\nINSERT INTO nowhere VALUES (1);"},
  };
  absl::Status status = ApplyMigrations(*db_, "shop", migrations);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("0002_half_broken"), absl::string_view::npos) << status;
  EXPECT_EQ(Count("items"), 0);
  EXPECT_FALSE(Select("SELECT COUNT(*) FROM extra").ok());
  auto recorded = Select("SELECT version FROM schema_migrations WHERE component = 'shop'");
  ASSERT_TRUE(recorded.ok());
  ASSERT_EQ(recorded->rows.size(), 1u);
  EXPECT_EQ(recorded->rows[0].Int(0), 1);
}

TEST_P(SqlContractTest, MigrationListsAreValidated) {
  EXPECT_EQ(ApplyMigrations(*db_, "shop", {{0, "zero", "SELECT 1;"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyMigrations(*db_, "shop", {{1, "a", "SELECT 1;"}, {1, "b", "SELECT 1;"}}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyMigrations(*db_, "", {}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace emporium::sql::contract
