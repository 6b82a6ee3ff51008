#include "inventory/shard_engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "common/errors.h"
#include "common/one_shot.h"
#include "common/thread_name.h"
#include "fmt/format.h"

namespace emporium::inventory {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

size_t HashToShard(const std::string& key, size_t shard_count) {
  return absl::Hash<std::string>{}(key) % shard_count;
}

}  // namespace

bool IsQueueFull(const absl::Status& status) {
  return absl::IsUnavailable(status) && ErrorCode(status) == std::string(kQueueFullCode);
}

struct ShardEngine::Index {
  mutable std::mutex mutex;
  absl::flat_hash_map<ReservationId, size_t> reservation_shard;
  absl::flat_hash_map<OrderId, size_t> order_shard;
};

struct ShardEngine::Sweeper {
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
};

// One writer: a bounded queue, an InventoryState, a thread.
class ShardEngine::Shard {
 public:
  // A queued unit of work: a command, an expiry sweep, or a location to learn.
  struct Item {
    std::variant<Command, std::monostate, Location> work;  // monostate = expiry sweep
    CommandCallback done;
    CommandOrigin origin{};
  };

  Shard(ShardEngine& engine, size_t index) : engine_(engine), index_(index) {}

  absl::Status Load() {
    state_ = InventoryState();
    std::vector<ReservationId> legacy_lines;
    absl::Status loaded = engine_.store_.LoadInto(
        state_, [this](const Sku& sku) { return engine_.ShardOf(sku) == index_; }, &legacy_lines);
    legacy_lines_ = absl::flat_hash_set<ReservationId>(legacy_lines.begin(), legacy_lines.end());
    return loaded;
  }

  // Registers the shard's reservations and orders in the engine's routing index.
  void IndexLoaded() {
    state_.ForEachReservation([this](const Reservation& reservation) {
      engine_.NoteReservation(reservation.id, index_);
      if (!reservation.order_id.empty()) engine_.NoteOrder(reservation.order_id, index_);
    });
  }

  void StartThread() {
    thread_ = std::thread([this] {
      SetCurrentThreadName(fmt::format("inv-shard:{}", index_));
      Run();
    });
  }

