#include "platform/bus/consumer.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "platform/obs/metrics.h"

namespace emporium::bus {
namespace {

constexpr std::string_view kInsertInbox =
    "INSERT INTO inbox(consumer, message_id, processed_at_ms) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING";
// id = MAX(id) + 1 under the single writer: see schema.h.
constexpr std::string_view kInsertDeadLetter =
    "INSERT INTO dead_letters(id, consumer, message_id, type, envelope, error, attempts, "
    "failed_at_ms, replayed_at_ms) "
    "SELECT COALESCE(MAX(id), 0) + 1, ?, ?, ?, ?, ?, ?, ?, NULL FROM dead_letters";
constexpr std::string_view kSelectDeadLetterForReplay =
    "SELECT consumer, envelope, replayed_at_ms FROM dead_letters WHERE id = ?";
constexpr std::string_view kMarkReplayed =
    "UPDATE dead_letters SET replayed_at_ms = ? WHERE id = ? AND replayed_at_ms IS NULL";
constexpr std::string_view kCountDeadLetters =
    "SELECT COUNT(*) FROM dead_letters WHERE consumer = ? AND replayed_at_ms IS NULL";
constexpr std::string_view kListDeadLettersColumns =
    "SELECT id, consumer, message_id, type, envelope, error, attempts, failed_at_ms, "
    "replayed_at_ms FROM dead_letters WHERE id > ?";

// Longest handler error kept in dead_letters.error.
constexpr size_t kDeadLetterErrorBytesMax = 2000;

std::string Fnv1a64Hex(std::string_view bytes) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", hash);
}

// Handlers are our own code and should not throw, but a throw on the writer thread would take
// the whole database down; it becomes an Internal error of this one message instead.
absl::Status RunHandler(const MessageHandler& handler, sql::Transaction& tx,
                        const Envelope& envelope) {
  try {
    return handler(tx, envelope);
  } catch (const std::exception& e) {
    return absl::InternalError(fmt::format("bus: handler threw: {}", e.what()));
  } catch (...) {
    return absl::InternalError("bus: handler threw a non-standard exception");
  }
}

}  // namespace

struct Consumer::Item {
  enum class Outcome { kNone, kHandled, kDuplicate, kDeadLettered, kFailed, kDeferred };

  std::string_view raw;
  Envelope envelope;
  bool malformed = false;
  int failures = 0;
  std::string last_error;
  bool finished = false;
  // Results of the current round, written by the job and the done callback.
  Outcome outcome = Outcome::kNone;
  absl::Status done_status;
};

struct Consumer::Round {
  std::mutex mutex;
  std::condition_variable cv;
  // Keys whose message failed earlier in this round; written and read only by jobs, which the
  // single writer runs one after another, but guarded anyway.
  absl::flat_hash_set<std::string> blocked_keys;
  int64_t outstanding = 0;
};

Consumer::Consumer(std::string name, sql::Database& db, MessageHandler handler,
                   ConsumerOptions options)
    : name_(std::move(name)), db_(db), handler_(std::move(handler)), options_(options) {
  if (options_.metrics != nullptr) {
    obs::Labels labels = {{"consumer", name_}};
    lag_ms_ = &options_.metrics->GetGauge(
        "emporium_bus_consumer_lag_ms",
        "Age of the oldest message in the batch a consumer is working on (0 when idle).", labels);
    const std::pair<Outcome, const char*> outcomes[] = {{Outcome::kHandled, "handled"},
                                                        {Outcome::kDuplicate, "duplicate"},
                                                        {Outcome::kDeadLettered, "dead_lettered"},
                                                        {Outcome::kRetried, "retried"}};
    for (const auto& [outcome, label] : outcomes) {
      outcome_counters_[static_cast<size_t>(outcome)] = &options_.metrics->GetCounter(
          "emporium_bus_messages_total", "Messages a consumer finished, by outcome.",
          {{"consumer", name_}, {"outcome", label}});
    }
    dead_letter_gauge_id_ = options_.metrics->AddCallbackGauge(
        "emporium_bus_dead_letters", "Dead letters not yet replayed, per consumer.", labels,
        [this]() -> int64_t {
          absl::StatusOr<int64_t> count = CountDeadLetters(db_, name_);
          return count.ok() ? *count : -1;
        });
  }
}

Consumer::~Consumer() {
  if (dead_letter_gauge_id_.has_value()) {
    options_.metrics->RemoveCallbackGauge(*dead_letter_gauge_id_);
  }
}

void Consumer::Count(Outcome outcome, int64_t by) {
  obs::Counter* counter = outcome_counters_[static_cast<size_t>(outcome)];
  if (counter == nullptr || by == 0) return;
  counter->Increment(by);
}

void Consumer::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
}

bool Consumer::WaitBackoff(absl::Duration wait) {
  std::unique_lock<std::mutex> lock(stop_mutex_);
  stop_cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [this] { return stopping_; });
  return !stopping_;
}

