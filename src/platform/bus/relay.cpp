#include "platform/bus/relay.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/bus/outbox.h"
#include "platform/obs/metrics.h"

namespace emporium::bus {
namespace {

// Batches published back to back before the relay looks at its stop flag and prune timer.
constexpr int kBatchesPerWakeMax = 64;
// Mark-published writes submitted and not yet committed; at this many the relay waits. One:
// under load the previous mark has long committed when the next batch is delivered, and with
// batching off (a commit per write) more would only queue commits ahead of business writes.
constexpr int64_t kMarkWritesInFlightMax = 1;
// Pruning deletes in chunks of at most this many rows per table, each chunk its own write job,
// so the writer interleaves the context's own writes instead of stalling behind one large
// delete (a day of outbox rows can be millions); one turn of the relay runs at most
// kPruneChunksPerTurn chunks and leaves the rest to its next turn, after it published again.
constexpr int64_t kPruneChunkRows = 1000;
constexpr int kPruneChunksPerTurn = 8;

}  // namespace

Relay::Relay(std::string db_name, sql::Database& db, Transport& transport, RelayOptions options)
    : db_name_(std::move(db_name)), db_(db), transport_(transport), options_(options) {
  if (options_.metrics != nullptr) {
    obs::Labels labels = {{"db", db_name_}};
    published_total_ = &options_.metrics->GetCounter(
        "emporium_bus_published_total", "Outbox messages the relay published.", labels);
    errors_total_ = &options_.metrics->GetCounter(
        "emporium_bus_relay_errors_total", "Relay passes that failed and will be retried.", labels);
    depth_gauge_id_ = options_.metrics->AddCallbackGauge(
        "emporium_bus_outbox_depth", "Committed outbox messages not yet published.", labels,
        [this]() -> int64_t {
          int64_t depth = -1;
          absl::Status status = db_.Read([&depth](sql::Transaction& tx) -> absl::Status {
            ASSIGN_OR_RETURN(depth, CountUnpublished(tx));
            return absl::OkStatus();
          });
          return status.ok() ? depth : -1;
        });
  }
}

Relay::~Relay() {
  Stop();
  if (depth_gauge_id_.has_value()) options_.metrics->RemoveCallbackGauge(*depth_gauge_id_);
}

void Relay::ListenForCommits() {
  std::shared_ptr<WakeSignal> wake = wake_;
  db_.AddCommitListener([wake]() {
    {
      std::lock_guard<std::mutex> lock(wake->mutex);
      wake->pending = true;
    }
    wake->cv.notify_all();
  });
}

void Relay::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(wake_->mutex);
    wake_->stopping = false;
    wake_->pending = true;  // scan once at start: a previous run may have left rows behind
  }
  thread_ = std::thread([this] {
    SetCurrentThreadName("relay:" + db_name_);
    Run();
  });
}

void Relay::Stop() {
  {
    std::lock_guard<std::mutex> lock(wake_->mutex);
    wake_->stopping = true;
  }
  wake_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Relay::Wake() {
  {
    std::lock_guard<std::mutex> lock(wake_->mutex);
    wake_->pending = true;
  }
  wake_->cv.notify_all();
}

bool Relay::Stopping() {
  std::lock_guard<std::mutex> lock(wake_->mutex);
  return wake_->stopping;
}

absl::StatusOr<int64_t> Relay::PublishOnce() { return PublishBatch(/*wait_for_mark=*/true); }

absl::StatusOr<int64_t> Relay::PublishBatch(bool wait_for_mark) {
  {
    std::unique_lock<std::mutex> lock(marks_->mutex);
    // Bounded: every submitted write gets its done callback, even when the database closes.
    marks_->cv.wait(lock, [this] { return marks_->in_flight < kMarkWritesInFlightMax; });
    // With no mark in flight every delivered row is marked (the done callback runs after the
    // commit), so anything unmarked at or below delivered_through_ was unmarked since (a
    // failed mark, an operator re-publishing rows by hand): scan from the start again.
    if (marks_->failed || marks_->in_flight == 0) {
      marks_->failed = false;
      delivered_through_ = 0;
    }
  }
  std::vector<OutboxRow> rows;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(rows, ReadUnpublished(tx, options_.batch_max, delivered_through_));
    return absl::OkStatus();
  }));
  if (rows.empty()) return 0;
  std::vector<OutgoingMessage> batch;
  batch.reserve(rows.size());
  for (OutboxRow& row : rows) {
    batch.push_back(OutgoingMessage{std::move(row.id), std::move(row.type), std::move(row.key),
                                    std::move(row.envelope)});
  }
  RETURN_IF_ERROR(transport_.Publish(batch));
  const int64_t seq_first = rows.front().seq;
  const int64_t seq_last = rows.back().seq;
  const int64_t now_ms = options_.clock->NowMs();
  delivered_through_ = seq_last;
  // Marked only now that every consumer acknowledged durably. If this write is lost (crash,
  // failed batch), the rows are published again: consumers' inboxes absorb them.
  auto mark = [seq_first, seq_last, now_ms](sql::Transaction& tx) -> absl::Status {
    return MarkPublished(tx, seq_first, seq_last, now_ms).status();
  };
  if (wait_for_mark) {
    absl::Status marked = db_.Write(mark);
    if (!marked.ok()) {
      delivered_through_ = 0;
      return marked;
    }
  } else {
    {
      std::lock_guard<std::mutex> lock(marks_->mutex);
      ++marks_->in_flight;
    }
    db_.SubmitWrite(mark, [marks = marks_, errors = errors_total_](absl::Status status) {
      if (!status.ok() && errors != nullptr) errors->Increment();
      std::lock_guard<std::mutex> lock(marks->mutex);
      if (!status.ok()) marks->failed = true;
      --marks->in_flight;
      marks->cv.notify_all();
    });
  }
  const auto published = static_cast<int64_t>(rows.size());
  if (published_total_ != nullptr) published_total_->Increment(published);
  return published;
}

