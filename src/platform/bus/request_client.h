// Request/reply with a deadline over the bus (the order saga's commands).
//
// Request() publishes a command envelope through the caller's outbox with reply_to set to this
// client's reply type and a correlation id (the command's correlation_id, or its id when
// empty), and remembers a callback. The responder handles the command like any message and
// publishes MakeReply(command, ...) — an ordinary envelope whose type is the reply_to. This
// client consumes that type (wire ReplyHandler() as a consumer on the requester's database);
// a reply whose correlation id is pending completes its callback with the reply envelope. If
// the deadline passes first, the callback gets DeadlineExceeded and a late reply is handed to
// `unmatched` (if set) instead — which is also where replies land after a restart, since
// pending requests live in memory: a saga persists its step and resumes from the stored state.
//
// Callbacks run on the client's own thread, never on a database writer thread, so they may
// call Database::Write. Each callback runs exactly once (reply, deadline, Cancel or Stop).
//
// Thread-safety: thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "platform/bus/envelope.h"
#include "platform/bus/handler.h"
#include "platform/sql/database.h"

namespace emporium::bus {

using ReplyCallback = std::function<void(absl::StatusOr<Envelope>)>;

struct RequestClientOptions {
  // The type replies are addressed to, e.g. "ordering.replies"; must be a valid type.
  std::string reply_to;
  // Deadlines are measured on this clock (ManualClock in tests).
  const Clock* clock = &SystemClock::Instance();
  // How often the deadline thread re-reads the clock when no deadline is nearer (it also
  // wakes for every new request); bounds how late a DeadlineExceeded can be.
  absl::Duration tick = absl::Milliseconds(20);
  // Requests waiting for a reply; more are rejected with ResourceExhausted.
  size_t pending_max = 100000;
  // Optional: replies that match no pending request (late, duplicate, after a restart). Runs
  // in the reply's transaction, like any MessageHandler.
  MessageHandler unmatched;
};

class RequestClient {
 public:
  explicit RequestClient(RequestClientOptions options);
  ~RequestClient();  // Stop()s
  RequestClient(const RequestClient&) = delete;
  RequestClient& operator=(const RequestClient&) = delete;

  const std::string& reply_to() const { return options_.reply_to; }
  // The consumer handler for reply_to(); subscribe it on the requester's database.
  MessageHandler ReplyHandler();

  // Starts the deadline/callback thread. Requests made before Start() are accepted but their
  // callbacks wait for it.
  void Start();
  // Completes every pending request with Cancelled and joins the thread. Idempotent.
  void Stop();

  // Publishes `command` (reply_to and correlation id filled in) through the outbox within
  // `tx`, and registers `done` to run on the reply or at now + timeout. Returns the
  // correlation id. AlreadyExists if that correlation id is already pending. If `tx` rolls
  // back, the request simply times out (or Cancel() it).
  absl::StatusOr<std::string> Request(sql::Transaction& tx, Envelope command,
                                      absl::Duration timeout, ReplyCallback done);
  // The same in its own write transaction on `db` (blocks until committed).
  absl::StatusOr<std::string> Request(sql::Database& db, Envelope command, absl::Duration timeout,
                                      ReplyCallback done);
  // Future flavour of the above.
  std::future<absl::StatusOr<Envelope>> RequestAsync(sql::Database& db, Envelope command,
                                                     absl::Duration timeout);

  // Completes a pending request with Cancelled. NotFound if it is not pending.
  absl::Status Cancel(const std::string& correlation_id);

  size_t pending() const;

 private:
  struct Pending {
    absl::Time deadline;
    ReplyCallback done;
  };
  struct Completion {
    ReplyCallback done;
    absl::StatusOr<Envelope> result;
  };

  absl::StatusOr<std::string> Register(Envelope& command, absl::Duration timeout,
                                       ReplyCallback done);
  absl::Status OnReply(sql::Transaction& tx, const Envelope& reply);
  void Run();

  const RequestClientOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  absl::flat_hash_map<std::string, Pending> pending_;
  std::vector<Completion> completions_;
  bool stopping_ = false;
  bool changed_ = false;
  std::thread thread_;
};

}  // namespace emporium::bus
