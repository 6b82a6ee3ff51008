// The outbox relay of one database: reads committed, unpublished outbox rows in seq order (a
// bounded batch), hands them to the transport, and marks them published only after the
// transport accepted the whole batch (embedded: every matching consumer committed it). A crash
// anywhere in between means the batch is published again, never lost.
//
// One batch is in flight at a time, in seq order (= commit order), which with in-order
// consumers preserves per-key order. The relay wakes on every commit of its database (commit
// listener) and also polls every poll_interval, so nothing waits forever. The relay thread does
// not wait for the "mark published" write of a delivered batch: it submits it to the group
// commit and goes on with the rows after the batch (it remembers the last delivered seq). If
// such a write fails, the relay forgets that position and delivers the unmarked rows again
// (consumers' inboxes absorb the duplicates); a crash before the write commits does the same.
// Whenever no such write is in flight it scans from the first unmarked row again, so rows
// unmarked by hand are re-published.
// Stop() waits for the submitted writes (bounded by drain_timeout). Published rows are
// deleted after outbox_retention, and this database's inbox rows after inbox_retention (checked
// every prune_interval, deleted in bounded chunks between publishes).
//
// Thread-safety: Start/Stop from one owner thread; Wake() from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "platform/bus/transport.h"
#include "platform/sql/database.h"

namespace emporium::obs {
class MetricsRegistry;
class Counter;
}  // namespace emporium::obs

namespace emporium::bus {

struct RelayOptions {
  // Messages handed to the transport at once (whole outbox rows: a bundle can take a batch past
  // this by less than kBundleMessagesMax).
  int64_t batch_max = 512;
  // Longest wait between outbox scans when no commit wakes the relay; also the wait after a
  // failed publish.
  absl::Duration poll_interval = absl::Milliseconds(200);
  // Published rows older than this are deleted.
  absl::Duration outbox_retention = absl::Hours(24);
  // Inbox rows (of every consumer bound to this database) older than this are deleted; must
  // exceed outbox_retention (see PruneInbox in outbox.h).
  absl::Duration inbox_retention = absl::Hours(24 * 7);
  absl::Duration prune_interval = absl::Minutes(1);
  // Stop() keeps delivering what is committed for at most this long.
  absl::Duration drain_timeout = absl::Seconds(5);
  const Clock* clock = &SystemClock::Instance();
  // Optional: emporium_bus_outbox_depth{db} (callback gauge), emporium_bus_published_total{db}
  // and emporium_bus_relay_errors_total{db}. Must outlive the relay.
  obs::MetricsRegistry* metrics = nullptr;
};

class Relay {
 public:
  // `db_name` labels metrics and logs. The bus schema must be installed in `db`.
  Relay(std::string db_name, sql::Database& db, Transport& transport, RelayOptions options);
  ~Relay();  // Stop()s
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // Registers the commit listener. Call once, before the database's first write (the
  // Database port requires listeners to be registered early) and before Start().
  void ListenForCommits();
  void Start();
  // Delivers what is committed (bounded by drain_timeout), then stops the thread. Idempotent.
  void Stop();
  // Makes the relay scan the outbox now.
  void Wake();

  // One pass: publishes at most one batch. Returns the number of messages published. Exposed for
  // tests and for a synchronous "flush" in tools; do not call while the thread runs.
  absl::StatusOr<int64_t> PublishOnce();

  const std::string& db_name() const { return db_name_; }

 private:
  // Shared with the commit listener, which the Database keeps for its whole life and which may
  // therefore outlive the relay (shared_ptr for that reason).
  struct WakeSignal {
    std::mutex mutex;
    std::condition_variable cv;
    bool pending = false;
    bool stopping = false;
  };
  // "Mark published" writes submitted and not yet committed; shared with their done callbacks.
  struct MarkWrites {
    std::mutex mutex;
    std::condition_variable cv;
    int64_t in_flight = 0;
    bool failed = false;  // a write failed since the relay last looked
  };

  // Publishes at most one batch after delivered_through_. `wait_for_mark`: the mark-published
  // write is waited for (PublishOnce) or only submitted (the relay thread).
  absl::StatusOr<int64_t> PublishBatch(bool wait_for_mark);
  // Waits until no mark-published write is in flight, at most until `deadline`.
  void AwaitMarks(absl::Time deadline);
  void Run();
  bool Stopping();
  void MaybePrune();

  const std::string db_name_;
  sql::Database& db_;
  Transport& transport_;
  const RelayOptions options_;
  std::shared_ptr<WakeSignal> wake_ = std::make_shared<WakeSignal>();
  std::shared_ptr<MarkWrites> marks_ = std::make_shared<MarkWrites>();
  // Rows with seq <= this were accepted by the transport (their mark may still be in flight).
  // Used by the relay thread, or by PublishOnce while the thread does not run.
  int64_t delivered_through_ = 0;

  std::thread thread_;
  absl::Time next_prune_ = absl::InfinitePast();
  // The last prune turn stopped at its chunk bound with old rows left: the next turn continues
  // without waiting for prune_interval. Relay thread only.
  bool prune_backlog_ = false;
  obs::Counter* published_total_ = nullptr;
  obs::Counter* errors_total_ = nullptr;
  std::optional<int64_t> depth_gauge_id_;
};

}  // namespace emporium::bus
