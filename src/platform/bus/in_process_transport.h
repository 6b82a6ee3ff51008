// The embedded transport: Publish() hands each message straight to every subscribed consumer
// whose patterns match its type and returns once all of them have acknowledged, so "the
// transport durably took it" means "every matching consumer committed it". There is no
// in-memory queue to lose: until Publish() returns OK, the outbox row stays unpublished.
//
// When a batch matches several consumers they are called concurrently (the first on the
// publishing (relay) thread, the others on helper threads), so a batch costs the slowest
// consumer's commit, not the sum; each consumer still gets the batches of one relay one after
// another, in order. Helper threads are kept and reused (at most kDeliveryHelpersMax, started
// on demand): a thread created per delivery cost a clone, a stack mapping and an exit per
// relay batch. When all helpers are busy the delivery waits in the helpers' queue; deliveries
// never wait on each other, so every queued one runs. The destructor joins the helpers. A failing
// consumer does not stop the others from getting the batch, but makes Publish() fail so the relay
// retries it (the consumers that succeeded see duplicates, which their inboxes skip).
//
// Thread-safety: thread-safe. Subscribe before the first Publish.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "platform/bus/transport.h"

namespace emporium::bus {

// Helper threads kept for concurrent deliveries (one per extra consumer of a batch, summed over
// relays publishing at the same time).
inline constexpr size_t kDeliveryHelpersMax = 32;

class InProcessTransport final : public Transport {
 public:
  InProcessTransport() = default;
  ~InProcessTransport() override;
  InProcessTransport(const InProcessTransport&) = delete;
  InProcessTransport& operator=(const InProcessTransport&) = delete;

  absl::Status Subscribe(Subscription subscription, BatchHandler handler) override;
  absl::Status Publish(const std::vector<OutgoingMessage>& batch) override;
  void Close() override;

 private:
  struct Subscriber {
    Subscription subscription;
    BatchHandler handler;
  };

  // Runs `task` on a helper thread (started when none is idle and fewer than
  // kDeliveryHelpersMax exist). False when none could be started and none exists: run it here.
  bool RunOnHelper(std::function<void()> task);
  void HelperLoop();

  std::mutex mutex_;
  std::vector<std::shared_ptr<const Subscriber>> subscribers_;
  bool closed_ = false;

  std::mutex helpers_mutex_;
  std::condition_variable helpers_cv_;
  std::deque<std::function<void()>> helper_tasks_;  // guarded by helpers_mutex_
  std::vector<std::thread> helpers_;                // guarded by helpers_mutex_
  size_t helpers_idle_ = 0;                         // guarded by helpers_mutex_
  bool helpers_stopping_ = false;                   // guarded by helpers_mutex_
};

}  // namespace emporium::bus
