#include "platform/sql/sqlite_database.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
  explicit SqliteBackend(bool deferred_sync) : deferred_sync_(deferred_sync) {}
  absl::StatusOr<std::unique_ptr<Database>> Open(const ContractOpenOptions& options) override {
    if (dir_.path().empty()) return absl::InternalError("mkdtemp failed");
    SqliteOptions sqlite;
    sqlite.path = dir_.File("contract.db");
    sqlite.name = "contract";
    sqlite.write_queue_capacity = options.write_queue_capacity;
    sqlite.deferred_sync = deferred_sync_;
    return OpenSqlite(sqlite);
  }

 private:
  const bool deferred_sync_;
  TempDir dir_;
};

// The whole contract holds with the fsync at commit and with the deferred sync.
INSTANTIATE_TEST_SUITE_P(
    Sqlite, SqlContractTest,
    ::testing::Values(ContractParam{"sqlite",
                                    [] { return std::make_unique<SqliteBackend>(false); }},
                      ContractParam{"sqlite_deferred_sync",
                                    [] { return std::make_unique<SqliteBackend>(true); }}),
    contract::ContractParamName);

enum class On { kWriter, kReader };

// The first column of the first row `sql` answers, read in a write job or on a reader.
absl::StatusOr<int64_t> QueryInt(Database& db, const char* sql, On on) {
  int64_t value = 0;
  auto job = [&](Transaction& tx) -> absl::Status {
    auto rows = tx.Query(sql);
    if (!rows.ok()) return rows.status();
    value = rows->rows.at(0).Int(0);
    return absl::OkStatus();
  };
  absl::Status status = on == On::kWriter ? db.Write(job) : db.Read(job);
  if (!status.ok()) return status;
  return value;
}

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
  // The table `t (id INTEGER PRIMARY KEY)` most tests write to.
  static void CreateTableT(Database& db) {
    ASSERT_TRUE(db.Write([](Transaction& transaction) {
                    return transaction.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").status();
                  }).ok());
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
  options.checkpoint_wal_pages = options.wal_pages_max + 1;
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.writer_cache_kib = 0;
  EXPECT_EQ(OpenSqlite(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.wal_pages_max = 0;
  options.checkpoint_wal_pages = 0;
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

TEST_F(SqliteDatabaseTest, WriterPageCacheIsSizedByTheOption) {
  SqliteOptions options = Options();
  options.writer_cache_kib = 12345;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(QueryInt(*db, "PRAGMA cache_size", On::kWriter).value_or(0), -12345);  // KiB
  // Readers keep SQLite's default.
  EXPECT_EQ(QueryInt(*db, "PRAGMA cache_size", On::kReader).value_or(0), -2000);
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
  ASSERT_NO_FATAL_FAILURE(CreateTableT(*db));
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

// Write() hands each outcome from the writer thread to its caller through a futex word rather
// than a mutex and condition variable: every caller must get its own job's outcome (success, or
// the error that job returned), however the batches interleave and whether or not the caller was
// already asleep when the outcome came.
TEST_F(SqliteDatabaseTest, EveryBlockingWriterGetsItsOwnOutcome) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  ASSERT_NO_FATAL_FAILURE(CreateTableT(*db));
  constexpr int64_t kThreads = 16;
  constexpr int64_t kWritesPerThread = 200;
  std::atomic<int64_t> mismatches{0};
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&db, &mismatches, t] {
      for (int64_t i = 0; i < kWritesPerThread; ++i) {
        const int64_t id = t * kWritesPerThread + i;
        absl::Status status = db->Write([id](Transaction& transaction) -> absl::Status {
          auto inserted = transaction.Execute("INSERT INTO t (id) VALUES (?)", {id});
          if (!inserted.ok()) return inserted.status();
          // Every third job fails after its insert: rolled back alone, its own error returned.
          if (id % 3 == 0) return absl::NotFoundError(std::to_string(id));
          return absl::OkStatus();
        });
        const bool expected_failure = id % 3 == 0;
        const bool as_expected = expected_failure ? status.code() == absl::StatusCode::kNotFound &&
                                                        status.message() == std::to_string(id)
                                                  : status.ok();
        if (!as_expected) mismatches.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
  auto check = db->Read([](Transaction& transaction) -> absl::Status {
    auto rows = transaction.Query("SELECT COUNT(*), SUM(id % 3 = 0) FROM t");
    if (!rows.ok()) return rows.status();
    EXPECT_EQ(rows->rows.at(0).Int(0), kThreads * kWritesPerThread * 2 / 3);
    EXPECT_EQ(rows->rows.at(0).Int(1), 0);
    return absl::OkStatus();
  });
  EXPECT_TRUE(check.ok()) << check;
}

// A Write() rejected before it reaches the queue is answered on the caller's thread, before it
// would wait: it must return at once with the rejection.
TEST_F(SqliteDatabaseTest, WriteAfterCloseReturnsUnavailableWithoutWaiting) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  db->Close();
  absl::Status status = db->Write([](Transaction&) { return absl::OkStatus(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

// Returning a reader connection wakes one waiting reader (not all of them); with far more
// readers than connections every read must still get one and finish.
TEST_F(SqliteDatabaseTest, ReadsQueuedForFewConnectionsAllFinish) {
  SqliteOptions options = Options();
  options.reader_count = 2;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_NO_FATAL_FAILURE(CreateTableT(*db));
  constexpr int kThreads = 12;
  constexpr int kReadsPerThread = 100;
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&db, &finished] {
      for (int i = 0; i < kReadsPerThread; ++i) {
        absl::Status status = db->Read([](Transaction& transaction) {
          return transaction.Query("SELECT COUNT(*) FROM t").status();
        });
        if (status.ok()) finished.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(finished.load(), kThreads * kReadsPerThread);
  db->Close();
  EXPECT_EQ(db->Read([](Transaction&) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kUnavailable);
}

#if EMPORIUM_SQL_HAS_OBS
TEST_F(SqliteDatabaseTest, RecordsBatchSizesAndQueueDepth) {
  obs::MetricsRegistry metrics;
  SqliteOptions options = Options();
  options.name = "orders";
  options.metrics = &metrics;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_NO_FATAL_FAILURE(CreateTableT(*db));
  std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("emporium_db_batch_jobs"), std::string::npos) << text;
  EXPECT_NE(text.find("db=\"orders\""), std::string::npos) << text;
  EXPECT_NE(text.find("emporium_db_write_queue_depth"), std::string::npos) << text;
  EXPECT_NE(text.find("emporium_db_pages_written_total{db=\"orders\"}"), std::string::npos) << text;
}
#endif

TEST_F(SqliteDatabaseTest, CountsThePagesCommittedBatchesWrote) {
  auto db = Open(Options());
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(
      db->Write([](Transaction& transaction) {
          return transaction.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").status();
        }).ok());
  const int64_t after_create = db->stats().pages_written;
  EXPECT_GE(after_create, 1);
  // Rows of ~3 KiB: each insert needs at least one new leaf page of its own.
  constexpr int64_t kRows = 10;
  ASSERT_TRUE(db->Write([](Transaction& transaction) -> absl::Status {
                  for (int64_t i = 0; i < kRows; ++i) {
                    absl::Status status = transaction
                                              .Execute("INSERT INTO t (id, body) VALUES (?, ?)",
                                                       {i, std::string(3000, 'x')})
                                              .status();
                    if (!status.ok()) return status;
                  }
                  return absl::OkStatus();
                }).ok());
  const int64_t after_inserts = db->stats().pages_written;
  EXPECT_GE(after_inserts - after_create, kRows);
}

// Rows of ~2 KiB each (a page apiece) so a few hundred writes make a WAL of many pages.
constexpr std::string_view kCreateRows =
    "CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)";
constexpr std::string_view kInsertRow = "INSERT INTO rows (id, body) VALUES (?, ?)";
constexpr int64_t kWalTestRows = 600;
constexpr size_t kWalTestCheckpointPages = 16;
constexpr size_t kWalTestPagesMax = 64;

// Bytes of a WAL holding `pages` frames (32-byte header, 24-byte frame headers).
int64_t WalBytes(size_t pages) { return 32 + static_cast<int64_t>(pages) * (4096 + 24); }

TEST_F(SqliteDatabaseTest, WalStaysBoundedWhileCheckpointsRunInTheBackground) {
  SqliteOptions options = Options();
  options.checkpoint_wal_pages = kWalTestCheckpointPages;
  options.wal_pages_max = kWalTestPagesMax;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Write([](Transaction& tx) { return tx.Execute(kCreateRows).status(); }).ok());
  const std::string body(2000, 'x');
  int64_t wal_bytes_max = 0;
  // Groups of concurrent writes (group commit) and single ones, ~2 pages per row.
  for (int64_t id = 1; id <= kWalTestRows; id += 4) {
    std::mutex mutex;
    std::condition_variable done;
    int remaining = 4;
    for (int64_t row = id; row < id + 4; ++row) {
      db->SubmitWrite(
          [&body, row](Transaction& tx) {
            return tx.Execute(kInsertRow, {row, body}).status();
          },
          [&](absl::Status status) {
            EXPECT_TRUE(status.ok()) << status;
            std::lock_guard lock(mutex);
            --remaining;
            done.notify_all();
          });
    }
    std::unique_lock lock(mutex);
    done.wait(lock, [&] { return remaining == 0; });
    std::error_code error;
    const auto size = std::filesystem::file_size(dir_.File("test.db-wal"), error);
    if (!error) wal_bytes_max = std::max(wal_bytes_max, static_cast<int64_t>(size));
  }
  // Bounded near wal_pages_max: what one commit adds past it, and what the writer adds while
  // the background checkpointer holds the checkpoint lock (it then tries again next commit).
  EXPECT_GT(wal_bytes_max, 0);
  EXPECT_LE(wal_bytes_max, WalBytes(3 * kWalTestPagesMax));
  // The checkpoints copied rows into the database file itself.
  EXPECT_GT(static_cast<int64_t>(std::filesystem::file_size(dir_.File("test.db"))),
            kWalTestRows / 2 * 2000);
  EXPECT_EQ(QueryInt(*db, "SELECT COUNT(*) FROM rows", On::kReader).value_or(-1), kWalTestRows);
  db->Close();
}

TEST_F(SqliteDatabaseTest, WriterCheckpointsItselfWithoutTheBackgroundThread) {
  SqliteOptions options = Options();
  options.checkpoint_wal_pages = 0;
  options.wal_pages_max = kWalTestPagesMax;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Write([](Transaction& tx) { return tx.Execute(kCreateRows).status(); }).ok());
  const std::string body(2000, 'x');
  int64_t wal_bytes_max = 0;
  for (int64_t id = 1; id <= kWalTestRows / 2; ++id) {
    ASSERT_TRUE(db->Write([&](Transaction& tx) {
                    return tx.Execute(kInsertRow, {id, body}).status();
                  }).ok());
    std::error_code error;
    const auto size = std::filesystem::file_size(dir_.File("test.db-wal"), error);
    if (!error) wal_bytes_max = std::max(wal_bytes_max, static_cast<int64_t>(size));
  }
  EXPECT_LE(wal_bytes_max, WalBytes(kWalTestPagesMax + 8));
}

// A writer killed with SIGKILL at an arbitrary point -- checkpoints run all the time here, so
// often in the middle of one -- loses no acknowledged write, and the file is intact.
// kill -9 of a process writing (acknowledged one by one) while checkpoints run: every write it
// was told is durable is there after the restart, and the database is intact.
void KillDuringCheckpointsLosesNoAcknowledgedWrite(const std::string& path, bool deferred_sync) {
  constexpr int64_t kAcknowledgedBeforeKill = 400;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    SqliteOptions options;
    options.path = path;
    options.name = "crash";
    options.checkpoint_wal_pages = 4;
    options.wal_pages_max = 32;
    options.deferred_sync = deferred_sync;
    auto db = OpenSqlite(options);
    if (!db.ok()) _exit(2);
    if (!(*db)->Write([](Transaction& tx) { return tx.Execute(kCreateRows).status(); }).ok()) {
      _exit(3);
    }
    const std::string body(2000, 'y');
    // Bounded: the parent kills it long before the end.
    for (int64_t id = 1; id <= 1'000'000; ++id) {
      if (!(*db)
               ->Write([&](Transaction& tx) {
                 return tx.Execute(kInsertRow, {id, body}).status();
               })
               .ok()) {
        _exit(4);
      }
      if (write(pipe_fds[1], &id, sizeof(id)) != sizeof(id)) _exit(5);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  std::set<int64_t> acknowledged;
  int64_t id = 0;
  while (static_cast<int64_t>(acknowledged.size()) < kAcknowledgedBeforeKill &&
         read(pipe_fds[0], &id, sizeof(id)) == sizeof(id)) {
    acknowledged.insert(id);
  }
  kill(child, SIGKILL);
  int wait_status = 0;
  ASSERT_EQ(waitpid(child, &wait_status, 0), child);
  // Acknowledgements already in the pipe when it died count too.
  while (read(pipe_fds[0], &id, sizeof(id)) == sizeof(id)) acknowledged.insert(id);
  close(pipe_fds[0]);
  ASSERT_GE(static_cast<int64_t>(acknowledged.size()), kAcknowledgedBeforeKill);

  SqliteOptions options;
  options.path = path;
  options.name = "crash";
  auto opened = OpenSqlite(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<Database>& db = *opened;
  std::set<int64_t> stored;
  std::string integrity;
  ASSERT_TRUE(db->Read([&](Transaction& tx) -> absl::Status {
                  auto check = tx.Query("PRAGMA integrity_check");
                  if (!check.ok()) return check.status();
                  integrity = check->rows.at(0).Text(0);
                  auto rows = tx.Query("SELECT id FROM rows");
                  if (!rows.ok()) return rows.status();
                  for (const Row& row : rows->rows) stored.insert(row.Int(0));
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(integrity, "ok");
  for (int64_t acked : acknowledged) EXPECT_EQ(stored.count(acked), 1u) << "lost row " << acked;
}

TEST_F(SqliteDatabaseTest, KillDuringBackgroundCheckpointsLosesNoAcknowledgedWrite) {
  KillDuringCheckpointsLosesNoAcknowledgedWrite(dir_.File("crash.db"), false);
}

TEST_F(SqliteDatabaseTest, KillWithDeferredSyncLosesNoAcknowledgedWrite) {
  KillDuringCheckpointsLosesNoAcknowledgedWrite(dir_.File("crash.db"), true);
}

// Deferred sync: a committed batch is acknowledged only after the sync, and a read begun after
// the commit waits for it (it never sees what is not durable).
TEST_F(SqliteDatabaseTest, DeferredSyncAcknowledgesAndShowsOnlyDurableCommits) {
  std::mutex mutex;
  std::condition_variable changed;
  bool hold = false;
  int held = 0;  // syncs waiting in the hook
  SqliteOptions options = Options();
  options.deferred_sync = true;
  options.deferred_sync_test_hook = [&] {
    std::unique_lock lock(mutex);
    ++held;
    changed.notify_all();
    changed.wait(lock, [&] { return !hold; });
    --held;
  };
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  CreateTableT(*db);
  {
    std::lock_guard lock(mutex);
    hold = true;
  }
  std::atomic<bool> acknowledged{false};
  db->SubmitWrite(
      [](Transaction& tx) { return tx.Execute("INSERT INTO t (id) VALUES (1)").status(); },
      [&](absl::Status status) {
        EXPECT_TRUE(status.ok()) << status;
        acknowledged = true;
      });
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(60), [&] { return held > 0; }));
  }
  // Synced but not yet acknowledged: the write is committed in the WAL.
  EXPECT_FALSE(acknowledged.load());
  std::atomic<bool> read_done{false};
  int64_t seen = -1;
  std::thread reader([&] {
    seen = QueryInt(*db, "SELECT COUNT(*) FROM t", On::kReader).value_or(-2);
    read_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(read_done.load()) << "a read saw a commit before it was acknowledged durable";
  {
    std::lock_guard lock(mutex);
    hold = false;
  }
  changed.notify_all();
  reader.join();
  EXPECT_EQ(seen, 1);
  db->Close();  // every callback has run once Close returns
  EXPECT_TRUE(acknowledged.load());
}

// Deferred sync: outcomes arrive in commit order, failed jobs' included, and Write() waits for
// durability like SubmitWrite's callback.
TEST_F(SqliteDatabaseTest, DeferredSyncAnswersInCommitOrder) {
  SqliteOptions options = Options();
  options.deferred_sync = true;
  options.batch_jobs_max = 3;
  auto db = Open(options);
  ASSERT_NE(db, nullptr);
  CreateTableT(*db);
  constexpr int kWrites = 200;
  std::mutex mutex;
  std::vector<int> order;
  std::vector<bool> ok(kWrites, false);
  for (int i = 0; i < kWrites; ++i) {
    db->SubmitWrite(
        [i](Transaction& tx) -> absl::Status {
          if (i % 7 == 3) return absl::FailedPreconditionError("refused");
          return tx.Execute("INSERT INTO t (id) VALUES (?)", {int64_t{i}}).status();
        },
        [&, i](absl::Status status) {
          std::lock_guard lock(mutex);
          order.push_back(i);
          ok[static_cast<size_t>(i)] = status.ok();
        });
  }
  ASSERT_TRUE(db->Write([](Transaction& tx) {
                  return tx.Execute("INSERT INTO t (id) VALUES (100000)").status();
                }).ok());
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(order.size(), static_cast<size_t>(kWrites));  // all answered before Write()'s
    for (int i = 0; i < kWrites; ++i) {
      EXPECT_EQ(order[static_cast<size_t>(i)], i);
      EXPECT_EQ(ok[static_cast<size_t>(i)], i % 7 != 3) << i;
    }
  }
  int64_t expected = 1;  // the row of Write()
  for (int i = 0; i < kWrites; ++i) expected += i % 7 != 3 ? 1 : 0;
  EXPECT_EQ(QueryInt(*db, "SELECT COUNT(*) FROM t", On::kReader).value_or(-1), expected);
  EXPECT_EQ(db->stats().batches_failed, 0);
}

}  // namespace
}  // namespace emporium::sql
