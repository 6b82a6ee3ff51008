#include "platform/obs/log.h"

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <deque>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/time/time.h"

namespace emporium::obs {
namespace {

constexpr std::string_view kRedacted = "[REDACTED]";
constexpr size_t kPanDigitsMin = 13;
constexpr size_t kPanDigitsMax = 19;
constexpr size_t kPanVisibleDigits = 4;
// A card number written in groups ("4242 4242 ...") has groups of at least this many digits;
// shorter groups ("1 2 3") are more likely counts than card numbers.
constexpr size_t kPanGroupDigitsMin = 3;
constexpr size_t kMemorySinkLinesMax = 100'000;

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

LogLevel FromSpdlog(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return LogLevel::kDebug;
    case spdlog::level::info:
      return LogLevel::kInfo;
    case spdlog::level::warn:
      return LogLevel::kWarn;
    case spdlog::level::err:
    case spdlog::level::critical:
      return LogLevel::kError;
    case spdlog::level::off:
    case spdlog::level::n_levels:
      return LogLevel::kOff;
  }
  return LogLevel::kOff;
}

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_' || c == '-' ||
         c == '.';
}

bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(text[i]) != Lower(prefix[i])) return false;
  }
  return true;
}

std::string NormalizeKey(std::string_view key) {
  std::string normalized;
  normalized.reserve(key.size());
  for (const char c : key) normalized += (c == '-' || c == '.') ? '_' : Lower(c);
  return normalized;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Unquoted values end at whitespace or at punctuation that delimits fields.
bool EndsUnquotedValue(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0 || c == '&' || c == ',' || c == ';' ||
         c == '"' || c == '\'' || c == '}' || c == ']' || c == ')' || c == '\\';
}

// Replaces the values of sensitive keys with [REDACTED]; see Redact() for the forms.
std::string RedactKeyValues(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    if (!IsKeyChar(in[i]) || (i > 0 && IsKeyChar(in[i - 1]))) {
      out += in[i++];
      continue;
    }
    size_t key_end = i;
    while (key_end < n && IsKeyChar(in[key_end])) ++key_end;
    const std::string_view key = in.substr(i, key_end - i);
    // Walk over the closing quote of a JSON key (possibly escaped), a `]` of `card[number]`,
    // blanks, and the separator.
    size_t k = key_end;
    bool quoted_key = false;
    if (k + 1 < n && in[k] == '\\' && in[k + 1] == '"') {
      k += 2;
      quoted_key = true;
    } else if (k < n && in[k] == '"') {
      k += 1;
      quoted_key = true;
    }
    if (k < n && in[k] == ']') ++k;
    while (k < n && in[k] == ' ') ++k;
    if (k >= n || (in[k] != '=' && in[k] != ':') || !IsSensitiveKey(key)) {
      out.append(key);
      i = key_end;
      continue;
    }
    const char separator = in[k];
    ++k;
    while (k < n && in[k] == ' ') ++k;
    out.append(in.substr(i, k - i));
    if (k < n && in[k] == '"') {
      // A JSON string value: skip to the closing unescaped quote.
      size_t m = k + 1;
      while (m < n && in[m] != '"') m += (in[m] == '\\' && m + 1 < n) ? 2 : 1;
      out += '"';
      out += kRedacted;
      out += '"';
      i = std::min(m + 1, n);
      continue;
    }
    if (k + 1 < n && in[k] == '\\' && in[k + 1] == '"') {
      // JSON embedded in a JSON string: the value is delimited by \" ... \".
      size_t m = k + 2;
      while (m < n && !(in[m] == '\\' && m + 1 < n && in[m + 1] == '"')) ++m;
      out += "\\\"";
      out += kRedacted;
      out += "\\\"";
      i = std::min(m + 2, n);
      continue;
    }
    size_t m = k;
    const bool header_form = separator == ':' && !quoted_key;
    if (StartsWithIgnoreCase(in.substr(k), "bearer ") ||
        StartsWithIgnoreCase(in.substr(k), "basic ")) {
      m = in.find(' ', k) + 1;
    }
    if (header_form && EndsWith(NormalizeKey(key), "authorization")) {
      // "Authorization: <anything>" runs to the end of the line.
      while (m < n && in[m] != '\n' && in[m] != '\r') ++m;
    } else {
      while (m < n && !EndsUnquotedValue(in[m])) ++m;
    }
    if (m == k) {
      i = k;  // empty value: nothing to hide
      continue;
    }
    if (quoted_key) {
      out += '"';
      out += kRedacted;
      out += '"';
    } else {
      out += kRedacted;
    }
    i = m;
  }
  return out;
}

