#include "common/ids.h"

#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace emporium {
namespace {

TEST(UuidV7Test, HasVersionAndVariantBits) {
  ManualClock clock;
  UuidV7Generator generator(clock);
  std::string id = generator.Next();
  ASSERT_TRUE(IsUuid(id)) << id;
  EXPECT_EQ(id[14], '7');
  EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') << id;
}

// 3,000 ids from each of four threads sharing `generator`, in each thread's order.
std::vector<std::vector<std::string>> IdsFromFourThreads(UuidV7Generator& generator) {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& ids : per_thread) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3000; ++i) ids.push_back(generator.Next());
    });
  }
  for (auto& thread : threads) thread.join();
  return per_thread;
}

TEST(UuidV7Test, StrictlyIncreasingWithinOneMillisecondAndAcrossThreads) {
  ManualClock clock;  // never advances: every id falls in the same millisecond
  UuidV7Generator generator(clock);
  const std::vector<std::vector<std::string>> per_thread = IdsFromFourThreads(generator);
  std::set<std::string> all;
  for (const auto& ids : per_thread) {
    for (size_t i = 1; i < ids.size(); ++i) ASSERT_LT(ids[i - 1], ids[i]);
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), 12000u);
}

// The random tails (the last 62 bits) are never reused, across threads and across refills of
// each thread's pool of random bytes (512 bytes = 64 ids): a repeat among 12,000 ids of 62
// random bits would mean bytes handed out twice.
TEST(UuidV7Test, RandomPartsAreNeverReused) {
  ManualClock clock;
  UuidV7Generator generator(clock);
  const std::vector<std::vector<std::string>> per_thread = IdsFromFourThreads(generator);
  std::set<std::string> tails;
  for (const auto& ids : per_thread) {
    for (const std::string& id : ids) tails.insert(id.substr(19));  // variant nibble onwards
  }
  EXPECT_EQ(tails.size(), 12000u);
}

TEST(UuidV7Test, SortsByTime) {
  ManualClock clock;
  UuidV7Generator generator(clock);
  std::string earlier = generator.Next();
  clock.Advance(absl::Milliseconds(1));
  EXPECT_LT(earlier, generator.Next());
}

TEST(IsUuidTest, RejectsNearMisses) {
  EXPECT_TRUE(IsUuid("0192f3a1-7c2e-7b3d-9f1a-2c3d4e5f6a7b"));
  EXPECT_FALSE(IsUuid("0192F3A1-7C2E-7B3D-9F1A-2C3D4E5F6A7B"));
  EXPECT_FALSE(IsUuid("0192f3a1-7c2e-7b3d-9f1a-2c3d4e5f6a7"));
  EXPECT_FALSE(IsUuid("0192f3a1x7c2e-7b3d-9f1a-2c3d4e5f6a7b"));
  EXPECT_FALSE(IsUuid("../../etc/passwd"));
}

TEST(SequentialIdGeneratorTest, IsReadableAndDeterministic) {
  SequentialIdGenerator generator("o_");
  EXPECT_EQ(generator.Next(), "o_000001");
  EXPECT_EQ(generator.Next(), "o_000002");
}

TEST(StrongIdTest, ComparesByValue) {
  using OrderId = Id<struct OrderTag>;
  EXPECT_EQ(OrderId("a"), OrderId("a"));
  EXPECT_LT(OrderId("a"), OrderId("b"));
}

}  // namespace
}  // namespace emporium
