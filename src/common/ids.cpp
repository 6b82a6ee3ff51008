#include "common/ids.h"

#include <sys/random.h>

#include <array>
#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace emporium {
namespace {

void FillRandom(uint8_t* data, size_t size) {
  size_t filled = 0;
  while (filled < size) {
    ssize_t got = getrandom(data + filled, size - filled, 0);
    if (got > 0) {
      filled += static_cast<size_t>(got);
    } else if (got < 0 && errno != EINTR && errno != EAGAIN) {
      // No CSPRNG (e.g. a seccomp filter refusing the call: ENOSYS/EPERM): ids that could be
      // guessed are worse than stopping, and looping here would hang every caller.
      std::fprintf(stderr, "emporium: getrandom failed: %s\n", std::strerror(errno));
      std::abort();
    }
  }
}

// Random bytes from the OS, fetched kRandomPoolBytes at a time per thread: one getrandom call
// per id showed up as ~2 % of a busy writer's CPU. The bytes are the same CSPRNG output, used
// once each. (A process that forks without exec would share a pool with its child; nothing
// here does.)
constexpr size_t kRandomPoolBytes = 512;

void TakeRandom(uint8_t* data, size_t size) {
  thread_local std::array<uint8_t, kRandomPoolBytes> pool;
  thread_local size_t used = kRandomPoolBytes;
  assert(size <= kRandomPoolBytes);
  if (kRandomPoolBytes - used < size) {
    FillRandom(pool.data(), pool.size());
    used = 0;
  }
  std::memcpy(data, pool.data() + used, size);
  // Spent bytes are wiped so a later memory dump cannot reconstruct earlier ids' random parts.
  std::memset(pool.data() + used, 0, size);
  used += size;
}

}  // namespace

std::string UuidV7Generator::Next() {
  std::array<uint8_t, 16> bytes{};
  // Bytes 0-7 are the time, version and counter (set below); only 8-15 carry randomness.
  TakeRandom(bytes.data() + 8, 8);
  int64_t now_ms = clock_.NowMs();
  uint16_t sequence = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (now_ms <= last_ms_) {
      // Same millisecond (or the clock stepped back): keep ordering by counting within
      // the last millisecond we used; when the counter wraps, borrow the next millisecond.
      now_ms = last_ms_;
      if (++sequence_ > 0x0FFF) {
        sequence_ = 0;
        now_ms = ++last_ms_;
      }
    } else {
      last_ms_ = now_ms;
      sequence_ = 0;
    }
    sequence = sequence_;
  }
  const auto ms = static_cast<uint64_t>(now_ms);
  for (int i = 0; i < 6; ++i) bytes[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  bytes[6] = static_cast<uint8_t>(0x70 | ((sequence >> 8) & 0x0F));
  bytes[7] = static_cast<uint8_t>(sequence & 0xFF);
  bytes[8] = static_cast<uint8_t>(0x80 | (bytes[8] & 0x3F));
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(36);
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text.push_back('-');
    text.push_back(kHex[bytes[i] >> 4]);
    text.push_back(kHex[bytes[i] & 0x0F]);
  }
  return text;
}

std::string SequentialIdGenerator::Next() {
  uint64_t value = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    value = next_++;
  }
  char digits[32];
  std::snprintf(digits, sizeof digits, "%06llu", static_cast<unsigned long long>(value));
  return prefix_ + digits;
}

bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace emporium
