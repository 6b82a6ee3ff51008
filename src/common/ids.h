// Identifiers: time-ordered UUIDv7 text ids behind an IdGenerator port, and strong id types.
//
// UUIDv7 (RFC 9562) puts the millisecond timestamp first, so ids sort by creation time and
// index well; its 12-bit rand_a field counts within a millisecond (so ids from one generator are
// strictly increasing), and the last 62 bits come from a cryptographic source, so ids cannot be
// guessed.
#pragma once

#include <compare>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace emporium {

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // A new id, e.g. "0192f3a1-7c2e-7b3d-9f1a-2c3d4e5f6a7b". Thread-safe.
  virtual std::string Next() = 0;
};

// UUIDv7 from the given clock and the operating system's CSPRNG (getrandom).
class UuidV7Generator final : public IdGenerator {
 public:
  explicit UuidV7Generator(const Clock& clock) : clock_(clock) {}
  std::string Next() override;

 private:
  const Clock& clock_;
  std::mutex mutex_;
  int64_t last_ms_ = 0;
  uint16_t sequence_ = 0;  // the 12-bit rand_a field used as a counter within one millisecond
};

// "p_000001", "p_000002", ...: readable, deterministic ids for tests and simulations.
class SequentialIdGenerator final : public IdGenerator {
 public:
  explicit SequentialIdGenerator(std::string prefix = "id_") : prefix_(std::move(prefix)) {}
  std::string Next() override;

 private:
  std::string prefix_;
  std::mutex mutex_;
  uint64_t next_ = 1;
};

// True when `text` is a canonical lower-case UUID (any version).
bool IsUuid(std::string_view text);

// A strongly typed id: Id<struct OrderTag> and Id<struct CartTag> do not mix.
template <typename Tag>
class Id {
 public:
  Id() = default;
  explicit Id(std::string value) : value_(std::move(value)) {}
  const std::string& value() const { return value_; }
  bool empty() const { return value_.empty(); }
  friend auto operator<=>(const Id&, const Id&) = default;
  template <typename H>
  friend H AbslHashValue(H hash, const Id& id) {
    return H::combine(std::move(hash), id.value_);
  }

 private:
  std::string value_;
};

}  // namespace emporium
