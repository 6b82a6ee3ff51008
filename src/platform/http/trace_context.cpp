#include "platform/http/trace_context.h"

#include <algorithm>
#include <random>

namespace emporium::http {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
constexpr size_t kVersion00Length = 55;

std::mt19937_64& Generator() {
  // Trace ids must be unpredictable enough not to collide, not secret: a per-thread
  // Mersenne Twister seeded from the OS is enough and never takes a lock.
  thread_local std::mt19937_64 generator = [] {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    return std::mt19937_64(seed);
  }();
  return generator;
}

template <size_t N>
void FillRandomNonZero(std::array<uint8_t, N>& bytes) {
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t word = Generator()();
      for (size_t j = 0; j < 8 && i + j < N; ++j)
        bytes[i + j] = static_cast<uint8_t>(word >> (8 * j));
    }
  } while (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; }));
}

// Writes 2*N lower-case hex digits at `out`.
template <size_t N>
char* WriteHex(const std::array<uint8_t, N>& bytes, char* out) {
  for (uint8_t byte : bytes) {
    *out++ = kHexDigits[byte >> 4];
    *out++ = kHexDigits[byte & 0x0F];
  }
  return out;
}

template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& bytes) {
  std::string out(N * 2, '\0');
  WriteHex(bytes, out.data());
  return out;
}

int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Parses exactly 2*N lower-case hex characters into `out`.
template <size_t N>
bool ParseHex(std::string_view text, std::array<uint8_t, N>& out) {
  if (text.size() != N * 2) return false;
  for (size_t i = 0; i < N; ++i) {
    int high = LowerHexValue(text[2 * i]);
    int low = LowerHexValue(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<uint8_t>(high * 16 + low);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

std::string TraceContext::TraceIdHex() const { return ToHex(trace_id); }
std::string TraceContext::SpanIdHex() const { return ToHex(span_id); }

std::optional<TraceContext> ParseTraceparent(std::string_view header) {
  if (header.size() < kVersion00Length) return std::nullopt;
  std::array<uint8_t, 1> version{};
  if (!ParseHex(header.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
  if (version[0] == 0x00 && header.size() != kVersion00Length) return std::nullopt;
  if (header.size() > kVersion00Length && header[kVersion00Length] != '-') return std::nullopt;
  if (header[2] != '-' || header[35] != '-' || header[52] != '-') return std::nullopt;
  TraceContext context;
  std::array<uint8_t, 1> flags{};
  if (!ParseHex(header.substr(3, 32), context.trace_id) ||
      !ParseHex(header.substr(36, 16), context.span_id) || !ParseHex(header.substr(53, 2), flags)) {
    return std::nullopt;
  }
  if (AllZero(context.trace_id) || AllZero(context.span_id)) return std::nullopt;
  context.flags = flags[0];
  return context;
}

std::string FormatTraceparent(const TraceContext& context) {
  // Filled in place: one allocation, no temporaries.
  std::string out(kVersion00Length, '-');
  out[0] = '0';
  out[1] = '0';
  WriteHex(context.trace_id, out.data() + 3);
  WriteHex(context.span_id, out.data() + 36);
  WriteHex(std::array<uint8_t, 1>{context.flags}, out.data() + 53);
  return out;
}

TraceContext NewTraceContext() {
  TraceContext context;
  FillRandomNonZero(context.trace_id);
  FillRandomNonZero(context.span_id);
  context.flags = 0x01;
  return context;
}

TraceContext ChildOf(const TraceContext& parent) {
  TraceContext child = parent;
  FillRandomNonZero(child.span_id);
  return child;
}

std::string RandomHex128() {
  std::array<uint8_t, 16> bytes{};
  FillRandomNonZero(bytes);
  return ToHex(bytes);
}

}  // namespace emporium::http
