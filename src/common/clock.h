// Clock port: the only way code in Emporium learns the time.
//
// Domain code never reads the system clock; it receives a Clock (or a timestamp) from its
// caller, so tests drive time by hand with ManualClock. Both implementations are
// thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace emporium {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time (UTC). Used for timestamps that leave the process and for expiries.
  virtual absl::Time Now() const = 0;
  // Milliseconds since the Unix epoch; a convenience over Now().
  int64_t NowMs() const { return absl::ToUnixMillis(Now()); }
};

// Reads the operating system's real-time clock.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance; SystemClock has no state, so sharing it is safe.
  static const SystemClock& Instance();
};

// Time that moves only when a test says so.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(absl::Time start = absl::FromUnixMillis(1'767'225'600'000))  // 2026-01-01
      : now_ns_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override { return absl::FromUnixNanos(now_ns_.load()); }
  void Advance(absl::Duration by) { now_ns_.fetch_add(absl::ToInt64Nanoseconds(by)); }
  void Set(absl::Time to) { now_ns_.store(absl::ToUnixNanos(to)); }

 private:
  std::atomic<int64_t> now_ns_;
};

}  // namespace emporium
