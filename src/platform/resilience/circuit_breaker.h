// Circuit breaker over a rolling error rate, guarding one upstream.
//
//   closed    -- failure rate >= threshold over the window, with >= request_volume_min calls -->
//   open      -- every call rejected fast (Unavailable, error code "circuit_open") until
//                open_duration has passed -->
//   half-open -- up to half_open_trial_count_max trial calls in flight; a failed trial reopens,
//                half_open_success_count_to_close successful trials close (with a fresh window).
//
// The window is split into buckets so old outcomes fall out as time moves; time comes from the
// Clock port. Only statuses the `is_failure` predicate calls failures count against the
// upstream (by default Unavailable, DeadlineExceeded, Internal, Unknown, DataLoss,
// ResourceExhausted); a NotFound or InvalidArgument answer is a healthy upstream.
//
// Thread-safety: all methods may be called from any thread. The state-change callback runs on
// the thread that caused the change, after the breaker's lock is released.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace emporium::resilience {

enum class BreakerState { kClosed, kOpen, kHalfOpen };

std::string_view BreakerStateName(BreakerState state);  // "closed", "open", "half_open"
// For a metrics gauge: closed 0, open 1, half-open 2.
int64_t BreakerStateValue(BreakerState state);

// Unavailable, DeadlineExceeded, Internal, Unknown, DataLoss, ResourceExhausted.
bool IsUpstreamFailureByDefault(const absl::Status& status);

// Bucket counts are bounded so the window cannot grow without limit.
inline constexpr int kBreakerBucketCountMax = 600;

struct CircuitBreakerOptions {
  absl::Duration window = absl::Seconds(10);
  int bucket_count = 10;  // clamped to [1, kBreakerBucketCountMax]
  int request_volume_min = 20;
  double failure_rate_threshold = 0.5;  // opens when failures / calls >= this
  absl::Duration open_duration = absl::Seconds(5);
  int half_open_trial_count_max = 1;
  int half_open_success_count_to_close = 1;
  std::function<bool(const absl::Status&)> is_failure =
      nullptr;  // empty: IsUpstreamFailureByDefault
  std::function<void(BreakerState from, BreakerState to)> on_state_change = nullptr;
};

struct BreakerCounts {
  int64_t window_success_count = 0;  // in the rolling window (closed state)
  int64_t window_failure_count = 0;
  int64_t rejected_count = 0;  // since construction
};

class CircuitBreaker {
 public:
  // Proof of admission; hand it back to Record() exactly once.
  struct Ticket {
    uint64_t generation = 0;
    bool trial = false;
  };

  // `clock` must outlive the breaker. `name` appears in rejection messages.
  CircuitBreaker(std::string name, CircuitBreakerOptions options, const Clock& clock);

  // Admits a call or rejects it fast with Unavailable / error code "circuit_open".
  absl::StatusOr<Ticket> Allow();
  // Reports the outcome of an admitted call. Outcomes of calls admitted before the last state
  // change are ignored (they describe a different period).
  void Record(const Ticket& ticket, const absl::Status& outcome);

  // Allow(), run `op` (returning absl::Status or absl::StatusOr<T>), Record(); returns the
  // rejection or the op's result.
  template <typename F>
  std::invoke_result_t<F&> Call(F&& op) {
    absl::StatusOr<Ticket> ticket = Allow();
    if (!ticket.ok()) return ticket.status();
    auto result = op();
    if constexpr (std::is_same_v<decltype(result), absl::Status>) {
      Record(*ticket, result);
    } else {
      Record(*ticket, result.status());
    }
    return result;
  }

  BreakerState state() const;
  BreakerCounts counts() const;
  const std::string& name() const { return name_; }

 private:
  struct Bucket {
    int64_t index = -1;  // which bucket-width interval since the epoch it holds
    int64_t success_count = 0;
    int64_t failure_count = 0;
  };
  using Transition = std::optional<std::pair<BreakerState, BreakerState>>;

  // All *Locked methods need mutex_ held.
  Transition AdvanceLocked(absl::Time now) const;
  Transition SetStateLocked(BreakerState to, absl::Time now) const;
  int64_t BucketIndex(absl::Time now) const;
  Bucket& CurrentBucketLocked(absl::Time now);
  void WindowTotalsLocked(absl::Time now, int64_t& success_count, int64_t& failure_count) const;
  void Notify(const Transition& transition) const;

  const std::string name_;
  CircuitBreakerOptions options_;
  const Clock& clock_;
  absl::Duration bucket_width_;

  mutable std::mutex mutex_;
  // Mutable: observing the breaker moves an expired open state to half-open.
  mutable BreakerState state_ = BreakerState::kClosed;
  mutable uint64_t generation_ = 0;
  mutable absl::Time opened_at_;
  mutable int half_open_in_flight_ = 0;
  mutable int half_open_success_count_ = 0;
  mutable std::vector<Bucket> buckets_;
  int64_t rejected_count_ = 0;
};

}  // namespace emporium::resilience
