// The HTTP/1.1 server: Boost.Beast on C++20 coroutines, one io_context per thread, each with
// its own acceptor on the same port (SO_REUSEPORT), TCP_NODELAY and keep-alive.
//
// Middleware applied to every request before the Router sees it:
//  - X-Request-Id: a sane incoming id (1..128 chars of [A-Za-z0-9-_.]) is kept, anything else
//    is replaced by 32 random hex digits; echoed on the response.
//  - traceparent: a valid incoming W3C header is passed through unchanged, otherwise a new
//    trace is started; echoed on the response and set on Request::traceparent.
//  - limits: header bytes (431), body bytes (413), header-read timeout (a client that stalls
//    mid-headers is disconnected), keep-alive idle timeout, body-read and write timeouts.
//  - deadline: Request::deadline = arrival + request_timeout; a handler that has not answered
//    by then gets 504 sent for it and its late answer is dropped.
//  - malformed HTTP -> 400 and the connection is closed; every 4xx/5xx the server produces,
//    and any 4xx/5xx a handler returns without a JSON body, is in the one error shape.
//  - metrics (when ServerOptions::metrics is set): emporium_http_requests_total{method,route,
//    status}, emporium_http_request_duration_seconds{method,route},
//    emporium_http_requests_in_flight; route is the matched pattern or "unmatched".
//  - the access-log hook, once per answered request.
// Handlers run on the io thread that read the request: they must not block; slow work goes to
// another thread and answers through the Responder.
//
// Thread-safety: Start, Shutdown and Wait may be called from any thread; port() after Start.
// The Router must outlive the server and not change while it runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "platform/http/router.h"

namespace emporium::obs {
class MetricsRegistry;
}

namespace emporium::http {

struct AccessLogEntry {
  std::string method;
  std::string path;   // decoded path (target without the query)
  std::string route;  // matched pattern or "unmatched"
  int status = 0;
  absl::Duration duration;  // header complete -> response written
  size_t bytes = 0;         // response body bytes sent
  std::string request_id;
  std::string trace_id;  // 32 hex digits
  std::string remote_address;
};

struct ServerOptions {
  std::string host = "0.0.0.0";  // an IP literal
  uint16_t port = 8080;          // 0 picks an ephemeral port; see HttpServer::port()
  int io_threads = 0;            // 0 = std::thread::hardware_concurrency()
  size_t body_bytes_max = 1 << 20;
  size_t header_bytes_max = 16 << 10;
  int connections_max = 10000;                        // further connections are closed on accept
  absl::Duration header_timeout = absl::Seconds(10);  // first byte -> end of headers
  absl::Duration idle_timeout = absl::Seconds(60);    // keep-alive wait for the next request
  absl::Duration body_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
  absl::Duration request_timeout = absl::Seconds(30);     // handler deadline -> 504
  std::function<void(const AccessLogEntry&)> access_log;  // called on an io thread; optional
  obs::MetricsRegistry* metrics = nullptr;                // optional; must outlive the server
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, const Router& router);
  // Shuts down with no drain if still running.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds every acceptor and starts the io threads. Unavailable when the address cannot be
  // bound, InvalidArgument for a bad host, FailedPrecondition when called twice.
  absl::Status Start();
  // The bound port (the chosen one when options.port was 0). 0 before Start.
  uint16_t port() const;
  // Stops accepting, closes idle keep-alive connections, lets in-flight requests finish (their
  // responses carry Connection: close) for up to `drain_timeout`, then closes everything and
  // joins the io threads. Idempotent. Must not be called from a handler (an io thread): it
  // joins those threads.
  void Shutdown(absl::Duration drain_timeout);
  // Blocks until Shutdown has completed (returns at once if never started).
  void Wait();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emporium::http
