// OneShot<T>: hands one value from the thread that produces it to one thread blocked waiting for
// it — one atomic word and, only if the waiter is already asleep, one futex wake. A mutex and
// condition variable pair cost a second wake per hand-off (the waiter, woken while the producer
// still held the mutex, blocked on it and had to be woken again), and a promise/future pair
// allocates shared state and takes a mutex and call_once each time.
//
// Lifetime: the waiter may return from Wait() and destroy the OneShot as soon as Post()'s
// exchange publishes the value, so Post() touches only the word's address after it: a futex
// wake on memory reused for another futex wakes that one spuriously, which every futex user
// (this loop, glibc's mutexes and condition variables) tolerates.
//
// Thread-safety: Post() once, from any thread; Wait() once, by the owning thread. Linux only.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <utility>

namespace emporium {

template <typename T>
class OneShot {
 public:
  void Post(T value) {
    value_ = std::move(value);
    void* word = &state_;
    if (state_.exchange(kPosted, std::memory_order_acq_rel) == kSleeping) {
      syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    }
  }

  // Blocks until Post() and returns its value.
  T Wait() {
    uint32_t state = state_.load(std::memory_order_acquire);
    while (state != kPosted) {
      // Announce the sleep first, so Post() knows to wake; a failed exchange reloads state.
      if (state == kWaiting &&
          !state_.compare_exchange_weak(state, kSleeping, std::memory_order_acquire)) {
        continue;
      }
      // Returns at once if Post() came first (the word is no longer kSleeping); spurious
      // returns and EINTR just go round again.
      syscall(SYS_futex, &state_, FUTEX_WAIT_PRIVATE, kSleeping, nullptr, nullptr, 0);
      state = state_.load(std::memory_order_acquire);
    }
    return std::move(value_);
  }

 private:
  static constexpr uint32_t kWaiting = 0;
  static constexpr uint32_t kSleeping = 1;
  static constexpr uint32_t kPosted = 2;
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                    std::atomic<uint32_t>::is_always_lock_free,
                "the futex word must be a plain 32-bit integer");

  std::atomic<uint32_t> state_{kWaiting};
  T value_{};
};

}  // namespace emporium
