// Inventory benchmark: durable reservations per second through the inventory service (reserve,
// then allocate, each acknowledged only after its batch is committed to a real SQLite file, its
// events in the outbox), by 64 concurrent requesters, on one hot SKU and spread over 10,000
// SKUs; p50/p99 latency of each reserve. Writes a markdown report.
//
// Usage: inventory_bench [report.md]   (default bench/results/inventory.md)
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "fmt/format.h"
#include "inventory/service.h"
#include "inventory/store.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::inventory {
namespace {

constexpr int kRequesters = 64;
constexpr auto kRunTime = std::chrono::seconds(5);
constexpr int64_t kStockPerSku = 100'000'000;  // never the limit: we measure the write path

struct Result {
  std::string name;
  int sku_count = 0;
  int64_t reservations = 0;
  int64_t failures = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  int64_t batches = 0;
  double cpu_seconds = 0;     // user + system time of the whole process during the run
  int64_t written_bytes = 0;  // bytes the process handed to write(2)/pwrite(2) in the run
  int64_t write_calls = 0;    // write-like system calls in the run
};

// Process CPU time (user + system), seconds.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// wchar and syscw of /proc/self/io (0 where unavailable).
struct IoCounters {
  int64_t written_bytes = 0;
  int64_t write_calls = 0;
};
IoCounters ReadIo() {
  IoCounters counters;
  std::ifstream in("/proc/self/io");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name;
    int64_t value = 0;
    fields >> name >> value;
    if (name == "wchar:") counters.written_bytes = value;
    if (name == "syscw:") counters.write_calls = value;
  }
  return counters;
}

double Percentile(std::vector<double>& values, double fraction) {
  if (values.empty()) return 0;
  const size_t index = std::min(values.size() - 1,
                                static_cast<size_t>(fraction * static_cast<double>(values.size())));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index),
                   values.end());
  return values[index];
}

// With kOutboxEvents the service publishes every event to the outbox in the batch transaction;
// kEngineOnly runs the bare shard engine (ledger, stock, reservations; no events) to show the
// events' share of the cost.
enum class Mode { kOutboxEvents, kEngineOnly };

// kThreads: 64 OS threads, each blocking on its command (Execute) in a closed loop: every answer
// costs a condition-variable wake-up of a sleeping thread. kInFlight: the same 64 closed-loop
// requesters without threads of their own, as the asynchronous HTTP and bus front ends drive
// the engine: each requester's next command is submitted from the previous one's completion
// callback, so 64 commands are always in flight and no thread sleeps per request.
enum class Harness { kThreads, kInFlight };

// One asynchronous requester: reserve, then allocate, then the next reserve, until `stop`.
// Its fields are touched by one callback at a time (each runs after the previous command of
// the chain was answered), so it needs no lock.
struct Chain {
  int index = 0;
  int sku_count = 1;
  int64_t n = 0;
  std::string id;
  std::string order_id;
  std::chrono::steady_clock::time_point reserve_start;
  std::vector<double> latencies_ms;
};

struct InFlightRun {
  ShardEngine* engine = nullptr;
  IdGenerator* ids = nullptr;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reservations{0};
  std::atomic<int64_t> failures{0};
  std::mutex mutex;
  std::condition_variable all_done;
  int chains_running = 0;

  void Finish() {
    std::lock_guard lock(mutex);
    if (--chains_running == 0) all_done.notify_all();
  }

