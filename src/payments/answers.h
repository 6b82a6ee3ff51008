// The HTTP answers of payments' idempotent commands, rendered from the command's outcome.
//
// They live apart from the routes because the service stores them: the replay record of an
// Idempotency-Key is written inside the transaction that settles the command, from the same
// outcome the waiting caller receives, so a replay is byte-for-byte the first answer.
//
// Thread-safety: pure functions.
#pragma once

#include "absl/status/statusor.h"
#include "common/json.h"
#include "payments/store.h"
#include "platform/http/message.h"

namespace emporium::payments {

// Which route's rendering an HTTP command's outcome takes (stored with its key).
enum class HttpAnswerKind {
  kAuthorize = 1,  // POST /api/v1/payment-intents
  kIntent = 2,     // POST /api/v1/payment-intents/{id}/capture|void|refund
};

// The public JSON view of an intent.
Json IntentJson(const IntentRecord& intent);

// 201 authorized (or any live state), 202 parked for review, 402 declined (error shape with
// the intent id beside it); operational errors in the error shape.
http::Response AuthorizeAnswer(const absl::StatusOr<IntentRecord>& result);
// 200 with the intent; operational errors in the error shape.
http::Response IntentAnswer(const absl::StatusOr<IntentRecord>& result);
http::Response RenderAnswer(HttpAnswerKind kind, const absl::StatusOr<IntentRecord>& result);

// Whether an answer is final enough to replay for the same key. 5xx (the PSP unavailable, the
// outcome unknown, the service stopping) and 429 are not: the client retries with the same key
// and the command runs again, which the service makes safe (one intent per order, the same PSP
// key for an open attempt).
bool ReplayableStatus(int http_status);

}  // namespace emporium::payments
