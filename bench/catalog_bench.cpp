// Catalog benchmark, the in-process half of the benchmark (bench/run.sh adds the HTTP
// half: cached product reads beside nginx and /search, with wrk, against `emporium serve`).
//
//  (a) Ingestion: N demo products (the deterministic seed generator) go through the same write
//      path as POST /api/v1/admin/products/batch -- validation, the durable update queue (one
//      committed transaction per 1,000-product batch) -- while the processor thread applies
//      them (store rows, outbox event, search index, cache invalidation). Reported: products
//      accepted per second, products applied per second (first enqueue to last applied) and
//      when the search index had caught up.
//  (b) Start-up and memory, measured in a fresh child process over the data directory (a) left
//      behind: time from opening the database to ready (migrations checked, processor running,
//      search index open and caught up), RSS when ready, and RSS after every product has been
//      read once through the read cache; plus the in-process cost of a cold and a cached GET.
//
// Usage: catalog_bench [report.md] [--products N] [--data-dir DIR]
//   report.md  default bench/results/catalog.md
//   N          default 100000, or CATALOG_BENCH_PRODUCTS
//   DIR        keep the seeded data directory here (must be absent or empty) so bench/run.sh can
//              serve it; default: a temporary directory, removed at the end.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catalog/cli.h"
#include "catalog/module.h"
#include "catalog/seed.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/http/router.h"

namespace emporium::catalog {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kDefaultProducts = 100'000;
constexpr int64_t kProductsMax = 1'000'000;
constexpr uint64_t kSeed = 42;
// Polling bounds: waiting for the processor / the index never runs forever.
constexpr auto kPollInterval = std::chrono::milliseconds(5);
constexpr auto kWaitMax = std::chrono::minutes(60);

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

double Percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  const size_t index = std::min(values.size() - 1,
                                static_cast<size_t>(fraction * static_cast<double>(values.size())));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index),
                   values.end());
  return values[index];
}

int64_t RssKilobytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return 0;
}

std::string LoadAverage() {
  std::ifstream file("/proc/loadavg");
  std::string one, five, fifteen;
  file >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

std::string CommandOutput(const std::string& command) {
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t read = 0;
    while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, read);
    pclose(pipe);
  }
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return output;
}

CatalogOptions ModuleOptions(const std::string& dir) {
  CatalogOptions options;
  // The same layout as `emporium serve` and `emporium seed` use.
  options.search_directory = fmt::format("{}/catalog_search", dir);
  options.processor.idle_poll = absl::Milliseconds(20);
  return options;
}

