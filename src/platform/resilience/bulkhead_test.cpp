#include "platform/resilience/bulkhead.h"

#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "common/errors.h"

namespace emporium::resilience {
namespace {

// Polls `done` with a bound instead of sleeping for a fixed time.
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 5000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

TEST(BulkheadTest, TryAcquireRejectsWhenFullAndAdmitsAfterRelease) {
  Bulkhead bulkhead("psp", {.concurrent_count_max = 2, .queue_count_max = 0});
  absl::StatusOr<Bulkhead::Permit> a = bulkhead.TryAcquire();
  absl::StatusOr<Bulkhead::Permit> b = bulkhead.TryAcquire();
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(bulkhead.in_flight_count(), 2);
  absl::StatusOr<Bulkhead::Permit> c = bulkhead.TryAcquire();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ErrorCode(c.status()), "bulkhead_full");
  EXPECT_EQ(bulkhead.rejected_count(), 1);
  a->Release();
  a->Release();  // idempotent
  EXPECT_EQ(bulkhead.in_flight_count(), 1);
  absl::StatusOr<Bulkhead::Permit> d = bulkhead.TryAcquire();
  EXPECT_TRUE(d.ok());
}

TEST(BulkheadTest, PermitIsRaiiAndMovable) {
  Bulkhead bulkhead("x", {.concurrent_count_max = 1, .queue_count_max = 0});
  {
    absl::StatusOr<Bulkhead::Permit> permit = bulkhead.TryAcquire();
    ASSERT_TRUE(permit.ok());
    Bulkhead::Permit moved = std::move(*permit);
    EXPECT_FALSE(permit->held());
    EXPECT_TRUE(moved.held());
    EXPECT_EQ(bulkhead.in_flight_count(), 1);
  }
  EXPECT_EQ(bulkhead.in_flight_count(), 0);
}

TEST(BulkheadTest, AcquireRejectsImmediatelyWhenQueueFull) {
  ManualClock clock;
  Bulkhead bulkhead("x", {.concurrent_count_max = 1, .queue_count_max = 0});
  absl::StatusOr<Bulkhead::Permit> held = bulkhead.TryAcquire();
  ASSERT_TRUE(held.ok());
  const absl::StatusOr<Bulkhead::Permit> rejected =
      bulkhead.Acquire(Deadline::Infinite(clock));  // would wait forever if it queued
  EXPECT_EQ(ErrorCode(rejected.status()), "bulkhead_full");
}

TEST(BulkheadTest, QueuedWaiterGetsTheFreedSlot) {
  ManualClock clock;
  Bulkhead bulkhead("x", {.concurrent_count_max = 1, .queue_count_max = 1});
  std::optional<absl::StatusOr<Bulkhead::Permit>> held = bulkhead.TryAcquire();
  ASSERT_TRUE(held->ok());
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    absl::StatusOr<Bulkhead::Permit> permit = bulkhead.Acquire(Deadline::Infinite(clock));
    acquired = permit.ok();
  });
  ASSERT_TRUE(Eventually([&] { return bulkhead.waiting_count() == 1; }));
  // Queue (1) and slots (1) are full: a third caller is turned away at once.
  EXPECT_EQ(ErrorCode(bulkhead.Acquire(Deadline::Infinite(clock)).status()), "bulkhead_full");
  // TryAcquire never jumps the queue.
  EXPECT_FALSE(bulkhead.TryAcquire().ok());
  held.reset();
  waiter.join();
  EXPECT_TRUE(acquired);
  EXPECT_EQ(bulkhead.in_flight_count(), 0);
  EXPECT_EQ(bulkhead.waiting_count(), 0);
}

TEST(BulkheadTest, WaiterTimesOutOnItsDeadline) {
  ManualClock clock;
  Bulkhead bulkhead("x", {.concurrent_count_max = 1, .queue_count_max = 4});
  absl::StatusOr<Bulkhead::Permit> held = bulkhead.TryAcquire();
  ASSERT_TRUE(held.ok());
  std::optional<absl::Status> outcome;
  std::thread waiter(
      [&] { outcome = bulkhead.Acquire(Deadline::After(clock, absl::Seconds(1))).status(); });
  ASSERT_TRUE(Eventually([&] { return bulkhead.waiting_count() == 1; }));
  clock.Advance(absl::Seconds(1));  // noticed within one wait slice
  waiter.join();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorCode(*outcome), "bulkhead_timeout");
  EXPECT_EQ(bulkhead.waiting_count(), 0);
  held->Release();
  EXPECT_TRUE(bulkhead.TryAcquire().ok());
}

TEST(BulkheadTest, ConcurrencyNeverExceedsTheLimit) {
  ManualClock clock;
  constexpr int kSlots = 3;
  constexpr int kThreads = 8;
  constexpr int kCalls = 300;
  Bulkhead bulkhead("x", {.concurrent_count_max = kSlots, .queue_count_max = kThreads});
  std::atomic<int> inside{0};
  std::atomic<int> inside_max{0};
  std::atomic<int> completed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kCalls; ++i) {
        absl::StatusOr<Bulkhead::Permit> permit = bulkhead.Acquire(Deadline::Infinite(clock));
        ASSERT_TRUE(permit.ok()) << permit.status();
        const int now_inside = inside.fetch_add(1) + 1;
        int seen = inside_max.load();
        while (now_inside > seen && !inside_max.compare_exchange_weak(seen, now_inside)) {
        }
        std::this_thread::yield();
        inside.fetch_sub(1);
        completed.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(completed.load(), kThreads * kCalls);
  EXPECT_LE(inside_max.load(), kSlots);
  EXPECT_EQ(bulkhead.in_flight_count(), 0);
  EXPECT_EQ(bulkhead.rejected_count(), 0);
}

}  // namespace
}  // namespace emporium::resilience
