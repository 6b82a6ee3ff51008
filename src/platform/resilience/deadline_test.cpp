#include "platform/resilience/deadline.h"

#include <gtest/gtest.h>

namespace emporium::resilience {
namespace {

TEST(DeadlineTest, RemainingAndExpiredFollowTheClock) {
  ManualClock clock;
  const Deadline deadline = Deadline::After(clock, absl::Seconds(2));
  EXPECT_FALSE(deadline.expired());
  EXPECT_EQ(deadline.remaining(), absl::Seconds(2));
  clock.Advance(absl::Milliseconds(1500));
  EXPECT_EQ(deadline.remaining(), absl::Milliseconds(500));
  clock.Advance(absl::Milliseconds(500));
  EXPECT_TRUE(deadline.expired());
  EXPECT_EQ(deadline.remaining(), absl::ZeroDuration());
  clock.Advance(absl::Seconds(10));
  EXPECT_EQ(deadline.remaining(), absl::ZeroDuration());  // never negative
}

TEST(DeadlineTest, InfiniteNeverExpires) {
  ManualClock clock;
  const Deadline deadline = Deadline::Infinite(clock);
  clock.Advance(absl::Hours(24 * 365));
  EXPECT_FALSE(deadline.expired());
  EXPECT_TRUE(deadline.is_infinite());
  EXPECT_EQ(deadline.remaining(), absl::InfiniteDuration());
}

TEST(DeadlineTest, WithinTakesTheSooner) {
  ManualClock clock;
  const Deadline overall = Deadline::After(clock, absl::Seconds(5));
  EXPECT_EQ(overall.Within(absl::Seconds(1)).remaining(), absl::Seconds(1));
  EXPECT_EQ(overall.Within(absl::Seconds(60)).remaining(), absl::Seconds(5));
  EXPECT_EQ(Deadline::Infinite(clock).Within(absl::Seconds(3)).remaining(), absl::Seconds(3));
  EXPECT_TRUE(Deadline::After(clock, absl::Seconds(-1)).expired());
  EXPECT_TRUE(Deadline::At(clock, clock.Now()).expired());
}

TEST(FakeSleeperTest, AdvancesTheClockAndRecords) {
  ManualClock clock;
  FakeSleeper sleeper(clock);
  const absl::Time start = clock.Now();
  sleeper.SleepFor(absl::Milliseconds(30));
  sleeper.SleepFor(absl::Milliseconds(70));
  EXPECT_EQ(clock.Now() - start, absl::Milliseconds(100));
  EXPECT_EQ(sleeper.sleeps(),
            (std::vector<absl::Duration>{absl::Milliseconds(30), absl::Milliseconds(70)}));
}

}  // namespace
}  // namespace emporium::resilience
