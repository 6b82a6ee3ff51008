// The catalog processor: the single consumer of the durable product update queue.
//
// One thread takes queued updates in seq order (so in order per product) and applies a batch
// of them: each update is checked against the product's current version (a stale base version
// is rejected with its reason), handle and SKU uniqueness, then the product rows are saved, the
// update is marked applied and `catalog.product_changed` (the full denormalized product) goes
// to the outbox -- all in one transaction with the queue row, so an update is applied exactly
// once even across crashes and redeliveries. The batch goes to the database as small write
// jobs (job_updates_max updates each) submitted together, so group commit makes them durable
// in one transaction and one fsync while each job keeps its own savepoint: a job that fails
// rolls back alone, and a later update of the same product held behind it stays queued (order
// per product is kept). While the writer commits a batch, this thread reads the next one from
// the queue and parses and builds its products (PrepareUpdate), so the write jobs of that batch
// only load, check and save; it is used only when the batch before it settled completely (a
// failure discards it and the queue is read again). After the commit the cache entries are
// invalidated at once; the search
// index follows one batch behind on the same thread (the next batch's jobs are committing
// meanwhile) and catches up completely whenever the queue is empty. On start it catches the
// search index up with whatever committed before a crash.
//
// Failures: a transient error (IsTransientFailure: the database busy, closing or out of
// room) retries the same batch with exponential backoff (FailureBackoff), forever. A permanent
// error (a constraint or internal error, a corrupt payload) must not block the queue behind
// it: the failed batch is retried one update at a time, and an update that fails permanently
// update_attempts_max times in a row is rejected with reason "processing_failed" and the
// error as its message; the processor then moves on.
//
// Thread-safety: Start/Stop from the owner thread; Notify, RequestReindex and the counters
// from any thread; RunOnce only when the thread is not running (tests, seeding).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "catalog/model.h"
#include "catalog/search.h"
#include "catalog/service.h"
#include "catalog/store.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/sql/database.h"

namespace emporium::catalog {

inline constexpr std::string_view kProductChangedType = "catalog.product_changed";

// Attempts at one update that fails permanently before it is rejected as poison.
inline constexpr int64_t kUpdateAttemptsMax = 5;

struct ProcessorOptions {
  int64_t batch_updates_max = 1000;
  // How long the thread sleeps when the queue looks empty and nobody notified it.
  absl::Duration idle_poll = absl::Milliseconds(200);
  // Pause after the first failed batch; doubled after each further consecutive failure, up to
  // failure_backoff_max.
  absl::Duration failure_backoff = absl::Milliseconds(100);
  absl::Duration failure_backoff_max = absl::Seconds(5);
  int64_t update_attempts_max = kUpdateAttemptsMax;
  // Updates per write job. Small jobs keep SQLite's in-memory statement sub-journal short: it
  // is walked from its start at the end of every statement inside a job's savepoint, so one
  // job of 1,000 updates cost time quadratic in its size.
  int64_t job_updates_max = 32;
  int64_t search_page_size = 2000;
};

// True for errors worth retrying as they are (resilience::IsRetryableByDefault: Unavailable,
// Aborted, DeadlineExceeded, ResourceExhausted); anything else is permanent for the update.
bool IsTransientFailure(const absl::Status& status);

// The pause after `consecutive_failures` (>= 1) failed batches in a row.
absl::Duration FailureBackoff(const ProcessorOptions& options, int64_t consecutive_failures);

// A queued update's payload parsed, and for a create or replace its product validated and built,
// ahead of the write job that applies it (pure work that needs no database).
struct PreparedUpdate {
  // The parsed payload; for a create or replace only its status (the DOM is released once the
  // product is built).
  absl::StatusOr<Json> payload = absl::FailedPreconditionError("not prepared");
  // Create / replace: ProductFromInput of the payload with version and timestamps still 0
  // (they depend on the stored product and are set when the update applies).
  std::optional<absl::StatusOr<Product>> product;
};

PreparedUpdate PrepareUpdate(const QueuedUpdate& update);

// ApplyUpdate(current, update.kind, update.product_id, payload, update.base_version, now_ms)
// with the work PrepareUpdate did ahead: the same outcome, rejection reasons and messages.
// `prepared.payload` must be OK.
UpdateOutcome ApplyPreparedUpdate(const std::optional<Product>& current, const QueuedUpdate& update,
                                  PreparedUpdate prepared, int64_t now_ms);

class Processor {
 public:
  // `search` may be null (no index). `service` receives cache invalidations.
  Processor(sql::Database& database, const Clock& clock, IdGenerator& ids, CatalogService& service,
            SearchIndex* search, ProcessorOptions options = {});
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  void Start();
  // Finishes the batch in progress and joins the thread. Idempotent.
  void Stop();
  // Wakes the thread: something was enqueued.
  void Notify();
  // Asks the thread to rebuild the search index from the store.
  void RequestReindex();

