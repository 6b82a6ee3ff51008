// Payments authorization throughput, end to end: PaymentsService -> PSP sandbox over loopback
// HTTP (the sandbox keeps its own durable books), with both payments transactions (attempt,
// then outcome + outbox) durably committed in the payments SQLite database.
//
// Usage: payments_bench [results.md] [--seconds N] [--concurrency N] [--workers N] [--phases]
// Writes a Markdown report (to the path, when given) and prints it. --phases wraps the payments
// database and the PSP client in timing decorators and adds where an authorization's time goes
// (mean ms per authorization: reads, each write's queue wait / job / commit wait, the PSP call).
// --workers sets the service's PSP workers (default: the service's own default, which the
// server runs with).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
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

#include "common/clock.h"
#include "common/ids.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "payments/schema.h"
#include "payments/service.h"
#include "platform/bus/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "tools/psp_sandbox/sandbox.h"

namespace {

using namespace emporium;  // NOLINT: a benchmark's main file

using SteadyClock = std::chrono::steady_clock;

// ---- --phases: where an authorization's time goes ----------------------------------------

enum class Phase {
  kFraudRead,    // the read before step 1 (fraud history, card), reader wait included
  kStep1Queue,   // step 1: Write() called -> the job starts on the writer
  kStep1Job,     // step 1: the job itself
  kStep1Commit,  // step 1: the job ends -> Write() returns (rest of batch + commit)
  kAttemptRead,  // a read of the attempt before the PSP call (when it is not preloaded)
  kPspCall,      // HTTP round trip, including the sandbox's own durable commit
  kStep3Queue,   // step 3, as step 1
  kStep3Job,
  kStep3Commit,
};
constexpr int kPhaseCount = 9;
constexpr const char* kPhaseNames[kPhaseCount] = {
    "fraud read",         "step 1 queue wait", "step 1 job",
    "step 1 commit wait", "attempt read",      "PSP call (HTTP + sandbox)",
    "step 3 queue wait",  "step 3 job",        "step 3 commit wait"};

std::array<std::atomic<int64_t>, kPhaseCount> phase_ns{};
// On a caller's thread, the n-th read and write of the current authorization (the caller
// resets them): the first write is step 1, a later one step 3 (run there when the attempt is
// driven inline). On the service's own threads (workers) a write is step 3.
thread_local bool is_caller_thread = false;
thread_local int caller_reads = 0;
thread_local int caller_writes = 0;

void AddPhase(Phase phase, SteadyClock::time_point begin, SteadyClock::time_point end) {
  phase_ns[static_cast<size_t>(phase)].fetch_add(
      std::chrono::duration_cast<std::chrono::nanoseconds>(end - begin).count(),
      std::memory_order_relaxed);
}

// Times Read() and the three parts of Write() of the wrapped database.
class TimedDatabase final : public sql::Database {
 public:
  explicit TimedDatabase(sql::Database& inner) : inner_(inner) {}
  absl::Status Write(sql::WriteJob job) override {
    const bool step1 = is_caller_thread && caller_writes++ == 0;
    const auto called = SteadyClock::now();
    SteadyClock::time_point started = called;
    SteadyClock::time_point ended = called;
    absl::Status status = inner_.Write([&](sql::Transaction& tx) {
      started = SteadyClock::now();
      absl::Status result = job(tx);
      ended = SteadyClock::now();
      return result;
    });
    const auto returned = SteadyClock::now();
    AddPhase(step1 ? Phase::kStep1Queue : Phase::kStep3Queue, called, started);
    AddPhase(step1 ? Phase::kStep1Job : Phase::kStep3Job, started, ended);
    AddPhase(step1 ? Phase::kStep1Commit : Phase::kStep3Commit, ended, returned);
    return status;
  }
  // Step 1 is submitted from the caller's thread, step 3 from a worker; the three parts are
  // timed as Write()'s are (the commit wait ends when the WriteDone runs).
  void SubmitWrite(sql::WriteJob job, sql::WriteDone done) override {
    const bool step1 = is_caller_thread && caller_writes++ == 0;
    struct Times {
      SteadyClock::time_point called = SteadyClock::now();
      SteadyClock::time_point started;
      SteadyClock::time_point ended;
    };
    auto times = std::make_shared<Times>();
    inner_.SubmitWrite(
        [times, job = std::move(job)](sql::Transaction& tx) {
          times->started = SteadyClock::now();
          absl::Status result = job(tx);
          times->ended = SteadyClock::now();
          return result;
        },
        [times, step1, done = std::move(done)](absl::Status status) {
          const auto returned = SteadyClock::now();
          if (times->started != SteadyClock::time_point()) {
            AddPhase(step1 ? Phase::kStep1Queue : Phase::kStep3Queue, times->called,
                     times->started);
            AddPhase(step1 ? Phase::kStep1Job : Phase::kStep3Job, times->started, times->ended);
            AddPhase(step1 ? Phase::kStep1Commit : Phase::kStep3Commit, times->ended, returned);
          }
          done(std::move(status));
        });
  }
  absl::Status Read(sql::ReadJob job) override {
    const bool fraud = is_caller_thread && caller_reads++ == 0;
    const auto begin = SteadyClock::now();
    absl::Status status = inner_.Read(std::move(job));
    AddPhase(fraud ? Phase::kFraudRead : Phase::kAttemptRead, begin, SteadyClock::now());
    return status;
  }
  void AddCommitListener(std::function<void()> listener) override {
    inner_.AddCommitListener(std::move(listener));
  }
  sql::WriteStats stats() const override { return inner_.stats(); }
  std::string_view dialect() const override { return inner_.dialect(); }
  void Close() override { inner_.Close(); }

