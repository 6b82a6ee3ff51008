#include "tools/loadgen/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "fmt/format.h"

namespace emporium::loadgen {
namespace {

using Json = nlohmann::json;

constexpr double kPercentiles[] = {50, 90, 99, 99.9};
constexpr int kChartWidth = 900;
constexpr int kChartHeight = 420;
constexpr int kMarginLeft = 70;
constexpr int kMarginRight = 80;
constexpr int kMarginTop = 50;
constexpr int kMarginBottom = 50;
constexpr int kGridLines = 5;

std::string PercentileName(double percentile) {
  return percentile == std::floor(percentile) ? fmt::format("p{}", static_cast<int>(percentile))
                                              : fmt::format("p{}", percentile);
}

std::string EscapeXml(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// A "nice" axis maximum at or above `value` (1, 2 or 5 times a power of ten).
double NiceMax(double value) {
  if (value <= 0) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(value)));
  for (double step : {1.0, 2.0, 5.0, 10.0}) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

std::string Polyline(const std::vector<double>& values, double y_max, const std::string& color,
                     const std::string& dash) {
  if (values.empty()) return "";
  const double plot_width = kChartWidth - kMarginLeft - kMarginRight;
  const double plot_height = kChartHeight - kMarginTop - kMarginBottom;
  std::string points;
  for (size_t i = 0; i < values.size(); ++i) {
    // Each point sits at the end of its second.
    const double x =
        kMarginLeft + plot_width * static_cast<double>(i + 1) / static_cast<double>(values.size());
    const double y = kMarginTop + plot_height * (1.0 - std::min(values[i], y_max) / y_max);
    points += fmt::format("{:.1f},{:.1f} ", x, y);
  }
  return fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{} points=\"{}\"/>\n",
                     color, dash.empty() ? "" : fmt::format(" stroke-dasharray=\"{}\"", dash),
                     points);
}

}  // namespace

std::string FormatMicros(int64_t micros) {
  if (micros < 1000) return fmt::format("{} us", micros);
  if (micros < 1'000'000) return fmt::format("{:.2f} ms", static_cast<double>(micros) / 1e3);
  return fmt::format("{:.2f} s", static_cast<double>(micros) / 1e6);
}

std::string ProgressLine(const SecondSample& sample) {
  return fmt::format("[{:>4}] {:>8} req/s  errors {:<6} p50 {:>9}  p99 {:>9}",
                     sample.warmup ? "warm" : fmt::format("{}s", sample.second), sample.count,
                     sample.errors, FormatMicros(sample.p50_us), FormatMicros(sample.p99_us));
}

std::string TextReport(const RunDescription& run, const EngineResult& result) {
  std::string out;
  out += fmt::format("scenario {} against {}\n", run.scenario, run.url);
  out += fmt::format("{} connections on {} threads, {}, warm-up {:.1f}s, measured {:.1f}s\n",
                     run.connections, run.threads,
                     run.rate_per_second > 0
                         ? fmt::format("open loop at {:.0f} req/s", run.rate_per_second)
                         : std::string("closed loop"),
                     run.warmup_seconds, run.duration_seconds);
  out += fmt::format("requests {}  throughput {:.0f} req/s  ok {}  rejected {}  errors {}\n",
                     result.requests, result.throughput_per_second, result.ok, result.rejected,
                     result.errors);
  out += "latency";
  for (double percentile : kPercentiles) {
    out += fmt::format("  {} {}", PercentileName(percentile),
                       FormatMicros(result.latency_us.Percentile(percentile)));
  }
  out += fmt::format("  max {}  mean {}\n", FormatMicros(result.latency_us.max()),
                     FormatMicros(static_cast<int64_t>(result.latency_us.mean())));
  out += "status";
  for (const auto& [status, count] : result.by_status)
    out += fmt::format("  {}: {}", status, count);
  out += "\n";
  for (const auto& [what, count] : result.transport_errors) {
    out += fmt::format("transport error  {}: {}\n", what, count);
  }
  for (const std::string& line : run.scenario_lines) out += line + "\n";
  for (const std::string& line : run.audit_lines) out += line + "\n";
  return out;
}

Json JsonReport(const RunDescription& run, const EngineResult& result) {
  Json latency{{"count", result.latency_us.count()},
               {"min_us", result.latency_us.min()},
               {"mean_us", result.latency_us.mean()},
               {"max_us", result.latency_us.max()}};
  for (double percentile : kPercentiles) {
    latency[PercentileName(percentile) + "_us"] = result.latency_us.Percentile(percentile);
  }
  Json by_status = Json::object();
  for (const auto& [status, count] : result.by_status) by_status[std::to_string(status)] = count;
  Json transport = Json::object();
  for (const auto& [what, count] : result.transport_errors) transport[what] = count;
  Json timeline = Json::array();
  for (const SecondSample& sample : result.timeline) {
    timeline.push_back({{"second", sample.second},
                        {"count", sample.count},
                        {"errors", sample.errors},
                        {"p50_us", sample.p50_us},
                        {"p99_us", sample.p99_us}});
  }
  return Json{{"scenario", run.scenario},
              {"url", run.url},
              {"connections", run.connections},
              {"threads", run.threads},
              {"mode", run.rate_per_second > 0 ? "open" : "closed"},
              {"rate_per_second", run.rate_per_second > 0 ? Json(run.rate_per_second) : Json()},
              {"warmup_seconds", run.warmup_seconds},
              {"duration_seconds", run.duration_seconds},
              {"requests", result.requests},
              {"ok", result.ok},
              {"rejected", result.rejected},
              {"errors", result.errors},
              {"throughput_per_second", result.throughput_per_second},
              {"latency", latency},
              {"by_status", by_status},
              {"transport_errors", transport},
              {"connects", result.connects},
              {"timeline", timeline},
              {"scenario_summary", run.scenario_json},
              {"audit", run.audit_json}};
}