bool LuhnValid(const std::string& digits) {
  int sum = 0;
  bool double_it = false;
  for (auto it = digits.rbegin(); it != digits.rend(); ++it) {
    int d = *it - '0';
    if (double_it) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double_it = !double_it;
  }
  return sum % 10 == 0;
}

struct DigitGroup {
  size_t begin;
  size_t end;
  size_t size() const { return end - begin; }
};

// Masks every Luhn-valid card number in `text` in place.
void MaskCardNumbers(std::string& text) {
  const size_t n = text.size();
  size_t i = 0;
  std::vector<DigitGroup> groups;
  while (i < n) {
    if (!IsDigit(text[i])) {
      ++i;
      continue;
    }
    // One run: digit groups joined by single spaces or dashes.
    groups.clear();
    size_t pos = i;
    while (true) {
      const size_t begin = pos;
      while (pos < n && IsDigit(text[pos])) ++pos;
      groups.push_back({begin, pos});
      if (pos + 1 < n && (text[pos] == ' ' || text[pos] == '-') && IsDigit(text[pos + 1])) {
        ++pos;
        continue;
      }
      break;
    }
    const size_t run_end = pos;
    size_t g = 0;
    while (g < groups.size()) {
      std::string digits;
      std::optional<size_t> match_end;  // last group of the longest Luhn-valid window
      for (size_t e = g; e < groups.size(); ++e) {
        if (e > g &&
            (groups[g].size() < kPanGroupDigitsMin || groups[e].size() < kPanGroupDigitsMin)) {
          break;
        }
        if (digits.size() + groups[e].size() > kPanDigitsMax) break;
        digits.append(text, groups[e].begin, groups[e].size());
        if (digits.size() >= kPanDigitsMin && LuhnValid(digits)) match_end = e;
      }
      if (!match_end) {
        ++g;
        continue;
      }
      size_t digit_count = 0;
      for (size_t e = g; e <= *match_end; ++e) digit_count += groups[e].size();
      size_t to_mask = digit_count - kPanVisibleDigits;
      for (size_t p = groups[g].begin; p < groups[*match_end].end && to_mask > 0; ++p) {
        if (IsDigit(text[p])) {
          text[p] = '*';
          --to_mask;
        }
      }
      g = *match_end + 1;
    }
    i = run_end;
  }
}

// Process defaults chosen by InitLogging().
struct Defaults {
  std::mutex mutex;
  std::shared_ptr<spdlog::sinks::sink> sink;
  std::atomic<LogLevel> level{LogLevel::kInfo};
};

Defaults& GetDefaults() {
  static Defaults* defaults = new Defaults();  // never destroyed: loggers may log at exit
  return *defaults;
}

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view text) {
  std::string lower;
  for (const char c : text) lower += Lower(c);
  if (lower == "debug") return LogLevel::kDebug;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "error") return LogLevel::kError;
  if (lower == "off") return LogLevel::kOff;
  return std::nullopt;
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "off";
}

bool IsSensitiveKey(std::string_view key) {
  static constexpr std::array<std::string_view, 11> kExact = {
      "password", "passwd",      "secret", "token", "authorization", "api_key", "apikey",
      "number",   "card_number", "cvc",    "cvv"};
  static constexpr std::array<std::string_view, 8> kSuffixes = {
      "_password", "_passwd", "_secret", "_token", "_api_key", "_apikey", "_cvc", "_cvv"};
  const std::string normalized = NormalizeKey(key);
  for (const std::string_view exact : kExact) {
    if (normalized == exact) return true;
  }
  for (const std::string_view suffix : kSuffixes) {
    if (EndsWith(normalized, suffix)) return true;
  }
  return false;
}

std::string Redact(std::string_view text) {
  std::string out = RedactKeyValues(text);
  MaskCardNumbers(out);
  return out;
}

Logger::Logger(std::string context, std::shared_ptr<spdlog::sinks::sink> sink, const Clock* clock)
    : context_(std::move(context)), clock_(clock != nullptr ? clock : &SystemClock::Instance()) {
  if (sink == nullptr) sink = DefaultLogSink();
  logger_ = std::make_shared<spdlog::logger>(context_, std::move(sink));
  // The line is formatted here, so the sink writes the payload verbatim.
  logger_->set_pattern("%v");
  logger_->set_level(ToSpdlog(DefaultLogLevel()));
  logger_->flush_on(spdlog::level::warn);
}

