#include "platform/resilience/retry.h"

#include <algorithm>
#include <cmath>

namespace emporium::resilience {

bool IsRetryableByDefault(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
      return true;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kDoNotUseReservedForFutureExpansionUseDefaultInSwitchInstead_:
      return false;
  }
  return false;
}

absl::Duration BackoffCeiling(const RetryPolicy& policy, int retry_index) {
  const double initial_s = absl::ToDoubleSeconds(policy.backoff_initial);
  const double max_s = absl::ToDoubleSeconds(policy.backoff_max);
  // Computed in double seconds so a large exponent saturates at backoff_max instead of
  // overflowing.
  const double grown_s =
      initial_s * std::pow(std::max(policy.multiplier, 1.0), std::max(retry_index, 0));
  const double ceiling_s = std::isfinite(grown_s) ? std::min(grown_s, max_s) : max_s;
  return absl::Seconds(std::max(ceiling_s, 0.0));
}

absl::Duration JitteredBackoff(const RetryPolicy& policy, int retry_index, double uniform01) {
  const double u = std::clamp(uniform01, 0.0, 1.0);
  return BackoffCeiling(policy, retry_index) * u;
}

Retrier::Retrier(RetryOptions options, Sleeper& sleeper, uint64_t seed)
    : options_(std::move(options)), sleeper_(sleeper), random_(seed) {
  if (!options_.retryable) options_.retryable = IsRetryableByDefault;
  options_.policy.attempt_count_max =
      std::clamp(options_.policy.attempt_count_max, 1, kRetryAttemptCountLimit);
}

Retrier::Retrier(RetryOptions options, Sleeper& sleeper)
    : Retrier(std::move(options), sleeper, std::random_device{}()) {}

double Retrier::NextUniform01() {
  std::lock_guard lock(random_mutex_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(random_);
}

absl::Status Retrier::RunStatus(Idempotency idempotency, const Deadline& deadline,
                                const std::function<absl::Status()>& op) {
  if (deadline.expired()) return absl::DeadlineExceededError("deadline passed before the call");
  absl::Status status;
  for (int attempt = 1; attempt <= options_.policy.attempt_count_max; ++attempt) {
    status = op();
    if (status.ok()) return status;
    switch (idempotency) {
      case Idempotency::kNotIdempotent:
        return status;  // a second try could apply the effect twice
      case Idempotency::kIdempotent:
        break;
    }
    if (!options_.retryable(status) || attempt == options_.policy.attempt_count_max) {
      return status;
    }
    const absl::Duration sleep = JitteredBackoff(options_.policy, attempt - 1, NextUniform01());
    if (sleep >= deadline.remaining()) return status;  // the sleep would outlive the deadline
    if (options_.on_retry) options_.on_retry(attempt, status, sleep);
    sleeper_.SleepFor(sleep);
  }
  return status;
}

}  // namespace emporium::resilience