 private:
  sql::Database& inner_;
};

// Times the PSP calls of the wrapped client.
class TimedPspClient final : public payments::PspClient {
 public:
  explicit TimedPspClient(payments::PspClient& inner) : inner_(inner) {}
  absl::StatusOr<payments::PspResult> Authorize(const std::string& key, int64_t amount_minor,
                                                const std::string& currency,
                                                const std::string& card_number,
                                                const std::string& reference) override {
    const auto begin = SteadyClock::now();
    auto result = inner_.Authorize(key, amount_minor, currency, card_number, reference);
    AddPhase(Phase::kPspCall, begin, SteadyClock::now());
    return result;
  }
  absl::StatusOr<payments::PspResult> Capture(const std::string& key, const std::string& id,
                                              int64_t amount_minor) override {
    return inner_.Capture(key, id, amount_minor);
  }
  absl::StatusOr<payments::PspResult> Void(const std::string& key, const std::string& id) override {
    return inner_.Void(key, id);
  }
  absl::StatusOr<payments::PspResult> Refund(const std::string& key, const std::string& id,
                                             int64_t amount_minor) override {
    return inner_.Refund(key, id, amount_minor);
  }

 private:
  payments::PspClient& inner_;
};

// CPU seconds (user + system) and context switches of the whole process so far.
struct Usage {
  double cpu_seconds = 0;
  int64_t switches = 0;
};
Usage ProcessUsage() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return {seconds(usage.ru_utime) + seconds(usage.ru_stime),
          static_cast<int64_t>(usage.ru_nvcsw + usage.ru_nivcsw)};
}

// CPU ticks (utime + stime) of each thread of this process, by thread id.
std::map<int, int64_t> ThreadTicks() {
  std::map<int, int64_t> ticks;
  namespace fs = std::filesystem;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator("/proc/self/task", error)) {
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    int64_t utime = 0;
    int64_t stime = 0;
    for (int index = 3; fields >> field && index <= 15; ++index) {
      if (index == 14) utime = std::atoll(field.c_str());
      if (index == 15) stime = std::atoll(field.c_str());
    }
    ticks[std::atoi(entry.path().filename().c_str())] = utime + stime;
  }
  return ticks;
}