absl::Status Consumer::HandleBatch(const std::vector<std::string_view>& messages) {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    if (stopping_) return absl::UnavailableError(fmt::format("bus: consumer {} stopped", name_));
  }
  if (messages.empty()) return absl::OkStatus();
  std::vector<Item> items(messages.size());
  int64_t oldest_ms = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < messages.size(); ++i) {
    Item& item = items[i];
    item.raw = messages[i];
    absl::StatusOr<Envelope> parsed = Deserialize(messages[i]);
    if (parsed.ok()) {
      item.envelope = *std::move(parsed);
      oldest_ms = std::min(oldest_ms, item.envelope.occurred_at_ms);
    } else {
      item.malformed = true;
      item.envelope.id = "malformed:" + Fnv1a64Hex(messages[i]);
      item.last_error = parsed.status().ToString();
    }
  }
  if (lag_ms_ != nullptr && oldest_ms != std::numeric_limits<int64_t>::max()) {
    lag_ms_->Set(std::max<int64_t>(0, options_.clock->NowMs() - oldest_ms));
  }

  std::vector<Item*> pending;
  pending.reserve(items.size());
  for (Item& item : items) pending.push_back(&item);
  // Every round finishes the first pending message or adds a failure to it, so this bound is
  // never reached unless the database misbehaves.
  const int64_t rounds_max =
      static_cast<int64_t>(items.size()) * (options_.retry.attempts_max + 1) + 1;
  absl::Status result = absl::OkStatus();
  for (int64_t round = 0;; ++round) {
    if (round >= rounds_max) {
      result = absl::InternalError(fmt::format("bus: consumer {} made no progress", name_));
      break;
    }
    result = RunRound(pending);
    if (!result.ok() || pending.empty()) break;
    int failures_max = 0;
    for (const Item* item : pending) failures_max = std::max(failures_max, item->failures);
    if (!WaitBackoff(options_.retry.BackoffAfter(std::max(failures_max, 1)))) {
      result = absl::UnavailableError(fmt::format("bus: consumer {} stopped", name_));
      break;
    }
  }
  if (lag_ms_ != nullptr) lag_ms_->Set(0);
  return result;
}

absl::Status Consumer::RunRound(std::vector<Item*>& pending) {
  Round round;
  {
    std::lock_guard<std::mutex> lock(round.mutex);
    round.outstanding = static_cast<int64_t>(pending.size());
  }
  for (Item* item : pending) {
    item->outcome = Item::Outcome::kNone;
    const Action action = item->malformed || item->failures >= options_.retry.attempts_max
                              ? Action::kDeadLetter
                              : Action::kHandle;
    db_.SubmitWrite([this, item, action,
                     &round](sql::Transaction& tx) { return RunJob(tx, *item, action, round); },
                    [item, &round](absl::Status status) {
                      std::lock_guard<std::mutex> lock(round.mutex);
                      item->done_status = std::move(status);
                      if (--round.outstanding == 0) round.cv.notify_all();
                    });
  }
  {
    // The Database calls every done callback exactly once (even when closing), so this wait
    // ends.
    std::unique_lock<std::mutex> lock(round.mutex);
    round.cv.wait(lock, [&round] { return round.outstanding == 0; });
  }

  absl::Status infrastructure_error;
  int64_t handled = 0, duplicates = 0, dead_lettered = 0, failed = 0;
  std::vector<Item*> still_pending;
  for (Item* item : pending) {
    switch (item->outcome) {
      case Item::Outcome::kHandled:
      case Item::Outcome::kDuplicate:
      case Item::Outcome::kDeadLettered:
        if (item->done_status.ok()) {
          item->finished = true;
          handled += item->outcome == Item::Outcome::kHandled ? 1 : 0;
          duplicates += item->outcome == Item::Outcome::kDuplicate ? 1 : 0;
          dead_lettered += item->outcome == Item::Outcome::kDeadLettered ? 1 : 0;
        } else if (infrastructure_error.ok()) {
          infrastructure_error = item->done_status;
        }
        break;
      case Item::Outcome::kFailed:
        ++item->failures;
        ++failed;
        break;
      case Item::Outcome::kDeferred:
        break;
      case Item::Outcome::kNone:
        if (infrastructure_error.ok()) {
          infrastructure_error = item->done_status.ok()
                                     ? absl::InternalError("bus: write job did not run")
                                     : item->done_status;
        }
        break;
    }
    if (!item->finished) still_pending.push_back(item);
  }
  Count(Outcome::kHandled, handled);
  Count(Outcome::kDuplicate, duplicates);
  Count(Outcome::kDeadLettered, dead_lettered);
  Count(Outcome::kRetried, failed);
  pending = std::move(still_pending);
  if (!infrastructure_error.ok()) {
    return absl::UnavailableError(fmt::format("bus: consumer {} could not commit: {}", name_,
                                              infrastructure_error.ToString()));
  }
  return absl::OkStatus();
}

