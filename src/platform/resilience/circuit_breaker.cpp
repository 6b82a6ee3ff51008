#include "platform/resilience/circuit_breaker.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/errors.h"

namespace emporium::resilience {

std::string_view BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

int64_t BreakerStateValue(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return 0;
    case BreakerState::kOpen:
      return 1;
    case BreakerState::kHalfOpen:
      return 2;
  }
  return -1;
}

bool IsUpstreamFailureByDefault(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kResourceExhausted:
      return true;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kDoNotUseReservedForFutureExpansionUseDefaultInSwitchInstead_:
      return false;
  }
  return false;
}

CircuitBreaker::CircuitBreaker(std::string name, CircuitBreakerOptions options, const Clock& clock)
    : name_(std::move(name)), options_(std::move(options)), clock_(clock) {
  options_.bucket_count = std::clamp(options_.bucket_count, 1, kBreakerBucketCountMax);
  options_.request_volume_min = std::max(options_.request_volume_min, 1);
  options_.half_open_trial_count_max = std::max(options_.half_open_trial_count_max, 1);
  options_.half_open_success_count_to_close =
      std::max(options_.half_open_success_count_to_close, 1);
  if (!options_.is_failure) options_.is_failure = IsUpstreamFailureByDefault;
  bucket_width_ = std::max(options_.window / options_.bucket_count, absl::Milliseconds(1));
  buckets_.resize(static_cast<size_t>(options_.bucket_count));
}

int64_t CircuitBreaker::BucketIndex(absl::Time now) const {
  absl::Duration remainder;
  return absl::IDivDuration(now - absl::UnixEpoch(), bucket_width_, &remainder);
}

CircuitBreaker::Bucket& CircuitBreaker::CurrentBucketLocked(absl::Time now) {
  const int64_t index = BucketIndex(now);
  const int64_t count = static_cast<int64_t>(buckets_.size());
  Bucket& bucket = buckets_[static_cast<size_t>(((index % count) + count) % count)];
  if (bucket.index != index) bucket = Bucket{index, 0, 0};
  return bucket;
}

void CircuitBreaker::WindowTotalsLocked(absl::Time now, int64_t& success_count,
                                        int64_t& failure_count) const {
  const int64_t index = BucketIndex(now);
  const int64_t oldest = index - static_cast<int64_t>(buckets_.size()) + 1;
  success_count = 0;
  failure_count = 0;
  for (const Bucket& bucket : buckets_) {
    if (bucket.index >= oldest && bucket.index <= index) {
      success_count += bucket.success_count;
      failure_count += bucket.failure_count;
    }
  }
}

CircuitBreaker::Transition CircuitBreaker::SetStateLocked(BreakerState to, absl::Time now) const {
  const BreakerState from = state_;
  state_ = to;
  ++generation_;
  half_open_in_flight_ = 0;
  half_open_success_count_ = 0;
  switch (to) {
    case BreakerState::kOpen:
      opened_at_ = now;
      break;
    case BreakerState::kClosed:
      // A closed breaker starts from a clean window: the failures that opened it are history.
      for (Bucket& bucket : buckets_) bucket = Bucket{};
      break;
    case BreakerState::kHalfOpen:
      break;
  }
  return std::make_pair(from, to);
}

CircuitBreaker::Transition CircuitBreaker::AdvanceLocked(absl::Time now) const {
  if (state_ == BreakerState::kOpen && now >= opened_at_ + options_.open_duration) {
    return SetStateLocked(BreakerState::kHalfOpen, now);
  }
  return std::nullopt;
}

void CircuitBreaker::Notify(const Transition& transition) const {
  if (transition && options_.on_state_change) {
    options_.on_state_change(transition->first, transition->second);
  }
}

absl::StatusOr<CircuitBreaker::Ticket> CircuitBreaker::Allow() {
  Transition transition;
  absl::StatusOr<Ticket> result;
  {
    std::lock_guard lock(mutex_);
    const absl::Time now = clock_.Now();
    transition = AdvanceLocked(now);
    bool admitted = false;
    switch (state_) {
      case BreakerState::kClosed:
        admitted = true;
        result = Ticket{generation_, false};
        break;
      case BreakerState::kOpen:
        break;
      case BreakerState::kHalfOpen:
        if (half_open_in_flight_ < options_.half_open_trial_count_max) {
          ++half_open_in_flight_;
          admitted = true;
          result = Ticket{generation_, true};
        }
        break;
    }
    if (!admitted) {
      ++rejected_count_;
      result = WithErrorCode(absl::UnavailableError(fmt::format("circuit breaker '{}' is {}", name_,
                                                                BreakerStateName(state_))),
                             "circuit_open");
    }
  }
  Notify(transition);
  return result;
}

void CircuitBreaker::Record(const Ticket& ticket, const absl::Status& outcome) {
  const bool failed = !outcome.ok() && options_.is_failure(outcome);
  Transition transition;
  {
    std::lock_guard lock(mutex_);
    const absl::Time now = clock_.Now();
    if (ticket.generation != generation_) return;
    switch (state_) {
      case BreakerState::kClosed: {
        Bucket& bucket = CurrentBucketLocked(now);
        ++(failed ? bucket.failure_count : bucket.success_count);
        if (!failed) break;
        int64_t success_count = 0;
        int64_t failure_count = 0;
        WindowTotalsLocked(now, success_count, failure_count);
        const int64_t total = success_count + failure_count;
        if (total >= options_.request_volume_min &&
            static_cast<double>(failure_count) >=
                options_.failure_rate_threshold * static_cast<double>(total)) {
          transition = SetStateLocked(BreakerState::kOpen, now);
        }
        break;
      }
      case BreakerState::kOpen:
        break;  // unreachable with a matching generation; nothing to learn
      case BreakerState::kHalfOpen:
        if (!ticket.trial) break;
        --half_open_in_flight_;
        if (failed) {
          transition = SetStateLocked(BreakerState::kOpen, now);
        } else if (++half_open_success_count_ >= options_.half_open_success_count_to_close) {
          transition = SetStateLocked(BreakerState::kClosed, now);
        }
        break;
    }
  }
  Notify(transition);
}

BreakerState CircuitBreaker::state() const {
  Transition transition;
  BreakerState state;
  {
    std::lock_guard lock(mutex_);
    transition = AdvanceLocked(clock_.Now());
    state = state_;
  }
  Notify(transition);
  return state;
}

BreakerCounts CircuitBreaker::counts() const {
  std::lock_guard lock(mutex_);
  BreakerCounts counts;
  WindowTotalsLocked(clock_.Now(), counts.window_success_count, counts.window_failure_count);
  counts.rejected_count = rejected_count_;
  return counts;
}

}  // namespace emporium::resilience
