// Group commit benchmark: what batching many writes behind one fsync buys.
//
//   group_commit_bench [output.md] [data_dir]
//
// Measures (a) the disk's raw rate of 512-byte write + fdatasync, (b) 64 writer threads doing
// single-row durable inserts through the batched writer, (c) the same with one transaction per
// write (batch_jobs_max = 1). CPU µs/write is the whole process's user+system CPU time over the
// scenario divided by the writes (writer threads, the database's writer thread, wake-ups): the
// figure that does not swing with the load of a shared machine the way writes/s does. Prints a
// table and writes it as markdown to output.md (default bench/results/group_commit.md). Data lives
// in a fresh directory under data_dir (default /tmp), removed afterwards; it must be on the disk
// you want to measure (not tmpfs).
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "platform/sql/sqlite_database.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kFsyncDuration = std::chrono::seconds(2);
constexpr auto kWriterDuration = std::chrono::seconds(5);
constexpr int kWriterThreads = 64;

struct Result {
  std::string scenario;
  int64_t operations = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double mean_batch = 0;  // 0: not applicable
  double cpu_us_per_op = 0;
};

// User + system CPU time of the whole process so far, in microseconds.
double ProcessCpuUs() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto us = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
  };
  return us(usage.ru_utime) + us(usage.ru_stime);
}

double Percentile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  size_t index =
      std::min(values.size() - 1, static_cast<size_t>(q * static_cast<double>(values.size())));
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(index),
                   values.end());
  return values[index];
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

Result MeasureFdatasync(const std::string& dir) {
  Result result{.scenario = "raw 512 B write + fdatasync (1 thread)"};
  std::string path = dir + "/fsync.bin";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) {
    std::perror("open");
    return result;
  }
  char block[512] = {};
  std::vector<double> latencies;
  const double cpu_start_us = ProcessCpuUs();
  auto start = Clock::now();
  while (Clock::now() - start < kFsyncDuration) {
    auto t0 = Clock::now();
    block[0] = static_cast<char>(latencies.size());
    if (pwrite(fd, block, sizeof(block), 0) != static_cast<ssize_t>(sizeof(block)) ||
        fdatasync(fd) != 0) {
      std::perror("pwrite/fdatasync");
      break;
    }
    latencies.push_back(Ms(Clock::now() - t0));
  }
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  close(fd);
  result.operations = static_cast<int64_t>(latencies.size());
  if (result.operations > 0) {
    result.cpu_us_per_op = (ProcessCpuUs() - cpu_start_us) / static_cast<double>(result.operations);
  }
  result.p50_ms = Percentile(latencies, 0.50);
  result.p99_ms = Percentile(latencies, 0.99);
  return result;
}

