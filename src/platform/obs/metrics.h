// Prometheus metrics: counters, gauges and histograms with labels, and the text exposition
// format served at GET /metrics.
//
// Get*() returns a reference that stays valid for the registry's lifetime; look a series up
// once and keep the reference on hot paths (updates are lock-free atomics). A registry is
// created by the composition root and passed to whoever records metrics; tests make their own.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emporium::obs {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void Increment(int64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t value) { value_.store(value, std::memory_order_relaxed); }
  void Add(int64_t by) { value_.fetch_add(by, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Cumulative histogram with fixed upper bounds (seconds for latencies, counts for sizes).
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);
  std::vector<int64_t> bucket_counts() const;  // per bound, not cumulative; last is +Inf
  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  int64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const;

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<int64_t>[]> buckets_;  // upper_bounds_.size() + 1
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> sum_micros_{0};  // fixed point: sum * 1e6
};

// 0.5 ms .. 10 s, for request and step latencies in seconds.
std::vector<double> LatencyBucketsSeconds();
// 1 .. 4096 in powers of two, for batch sizes.
std::vector<double> SizeBuckets();

class MetricsRegistry {
 public:
  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // The same (name, labels) always yields the same series. `help` is taken from the first call.
  Counter& GetCounter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& GetGauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& GetHistogram(std::string_view name, std::string_view help, const Labels& labels = {},
                          std::vector<double> upper_bounds = LatencyBucketsSeconds());
  // A gauge read at scrape time (queue depths, consumer lag, breaker states). The callback
  // must be thread-safe and must outlive the registry or be removed with the returned id.
  int64_t AddCallbackGauge(std::string_view name, std::string_view help, const Labels& labels,
                           std::function<int64_t()> read);
  void RemoveCallbackGauge(int64_t id);

  // Prometheus text exposition format 0.0.4.
  std::string RenderPrometheus() const;

 private:
  struct Families;
  std::unique_ptr<Families> families_;
};

}  // namespace emporium::obs
