#include "platform/resilience/bulkhead.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <chrono>

#include "common/errors.h"

namespace emporium::resilience {

Bulkhead::Permit& Bulkhead::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    bulkhead_ = other.bulkhead_;
    other.bulkhead_ = nullptr;
  }
  return *this;
}

void Bulkhead::Permit::Release() {
  if (bulkhead_ != nullptr) {
    bulkhead_->ReleaseSlot();
    bulkhead_ = nullptr;
  }
}

Bulkhead::Bulkhead(std::string name, BulkheadOptions options)
    : name_(std::move(name)), options_(options) {
  options_.concurrent_count_max = std::max(options_.concurrent_count_max, 1);
  options_.queue_count_max = std::max(options_.queue_count_max, 0);
  options_.wait_slice = std::max(options_.wait_slice, absl::Milliseconds(1));
}

Bulkhead::~Bulkhead() {
  // A permit outliving its bulkhead would write to freed memory.
  assert(in_flight_count_ == 0 && waiters_.empty());
}

absl::Status Bulkhead::FullError() const {
  return WithErrorCode(absl::ResourceExhaustedError(
                           fmt::format("bulkhead '{}' is full ({} in flight, {} waiting)", name_,
                                       options_.concurrent_count_max, options_.queue_count_max)),
                       "bulkhead_full");
}

absl::StatusOr<Bulkhead::Permit> Bulkhead::TryAcquire() {
  std::lock_guard lock(mutex_);
  if (in_flight_count_ < options_.concurrent_count_max && waiters_.empty()) {
    ++in_flight_count_;
    return Permit(this);
  }
  ++rejected_count_;
  return FullError();
}

absl::StatusOr<Bulkhead::Permit> Bulkhead::Acquire(const Deadline& deadline) {
  std::unique_lock lock(mutex_);
  if (in_flight_count_ < options_.concurrent_count_max && waiters_.empty()) {
    ++in_flight_count_;
    return Permit(this);
  }
  if (static_cast<int>(waiters_.size()) >= options_.queue_count_max) {
    ++rejected_count_;
    return FullError();
  }
  const uint64_t ticket = ticket_next_++;
  waiters_.push_back(ticket);
  while (true) {
    if (waiters_.front() == ticket && in_flight_count_ < options_.concurrent_count_max) {
      waiters_.pop_front();
      ++in_flight_count_;
      // The next waiter may also fit (several slots freed at once).
      slot_freed_.notify_all();
      return Permit(this);
    }
    if (deadline.expired()) {
      waiters_.erase(std::find(waiters_.begin(), waiters_.end(), ticket));
      // Our leaving may put another waiter at the front.
      slot_freed_.notify_all();
      return WithErrorCode(
          absl::DeadlineExceededError(fmt::format("timed out waiting for bulkhead '{}'", name_)),
          "bulkhead_timeout");
    }
    const absl::Duration wait = std::min(deadline.remaining(), options_.wait_slice);
    slot_freed_.wait_for(lock, absl::ToChronoNanoseconds(wait));
  }
}

void Bulkhead::ReleaseSlot() {
  {
    std::lock_guard lock(mutex_);
    assert(in_flight_count_ > 0);
    --in_flight_count_;
  }
  slot_freed_.notify_all();
}

int Bulkhead::in_flight_count() const {
  std::lock_guard lock(mutex_);
  return in_flight_count_;
}

int Bulkhead::waiting_count() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(waiters_.size());
}

int64_t Bulkhead::rejected_count() const {
  std::lock_guard lock(mutex_);
  return rejected_count_;
}

}  // namespace emporium::resilience
