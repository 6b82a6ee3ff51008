// Retry policy for failing message handlers: bounded attempts with exponential backoff.
// (A local policy; src/platform/resilience had not landed when the bus was written.)
#pragma once

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace emporium::bus {

struct RetryPolicy {
  // Handler runs per message before it is dead-lettered.
  int attempts_max = 5;
  // Wait after the first failure; doubles after each further failure, up to backoff_max.
  absl::Duration backoff_base = absl::Milliseconds(50);
  absl::Duration backoff_max = absl::Seconds(5);

  // Wait after the `failures`-th consecutive failure (failures >= 1).
  absl::Duration BackoffAfter(int failures) const {
    absl::Duration wait = backoff_base;
    for (int i = 1; i < failures && wait < backoff_max; ++i) wait *= 2;
    return std::min(wait, backoff_max);
  }
};

}  // namespace emporium::bus
