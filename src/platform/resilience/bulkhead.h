// Bulkhead: bounds the calls in flight to one upstream, with a bounded FIFO wait queue.
//
// At most `concurrent_count_max` permits are out at once; up to `queue_count_max` callers of
// Acquire() wait, first come first served. When both are full a caller is rejected at once with
// ResourceExhausted / error code "bulkhead_full", so a slow neighbour cannot absorb every
// thread. TryAcquire() never waits and never jumps the queue.
//
// Thread-safety: all methods may be called from any thread. A Permit releases its slot when
// destroyed; it must not outlive its Bulkhead.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "platform/resilience/deadline.h"

namespace emporium::resilience {

struct BulkheadOptions {
  int concurrent_count_max = 16;  // at least 1
  int queue_count_max = 32;       // 0: no waiting, Acquire behaves like TryAcquire
  // A waiter re-reads its Deadline's clock at least this often, so a ManualClock advanced by a
  // test (which cannot wake a condition variable) is noticed.
  absl::Duration wait_slice = absl::Milliseconds(10);
};

class Bulkhead {
 public:
  class Permit {
   public:
    Permit() = default;
    ~Permit() { Release(); }
    Permit(Permit&& other) noexcept : bulkhead_(other.bulkhead_) { other.bulkhead_ = nullptr; }
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;

    bool held() const { return bulkhead_ != nullptr; }
    // Gives the slot back early; idempotent.
    void Release();

   private:
    friend class Bulkhead;
    explicit Permit(Bulkhead* bulkhead) : bulkhead_(bulkhead) {}
    Bulkhead* bulkhead_ = nullptr;
  };

  Bulkhead(std::string name, BulkheadOptions options);
  ~Bulkhead();
  Bulkhead(const Bulkhead&) = delete;
  Bulkhead& operator=(const Bulkhead&) = delete;

  // A permit if a slot is free and nobody is queued; otherwise "bulkhead_full" at once.
  absl::StatusOr<Permit> TryAcquire();
  // Waits in the queue until a slot is free. Rejects at once with "bulkhead_full" when the
  // queue is full; returns DeadlineExceeded (code "bulkhead_timeout") when the deadline passes
  // first.
  absl::StatusOr<Permit> Acquire(const Deadline& deadline);

  int in_flight_count() const;
  int waiting_count() const;
  int64_t rejected_count() const;
  const std::string& name() const { return name_; }

 private:
  void ReleaseSlot();
  absl::Status FullError() const;

  const std::string name_;
  BulkheadOptions options_;

  mutable std::mutex mutex_;
  std::condition_variable slot_freed_;
  int in_flight_count_ = 0;
  std::deque<uint64_t> waiters_;  // tickets, in arrival order
  uint64_t ticket_next_ = 0;
  int64_t rejected_count_ = 0;
};

}  // namespace emporium::resilience
