// The port to the payment service provider, and its HTTP adapter for the PSP sandbox API.
//
// Outcome contract (what the service's retry and recovery logic is built on):
//  - OK with PspResult: the PSP answered definitively (succeeded, declined or rejected).
//  - Unavailable: certainly nothing happened at the PSP (not sent, or a 5xx the PSP documents
//    as "not recorded"); retrying with the same key is safe.
//  - Unknown / DeadlineExceeded (error code "outcome_unknown"): the call may have taken effect.
//    Only a retry with the SAME idempotency key may follow.
//
// Thread-safety: implementations are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace emporium::payments {

enum class PspOutcome {
  kSucceeded,
  kDeclined,  // the card was declined (402); `code` says why
  kRejected,  // the PSP refused the request (4xx: invalid state, amount too large)
};

struct PspResult {
  PspOutcome outcome = PspOutcome::kSucceeded;
  std::string object_id;  // authorization or refund id
  std::string code;       // decline / rejection code
  int64_t amount_minor = 0;
};

class PspClient {
 public:
  virtual ~PspClient() = default;
  // `reference` travels with the authorization and comes back in notifications.
  virtual absl::StatusOr<PspResult> Authorize(const std::string& idempotency_key,
                                              int64_t amount_minor, const std::string& currency,
                                              const std::string& card_number,
                                              const std::string& reference) = 0;
  virtual absl::StatusOr<PspResult> Capture(const std::string& idempotency_key,
                                            const std::string& authorization_id,
                                            int64_t amount_minor) = 0;
  virtual absl::StatusOr<PspResult> Void(const std::string& idempotency_key,
                                         const std::string& authorization_id) = 0;
  virtual absl::StatusOr<PspResult> Refund(const std::string& idempotency_key,
                                           const std::string& authorization_id,
                                           int64_t amount_minor) = 0;
};

struct HttpPspOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int connection_count_max = 64;
  absl::Duration timeout = absl::Seconds(5);
};

std::unique_ptr<PspClient> MakeHttpPspClient(const HttpPspOptions& options);

}  // namespace emporium::payments
