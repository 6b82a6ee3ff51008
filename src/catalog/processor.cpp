#include "catalog/processor.h"

#include <map>
#include <set>

#include "common/format.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/bus/envelope.h"
#include "platform/bus/outbox.h"
#include "platform/obs/log.h"
#include "platform/resilience/retry.h"

namespace emporium::catalog {
namespace {

// What one applied update changed, for the after-commit work.
struct Change {
  StoredProduct product;
  std::string old_handle;
};

// Marks `update` rejected and steps its product's head back: later queued updates were
// promised versions counting this one. False when an earlier run already settled it.
absl::StatusOr<bool> RejectInTx(sql::Transaction& tx, const QueuedUpdate& update,
                                int64_t current_version, RejectReason reason,
                                const std::string& message, int64_t now_ms) {
  absl::StatusOr<bool> marked = MarkUpdateRejected(tx, update.seq, reason, message, now_ms);
  if (!marked.ok()) return marked.status();
  if (!*marked) return false;
  absl::StatusOr<std::optional<int64_t>> head = LoadHead(tx, update.product_id);
  if (!head.ok()) return head.status();
  if (head->has_value()) {
    if (absl::Status status =
            SaveHead(tx, update.product_id, std::max(current_version, **head - 1));
        !status.ok()) {
      return status;
    }
  }
  return true;
}

// Stored rejection messages are bounded: an error's text can be long.
constexpr size_t kPoisonMessageBytesMax = 500;

}  // namespace

bool IsTransientFailure(const absl::Status& status) {
  return resilience::IsRetryableByDefault(status);
}

PreparedUpdate PrepareUpdate(const QueuedUpdate& update) {
  PreparedUpdate prepared;
  prepared.payload = ParseJson(update.payload);
  if (!prepared.payload.ok()) return prepared;
  switch (update.kind) {
    case UpdateKind::kCreate:
    case UpdateKind::kReplace:
      prepared.product = ProductFromInput(*prepared.payload, update.product_id, 0, 0, 0);
      // The DOM is freed here, on the thread that built it, not on the writer's: only a
      // patch reads it at apply (refusals never do).
      *prepared.payload = Json();
      break;
    case UpdateKind::kPatch:
    case UpdateKind::kArchive:
      break;  // built from the stored product, at apply
  }
  return prepared;
}

UpdateOutcome ApplyPreparedUpdate(const std::optional<Product>& current, const QueuedUpdate& update,
                                  PreparedUpdate prepared, int64_t now_ms) {
  if (!prepared.product.has_value()) {  // a patch or archive: built from the stored product
    return ApplyUpdate(current, update.kind, update.product_id, *prepared.payload,
                       update.base_version, now_ms);
  }
  return ApplyBuiltUpdate(current, update.kind, update.product_id, std::move(*prepared.product),
                          update.base_version, now_ms);
}

absl::Duration FailureBackoff(const ProcessorOptions& options, int64_t consecutive_failures) {
  absl::Duration wait = options.failure_backoff;
  for (int64_t i = 1; i < consecutive_failures && wait < options.failure_backoff_max; ++i) {
    wait *= 2;
  }
  return std::min(wait, options.failure_backoff_max);
}

Processor::Processor(sql::Database& database, const Clock& clock, IdGenerator& ids,
                     CatalogService& service, SearchIndex* search, ProcessorOptions options)
    : database_(database),
      clock_(clock),
      ids_(ids),
      service_(service),
      search_(search),
      options_(options) {}

Processor::~Processor() { Stop(); }

void Processor::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this] {
    SetCurrentThreadName("cat-processor");
    Loop();
  });
}

void Processor::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Processor::Notify() {
  {
    std::lock_guard lock(mutex_);
    notified_ = true;
  }
  wake_.notify_one();
}

void Processor::RequestReindex() {
  {
    std::lock_guard lock(mutex_);
    reindex_requested_ = true;
  }
  wake_.notify_one();
}

std::string Processor::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

