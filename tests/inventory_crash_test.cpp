// kill -9 mid-batch: a child process runs the inventory service and reserves/allocates with
// hundreds of commands in flight, reporting each durable acknowledgement; the test SIGKILLs it
// at a random moment, then checks on the same database file that the ledger and the stock
// projection agree (Rebuild in check mode), that every acknowledged reservation and allocation
// is present, and that the service restarts on it with every invariant intact. The child evicts
// every released reservation from memory at once; after the restart, replays of released ones
// are read back from the database and answered as before.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "inventory/service.h"
#include "inventory/store.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::inventory {
namespace {

constexpr int kRounds = 3;
constexpr int kChildOutputWaitMs = 30'000;

pid_t SpawnHelper(const std::string& dir, int round, int& read_fd) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const std::string round_text = std::to_string(round);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(INVENTORY_CRASH_HELPER_PATH, INVENTORY_CRASH_HELPER_PATH, dir.c_str(), round_text.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  read_fd = fds[0];
  return pid;
}

struct Acks {
  std::set<std::string> reserved;
  std::set<std::string> allocated;
  std::set<std::string> released;
  bool ready = false;
};

// Reads complete lines until `target` reservations were acknowledged; false on EOF/timeout.
bool ReadAcks(int fd, size_t target, Acks& acks, std::string& buffer) {
  while (acks.reserved.size() < target) {
    pollfd waiting{fd, POLLIN, 0};
    if (poll(&waiting, 1, kChildOutputWaitMs) <= 0) return false;
    char chunk[4096];
    const ssize_t got = read(fd, chunk, sizeof(chunk));
    if (got <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(got));
    for (size_t newline; (newline = buffer.find('\n')) != std::string::npos;) {
      const std::string line = buffer.substr(0, newline);
      buffer.erase(0, newline + 1);
      if (line == "ready") acks.ready = true;
      if (line.rfind("reserved ", 0) == 0) acks.reserved.insert(line.substr(9));
      if (line.rfind("allocated ", 0) == 0) acks.allocated.insert(line.substr(10));
      if (line.rfind("released ", 0) == 0) acks.released.insert(line.substr(9));
    }
  }
  return true;
}

// Lines the child wrote before it died (after the kill, the pipe drains to EOF).
void DrainAcks(int fd, Acks& acks, std::string& buffer) { ReadAcks(fd, SIZE_MAX, acks, buffer); }

TEST(InventoryCrashTest, AcknowledgedReservationsSurviveSigkillAndLedgerMatchesProjection) {
  sql::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::mt19937 random(20261127);
  Acks all;
  for (int round = 0; round < kRounds; ++round) {
    int fd = -1;
    const pid_t pid = SpawnHelper(dir.path(), round, fd);
    ASSERT_GT(pid, 0);
    const size_t kill_after = std::uniform_int_distribution<size_t>(50, 2000)(random);
    Acks acks;
    std::string buffer;
    const bool reached = ReadAcks(fd, kill_after, acks, buffer);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int wait_status = 0;
    ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
    ASSERT_TRUE(reached) << "helper died or hung in round " << round;
    ASSERT_TRUE(WIFSIGNALED(wait_status)) << "helper exited on its own in round " << round;
    DrainAcks(fd, acks, buffer);
    close(fd);
    all.reserved.insert(acks.reserved.begin(), acks.reserved.end());
    all.allocated.insert(acks.allocated.begin(), acks.allocated.end());
    all.released.insert(acks.released.begin(), acks.released.end());

    sql::SqliteOptions options;
    options.path = dir.File("inventory.db");
    options.name = "inventory";
    absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
    ASSERT_TRUE(db.ok()) << db.status();
    InventoryStore store(**db);
    absl::StatusOr<RebuildReport> report = store.Rebuild(InventoryStore::RebuildMode::kCheckOnly);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->mismatches.empty())
        << "round " << round << ": " << report->mismatches.size() << " mismatches, first "
        << report->mismatches.front();
    EXPECT_GT(report->rows_checked, 0);
    for (const std::string& id : all.reserved) {
      absl::StatusOr<std::optional<Reservation>> found = store.LoadReservation(ReservationId(id));
      ASSERT_TRUE(found.ok()) << found.status();
      ASSERT_TRUE(found->has_value())
          << "acknowledged reservation " << id << " lost in round " << round;
      if (all.allocated.contains(id)) {
        EXPECT_EQ((*found)->state, ReservationState::kAllocated) << id;
      }
      if (all.released.contains(id)) {
        EXPECT_EQ((*found)->state, ReservationState::kReleased) << id;
      }
    }
    // The engine restarts on the file and every invariant holds (checked on load by a batch).
    ServiceOptions service_options;
    service_options.sweep_interval_ms = 0;
    service_options.engine.verify_invariants_each_batch = true;
    absl::StatusOr<std::unique_ptr<InventoryService>> service =
        InventoryService::Create(**db, SystemClock::Instance(), service_options);
    ASSERT_TRUE(service.ok()) << service.status();
    CommandResult probe = (*service)->Execute(cmd::Release{ReservationId("probe")});
    EXPECT_TRUE(probe.status.ok()) << probe.status;
    // Released ones are not in memory after the restart: replays read them back and get the
    // answers they got before (the same request: already reserved; release: already released).
    int replays = 0;
    for (const std::string& id : all.released) {
      if (++replays > 20) break;
      absl::StatusOr<std::optional<Reservation>> stored = store.LoadReservation(ReservationId(id));
      ASSERT_TRUE(stored.ok() && stored->has_value()) << id;
      std::vector<LineRequest> lines;
      for (const ReservationLine& line : (*stored)->lines)
        lines.push_back({line.sku, line.quantity});
      CommandResult again =
          (*service)->Execute(cmd::Reserve{ReservationId(id), lines, (*stored)->region, 3'600'000});
      ASSERT_TRUE(again.status.ok()) << again.status;
      EXPECT_EQ(std::get<ReserveOutcome>(again.outcome), ReserveOutcome::kAlreadyReserved) << id;
      ASSERT_TRUE(again.reservation.has_value()) << id;
      EXPECT_EQ(again.reservation->state, ReservationState::kReleased) << id;
      CommandResult release = (*service)->Execute(cmd::Release{ReservationId(id)});
      ASSERT_TRUE(release.status.ok()) << release.status;
      EXPECT_EQ(std::get<ReleaseOutcome>(release.outcome), ReleaseOutcome::kAlreadyReleased) << id;
    }
    EXPECT_GT((*service)->engine().stats().faulted_in_reservations, 0);
    (*service)->Stop();
    (*db)->Close();
  }
  EXPECT_GE(all.reserved.size(), static_cast<size_t>(kRounds) * 50);
  EXPECT_FALSE(all.released.empty());
}

}  // namespace
}  // namespace emporium::inventory
