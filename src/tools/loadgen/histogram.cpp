#include "tools/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>

namespace emporium::loadgen {

size_t LatencyHistogram::BucketIndex(int64_t value) {
  assert(value >= 0 && value <= kValueMax);
  if (value < kSubBucketCount) return static_cast<size_t>(value);
  const int exponent = 63 - std::countl_zero(static_cast<uint64_t>(value));  // >= 7
  const int shift = exponent - kSubBucketBits;
  const int64_t sub = (value >> shift) - kSubBucketCount;  // 0..127
  return static_cast<size_t>(kSubBucketCount * (shift + 1) + sub);
}

int64_t LatencyHistogram::BucketLow(size_t index) {
  const int64_t i = static_cast<int64_t>(index);
  if (i < kSubBucketCount) return i;
  const int64_t shift = i / kSubBucketCount - 1;
  const int64_t sub = i % kSubBucketCount;
  return (kSubBucketCount + sub) << shift;
}

int64_t LatencyHistogram::BucketWidth(size_t index) {
  const int64_t i = static_cast<int64_t>(index);
  if (i < kSubBucketCount) return 1;
  return int64_t{1} << (i / kSubBucketCount - 1);
}

void LatencyHistogram::Record(int64_t value, int64_t times) {
  if (times <= 0) return;
  value = std::clamp<int64_t>(value, 0, kValueMax);
  const size_t index = BucketIndex(value);
  if (index >= counts_.size()) counts_.resize(index + 1, 0);
  counts_[index] += times;
  if (count_ == 0 || value < min_) min_ = value;
  if (value > max_) max_ = value;
  count_ += times;
  sum_ += static_cast<double>(value) * static_cast<double>(times);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (size_t i = 0; i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  min_ = count_ == 0 ? other.min_ : std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  count_ += other.count_;
  sum_ += other.sum_;
}

void LatencyHistogram::Reset() { *this = LatencyHistogram(); }

double LatencyHistogram::mean() const {
  if (count_ == 0) return 0;
  return sum_ / static_cast<double>(count_);
}

int64_t LatencyHistogram::Percentile(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // Nearest rank, at least 1.
  int64_t rank = static_cast<int64_t>(std::ceil(percentile / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<int64_t>(rank, 1, count_);
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const int64_t middle = BucketLow(i) + BucketWidth(i) / 2;
      return std::clamp(middle, min_, max_);
    }
  }
  return max_;
}

}  // namespace emporium::loadgen
