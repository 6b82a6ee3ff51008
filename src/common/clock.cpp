#include "common/clock.h"

namespace emporium {

const SystemClock& SystemClock::Instance() {
  static const SystemClock clock;
  return clock;
}

}  // namespace emporium