absl::StatusOr<int64_t> MaxSeq(sql::Database& database) {
  int64_t seq = 0;
  absl::Status status = database.Read([&](sql::Transaction& tx) {
    absl::StatusOr<int64_t> loaded = MaxProductSeq(tx);
    if (!loaded.ok()) return loaded.status();
    seq = *loaded;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return seq;
}

// Polls `done` every kPollInterval, at most kWaitMax.
template <typename Predicate>
absl::Status WaitFor(Predicate done, std::string_view what) {
  const Clock::time_point deadline = Clock::now() + kWaitMax;
  while (!done()) {
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(fmt::format("timed out waiting for {}", what));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return absl::OkStatus();
}

struct Ingestion {
  int64_t products = 0;
  int64_t batches = 0;
  double enqueue_seconds = 0;  // first enqueue to last enqueue acknowledged
  double applied_seconds = 0;  // first enqueue to last product applied
  double indexed_seconds = 0;  // first enqueue to the search index caught up
  double batch_p50_ms = 0;     // enqueue latency of one 1,000-product batch
  double batch_p99_ms = 0;
  int64_t rejected = 0;
  int64_t database_batches = 0;  // group commits on the catalog database
  int64_t search_documents = 0;
  int64_t database_bytes = 0;
  int64_t index_bytes = 0;
};

int64_t DirectoryBytes(const std::string& path) {
  std::error_code error;
  int64_t bytes = 0;
  if (std::filesystem::is_regular_file(path, error)) {
    return static_cast<int64_t>(std::filesystem::file_size(path, error));
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path, error)) {
    if (entry.is_regular_file(error)) bytes += static_cast<int64_t>(entry.file_size(error));
  }
  return bytes;
}

absl::StatusOr<Ingestion> Ingest(const std::string& dir, int64_t count) {
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenCatalogDatabase(dir);
  if (!database.ok()) return database.status();
  CatalogModule module(ModuleOptions(dir));
  http::Router unused_router;
  ContextDeps deps;
  deps.database = database->get();
  if (absl::Status status = module.Wire(deps, unused_router); !status.ok()) return status;
  if (absl::Status status = module.Start(); !status.ok()) return status;
  const sql::WriteStats before = (*database)->stats();

  Ingestion result;
  std::vector<double> batch_ms;
  const Clock::time_point start = Clock::now();
  for (int64_t first = 0; first < count; first += static_cast<int64_t>(kBatchProductsMax)) {
    const int64_t last = std::min(count, first + static_cast<int64_t>(kBatchProductsMax));
    std::vector<WriteCommand> commands;
    commands.reserve(static_cast<size_t>(last - first));
    for (int64_t index = first; index < last; ++index) {
      WriteCommand command;
      command.kind = UpdateKind::kCreate;
      command.payload = SeedProduct(kSeed, index);
      if (absl::Status status = CatalogService::Validate(command); !status.ok()) return status;
      commands.push_back(std::move(command));
    }
    const Clock::time_point batch_start = Clock::now();
    absl::StatusOr<StoredResponse> accepted =
        module.service().EnqueueAndWait(std::move(commands), CatalogService::Shape::kBatch);
    if (!accepted.ok()) return accepted.status();
    if (accepted->status != 202) {
      return absl::InternalError(
          fmt::format("enqueue answered {}: {}", accepted->status, accepted->body.substr(0, 300)));
    }
    batch_ms.push_back(Seconds(Clock::now() - batch_start) * 1000);
    ++result.batches;
  }
  result.enqueue_seconds = Seconds(Clock::now() - start);
  Processor& processor = module.processor();
  absl::Status applied = WaitFor(
      [&] { return processor.applied_count() + processor.rejected_count() >= count; }, "apply");
  if (!applied.ok()) return applied;
  result.applied_seconds = Seconds(Clock::now() - start);
  absl::StatusOr<int64_t> max_seq = MaxSeq(**database);
  if (!max_seq.ok()) return max_seq.status();
  SearchIndex* search = module.search();
  if (search != nullptr) {
    absl::Status indexed = WaitFor(
        [&] {
          return search->state() == SearchIndex::State::kReady &&
                 search->last_update_seq() >= *max_seq;
        },
        "the search index");
    if (!indexed.ok()) return indexed;
    result.indexed_seconds = Seconds(Clock::now() - start);
    result.search_documents = search->document_count();
  }
  result.products = processor.applied_count();
  result.rejected = processor.rejected_count();
  result.database_batches = (*database)->stats().batches_committed - before.batches_committed;
  result.batch_p50_ms = Percentile(batch_ms, 0.50);
  result.batch_p99_ms = Percentile(batch_ms, 0.99);
  module.Stop();
  (*database)->Close();
  result.database_bytes = DirectoryBytes(fmt::format("{}/catalog.db", dir)) +
                          DirectoryBytes(fmt::format("{}/catalog.db-wal", dir));
  result.index_bytes = DirectoryBytes(fmt::format("{}/catalog_search", dir));
  return result;
}

// ---- (b): runs in a child process so the RSS is a server's, not the ingester's. ----

int MeasureStartup(const std::string& dir) {
  const int64_t rss_start_kb = RssKilobytes();
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenCatalogDatabase(dir);
  if (!database.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(database.status().message()).c_str());
    return 1;
  }
  CatalogModule module(ModuleOptions(dir));
  http::Router router;
  ContextDeps deps;
  deps.database = database->get();
  if (absl::Status status = module.Wire(deps, router); !status.ok()) return 1;
  if (absl::Status status = module.Start(); !status.ok()) return 1;
  absl::StatusOr<int64_t> max_seq = MaxSeq(**database);
  if (!max_seq.ok()) return 1;
  SearchIndex* search = module.search();
  absl::Status ready = WaitFor(
      [&] {
        return module.ReadinessProblem().empty() &&
               (search == nullptr || (search->state() == SearchIndex::State::kReady &&
                                      search->last_update_seq() >= *max_seq));
      },
      "ready");
  if (!ready.ok()) return 1;
  const double startup_ms = Seconds(Clock::now() - start) * 1000;
  const int64_t rss_ready_kb = RssKilobytes();

  std::vector<std::string> ids;
  absl::Status listed = (*database)->Read([&](sql::Transaction& tx) {
    absl::StatusOr<sql::ResultSet> rows =
        tx.Query("SELECT id FROM catalog_products WHERE status = 'active'");
    if (!rows.ok()) return rows.status();
    for (const sql::Row& row : rows->rows) ids.push_back(row.Text(0));
    return absl::OkStatus();
  });
  if (!listed.ok() || ids.empty()) return 1;
  // Cold: every product loaded from the store and inserted into the cache.
  const Clock::time_point cold_start = Clock::now();
  size_t body_bytes = 0;
  for (const std::string& id : ids) {
    absl::StatusOr<std::shared_ptr<const CachedProduct>> product = module.service().GetProduct(id);
    if (!product.ok()) return 1;
    body_bytes += (*product)->body.size();
  }
  const double cold_us = Seconds(Clock::now() - cold_start) * 1e6 / static_cast<double>(ids.size());
  // Cached: the same reads again, now hits.
  const Clock::time_point warm_start = Clock::now();
  for (const std::string& id : ids) {
    if (!module.service().GetProduct(id).ok()) return 1;
  }
  const double cached_us =
      Seconds(Clock::now() - warm_start) * 1e6 / static_cast<double>(ids.size());
  std::printf("startup_ms=%.1f\n", startup_ms);
  std::printf("rss_start_kb=%lld\n", static_cast<long long>(rss_start_kb));
  std::printf("rss_ready_kb=%lld\n", static_cast<long long>(rss_ready_kb));
  std::printf("rss_cached_kb=%lld\n", static_cast<long long>(RssKilobytes()));
  std::printf("products=%zu\n", ids.size());
  std::printf("body_bytes_avg=%zu\n", body_bytes / ids.size());
  std::printf("cache_entries=%zu\n", module.cache().entries());
  std::printf("cache_bytes=%zu\n", module.cache().bytes());
  std::printf("cold_get_us=%.2f\n", cold_us);
  std::printf("cached_get_us=%.3f\n", cached_us);
  module.Stop();
  (*database)->Close();
  return 0;
}

std::map<std::string, std::string> ParseKeyValues(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "catalog_bench: %s\n", status.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  std::string report = "bench/results/catalog.md";
  std::string data_dir;
  int64_t count = kDefaultProducts;
  if (const char* env = std::getenv("CATALOG_BENCH_PRODUCTS")) count = std::atoll(env);
  bool report_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--measure-startup" && i + 1 < argc) return MeasureStartup(argv[i + 1]);
    if (arg == "--products" && i + 1 < argc) {
      count = std::atoll(argv[++i]);
    } else if (arg == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (!report_set && arg.rfind("--", 0) != 0) {
      report = arg;
      report_set = true;
    } else {
      std::fprintf(stderr, "usage: catalog_bench [report.md] [--products N] [--data-dir DIR]\n");
      return 2;
    }
  }
  if (count < 1 || count > kProductsMax) {
    return Fail(absl::InvalidArgumentError(fmt::format("products must be 1..{}", kProductsMax)));
  }
  const bool keep_data = !data_dir.empty();
  std::error_code error;
  if (keep_data) {
    if (std::filesystem::exists(data_dir, error) && !std::filesystem::is_empty(data_dir, error)) {
      return Fail(absl::FailedPreconditionError(
          fmt::format("--data-dir {} must be absent or empty", data_dir)));
    }
  } else {
    data_dir = fmt::format("{}/emporium_catalog_bench_{}",
                           std::filesystem::temp_directory_path().string(), getpid());
    std::filesystem::remove_all(data_dir, error);
  }
  std::filesystem::create_directories(data_dir, error);
  if (error) return Fail(absl::UnavailableError(fmt::format("cannot create {}", data_dir)));

  std::printf("catalog_bench: ingesting %lld products into %s ...\n", static_cast<long long>(count),
              data_dir.c_str());
  std::fflush(stdout);
  const std::string load_before = LoadAverage();
  absl::StatusOr<Ingestion> ingestion = Ingest(data_dir, count);
  if (!ingestion.ok()) return Fail(ingestion.status());
  std::printf("catalog_bench: applied %lld in %.1f s; measuring start-up ...\n",
              static_cast<long long>(ingestion->products), ingestion->applied_seconds);
  std::fflush(stdout);

  char self[4096] = {};
  const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (length <= 0) return Fail(absl::InternalError("cannot find /proc/self/exe"));
  const std::map<std::string, std::string> startup =
      ParseKeyValues(CommandOutput(fmt::format("'{}' --measure-startup '{}'", self, data_dir)));
  if (startup.count("startup_ms") == 0) {
    return Fail(absl::InternalError("the start-up child failed"));
  }
  auto value = [&startup](const std::string& key) {
    auto it = startup.find(key);
    return it == startup.end() ? std::string("?") : it->second;
  };
  auto megabytes = [&value](const std::string& key) {
    return fmt::format("{:.0f}", std::atof(value(key).c_str()) / 1024.0);
  };
  const std::string load_after = LoadAverage();

  const Ingestion& in = *ingestion;
  std::string text;
  text += "# Catalog\n\n";
  text += fmt::format(
      "- date: {}\n- machine: {} cores, {}\n- commit: {}\n- load average (1/5/15 min) before: "
      "{}; after: {}\n- catalog: {} products from the seed generator (seed {}; 1-12 variants "
      "each)\n\n",
      CommandOutput("date -u +%Y-%m-%dT%H:%M:%SZ"), std::thread::hardware_concurrency(),
      CommandOutput("uname -sr"), CommandOutput("git rev-parse --short HEAD 2>/dev/null"),
      load_before, load_after, count, kSeed);
  text += "## (a) Ingestion through the durable update queue\n\n";
  text += fmt::format(
      "`catalog_bench` (bench/catalog_bench.cpp): batches of {} products, each validated and "
      "appended to the update queue in one durable transaction (the path of POST "
      "/api/v1/admin/products/batch), while the processor thread applies them in order "
      "(product rows, prices, attributes, SKUs, `catalog.product_changed` in the outbox, then "
      "the Xapian index and cache invalidation).\n\n",
      kBatchProductsMax);
  text +=
      "| products | accepted/s (queue) | applied/s (queue -> applied) | search index caught up "
      "after | batch enqueue p50 ms | batch enqueue p99 ms | group commits | rejected |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  text += fmt::format("| {} | {:.0f} | {:.0f} | {:.1f} s | {:.1f} | {:.1f} | {} | {} |\n\n",
                      in.products, static_cast<double>(count) / in.enqueue_seconds,
                      static_cast<double>(in.products) / in.applied_seconds, in.indexed_seconds,
                      in.batch_p50_ms, in.batch_p99_ms, in.database_batches, in.rejected);
  text += fmt::format(
      "All {} applied after {:.1f} s (enqueueing finished after {:.1f} s). On disk: catalog.db "
      "{:.0f} MiB, search index {:.0f} MiB ({} documents).\n\n",
      in.products, in.applied_seconds, in.enqueue_seconds,
      static_cast<double>(in.database_bytes) / (1 << 20),
      static_cast<double>(in.index_bytes) / (1 << 20), in.search_documents);
  text += "## (b) Start-up and memory with the catalog loaded\n\n";
  text +=
      "A fresh process opens the data directory (a) left behind: database and migrations "
      "checked, catalog module wired and started, search index open and caught up = ready. "
      "Then every product is read once through `CatalogService::GetProduct` (store -> read "
      "cache) and once more (cache hits).\n\n";
  text +=
      "| products | start-up to ready | RSS ready | RSS, every product cached | cache | "
      "avg body | cold GET (in-process) | cached GET (in-process) |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  text += fmt::format(
      "| {} | {} ms | {} MiB | {} MiB | {} keys (id and handle), {:.0f} MiB | {} B | {} us | {} "
      "us |\n\n",
      value("products"), value("startup_ms"), megabytes("rss_ready_kb"), megabytes("rss_cached_kb"),
      value("cache_entries"), std::atof(value("cache_bytes").c_str()) / (1 << 20),
      value("body_bytes_avg"), value("cold_get_us"), value("cached_get_us"));
  text +=
      "The whole `emporium serve` process (every context, HTTP server) is measured by "
      "bench/run.sh below, next to the HTTP figures.\n\n";
  std::fputs(text.c_str(), stdout);
  std::filesystem::create_directories(std::filesystem::path(report).parent_path(), error);
  std::ofstream(report) << text;
  if (!keep_data) std::filesystem::remove_all(data_dir, error);
  return 0;
}

}  // namespace
}  // namespace emporium::catalog

int main(int argc, char** argv) { return emporium::catalog::Main(argc, argv); }