int Run(const std::string& report_path, int seconds, int concurrency, int workers, bool phases) {
  char pattern[] = "/tmp/emporium-payments-bench.XXXXXX";
  if (mkdtemp(pattern) == nullptr) return 1;
  const std::string dir = pattern;

  psp_sandbox::SandboxOptions sandbox_options;
  sandbox_options.db_path = dir + "/psp.db";
  psp_sandbox::PspSandbox sandbox(sandbox_options);
  if (absl::Status status = sandbox.Start(); !status.ok()) {
    std::fprintf(stderr, "sandbox: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  auto db = sql::OpenSqlite({.path = dir + "/payments.db", .name = "payments"});
  if (!db.ok()) return 1;
  if (!bus::InstallBusSchema(**db).ok()) return 1;
  if (!sql::ApplyMigrations(**db, "payments", payments::PaymentsMigrations()).ok()) return 1;
  auto psp = payments::MakeHttpPspClient(
      {.host = "127.0.0.1", .port = sandbox.port(), .connection_count_max = concurrency});
  payments::PaymentsOptions options;
  if (workers > 0) options.worker_count = workers;  // else the service default, as in production
  // Each customer buys many times a second here: velocity rules would (rightly) park them.
  options.fraud.card_attempts_max = INT64_MAX;
  options.fraud.customer_attempts_max = INT64_MAX;
  TimedDatabase timed_db(**db);
  TimedPspClient timed_psp(*psp);
  sql::Database& service_db = phases ? static_cast<sql::Database&>(timed_db) : **db;
  payments::PspClient& service_psp = phases ? static_cast<payments::PspClient&>(timed_psp) : *psp;
  payments::PaymentsService service(
      service_db,
      payments::Vault(*payments::VaultKeyring::Parse(payments::VaultKeyring::GenerateEntry("k1"))),
      service_psp, options);
  service.Start();
  // Realistic fraud inputs: many customers, one card each (created concurrently).
  constexpr int kCustomersPerCaller = 20;
  std::vector<std::vector<std::string>> tokens(static_cast<size_t>(concurrency));
  {
    std::vector<std::thread> setup;
    for (int t = 0; t < concurrency; ++t) {
      setup.emplace_back([&, t] {
        for (int c = 0; c < kCustomersPerCaller; ++c) {
          auto method = service.AddPaymentMethod(fmt::format("cus-{}-{}", t, c),
                                                 {"4242424242424242", 12, 2035, "123", "B"});
          if (method.ok()) tokens[static_cast<size_t>(t)].push_back(method->token);
        }
      });
    }
    for (std::thread& thread : setup) thread.join();
  }

  std::atomic<bool> stop{false};
  std::atomic<int64_t> failures{0};
  UuidV7Generator ids(SystemClock::Instance());
  std::vector<std::vector<double>> latencies(static_cast<size_t>(concurrency));
  std::vector<std::thread> threads;
  for (auto& total : phase_ns) total.store(0);
  const std::map<int, int64_t> ticks_before = phases ? ThreadTicks() : std::map<int, int64_t>();
  const Usage usage_before = ProcessUsage();
  const sql::WriteStats writes_before = (*db)->stats();
  const auto started = std::chrono::steady_clock::now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      SetCurrentThreadName("bench-caller");
      is_caller_thread = true;
      for (int64_t i = 0; !stop.load(); ++i) {
        payments::AuthorizeCommand command;
        // Ids as ordering makes them (UUIDv7: the order's id, and the bus message id that is
        // the command id), so their index entries land where production's do.
        command.order_id = ids.Next();
        command.command_id = ids.Next();
        const size_t customer = static_cast<size_t>(i % kCustomersPerCaller);
        command.customer_id = fmt::format("cus-{}-{}", t, customer);
        command.payment_method = tokens[static_cast<size_t>(t)].at(customer);
        command.amount_minor = 1'000 + i % 1'000;
        command.currency = "USD";
        caller_reads = 0;
        caller_writes = 0;
        const auto begin = std::chrono::steady_clock::now();
        auto intent = service.Authorize(command);
        const auto end = std::chrono::steady_clock::now();
        if (!intent.ok() || intent->state != payments::IntentState::kAuthorized) {
          failures.fetch_add(1);
          continue;
        }
        latencies[static_cast<size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(end - begin).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const Usage usage_after = ProcessUsage();
  const sql::WriteStats writes_after = (*db)->stats();
  const std::map<int, int64_t> ticks_after = phases ? ThreadTicks() : std::map<int, int64_t>();
  service.Stop();
  (*db)->Close();
  sandbox.Shutdown();

  std::vector<double> all;
  for (const auto& per_thread : latencies)
    all.insert(all.end(), per_thread.begin(), per_thread.end());
  std::sort(all.begin(), all.end());
  auto percentile = [&all](double p) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  const double rate = static_cast<double>(all.size()) / elapsed;
  // CPU per authorization counts everything in this process: the service, the HTTP client,
  // the sandbox server and both databases' writers (not the kernel's fsync wait, which is
  // idle time). It is the figure that does not swing with the other load on the machine.
  const double operations = std::max<double>(1.0, static_cast<double>(all.size()));
  const double cpu_us_per_auth =
      (usage_after.cpu_seconds - usage_before.cpu_seconds) * 1e6 / operations;
  const double switches_per_auth =
      static_cast<double>(usage_after.switches - usage_before.switches) / operations;
  double load[3] = {0, 0, 0};
  if (std::ifstream loadavg("/proc/loadavg"); loadavg) loadavg >> load[0] >> load[1] >> load[2];
  std::ostringstream report;
  report << "# Payments: authorizations end to end\n\n"
         << fmt::format(
                "- {} concurrent callers for {:.1f} s; PaymentsService ({} PSP workers) -> PSP "
                "sandbox over loopback HTTP (pooled keep-alive), both in this process\n",
                concurrency, elapsed, options.worker_count)
         << "- per authorization: attempt transaction, PSP call (the sandbox commits its own "
            "books durably), outcome + outbox transaction; SQLite WAL, synchronous=FULL, group "
            "commit\n"
         << fmt::format(
                "- load average at the end: {:.2f} {:.2f} {:.2f} (other engineers "
                "share these 2 cores)\n\n",
                load[0], load[1], load[2])
         << "| authorizations | failures | auth/s | p50 ms | p99 ms | CPU us/auth | "
            "context switches/auth |\n"
         << "|---:|---:|---:|---:|---:|---:|---:|\n"
         << fmt::format("| {} | {} | {:.0f} | {:.2f} | {:.2f} | {:.0f} | {:.1f} |\n\n", all.size(),
                        failures.load(), rate, percentile(0.50), percentile(0.99), cpu_us_per_auth,
                        switches_per_auth)
         << fmt::format("Target >= 5,000 auth/s: **{}**.\n", rate >= 5'000 ? "met" : "not met");
  if (phases) {
    // Means over every authorization of the window (failures included in the phase sums).
    report << "\n| phase (--phases) | mean ms per authorization |\n|---|---:|\n";
    double accounted_ms = 0;
    for (int p = 0; p < kPhaseCount; ++p) {
      const double ms =
          static_cast<double>(phase_ns[static_cast<size_t>(p)].load()) / 1e6 / operations;
      accounted_ms += ms;
      report << fmt::format("| {} | {:.2f} |\n", kPhaseNames[p], ms);
    }
    double mean_ms = 0;
    for (double latency : all) mean_ms += latency;
    mean_ms /= operations;
    report << fmt::format("| rest (hand-offs between threads, wake-ups) | {:.2f} |\n",
                          mean_ms - accounted_ms)
           << fmt::format("| **total (mean latency)** | **{:.2f}** |\n", mean_ms);
    // The busiest threads are the two databases' single writers (the serial resources every
    // commit waits on): their CPU per authorization bounds how short a group commit can be.
    std::vector<int64_t> busiest;
    for (const auto& [tid, ticks] : ticks_after) {
      auto before = ticks_before.find(tid);
      busiest.push_back(ticks - (before == ticks_before.end() ? 0 : before->second));
    }
    std::sort(busiest.rbegin(), busiest.rend());
    const double us_per_tick = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
    report << "\nbusiest threads, CPU us per authorization:";
    for (size_t i = 0; i < std::min<size_t>(3, busiest.size()); ++i) {
      report << fmt::format(" {:.0f}", static_cast<double>(busiest[i]) * us_per_tick / operations);
    }
    report << "\n";
    // What each group commit of the payments database carries: more jobs per batch spread the
    // commit's fixed cost; pages per authorization are the WAL bytes (and checkpoint work) one
    // costs, index leaves included.
    const double batches =
        static_cast<double>(writes_after.batches_committed - writes_before.batches_committed);
    const double jobs =
        static_cast<double>(writes_after.jobs_committed - writes_before.jobs_committed);
    report << fmt::format(
        "payments writer: {:.0f} commits/s, {:.1f} jobs per commit, {:.1f} WAL pages per "
        "authorization\n",
        batches / elapsed, jobs / std::max(1.0, batches),
        static_cast<double>(writes_after.pages_written - writes_before.pages_written) / operations);
  }
  std::printf("%s", report.str().c_str());
  if (!report_path.empty()) std::ofstream(report_path) << report.str();
  std::string cleanup = "rm -rf " + dir;
  return std::system(cleanup.c_str()) == 0 ? 0 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string report_path;
  int seconds = 10;
  int concurrency = 64;
  int workers = 0;  // 0: the service default
  bool phases = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--concurrency" && i + 1 < argc) {
      concurrency = std::clamp(std::atoi(argv[++i]), 1, 1024);
    } else if (arg == "--workers" && i + 1 < argc) {
      workers = std::clamp(std::atoi(argv[++i]), 1, 1024);
    } else if (arg == "--phases") {
      phases = true;
    } else if (arg.starts_with("-")) {
      std::fprintf(stderr,
                   "usage: payments_bench [results.md] [--seconds N] [--concurrency N] "
                   "[--workers N] [--phases]\n");
      return arg == "--help" || arg == "-h" ? 0 : 2;
    } else {
      report_path = arg;
    }
  }
  return Run(report_path, seconds, concurrency, workers, phases);
}
