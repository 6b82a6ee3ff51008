#include "common/clock.h"

#include "gtest/gtest.h"

namespace emporium {
namespace {

TEST(ManualClockTest, MovesOnlyWhenTold) {
  ManualClock clock(absl::FromUnixMillis(1000));
  EXPECT_EQ(clock.NowMs(), 1000);
  clock.Advance(absl::Milliseconds(250));
  EXPECT_EQ(clock.NowMs(), 1250);
  clock.Set(absl::FromUnixMillis(5));
  EXPECT_EQ(clock.NowMs(), 5);
}

TEST(SystemClockTest, IsNearTheRealTime) {
  EXPECT_LT(absl::AbsDuration(SystemClock::Instance().Now() - absl::Now()), absl::Seconds(1));
}

}  // namespace
}  // namespace emporium
