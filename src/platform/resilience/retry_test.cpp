#include "platform/resilience/retry.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace emporium::resilience {
namespace {

RetryPolicy Policy(int attempts) {
  return RetryPolicy{.attempt_count_max = attempts,
                     .backoff_initial = absl::Milliseconds(100),
                     .backoff_max = absl::Seconds(1),
                     .multiplier = 2.0};
}

TEST(BackoffTest, CeilingGrowsAndIsBounded) {
  const RetryPolicy policy = Policy(10);
  EXPECT_EQ(BackoffCeiling(policy, 0), absl::Milliseconds(100));
  EXPECT_EQ(BackoffCeiling(policy, 1), absl::Milliseconds(200));
  EXPECT_EQ(BackoffCeiling(policy, 2), absl::Milliseconds(400));
  EXPECT_EQ(BackoffCeiling(policy, 3), absl::Milliseconds(800));
  EXPECT_EQ(BackoffCeiling(policy, 4), absl::Seconds(1));
  EXPECT_EQ(BackoffCeiling(policy, 5000), absl::Seconds(1));  // no overflow
  EXPECT_EQ(JitteredBackoff(policy, 2, 0.0), absl::ZeroDuration());
  EXPECT_EQ(JitteredBackoff(policy, 2, 0.5), absl::Milliseconds(200));
}

TEST(RetrierTest, RetriesUntilSuccessWithJitterWithinBounds) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier({.policy = Policy(6)}, sleeper, /*seed=*/42);
  int calls = 0;
  const absl::Status status = retrier.Run(
      Idempotency::kIdempotent, Deadline::Infinite(clock),
      [&calls] { return ++calls < 6 ? absl::UnavailableError("down") : absl::OkStatus(); });
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(calls, 6);
  const std::vector<absl::Duration> sleeps = sleeper.sleeps();
  ASSERT_EQ(sleeps.size(), 5u);
  for (size_t i = 0; i < sleeps.size(); ++i) {
    EXPECT_GE(sleeps[i], absl::ZeroDuration());
    EXPECT_LT(sleeps[i], BackoffCeiling(Policy(6), static_cast<int>(i))) << i;
  }
}

TEST(RetrierTest, JitterIsSeededAndSpreads) {
  ManualClock clock;
  auto run = [&clock](uint64_t seed) {
    FakeSleeper sleeper(clock);
    Retrier retrier({.policy = Policy(40)}, sleeper, seed);
    (void)retrier.Run(Idempotency::kIdempotent, Deadline::Infinite(clock),
                      [] { return absl::UnavailableError("down"); });
    return sleeper.sleeps();
  };
  const std::vector<absl::Duration> a = run(7);
  EXPECT_EQ(a, run(7));
  EXPECT_NE(a, run(8));
  // Full jitter uses the whole range: with 39 draws capped at 1 s, some fall in each half.
  int low = 0;
  int high = 0;
  for (size_t i = 4; i < a.size(); ++i) {
    EXPECT_LT(a[i], absl::Seconds(1));
    (a[i] < absl::Milliseconds(500) ? low : high)++;
  }
  EXPECT_GT(low, 0);
  EXPECT_GT(high, 0);
}

TEST(RetrierTest, NonIdempotentIsNeverRetried) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier({.policy = Policy(5)}, sleeper, 1);
  int calls = 0;
  const absl::Status status =
      retrier.Run(Idempotency::kNotIdempotent, Deadline::Infinite(clock), [&calls] {
        ++calls;
        return absl::UnavailableError("down");
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(sleeper.sleeps().empty());
}

TEST(RetrierTest, NonRetryableStatusStops) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier({.policy = Policy(5)}, sleeper, 1);
  int calls = 0;
  const absl::Status status =
      retrier.Run(Idempotency::kIdempotent, Deadline::Infinite(clock), [&calls] {
        ++calls;
        return absl::InvalidArgumentError("bad");
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 1);
}

TEST(RetrierTest, PredicateOverridesRetryability) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier(
      {.policy = Policy(3),
       .retryable =
           [](const absl::Status& s) { return s.code() == absl::StatusCode::kFailedPrecondition; }},
      sleeper, 1);
  int calls = 0;
  (void)retrier.Run(Idempotency::kIdempotent, Deadline::Infinite(clock), [&calls] {
    ++calls;
    return absl::FailedPreconditionError("not yet");
  });
  EXPECT_EQ(calls, 3);
  calls = 0;
  (void)retrier.Run(Idempotency::kIdempotent, Deadline::Infinite(clock), [&calls] {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(calls, 1);
}

TEST(RetrierTest, AttemptsAreBoundedAndLastStatusReturned) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier({.policy = Policy(3)}, sleeper, 1);
  int calls = 0;
  const absl::Status status = retrier.Run(
      Idempotency::kIdempotent, Deadline::Infinite(clock),
      [&calls] { return absl::UnavailableError("attempt " + std::to_string(++calls)); });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(status.message(), "attempt 3");
  EXPECT_EQ(sleeper.sleeps().size(), 2u);

  // Hostile policies are clamped.
  Retrier zero({.policy = Policy(0)}, sleeper, 1);
  calls = 0;
  (void)zero.Run(Idempotency::kIdempotent, Deadline::Infinite(clock), [&calls] {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(calls, 1);
  Retrier huge({.policy = Policy(1'000'000)}, sleeper, 1);
  EXPECT_EQ(huge.policy().attempt_count_max, kRetryAttemptCountLimit);
}

TEST(RetrierTest, StopsWhenTheSleepWouldPassTheDeadline) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  // Every jittered sleep is below 1 s; a 1.5 s budget allows only a few retries.
  Retrier retrier({.policy = Policy(100)}, sleeper, 3);
  const Deadline deadline = Deadline::After(clock, absl::Milliseconds(1500));
  int calls = 0;
  const absl::Status status = retrier.Run(Idempotency::kIdempotent, deadline, [&calls] {
    ++calls;
    return absl::UnavailableError("down");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(calls, 100);
  EXPECT_LE(clock.Now(), deadline.when());
}

TEST(RetrierTest, ExpiredDeadlineMeansNoCall) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  Retrier retrier({.policy = Policy(3)}, sleeper, 1);
  int calls = 0;
  const absl::Status status =
      retrier.Run(Idempotency::kIdempotent, Deadline::After(clock, absl::ZeroDuration()), [&calls] {
        ++calls;
        return absl::OkStatus();
      });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(calls, 0);
}

TEST(RetrierTest, StatusOrResultsAndRetryCallback) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  std::vector<int> retried_attempts;
  Retrier retrier(
      {.policy = Policy(3),
       .on_retry = [&retried_attempts](int attempt, const absl::Status&,
                                       absl::Duration) { retried_attempts.push_back(attempt); }},
      sleeper, 1);
  int calls = 0;
  const absl::StatusOr<std::string> result =
      retrier.Run(Idempotency::kIdempotent, Deadline::Infinite(clock),
                  [&calls]() -> absl::StatusOr<std::string> {
                    if (++calls < 3) return absl::AbortedError("lost race");
                    return std::string("done");
                  });
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result, "done");
  EXPECT_EQ(retried_attempts, (std::vector<int>{1, 2}));

  const absl::StatusOr<int> expired =
      retrier.Run(Idempotency::kIdempotent, Deadline::After(clock, absl::ZeroDuration()),
                  []() -> absl::StatusOr<int> { return 1; });
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kDeadlineExceeded);
}

}  // namespace
}  // namespace emporium::resilience
