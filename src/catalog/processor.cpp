#include "catalog/processor.h"

#include <set>

#include "common/format.h"
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
  thread_ = std::thread([this] { Loop(); });
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
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      reindex = reindex_requested_;
      reindex_requested_ = false;
      notified_ = false;
    }
    if (reindex) {
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
  absl::Status read = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::vector<QueuedUpdate>> loaded =
        LoadQueuedUpdates(tx, 0, isolate_through_seq_ > 0 ? 1 : options_.batch_updates_max);
    if (!loaded.ok()) return loaded.status();
    updates = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  if (updates.empty()) {
    isolate_through_seq_ = 0;
    return 0;
  }
  if (updates.front().seq > isolate_through_seq_) isolate_through_seq_ = 0;

  absl::StatusOr<int64_t> settled = ApplyBatch(updates);
  if (settled.ok()) {
    if (failing_seq_ != 0 && failing_seq_ <= updates.back().seq) {
      failing_seq_ = 0;
      failing_attempts_ = 0;
    }
    return settled;
  }
  if (IsTransientFailure(settled.status())) return settled.status();
  if (updates.size() > 1) {
    // Which update is the poison is unknown: retry this batch's updates one at a time.
    isolate_through_seq_ = updates.back().seq;
    return settled.status();
  }
  const QueuedUpdate& update = updates.front();
  if (failing_seq_ != update.seq) {
    failing_seq_ = update.seq;
    failing_attempts_ = 0;
  }
  if (++failing_attempts_ < options_.update_attempts_max) return settled.status();
  if (absl::Status status = RejectPoison(update, settled.status()); !status.ok()) return status;
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

absl::StatusOr<int64_t> Processor::ApplyBatch(const std::vector<QueuedUpdate>& updates) {
  const int64_t now_ms = clock_.NowMs();
  std::vector<Change> changes;
  int64_t applied = 0;
  int64_t rejected = 0;
  // Event ids are drawn outside the job so its body is a pure function of the database.
  std::vector<std::string> event_ids;
  event_ids.reserve(updates.size());
  for (size_t i = 0; i < updates.size(); ++i) event_ids.push_back(ids_.Next());

  absl::Status written = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    changes.clear();
    applied = 0;
    rejected = 0;
    for (size_t i = 0; i < updates.size(); ++i) {
      const QueuedUpdate& update = updates[i];
      absl::StatusOr<std::optional<StoredProduct>> current = LoadProduct(tx, update.product_id);
      if (!current.ok()) return current.status();
      absl::StatusOr<Json> payload = ParseJson(update.payload);
      if (!payload.ok())
        return absl::DataLossError(fmt::format("update {}: bad payload", update.id));
      std::optional<Product> current_product;
      if (current->has_value()) current_product = (*current)->product;
      UpdateOutcome outcome = ApplyUpdate(current_product, update.kind, update.product_id, *payload,
                                          update.base_version, now_ms);
      if (outcome.reject == RejectReason::kNone) {
        absl::StatusOr<std::optional<std::string>> owner = HandleOwner(tx, outcome.product.handle);
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
        ++rejected;
        continue;
      }
      absl::StatusOr<bool> marked =
          MarkUpdateApplied(tx, update.seq, outcome.product.version, now_ms);
      if (!marked.ok()) return marked.status();
      if (!*marked) continue;  // a redelivery: already applied
      if (absl::Status status = SaveProduct(tx, outcome.product, update.seq); !status.ok()) {
        return status;
      }
      StoredProduct stored;
      stored.product = std::move(outcome.product);
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
      envelope.payload = DumpJson(ProductReadJson(stored.product, stored.rating));
      if (absl::Status status = bus::Publish(tx, envelope); !status.ok()) return status;
      changes.push_back(Change{std::move(stored),
                               current->has_value() ? (*current)->product.handle : std::string()});
      ++applied;
    }
    // Also before the commit makes the update visible as applied: a reader who then reads the
    // product must not get the previous version from the cache while this thread is still on
    // its way to the invalidation below (that one drops whatever a reader concurrent with the
    // commit cached from the old snapshot). On a rollback this costs only cache misses.
    for (const Change& change : changes) {
      service_.InvalidateProduct(change.product.product.id, change.product.product.handle);
      if (!change.old_handle.empty()) {
        service_.InvalidateProduct(change.product.product.id, change.old_handle);
      }
    }
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  applied_.fetch_add(applied);
  rejected_.fetch_add(rejected);

  // After the commit: readers must never see a cached version older than the store.
  for (const Change& change : changes) {
    service_.InvalidateProduct(change.product.product.id, change.product.product.handle);
    if (!change.old_handle.empty() && change.old_handle != change.product.product.handle) {
      service_.InvalidateProduct(change.product.product.id, change.old_handle);
    }
  }
  if (search_ != nullptr && search_->state() == SearchIndex::State::kReady && !changes.empty()) {
    std::vector<StoredProduct> products;
    products.reserve(changes.size());
    for (Change& change : changes) products.push_back(std::move(change.product));
    if (absl::Status status = search_->Apply(products, updates.back().seq); !status.ok()) {
      std::lock_guard lock(mutex_);
      last_error_ = std::string(status.message());
    }
  }
  return static_cast<int64_t>(updates.size());
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