  // Applies one batch on the calling thread; returns how many updates it settled (a poison
  // update rejected counts as settled). A failed batch returns its error; call again to retry.
  absl::StatusOr<int64_t> RunOnce();
  // Applies batches until the queue is empty (bounded by `batches_max`).
  absl::Status Drain(int64_t batches_max = 1'000'000);
  // Indexes every product changed after the index's recorded seq.
  absl::Status CatchUpSearch();
  absl::Status RebuildSearch();

  int64_t applied_count() const { return applied_.load(); }
  int64_t rejected_count() const { return rejected_.load(); }
  // Updates rejected as poison (also counted in rejected_count).
  int64_t poisoned_count() const { return poisoned_.load(); }
  std::string last_error() const;

 private:
  void Loop();
  struct BatchOutcome {
    // The updates settled, or the error of the first failed job.
    absl::StatusOr<int64_t> settled;
    // The update of that job when it held only one (a poison candidate), else null.
    const QueuedUpdate* failed_alone = nullptr;
  };
  // Applies `updates` (jobs committed by group commit). `prepared` is empty or holds one
  // PrepareUpdate per update (each taken by the job that applies it).
  BatchOutcome ApplyBatch(const std::vector<QueuedUpdate>& updates,
                          std::vector<std::optional<PreparedUpdate>>& prepared);
  // Up to `limit` queued updates after `after_seq`, in queue order, from a reader.
  absl::StatusOr<std::vector<QueuedUpdate>> ReadQueue(int64_t after_seq, int64_t limit);
  // Reads and prepares the batch after `after_seq` into next_updates_ / next_prepared_ (left
  // empty when the read fails: the next RunOnce then reads the queue itself).
  void PrefetchAfter(int64_t after_seq);
  // Indexes the committed products not yet in the search index (pending_index_).
  void IndexPending();
  // Rejects `update` (processing_failed, `error` as the message) in its own transaction.
  absl::Status RejectPoison(const QueuedUpdate& update, const absl::Status& error);

  sql::Database& database_;
  const Clock& clock_;
  IdGenerator& ids_;
  CatalogService& service_;
  SearchIndex* search_;
  const ProcessorOptions options_;
  std::atomic<int64_t> applied_{0};
  std::atomic<int64_t> rejected_{0};
  std::atomic<int64_t> poisoned_{0};
  // Poison isolation, touched only by the one caller of RunOnce: after a batch failed
  // permanently, updates up to isolate_through_seq_ are applied one at a time, and
  // failing_seq_ is the single update that failed failing_attempts_ times in a row.
  int64_t isolate_through_seq_ = 0;
  int64_t failing_seq_ = 0;
  int64_t failing_attempts_ = 0;
  // Committed products the search index has not seen yet and the seq the index reaches with
  // them; touched only by the one caller of RunOnce.
  std::vector<StoredProduct> pending_index_;
  int64_t pending_index_seq_ = 0;
  // The next batch, read and prepared while the previous one committed; touched only by the
  // one caller of RunOnce.
  std::vector<QueuedUpdate> next_updates_;
  std::vector<std::optional<PreparedUpdate>> next_prepared_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool notified_ = false;
  bool stopping_ = false;
  bool reindex_requested_ = false;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace emporium::catalog
