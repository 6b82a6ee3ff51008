// Crash test: a child process commits messages to its outbox while its relay delivers them to a
// consumer, and is SIGKILLed at a random moment (between some commit and its delivery). The
// parent then restarts the bus on the same database files and checks that every committed
// outbox message is applied by the consumer exactly once: nothing lost, nothing twice.
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::bus {
namespace {

constexpr int kRounds = 3;
constexpr int kMessagesPerRound = 400;
constexpr int kChildOutputWaitMs = 20000;
constexpr absl::Duration kDrainBound = absl::Seconds(30);

// Starts the helper with its stdout on a pipe; returns the pid and the pipe's read end.
pid_t SpawnHelper(const std::string& dir, int count, uint32_t seed, int& read_fd) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const std::string count_text = std::to_string(count);
  const std::string seed_text = std::to_string(seed);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(BUS_CRASH_HELPER_PATH, BUS_CRASH_HELPER_PATH, dir.c_str(), count_text.c_str(),
          seed_text.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  read_fd = fds[0];
  return pid;
}

// Reads "committed <n>" lines until n >= target; returns the last n, or -1 on EOF/timeout.
int WaitForCommits(int fd, int target) {
  std::string buffer;
  int last = 0;
  while (last < target) {
    pollfd waiting{fd, POLLIN, 0};
    if (poll(&waiting, 1, kChildOutputWaitMs) <= 0) return -1;
    char chunk[512];
    const ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got <= 0) return -1;
    buffer.append(chunk, static_cast<size_t>(got));
    for (size_t newline; (newline = buffer.find('\n')) != std::string::npos;) {
      const std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line.rfind("committed ", 0) == 0) last = std::atoi(line.c_str() + 10);
    }
  }
  return last;
}

std::unique_ptr<sql::Database> Open(const std::string& path, const std::string& name) {
  sql::SqliteOptions options;
  options.path = path;
  options.name = name;
  absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return nullptr;
  EXPECT_TRUE(InstallBusSchema(**db).ok());
  return std::move(*db);
}

std::vector<std::string> Column(sql::Database& db, const std::string& query) {
  std::vector<std::string> values;
  absl::Status status = db.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<sql::ResultSet> result = tx.Query(query);
    if (!result.ok()) return result.status();
    for (const sql::Row& row : result->rows) values.push_back(row.Text(0));
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  return values;
}

int64_t Unpublished(sql::Database& db) {
  int64_t count = -1;
  absl::Status status = db.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<sql::ResultSet> result =
        tx.Query("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL");
    if (!result.ok()) return result.status();
    count = result->rows[0].Int(0);
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  return count;
}

TEST(BusCrashTest, EveryCommittedMessageIsAppliedExactlyOnceAfterSigkill) {
  sql::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(fmt::format("seed {}", seed));
  std::mt19937 random(seed);

  for (int round = 0; round < kRounds; ++round) {
    const int kill_after = std::uniform_int_distribution<int>(1, kMessagesPerRound)(random);
    int fd = -1;
    const pid_t pid = SpawnHelper(dir.path(), kMessagesPerRound, random(), fd);
    ASSERT_GT(pid, 0);
    const int seen = WaitForCommits(fd, kill_after);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
    close(fd);
    ASSERT_GE(seen, kill_after) << "helper died or hung in round " << round;
    EXPECT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL)
        << "helper exited on its own in round " << round;
  }

  // Restart on the same files with the same consumer.
  std::unique_ptr<sql::Database> producer = Open(dir.File("producer.db"), "producer");
  std::unique_ptr<sql::Database> consumer = Open(dir.File("consumer.db"), "consumer");
  ASSERT_TRUE(producer && consumer);
  const int64_t left_unpublished = Unpublished(*producer);
  // Messages the consumer committed but the relay had not marked published: they will be
  // delivered again, and the inbox must absorb them.
  const std::vector<std::string> pending_ids =
      Column(*producer, "SELECT id FROM outbox WHERE published_at_ms IS NULL");
  const std::vector<std::string> applied_before =
      Column(*consumer, "SELECT message_id FROM applied");
  const std::set<std::string> applied_before_set(applied_before.begin(), applied_before.end());
  size_t redelivered = 0;
  for (const std::string& id : pending_ids) redelivered += applied_before_set.count(id);
  BusOptions options;
  options.retry.backoff_base = absl::Milliseconds(1);
  BusRuntime runtime(options);
  ASSERT_TRUE(runtime.AddDatabase("producer", *producer).ok());
  ASSERT_TRUE(
      runtime
          .Subscribe(
              "c", *consumer, {"crash."},
              [](sql::Transaction& tx, const Envelope& e) {
                return tx.Execute("INSERT INTO applied(message_id) VALUES (?)", {e.id}).status();
              })
          .ok());
  ASSERT_TRUE(runtime.Start().ok());
  const absl::Time deadline = absl::Now() + kDrainBound;
  while (Unpublished(*producer) != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  runtime.Stop();
  ASSERT_EQ(Unpublished(*producer), 0);

  const std::vector<std::string> committed = Column(*producer, "SELECT id FROM outbox");
  const std::vector<std::string> applied = Column(*consumer, "SELECT message_id FROM applied");
  const std::set<std::string> committed_set(committed.begin(), committed.end());
  const std::set<std::string> applied_set(applied.begin(), applied.end());
  EXPECT_GE(committed.size(), static_cast<size_t>(kRounds));
  EXPECT_EQ(applied.size(), applied_set.size()) << "some message was applied twice";
  EXPECT_EQ(applied_set, committed_set) << "lost or phantom messages";
  EXPECT_EQ(applied.size(), committed.size());
  std::printf(
      "crash test: %zu committed, %lld unpublished at restart (%zu of them already applied), "
      "%zu applied once\n",
      committed.size(), static_cast<long long>(left_unpublished), redelivered, applied.size());
}

}  // namespace
}  // namespace emporium::bus
