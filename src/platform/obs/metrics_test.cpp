#include "platform/obs/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace emporium::obs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

TEST(MetricsTest, SameNameAndLabelsYieldSameSeries) {
  MetricsRegistry registry;
  Counter& a = registry.GetCounter("requests_total", "Requests.", {{"route", "/a"}});
  Counter& b = registry.GetCounter("requests_total", "ignored", {{"route", "/a"}});
  Counter& c = registry.GetCounter("requests_total", "Requests.", {{"route", "/b"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);

  // Label order does not make a new series.
  Gauge& g1 = registry.GetGauge("depth", "Depth.", {{"a", "1"}, {"b", "2"}});
  Gauge& g2 = registry.GetGauge("depth", "Depth.", {{"b", "2"}, {"a", "1"}});
  EXPECT_EQ(&g1, &g2);

  Histogram& h1 = registry.GetHistogram("latency_seconds", "Latency.", {{"route", "/a"}});
  Histogram& h2 = registry.GetHistogram("latency_seconds", "Latency.", {{"route", "/a"}});
  EXPECT_EQ(&h1, &h2);
}

TEST(MetricsTest, CounterAndGaugeValues) {
  MetricsRegistry registry;
  Counter& counter = registry.GetCounter("c_total", "C.");
  counter.Increment();
  counter.Increment(4);
  EXPECT_EQ(counter.value(), 5);
  Gauge& gauge = registry.GetGauge("g", "G.");
  gauge.Set(10);
  gauge.Add(-3);
  EXPECT_EQ(gauge.value(), 7);
}

TEST(MetricsTest, ExpositionExactLines) {
  MetricsRegistry registry;
  registry.GetGauge("zeta", "Last family.").Set(-2);
  registry.GetCounter("http_requests_total", "HTTP requests.", {{"route", "/b"}, {"code", "200"}})
      .Increment(3);
  registry.GetCounter("http_requests_total", "HTTP requests.", {{"route", "/a"}, {"code", "500"}})
      .Increment();
  Histogram& histogram =
      registry.GetHistogram("op_seconds", "Op latency.", {{"op", "x"}}, {0.1, 1, 2.5});
  histogram.Observe(0.05);
  histogram.Observe(0.1);  // on the bound: counts in le="0.1"
  histogram.Observe(2);
  histogram.Observe(100);

  const std::vector<std::string> expected = {
      "# HELP http_requests_total HTTP requests.",
      "# TYPE http_requests_total counter",
      "http_requests_total{code=\"200\",route=\"/b\"} 3",
      "http_requests_total{code=\"500\",route=\"/a\"} 1",
      "# HELP op_seconds Op latency.",
      "# TYPE op_seconds histogram",
      "op_seconds_bucket{op=\"x\",le=\"0.1\"} 2",
      "op_seconds_bucket{op=\"x\",le=\"1\"} 2",
      "op_seconds_bucket{op=\"x\",le=\"2.5\"} 3",
      "op_seconds_bucket{op=\"x\",le=\"+Inf\"} 4",
      "op_seconds_sum{op=\"x\"} 102.15",
      "op_seconds_count{op=\"x\"} 4",
      "# HELP zeta Last family.",
      "# TYPE zeta gauge",
      "zeta -2",
  };
  EXPECT_EQ(Lines(registry.RenderPrometheus()), expected);
  EXPECT_EQ(histogram.count(), 4);
  EXPECT_DOUBLE_EQ(histogram.sum(), 102.15);
  EXPECT_EQ(histogram.bucket_counts(), (std::vector<int64_t>{2, 0, 1, 1}));
}

TEST(MetricsTest, HelpAndTypeAppearOncePerFamily) {
  MetricsRegistry registry;
  for (int i = 0; i < 5; ++i) {
    registry.GetCounter("x_total", "X.", {{"i", std::to_string(i)}}).Increment();
  }
  const std::string text = registry.RenderPrometheus();
  size_t help_count = 0;
  size_t type_count = 0;
  for (const std::string& line : Lines(text)) {
    if (line.rfind("# HELP x_total", 0) == 0) ++help_count;
    if (line.rfind("# TYPE x_total", 0) == 0) ++type_count;
  }
  EXPECT_EQ(help_count, 1u);
  EXPECT_EQ(type_count, 1u);
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  MetricsRegistry registry;
  registry.GetCounter("e_total", "Line one\nback\\slash", {{"v", "a\"b\\c\nd"}}).Increment();
  const std::vector<std::string> lines = Lines(registry.RenderPrometheus());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "# HELP e_total Line one\\nback\\\\slash");
  EXPECT_EQ(lines[2], "e_total{v=\"a\\\"b\\\\c\\nd\"} 1");
}

TEST(MetricsTest, CallbackGaugesAreReadAtScrapeAndRemovable) {
  MetricsRegistry registry;
  std::atomic<int64_t> depth{3};
  const int64_t id = registry.AddCallbackGauge("queue_depth", "Queue depth.", {{"queue", "q1"}},
                                               [&depth] { return depth.load(); });
  registry.GetGauge("queue_depth", "Queue depth.", {{"queue", "q0"}}).Set(1);
  EXPECT_THAT(registry.RenderPrometheus(), HasSubstr("queue_depth{queue=\"q1\"} 3\n"));
  depth = 9;
  const std::vector<std::string> expected = {
      "# HELP queue_depth Queue depth.",
      "# TYPE queue_depth gauge",
      "queue_depth{queue=\"q0\"} 1",
      "queue_depth{queue=\"q1\"} 9",
  };
  EXPECT_EQ(Lines(registry.RenderPrometheus()), expected);
  registry.RemoveCallbackGauge(id);
  registry.RemoveCallbackGauge(id);     // twice is harmless
  registry.RemoveCallbackGauge(12345);  // unknown is harmless
  EXPECT_THAT(registry.RenderPrometheus(), Not(HasSubstr("q1")));
}

TEST(MetricsTest, ConcurrentIncrementsAndRegistration) {
  MetricsRegistry registry;
  constexpr int kThreads = 4;
  constexpr int kIterations = 10'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry, t] {
      for (int i = 0; i < kIterations; ++i) {
        registry.GetCounter("hits_total", "Hits.").Increment();
        registry.GetGauge("per_thread", "P.", {{"t", std::to_string(t)}}).Add(1);
        registry.GetHistogram("h", "H.", {}, SizeBuckets()).Observe(i % 8);
        if (i % 1000 == 0) (void)registry.RenderPrometheus();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(registry.GetCounter("hits_total", "Hits.").value(), kThreads * kIterations);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(registry.GetGauge("per_thread", "P.", {{"t", std::to_string(t)}}).value(),
              kIterations);
  }
  EXPECT_EQ(registry.GetHistogram("h", "H.").count(), kThreads * kIterations);
  EXPECT_THAT(registry.RenderPrometheus(),
              HasSubstr("h_count " + std::to_string(kThreads * kIterations)));
}

TEST(MetricsTest, DefaultBuckets) {
  EXPECT_EQ(LatencyBucketsSeconds().front(), 0.0005);
  EXPECT_EQ(LatencyBucketsSeconds().back(), 10);
  EXPECT_EQ(SizeBuckets().front(), 1);
  EXPECT_EQ(SizeBuckets().back(), 4096);
  Histogram histogram({5, 1, 1, 2});  // unsorted and duplicated bounds are normalised
  EXPECT_EQ(histogram.upper_bounds(), (std::vector<double>{1, 2, 5}));
}

TEST(MetricsDeathTest, TypeConflictAndBadNamesAreProgrammerErrors) {
  MetricsRegistry registry;
  registry.GetCounter("dup", "D.");
  EXPECT_DEATH(registry.GetGauge("dup", "D."), "registered as counter and gauge");
  EXPECT_DEATH(registry.GetCounter("bad-name", "B."), "invalid metric name");
  EXPECT_DEATH(registry.GetCounter("ok", "B.", {{"1x", "v"}}), "invalid label name");
  EXPECT_DEATH(registry.GetHistogram("hh", "B.", {{"le", "v"}}), "reserved");
}

}  // namespace
}  // namespace emporium::obs
