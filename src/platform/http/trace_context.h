// W3C Trace Context (https://www.w3.org/TR/trace-context/): parsing and formatting of the
// `traceparent` header, used by the HTTP server and carried inside every bus message.
//
// Pure functions and a value type; thread-safe (random ids come from a per-thread generator
// seeded from the OS).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace emporium::http {

struct TraceContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};  // "parent-id" in the spec: the caller's span
  uint8_t flags = 0x01;              // bit 0: sampled

  std::string TraceIdHex() const;  // 32 lower-case hex digits
  std::string SpanIdHex() const;   // 16 lower-case hex digits
  bool sampled() const { return (flags & 0x01) != 0; }
  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

// Parses "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>". Rejects upper-case hex,
// all-zero ids, version "ff", and anything longer than 55 characters for version 00. A later
// version is accepted when its first 55 characters parse and the next one is '-'.
std::optional<TraceContext> ParseTraceparent(std::string_view header);

// Always version 00: "00-<trace id>-<span id>-<flags>".
std::string FormatTraceparent(const TraceContext& context);

// A new trace: random non-zero trace id and span id, sampled.
TraceContext NewTraceContext();

// The same trace with a new random span id (for an outgoing call made on behalf of `parent`).
TraceContext ChildOf(const TraceContext& parent);

// 32 random lower-case hex characters; used for generated request ids.
std::string RandomHex128();

}  // namespace emporium::http