Logger::~Logger() = default;
Logger::Logger(const Logger&) = default;
Logger& Logger::operator=(const Logger&) = default;
Logger::Logger(Logger&&) noexcept = default;
Logger& Logger::operator=(Logger&&) noexcept = default;

Logger Logger::WithIds(std::string request_id, std::string trace_id) const {
  Logger child = *this;
  child.request_id_ = std::move(request_id);
  child.trace_id_ = std::move(trace_id);
  return child;
}

void Logger::Debug(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kDebug, msg, fields);
}
void Logger::Info(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kInfo, msg, fields);
}
void Logger::Warn(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kWarn, msg, fields);
}
void Logger::Error(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kError, msg, fields);
}

void Logger::Log(LogLevel level, std::string_view msg, const LogFields& fields) const {
  if (level == LogLevel::kOff || !Enabled(level)) return;
  const std::string line = FormatLine(level, msg, fields);
  logger_->log(ToSpdlog(level), spdlog::string_view_t(line.data(), line.size()));
}

std::string Logger::FormatLine(LogLevel level, std::string_view msg,
                               const LogFields& fields) const {
  nlohmann::ordered_json line;
  line["ts"] = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", clock_->Now(), absl::UTCTimeZone());
  line["level"] = LogLevelName(level);
  line["context"] = context_;
  line["msg"] = Redact(msg);
  if (!request_id_.empty()) line["request_id"] = request_id_;
  if (!trace_id_.empty()) line["trace_id"] = trace_id_;
  for (const LogField& field : fields) {
    std::string key = field.key;
    if (key == "ts" || key == "level" || key == "context" || key == "msg" || key == "request_id" ||
        key == "trace_id") {
      key = "field_" + key;
    }
    if (IsSensitiveKey(field.key)) {
      line[key] = kRedacted;
      continue;
    }
    std::visit(
        [&](const auto& value) {
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            line[key] = Redact(value);
          } else {
            line[key] = value;
          }
        },
        field.value.value());
  }
  // Invalid UTF-8 (a hostile request path, a binary body) is replaced, never thrown.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void Logger::SetLevel(LogLevel level) { logger_->set_level(ToSpdlog(level)); }
LogLevel Logger::level() const { return FromSpdlog(logger_->level()); }
bool Logger::Enabled(LogLevel level) const { return logger_->should_log(ToSpdlog(level)); }
void Logger::Flush() const { logger_->flush(); }

absl::Status InitLogging(const LogOptions& options) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (options.path.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    try {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.path);
    } catch (const std::exception& e) {
      return absl::UnavailableError(std::string("cannot open log file ") + options.path + ": " +
                                    e.what());
    }
  }
  Defaults& defaults = GetDefaults();
  std::lock_guard lock(defaults.mutex);
  defaults.sink = std::move(sink);
  defaults.level.store(options.level);
  return absl::OkStatus();
}

std::shared_ptr<spdlog::sinks::sink> DefaultLogSink() {
  Defaults& defaults = GetDefaults();
  std::lock_guard lock(defaults.mutex);
  if (defaults.sink == nullptr) defaults.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return defaults.sink;
}

LogLevel DefaultLogLevel() { return GetDefaults().level.load(); }

class MemoryLogSink::Impl final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard lock(mutex_);
    return {lines_.begin(), lines_.end()};
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    // Bounded so a runaway test cannot eat the machine's memory.
    if (lines_.size() >= kMemorySinkLinesMax) lines_.pop_front();
    lines_.emplace_back(msg.payload.data(), msg.payload.size());
  }
  void flush_() override {}

 private:
  std::deque<std::string> lines_;
};

MemoryLogSink::MemoryLogSink() : impl_(std::make_shared<Impl>()) {}
MemoryLogSink::~MemoryLogSink() = default;
std::shared_ptr<spdlog::sinks::sink> MemoryLogSink::sink() const { return impl_; }
std::vector<std::string> MemoryLogSink::lines() const { return impl_->lines(); }
std::string MemoryLogSink::text() const {
  std::string text;
  for (const std::string& line : impl_->lines()) {
    text += line;
    text += '\n';
  }
  return text;
}

}  // namespace emporium::obs
