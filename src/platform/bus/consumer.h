// A durable consumer: the transport-agnostic half of "effectively once". It takes batches of
// serialized envelopes from a transport and, for each message, runs the handler INSIDE a write
// job on the consumer's own database together with the inbox insert
//   INSERT INTO inbox(consumer, message_id, ...) ON CONFLICT DO NOTHING
// so a message already in the inbox is acknowledged without running the handler again. Jobs are
// submitted with SubmitWrite in message order, so a whole batch shares group commits.
//
// Ordering: messages with the same key are handled in the order given. When a handler fails,
// later messages of that key in the batch are deferred (not run) until it succeeds or is
// dead-lettered; other keys proceed.
//
// Failures: a failing handler is retried (RetryPolicy: bounded attempts, exponential backoff);
// after the last attempt the message is written to dead_letters together with its inbox row,
// and acknowledged. Bytes that do not parse are dead-lettered at once under the id
// "malformed:<fnv1a64 of the bytes>". A failure of the database itself (commit failed,
// Unavailable) makes HandleBatch fail so the transport redelivers the batch.
//
// Thread-safety: HandleBatch may run concurrently (batches from different relays); Stop() from
// any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "platform/bus/handler.h"
#include "platform/bus/retry_policy.h"
#include "platform/sql/database.h"

namespace emporium::obs {
class MetricsRegistry;
class Counter;
class Gauge;
}  // namespace emporium::obs

namespace emporium::bus {

struct ConsumerOptions {
  RetryPolicy retry;
  const Clock* clock = &SystemClock::Instance();
  // Optional. Records emporium_bus_messages_total{consumer,outcome},
  // emporium_bus_consumer_lag_ms{consumer} and the emporium_bus_dead_letters{consumer}
  // callback gauge. Must outlive the consumer.
  obs::MetricsRegistry* metrics = nullptr;
};

class Consumer {
 public:
  Consumer(std::string name, sql::Database& db, MessageHandler handler, ConsumerOptions options);
  ~Consumer();
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  const std::string& name() const { return name_; }
  sql::Database& database() const { return db_; }

  // The transport's BatchHandler. OK once every message is durably handled, a duplicate, or
  // dead-lettered. Unavailable when the database failed or Stop() interrupted a backoff.
  absl::Status HandleBatch(const std::vector<std::string_view>& messages);

  // Re-runs the handler on dead letter `id` (which must belong to this consumer) in one write
  // job and sets its replayed_at_ms. NotFound, FailedPrecondition if already replayed or it
  // belongs to another consumer, or the handler's error (nothing changes).
  absl::Status ReplayDeadLetter(int64_t id);

  // Interrupts backoff waits; in-flight and later batches fail with Unavailable.
  void Stop();

 private:
  struct Item;
  struct Round;
  enum class Action { kHandle, kDeadLetter };

  absl::Status RunRound(std::vector<Item*>& pending);
  absl::Status RunJob(sql::Transaction& tx, Item& item, Action action, Round& round);
  bool WaitBackoff(absl::Duration wait);
  // Outcomes counted in emporium_bus_messages_total; the counters are looked up once.
  enum class Outcome { kHandled, kDuplicate, kDeadLettered, kRetried };
  static constexpr size_t kOutcomeCount = 4;
  void Count(Outcome outcome, int64_t by);

  const std::string name_;
  sql::Database& db_;
  const MessageHandler handler_;
  const ConsumerOptions options_;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;

  obs::Gauge* lag_ms_ = nullptr;
  obs::Counter* outcome_counters_[kOutcomeCount] = {};  // null without metrics
  std::optional<int64_t> dead_letter_gauge_id_;
};

// ---- Dead letters: for the admin endpoint and the CLI. ----

struct DeadLetter {
  int64_t id = 0;
  std::string consumer;
  std::string message_id;
  std::string type;
  std::string envelope;  // serialized bytes as received
  std::string error;     // the last handler error
  int64_t attempts = 0;
  int64_t failed_at_ms = 0;
  std::optional<int64_t> replayed_at_ms;
};

enum class DeadLetterState { kPending, kReplayed, kAny };

struct DeadLetterQuery {
  std::optional<std::string> consumer;  // all consumers when empty
  DeadLetterState state = DeadLetterState::kPending;
  int64_t after_id = 0;  // cursor: ids greater than this
  int64_t limit = 100;   // clamped to [1, kDeadLetterPageMax]
};
inline constexpr int64_t kDeadLetterPageMax = 1000;

// Dead letters in id order.
absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(sql::Database& db,
                                                        const DeadLetterQuery& query);

// Replays dead letter `id` of `db` with `handler` (see Consumer::ReplayDeadLetter; prefer
// BusRuntime::ReplayDeadLetter, which finds the consumer's handler by name).
absl::Status ReplayDeadLetter(sql::Database& db, int64_t id, std::string_view consumer,
                              const MessageHandler& handler, int64_t now_ms);

// Unreplayed dead letters of `consumer`.
absl::StatusOr<int64_t> CountDeadLetters(sql::Database& db, std::string_view consumer);

}  // namespace emporium::bus
