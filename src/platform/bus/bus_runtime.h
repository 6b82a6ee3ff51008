// BusRuntime: the bus of one process, as the composition root wires it. It owns a transport
// (the in-process one unless another is given), one outbox relay per context database and the
// consumers subscribed to it.
//
// Wiring a context (embedded mode), in this order:
//   auto db = sql::OpenSqlite({.path = ".../inventory.db", .name = "inventory"});
//   RETURN_IF_ERROR(bus::InstallBusSchema(**db));         // outbox, inbox, dead_letters
//   RETURN_IF_ERROR(runtime.AddDatabase("inventory", **db));  // relay; before any write
//   RETURN_IF_ERROR(runtime.Subscribe("inventory.commands", **db, {"inventory."}, handler));
//   ... every context ...
//   RETURN_IF_ERROR(runtime.Start());
//   ... serve; command handlers call bus::Publish(tx, envelope) inside their write jobs ...
//   runtime.Stop();   // before closing the databases
//
// Thread-safety: AddDatabase/Subscribe/Start/Stop from the owner thread only, before/after
// serving; ReplayDeadLetter from any thread while running.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "common/clock.h"
#include "platform/bus/consumer.h"
#include "platform/bus/handler.h"
#include "platform/bus/relay.h"
#include "platform/bus/retry_policy.h"
#include "platform/bus/transport.h"
#include "platform/sql/database.h"

namespace emporium::obs {
class MetricsRegistry;
}  // namespace emporium::obs

namespace emporium::bus {

struct BusOptions {
  RelayOptions relay;  // its clock and metrics are replaced by the two below
  RetryPolicy retry;
  const Clock* clock = &SystemClock::Instance();
  // Optional; must outlive the runtime. See relay.h and consumer.h for the series.
  obs::MetricsRegistry* metrics = nullptr;
};

class BusRuntime {
 public:
  // `transport` null: an InProcessTransport.
  explicit BusRuntime(BusOptions options, std::unique_ptr<Transport> transport = nullptr);
  ~BusRuntime();  // Stop()s
  BusRuntime(const BusRuntime&) = delete;
  BusRuntime& operator=(const BusRuntime&) = delete;

  // Adds the relay of a context database (its outbox is published). Must be called before the
  // database's first write (it registers a commit listener) and before Start(); the bus schema
  // must be installed. AlreadyExists for a duplicate name, FailedPrecondition once started.
  absl::Status AddDatabase(std::string name, sql::Database& db);

  // Adds a durable consumer `consumer` (unique) whose handler runs in write jobs on `db` (its
  // own context's database, bus schema installed) for every message whose type matches one of
  // `type_patterns` ("inventory.reserve", "inventory.", "*"). Before Start().
  absl::Status Subscribe(std::string consumer, sql::Database& db,
                         std::vector<std::string> type_patterns, MessageHandler handler);

  // Starts the relays. A consumer sees messages published after the first Start() that
  // subscribed it and any older ones still unpublished.
  absl::Status Start();
  // Drains (each relay delivers what is committed, bounded by RelayOptions::drain_timeout),
  // stops the consumers' retry waits and closes the transport. Idempotent.
  void Stop();

  // Re-runs consumer `consumer`'s handler on its dead letter `id` (see Consumer).
  absl::Status ReplayDeadLetter(std::string_view consumer, int64_t id);
  // The database a consumer is bound to (for ListDeadLetters); nullptr if unknown.
  sql::Database* ConsumerDatabase(std::string_view consumer) const;
  std::vector<std::string> ConsumerNames() const;

  Transport& transport() { return *transport_; }
  // For tests and tools: the relay of database `name`, or nullptr.
  Relay* relay(std::string_view name);

 private:
  enum class State { kConfiguring, kRunning, kStopped };

  const BusOptions options_;
  std::unique_ptr<Transport> transport_;
  std::vector<std::unique_ptr<Relay>> relays_;
  std::vector<std::unique_ptr<Consumer>> consumers_;
  State state_ = State::kConfiguring;
};

}  // namespace emporium::bus
