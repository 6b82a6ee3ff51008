#include "inventory/service.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "common/format.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "inventory/messages.h"
#include "platform/bus/outbox.h"
#include "platform/obs/log.h"

namespace emporium::inventory {
namespace {

constexpr std::string_view kInsertQueued =
    "INSERT INTO command_queue (message_id, seq, type, envelope, received_at_ms) "
    "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM command_queue), ?, ?, ?)";
constexpr std::string_view kSelectQueued =
    "SELECT message_id, envelope FROM command_queue ORDER BY seq LIMIT ?";
constexpr std::string_view kDeleteQueued = "DELETE FROM command_queue WHERE message_id = ?";
constexpr std::string_view kCountQueued = "SELECT COUNT(*) FROM command_queue";
constexpr std::string_view kInsertStaffRequest =
    "INSERT INTO staff_idempotency (key, request, response, created_at_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO NOTHING";
constexpr std::string_view kSelectStaffRequest =
    "SELECT request, response FROM staff_idempotency WHERE key = ?";

const obs::Logger& Log() {
  static const obs::Logger* logger = new obs::Logger("inventory");
  return *logger;
}

// Event and reply ids. UUIDv7 from the system clock: ids must stay unique and time-ordered even
// when the service runs on a manual clock.
IdGenerator& EventIds() {
  static UuidV7Generator* ids = new UuidV7Generator(SystemClock::Instance());
  return *ids;
}

}  // namespace

// The queue pump's shared state. The database's commit listener holds a reference, so it must
// outlive the service (the listener cannot be removed).
struct InventoryService::Pump {
  std::atomic<bool> pending{false};  // a command was queued in a batch not yet seen committed
  std::mutex mutex;
  std::condition_variable wake;
  bool signalled = true;  // dispatch what a previous run left queued
  bool stopping = false;
  std::thread pump_thread;
  std::thread sweeper_thread;
  // Dispatched and not yet answered, by message id.
  absl::flat_hash_set<std::string> in_flight;
  // Applied (row deleted) at generation N; kept until a queue read that began after it.
  absl::flat_hash_map<std::string, int64_t> consumed;
  int64_t generation = 0;
  bool started = false;
};

InventoryService::InventoryService(sql::Database& db, const Clock& clock, ServiceOptions options)
    : db_(db),
      clock_(clock),
      options_(std::move(options)),
      store_(db),
      pump_(std::make_shared<Pump>()) {}

absl::StatusOr<std::unique_ptr<InventoryService>> InventoryService::Create(sql::Database& db,
                                                                           const Clock& clock,
                                                                           ServiceOptions options) {
  if (options.default_reservation_ttl_ms <= 0 ||
      options.default_reservation_ttl_ms > kReservationTtlMaxMs || options.sweep_interval_ms < 0 ||
      options.queue_poll_interval_ms <= 0 || options.queue_fetch_max == 0 ||
      options.queue_in_flight_max == 0) {
    return absl::InvalidArgumentError("inventory service: bad options");
  }
  std::unique_ptr<InventoryService> service(new InventoryService(db, clock, options));
  EngineOptions engine_options = options.engine;
  engine_options.sweep_interval_ms = 0;  // the service runs the sweeper
  InventoryService* raw = service.get();
  engine_options.batch_hook = [raw](sql::Transaction& transaction, const BatchView& view) {
    return raw->PublishBatch(transaction, view);
  };
  ASSIGN_OR_RETURN(service->engine_, ShardEngine::Start(db, clock, std::move(engine_options)));
  std::weak_ptr<Pump> weak = service->pump_;
  db.AddCommitListener([weak] {
    std::shared_ptr<Pump> pump = weak.lock();
    if (!pump || !pump->pending.exchange(false)) return;
    {
      std::lock_guard lock(pump->mutex);
      pump->signalled = true;
    }
    pump->wake.notify_all();
  });
  return service;
}

InventoryService::~InventoryService() { Stop(); }

absl::Status InventoryService::Start() {
  std::lock_guard lock(pump_->mutex);
  if (pump_->started) return absl::FailedPreconditionError("inventory service already started");
  if (pump_->stopping) return absl::FailedPreconditionError("inventory service stopped");
  pump_->started = true;
  pump_->pump_thread = std::thread([this] {
    SetCurrentThreadName("inv-pump");
    RunPump();
  });
  if (options_.sweep_interval_ms > 0) {
    pump_->sweeper_thread = std::thread([this] {
      SetCurrentThreadName("inv-sweep");
      RunSweeper();
    });
  }
  return absl::OkStatus();
}

void InventoryService::Stop() {
  {
    std::lock_guard lock(pump_->mutex);
    pump_->stopping = true;
  }
  pump_->wake.notify_all();
  if (pump_->pump_thread.joinable()) pump_->pump_thread.join();
  if (pump_->sweeper_thread.joinable()) pump_->sweeper_thread.join();
  if (engine_) engine_->Stop();
}

std::string InventoryService::ReadinessProblem() const {
  std::lock_guard lock(pump_->mutex);
  if (pump_->stopping) return "inventory stopped";
  if (!pump_->started) return "inventory not started";
  return "";
}

absl::Status InventoryService::AcceptCommand(sql::Transaction& transaction,
                                             const bus::Envelope& envelope) {
  absl::StatusOr<Command> command =
      messages::ParseCommand(envelope.type, envelope.payload, options_.default_reservation_ttl_ms);
  if (!command.ok()) {
    // A malformed command never becomes valid by retrying: consume it and say why.
    Log().Warn("rejected inventory command", {{"type", envelope.type},
                                              {"message_id", envelope.id},
                                              {"error", std::string(command.status().message())}});
    if (!envelope.reply_to.has_value()) return absl::OkStatus();
    Json reply{{"command", envelope.type},
               {"outcome", "invalid_request"},
               {"ok", false},
               {"error", std::string(command.status().message())},
               {"short_skus", Json::array()},
               {"unknown_skus", Json::array()}};
    ASSIGN_OR_RETURN(bus::Envelope answer,
                     bus::MakeReply(envelope, EventIds().Next(), std::string(messages::kSource),
                                    clock_.NowMs(), DumpJson(reply)));
    return bus::Publish(transaction, answer);
  }
  absl::StatusOr<int64_t> inserted = transaction.Execute(
      kInsertQueued, {envelope.id, envelope.type, bus::Serialize(envelope), clock_.NowMs()});
  if (!inserted.ok() && !absl::IsAlreadyExists(inserted.status())) return inserted.status();
  pump_->pending.store(true);
  return absl::OkStatus();
}

absl::Status InventoryService::PublishBatch(sql::Transaction& transaction, const BatchView& view) {
  // Runs on the database writer thread inside the batch's write job.
  IdGenerator* ids = &EventIds();
  // Every event and reply of the batch, in publishing order, inserted together at the end.
  std::vector<bus::Envelope> outgoing;
  outgoing.reserve(view.applied.size() + view.changed_skus.size());
  for (const AppliedCommand& applied : view.applied) {
    std::optional<bus::Envelope> cause;
    if (applied.command != nullptr && !applied.origin->queue_id.empty()) {
      ASSIGN_OR_RETURN(int64_t deleted,
                       transaction.Execute(kDeleteQueued, {applied.origin->queue_id}));
      // Already consumed by an earlier batch (a dispatch repeated after a failure): its events
      // and reply went out then.
      if (deleted == 0) continue;
      absl::StatusOr<bus::Envelope> parsed = bus::Deserialize(applied.origin->envelope);
      if (parsed.ok()) cause = *std::move(parsed);
    }
    if (applied.command != nullptr && !applied.origin->idempotency_key.empty()) {
      std::optional<std::string> answer =
          messages::StaffStockAnswer(applied.origin->request_json, *applied.result);
      if (answer.has_value()) {
        RETURN_IF_ERROR(
            transaction
                .Execute(kInsertStaffRequest, {applied.origin->idempotency_key,
                                               applied.origin->request_json, *answer, view.now_ms})
                .status());
      }
    }
    for (messages::Event& event : messages::EventsFor(applied.command, *applied.result)) {
      bus::Envelope envelope;
      envelope.id = ids->Next();
      envelope.type = std::move(event.type);
      envelope.source = std::string(messages::kSource);
      envelope.key = event.key;
      envelope.correlation_id = cause ? cause->correlation_id : event.key;
      envelope.causation_id = cause ? cause->id : "";
      envelope.traceparent = cause ? cause->traceparent : "";
      envelope.occurred_at_ms = view.now_ms;
      envelope.payload = std::move(event.payload);
      outgoing.push_back(std::move(envelope));
    }
    if (cause.has_value() && cause->reply_to.has_value()) {
      ASSIGN_OR_RETURN(
          bus::Envelope reply,
          bus::MakeReply(*cause, ids->Next(), std::string(messages::kSource), view.now_ms,
                         messages::ReplyPayload(*applied.command, *applied.result)));
      outgoing.push_back(std::move(reply));
    }
  }
  for (const SkuTotals& totals : view.changed_skus) {
    messages::Event event = messages::AvailabilityChanged(totals);
    bus::Envelope envelope;
    envelope.id = ids->Next();
    envelope.type = std::move(event.type);
    envelope.source = std::string(messages::kSource);
    envelope.key = event.key;
    envelope.correlation_id = event.key;
    envelope.occurred_at_ms = view.now_ms;
    envelope.payload = std::move(event.payload);
    outgoing.push_back(std::move(envelope));
  }
  return bus::PublishAll(transaction, outgoing);
}

void InventoryService::RunPump() {
  const auto interval = std::chrono::milliseconds(options_.queue_poll_interval_ms);
  std::unique_lock lock(pump_->mutex);
  while (!pump_->stopping) {
    pump_->wake.wait_for(lock, interval, [this] { return pump_->signalled || pump_->stopping; });
    if (pump_->stopping) return;
    pump_->signalled = false;
    lock.unlock();
    DrainQueue();
    lock.lock();
  }
}

void InventoryService::DrainQueue() {
  // Bounded: each round reads at most queue_fetch_max rows; a full round means more may wait.
  constexpr int kRoundsMax = 64;
  for (int round = 0; round < kRoundsMax; ++round) {
    int64_t generation_at_read = 0;
    {
      std::lock_guard lock(pump_->mutex);
      if (pump_->stopping) return;
      generation_at_read = pump_->generation;
    }
    std::vector<std::pair<std::string, std::string>> rows;
    absl::Status read = db_.Read([&](sql::Transaction& transaction) -> absl::Status {
      ASSIGN_OR_RETURN(
          sql::ResultSet result,
          transaction.Query(kSelectQueued, {static_cast<int64_t>(options_.queue_fetch_max)}));
      for (const sql::Row& row : result.rows) rows.emplace_back(row.Text(0), row.Text(1));
      return absl::OkStatus();
    });
    if (!read.ok()) {
      Log().Warn("inventory command queue read failed", {{"error", std::string(read.message())}});
      return;
    }
    std::vector<std::pair<std::string, std::string>> dispatch;
    {
      std::lock_guard lock(pump_->mutex);
      // A row consumed before this read began cannot be in it; forget those.
      absl::erase_if(pump_->consumed, [generation_at_read](const auto& entry) {
        return entry.second < generation_at_read;
      });
      for (auto& row : rows) {
        if (pump_->in_flight.size() >= options_.queue_in_flight_max) break;
        if (pump_->in_flight.contains(row.first) || pump_->consumed.contains(row.first)) continue;
        pump_->in_flight.insert(row.first);
        dispatch.push_back(std::move(row));
      }
    }
    for (auto& [id, bytes] : dispatch) {
      absl::StatusOr<bus::Envelope> envelope = bus::Deserialize(bytes);
      absl::StatusOr<Command> command =
          envelope.ok() ? messages::ParseCommand(envelope->type, envelope->payload,
                                                 options_.default_reservation_ttl_ms)
                        : absl::StatusOr<Command>(envelope.status());
      if (!command.ok()) {
        // Validated on the way in, so only a corrupt row gets here: drop it, loudly.
        Log().Error("dropping unreadable queued inventory command",
                    {{"message_id", id}, {"error", std::string(command.status().message())}});
        absl::Status dropped = db_.Write([&id](sql::Transaction& transaction) {
          return transaction.Execute(kDeleteQueued, {id}).status();
        });
        std::lock_guard lock(pump_->mutex);
        pump_->in_flight.erase(id);
        if (dropped.ok()) pump_->consumed[id] = ++pump_->generation;
        continue;
      }
      std::weak_ptr<Pump> weak = pump_;
      engine_->Submit(
          *std::move(command),
          [weak, id = id](CommandResult result) {
            std::shared_ptr<Pump> pump = weak.lock();
            if (!pump) return;
            std::lock_guard lock(pump->mutex);
            pump->in_flight.erase(id);
            // On failure the row is still queued; the next poll dispatches it again.
            if (result.status.ok()) pump->consumed[id] = ++pump->generation;
          },
          CommandOrigin{.queue_id = id,
                        .envelope = std::move(bytes),
                        .idempotency_key = {},
                        .request_json = {}});
    }
    if (rows.size() < options_.queue_fetch_max) return;
  }
}

void InventoryService::RunSweeper() {
  const auto interval = std::chrono::milliseconds(options_.sweep_interval_ms);
  std::unique_lock lock(pump_->mutex);
  while (!pump_->stopping) {
    pump_->wake.wait_for(lock, interval, [this] { return pump_->stopping; });
    if (pump_->stopping) return;
    lock.unlock();
    absl::StatusOr<std::vector<ReservationId>> expired = engine_->SweepExpired();
    if (!expired.ok()) {
      Log().Warn("inventory expiry sweep failed",
                 {{"error", std::string(expired.status().message())}});
    }
    lock.lock();
  }
}

void InventoryService::Submit(Command command, CommandCallback done, CommandOrigin origin) {
  engine_->Submit(std::move(command), std::move(done), std::move(origin));
}

absl::StatusOr<std::optional<InventoryService::StaffRecord>> InventoryService::FindStaffRequest(
    const std::string& key) {
  std::optional<StaffRecord> found;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kSelectStaffRequest, {key}));
    if (!result.rows.empty()) {
      found = StaffRecord{result.rows.front().Text(0), result.rows.front().Text(1)};
    }
    return absl::OkStatus();
  }));
  return found;
}

CommandResult InventoryService::Execute(Command command) {
  return engine_->Execute(std::move(command));
}

absl::Status InventoryService::AddLocation(const Location& location) {
  return engine_->AddLocation(location);
}

absl::StatusOr<std::vector<Location>> InventoryService::Locations() {
  return store_.LoadLocations();
}

absl::StatusOr<std::vector<StockLevel>> InventoryService::Availability(
    const std::vector<Sku>& skus) {
  return engine_->Availability(skus);
}

absl::StatusOr<std::optional<Reservation>> InventoryService::FindReservation(
    const ReservationId& id) {
  return store_.LoadReservation(id);
}

absl::StatusOr<std::vector<ReservationId>> InventoryService::SweepExpired() {
  return engine_->SweepExpired();
}

absl::StatusOr<int64_t> InventoryService::QueuedCommandCount() {
  int64_t count = 0;
  RETURN_IF_ERROR(db_.Read([&count](sql::Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kCountQueued));
    count = result.rows.front().Int(0);
    return absl::OkStatus();
  }));
  return count;
}

}  // namespace emporium::inventory
