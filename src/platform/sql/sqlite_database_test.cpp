#include "platform/sql/sqlite_database.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "platform/sql/sql_contract_test.h"
#include "platform/sql/sqlite_test_util.h"

#if EMPORIUM_SQL_HAS_OBS
#include "platform/obs/metrics.h"
#endif

namespace emporium::sql {
namespace {

using contract::ContractBackend;
using contract::ContractOpenOptions;
using contract::ContractParam;
using contract::SqlContractTest;

class SqliteBackend final : public ContractBackend {
 public:
  absl::StatusOr<std::unique_ptr<Database>> Open(const ContractOpenOptions& options) override {
    if (dir_.path().empty()) return absl::InternalError("mkdtemp failed");
    SqliteOptions sqlite;
    sqlite.path = dir_.File("contract.db");
    sqlite.name = "contract";
    sqlite.write_queue_capacity = options.write_queue_capacity;
    return OpenSqlite(sqlite);
  }

 private:
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, SqlContractTest,
                         ::testing::Values(ContractParam{
                             "sqlite", [] { return std::make_unique<SqliteBackend>(); }}),
                         contract::ContractParamName);

class SqliteDatabaseTest : public ::testing::Test {
 protected:
  SqliteOptions Options() {
    SqliteOptions options;
    options.path = dir_.File("test.db");
    options.name = "test";
    return options;
  }
  std::unique_ptr<Database> Open(const SqliteOptions& options) {
    auto db = OpenSqlite(options);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }

  TempDir dir_;
};

TEST_F(SqliteDatabaseTest, RejectsBadOptions) {
  SqliteOptions options = Options();
  options.path = ":memory:";
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.reader_count = 0;
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.batch_jobs_max = 0;
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.path = dir_.File("missing/dir/x.db");
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SqliteDatabaseTest, ConfiguresWalAndForeignKeys) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->dialect(), "sqlite");
  ASSERT_TRUE(db->Read([](Transaction& transaction) -> absl::Status {
                  auto mode = transaction.Query("PRAGMA journal_mode");
                  if (!mode.ok()) return mode.status();
                  EXPECT_EQ(mode->rows.at(0).Text(0), "wal");
                  auto sync = transaction.Query("PRAGMA synchronous");
                  if (!sync.ok()) return sync.status();
                  EXPECT_EQ(sync->rows.at(0).Int(0), 2);  // FULL
                  auto keys = transaction.Query("PRAGMA foreign_keys");
                  if (!keys.ok()) return keys.status();
                  EXPECT_EQ(keys->rows.at(0).Int(0), 1);
                  return absl::OkStatus();
                }).ok());
  EXPECT_TRUE(std::filesystem::exists(dir_.File("test.db")));
}

TEST_F(SqliteDatabaseTest, WriteFromInsideAJobIsRefusedNotDeadlocked) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  absl::Status inner = absl::UnknownError("not run");
  ASSERT_TRUE(db->Write([&](Transaction&) -> absl::Status {
                  inner = db->Write([](Transaction&) { return absl::OkStatus(); });
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SqliteDatabaseTest, OneStatementPerCall) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  absl::Status status = db->Write([](Transaction& transaction) -> absl::Status {
    return transaction.Execute("CREATE TABLE a (x INTEGER); CREATE TABLE b (y INTEGER)").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  // A trailing comment is not a second statement; an empty text runs nothing.
  EXPECT_TRUE(db->Write([](Transaction& transaction) -> absl::Status {
                  auto created = transaction.Execute("CREATE TABLE a (x INTEGER); -- the end");
                  if (!created.ok()) return created.status();
                  return transaction.Execute("  -- nothing\n").status();
                }).ok());
}

TEST_F(SqliteDatabaseTest, StatementCacheEvictsAndStillWorks) {
  SqliteOptions options = Options();
  options.statement_cache_capacity = 2;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Write([](Transaction& transaction) -> absl::Status {
                  auto created = transaction.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY)");
                  if (!created.ok()) return created.status();
                  for (int64_t round = 0; round < 3; ++round) {
                    for (int64_t i = 0; i < 10; ++i) {
                      // Ten distinct SQL texts cycle through a two-entry cache.
                      std::string sql =
                          "INSERT OR REPLACE INTO t (id) VALUES (" + std::to_string(i) + " + ?)";
                      auto inserted = transaction.Execute(sql, {round * 0});
                      if (!inserted.ok()) return inserted.status();
                    }
                  }
                  return absl::OkStatus();
                }).ok());
  auto count = db->Read([](Transaction& transaction) -> absl::Status {
    auto rows = transaction.Query("SELECT COUNT(*) FROM t");
    if (!rows.ok()) return rows.status();
    EXPECT_EQ(rows->rows.at(0).Int(0), 10);
    return absl::OkStatus();
  });
  EXPECT_TRUE(count.ok());
}

TEST_F(SqliteDatabaseTest, BatchJobsMaxOneCommitsEachWriteAlone) {
  SqliteOptions options = Options();
  options.batch_jobs_max = 1;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Write([](Transaction& transaction) {
                  return transaction.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").status();
                }).ok());
  contract::Outcomes outcomes;
  constexpr int64_t kJobs = 20;
  for (int64_t i = 0; i < kJobs; ++i) {
    db->SubmitWrite(
        [i](Transaction& transaction) {
          return transaction.Execute("INSERT INTO t (id) VALUES (?)", {i}).status();
        },
        outcomes.Slot(static_cast<size_t>(i)));
  }
  ASSERT_TRUE(outcomes.WaitFor(kJobs));
  WriteStats stats = db->stats();
  EXPECT_EQ(stats.batches_committed, kJobs + 1);
  EXPECT_EQ(stats.jobs_committed, kJobs + 1);
  EXPECT_EQ(stats.jobs_failed, 0);
}

TEST_F(SqliteDatabaseTest, ReadersRunConcurrently) {
  SqliteOptions options = Options();
  options.reader_count = 2;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  // Two reads that each wait for the other can only finish if they hold two connections.
  contract::Gate first_in, second_in;
  absl::Status first = absl::UnknownError("not run");
  std::thread other([&] {
    first = db->Read([&](Transaction&) -> absl::Status {
      first_in.Open();
      return second_in.Wait() ? absl::OkStatus() : absl::DeadlineExceededError("gate");
    });
  });
  absl::Status second = db->Read([&](Transaction&) -> absl::Status {
    second_in.Open();
    return first_in.Wait() ? absl::OkStatus() : absl::DeadlineExceededError("gate");
  });
  other.join();
  EXPECT_TRUE(first.ok()) << first;
  EXPECT_TRUE(second.ok()) << second;
}

#if EMPORIUM_SQL_HAS_OBS
TEST_F(SqliteDatabaseTest, RecordsBatchSizesAndQueueDepth) {
  obs::MetricsRegistry metrics;
  SqliteOptions options = Options();
  options.name = "orders";
  options.metrics = &metrics;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Write([](Transaction& transaction) {
                  return transaction.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").status();
                }).ok());
  std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("emporium_db_batch_jobs"), std::string::npos) << text;
  EXPECT_NE(text.find("db=\"orders\""), std::string::npos) << text;
  EXPECT_NE(text.find("emporium_db_write_queue_depth"), std::string::npos) << text;
}
#endif

}  // namespace
}  // namespace emporium::sql
