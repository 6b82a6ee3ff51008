// Child process of inventory_crash_test: runs the inventory service on <dir>/inventory.db and
// reserves (then allocates every other reservation) as fast as it can, forever, with many
// commands in flight. After a command's callback reports it durable it writes
// "reserved <id>" / "allocated <id>" / "released <id>" on stdout (every other reservation is
// allocated; of the rest, every other one is released, and with a retention of 0 a released
// reservation leaves memory after its batch). The parent SIGKILLs it at a random moment.
//
// Usage: inventory_crash_helper <dir> <round>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "fmt/format.h"
#include "inventory/service.h"
#include "inventory/store.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::inventory {
namespace {

constexpr int kSkuCount = 20;
constexpr int kStockPerSku = 2000;
constexpr int kInFlightMax = 256;

std::mutex output_mutex;

void Say(const std::string& line) {
  std::lock_guard lock(output_mutex);
  const std::string text = line + "\n";
  // One write per line, so a kill never leaves a torn line that parses.
  if (write(STDOUT_FILENO, text.data(), text.size()) < 0) std::_Exit(3);
}

int Run(const std::string& dir, int round) {
  sql::SqliteOptions options;
  options.path = dir + "/inventory.db";
  options.name = "inventory";
  // As the server opens it: commits synced behind the writer, batches pipelined (the default).
  options.deferred_sync = true;
  absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
  if (!db.ok()) return 2;
  if (!bus::InstallBusSchema(**db).ok()) return 2;
  if (!sql::ApplyMigrations(**db, "inventory", InventoryMigrations()).ok()) return 2;
  ServiceOptions service_options;
  service_options.sweep_interval_ms = 0;
  service_options.engine.verify_invariants_each_batch = true;
  service_options.engine.settled_retention_ms = 0;  // evict every settled reservation at once
  absl::StatusOr<std::unique_ptr<InventoryService>> service =
      InventoryService::Create(**db, SystemClock::Instance(), service_options);
  if (!service.ok()) return 2;
  if (round == 0) {
    if (!(*service)->AddLocation({LocationId("w1"), "eu", ""}).ok()) return 2;
    for (int i = 0; i < kSkuCount; ++i) {
      CommandResult received = (*service)->Execute(
          cmd::Receive{Sku(fmt::format("sku-{}", i)), LocationId("w1"), kStockPerSku, "seed"});
      if (!received.status.ok()) return 2;
    }
  }
  Say("ready");
  std::atomic<int> in_flight{0};
  std::mt19937 random(static_cast<uint32_t>(round) * 7919u + 17u);
  for (int64_t n = 0;; ++n) {
    while (in_flight.load() >= kInFlightMax) std::this_thread::yield();
    const std::string id = fmt::format("r{}-{}", round, n);
    const int sku = std::uniform_int_distribution<int>(0, kSkuCount - 1)(random);
    const int quantity = std::uniform_int_distribution<int>(1, 3)(random);
    const bool allocate = n % 2 == 0;
    const bool release = n % 4 == 1;
    in_flight.fetch_add(1);
    InventoryService* raw = service->get();
    raw->Submit(
        cmd::Reserve{
            ReservationId(id), {{Sku(fmt::format("sku-{}", sku)), quantity}}, "eu", 3'600'000},
        [raw, id, allocate, release, &in_flight](CommandResult result) {
          if (result.status.ok() &&
              std::get<ReserveOutcome>(result.outcome) == ReserveOutcome::kReserved) {
            Say("reserved " + id);
            if (allocate) {
              in_flight.fetch_add(1);
              raw->Submit(
                  cmd::Allocate{ReservationId(id), OrderId("o-" + id)},
                  [id, &in_flight](CommandResult allocated) {
                    if (allocated.status.ok() && std::get<AllocateOutcome>(allocated.outcome) ==
                                                     AllocateOutcome::kAllocated) {
                      Say("allocated " + id);
                    }
                    in_flight.fetch_sub(1);
                  });
            } else if (release) {
              in_flight.fetch_add(1);
              raw->Submit(
                  cmd::Release{ReservationId(id)}, [id, &in_flight](CommandResult released) {
                    if (released.status.ok() &&
                        std::get<ReleaseOutcome>(released.outcome) == ReleaseOutcome::kReleased) {
                      Say("released " + id);
                    }
                    in_flight.fetch_sub(1);
                  });
            }
          }
          in_flight.fetch_sub(1);
        });
  }
}

}  // namespace
}  // namespace emporium::inventory

int main(int argc, char** argv) {
  if (argc != 3) return 64;
  return emporium::inventory::Run(argv[1], std::atoi(argv[2]));
}