void Processor::Loop() {
  obs::Logger logger("catalog.processor");
  int64_t consecutive_failures = 0;
  if (absl::Status status = CatchUpSearch(); !status.ok()) {
    logger.Warn("search catch-up failed", {{"error", std::string(status.message())}});
  }
  while (true) {
    bool reindex = false;
    bool stop = false;
    {
      std::lock_guard lock(mutex_);
      stop = stopping_;
      reindex = reindex_requested_;
      reindex_requested_ = false;
      notified_ = false;
    }
    if (stop) {
      IndexPending();  // what committed is indexed before the thread ends
      return;
    }
    if (reindex) {
      IndexPending();
      absl::Status status = RebuildSearch();
      if (!status.ok()) logger.Warn("reindex failed", {{"error", std::string(status.message())}});
    }
    absl::StatusOr<int64_t> settled = RunOnce();
    absl::Duration wait = options_.idle_poll;
    if (!settled.ok()) {
      ++consecutive_failures;
      {
        std::lock_guard lock(mutex_);
        last_error_ = std::string(settled.status().message());
      }
      logger.Warn("update batch failed",
                  {{"error", std::string(settled.status().message())},
                   {"consecutive_failures", std::to_string(consecutive_failures)}});
      wait = FailureBackoff(options_, consecutive_failures);
    } else if (*settled > 0) {
      consecutive_failures = 0;
      continue;  // more may be queued: go again without waiting
    } else {
      consecutive_failures = 0;
    }
    std::unique_lock lock(mutex_);
    wake_.wait_for(lock, absl::ToChronoMilliseconds(wait),
                   [this] { return stopping_ || notified_ || reindex_requested_; });
  }
}

absl::StatusOr<int64_t> Processor::RunOnce() {
  std::vector<QueuedUpdate> updates;
  std::vector<std::optional<PreparedUpdate>> prepared;
  if (!next_updates_.empty() && isolate_through_seq_ == 0) {
    // Read while the previous batch committed, which settled completely: nothing before
    // these is still queued.
    updates = std::move(next_updates_);
    prepared = std::move(next_prepared_);
  } else {
    absl::StatusOr<std::vector<QueuedUpdate>> loaded =
        ReadQueue(0, isolate_through_seq_ > 0 ? 1 : options_.batch_updates_max);
    if (!loaded.ok()) return loaded.status();
    updates = std::move(*loaded);
  }
  next_updates_.clear();
  next_prepared_.clear();
  if (updates.empty()) {
    isolate_through_seq_ = 0;
    IndexPending();  // the queue is empty: the search index catches up completely
    return 0;
  }
  if (updates.front().seq > isolate_through_seq_) isolate_through_seq_ = 0;

  BatchOutcome outcome = ApplyBatch(updates, prepared);
  if (!outcome.settled.ok()) {
    // Read behind an update that did not settle: the queue is read again from its start.
    next_updates_.clear();
    next_prepared_.clear();
  }
  if (outcome.settled.ok()) {
    if (failing_seq_ != 0 && failing_seq_ <= updates.back().seq) {
      failing_seq_ = 0;
      failing_attempts_ = 0;
    }
    return outcome.settled;
  }
  const absl::Status failed = outcome.settled.status();
  if (IsTransientFailure(failed) || outcome.failed_alone == nullptr) return failed;
  const QueuedUpdate& update = *outcome.failed_alone;
  if (failing_seq_ != update.seq) {
    failing_seq_ = update.seq;
    failing_attempts_ = 0;
  }
  if (++failing_attempts_ < options_.update_attempts_max) return failed;
  if (absl::Status status = RejectPoison(update, failed); !status.ok()) return status;
  failing_seq_ = 0;
  failing_attempts_ = 0;
  return 1;
}