  void Enqueue(Item item) {
    absl::Status refused = absl::OkStatus();
    bool wake = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) {
        refused = absl::UnavailableError("inventory engine is stopping");
      } else if (queue_.size() >= engine_.options_.queue_capacity) {
        refused = WithErrorCode(absl::UnavailableError(fmt::format(
                                    "inventory shard {} queue is full ({} commands); retry later",
                                    index_, engine_.options_.queue_capacity)),
                                kQueueFullCode);
        queue_full_rejections.fetch_add(1);
      } else {
        queue_.push_back(std::move(item));
        // The writer waits only for a first command, or (lingering) for linger_target_ of
        // them: one wake-up each, not one per command.
        wake = queue_.size() == 1 || queue_.size() == linger_target_;
      }
    }
    // Answered outside the lock: the callback may submit again.
    if (!refused.ok()) {
      Reject(std::move(item), std::move(refused));
      return;
    }
    if (wake) wake_.notify_one();
  }

  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<int64_t> batches_committed{0};
  std::atomic<int64_t> commands_applied{0};
  std::atomic<int64_t> commit_failures{0};
  std::atomic<int64_t> batch_commands_largest{0};
  std::atomic<int64_t> queue_full_rejections{0};

 private:
  static void Reject(Item item, absl::Status status) {
    CommandResult result;
    result.status = std::move(status);
    if (item.done) item.done(std::move(result));
  }

  void Run() {
    std::vector<Item> batch;
    const auto linger = std::chrono::microseconds(engine_.options_.batch_linger_us);
    size_t last_batch_size = 0;
    while (true) {
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
        if (queue_.empty()) return;  // stopping, and everything queued was answered
        // Fewer commands queued than the last batch answered: most of those callers are
        // about to submit their next command (closed loops), so wait a bounded moment for them
        // and commit them together instead of in two batches.
        const size_t target = std::min(last_batch_size, engine_.options_.batch_commands_max);
        if (linger.count() > 0 && queue_.size() < target && !stopping_) {
          linger_target_ = target;
          wake_.wait_for(lock, linger,
                         [this, target] { return queue_.size() >= target || stopping_; });
          linger_target_ = 0;
        }
        const size_t count = std::min(queue_.size(), engine_.options_.batch_commands_max);
        last_batch_size = count;
        batch.clear();
        for (size_t i = 0; i < count; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      ProcessBatch(batch);
    }
  }

  void ProcessBatch(std::vector<Item>& batch) {
    std::vector<CommandResult> results;
    results.reserve(batch.size());
    absl::Status status = absl::OkStatus();
    if (!healthy_) {
      // A previous reload failed: try again before applying anything on top of stale state.
      status = Load();
      if (status.ok()) healthy_ = true;
    }
    const int64_t now_ms = engine_.clock_.NowMs();
    BatchRecord record;
    if (status.ok()) {
      for (Item& item : batch) {
        results.push_back(Apply(item.work, now_ms));
        const std::vector<LedgerEntry>& entries = results.back().entries;
        record.entries.insert(record.entries.end(), entries.begin(), entries.end());
      }
      InventoryState::Changes changes = state_.TakeChanges();
      for (const StockKey& key : changes.stock) record.stock.push_back(*state_.FindStock(key));
      // Only reservations stored before migration 0005 have line rows to delete; the shard
      // learnt which at load and forgets each once a committed batch rewrote it.
      record.legacy_lines.emplace();
      for (const ReservationId& id : changes.reservations) {
        record.reservations.push_back(*state_.FindReservation(id));
        if (legacy_lines_.contains(id)) record.legacy_lines->push_back(id);
      }
      std::sort(record.legacy_lines->begin(), record.legacy_lines->end());
      if (engine_.options_.verify_invariants_each_batch) {
        if (absl::Status check = state_.CheckInvariants(); !check.ok()) {
          std::fprintf(stderr, "inventory shard %zu: invariant broken: %s\n", index_,
                       check.ToString().c_str());
          std::abort();
        }
      }
      const auto& hook = engine_.options_.batch_hook;
      bool has_command = false;
      for (const Item& item : batch) {
        if (std::holds_alternative<Command>(item.work)) has_command = true;
      }
      // A batch of refused commands changes no rows but still has events to publish and queue
      // rows to consume, so the hook gets a transaction whenever the batch held a command.
      if (!record.empty() || (hook && has_command)) {
        BatchView view;
        if (hook) view = MakeView(batch, results, record, now_ms);
        status = engine_.db_.Write([&record, &hook, &view](sql::Transaction& transaction) {
          if (absl::Status written = InventoryStore::WriteBatch(transaction, record);
              !written.ok()) {
            return written;
          }
          return hook ? hook(transaction, view) : absl::OkStatus();
        });
      }
    }
    if (!status.ok()) {
      commit_failures.fetch_add(1);
      // Roll the in-memory state back to what is durable.
      absl::Status reload = Load();
      healthy_ = reload.ok();
      absl::Status answer = absl::UnavailableError(
          fmt::format("inventory batch not committed: {}", status.ToString()));
      for (Item& item : batch) Reject(std::move(item), answer);
      return;
    }
    if (record.legacy_lines.has_value()) {
      for (const ReservationId& id : *record.legacy_lines) legacy_lines_.erase(id);
    }
    batches_committed.fetch_add(1);
    commands_applied.fetch_add(static_cast<int64_t>(batch.size()));
    int64_t largest = batch_commands_largest.load();
    const int64_t size = static_cast<int64_t>(batch.size());
    while (size > largest && !batch_commands_largest.compare_exchange_weak(largest, size)) {
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].done) batch[i].done(std::move(results[i]));
    }
  }

  BatchView MakeView(const std::vector<Item>& batch, const std::vector<CommandResult>& results,
                     const BatchRecord& record, int64_t now_ms) const {
    BatchView view;
    view.now_ms = now_ms;
    for (size_t i = 0; i < batch.size(); ++i) {
      const Item& item = batch[i];
      if (std::holds_alternative<Location>(item.work)) continue;
      const Command* command = std::get_if<Command>(&item.work);
      view.applied.push_back(
          AppliedCommand{.command = command, .origin = &item.origin, .result = &results[i]});
    }
    std::vector<Sku> skus;
    for (const StockLevel& level : record.stock) skus.push_back(level.sku);
    std::sort(skus.begin(), skus.end());
    skus.erase(std::unique(skus.begin(), skus.end()), skus.end());
    for (const Sku& sku : skus) {
      SkuTotals totals{.sku = sku};
      for (const StockLevel& level : state_.StockForSku(sku)) {
        totals.on_hand += level.on_hand;
        totals.reserved += level.reserved;
        totals.allocated += level.allocated;
      }
      view.changed_skus.push_back(std::move(totals));
    }
    return view;
  }

  CommandResult Apply(const std::variant<Command, std::monostate, Location>& work, int64_t now_ms) {
    CommandResult result;
    std::visit(Overloaded{
                   [&](const Command& command) { result = ApplyCommand(command, now_ms); },
                   [&](std::monostate) {
                     ExpireResult expired =
                         state_.ExpireDue(now_ms, engine_.options_.expire_per_sweep_max);
                     result.outcome = std::monostate{};
                     result.expired = std::move(expired.expired);
                     result.entries = std::move(expired.entries);
                   },
                   [&](const Location& location) { state_.UpsertLocation(location); },
               },
               work);
    return result;
  }

  void CopyReservation(const ReservationId& id, CommandResult& result) const {
    if (const Reservation* reservation = state_.FindReservation(id)) {
      result.reservation = *reservation;
    }
  }

  CommandResult ApplyCommand(const Command& command, int64_t now_ms) {
    CommandResult result;
    auto take = [&result](auto op) {
      result.outcome = op.outcome;
      result.entries = std::move(op.entries);
    };
    std::visit(Overloaded{
                   [&](const cmd::Receive& c) {
                     take(state_.Receive(c.sku, c.location, c.quantity, c.reference, now_ms));
                   },
                   [&](const cmd::Adjust& c) {
                     take(state_.Adjust(c.sku, c.location, c.delta, c.reference, now_ms));
                   },
                   [&](const cmd::Reserve& c) {
                     if (c.ttl_ms <= 0 || c.ttl_ms > kReservationTtlMaxMs) {
                       result.outcome = ReserveOutcome::kInvalidRequest;
                       return;
                     }
                     ReserveResult reserved =
                         state_.Reserve(ReserveRequest{.id = c.id,
                                                       .lines = c.lines,
                                                       .region = c.region,
                                                       .expires_at_ms = now_ms + c.ttl_ms,
                                                       .replaces = c.replaces},
                                        now_ms);
                     if (reserved.outcome == ReserveOutcome::kReserved) {
                       engine_.NoteReservation(c.id, index_);
                     }
                     result.outcome = reserved.outcome;
                     result.short_skus = std::move(reserved.short_skus);
                     result.unknown_skus = std::move(reserved.unknown_skus);
                     result.released_replaced = reserved.released_replaced;
                     result.reservation = std::move(reserved.reservation);
                     result.entries = std::move(reserved.entries);
                   },
                   [&](const cmd::Extend& c) {
                     if (c.ttl_ms <= 0 || c.ttl_ms > kReservationTtlMaxMs) {
                       result.outcome = ExtendOutcome::kInvalidRequest;
                       return;
                     }
                     take(state_.Extend(c.id, now_ms + c.ttl_ms, now_ms));
                     CopyReservation(c.id, result);
                   },
                   [&](const cmd::Release& c) {
                     take(state_.Release(c.id, now_ms));
                     CopyReservation(c.id, result);
                   },
                   [&](const cmd::Allocate& c) {
                     AllocateResult allocated = state_.Allocate(c.id, c.order_id, now_ms);
                     if (allocated.outcome == AllocateOutcome::kAllocated) {
                       engine_.NoteOrder(c.order_id, index_);
                     }
                     take(std::move(allocated));
                     CopyReservation(c.id, result);
                   },
                   [&](const cmd::CancelAllocation& c) {
                     take(state_.CancelAllocation(c.order_id, now_ms));
                   },
                   [&](const cmd::Ship& c) {
                     take(state_.Ship(c.order_id, c.shipment_id, c.lines, now_ms));
                   },
                   [&](const cmd::Deliver& c) { take(state_.Deliver(c.order_id, now_ms)); },
                   [&](const cmd::Return& c) {
                     take(state_.Return(c.order_id, c.return_id, c.lines, now_ms));
                   },
               },
               command);
    return result;
  }

  ShardEngine& engine_;
  const size_t index_;
  InventoryState state_;  // touched only by the writer thread (and by Load before it starts)
  // Ids with rows in the pre-0005 reservation_lines table (as state_, writer thread only).
  absl::flat_hash_set<ReservationId> legacy_lines_;
  bool healthy_ = true;  // false after a failed reload
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Item> queue_;
  size_t linger_target_ = 0;  // > 0 while Run() lingers for this many queued commands
  bool stopping_ = false;
  std::thread thread_;
};

