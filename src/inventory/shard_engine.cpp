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

// Fewest queued commands a shard splits over its free pipeline slots (see Run).
constexpr size_t kPipelineSplitMin = 16;

bool IsQueueFull(const absl::Status& status) {
  return absl::IsUnavailable(status) && ErrorCode(status) == std::string(kQueueFullCode);
}

struct ShardEngine::Index {
  mutable std::mutex mutex;
  // Resident reservations and orders (and evicted ones whose hash another shard's entry took).
  absl::flat_hash_map<ReservationId, size_t> reservation_shard;
  absl::flat_hash_map<OrderId, size_t> order_shard;
  // Evicted ones: EvictedKey(id) -> shard.
  absl::flat_hash_map<uint64_t, uint32_t> evicted_reservation_shard;
  absl::flat_hash_map<uint64_t, uint32_t> evicted_order_shard;
  // Orders allocated in one shard while another still held (or had evicted) a reservation of
  // theirs: they keep their full entry, which follows the latest allocation, whatever the
  // shards evict later (hashes cannot tell one order in two shards from two colliding names).
  absl::flat_hash_set<OrderId> orders_in_several_shards;
};

namespace {

// Routes `key`: its full entry, else its evicted hash's, else by hash.
template <typename Key>
size_t Route(const absl::flat_hash_map<Key, size_t>& full,
             const absl::flat_hash_map<uint64_t, uint32_t>& evicted, const Key& key,
             uint64_t evicted_key, size_t shard_count) {
  if (auto it = full.find(key); it != full.end()) return it->second;
  if (auto it = evicted.find(evicted_key); it != evicted.end()) return it->second;
  // An unknown id goes to some shard, which answers NotFound in order with its other work.
  return HashToShard(key.value(), shard_count);
}

// `key` was evicted from `shard`: hash -> shard replaces its full entry, unless the hash
// already routes elsewhere (a collision: the full entry stays) or the full entry names another
// shard (which still holds it).
template <typename Key>
void NoteEvicted(absl::flat_hash_map<Key, size_t>& full,
                 absl::flat_hash_map<uint64_t, uint32_t>& evicted, const Key& key,
                 uint64_t evicted_key, size_t shard) {
  auto it = full.find(key);
  if (it != full.end() && it->second != shard) return;
  auto [slot, inserted] = evicted.try_emplace(evicted_key, static_cast<uint32_t>(shard));
  if (inserted || slot->second == shard) {
    if (it != full.end()) full.erase(it);
  } else if (it == full.end()) {
    full.emplace(key, shard);
  }
}

}  // namespace

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

  // Loads the shard's stock and live reservations, and the compact record of its settled ones.
  absl::Status Load() {
    state_ = InventoryState();
    reported_availability_.clear();
    evicted_ids_.clear();
    evicted_orders_.clear();
    settled_fifo_.clear();
    settled_at_.clear();
    std::vector<ReservationId> legacy_lines;
    std::function<bool(const Sku&)> owns;
    if (engine_.options_.shard_count > 1) {
      owns = [this](const Sku& sku) { return engine_.ShardOf(sku) == index_; };
    }
    absl::Status loaded = engine_.store_.LoadInto(
        state_, owns, &legacy_lines, [this](const std::string& id, const std::string& order_id) {
          RecordEvicted(id, order_id);
        });
    legacy_lines_ = absl::flat_hash_set<ReservationId>(legacy_lines.begin(), legacy_lines.end());
    UpdateGauges();
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
  std::atomic<int64_t> resident_reservations{0};
  std::atomic<int64_t> evicted_reservations{0};
  std::atomic<int64_t> evicted_record_entries{0};
  std::atomic<int64_t> fault_in_reads{0};
  std::atomic<int64_t> faulted_in_reservations{0};

 private:
  // A reservation (of this shard) that is not in memory: its hashes join the compact record,
  // and the routing index learns it by hash.
  void RecordEvicted(std::string_view id, std::string_view order_id) {
    evicted_ids_.insert(engine_.EvictedKey(id));
    engine_.NoteEvictedReservation(id, index_);
    if (!order_id.empty()) {
      evicted_orders_.insert(engine_.EvictedKey(order_id));
      engine_.NoteEvictedOrder(order_id, index_);
    }
  }

  void UpdateGauges() {
    resident_reservations.store(static_cast<int64_t>(state_.reservation_count()));
    evicted_record_entries.store(
        static_cast<int64_t>(evicted_ids_.size() + evicted_orders_.size()));
  }

  bool OwnsReservation(const Reservation& reservation) const {
    return engine_.options_.shard_count == 1 || reservation.lines.empty() ||
           engine_.ShardOf(reservation.lines.front().sku) == index_;
  }

  // Starts (or restarts) the retention clock of a resident settled reservation.
  void NoteSettled(const ReservationId& id, int64_t now_ms) {
    settled_at_[id] = now_ms;
    settled_fifo_.emplace_back(now_ms, id);
  }

  // Makes every reservation and order the batch's commands name resident or proven absent:
  // those that are not resident and whose hash is in the compact record are read back in one
  // read. Runs before the batch is applied.
  absl::Status FaultIn(const std::vector<Item>& batch, int64_t now_ms) {
    std::vector<ReservationId> ids;
    std::vector<OrderId> orders;
    auto id = [&](const ReservationId& named) {
      if (!named.empty() && state_.FindReservation(named) == nullptr &&
          evicted_ids_.contains(engine_.EvictedKey(named.value()))) {
        ids.push_back(named);
      }
    };
    auto order = [&](const OrderId& named) {
      if (!named.empty() && state_.FindReservationByOrder(named) == nullptr &&
          evicted_orders_.contains(engine_.EvictedKey(named.value()))) {
        orders.push_back(named);
      }
    };
    for (const Item& item : batch) {
      const Command* command = std::get_if<Command>(&item.work);
      if (command == nullptr) continue;
      std::visit(Overloaded{
                     [](const cmd::Receive&) {},
                     [](const cmd::Adjust&) {},
                     [&](const cmd::Reserve& c) {
                       id(c.id);
                       id(c.replaces);
                     },
                     [&](const cmd::Extend& c) { id(c.id); },
                     [&](const cmd::Release& c) { id(c.id); },
                     [&](const cmd::Allocate& c) {
                       id(c.id);
                       order(c.order_id);
                     },
                     [&](const cmd::CancelAllocation& c) { order(c.order_id); },
                     [&](const cmd::Ship& c) { order(c.order_id); },
                     [&](const cmd::Deliver& c) { order(c.order_id); },
                     [&](const cmd::Return& c) { order(c.order_id); },
                 },
                 *command);
    }
    if (ids.empty() && orders.empty()) return absl::OkStatus();
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    std::sort(orders.begin(), orders.end());
    orders.erase(std::unique(orders.begin(), orders.end()), orders.end());
    fault_in_reads.fetch_add(1);
    absl::StatusOr<std::vector<Reservation>> found = engine_.store_.LoadForFaultIn(ids, orders);
    if (!found.ok()) return found.status();
    for (Reservation& reservation : *found) {
      if (!OwnsReservation(reservation)) continue;  // another shard's: not seen here before
      const bool resident = state_.FindReservation(reservation.id) != nullptr;
      const ReservationId loaded_id = reservation.id;
      const bool settled = IsSettled(reservation.state);
      state_.FaultIn(std::move(reservation));
      if (resident) continue;
      faulted_in_reservations.fetch_add(1);
      if (settled) NoteSettled(loaded_id, now_ms);
    }
    return absl::OkStatus();
  }

  // Evicts up to evict_per_batch_max settled reservations unchanged for the retention.
  void EvictDue(int64_t now_ms) {
    const int64_t retention = engine_.options_.settled_retention_ms;
    size_t evicted = 0;
    while (!settled_fifo_.empty() && evicted < engine_.options_.evict_per_batch_max &&
           settled_fifo_.front().first <= now_ms - retention) {
      auto [settled_ms, id] = std::move(settled_fifo_.front());
      settled_fifo_.pop_front();
      auto at = settled_at_.find(id);
      if (at == settled_at_.end() || at->second != settled_ms) continue;  // changed since
      if (in_flight_reservations_.contains(id)) {
        // A batch still in flight changed it (its row may not be written yet): not now.
        settled_fifo_.emplace_back(settled_ms, std::move(id));
        break;
      }
      settled_at_.erase(at);
      const Reservation* reservation = state_.FindReservation(id);
      if (reservation == nullptr) continue;
      const OrderId order_id = reservation->order_id;
      if (!state_.Evict(id)) continue;
      ++evicted;
      evicted_ids_.insert(engine_.EvictedKey(id.value()));
      engine_.NoteEvictedReservation(id.value(), index_);
      if (!order_id.empty()) {
        evicted_orders_.insert(engine_.EvictedKey(order_id.value()));
        // Another resident reservation may still hold the order here (an allocation-cancelled
        // one with the allocated one evicted): then it keeps routing by its full id.
        if (state_.FindReservationByOrder(order_id) == nullptr) {
          engine_.NoteEvictedOrder(order_id.value(), index_);
        }
      }
    }
    evicted_reservations.fetch_add(static_cast<int64_t>(evicted));
  }

  static void Reject(Item item, absl::Status status) {
    CommandResult result;
    result.status = std::move(status);
    if (item.done) item.done(std::move(result));
  }

  // A batch applied in memory and handed to the database, answered once its commit is durable.
  struct Flight {
    std::vector<Item> batch;
    std::vector<CommandResult> results;
    BatchRecord record;
    BatchView view;
    int64_t now_ms = 0;
    bool done = false;  // guarded by mutex_ (set by the database's callback)
    absl::Status status;
  };

  bool FrontDone() const { return !in_flight_.empty() && in_flight_.front()->done; }

  void Run() {
    const auto linger = std::chrono::microseconds(engine_.options_.batch_linger_us);
    const size_t depth = engine_.options_.pipeline_batches;
    size_t last_batch_size = 0;
    while (true) {
      std::vector<std::shared_ptr<Flight>> finished;
      std::vector<Item> batch;
      {
        std::unique_lock lock(mutex_);
        // A batch may start while fewer than `depth` are in flight, and never on top of a
        // failed one (the shard reloads once they have all been answered).
        auto can_start = [&] {
          return !queue_.empty() && in_flight_.size() < depth &&
                 (in_flight_.empty() || (!must_reload_ && !poisoned_.load()));
        };
        auto drained = [&] { return stopping_ && queue_.empty() && in_flight_.empty(); };
        wake_.wait(lock, [&] { return FrontDone() || can_start() || drained(); });
        // poisoned_ changes on the database's threads without mutex_: decide on one reading.
        const bool start = can_start();
        if (FrontDone()) {
          while (FrontDone()) {
            finished.push_back(std::move(in_flight_.front()));
            in_flight_.pop_front();
          }
        } else if (!start) {
          if (drained()) return;  // stopping, and everything queued was answered
          continue;               // a batch in flight failed meanwhile: wait for it
        } else {
          // Fewer commands queued than the last batch answered: most of those callers are
          // about to submit their next command (closed loops), so wait a bounded moment for
          // them and commit them together instead of in two batches.
          const size_t target = std::min(last_batch_size, engine_.options_.batch_commands_max);
          if (linger.count() > 0 && queue_.size() < target && !stopping_) {
            linger_target_ = target;
            wake_.wait_for(lock, linger, [this, target] {
              return queue_.size() >= target || stopping_ || FrontDone();
            });
            linger_target_ = 0;
          }
          size_t count = std::min(queue_.size(), engine_.options_.batch_commands_max);
          // Free slots in the pipeline and many commands: split them over the slots, so that
          // closed-loop callers answered together do not stay in step behind one fsync (each
          // group's fsync overlaps the other's statements). Few commands share one commit:
          // below kPipelineSplitMin the commit's fixed cost outweighs the overlap.
          if (in_flight_.size() + 1 < depth && count >= kPipelineSplitMin) {
            const size_t parts = depth - in_flight_.size();
            count = (count + parts - 1) / parts;
          }
          last_batch_size = count;
          for (size_t i = 0; i < count; ++i) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
        }
      }
      for (size_t i = 0; i < finished.size(); ++i) {
        Finish(*finished[i], /*last_in_flight=*/i + 1 == finished.size() && in_flight_.empty());
      }
      if (!batch.empty()) StartBatch(std::move(batch));
    }
  }

  // Applies a batch in memory and hands its rows to the database (without waiting).
  void StartBatch(std::vector<Item> items) {
    // Read once: a batch in flight may fail (and set it) at any moment on the database's thread.
    const bool poisoned = poisoned_.load();
    if (!in_flight_.empty() && poisoned) {
      // A batch in flight failed after Run chose to start this one: it must not be applied on
      // top of the lost effects, nor may the shard reload before the batches in flight are
      // answered. Back to the front of the queue, in order, untouched. (If one fails after
      // this check, this batch is applied and submitted, and its job refuses to commit.)
      std::lock_guard lock(mutex_);
      for (auto it = items.rbegin(); it != items.rend(); ++it) queue_.push_front(std::move(*it));
      return;
    }
    auto flight = std::make_shared<Flight>();
    flight->batch = std::move(items);
    std::vector<Item>& batch = flight->batch;
    if (must_reload_ || poisoned) {
      // A batch was not committed, a read-back failed, or a reload did: back to what is
      // durable before applying anything. Only ever with nothing in flight (must_reload_ holds
      // Run back until then; a poisoned shard with batches in flight requeued above).
      if (absl::Status reload = Load(); !reload.ok()) {
        must_reload_ = true;
        absl::Status answer = absl::UnavailableError(
            fmt::format("inventory batch not applied: the shard could not reload its state: {}",
                        reload.ToString()));
        for (Item& item : batch) Reject(std::move(item), answer);
        return;
      }
      must_reload_ = false;
      failed_seen_ = false;
      poisoned_.store(false);
    }
    const int64_t now_ms = engine_.clock_.NowMs();
    flight->now_ms = now_ms;
    if (absl::Status faulted = FaultIn(batch, now_ms); !faulted.ok()) {
      // Nothing was applied; what was read back is committed state and may stay. The batch
      // may hold a location AddLocation already stored and will not send again: the next
      // batch reloads the shard (as after a failed commit), which learns it from the database.
      must_reload_ = true;
      absl::Status answer = absl::UnavailableError(
          fmt::format("inventory batch not applied: fault-in read failed: {}", faulted.ToString()));
      for (Item& item : batch) Reject(std::move(item), answer);
      return;
    }
    BatchRecord& record = flight->record;
    std::vector<CommandResult>& results = flight->results;
    results.reserve(batch.size());
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
      ++in_flight_reservations_[id];  // kept resident until this batch is answered
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
    if (in_flight_.empty()) failed_batches_base_ = engine_.db_.stats().batches_failed;
    in_flight_.push_back(flight);
    // A batch of refused commands changes no rows but still has events to publish and queue
    // rows to consume, so the hook gets a transaction whenever the batch held a command.
    if (record.empty() && !(hook && has_command)) {
      // Nothing to write; still answered after the batches before it (its answers may rest on
      // their effects).
      std::lock_guard lock(mutex_);
      flight->done = true;
      return;
    }
    if (hook) flight->view = MakeView(batch, results, record, now_ms);
    const int64_t failed_base = failed_batches_base_;
    engine_.db_.SubmitWrite(
        [this, flight, failed_base](sql::Transaction& transaction) -> absl::Status {
          // This batch was applied on top of the ones before it: if one of them was not
          // committed, neither may this one be.
          if (poisoned_.load() || engine_.db_.stats().batches_failed != failed_base) {
            poisoned_.store(true);
            return absl::AbortedError("an earlier batch of this shard was not committed");
          }
          // Poisoned on every way out but success, a throw included (the database turns it
          // into this job's error and commits the jobs after it).
          struct PoisonUnlessWritten {
            std::atomic<bool>& poisoned;
            bool written = false;
            ~PoisonUnlessWritten() {
              if (!written) poisoned.store(true);
            }
          } guard{poisoned_};
          absl::Status written = InventoryStore::WriteBatch(transaction, flight->record);
          const auto& batch_hook = engine_.options_.batch_hook;
          if (written.ok() && batch_hook) written = batch_hook(transaction, flight->view);
          guard.written = written.ok();
          return written;
        },
        [this, flight](absl::Status status) {
          if (!status.ok()) poisoned_.store(true);
          // Notified under the lock: once the shard sees `done` it may finish, stop and be
          // destroyed, so nothing here may touch it after unlocking.
          std::lock_guard lock(mutex_);
          flight->status = std::move(status);
          flight->done = true;
          wake_.notify_one();
        });
  }

  // Answers a batch whose commit is durable, or failed (in batch order). `last_in_flight`: no
  // batch is in flight behind it.
  void Finish(Flight& flight, bool last_in_flight) {
    std::vector<Item>& batch = flight.batch;
    for (const Reservation& reservation : flight.record.reservations) {
      auto it = in_flight_reservations_.find(reservation.id);
      if (it != in_flight_reservations_.end() && --it->second == 0) {
        in_flight_reservations_.erase(it);
      }
    }
    if (!flight.status.ok() || failed_seen_) {
      // Not committed, or applied on top of one that was not (even a batch with nothing to
      // write: its answers may rest on the lost effects). The in-memory state is ahead of the
      // database: the shard reloads before its next batch, once every batch in flight has
      // been answered.
      if (!flight.status.ok()) commit_failures.fetch_add(1);
      failed_seen_ = true;
      must_reload_ = true;
      if (last_in_flight && Load().ok()) {
        // Rolled back to what is durable before answering (a failed reload is retried by the
        // next batch).
        must_reload_ = false;
        failed_seen_ = false;
        poisoned_.store(false);
      }
      absl::Status answer = absl::UnavailableError(
          fmt::format("inventory batch not committed: {}",
                      flight.status.ok() ? "an earlier batch of this shard was not committed"
                                         : flight.status.ToString()));
      for (Item& item : batch) Reject(std::move(item), answer);
      return;
    }
    if (flight.record.legacy_lines.has_value()) {
      for (const ReservationId& id : *flight.record.legacy_lines) legacy_lines_.erase(id);
    }
    batches_committed.fetch_add(1);
    commands_applied.fetch_add(static_cast<int64_t>(batch.size()));
    int64_t largest = batch_commands_largest.load();
    const int64_t size = static_cast<int64_t>(batch.size());
    while (size > largest && !batch_commands_largest.compare_exchange_weak(largest, size)) {
    }
    // Durable now: settled reservations start (or restart) their retention, and those due go
    // (bounded work, done before answering so the stats a caller reads next include it).
    for (const Reservation& reservation : flight.record.reservations) {
      if (IsSettled(reservation.state)) NoteSettled(reservation.id, flight.now_ms);
    }
    EvictDue(flight.now_ms);
    UpdateGauges();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].done) batch[i].done(std::move(flight.results[i]));
    }
  }

  BatchView MakeView(const std::vector<Item>& batch, const std::vector<CommandResult>& results,
                     const BatchRecord& record, int64_t now_ms) {
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
      // Rows that changed without changing what is available or on hand (an allocation moves
      // units from reserved to allocated) report nothing new.
      const std::pair<int64_t, int64_t> availability = {totals.available(), totals.on_hand};
      auto [reported, inserted] = reported_availability_.try_emplace(sku, availability);
      if (!inserted) {
        if (reported->second == availability) continue;
        reported->second = availability;
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
  // The compact record of the shard's reservations that are not in memory (settled ones
  // evicted, or never loaded): EvictedKey of their ids and of their order ids.
  absl::flat_hash_set<uint64_t> evicted_ids_;
  absl::flat_hash_set<uint64_t> evicted_orders_;
  // Resident settled reservations by the time of their last change (a reservation changed
  // again has a newer entry; settled_at_ tells which entry is current). Writer thread only.
  std::deque<std::pair<int64_t, ReservationId>> settled_fifo_;
  absl::flat_hash_map<ReservationId, int64_t> settled_at_;
  // The in-memory state may be ahead of the database (a batch not committed, a failed
  // read-back or reload): the next batch reloads first. Writer thread only.
  bool must_reload_ = false;
  // A batch not committed has been answered: the ones after it (in flight before the reload)
  // are refused too. Writer thread only.
  bool failed_seen_ = false;
  // Batches handed to the database, oldest first (writer thread only; `done` under mutex_).
  std::deque<std::shared_ptr<Flight>> in_flight_;
  // Reservations changed by a batch in flight, and how many such batches (not evicted then).
  absl::flat_hash_map<ReservationId, int> in_flight_reservations_;
  // Per SKU, the (available, on_hand) the shard's batches last put in BatchView::changed_skus.
  // Batches build on each other and a batch that is not committed makes the shard reload,
  // which clears this, so what it says was reported is what the committed events say.
  absl::flat_hash_map<Sku, std::pair<int64_t, int64_t>> reported_availability_;
  // Set when a batch was not committed: the batches after it fail, and none starts until the
  // shard has reloaded. Read by the database's writer thread in the batches' jobs.
  std::atomic<bool> poisoned_{false};
  // WriteStats::batches_failed when the oldest batch in flight was handed over.
  int64_t failed_batches_base_ = 0;
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
      options.batch_linger_us < 0 || options.batch_linger_us > kBatchLingerMaxUs ||
      options.settled_retention_ms < 0 || options.evict_per_batch_max == 0 ||
      options.pipeline_batches == 0 || options.evicted_hash_bits < 1 ||
      options.evicted_hash_bits > 64) {
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

uint64_t ShardEngine::EvictedKey(std::string_view id) const {
  const uint64_t hash = absl::Hash<absl::string_view>{}(absl::string_view(id.data(), id.size()));
  return options_.evicted_hash_bits >= 64 ? hash : hash >> (64 - options_.evicted_hash_bits);
}

size_t ShardEngine::RouteReservation(const ReservationId& id) const {
  if (options_.shard_count == 1) return 0;
  const uint64_t key = EvictedKey(id.value());
  std::lock_guard lock(index_->mutex);
  return Route(index_->reservation_shard, index_->evicted_reservation_shard, id, key,
               options_.shard_count);
}

absl::StatusOr<std::optional<size_t>> ShardEngine::HolderOfReservation(const ReservationId& id) {
  const uint64_t key = EvictedKey(id.value());
  size_t candidate = 0;
  {
    std::lock_guard lock(index_->mutex);
    if (auto it = index_->reservation_shard.find(id); it != index_->reservation_shard.end()) {
      return std::optional<size_t>(it->second);
    }
    auto evicted = index_->evicted_reservation_shard.find(key);
    if (evicted == index_->evicted_reservation_shard.end()) return std::optional<size_t>();
    candidate = evicted->second;
  }
  // Evicted: this id, or another one whose hash is the same. Rare (a reused id), so one read.
  absl::StatusOr<std::optional<Reservation>> stored = store_.LoadReservation(id);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return std::optional<size_t>();
  if ((*stored)->lines.empty()) return std::optional<size_t>(candidate);
  return std::optional<size_t>(ShardOf((*stored)->lines.front().sku));
}

size_t ShardEngine::RouteOrder(const OrderId& order_id) const {
  if (options_.shard_count == 1) return 0;
  const uint64_t key = EvictedKey(order_id.value());
  std::lock_guard lock(index_->mutex);
  return Route(index_->order_shard, index_->evicted_order_shard, order_id, key,
               options_.shard_count);
}

void ShardEngine::NoteEvictedReservation(std::string_view id, size_t shard) {
  if (options_.shard_count == 1) return;
  const uint64_t key = EvictedKey(id);
  std::lock_guard lock(index_->mutex);
  NoteEvicted(index_->reservation_shard, index_->evicted_reservation_shard,
              ReservationId(std::string(id)), key, shard);
}

void ShardEngine::NoteEvictedOrder(std::string_view order_id, size_t shard) {
  if (options_.shard_count == 1) return;
  const uint64_t key = EvictedKey(order_id);
  OrderId order{std::string(order_id)};
  std::lock_guard lock(index_->mutex);
  if (index_->orders_in_several_shards.contains(order)) return;
  NoteEvicted(index_->order_shard, index_->evicted_order_shard, std::move(order), key, shard);
}

void ShardEngine::NoteReservation(const ReservationId& id, size_t shard) {
  if (options_.shard_count == 1) return;
  std::lock_guard lock(index_->mutex);
  index_->reservation_shard[id] = shard;
}

void ShardEngine::NoteOrder(const OrderId& order_id, size_t shard) {
  if (options_.shard_count == 1) return;
  const uint64_t key = EvictedKey(order_id.value());
  std::lock_guard lock(index_->mutex);
  auto full = index_->order_shard.find(order_id);
  bool elsewhere = full != index_->order_shard.end() && full->second != shard;
  if (full == index_->order_shard.end()) {
    auto evicted = index_->evicted_order_shard.find(key);
    // Another shard's entry under this hash: this order there, or a colliding name (then the
    // full entry kept below costs memory only).
    elsewhere = evicted != index_->evicted_order_shard.end() && evicted->second != shard;
  }
  if (elsewhere) index_->orders_in_several_shards.insert(order_id);
  index_->order_shard[order_id] = shard;
}

void ShardEngine::Submit(Command command, CommandCallback done, CommandOrigin origin) {
  std::optional<size_t> shard;
  absl::Status holder_failure;  // Reserve: the read that confirms a known id failed
  bool known_id = false;        // Reserve: routed to the shard that already holds its id
  std::visit(Overloaded{
                 [&](const cmd::Receive& c) { shard = ShardOf(c.sku); },
                 [&](const cmd::Adjust& c) { shard = ShardOf(c.sku); },
                 [&](const cmd::Reserve& c) {
                   if (c.lines.empty()) {
                     shard = RouteReservation(c.id);  // the model answers kInvalidRequest
                     return;
                   }
                   if (options_.shard_count > 1) {
                     // An id some shard already holds is answered there, whatever shard these
                     // lines would go to: the same request is a replay, other lines a conflict.
                     // (Routed by its lines, another shard would take the id for a new one.)
                     absl::StatusOr<std::optional<size_t>> holder = HolderOfReservation(c.id);
                     if (!holder.ok()) {
                       holder_failure = holder.status();
                       return;
                     }
                     if (holder->has_value()) {
                       shard = **holder;
                       known_id = true;
                       return;
                     }
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
  if (!holder_failure.ok()) {
    CommandResult result;
    result.status = absl::UnavailableError(
        fmt::format("inventory: could not look up the reservation: {}", holder_failure.ToString()));
    if (done) done(std::move(result));
    return;
  }
  if (!shard.has_value()) {
    CommandResult result;
    result.status = absl::FailedPreconditionError(
        "reservation lines span inventory shards; reserve them separately");
    if (done) done(std::move(result));
    return;
  }
  // A known id is a replay or a conflict, which changes nothing, the replaced one included (the
  // holder's model answers it): no release in the replaced one's shard first.
  if (auto* reserve = std::get_if<cmd::Reserve>(&command);
      reserve != nullptr && !known_id && !reserve->replaces.empty() &&
      reserve->replaces != reserve->id && RouteReservation(reserve->replaces) != *shard) {
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
    stats.resident_reservations += shard->resident_reservations.load();
    stats.evicted_reservations += shard->evicted_reservations.load();
    stats.evicted_record_entries += shard->evicted_record_entries.load();
    stats.fault_in_reads += shard->fault_in_reads.load();
    stats.faulted_in_reservations += shard->faulted_in_reservations.load();
  }
  return stats;
}

}  // namespace emporium::inventory
