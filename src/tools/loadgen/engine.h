// The load engine of `emporium loadgen`: many keep-alive HTTP/1.1 connections from one process,
// spread over io threads (one io_context per thread), driven closed loop or open loop.
//
//  - Closed loop (rate unset): each connection sends its next request as soon as the previous
//    answer arrives; concurrency = connection count.
//  - Open loop (rate set): requests are scheduled at fixed intended times (rate / connections
//    per connection, phases staggered). Latency is measured from the intended send time, so a
//    slow server that makes requests queue shows that queueing in the numbers (no coordinated
//    omission). A connection that falls behind sends at once until it catches up.
//
// Requests that start before the warm-up ends, or end after the measured window, are not
// recorded. Per measured second the engine keeps count, errors, p50 and p99 (for the chart and
// the progress line). Boost.Beast/Asio stay in engine.cpp.
//
// Thread-safety: RunLoad blocks the calling thread until the run ends. Scenario methods are
// called as documented on Scenario; ConnectionScript methods only from its connection's io
// thread, never concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tools/loadgen/histogram.h"

namespace emporium::loadgen {

struct RequestSpec {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;  // Host/Content-Length are added
  std::string body;
};

// How a scenario judges one answer. kRejected is an expected business "no" (a 409 for sold-out
// stock in a flash sale): recorded in the latency, not counted as an error.
enum class ResponseClass { kOk, kRejected, kError };

// The default judgement: 2xx/3xx ok, anything else an error.
ResponseClass ClassifyByStatus(int status);

// One connection's request stream.
class ConnectionScript {
 public:
  virtual ~ConnectionScript() = default;
  // Fills `request` with the next request to send.
  virtual void Next(RequestSpec& request) = 0;
  // The answer to the request last produced by Next.
  virtual ResponseClass OnResponse(int status, std::string_view body) = 0;
};

class Scenario {
 public:
  virtual ~Scenario() = default;
  // Called once per connection, on the RunLoad thread, before any io starts.
  virtual std::unique_ptr<ConnectionScript> NewConnection(int connection_index) = 0;
};

struct SecondSample {
  int64_t second = 0;  // 1-based since the start of the measured window (<= 0 in warm-up)
  bool warmup = false;
  int64_t count = 0;  // answers completed in that second
  int64_t errors = 0;
  int64_t p50_us = 0;
  int64_t p99_us = 0;
};

struct EngineOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int connections = 64;
  int threads = 2;                           // io threads; connections are spread over them
  std::optional<double> rate_per_second;     // open loop when set (> 0)
  absl::Duration warmup = absl::Seconds(2);  // run but not recorded
  absl::Duration duration = absl::Seconds(10);
  absl::Duration request_timeout = absl::Seconds(10);  // one exchange; then a transport error
  // Called once per second from the RunLoad thread with the second just finished (during the
  // warm-up too, flagged), for the live progress line. Optional.
  std::function<void(const SecondSample&)> on_second;
};

inline constexpr int kConnectionsMax = 20000;
inline constexpr int kThreadsMax = 64;

struct EngineResult {
  LatencyHistogram latency_us;  // every recorded exchange, errors included
  int64_t requests = 0;         // recorded exchanges (answered or failed)
  int64_t ok = 0;
  int64_t rejected = 0;
  int64_t errors = 0;                               // kError answers + transport errors
  std::map<int, int64_t> by_status;                 // answered exchanges per HTTP status
  std::map<std::string, int64_t> transport_errors;  // "connect: ...", "read: timeout", ...
  std::vector<SecondSample> timeline;               // measured seconds, in order
  double measured_seconds = 0;
  double throughput_per_second = 0;  // requests / measured_seconds
  int64_t connects = 0;              // TCP connections opened (all phases)
};

// Runs `scenario` against options.host:port. InvalidArgument for bad options, Unavailable when
// the host does not resolve. Transport failures during the run are counted, not returned.
absl::StatusOr<EngineResult> RunLoad(const EngineOptions& options, Scenario& scenario);

}  // namespace emporium::loadgen
