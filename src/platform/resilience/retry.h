// Retries with exponential backoff and full jitter, for idempotent operations only.
//
// The n-th retry (n = 0 for the first) sleeps a uniformly random duration in
// [0, min(backoff_max, backoff_initial * multiplier^n)) ("full jitter"). A retry happens only
// when the operation is idempotent, its status is retryable (Unavailable, DeadlineExceeded,
// Aborted, ResourceExhausted unless a predicate says otherwise), attempts remain, and the sleep
// would end before the deadline. Time, sleeping and randomness are injected.
//
// Thread-safety: a Retrier may be shared by threads (its random source is locked); the
// operation it runs is called on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "platform/resilience/deadline.h"

namespace emporium::resilience {

// No policy may ask for more attempts than this; larger values are clamped.
inline constexpr int kRetryAttemptCountLimit = 100;

struct RetryPolicy {
  int attempt_count_max = 3;  // total attempts, the first included; clamped to [1, limit]
  absl::Duration backoff_initial = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(2);
  double multiplier = 2.0;
};

enum class Idempotency { kIdempotent, kNotIdempotent };

using RetryablePredicate = std::function<bool(const absl::Status&)>;

// Unavailable, DeadlineExceeded, Aborted, ResourceExhausted.
bool IsRetryableByDefault(const absl::Status& status);

// min(backoff_max, backoff_initial * multiplier^retry_index), never negative.
absl::Duration BackoffCeiling(const RetryPolicy& policy, int retry_index);
// Full jitter: `uniform01` in [0, 1) scales the ceiling.
absl::Duration JitteredBackoff(const RetryPolicy& policy, int retry_index, double uniform01);

struct RetryOptions {
  RetryPolicy policy;
  RetryablePredicate retryable = nullptr;  // empty: IsRetryableByDefault
  // Called before each sleep with the attempt number that failed (1-based), its status and
  // the chosen sleep; for logs and metrics.
  std::function<void(int attempt, const absl::Status& status, absl::Duration sleep)> on_retry =
      nullptr;
};

class Retrier {
 public:
  // `sleeper` must outlive the Retrier; `seed` makes the jitter reproducible. Time is read
  // from each call's Deadline.
  Retrier(RetryOptions options, Sleeper& sleeper, uint64_t seed);
  // Seeds the jitter from std::random_device.
  Retrier(RetryOptions options, Sleeper& sleeper);

  // Runs `op` (returning absl::Status or absl::StatusOr<T>) until it succeeds or a retry is
  // not allowed; returns the last result. If the deadline has already passed before the first
  // attempt, returns DeadlineExceeded without calling `op`.
  template <typename F>
  std::invoke_result_t<F&> Run(Idempotency idempotency, const Deadline& deadline, F&& op) {
    using Result = std::invoke_result_t<F&>;
    if constexpr (std::is_same_v<Result, absl::Status>) {
      return RunStatus(idempotency, deadline, [&op] { return op(); });
    } else {
      std::optional<Result> result;
      const absl::Status status = RunStatus(idempotency, deadline, [&op, &result] {
        result.emplace(op());
        return result->status();
      });
      if (!result.has_value()) return Result(status);
      return std::move(*result);
    }
  }

  const RetryPolicy& policy() const { return options_.policy; }

 private:
  absl::Status RunStatus(Idempotency idempotency, const Deadline& deadline,
                         const std::function<absl::Status()>& op);
  double NextUniform01();

  RetryOptions options_;
  Sleeper& sleeper_;
  std::mutex random_mutex_;
  std::mt19937_64 random_;
};

}  // namespace emporium::resilience
