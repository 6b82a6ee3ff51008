// The transport port: what the outbox relay hands committed messages to, and what durable
// consumers subscribe to. Only serialized envelope bytes cross it.
//
// The shape follows NATS JetStream so an adapter can drop in: Publish() ~ publishing each
// message to subject `type` with header Nats-Msg-Id = id (the stream de-duplicates) and
// waiting for the PubAcks; Subscribe() ~ a durable pull consumer named `consumer`, filtered by
// the type patterns, fetching batches and acking them when the BatchHandler returns OK.
// Consumer-side logic (inbox, retries, dead letters: consumer.h) and the relay (relay.h) are
// transport-agnostic.
//
// Delivery is at-least-once: a transport may hand a message to a consumer again (after a
// crash, a failed batch, a relay retry); the consumer's inbox makes the second time a no-op.
//
// Thread-safety: implementations are thread-safe; Publish() may be called from several relay
// threads at once.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace emporium::bus {

struct OutgoingMessage {
  std::string id;     // de-duplication id (envelope id)
  std::string type;   // subject
  std::string key;    // ordering key
  std::string bytes;  // Serialize(envelope)
};

struct Subscription {
  std::string consumer;                    // durable consumer name, unique per transport
  std::vector<std::string> type_patterns;  // see TypeMatches() in envelope.h
};

// Receives messages for one durable consumer, in publish order. OK means every message in the
// batch is durably handled (processed, a duplicate, or dead-lettered) and may be acked; an
// error means none may be assumed handled and the batch is to be delivered again.
using BatchHandler = std::function<absl::Status(const std::vector<std::string_view>& messages)>;

class Transport {
 public:
  virtual ~Transport() = default;
  // Registers a durable consumer. AlreadyExists for a duplicate consumer name,
  // FailedPrecondition after Close. Subscribe before publishing starts: an embedded consumer
  // added later does not see messages already published.
  virtual absl::Status Subscribe(Subscription subscription, BatchHandler handler) = 0;
  // Publishes `batch` in order. OK only once the transport has durably taken every message;
  // on error the caller publishes the same batch again later.
  virtual absl::Status Publish(const std::vector<OutgoingMessage>& batch) = 0;
  // Stops delivering; later Publish() calls return Unavailable. Idempotent.
  virtual void Close() = 0;
};

}  // namespace emporium::bus
