#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::loadgen {
namespace {

constexpr double kRelativeErrorMax = 0.01;
constexpr double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

// Nearest-rank percentile of a sorted vector: the definition the histogram approximates.
int64_t ExactPercentile(const std::vector<int64_t>& sorted, double percentile) {
  int64_t rank =
      static_cast<int64_t>(std::ceil(percentile / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<int64_t>(rank, 1, static_cast<int64_t>(sorted.size()));
  return sorted[static_cast<size_t>(rank - 1)];
}

void ExpectMatchesExact(const LatencyHistogram& histogram, std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  ASSERT_EQ(histogram.count(), static_cast<int64_t>(values.size()));
  EXPECT_EQ(histogram.min(), values.front());
  EXPECT_EQ(histogram.max(), values.back());
  for (double percentile : kPercentiles) {
    const double exact = static_cast<double>(ExactPercentile(values, percentile));
    const double got = static_cast<double>(histogram.Percentile(percentile));
    EXPECT_LE(std::abs(got - exact), exact * kRelativeErrorMax)
        << "p" << percentile << " exact " << exact << " got " << got;
  }
}

TEST(LatencyHistogramTest, EmptyReportsZeros) {
  LatencyHistogram histogram;
  EXPECT_EQ(histogram.count(), 0);
  EXPECT_EQ(histogram.min(), 0);
  EXPECT_EQ(histogram.max(), 0);
  EXPECT_EQ(histogram.Percentile(50), 0);
  EXPECT_EQ(histogram.mean(), 0);
}

TEST(LatencyHistogramTest, SmallValuesAreExact) {
  LatencyHistogram histogram;
  for (int64_t v = 0; v < 128; ++v) histogram.Record(v);
  EXPECT_EQ(histogram.Percentile(50), 63);
  EXPECT_EQ(histogram.Percentile(100), 127);
  EXPECT_EQ(histogram.Percentile(0), 0);
  EXPECT_DOUBLE_EQ(histogram.mean(), 63.5);
}

TEST(LatencyHistogramTest, BucketsAreContiguousAndNarrow) {
  // Every bucket starts where the previous one ended and is at most 1/128 of its low value.
  for (size_t i = 1; i < LatencyHistogram::kBucketCount; ++i) {
    ASSERT_EQ(LatencyHistogram::BucketLow(i),
              LatencyHistogram::BucketLow(i - 1) + LatencyHistogram::BucketWidth(i - 1))
        << i;
    if (i >= 128) {
      ASSERT_LE(LatencyHistogram::BucketWidth(i) * 128, LatencyHistogram::BucketLow(i));
    }
  }
  for (int64_t v : {int64_t{0}, int64_t{127}, int64_t{128}, int64_t{255}, int64_t{256},
                    int64_t{1000003}, LatencyHistogram::kValueMax}) {
    const size_t index = LatencyHistogram::BucketIndex(v);
    EXPECT_LT(index, LatencyHistogram::kBucketCount);
    EXPECT_LE(LatencyHistogram::BucketLow(index), v);
    EXPECT_LT(v, LatencyHistogram::BucketLow(index) + LatencyHistogram::BucketWidth(index));
  }
}

TEST(LatencyHistogramTest, HostileValuesAreClamped) {
  LatencyHistogram histogram;
  histogram.Record(-5);
  histogram.Record(INT64_MAX);
  histogram.Record(7, 0);
  histogram.Record(7, -3);
  EXPECT_EQ(histogram.count(), 2);
  EXPECT_EQ(histogram.min(), 0);
  EXPECT_EQ(histogram.max(), LatencyHistogram::kValueMax);
}

TEST(LatencyHistogramTest, UniformMatchesSortedArray) {
  std::mt19937_64 random(42);
  std::uniform_int_distribution<int64_t> uniform(1, 2'000'000);
  LatencyHistogram histogram;
  std::vector<int64_t> values;
  for (int i = 0; i < 200'000; ++i) {
    values.push_back(uniform(random));
    histogram.Record(values.back());
  }
  ExpectMatchesExact(histogram, values);
}

TEST(LatencyHistogramTest, ExponentialMatchesSortedArray) {
  std::mt19937_64 random(7);
  std::exponential_distribution<double> exponential(1.0 / 800.0);  // mean 800 us
  LatencyHistogram histogram;
  std::vector<int64_t> values;
  double sum = 0;
  for (int i = 0; i < 200'000; ++i) {
    values.push_back(static_cast<int64_t>(exponential(random)));
    sum += static_cast<double>(values.back());
    histogram.Record(values.back());
  }
  ExpectMatchesExact(histogram, values);
  EXPECT_NEAR(histogram.mean(), sum / static_cast<double>(values.size()), 1e-6);
}

TEST(LatencyHistogramTest, MergeEqualsOneHistogramOfAllValues) {
  std::mt19937_64 random(3);
  std::lognormal_distribution<double> lognormal(7.0, 1.5);
  LatencyHistogram parts[4];
  LatencyHistogram all;
  std::vector<int64_t> values;
  for (int i = 0; i < 100'000; ++i) {
    const int64_t v = static_cast<int64_t>(lognormal(random));
    values.push_back(v);
    parts[i % 4].Record(v);
    all.Record(v);
  }
  LatencyHistogram merged;
  for (const LatencyHistogram& part : parts) merged.Merge(part);
  merged.Merge(LatencyHistogram());  // merging an empty one changes nothing
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (double percentile : kPercentiles) {
    EXPECT_EQ(merged.Percentile(percentile), all.Percentile(percentile)) << percentile;
  }
  ExpectMatchesExact(merged, values);
}

TEST(LatencyHistogramTest, ResetEmpties) {
  LatencyHistogram histogram;
  histogram.Record(1000);
  histogram.Reset();
  EXPECT_EQ(histogram.count(), 0);
  EXPECT_EQ(histogram.max(), 0);
}

}  // namespace
}  // namespace emporium::loadgen
