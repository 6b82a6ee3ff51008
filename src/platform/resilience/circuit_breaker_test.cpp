#include "platform/resilience/circuit_breaker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "common/errors.h"

namespace emporium::resilience {
namespace {

CircuitBreakerOptions Options() {
  CircuitBreakerOptions options;
  options.window = absl::Seconds(10);
  options.bucket_count = 10;
  options.request_volume_min = 10;
  options.failure_rate_threshold = 0.5;
  options.open_duration = absl::Seconds(5);
  options.half_open_trial_count_max = 1;
  options.half_open_success_count_to_close = 1;
  return options;
}

absl::Status Fail() { return absl::UnavailableError("upstream down"); }

class CircuitBreakerTest : public ::testing::Test {
 protected:
  void Record(int successes, int failures) {
    for (int i = 0; i < successes; ++i) {
      ASSERT_TRUE(breaker_.Call([] { return absl::OkStatus(); }).ok());
    }
    for (int i = 0; i < failures; ++i) (void)breaker_.Call(Fail);
  }

  ManualClock clock_;
  std::vector<std::pair<BreakerState, BreakerState>> transitions_;
  CircuitBreaker breaker_{"psp", WithCallback(Options()), clock_};

 private:
  CircuitBreakerOptions WithCallback(CircuitBreakerOptions options) {
    options.on_state_change = [this](BreakerState from, BreakerState to) {
      transitions_.emplace_back(from, to);
    };
    return options;
  }
};

TEST_F(CircuitBreakerTest, StaysClosedBelowMinimumVolume) {
  Record(0, 9);  // 100% failures, but only 9 calls
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  EXPECT_EQ(breaker_.counts().window_failure_count, 9);
}

TEST_F(CircuitBreakerTest, OpensAtThresholdAfterMinimumVolume) {
  Record(6, 3);
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  Record(0, 1);  // 10 calls, 40% failures
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  Record(0, 1);  // 11 calls, 5/11 = 45%
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  Record(0, 1);  // 12 calls, 6/12 = 50%: opens
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  ASSERT_EQ(transitions_.size(), 1u);
  EXPECT_EQ(transitions_[0], std::make_pair(BreakerState::kClosed, BreakerState::kOpen));
}

TEST_F(CircuitBreakerTest, NonFailureErrorsCountAsHealthy) {
  for (int i = 0; i < 20; ++i) (void)breaker_.Call([] { return absl::NotFoundError("no sku"); });
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  EXPECT_EQ(breaker_.counts().window_success_count, 20);
}

TEST_F(CircuitBreakerTest, RejectsFastWhileOpen) {
  Record(0, 10);
  ASSERT_EQ(breaker_.state(), BreakerState::kOpen);
  int calls = 0;
  for (int i = 0; i < 5; ++i) {
    const absl::Status status = breaker_.Call([&calls] {
      ++calls;
      return absl::OkStatus();
    });
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(ErrorCode(status), "circuit_open");
  }
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(breaker_.counts().rejected_count, 5);
  clock_.Advance(absl::Seconds(4));
  EXPECT_FALSE(breaker_.Allow().ok());
}

TEST_F(CircuitBreakerTest, HalfOpenTrialSuccessCloses) {
  Record(0, 10);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(breaker_.state(), BreakerState::kHalfOpen);
  absl::StatusOr<CircuitBreaker::Ticket> trial = breaker_.Allow();
  ASSERT_TRUE(trial.ok());
  // Only one trial at a time.
  EXPECT_EQ(ErrorCode(breaker_.Allow().status()), "circuit_open");
  breaker_.Record(*trial, absl::OkStatus());
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  // The window starts clean: one failure does not reopen.
  Record(0, 1);
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  const std::vector<std::pair<BreakerState, BreakerState>> expected = {
      {BreakerState::kClosed, BreakerState::kOpen},
      {BreakerState::kOpen, BreakerState::kHalfOpen},
      {BreakerState::kHalfOpen, BreakerState::kClosed}};
  EXPECT_EQ(transitions_, expected);
}

TEST_F(CircuitBreakerTest, HalfOpenTrialFailureReopens) {
  Record(0, 10);
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(breaker_.Call(Fail).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  // Open for a full open_duration again, counted from the failed trial.
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(breaker_.state(), BreakerState::kHalfOpen);
}

TEST_F(CircuitBreakerTest, LateOutcomesFromAnEarlierPeriodAreIgnored) {
  absl::StatusOr<CircuitBreaker::Ticket> slow = breaker_.Allow();
  ASSERT_TRUE(slow.ok());
  Record(0, 10);
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(breaker_.state(), BreakerState::kHalfOpen);
  breaker_.Record(*slow, absl::OkStatus());  // admitted while closed: not a trial
  EXPECT_EQ(breaker_.state(), BreakerState::kHalfOpen);
}

TEST_F(CircuitBreakerTest, RollingWindowForgetsOldFailures) {
  Record(0, 9);
  clock_.Advance(absl::Seconds(11));  // all nine fall out of the 10 s window
  EXPECT_EQ(breaker_.counts().window_failure_count, 0);
  Record(5, 4);
  EXPECT_EQ(breaker_.state(), BreakerState::kClosed);
  // Partly: failures 6 s ago still count, 11 s ago do not.
  clock_.Advance(absl::Seconds(6));
  Record(0, 1);  // window: 5 ok + 5 failed = 10 calls, 50%
  EXPECT_EQ(breaker_.state(), BreakerState::kOpen);
}

TEST(CircuitBreakerStandaloneTest, StatusOrCallsAndNames) {
  ManualClock clock;
  CircuitBreaker breaker("catalog", Options(), clock);
  const absl::StatusOr<int> value = breaker.Call([]() -> absl::StatusOr<int> { return 7; });
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(*value, 7);
  EXPECT_EQ(BreakerStateName(BreakerState::kHalfOpen), "half_open");
  EXPECT_EQ(BreakerStateValue(BreakerState::kOpen), 1);
  EXPECT_EQ(breaker.name(), "catalog");
}

TEST(CircuitBreakerStandaloneTest, ConcurrentCallsAreSafe) {
  ManualClock clock;
  CircuitBreakerOptions options = Options();
  options.half_open_trial_count_max = 2;
  CircuitBreaker breaker("x", options, clock);
  constexpr int kThreads = 4;
  constexpr int kCalls = 2000;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCalls; ++i) {
        if (t == 0 && i % 100 == 0) clock.Advance(absl::Seconds(1));
        (void)breaker.Call([&admitted, i] {
          admitted.fetch_add(1);
          return i % 2 == 0 ? absl::OkStatus() : absl::UnavailableError("flaky");
        });
        (void)breaker.state();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const BreakerCounts counts = breaker.counts();
  EXPECT_EQ(admitted.load() + counts.rejected_count, kThreads * kCalls);
}

}  // namespace
}  // namespace emporium::resilience