ShardEngine::ShardEngine(sql::Database& db, const Clock& clock, EngineOptions options)
    : db_(db),
      clock_(clock),
      options_(options),
      store_(db),
      index_(std::make_unique<Index>()),
      sweeper_(std::make_unique<Sweeper>()) {}

absl::StatusOr<std::unique_ptr<ShardEngine>> ShardEngine::Start(sql::Database& db,
                                                                const Clock& clock,
                                                                EngineOptions options) {
  if (options.shard_count == 0 || options.queue_capacity == 0 || options.batch_commands_max == 0 ||
      options.expire_per_sweep_max == 0 || options.sweep_interval_ms < 0 ||
      options.batch_linger_us < 0 || options.batch_linger_us > kBatchLingerMaxUs) {
    return absl::InvalidArgumentError("inventory engine: bad options");
  }
  std::unique_ptr<ShardEngine> engine(new ShardEngine(db, clock, options));
  for (size_t i = 0; i < options.shard_count; ++i) {
    engine->shards_.push_back(std::make_unique<Shard>(*engine, i));
  }
  for (auto& shard : engine->shards_) {
    if (absl::Status status = shard->Load(); !status.ok()) return status;
    shard->IndexLoaded();
  }
  for (auto& shard : engine->shards_) shard->StartThread();
  if (options.sweep_interval_ms > 0) {
    engine->sweeper_->thread = std::thread([raw = engine.get()] {
      SetCurrentThreadName("inv-eng-sweep");
      raw->RunSweeper();
    });
  }
  return engine;
}

