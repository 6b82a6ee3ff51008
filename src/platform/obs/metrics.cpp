#include "platform/obs/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

namespace emporium::obs {
namespace {

enum class MetricType { kCounter, kGauge, kHistogram };

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Registering a series with a malformed name is a programmer error, caught in the first test run.
[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "emporium::obs::MetricsRegistry: %s\n", message.c_str());
  std::abort();
}

bool IsValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

// Label sets are canonicalised by sorting on the label name, so {a,b} and {b,a} are one series
// and the exposition is stable.
Labels Canonical(std::string_view metric_name, MetricType type, const Labels& labels) {
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    const std::string& label_name = sorted[i].first;
    if (!IsValidName(label_name, /*allow_colon=*/false) || label_name.rfind("__", 0) == 0) {
      Die(fmt::format("invalid label name '{}' on metric '{}'", label_name, metric_name));
    }
    if (type == MetricType::kHistogram && label_name == "le") {
      Die(fmt::format("label 'le' is reserved on histogram '{}'", metric_name));
    }
    if (i > 0 && sorted[i - 1].first == label_name) {
      Die(fmt::format("duplicate label '{}' on metric '{}'", label_name, metric_name));
    }
  }
  return sorted;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

// Renders `{a="1",b="2"}` (or "" with no labels); `extra` is appended last (the histogram `le`).
std::string RenderLabels(const Labels& labels,
                         const std::pair<std::string, std::string>* extra = nullptr) {
  if (labels.empty() && extra == nullptr) return "";
  std::string out = "{";
  bool first = true;
  auto append = [&](const std::pair<std::string, std::string>& label) {
    if (!first) out += ',';
    first = false;
    out += label.first;
    out += "=\"";
    out += EscapeLabelValue(label.second);
    out += '"';
  };
  for (const auto& label : labels) append(label);
  if (extra != nullptr) append(*extra);
  out += '}';
  return out;
}

struct CallbackSeries {
  Labels labels;
  std::function<int64_t()> read;
};

struct Family {
  std::string help;
  MetricType type = MetricType::kCounter;
  std::map<Labels, std::unique_ptr<Counter>> counters;
  std::map<Labels, std::unique_ptr<Gauge>> gauges;
  std::map<Labels, std::unique_ptr<Histogram>> histograms;
  std::map<int64_t, CallbackSeries> callbacks;  // by id, gauges only
};

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : upper_bounds_(std::move(upper_bounds)) {
  // +Inf is implicit; NaN bounds are meaningless.
  upper_bounds_.erase(std::remove_if(upper_bounds_.begin(), upper_bounds_.end(),
                                     [](double b) { return std::isnan(b) || std::isinf(b); }),
                      upper_bounds_.end());
  std::sort(upper_bounds_.begin(), upper_bounds_.end());
  upper_bounds_.erase(std::unique(upper_bounds_.begin(), upper_bounds_.end()), upper_bounds_.end());
  buckets_ = std::make_unique<std::atomic<int64_t>[]>(upper_bounds_.size() + 1);
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  // A value equal to a bound belongs to that bound's bucket (le = "less or equal"); NaN lands
  // in +Inf only.
  size_t index = upper_bounds_.size();
  if (!std::isnan(value)) {
    index =
        static_cast<size_t>(std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) -
                            upper_bounds_.begin());
  }
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  if (std::isfinite(value)) {
    // Clamp so an absurd value cannot overflow the fixed-point sum.
    constexpr double kMicrosMax = 9.0e15;
    const double micros = std::clamp(value * 1e6, -kMicrosMax, kMicrosMax);
    sum_micros_.fetch_add(std::llround(micros), std::memory_order_relaxed);
  }
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<int64_t> Histogram::bucket_counts() const {
  std::vector<int64_t> counts(upper_bounds_.size() + 1);
  for (size_t i = 0; i < counts.size(); ++i) {
    counts[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return counts;
}

double Histogram::sum() const {
  return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

std::vector<double> LatencyBucketsSeconds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> SizeBuckets() {
  std::vector<double> bounds;
  for (double b = 1; b <= 4096; b *= 2) bounds.push_back(b);
  return bounds;
}

struct MetricsRegistry::Families {
  mutable std::mutex mutex;
  std::map<std::string, Family, std::less<>> by_name;  // sorted: stable exposition
  std::map<int64_t, std::string> callback_family;      // id -> family name
  int64_t callback_id_next = 1;

  // Finds or creates the family; dies when the name is reused with another type.
  Family& Get(std::string_view name, std::string_view help, MetricType type) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      if (!IsValidName(name, /*allow_colon=*/true)) {
        Die(fmt::format("invalid metric name '{}'", name));
      }
      Family family;
      family.help = std::string(help);
      family.type = type;
      it = by_name.emplace(std::string(name), std::move(family)).first;
    } else if (it->second.type != type) {
      Die(fmt::format("metric '{}' registered as {} and {}", name, TypeName(it->second.type),
                      TypeName(type)));
    }
    return it->second;
  }
};

MetricsRegistry::MetricsRegistry() : families_(std::make_unique<Families>()) {}
MetricsRegistry::~MetricsRegistry() = default;

Counter& MetricsRegistry::GetCounter(std::string_view name, std::string_view help,
                                     const Labels& labels) {
  Labels key = Canonical(name, MetricType::kCounter, labels);
  std::lock_guard lock(families_->mutex);
  Family& family = families_->Get(name, help, MetricType::kCounter);
  auto& slot = family.counters[std::move(key)];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& MetricsRegistry::GetGauge(std::string_view name, std::string_view help,
                                 const Labels& labels) {
  Labels key = Canonical(name, MetricType::kGauge, labels);
  std::lock_guard lock(families_->mutex);
  Family& family = families_->Get(name, help, MetricType::kGauge);
  auto& slot = family.gauges[std::move(key)];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& MetricsRegistry::GetHistogram(std::string_view name, std::string_view help,
                                         const Labels& labels, std::vector<double> upper_bounds) {
  Labels key = Canonical(name, MetricType::kHistogram, labels);
  std::lock_guard lock(families_->mutex);
  Family& family = families_->Get(name, help, MetricType::kHistogram);
  auto& slot = family.histograms[std::move(key)];
  // The first call fixes the bounds of a series; later bounds are ignored.
  if (!slot) slot = std::make_unique<Histogram>(std::move(upper_bounds));
  return *slot;
}

int64_t MetricsRegistry::AddCallbackGauge(std::string_view name, std::string_view help,
                                          const Labels& labels, std::function<int64_t()> read) {
  Labels key = Canonical(name, MetricType::kGauge, labels);
  std::lock_guard lock(families_->mutex);
  Family& family = families_->Get(name, help, MetricType::kGauge);
  const int64_t id = families_->callback_id_next++;
  family.callbacks.emplace(id, CallbackSeries{std::move(key), std::move(read)});
  families_->callback_family.emplace(id, std::string(name));
  return id;
}

void MetricsRegistry::RemoveCallbackGauge(int64_t id) {
  std::lock_guard lock(families_->mutex);
  auto it = families_->callback_family.find(id);
  if (it == families_->callback_family.end()) return;
  auto family = families_->by_name.find(it->second);
  if (family != families_->by_name.end()) family->second.callbacks.erase(id);
  families_->callback_family.erase(it);
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::string out;
  // Callbacks run under the lock so that RemoveCallbackGauge() guarantees the callback is no
  // longer running once it returns; a callback must therefore not call into the registry.
  std::lock_guard lock(families_->mutex);
  for (const auto& [name, family] : families_->by_name) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, EscapeHelp(family.help), name,
                       TypeName(family.type));
    switch (family.type) {
      case MetricType::kCounter:
        for (const auto& [labels, counter] : family.counters) {
          out += fmt::format("{}{} {}\n", name, RenderLabels(labels), counter->value());
        }
        break;
      case MetricType::kGauge: {
        // Plain and callback gauges of one family are merged and ordered by labels.
        std::multimap<Labels, int64_t> values;
        for (const auto& [labels, gauge] : family.gauges) values.emplace(labels, gauge->value());
        for (const auto& [id, series] : family.callbacks) {
          values.emplace(series.labels, series.read ? series.read() : 0);
        }
        for (const auto& [labels, value] : values) {
          out += fmt::format("{}{} {}\n", name, RenderLabels(labels), value);
        }
        break;
      }
      case MetricType::kHistogram:
        for (const auto& [labels, histogram] : family.histograms) {
          const std::vector<int64_t> counts = histogram->bucket_counts();
          const std::vector<double>& bounds = histogram->upper_bounds();
          int64_t cumulative = 0;
          for (size_t i = 0; i < counts.size(); ++i) {
            cumulative += counts[i];
            const std::pair<std::string, std::string> le{
                "le", i < bounds.size() ? FormatDouble(bounds[i]) : "+Inf"};
            out += fmt::format("{}_bucket{} {}\n", name, RenderLabels(labels, &le), cumulative);
          }
          // _count equals the +Inf bucket so a scrape is self-consistent even under
          // concurrent Observe() calls.
          out += fmt::format("{}_sum{} {}\n", name, RenderLabels(labels),
                             FormatDouble(histogram->sum()));
          out += fmt::format("{}_count{} {}\n", name, RenderLabels(labels), cumulative);
        }
        break;
    }
  }
  return out;
}

}  // namespace emporium::obs
