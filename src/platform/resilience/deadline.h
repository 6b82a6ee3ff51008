// Deadlines and the Sleeper port: the time vocabulary of retries, breakers and bulkheads.
//
// A Deadline is a point in time read against a Clock, so tests drive it with ManualClock. The
// Sleeper port is how resilience code waits: SystemSleeper really sleeps; FakeSleeper advances
// a ManualClock and records each sleep, so a test of a retry loop never waits.
//
// Thread-safety: Deadline is an immutable value (the Clock must outlive it). SystemSleeper and
// FakeSleeper may be used from any thread.
#pragma once

#include <mutex>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"

namespace emporium::resilience {

class Deadline {
 public:
  // `timeout` from now on `clock`; a negative timeout is already expired.
  static Deadline After(const Clock& clock, absl::Duration timeout);
  static Deadline At(const Clock& clock, absl::Time when);
  // Never expires.
  static Deadline Infinite(const Clock& clock);

  absl::Time when() const { return when_; }
  bool is_infinite() const { return when_ == absl::InfiniteFuture(); }
  // Time left, never negative; absl::InfiniteDuration() for an infinite deadline.
  absl::Duration remaining() const;
  bool expired() const;
  const Clock& clock() const { return *clock_; }

  // The sooner of this deadline and `timeout` from now (a per-call timeout inside an overall
  // budget).
  Deadline Within(absl::Duration timeout) const;

 private:
  Deadline(const Clock& clock, absl::Time when) : clock_(&clock), when_(when) {}

  const Clock* clock_;
  absl::Time when_;
};

// Port: blocks the calling thread for a while.
class Sleeper {
 public:
  virtual ~Sleeper() = default;
  virtual void SleepFor(absl::Duration duration) = 0;
};

class SystemSleeper final : public Sleeper {
 public:
  void SleepFor(absl::Duration duration) override;
  static SystemSleeper& Instance();
};

// For tests: advances `clock` by each requested duration instead of sleeping.
class FakeSleeper final : public Sleeper {
 public:
  explicit FakeSleeper(ManualClock& clock) : clock_(clock) {}
  void SleepFor(absl::Duration duration) override;
  std::vector<absl::Duration> sleeps() const;

 private:
  ManualClock& clock_;
  mutable std::mutex mutex_;
  std::vector<absl::Duration> sleeps_;
};

}  // namespace emporium::resilience
