// LatencyHistogram: an HDR-style log-linear histogram of non-negative integer values (latencies
// in microseconds). Values below 128 are counted exactly; above, each power-of-two range is
// split into 128 equal buckets, so any reported value is within 1/256 (< 0.4 %) of a recorded
// one. Memory is bounded: at most kBucketCount counters (about 30 KiB), allocated as values
// need them. Values above kValueMax (about 19 hours in microseconds) are clamped to it.
//
// Percentiles use the nearest-rank definition (the smallest recorded value v such that at least
// p % of the values are <= v), reported as the midpoint of v's bucket and clamped to
// [min, max]. Histograms merge exactly (bucket-wise sums), so each thread records into its own
// and the results are merged at the end.
//
// Thread-safety: none; one histogram per thread, merge afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace emporium::loadgen {

class LatencyHistogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr int64_t kSubBucketCount = int64_t{1} << kSubBucketBits;  // 128
  static constexpr int kTopExponent = 36;
  static constexpr int64_t kValueMax = (int64_t{1} << kTopExponent) - 1;
  static constexpr size_t kBucketCount =
      static_cast<size_t>(kSubBucketCount * (kTopExponent - kSubBucketBits + 1));

  // Records `value` `times` times; negative values count as 0, values above kValueMax as
  // kValueMax. `times` <= 0 records nothing.
  void Record(int64_t value, int64_t times = 1);
  // Adds every value of `other` to this histogram.
  void Merge(const LatencyHistogram& other);
  void Reset();

  int64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return max_; }
  double mean() const;
  // `percentile` in [0, 100]; 0 when empty. Percentile(100) == max().
  int64_t Percentile(double percentile) const;

  // Bucket arithmetic, exposed for tests: the bucket of `value` and its value range.
  static size_t BucketIndex(int64_t value);
  static int64_t BucketLow(size_t index);
  static int64_t BucketWidth(size_t index);

 private:
  std::vector<int64_t> counts_;  // grows to the highest bucket used
  int64_t count_ = 0;
  int64_t min_ = 0;
  int64_t max_ = 0;
  double sum_ = 0;  // exact for integer sums below 2^53
};

}  // namespace emporium::loadgen
