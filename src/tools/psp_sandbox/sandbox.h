// The PSP sandbox: a separate HTTP server that behaves like an external card processor, so
// payments is tested across a real network boundary (`emporium psp-sandbox`).
//
// API (JSON):
//   POST /v1/authorizations                {amount_minor, currency, card_number, reference?}
//   POST /v1/authorizations/{id}/capture   {amount_minor}  (partial allowed, once)
//   POST /v1/authorizations/{id}/void      {}
//   POST /v1/refunds                       {authorization_id, amount_minor} (sum <= captured)
//   GET  /v1/authorizations/{id}, GET /v1/refunds/{id}
//   GET  /v1/balance   what was really captured and refunded, per currency
// Every POST honours Idempotency-Key: the key, a hash of the request and the response are
// stored in the transaction that makes the effect; the same key replays the stored response,
// the same key with another request is 422. 5xx answers are not stored (nothing happened).
//
// Test cards pick the outcome of an authorization (any other valid card succeeds):
//   4000000000009995 declined, insufficient_funds (402)
//   4000000000009979 declined, stolen_card (402)
//   4000000000000119 processing error (500, nothing recorded)
//   4000000000000259 charged, but the connection is closed before the response is written
// Uncaptured authorizations expire after `authorization_ttl` (read lazily against the clock).
//
// Notifications: when `notification_url` is set, every effect is POSTed there as
// {"id","type","object_id","created_at_ms","data"} with header
// `Psp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, retried with
// backoff, and (by flag) duplicated and delivered out of order.
//
// The server reads each connection on its own thread (blocking Beast I/O) so simulated latency
// can simply sleep; connections are bounded by `connections_max`. A POST is answered by the
// books' writer thread as soon as its transaction is durable (a non-blocking send), so the
// connection thread is back to reading at once instead of sleeping on the commit; a client
// that pipelines requests gets its answers in order, and one that does not read them is
// closed after the answer that no longer fits its socket.
//
// Thread-safety: Start/Shutdown from the owner thread; port() after Start.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace emporium::psp_sandbox {

inline constexpr char kCardInsufficientFunds[] = "4000000000009995";
inline constexpr char kCardStolen[] = "4000000000009979";
inline constexpr char kCardProcessingError[] = "4000000000000119";
inline constexpr char kCardLostResponse[] = "4000000000000259";
inline constexpr char kCardSuccess[] = "4242424242424242";

inline constexpr char kSignatureHeader[] = "Psp-Signature";

struct SandboxOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;    // 0 picks a free port
  std::string db_path;  // the sandbox's own books (SQLite file); required
  int connections_max = 512;
  absl::Duration latency_fixed = absl::ZeroDuration();
  absl::Duration latency_random = absl::ZeroDuration();  // uniform in [0, this) on top
  double failure_rate = 0.0;  // fraction of POSTs answered 503 before any effect
  absl::Duration authorization_ttl = absl::Hours(24 * 7);
  // Notifications; empty url disables them. The url is http://host:port/path.
  std::string notification_url;
  std::string notification_secret;
  int notification_attempts_max = 8;
  double notification_duplicate_rate = 0.0;  // fraction sent twice
  bool notification_shuffle = false;         // deliver pending ones in random order
  absl::Duration notification_backoff_initial = absl::Milliseconds(50);
  const Clock* clock = &SystemClock::Instance();
};

// HMAC-SHA256 signature header value for `body` at `timestamp_s` (shared with payments' tests
// and the verifier in payments).
std::string SignNotification(const std::string& secret, int64_t timestamp_s,
                             const std::string& body);

class PspSandbox {
 public:
  explicit PspSandbox(SandboxOptions options);
  ~PspSandbox();  // Shutdown()s
  PspSandbox(const PspSandbox&) = delete;
  PspSandbox& operator=(const PspSandbox&) = delete;

  // Opens the books, binds and starts accepting. Unavailable when the port cannot be bound.
  absl::Status Start();
  uint16_t port() const;
  // Closes the listener and every connection, stops the notifier, closes the books.
  void Shutdown();

  // Notifications sent successfully so far (counting duplicates), for tests.
  int64_t notifications_delivered() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace emporium::psp_sandbox
