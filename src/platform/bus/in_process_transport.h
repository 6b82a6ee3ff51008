// The embedded transport: Publish() hands each message straight to every subscribed consumer
// whose patterns match its type and returns once all of them have acknowledged, so "the
// transport durably took it" means "every matching consumer committed it". There is no
// in-memory queue to lose: until Publish() returns OK, the outbox row stays unpublished.
//
// When a batch matches several consumers they are called concurrently (the first on the
// publishing (relay) thread, the others on short-lived threads), so a batch costs the slowest
// consumer's commit, not the sum; each consumer still gets the batches of one relay one after
// another, in order. A failing consumer does not stop the others from getting the batch, but
// makes Publish() fail so the relay retries it (the consumers that succeeded see duplicates, which
// their inboxes skip).
//
// Thread-safety: thread-safe. Subscribe before the first Publish.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "platform/bus/transport.h"

namespace emporium::bus {

class InProcessTransport final : public Transport {
 public:
  InProcessTransport() = default;
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

  std::mutex mutex_;
  std::vector<std::shared_ptr<const Subscriber>> subscribers_;
  bool closed_ = false;
};

}  // namespace emporium::bus