  void StartReserve(Chain& chain) {
    if (stop.load(std::memory_order_relaxed)) {
      Finish();
      return;
    }
    chain.id = ids->Next();
    chain.order_id = ids->Next();
    const int sku = chain.sku_count == 1
                        ? 0
                        : static_cast<int>((chain.n * kRequesters + chain.index) % chain.sku_count);
    chain.reserve_start = std::chrono::steady_clock::now();
    engine->Submit(
        cmd::Reserve{
            ReservationId(chain.id), {{Sku(fmt::format("sku-{}", sku)), 1}}, "eu", 600'000},
        [this, &chain](CommandResult reserved) {
          chain.latencies_ms.push_back(std::chrono::duration<double, std::milli>(
                                           std::chrono::steady_clock::now() - chain.reserve_start)
                                           .count());
          if (!reserved.status.ok() ||
              std::get<ReserveOutcome>(reserved.outcome) != ReserveOutcome::kReserved) {
            // Ends the chain: a refused Submit answers inline, so retrying here could recurse.
            failures.fetch_add(1);
            Finish();
            return;
          }
          engine->Submit(
              cmd::Allocate{ReservationId(chain.id), OrderId(chain.order_id)},
              [this, &chain](CommandResult allocated) {
                if (!allocated.status.ok() ||
                    std::get<AllocateOutcome>(allocated.outcome) != AllocateOutcome::kAllocated) {
                  failures.fetch_add(1);
                  Finish();
                  return;
                }
                reservations.fetch_add(1, std::memory_order_relaxed);
                ++chain.n;
                StartReserve(chain);
              });
        });
  }
};

absl::StatusOr<Result> RunScenario(const std::string& name, int sku_count, Mode mode,
                                   Harness harness) {
  const std::string dir = fmt::format("{}/emporium_inventory_bench_{}",
                                      std::filesystem::temp_directory_path().string(), getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  sql::SqliteOptions options;
  options.path = dir + "/inventory.db";
  options.name = "inventory";
  options.deferred_sync = true;  // as the server opens the inventory database
  absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
  if (!db.ok()) return db.status();
  if (absl::Status s = bus::InstallBusSchema(**db); !s.ok()) return s;
  if (absl::Status s = sql::ApplyMigrations(**db, "inventory", InventoryMigrations()); !s.ok()) {
    return s;
  }
  ServiceOptions service_options;
  service_options.sweep_interval_ms = 0;
  std::unique_ptr<InventoryService> service;
  std::unique_ptr<ShardEngine> bare_engine;
  if (mode == Mode::kOutboxEvents) {
    absl::StatusOr<std::unique_ptr<InventoryService>> created =
        InventoryService::Create(**db, SystemClock::Instance(), service_options);
    if (!created.ok()) return created.status();
    service = *std::move(created);
  } else {
    absl::StatusOr<std::unique_ptr<ShardEngine>> created =
        ShardEngine::Start(**db, SystemClock::Instance(), EngineOptions{});
    if (!created.ok()) return created.status();
    bare_engine = *std::move(created);
  }
  ShardEngine& engine = service ? service->engine() : *bare_engine;
  if (absl::Status s = engine.AddLocation({LocationId("w1"), "eu", ""}); !s.ok()) return s;
  for (int i = 0; i < sku_count; ++i) {
    CommandResult received = engine.Execute(
        cmd::Receive{Sku(fmt::format("sku-{}", i)), LocationId("w1"), kStockPerSku, "bench"});
    if (!received.status.ok()) return received.status;
  }
  const EngineStats before = engine.stats();
  const double cpu_before = CpuSeconds();
  const IoCounters io_before = ReadIo();

  std::atomic<bool> stop{false};
  std::atomic<int64_t> reservations{0};
  std::atomic<int64_t> failures{0};
  // Reservation and order ids as ordering makes them (time-ordered UUIDv7), so their rows and
  // index entries land where production's do.
  UuidV7Generator ids(SystemClock::Instance());
  std::vector<std::vector<double>> latencies(kRequesters);
  const auto start = std::chrono::steady_clock::now();
  if (harness == Harness::kInFlight) {
    InFlightRun run;
    run.engine = &engine;
    run.ids = &ids;
    std::vector<Chain> chains(kRequesters);
    run.chains_running = kRequesters;
    for (int r = 0; r < kRequesters; ++r) {
      chains[static_cast<size_t>(r)].index = r;
      chains[static_cast<size_t>(r)].sku_count = sku_count;
      run.StartReserve(chains[static_cast<size_t>(r)]);
    }
    std::this_thread::sleep_for(kRunTime);
    run.stop.store(true);
    {
      // Each chain ends at its next reserve; bounded by the drain of 64 commands.
      std::unique_lock lock(run.mutex);
      if (!run.all_done.wait_for(lock, std::chrono::seconds(60),
                                 [&run] { return run.chains_running == 0; })) {
        // The chains point into this frame: returning would leave the engine calling them.
        std::fprintf(stderr, "inventory_bench: in-flight requesters did not finish\n");
        std::abort();
      }
    }
    reservations.store(run.reservations.load());
    failures.store(run.failures.load());
    for (int r = 0; r < kRequesters; ++r) {
      latencies[static_cast<size_t>(r)] = std::move(chains[static_cast<size_t>(r)].latencies_ms);
    }
  } else {
    std::vector<std::thread> requesters;
    for (int r = 0; r < kRequesters; ++r) {
      requesters.emplace_back([&, r] {
        ShardEngine& inventory = engine;
        for (int64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
          const std::string id = ids.Next();
          const int sku = sku_count == 1 ? 0 : static_cast<int>((n * kRequesters + r) % sku_count);
          const auto t0 = std::chrono::steady_clock::now();
          CommandResult reserved = inventory.Execute(cmd::Reserve{
              ReservationId(id), {{Sku(fmt::format("sku-{}", sku)), 1}}, "eu", 600'000});
          const auto t1 = std::chrono::steady_clock::now();
          latencies[static_cast<size_t>(r)].push_back(
              std::chrono::duration<double, std::milli>(t1 - t0).count());
          if (!reserved.status.ok() ||
              std::get<ReserveOutcome>(reserved.outcome) != ReserveOutcome::kReserved) {
            failures.fetch_add(1);
            continue;
          }
          CommandResult allocated =
              inventory.Execute(cmd::Allocate{ReservationId(id), OrderId(ids.Next())});
          if (!allocated.status.ok() ||
              std::get<AllocateOutcome>(allocated.outcome) != AllocateOutcome::kAllocated) {
            failures.fetch_add(1);
            continue;
          }
          reservations.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    std::this_thread::sleep_for(kRunTime);
    stop.store(true);
    for (std::thread& t : requesters) t.join();
  }
  const auto end = std::chrono::steady_clock::now();
  const EngineStats after = engine.stats();
  const double cpu_after = CpuSeconds();
  const IoCounters io_after = ReadIo();
  if (service) service->Stop();
  engine.Stop();
  (*db)->Close();
  std::filesystem::remove_all(dir);

  std::vector<double> all;
  for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
  Result result;
  result.name = name;
  result.sku_count = sku_count;
  result.reservations = reservations.load();
  result.failures = failures.load();
  result.seconds = std::chrono::duration<double>(end - start).count();
  result.p50_ms = Percentile(all, 0.50);
  result.p99_ms = Percentile(all, 0.99);
  result.batches = after.batches_committed - before.batches_committed;
  result.cpu_seconds = cpu_after - cpu_before;
  result.written_bytes = io_after.written_bytes - io_before.written_bytes;
  result.write_calls = io_after.write_calls - io_before.write_calls;
  return result;
}

int Main(int argc, char** argv) {
  if (argc > 1 && argv[1][0] == '-') {
    std::fprintf(stderr, "usage: inventory_bench [results.md] [scenario name]\n");
    return std::string_view(argv[1]) == "--help" ? 0 : 2;
  }
  const std::string report = argc > 1 ? argv[1] : "bench/results/inventory.md";
  // Optional: run only the scenario of this name (for profiling).
  const std::string only = argc > 2 ? argv[2] : "";
  std::vector<Result> results;
  struct Scenario {
    std::string name;
    int skus;
    Mode mode;
    Harness harness;
  };
  for (const Scenario& scenario : std::vector<Scenario>{
           {"hot SKU", 1, Mode::kOutboxEvents, Harness::kThreads},
           {"hot SKU, 64 in flight (no requester threads)", 1, Mode::kOutboxEvents,
            Harness::kInFlight},
           {"spread over 10,000 SKUs", 10'000, Mode::kOutboxEvents, Harness::kThreads},
           {"hot SKU, engine only (no events)", 1, Mode::kEngineOnly, Harness::kThreads},
       }) {
    const std::string& name = scenario.name;
    if (!only.empty() && name != only) continue;
    absl::StatusOr<Result> result =
        RunScenario(name, scenario.skus, scenario.mode, scenario.harness);
    if (!result.ok()) {
      std::fprintf(stderr, "inventory_bench: %s: %s\n", name.c_str(),
                   std::string(result.status().message()).c_str());
      return 1;
    }
    const double batches = static_cast<double>(std::max<int64_t>(result->batches, 1));
    std::printf(
        "%s: %.0f reservations/s, reserve p50 %.2f ms p99 %.2f ms; %.1f commands/batch, "
        "%.2f ms CPU/batch (%.1f us/command), %.0f KiB and %.0f write calls/batch\n",
        name.c_str(), static_cast<double>(result->reservations) / result->seconds, result->p50_ms,
        result->p99_ms, 2.0 * static_cast<double>(result->reservations) / batches,
        1000.0 * result->cpu_seconds / batches,
        1e6 * result->cpu_seconds / std::max(1.0, 2.0 * static_cast<double>(result->reservations)),
        static_cast<double>(result->written_bytes) / 1024.0 / batches,
        static_cast<double>(result->write_calls) / batches);
    results.push_back(*result);
  }
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  std::string text =
      "# Inventory: durable reservations\n\n"
      "`inventory_bench` (bench/inventory_bench.cpp): 64 requesters (OS threads; in the \"64 in "
      "flight\" row, completion callbacks instead of threads, as the asynchronous HTTP and bus "
      "front ends drive the engine), each in a loop "
      "reserving 1 unit (answered only after its batch is committed to a real SQLite WAL file "
      "together with its ledger entry, stock row, reservation row and outbox events) and then "
      "allocating it (a second durable commit). A reservation counts once both are acknowledged. "
      "Latency is per reserve call, enqueue to acknowledgement.\n\n"
      "| scenario | SKUs | requesters | reservations | seconds | reservations/s | reserve p50 ms "
      "| reserve p99 ms | batches | commands/batch | CPU ms/batch | CPU µs/command | KiB "
      "written/batch "
      "| failures |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Result& r : results) {
    text += fmt::format(
        "| {} | {} | {} | {} | {:.1f} | {:.0f} | {:.2f} | {:.2f} | {} | {:.1f} | {:.2f} | {:.1f} "
        "| {:.0f} | {} |\n",
        r.name, r.sku_count, kRequesters, r.reservations, r.seconds,
        static_cast<double>(r.reservations) / r.seconds, r.p50_ms, r.p99_ms, r.batches,
        r.batches > 0 ? 2.0 * static_cast<double>(r.reservations) / static_cast<double>(r.batches)
                      : 0.0,
        r.batches > 0 ? 1000.0 * r.cpu_seconds / static_cast<double>(r.batches) : 0.0,
        1e6 * r.cpu_seconds / std::max(1.0, 2.0 * static_cast<double>(r.reservations)),
        r.batches > 0
            ? static_cast<double>(r.written_bytes) / 1024.0 / static_cast<double>(r.batches)
            : 0.0,
        r.failures);
  }
  text += fmt::format(
      "\nOne shard (the embedded default). Load average at the end: {:.2f}. Machine: 2 cores, "
      "~1,400 fdatasync/s (see docs). Target: >= 50,000 reservations/s on the hot SKU.\n",
      load[0]);
  std::ofstream(report) << text;
  std::printf("wrote %s\n", report.c_str());
  return 0;
}

}  // namespace
}  // namespace emporium::inventory

int main(int argc, char** argv) { return emporium::inventory::Main(argc, argv); }