void Relay::AwaitMarks(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(marks_->mutex);
  marks_->cv.wait_for(
      lock, absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), deadline - absl::Now())),
      [this] { return marks_->in_flight == 0; });
}

void Relay::MaybePrune() {
  const absl::Time now = options_.clock->Now();
  if (!prune_backlog_) {
    if (now < next_prune_) return;
    next_prune_ = now + options_.prune_interval;
  }
  const int64_t outbox_before_ms = absl::ToUnixMillis(now - options_.outbox_retention);
  const int64_t inbox_before_ms = absl::ToUnixMillis(now - options_.inbox_retention);
  bool outbox_more = true;
  bool inbox_more = true;
  for (int chunk = 0; chunk < kPruneChunksPerTurn && (outbox_more || inbox_more); ++chunk) {
    int64_t outbox_deleted = 0;
    int64_t inbox_deleted = 0;
    absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
      if (outbox_more) {
        ASSIGN_OR_RETURN(outbox_deleted, PruneOutbox(tx, outbox_before_ms, kPruneChunkRows));
      }
      if (inbox_more) {
        ASSIGN_OR_RETURN(inbox_deleted, PruneInbox(tx, inbox_before_ms, kPruneChunkRows));
      }
      return absl::OkStatus();
    });
    if (!status.ok()) {
      // Tried again at the next interval.
      if (errors_total_ != nullptr) errors_total_->Increment();
      prune_backlog_ = false;
      return;
    }
    // The outbox's old rows are at its front: a chunk that found none there means none is left.
    outbox_more = outbox_more && outbox_deleted > 0;
    inbox_more = inbox_more && inbox_deleted == kPruneChunkRows;
  }
  prune_backlog_ = outbox_more || inbox_more;
  if (prune_backlog_) Wake();  // continue after the next publish, not after prune_interval
}

void Relay::Run() {
  while (true) {
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(wake_->mutex);
      wake_->cv.wait_for(lock, absl::ToChronoNanoseconds(options_.poll_interval),
                         [this] { return wake_->pending || wake_->stopping; });
      wake_->pending = false;
      stopping = wake_->stopping;
    }
    if (stopping) break;
    for (int i = 0; i < kBatchesPerWakeMax && !Stopping(); ++i) {
      absl::StatusOr<int64_t> published = PublishBatch(/*wait_for_mark=*/false);
      if (!published.ok()) {
        // Retried at the next wake-up or poll.
        if (errors_total_ != nullptr) errors_total_->Increment();
        break;
      }
      if (*published < options_.batch_max) break;
      if (i + 1 == kBatchesPerWakeMax) Wake();  // more to do: do not wait for the poll
    }
    MaybePrune();
  }
  // Drain: deliver what is already committed, within a bound.
  const absl::Time deadline = absl::Now() + options_.drain_timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<int64_t> published = PublishBatch(/*wait_for_mark=*/false);
    if (!published.ok() || *published == 0) break;
  }
  AwaitMarks(deadline);
}

}  // namespace emporium::bus
