// A blocking, thread-safe HTTP/1.1 client for calls to one upstream (a context's API, the PSP),
// with a bounded pool of keep-alive connections.
//
// Outcome contract of Send, which callers build their retry policy on:
//  - OK: a complete response arrived (any HTTP status, 5xx included).
//  - Unavailable: the request was certainly NOT sent (connect refused or timed out, pool
//    exhausted until the deadline, deadline already passed). Retrying is always safe.
//    ErrorCode: "connect_failed", "connect_timeout", "pool_exhausted", "deadline_passed".
//  - DeadlineExceeded or Unknown, both with ErrorCode "outcome_unknown": the request may have
//    reached the server and its outcome is unknown (timeout while writing or waiting, connection
//    reset mid-exchange, malformed or oversized response). Retry only with the same idempotency
//    key.
// Every wait is bounded by the request's deadline (the connect also by the connect timeout).
//
// Thread-safety: Send may be called concurrently from any number of threads; each Send runs
// its exchange on the calling thread (non-blocking sockets, poll bounded by the deadline), so
// a call costs no thread hand-offs. Destroying the client while a Send is running is a bug.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "platform/http/message.h"

namespace emporium::http {

struct ClientOptions {
  std::string host = "127.0.0.1";  // IP literal or a name resolved at connect time
  uint16_t port = 80;
  int connection_count_max = 16;  // open connections, idle or busy
  absl::Duration connect_timeout = absl::Seconds(2);
  absl::Duration request_timeout = absl::Seconds(10);  // default when a request sets none
  size_t response_body_bytes_max = 16 << 20;
};

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query, already encoded
  Headers headers;           // Host and Content-Length are set by the client
  std::string body;
  std::optional<absl::Duration> timeout;  // from the call; default options.request_timeout
  std::optional<absl::Time> deadline;     // absolute; the earlier of the two wins
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
};

class HttpClient {
 public:
  explicit HttpClient(ClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `request` on a pooled connection (opening one when none is idle) and waits for the
  // whole response. See the outcome contract above.
  absl::StatusOr<ClientResponse> Send(const ClientRequest& request);

  // Connections opened so far (for tests and metrics: reuse keeps this low).
  int64_t connections_opened() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emporium::http
