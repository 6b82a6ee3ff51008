// Structured logging: one JSON object per line, on spdlog.
//
//   {"ts":"2026-01-01T00:00:00.000Z","level":"info","context":"inventory","msg":"reserved",
//    "request_id":"...","trace_id":"...","sku":"A-1","quantity":3}
//
// Every message and every string field value passes through Redact() before it is written, so
// card numbers and secrets never reach a log file; a field whose key is sensitive (password,
// token, cvc, ...) is written as "[REDACTED]" whatever its value. Extra fields sit at the top
// level; one whose key collides with a reserved key (ts, level, context, msg, request_id,
// trace_id) is written as "field_<key>".
//
// Thread-safety: Logger is cheap to copy; copies share the sink and the level, and all of its
// methods may be called from any thread. InitLogging() is meant for the composition root,
// before loggers are made.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"

namespace spdlog {
class logger;
namespace sinks {
class sink;
}  // namespace sinks
}  // namespace spdlog

namespace emporium::obs {

enum class LogLevel { kDebug, kInfo, kWarn, kError, kOff };

// "debug", "info", "warn" (or "warning"), "error", "off"; case-insensitive.
std::optional<LogLevel> ParseLogLevel(std::string_view text);
std::string_view LogLevelName(LogLevel level);

// A field value: string, integer, floating point or boolean.
class LogValue {
 public:
  LogValue(std::string_view value) : value_(std::string(value)) {}  // NOLINT: implicit on purpose
  LogValue(const char* value) : value_(std::string(value)) {}       // NOLINT
  LogValue(const std::string& value) : value_(value) {}             // NOLINT
  LogValue(std::string&& value) : value_(std::move(value)) {}       // NOLINT
  LogValue(bool value) : value_(value) {}                           // NOLINT
  LogValue(double value) : value_(value) {}                         // NOLINT
  template <typename T>
  requires(std::is_integral_v<T> && !std::is_same_v<T, bool>) LogValue(T value)
      : value_(static_cast<int64_t>(value)) {}  // NOLINT

  const std::variant<std::string, int64_t, double, bool>& value() const { return value_; }

 private:
  std::variant<std::string, int64_t, double, bool> value_;
};

struct LogField {
  std::string key;
  LogValue value;
};
// Written as `{{"sku", sku}, {"quantity", 3}}` at the call site.
using LogFields = std::vector<LogField>;

class Logger {
 public:
  // `context` names the module ("inventory", "http"). A null `sink` means the process default
  // (stderr unless InitLogging chose a file); a null `clock` means the system clock. The level
  // starts at the process default (kInfo unless InitLogging chose another).
  explicit Logger(std::string context, std::shared_ptr<spdlog::sinks::sink> sink = nullptr,
                  const Clock* clock = nullptr);
  ~Logger();
  Logger(const Logger&);
  Logger& operator=(const Logger&);
  Logger(Logger&&) noexcept;
  Logger& operator=(Logger&&) noexcept;

  // A logger that stamps every line with these ids (empty = omitted); shares sink and level.
  Logger WithIds(std::string request_id, std::string trace_id) const;

  void Debug(std::string_view msg, const LogFields& fields = {}) const;
  void Info(std::string_view msg, const LogFields& fields = {}) const;
  void Warn(std::string_view msg, const LogFields& fields = {}) const;
  void Error(std::string_view msg, const LogFields& fields = {}) const;
  void Log(LogLevel level, std::string_view msg, const LogFields& fields = {}) const;

  // Applies to this logger and every copy / WithIds() child sharing its sink.
  void SetLevel(LogLevel level);
  LogLevel level() const;
  bool Enabled(LogLevel level) const;
  void Flush() const;

  const std::string& context() const { return context_; }

  // The JSON line Log() would write (without the newline); exposed for tests and tools.
  std::string FormatLine(LogLevel level, std::string_view msg, const LogFields& fields) const;

 private:
  std::string context_;
  std::string request_id_;
  std::string trace_id_;
  std::shared_ptr<spdlog::logger> logger_;  // shared: copies write to one sink with one level
  const Clock* clock_;
};

struct LogOptions {
  LogLevel level = LogLevel::kInfo;
  std::string path;  // empty: stderr; otherwise appended to this file (parent dirs created)
};

// Sets the process default sink and level for Loggers made afterwards. Fails (and changes
// nothing) when the file cannot be opened.
absl::Status InitLogging(const LogOptions& options);
std::shared_ptr<spdlog::sinks::sink> DefaultLogSink();
LogLevel DefaultLogLevel();

// An in-memory sink for tests: collects the lines written to it.
class MemoryLogSink {
 public:
  MemoryLogSink();
  ~MemoryLogSink();
  std::shared_ptr<spdlog::sinks::sink> sink() const;
  std::vector<std::string> lines() const;  // without trailing newlines
  std::string text() const;                // all lines, newline-terminated

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

// Masks secrets in free text:
//  - card numbers: 13-19 digits, contiguous or in groups of 3+ digits separated by one space or
//    dash, that pass the Luhn check: every digit but the last four becomes '*';
//  - values of sensitive keys (password, passwd, secret, token, authorization, api_key, apikey,
//    card_number, number, cvc, cvv, and keys ending in _password/_secret/_token/_api_key), in
//    `key=value`, `key: value`, `"key":"value"` and `card[number]=value` forms, become
//    "[REDACTED]". A Bearer/Basic credential is redacted with its scheme word.
// Digit runs that fail the Luhn check (order numbers, timestamps) are kept.
std::string Redact(std::string_view text);

// True when a field or parameter named `key` holds a secret.
bool IsSensitiveKey(std::string_view key);

}  // namespace emporium::obs
