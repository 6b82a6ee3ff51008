#include "tools/loadgen/engine.h"

// <utility> must precede Asio's coroutine headers in Boost 1.74 (awaitable.hpp uses
// std::exchange without including it).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/redirect_error.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "fmt/format.h"

namespace emporium::loadgen {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kResponseBytesMax = 8 << 20;
constexpr auto kReconnectBackoff = std::chrono::milliseconds(50);
constexpr auto kStopGrace = std::chrono::seconds(1);
constexpr absl::Duration kDurationMax = absl::Hours(1);
constexpr absl::Duration kWarmupMax = absl::Minutes(10);
constexpr double kRatePerSecondMax = 10'000'000;

SteadyClock::duration ToChrono(absl::Duration duration) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(duration));
}

int64_t Micros(SteadyClock::duration duration) {
  return std::chrono::duration_cast<std::chrono::microseconds>(duration).count();
}

struct Window {
  SteadyClock::time_point start;
  SteadyClock::time_point measure_start;
  SteadyClock::time_point end;
  int64_t warmup_seconds = 0;    // whole seconds before measure_start with a bucket
  int64_t measured_seconds = 0;  // whole-or-partial seconds in the measured window

  // Bucket of an exchange completed at `time`, or -1 outside every bucket.
  int64_t BucketOf(SteadyClock::time_point time) const {
    const auto since = time - measure_start;
    const int64_t second = static_cast<int64_t>(
        std::floor(std::chrono::duration<double>(since).count()));  // negative in warm-up
    const int64_t index = warmup_seconds + second;
    if (index < 0 || index >= warmup_seconds + measured_seconds) return -1;
    return index;
  }
};

struct SecondBucket {
  LatencyHistogram latency_us;
  int64_t errors = 0;
};

struct Worker {
  asio::io_context io{1};
  std::thread thread;

  // Totals of the measured window; io thread only until joined.
  LatencyHistogram latency_us;
  int64_t ok = 0;
  int64_t rejected = 0;
  int64_t errors = 0;
  std::map<int, int64_t> by_status;
  std::map<std::string, int64_t> transport_errors;
  int64_t connects = 0;

  // Per-second buckets, read by the RunLoad thread for the progress line.
  std::mutex seconds_mutex;
  std::vector<SecondBucket> seconds;
};

struct Run {
  const EngineOptions& options;
  Window window;
  std::vector<tcp::endpoint> endpoints;
  std::string host_header;
  std::optional<SteadyClock::duration> interval;  // per connection, open loop

  std::mutex live_mutex;
  std::condition_variable live_changed;
  int live_connections = 0;

  // Records one exchange; `status` 0 means a transport error described by `transport`.
  void Record(Worker& worker, SteadyClock::time_point started, SteadyClock::time_point finished,
              int status, ResponseClass judged, const std::string& transport) {
    const bool error = status == 0 || judged == ResponseClass::kError;
    const int64_t latency = Micros(finished - started);
    const bool measured = started >= window.measure_start && finished <= window.end;
    const int64_t bucket = window.BucketOf(finished);
    if (bucket >= 0 && (measured || finished < window.measure_start)) {
      std::lock_guard<std::mutex> lock(worker.seconds_mutex);
      SecondBucket& second = worker.seconds[static_cast<size_t>(bucket)];
      second.latency_us.Record(latency);
      if (error) ++second.errors;
    }
    if (!measured) return;
    worker.latency_us.Record(latency);
    if (status == 0) {
      ++worker.transport_errors[transport];
      ++worker.errors;
      return;
    }
    ++worker.by_status[status];
    switch (judged) {
      case ResponseClass::kOk:
        ++worker.ok;
        break;
      case ResponseClass::kRejected:
        ++worker.rejected;
        break;
      case ResponseClass::kError:
        ++worker.errors;
        break;
    }
  }

  void Serialize(const RequestSpec& spec, std::string& wire) const {
    wire.clear();
    wire += spec.method;
    wire += ' ';
    wire += spec.target;
    wire += " HTTP/1.1\r\nHost: ";
    wire += host_header;
    wire += "\r\n";
    for (const auto& [name, value] : spec.headers) {
      if (beast::iequals(name, "Host") || beast::iequals(name, "Content-Length")) continue;
      wire += name;
      wire += ": ";
      wire += value;
      wire += "\r\n";
    }
    if (!spec.body.empty() || spec.method == "POST" || spec.method == "PUT" ||
        spec.method == "PATCH") {
      wire += fmt::format("Content-Length: {}\r\n", spec.body.size());
    }
    wire += "\r\n";
    wire += spec.body;
  }

  asio::awaitable<void> Connection(Worker& worker, ConnectionScript& script, int index);
};