absl::Status Consumer::RunJob(sql::Transaction& tx, Item& item, Action action, Round& round) {
  {
    std::lock_guard<std::mutex> lock(round.mutex);
    if (round.blocked_keys.contains(item.envelope.key)) {
      item.outcome = Item::Outcome::kDeferred;
      return absl::AbortedError("bus: deferred behind an earlier message of the same key");
    }
  }
  const int64_t now_ms = options_.clock->NowMs();
  ASSIGN_OR_RETURN(int64_t inserted, tx.Execute(kInsertInbox, {name_, item.envelope.id, now_ms}));
  if (inserted == 0) {
    item.outcome = Item::Outcome::kDuplicate;
    return absl::OkStatus();
  }
  switch (action) {
    case Action::kDeadLetter: {
      std::string error = item.last_error.substr(0, kDeadLetterErrorBytesMax);
      RETURN_IF_ERROR(
          tx.Execute(kInsertDeadLetter,
                     {name_, item.envelope.id, item.envelope.type, sql::Blob{std::string(item.raw)},
                      std::move(error), static_cast<int64_t>(item.failures), now_ms})
              .status());
      item.outcome = Item::Outcome::kDeadLettered;
      return absl::OkStatus();
    }
    case Action::kHandle:
      break;
  }
  absl::Status status = RunHandler(handler_, tx, item.envelope);
  if (!status.ok()) {
    std::lock_guard<std::mutex> lock(round.mutex);
    round.blocked_keys.insert(item.envelope.key);
    item.outcome = Item::Outcome::kFailed;
    item.last_error = status.ToString();
    return status;
  }
  item.outcome = Item::Outcome::kHandled;
  return absl::OkStatus();
}

absl::Status Consumer::ReplayDeadLetter(int64_t id) {
  return bus::ReplayDeadLetter(db_, id, name_, handler_, options_.clock->NowMs());
}

absl::Status ReplayDeadLetter(sql::Database& db, int64_t id, std::string_view consumer,
                              const MessageHandler& handler, int64_t now_ms) {
  absl::Status job_status;
  absl::Status write_status = db.Write([&](sql::Transaction& tx) -> absl::Status {
    job_status = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(sql::ResultSet found, tx.Query(kSelectDeadLetterForReplay, {id}));
      if (found.rows.empty()) {
        return absl::NotFoundError(fmt::format("bus: no dead letter {}", id));
      }
      const sql::Row& row = found.rows[0];
      if (row.Text(0) != consumer) {
        return absl::FailedPreconditionError(
            fmt::format("bus: dead letter {} belongs to consumer {}", id, row.Text(0)));
      }
      if (!row.IsNull(2)) {
        return absl::FailedPreconditionError(
            fmt::format("bus: dead letter {} was already replayed", id));
      }
      ASSIGN_OR_RETURN(Envelope envelope, Deserialize(row.Text(1)));
      RETURN_IF_ERROR(RunHandler(handler, tx, envelope));
      RETURN_IF_ERROR(tx.Execute(kMarkReplayed, {now_ms, id}).status());
      return absl::OkStatus();
    }();
    return job_status;
  });
  if (!job_status.ok()) return job_status;
  return write_status;
}

absl::StatusOr<int64_t> CountDeadLetters(sql::Database& db, std::string_view consumer) {
  int64_t count = 0;
  RETURN_IF_ERROR(db.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(kCountDeadLetters, {std::string(consumer)}));
    if (!result.rows.empty()) count = result.rows[0].Int(0);
    return absl::OkStatus();
  }));
  return count;
}

absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(sql::Database& db,
                                                        const DeadLetterQuery& query) {
  std::string sql(kListDeadLettersColumns);
  std::vector<sql::Value> params = {query.after_id};
  if (query.consumer.has_value()) {
    sql += " AND consumer = ?";
    params.emplace_back(*query.consumer);
  }
  switch (query.state) {
    case DeadLetterState::kPending:
      sql += " AND replayed_at_ms IS NULL";
      break;
    case DeadLetterState::kReplayed:
      sql += " AND replayed_at_ms IS NOT NULL";
      break;
    case DeadLetterState::kAny:
      break;
  }
  sql += " ORDER BY id LIMIT ?";
  params.emplace_back(std::clamp<int64_t>(query.limit, 1, kDeadLetterPageMax));
  std::vector<DeadLetter> letters;
  RETURN_IF_ERROR(db.Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(sql, params));
    for (const sql::Row& row : result.rows) {
      letters.push_back(DeadLetter{row.Int(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4),
                                   row.Text(5), row.Int(6), row.Int(7), row.OptionalInt(8)});
    }
    return absl::OkStatus();
  }));
  return letters;
}

}  // namespace emporium::bus