std::string SvgChart(const RunDescription& run, const EngineResult& result) {
  std::vector<double> p50_ms;
  std::vector<double> p99_ms;
  std::vector<double> throughput;
  for (const SecondSample& sample : result.timeline) {
    p50_ms.push_back(static_cast<double>(sample.p50_us) / 1e3);
    p99_ms.push_back(static_cast<double>(sample.p99_us) / 1e3);
    throughput.push_back(static_cast<double>(sample.count));
  }
  const double latency_max =
      NiceMax(p99_ms.empty() ? 1.0 : *std::max_element(p99_ms.begin(), p99_ms.end()));
  const double throughput_max =
      NiceMax(throughput.empty() ? 1.0 : *std::max_element(throughput.begin(), throughput.end()));
  const int plot_width = kChartWidth - kMarginLeft - kMarginRight;
  const int plot_height = kChartHeight - kMarginTop - kMarginBottom;

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      kChartWidth, kChartHeight);
  svg += fmt::format(
      "<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n", kMarginLeft,
      EscapeXml(fmt::format(
          "{} — {} connections, {} — {:.0f} req/s, p99 {}", run.scenario, run.connections,
          run.rate_per_second > 0 ? fmt::format("open loop {:.0f}/s", run.rate_per_second)
                                  : std::string("closed loop"),
          result.throughput_per_second, FormatMicros(result.latency_us.Percentile(99)))));
  for (int i = 0; i <= kGridLines; ++i) {
    const double fraction = static_cast<double>(i) / kGridLines;
    const double y = kMarginTop + plot_height * (1.0 - fraction);
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>\n"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n"
        "<text x=\"{6}\" y=\"{4:.1f}\" fill=\"#2a7\">{7:.0f}</text>\n",
        kMarginLeft, kMarginLeft + plot_width, y, kMarginLeft - 6, y + 4, latency_max * fraction,
        kMarginLeft + plot_width + 6, throughput_max * fraction);
  }
  const size_t seconds = result.timeline.size();
  const size_t label_every = std::max<size_t>(1, seconds / 10);
  for (size_t i = 0; i < seconds; i += label_every) {
    const double x = kMarginLeft + static_cast<double>(plot_width) * static_cast<double>(i + 1) /
                                       static_cast<double>(seconds);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}s</text>\n", x,
                       kMarginTop + plot_height + 18, i + 1);
  }
  svg += fmt::format(
      "<text x=\"14\" y=\"{0}\" transform=\"rotate(-90 14 {0})\" text-anchor=\"middle\">latency "
      "(ms)</text>\n",
      kMarginTop + plot_height / 2);
  svg += fmt::format(
      "<text x=\"{0}\" y=\"{1}\" transform=\"rotate(90 {0} {1})\" text-anchor=\"middle\" "
      "fill=\"#2a7\">requests / s</text>\n",
      kChartWidth - 14, kMarginTop + plot_height / 2);
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n",
      kMarginLeft, kMarginTop, plot_width, plot_height);
  svg += Polyline(throughput, throughput_max, "#2a7", "4 3");
  svg += Polyline(p50_ms, latency_max, "#36c", "");
  svg += Polyline(p99_ms, latency_max, "#d33", "");
  const int legend_y = kChartHeight - 12;
  svg += fmt::format(
      "<text x=\"{0}\" y=\"{1}\" fill=\"#36c\">— p50</text>"
      "<text x=\"{2}\" y=\"{1}\" fill=\"#d33\">— p99</text>"
      "<text x=\"{3}\" y=\"{1}\" fill=\"#2a7\">- - throughput</text>\n",
      kMarginLeft, legend_y, kMarginLeft + 70, kMarginLeft + 140);
  svg += "</svg>\n";
  return svg;
}

absl::Status WriteReportFiles(const std::string& directory, const RunDescription& run,
                              const EngineResult& result) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return absl::UnavailableError(fmt::format("cannot create {}: {}", directory, error.message()));
  }
  const std::pair<std::string, std::string> files[] = {
      {"report.json", JsonReport(run, result).dump(2) + "\n"},
      {"latency.svg", SvgChart(run, result)},
      {"report.txt", TextReport(run, result)}};
  for (const auto& [name, content] : files) {
    const std::string path = fmt::format("{}/{}", directory, name);
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file << content;
    file.close();
    if (!file) return absl::UnavailableError(fmt::format("cannot write {}", path));
  }
  return absl::OkStatus();
}

}  // namespace emporium::loadgen