asio::awaitable<void> Run::Connection(Worker& worker, ConnectionScript& script, int index) {
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  asio::steady_timer timer(worker.io);
  RequestSpec spec;
  std::string wire;
  beast::error_code ec;
  SteadyClock::time_point next_intended = window.start;
  if (interval.has_value()) {
    // Stagger the connections' schedules evenly over one interval.
    next_intended += *interval * index / std::max(1, options.connections);
  }
  const SteadyClock::duration timeout = ToChrono(options.request_timeout);

  while (SteadyClock::now() < window.end) {
    if (!stream.has_value()) {
      stream.emplace(worker.io);
      buffer.consume(buffer.size());
      ++worker.connects;
      stream->expires_after(timeout);
      co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (SteadyClock::now() >= window.measure_start) {
          ++worker.transport_errors[fmt::format("connect: {}", ec.message())];
        }
        stream.reset();
        timer.expires_after(kReconnectBackoff);
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      stream->socket().set_option(tcp::no_delay(true), ec);
    }

    SteadyClock::time_point started = SteadyClock::now();
    if (interval.has_value()) {
      if (started < next_intended) {
        timer.expires_at(next_intended);
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      // Latency counts from the intended send time, however late the send really is.
      started = next_intended;
      next_intended += *interval;
      if (started >= window.end) break;
    }

    script.Next(spec);
    Serialize(spec, wire);
    stream->expires_after(timeout);
    std::string stage = "write";
    co_await asio::async_write(*stream, asio::buffer(wire),
                               asio::redirect_error(asio::use_awaitable, ec));
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(kResponseBytesMax);
    if (!ec) {
      stage = "read";
      if (spec.method == "HEAD") parser.skip(true);
      co_await bhttp::async_read(*stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    const SteadyClock::time_point finished = SteadyClock::now();
    if (ec) {
      const std::string what = ec == beast::error::timeout ? std::string("timeout") : ec.message();
      Record(worker, started, finished, 0, ResponseClass::kError,
             fmt::format("{}: {}", stage, what));
      stream.reset();
      continue;
    }
    const int status = static_cast<int>(parser.get().result_int());
    const ResponseClass judged = script.OnResponse(status, parser.get().body());
    Record(worker, started, finished, status, judged, std::string());
    if (!parser.get().keep_alive()) stream.reset();
  }
  if (stream.has_value()) {
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream->close();
  }
}

absl::Status Validate(const EngineOptions& options) {
  if (options.connections < 1 || options.connections > kConnectionsMax) {
    return absl::InvalidArgumentError(
        fmt::format("connections must be 1..{}, got {}", kConnectionsMax, options.connections));
  }
  if (options.threads < 1 || options.threads > kThreadsMax) {
    return absl::InvalidArgumentError(
        fmt::format("threads must be 1..{}, got {}", kThreadsMax, options.threads));
  }
  if (options.rate_per_second.has_value() &&
      !(*options.rate_per_second > 0 && *options.rate_per_second <= kRatePerSecondMax)) {
    return absl::InvalidArgumentError(
        fmt::format("rate must be in (0, {}] requests/s", kRatePerSecondMax));
  }
  if (options.duration <= absl::ZeroDuration() || options.duration > kDurationMax) {
    return absl::InvalidArgumentError("duration must be > 0 and at most 1 hour");
  }
  if (options.warmup < absl::ZeroDuration() || options.warmup > kWarmupMax) {
    return absl::InvalidArgumentError("warm-up must be 0..10 minutes");
  }
  if (options.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("request timeout must be > 0");
  }
  return absl::OkStatus();
}

SecondSample Sample(int64_t second, bool warmup, const SecondBucket& bucket) {
  SecondSample sample;
  sample.second = second;
  sample.warmup = warmup;
  sample.count = bucket.latency_us.count();
  sample.errors = bucket.errors;
  sample.p50_us = bucket.latency_us.Percentile(50);
  sample.p99_us = bucket.latency_us.Percentile(99);
  return sample;
}

SecondBucket MergeBucket(std::vector<std::unique_ptr<Worker>>& workers, size_t index) {
  SecondBucket merged;
  for (auto& worker : workers) {
    std::lock_guard<std::mutex> lock(worker->seconds_mutex);
    merged.latency_us.Merge(worker->seconds[index].latency_us);
    merged.errors += worker->seconds[index].errors;
  }
  return merged;
}

}  // namespace

ResponseClass ClassifyByStatus(int status) {
  return status >= 200 && status < 400 ? ResponseClass::kOk : ResponseClass::kError;
}

absl::StatusOr<EngineResult> RunLoad(const EngineOptions& options, Scenario& scenario) {
  if (absl::Status valid = Validate(options); !valid.ok()) return valid;

  Run run{options,      {}, {}, fmt::format("{}:{}", options.host, options.port),
          std::nullopt, {}, {}, 0};
  {
    asio::io_context resolver_io;
    tcp::resolver resolver(resolver_io);
    beast::error_code ec;
    auto results = resolver.resolve(options.host, fmt::format("{}", options.port), ec);
    if (ec || results.empty()) {
      return absl::UnavailableError(
          fmt::format("cannot resolve {}: {}", options.host, ec ? ec.message() : "no address"));
    }
    for (const auto& entry : results) run.endpoints.push_back(entry.endpoint());
  }
  if (options.rate_per_second.has_value()) {
    run.interval = std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(
        static_cast<double>(options.connections) / *options.rate_per_second));
  }

  // Scripts are declared before the workers so they outlive the coroutine frames.
  std::vector<std::unique_ptr<ConnectionScript>> scripts;
  for (int i = 0; i < options.connections; ++i) scripts.push_back(scenario.NewConnection(i));

  const double warmup_seconds = absl::ToDoubleSeconds(options.warmup);
  const double measured_seconds = absl::ToDoubleSeconds(options.duration);
  Window& window = run.window;
  window.warmup_seconds = static_cast<int64_t>(std::ceil(warmup_seconds));
  window.measured_seconds = static_cast<int64_t>(std::ceil(measured_seconds));
  window.start = SteadyClock::now();
  window.measure_start = window.start + ToChrono(options.warmup);
  window.end = window.measure_start + ToChrono(options.duration);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < options.threads; ++t) {
    auto worker = std::make_unique<Worker>();
    worker->seconds.resize(static_cast<size_t>(window.warmup_seconds + window.measured_seconds));
    workers.push_back(std::move(worker));
  }
  run.live_connections = options.connections;
  for (int i = 0; i < options.connections; ++i) {
    Worker& worker = *workers[static_cast<size_t>(i % options.threads)];
    asio::co_spawn(worker.io, run.Connection(worker, *scripts[static_cast<size_t>(i)], i),
                   [&run](std::exception_ptr error) {
                     if (error != nullptr) {
                       try {
                         std::rethrow_exception(error);
                       } catch (const std::exception& caught) {
                         std::fprintf(stderr, "loadgen: connection ended by exception: %s\n",
                                      caught.what());
                       } catch (...) {
                         std::fprintf(stderr, "loadgen: connection ended by exception\n");
                       }
                     }
                     std::lock_guard<std::mutex> lock(run.live_mutex);
                     --run.live_connections;
                     run.live_changed.notify_all();
                   });
  }
  for (auto& worker : workers) {
    Worker* raw = worker.get();
    raw->thread = std::thread([raw] {
      try {
        raw->io.run();
      } catch (const std::exception& error) {
        std::fprintf(stderr, "loadgen: io thread caught: %s\n", error.what());
      }
    });
  }

  // One tick per bucket end, for the progress line.
  for (int64_t index = 0; index < window.warmup_seconds + window.measured_seconds; ++index) {
    const int64_t second = index - window.warmup_seconds + 1;
    SteadyClock::time_point tick =
        std::min(window.measure_start + std::chrono::seconds(second), window.end);
    std::this_thread::sleep_until(tick);
    if (options.on_second) {
      options.on_second(
          Sample(second, second <= 0, MergeBucket(workers, static_cast<size_t>(index))));
    }
  }

  // The connections stop at window.end; give in-flight exchanges their timeout, then stop.
  {
    std::unique_lock<std::mutex> lock(run.live_mutex);
    run.live_changed.wait_until(lock, window.end + kStopGrace,
                                [&run] { return run.live_connections == 0; });
  }
  for (auto& worker : workers) worker->io.stop();
  for (auto& worker : workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }

  EngineResult result;
  for (auto& worker : workers) {
    result.latency_us.Merge(worker->latency_us);
    result.ok += worker->ok;
    result.rejected += worker->rejected;
    result.errors += worker->errors;
    for (const auto& [status, count] : worker->by_status) result.by_status[status] += count;
    for (const auto& [what, count] : worker->transport_errors) {
      result.transport_errors[what] += count;
    }
    result.connects += worker->connects;
  }
  for (int64_t second = 1; second <= window.measured_seconds; ++second) {
    const size_t index = static_cast<size_t>(window.warmup_seconds + second - 1);
    result.timeline.push_back(Sample(second, false, MergeBucket(workers, index)));
  }
  result.requests = result.latency_us.count();
  result.measured_seconds = measured_seconds;
  result.throughput_per_second = static_cast<double>(result.requests) / measured_seconds;
  return result;
}

}  // namespace emporium::loadgen
