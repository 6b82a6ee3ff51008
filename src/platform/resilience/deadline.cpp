#include "platform/resilience/deadline.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace emporium::resilience {

Deadline Deadline::After(const Clock& clock, absl::Duration timeout) {
  return Deadline(clock, clock.Now() + timeout);
}

Deadline Deadline::At(const Clock& clock, absl::Time when) { return Deadline(clock, when); }

Deadline Deadline::Infinite(const Clock& clock) { return Deadline(clock, absl::InfiniteFuture()); }

absl::Duration Deadline::remaining() const {
  if (is_infinite()) return absl::InfiniteDuration();
  return std::max(when_ - clock_->Now(), absl::ZeroDuration());
}

bool Deadline::expired() const { return !is_infinite() && clock_->Now() >= when_; }

Deadline Deadline::Within(absl::Duration timeout) const {
  return Deadline(*clock_, std::min(when_, clock_->Now() + timeout));
}

void SystemSleeper::SleepFor(absl::Duration duration) {
  if (duration > absl::ZeroDuration()) absl::SleepFor(duration);
}

SystemSleeper& SystemSleeper::Instance() {
  static SystemSleeper sleeper;
  return sleeper;
}

void FakeSleeper::SleepFor(absl::Duration duration) {
  {
    std::lock_guard lock(mutex_);
    sleeps_.push_back(duration);
  }
  if (duration > absl::ZeroDuration()) clock_.Advance(duration);
}

std::vector<absl::Duration> FakeSleeper::sleeps() const {
  std::lock_guard lock(mutex_);
  return sleeps_;
}

}  // namespace emporium::resilience