ShardEngine::~ShardEngine() { Stop(); }

void ShardEngine::Stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard lock(sweeper_->mutex);
    sweeper_->stopping = true;
  }
  sweeper_->wake.notify_all();
  if (sweeper_->thread.joinable()) sweeper_->thread.join();
  for (auto& shard : shards_) shard->Stop();
}

void ShardEngine::RunSweeper() {
  std::unique_lock lock(sweeper_->mutex);
  while (!sweeper_->stopping) {
    sweeper_->wake.wait_for(lock, std::chrono::milliseconds(options_.sweep_interval_ms));
    if (sweeper_->stopping) return;
    lock.unlock();
    for (auto& shard : shards_) shard->Enqueue(Shard::Item{std::monostate{}, nullptr});
    lock.lock();
  }
}

size_t ShardEngine::ShardOf(const Sku& sku) const {
  return HashToShard(sku.value(), options_.shard_count);
}

size_t ShardEngine::RouteReservation(const ReservationId& id) const {
  if (options_.shard_count == 1) return 0;
  std::lock_guard lock(index_->mutex);
  auto it = index_->reservation_shard.find(id);
  // An unknown id goes to some shard, which answers NotFound in order with its other work.
  return it != index_->reservation_shard.end() ? it->second
                                               : HashToShard(id.value(), options_.shard_count);
}

size_t ShardEngine::RouteOrder(const OrderId& order_id) const {
  if (options_.shard_count == 1) return 0;
  std::lock_guard lock(index_->mutex);
  auto it = index_->order_shard.find(order_id);
  return it != index_->order_shard.end() ? it->second
                                         : HashToShard(order_id.value(), options_.shard_count);
}

void ShardEngine::NoteReservation(const ReservationId& id, size_t shard) {
  if (options_.shard_count == 1) return;
  std::lock_guard lock(index_->mutex);
  index_->reservation_shard[id] = shard;
}

void ShardEngine::NoteOrder(const OrderId& order_id, size_t shard) {
  if (options_.shard_count == 1) return;
  std::lock_guard lock(index_->mutex);
  index_->order_shard[order_id] = shard;
}

