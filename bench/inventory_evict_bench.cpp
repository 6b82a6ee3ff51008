// What eviction saves: memory and start-up time of a shard over a long reservation history.
//
// Writes N settled reservations (UUIDv7 ids, one line each; half released, half delivered with
// a UUIDv7 order id) to a fresh SQLite file, then measures, in this process (glibc malloc, so
// mallinfo2 counts the heap in use):
//   * loading every reservation into an InventoryState (what a shard did before eviction);
//   * loading live ones fully and only the compact record of the settled ones (the same
//     LoadInto call a shard makes now, hashes kept in two flat_hash_sets);
//   * a ShardEngine::Start on the same database (load and compact record, shard_count 1).
//
// Usage: inventory_evict_bench [N]   (default 200000)
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "common/clock.h"
#include "common/ids.h"
#include "fmt/format.h"
#include "inventory/shard_engine.h"
#include "inventory/store.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::inventory {
namespace {

constexpr size_t kWriteChunk = 10'000;

int64_t HeapInUse() { return static_cast<int64_t>(mallinfo2().uordblks); }

double Since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

int Main(int argc, char** argv) {
  const int64_t count = argc > 1 ? std::atoll(argv[1]) : 200'000;
  if (count <= 0) {
    std::fprintf(stderr, "usage: inventory_evict_bench [N > 0]\n");
    return 2;
  }
  char dir_template[] = "/tmp/inventory-evict-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return 1;
  const std::string path = fmt::format("{}/inventory.db", dir_template);
  sql::SqliteOptions options;
  options.path = path;
  options.name = "inventory";
  auto db = sql::OpenSqlite(options);
  if (!db.ok()) {
    std::fprintf(stderr, "%s\n", db.status().ToString().c_str());
    return 1;
  }
  InventoryStore store(**db);
  if (absl::Status migrated = store.Migrate(); !migrated.ok()) return 1;
  if (!store.UpsertLocation({LocationId("w1"), "eu", ""}).ok()) return 1;
  UuidV7Generator ids(SystemClock::Instance());
  for (int64_t done = 0; done < count;) {
    BatchRecord batch;
    for (size_t i = 0; i < kWriteChunk && done < count; ++i, ++done) {
      const bool delivered = done % 2 == 1;
      batch.reservations.push_back(Reservation{
          .id = ReservationId(ids.Next()),
          .lines = {ReservationLine{
              .sku = Sku(fmt::format("sku-{}", done % 100)),
              .quantity = 1,
              .splits = {Split{
                  .location = LocationId("w1"), .quantity = 1, .shipped = delivered ? 1 : 0}}}},
          .region = "eu",
          .created_at_ms = 1,
          .expires_at_ms = 2,
          .state = delivered ? ReservationState::kDelivered : ReservationState::kReleased,
          .order_id = delivered ? OrderId(ids.Next()) : OrderId(),
          .shipment_ids =
              delivered ? std::vector<std::string>{ids.Next()} : std::vector<std::string>{}});
    }
    batch.legacy_lines.emplace();
    if (!(*db)
             ->Write([&](sql::Transaction& t) { return InventoryStore::WriteBatch(t, batch); })
             .ok()) {
      return 1;
    }
  }
  std::printf("%lld settled reservations (half delivered with an order id)\n",
              static_cast<long long>(count));
  {
    const int64_t before = HeapInUse();
    const auto start = std::chrono::steady_clock::now();
    auto state = std::make_unique<InventoryState>();
    if (!store.LoadInto(*state, nullptr).ok()) return 1;
    const double ms = Since(start);
    const int64_t bytes = HeapInUse() - before;
    std::printf(
        "all resident (before eviction): %zu resident, %.0f ms, %.1f MiB heap, %.0f B each\n",
        state->reservation_count(), ms, static_cast<double>(bytes) / (1 << 20),
        static_cast<double>(bytes) / static_cast<double>(count));
  }
  {
    const int64_t before = HeapInUse();
    const auto start = std::chrono::steady_clock::now();
    auto state = std::make_unique<InventoryState>();
    absl::flat_hash_set<uint64_t> evicted_ids;
    absl::flat_hash_set<uint64_t> evicted_orders;
    auto key = [](const std::string& id) {
      return absl::Hash<absl::string_view>{}(absl::string_view(id.data(), id.size()));
    };
    if (!store
             .LoadInto(*state, nullptr, nullptr,
                       [&](const std::string& id, const std::string& order_id) {
                         evicted_ids.insert(key(id));
                         if (!order_id.empty()) evicted_orders.insert(key(order_id));
                       })
             .ok()) {
      return 1;
    }
    const double ms = Since(start);
    const int64_t bytes = HeapInUse() - before;
    std::printf(
        "compact record (eviction): %zu resident, %zu + %zu hashes, %.0f ms, %.1f MiB "
        "heap, %.1f B each\n",
        state->reservation_count(), evicted_ids.size(), evicted_orders.size(), ms,
        static_cast<double>(bytes) / (1 << 20),
        static_cast<double>(bytes) / static_cast<double>(count));
  }
  {
    const int64_t before = HeapInUse();
    const auto start = std::chrono::steady_clock::now();
    auto engine = ShardEngine::Start(**db, SystemClock::Instance(), EngineOptions{});
    if (!engine.ok()) return 1;
    const double ms = Since(start);
    const int64_t bytes = HeapInUse() - before;
    const EngineStats stats = (*engine)->stats();
    std::printf(
        "ShardEngine::Start: %lld resident, %lld record entries, %.0f ms, %.1f MiB heap "
        "(engine and its SQLite statements included)\n",
        static_cast<long long>(stats.resident_reservations),
        static_cast<long long>(stats.evicted_record_entries), ms,
        static_cast<double>(bytes) / (1 << 20));
    (*engine)->Stop();
  }
  (*db)->Close();
  std::remove(path.c_str());
  std::remove((path + "-wal").c_str());
  std::remove((path + "-shm").c_str());
  std::remove(dir_template);
  return 0;
}

}  // namespace
}  // namespace emporium::inventory

int main(int argc, char** argv) { return emporium::inventory::Main(argc, argv); }