Result MeasureWriters(const std::string& dir, const std::string& scenario, size_t batch_jobs_max) {
  Result result{.scenario = scenario};
  emporium::sql::SqliteOptions options;
  options.path = fmt::format("{}/bench_{}.db", dir, batch_jobs_max);
  options.name = "bench";
  options.batch_jobs_max = batch_jobs_max;
  auto opened = emporium::sql::OpenSqlite(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return result;
  }
  auto& db = **opened;
  absl::Status created = db.Write([](emporium::sql::Transaction& transaction) {
    return transaction
        .Execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, writer BIGINT NOT NULL, "
            "seq BIGINT NOT NULL, payload TEXT NOT NULL)")
        .status();
  });
  if (!created.ok()) {
    std::fprintf(stderr, "create: %s\n", created.ToString().c_str());
    return result;
  }
  emporium::sql::WriteStats before = db.stats();
  std::vector<std::vector<double>> latencies(kWriterThreads);
  std::atomic<int64_t> failures{0};
  const double cpu_start_us = ProcessCpuUs();
  auto start = Clock::now();
  auto deadline = start + kWriterDuration;
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriterThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string payload(100, 'x');
      for (int64_t seq = 0; Clock::now() < deadline; ++seq) {
        auto t0 = Clock::now();
        absl::Status status = db.Write([&](emporium::sql::Transaction& transaction) {
          return transaction
              .Execute("INSERT INTO events (writer, seq, payload) VALUES (?, ?, ?)",
                       {int64_t{t}, seq, payload})
              .status();
        });
        if (!status.ok()) failures.fetch_add(1);
        latencies[static_cast<size_t>(t)].push_back(Ms(Clock::now() - t0));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu_us = ProcessCpuUs() - cpu_start_us;
  emporium::sql::WriteStats after = db.stats();
  db.Close();
  std::vector<double> all;
  for (auto& per_thread : latencies) all.insert(all.end(), per_thread.begin(), per_thread.end());
  result.operations = after.jobs_committed - before.jobs_committed;
  if (result.operations > 0) result.cpu_us_per_op = cpu_us / static_cast<double>(result.operations);
  int64_t batches = after.batches_committed - before.batches_committed;
  result.mean_batch =
      batches > 0 ? static_cast<double>(result.operations) / static_cast<double>(batches) : 0;
  result.p50_ms = Percentile(all, 0.50);
  result.p99_ms = Percentile(all, 0.99);
  if (failures.load() > 0)
    std::fprintf(stderr, "%s: %lld failed writes\n", scenario.c_str(),
                 static_cast<long long>(failures.load()));
  return result;
}

std::string Table(const std::vector<Result>& results) {
  std::string table =
      "| scenario | operations | writes/s | p50 latency (ms) | p99 latency (ms) | mean batch | CPU "
      "µs/write |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n";
  for (const Result& r : results) {
    table += fmt::format(
        "| {} | {} | {:.0f} | {:.2f} | {:.2f} | {} | {:.1f} |\n", r.scenario, r.operations,
        r.seconds > 0 ? static_cast<double>(r.operations) / r.seconds : 0.0, r.p50_ms, r.p99_ms,
        r.mean_batch > 0 ? fmt::format("{:.1f}", r.mean_batch) : "-", r.cpu_us_per_op);
  }
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  std::string output = argc > 1 ? argv[1] : "bench/results/group_commit.md";
  std::string base = argc > 2 ? argv[2] : "/tmp";
  std::string pattern = base + "/emporium_group_commit_XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = pattern;

  std::vector<Result> results;
  results.push_back(MeasureFdatasync(dir));
  results.push_back(MeasureWriters(
      dir, fmt::format("{} threads, batched writer (batch_jobs_max=1024)", kWriterThreads), 1024));
  results.push_back(MeasureWriters(
      dir, fmt::format("{} threads, one transaction per write (batch_jobs_max=1)", kWriterThreads),
      1));
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);

  std::string table = Table(results);
  // The disk and cores are shared; the load says how much the figures were disturbed.
  std::string load_average = "unknown";
  if (std::ifstream loadavg("/proc/loadavg"); loadavg) {
    std::getline(loadavg, load_average);
  }
  std::string markdown = fmt::format(
      "# Group commit benchmark\n\n"
      "`bench/group_commit_bench.cpp`: SQLite {} in WAL mode with synchronous=FULL (every "
      "acknowledged write is durable), {} hardware threads, data in `{}`. Each write is one "
      "single-row INSERT submitted with `Database::Write()`, which returns once the write is "
      "durable; latency is measured around that call. Load average at the end of the run: "
      "{}.\n\n{}",
      sqlite3_libversion(), std::thread::hardware_concurrency(), base, load_average, table);
  std::fputs(table.c_str(), stdout);
  std::filesystem::path out_path(output);
  if (out_path.has_parent_path())
    std::filesystem::create_directories(out_path.parent_path(), ignored);
  std::ofstream out(output);
  out << markdown;
  if (!out) {
    std::fprintf(stderr, "could not write %s\n", output.c_str());
    return 1;
  }
  std::printf("wrote %s\n", output.c_str());
  return 0;
}