absl::Status Processor::RejectPoison(const QueuedUpdate& update, const absl::Status& error) {
  std::string message =
      fmt::format("gave up after {} attempts: {}", failing_attempts_, error.message());
  if (message.size() > kPoisonMessageBytesMax) message.resize(kPoisonMessageBytesMax);
  const int64_t now_ms = clock_.NowMs();
  bool rejected = false;
  absl::Status written = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    // The stored product may itself be what fails to load; its version is then only a floor.
    absl::StatusOr<std::optional<StoredProduct>> current = LoadProduct(tx, update.product_id);
    const int64_t version = current.ok() && current->has_value() ? (*current)->product.version : 0;
    absl::StatusOr<bool> marked =
        RejectInTx(tx, update, version, RejectReason::kProcessingFailed, message, now_ms);
    if (!marked.ok()) return marked.status();
    rejected = *marked;
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  if (rejected) {
    rejected_.fetch_add(1);
    poisoned_.fetch_add(1);
    obs::Logger("catalog.processor")
        .Warn("update rejected as poison",
              {{"update_id", update.id}, {"product_id", update.product_id}, {"error", message}});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<QueuedUpdate>> Processor::ReadQueue(int64_t after_seq, int64_t limit) {
  std::vector<QueuedUpdate> updates;
  absl::Status read = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::vector<QueuedUpdate>> loaded = LoadQueuedUpdates(tx, after_seq, limit);
    if (!loaded.ok()) return loaded.status();
    updates = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return updates;
}

void Processor::PrefetchAfter(int64_t after_seq) {
  next_updates_.clear();
  next_prepared_.clear();
  absl::StatusOr<std::vector<QueuedUpdate>> loaded =
      ReadQueue(after_seq, options_.batch_updates_max);
  if (!loaded.ok()) return;
  next_updates_ = std::move(*loaded);
  next_prepared_.reserve(next_updates_.size());
  for (const QueuedUpdate& update : next_updates_)
    next_prepared_.emplace_back(PrepareUpdate(update));
}

Processor::BatchOutcome Processor::ApplyBatch(
    const std::vector<QueuedUpdate>& updates,
    std::vector<std::optional<PreparedUpdate>>& prepared) {
  const int64_t now_ms = clock_.NowMs();
  // Event ids are drawn outside the jobs so their bodies are pure functions of the database.
  std::vector<std::string> event_ids;
  event_ids.reserve(updates.size());
  for (size_t i = 0; i < updates.size(); ++i) event_ids.push_back(ids_.Next());
  // The previous update of the same product in this batch, if any (order per product).
  std::vector<std::ptrdiff_t> previous(updates.size(), -1);
  {
    std::map<std::string_view, size_t> last;
    for (size_t i = 0; i < updates.size(); ++i) {
      auto [it, inserted] = last.emplace(updates[i].product_id, i);
      if (!inserted) {
        previous[i] = static_cast<std::ptrdiff_t>(it->second);
        it->second = i;
      }
    }
  }
  const size_t job_size = static_cast<size_t>(std::max<int64_t>(1, options_.job_updates_max));
  const size_t job_count = (updates.size() + job_size - 1) / job_size;

  struct JobResult {
    absl::Status status = absl::UnknownError("not run");
    std::vector<Change> changes;
    int64_t applied = 0;
    int64_t rejected = 0;
    bool held = false;  // an update stayed queued behind an unsettled earlier one
  };
  struct Shared {
    std::mutex mutex;
    std::condition_variable done;
    size_t remaining = 0;
  };
  std::vector<JobResult> results(job_count);
  auto shared = std::make_shared<Shared>();
  shared->remaining = job_count;

  for (size_t job = 0; job < job_count; ++job) {
    const size_t first = job * job_size;
    const size_t last = std::min(updates.size(), first + job_size);
    JobResult* result = &results[job];
    sql::WriteJob body = [this, &updates, &prepared, &event_ids, &previous, first, last, job_size,
                          result, now_ms](sql::Transaction& tx) -> absl::Status {
      result->changes.clear();
      result->applied = 0;
      result->rejected = 0;
      result->held = false;
      std::set<std::string_view> held;  // products whose earlier update is still queued
      // The job's events go to the outbox together at its end (one seq lookup, multi-row
      // inserts: a per-event INSERT ... SELECT MAX(seq) opens a statement journal each time).
      std::vector<bus::Envelope> envelopes;
      envelopes.reserve(last - first);
      for (size_t i = first; i < last; ++i) {
        const QueuedUpdate& update = updates[i];
        if (held.count(update.product_id) > 0) continue;
        if (previous[i] >= 0 && static_cast<size_t>(previous[i]) / job_size != i / job_size) {
          // The product's previous update was in another job: apply this one only if that one
          // settled (its job may have failed, or committed in a transaction that rolled back).
          absl::StatusOr<bool> queued =
              IsUpdateQueued(tx, updates[static_cast<size_t>(previous[i])].seq);
          if (!queued.ok()) return queued.status();
          if (*queued) {
            held.insert(update.product_id);
            result->held = true;
            continue;
          }
        }
        absl::StatusOr<std::optional<StoredProduct>> current = LoadProduct(tx, update.product_id);
        if (!current.ok()) return current.status();
        // Prepared ahead on the processor thread when this batch was prefetched; a job runs
        // once, and prepares here what it does not find.
        PreparedUpdate ready;
        if (i < prepared.size() && prepared[i].has_value()) {
          ready = std::move(*prepared[i]);
          prepared[i].reset();
        } else {
          ready = PrepareUpdate(update);
        }
        if (!ready.payload.ok())
          return absl::DataLossError(fmt::format("update {}: bad payload", update.id));
        std::optional<Product> current_product;
        if (current->has_value()) current_product = (*current)->product;
        UpdateOutcome outcome =
            ApplyPreparedUpdate(current_product, update, std::move(ready), now_ms);
        if (outcome.reject == RejectReason::kNone) {
          absl::StatusOr<std::optional<std::string>> owner =
              HandleOwner(tx, outcome.product.handle);
          if (!owner.ok()) return owner.status();
          if (owner->has_value() && **owner != update.product_id) {
            outcome.reject = RejectReason::kHandleTaken;
            outcome.message =
                fmt::format("handle {} belongs to product {}", outcome.product.handle, **owner);
          }
        }
        if (outcome.reject == RejectReason::kNone) {
          for (const Variant& variant : outcome.product.variants) {
            absl::StatusOr<std::optional<std::string>> owner = SkuOwner(tx, variant.sku);
            if (!owner.ok()) return owner.status();
            if (owner->has_value() && **owner != update.product_id) {
              outcome.reject = RejectReason::kSkuTaken;
              outcome.message = fmt::format("SKU {} belongs to product {}", variant.sku, **owner);
              break;
            }
          }
        }
        if (outcome.reject != RejectReason::kNone) {
          absl::StatusOr<bool> marked =
              RejectInTx(tx, update, current_product ? current_product->version : 0, outcome.reject,
                         outcome.message, now_ms);
          if (!marked.ok()) return marked.status();
          if (!*marked) continue;  // settled by an earlier run: a redelivery
          ++result->rejected;
          continue;
        }
        absl::StatusOr<bool> marked =
            MarkUpdateApplied(tx, update.seq, outcome.product.version, now_ms);
        if (!marked.ok()) return marked.status();
        if (!*marked) continue;  // a redelivery: already applied
        // Serialized once: the stored document, and with the rating the event's payload.
        ProductJsonText document = ProductToJsonText(outcome.product);
        StoredProduct stored;
        stored.rating = current->has_value() ? (*current)->rating : RatingSummary{};
        stored.update_seq = update.seq;
        bus::Envelope envelope;
        envelope.id = event_ids[i];
        envelope.type = std::string(kProductChangedType);
        envelope.source = "catalog";
        envelope.key = update.product_id;
        envelope.correlation_id = update.id;
        envelope.causation_id = update.id;
        envelope.occurred_at_ms = now_ms;
        envelope.payload = ProductReadJsonText(document, stored.rating);
        if (absl::Status status =
                SaveProduct(tx, outcome.product, update.seq,
                            current->has_value() ? SaveMode::kReplace : SaveMode::kNew,
                            std::move(document.text));
            !status.ok()) {
          return status;
        }
        envelopes.push_back(std::move(envelope));
        stored.product = std::move(outcome.product);
        // Also before the commit makes the update visible as applied: a reader who then reads
        // the product must not get the previous version from the cache while this thread is
        // still on its way to the invalidation after the commit (that one drops whatever a
        // reader concurrent with the commit cached from the old snapshot). On a rollback this
        // costs only cache misses.
        const std::string old_handle =
            current->has_value() ? (*current)->product.handle : std::string();
        service_.InvalidateProduct(stored.product.id, stored.product.handle);
        if (!old_handle.empty()) service_.InvalidateProduct(stored.product.id, old_handle);
        result->changes.push_back(Change{std::move(stored), old_handle});
        ++result->applied;
      }
      return bus::PublishAll(tx, envelopes);
    };
    database_.SubmitWrite(std::move(body), [result, shared](absl::Status status) {
      std::lock_guard lock(shared->mutex);
      result->status = std::move(status);
      --shared->remaining;
      shared->done.notify_all();
    });
  }
  // While the writer commits this batch, this thread reads and prepares the next one (unless
  // isolating a poison update, one at a time) and the search index takes the previous one.
  if (isolate_through_seq_ == 0) PrefetchAfter(updates.back().seq);
  IndexPending();
  {
    std::unique_lock lock(shared->mutex);
    shared->done.wait(lock, [&shared] { return shared->remaining == 0; });
  }

  absl::Status failure;
  size_t failed_job = job_count;
  bool held = false;
  int64_t applied = 0;
  int64_t rejected = 0;
  std::vector<Change> changes;
  for (size_t job = 0; job < job_count; ++job) {
    JobResult& result = results[job];
    if (!result.status.ok()) {
      if (failed_job == job_count) {
        failed_job = job;
        failure = result.status;
      }
      continue;
    }
    applied += result.applied;
    rejected += result.rejected;
    held = held || result.held;
    for (Change& change : result.changes) changes.push_back(std::move(change));
  }
  applied_.fetch_add(applied);
  rejected_.fetch_add(rejected);

  // After the commit: readers must never see a cached version older than the store.
  for (const Change& change : changes) {
    service_.InvalidateProduct(change.product.product.id, change.product.product.handle);
    if (!change.old_handle.empty() && change.old_handle != change.product.product.handle) {
      service_.InvalidateProduct(change.product.product.id, change.old_handle);
    }
  }
  // The index may record this batch's last seq only when every earlier update settled: a
  // restart catches up from the recorded seq.
  const int64_t index_seq = failed_job == job_count && !held ? updates.back().seq
                            : failed_job < job_count ? updates[failed_job * job_size].seq - 1
                                                     : pending_index_seq_;
  pending_index_seq_ = std::max(pending_index_seq_, index_seq);
  for (Change& change : changes) pending_index_.push_back(std::move(change.product));

  if (failed_job == job_count) {
    if (held) {
      // Cannot happen without a failed job; say so rather than loop.
      return {absl::InternalError("updates held behind a settled update")};
    }
    return {static_cast<int64_t>(updates.size())};
  }
  const size_t failed_first = failed_job * job_size;
  const size_t failed_end = std::min(updates.size(), failed_first + job_size);
  if (failed_end - failed_first == 1) return {failure, &updates[failed_first]};
  if (!IsTransientFailure(failure)) {
    // Which update of the failed job is the poison is unknown: retry them one at a time.
    isolate_through_seq_ = updates[failed_end - 1].seq;
  }
  return {failure};
}

void Processor::IndexPending() {
  if (pending_index_.empty()) return;
  std::vector<StoredProduct> products = std::move(pending_index_);
  pending_index_.clear();
  if (search_ == nullptr || search_->state() != SearchIndex::State::kReady) return;
  if (absl::Status status = search_->Apply(products, pending_index_seq_); !status.ok()) {
    std::lock_guard lock(mutex_);
    last_error_ = std::string(status.message());
  }
}

absl::Status Processor::Drain(int64_t batches_max) {
  for (int64_t batch = 0; batch < batches_max; ++batch) {
    absl::StatusOr<int64_t> settled = RunOnce();
    if (!settled.ok()) return settled.status();
    if (*settled == 0) return absl::OkStatus();
  }
  return absl::DeadlineExceededError("queue did not drain within the batch bound");
}

absl::Status Processor::CatchUpSearch() {
  if (search_ == nullptr || search_->state() != SearchIndex::State::kReady) {
    return absl::OkStatus();
  }
  int64_t after = search_->last_update_seq();
  while (true) {
    std::vector<StoredProduct> page;
    absl::Status read = database_.Read([&](sql::Transaction& tx) {
      absl::StatusOr<std::vector<StoredProduct>> loaded =
          ProductsChangedAfter(tx, after, options_.search_page_size);
      if (!loaded.ok()) return loaded.status();
      page = std::move(*loaded);
      return absl::OkStatus();
    });
    if (!read.ok()) return read;
    if (page.empty()) return absl::OkStatus();
    after = page.back().update_seq;
    if (absl::Status status = search_->Apply(page, after); !status.ok()) return status;
  }
}

absl::Status Processor::RebuildSearch() {
  if (search_ == nullptr) return absl::FailedPreconditionError("no search index");
  return search_->Rebuild([this](int64_t after) -> absl::StatusOr<std::vector<StoredProduct>> {
    std::vector<StoredProduct> page;
    absl::Status read = database_.Read([&](sql::Transaction& tx) {
      absl::StatusOr<std::vector<StoredProduct>> loaded =
          ProductsChangedAfter(tx, after, options_.search_page_size);
      if (!loaded.ok()) return loaded.status();
      page = std::move(*loaded);
      return absl::OkStatus();
    });
    if (!read.ok()) return read;
    return page;
  });
}

}  // namespace emporium::catalog