void ShardEngine::Submit(Command command, CommandCallback done, CommandOrigin origin) {
  std::optional<size_t> shard;
  std::visit(Overloaded{
                 [&](const cmd::Receive& c) { shard = ShardOf(c.sku); },
                 [&](const cmd::Adjust& c) { shard = ShardOf(c.sku); },
                 [&](const cmd::Reserve& c) {
                   if (c.lines.empty()) {
                     shard = RouteReservation(c.id);  // the model answers kInvalidRequest
                     return;
                   }
                   shard = ShardOf(c.lines.front().sku);
                   for (const LineRequest& line : c.lines) {
                     if (ShardOf(line.sku) != *shard) shard.reset();
                     if (!shard.has_value()) return;
                   }
                 },
                 [&](const cmd::Extend& c) { shard = RouteReservation(c.id); },
                 [&](const cmd::Release& c) { shard = RouteReservation(c.id); },
                 [&](const cmd::Allocate& c) { shard = RouteReservation(c.id); },
                 [&](const cmd::CancelAllocation& c) { shard = RouteOrder(c.order_id); },
                 [&](const cmd::Ship& c) { shard = RouteOrder(c.order_id); },
                 [&](const cmd::Deliver& c) { shard = RouteOrder(c.order_id); },
                 [&](const cmd::Return& c) { shard = RouteOrder(c.order_id); },
             },
             command);
  if (!shard.has_value()) {
    CommandResult result;
    result.status = absl::FailedPreconditionError(
        "reservation lines span inventory shards; reserve them separately");
    if (done) done(std::move(result));
    return;
  }
  if (auto* reserve = std::get_if<cmd::Reserve>(&command);
      reserve != nullptr && !reserve->replaces.empty() && reserve->replaces != reserve->id &&
      RouteReservation(reserve->replaces) != *shard) {
    // The replaced reservation lives in another shard: release it there first. Its shard holds
    // none of the new lines' SKUs, so nothing is lost by not sharing the batch. A failed
    // release answers the whole command with that failure (nothing of it applied); a redelivery
    // then finds the old one released and just reserves.
    ReservationId replaced = std::exchange(reserve->replaces, ReservationId());
    const size_t target = *shard;
    shards_[RouteReservation(replaced)]->Enqueue(
        Shard::Item{cmd::Release{std::move(replaced)},
                    [this, target, command = std::move(command), done = std::move(done),
                     origin = std::move(origin)](CommandResult released) mutable {
                      if (!released.status.ok()) {
                        if (done) done(std::move(released));
                        return;
                      }
                      shards_[target]->Enqueue(
                          Shard::Item{std::move(command), std::move(done), std::move(origin)});
                    },
                    {}});
    return;
  }
  shards_[*shard]->Enqueue(Shard::Item{std::move(command), std::move(done), std::move(origin)});
}

CommandResult ShardEngine::Execute(Command command) {
  // One futex word instead of a promise/future pair per command (see common/one_shot.h).
  OneShot<CommandResult> handoff;
  Submit(std::move(command), [&handoff](CommandResult result) { handoff.Post(std::move(result)); });
  return handoff.Wait();
}

absl::Status ShardEngine::AddLocation(const Location& location) {
  if (absl::Status status = store_.UpsertLocation(location); !status.ok()) return status;
  for (auto& shard : shards_) shard->Enqueue(Shard::Item{location, nullptr});
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ReservationId>> ShardEngine::SweepExpired() {
  std::vector<std::future<CommandResult>> futures;
  std::vector<std::promise<CommandResult>> promises(shards_.size());
  for (size_t i = 0; i < shards_.size(); ++i) {
    futures.push_back(promises[i].get_future());
    shards_[i]->Enqueue(Shard::Item{
        std::monostate{},
        [&promise = promises[i]](CommandResult result) { promise.set_value(std::move(result)); }});
  }
  std::vector<ReservationId> expired;
  absl::Status first_error = absl::OkStatus();
  for (auto& future : futures) {
    CommandResult result = future.get();
    if (!result.status.ok() && first_error.ok()) first_error = result.status;
    expired.insert(expired.end(), result.expired.begin(), result.expired.end());
  }
  if (!first_error.ok()) return first_error;
  return expired;
}

absl::StatusOr<std::vector<StockLevel>> ShardEngine::Availability(const std::vector<Sku>& skus) {
  return store_.LoadStock(skus);
}

EngineStats ShardEngine::stats() const {
  EngineStats stats;
  for (const auto& shard : shards_) {
    stats.batches_committed += shard->batches_committed.load();
    stats.commands_applied += shard->commands_applied.load();
    stats.commit_failures += shard->commit_failures.load();
    stats.batch_commands_largest =
        std::max(stats.batch_commands_largest, shard->batch_commands_largest.load());
    stats.queue_full_rejections += shard->queue_full_rejections.load();
  }
  return stats;
}

}  // namespace emporium::inventory
