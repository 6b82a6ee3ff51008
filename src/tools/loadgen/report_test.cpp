#include "tools/loadgen/report.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emporium::loadgen {
namespace {

using ::testing::HasSubstr;

EngineResult SampleResult() {
  EngineResult result;
  for (int64_t v = 1; v <= 1000; ++v) result.latency_us.Record(v * 10);
  result.requests = 1000;
  result.ok = 990;
  result.errors = 10;
  result.by_status = {{200, 990}, {503, 10}};
  result.transport_errors = {{"read: timeout", 2}};
  result.timeline = {{1, false, 600, 4, 4000, 9000}, {2, false, 400, 6, 5000, 9900}};
  result.measured_seconds = 2;
  result.throughput_per_second = 500;
  return result;
}

RunDescription SampleRun() {
  RunDescription run;
  run.scenario = "get";
  run.url = "http://127.0.0.1:1";
  run.connections = 8;
  run.threads = 2;
  run.duration_seconds = 2;
  run.scenario_lines = {"extra <line> & more"};
  return run;
}

TEST(ReportTest, FormatsMicros) {
  EXPECT_EQ(FormatMicros(850), "850 us");
  EXPECT_EQ(FormatMicros(1234), "1.23 ms");
  EXPECT_EQ(FormatMicros(2'500'000), "2.50 s");
}

TEST(ReportTest, TextReportHasEverySection) {
  const std::string text = TextReport(SampleRun(), SampleResult());
  for (const char* part :
       {"closed loop", "throughput 500 req/s", "p50", "p90", "p99 ", "p99.9", "max 10.00 ms",
        "200: 990", "503: 10", "read: timeout: 2", "extra <line>"}) {
    EXPECT_THAT(text, HasSubstr(part));
  }
}

TEST(ReportTest, JsonReportCarriesPercentilesAndTimeline) {
  nlohmann::json json = JsonReport(SampleRun(), SampleResult());
  EXPECT_EQ(json["requests"], 1000);
  EXPECT_EQ(json["mode"], "closed");
  EXPECT_EQ(json["latency"]["max_us"], 10000);
  EXPECT_NEAR(json["latency"]["p50_us"].get<double>(), 5000, 50);
  EXPECT_TRUE(json["latency"].contains("p99.9_us"));
  EXPECT_EQ(json["by_status"]["503"], 10);
  EXPECT_EQ(json["timeline"].size(), 2u);
  EXPECT_EQ(json["timeline"][1]["p99_us"], 9900);
}

TEST(ReportTest, SvgChartIsSelfContainedAndEscaped) {
  RunDescription run = SampleRun();
  run.scenario = "a<b&c";
  const std::string svg = SvgChart(run, SampleResult());
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("</svg>"));
  EXPECT_THAT(svg, HasSubstr("a&lt;b&amp;c"));
  // Three series: throughput, p50, p99.
  size_t polylines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 3u);
}

TEST(ReportTest, EmptyResultStillRenders) {
  EngineResult empty;
  EXPECT_THAT(SvgChart(SampleRun(), empty), HasSubstr("</svg>"));
  EXPECT_THAT(TextReport(SampleRun(), empty), HasSubstr("requests 0"));
}

TEST(ReportTest, ProgressLineNamesWarmup) {
  EXPECT_THAT(ProgressLine({0, true, 10, 0, 100, 200}), HasSubstr("warm"));
  EXPECT_THAT(ProgressLine({3, false, 51234, 2, 840, 2100}), HasSubstr("51234 req/s"));
}

}  // namespace
}  // namespace emporium::loadgen
