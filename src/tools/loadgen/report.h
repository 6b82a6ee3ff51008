// Reports of a load run: the live progress line, the final text report, the JSON document and
// the latency-over-time SVG chart (hand-written SVG: p50 and p99 per second and throughput).
// Pure functions of the engine result (no I/O except WriteReportFiles).
//
// Thread-safety: stateless; safe from any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "tools/loadgen/engine.h"

namespace emporium::loadgen {

// What the run was, for the headers of the reports.
struct RunDescription {
  std::string scenario;
  std::string url;
  int connections = 0;
  int threads = 0;
  double rate_per_second = 0;  // 0 = closed loop
  double warmup_seconds = 0;
  double duration_seconds = 0;
  std::vector<std::string> scenario_lines;  // LoadScenario::SummaryLines
  nlohmann::json scenario_json = nlohmann::json::object();
  std::vector<std::string> audit_lines;  // AuditReportLines, or why the audit did not run
  nlohmann::json audit_json = nullptr;   // AuditReportJson; null when it did not run
};

// "[  3s] 51234 req/s  errors 0  p50 0.84 ms  p99 2.10 ms" (warm-up seconds say "warm-up").
std::string ProgressLine(const SecondSample& sample);

// Microseconds as "850 us", "1.23 ms" or "2.50 s".
std::string FormatMicros(int64_t micros);

std::string TextReport(const RunDescription& run, const EngineResult& result);
nlohmann::json JsonReport(const RunDescription& run, const EngineResult& result);
// A self-contained SVG: p50 and p99 latency (left axis, ms) and throughput (right axis) per
// measured second.
std::string SvgChart(const RunDescription& run, const EngineResult& result);

// Writes DIR/report.json, DIR/latency.svg and DIR/report.txt (creating DIR).
absl::Status WriteReportFiles(const std::string& directory, const RunDescription& run,
                              const EngineResult& result);

}  // namespace emporium::loadgen
