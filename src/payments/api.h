// Payments' HTTP routes: parse, call one service function, map the outcome.
//
// Public:
//   POST /api/v1/payment-methods                        store a card in the vault → 201
//   GET  /api/v1/payment-methods/{token}
//   POST /api/v1/payment-intents                        authorize (Idempotency-Key required)
//   GET  /api/v1/payment-intents/{id}
//   POST /api/v1/payments/psp-notifications             PSP webhook (HMAC verified)
// Staff (Authorization: Bearer <admin api key>, else 401):
//   POST /api/v1/payment-intents/{id}/capture|void|refund   (Idempotency-Key required)
//   GET  /api/v1/admin/payments/reviews
//   POST /api/v1/admin/payments/reviews/{id}/approve|reject
//
// Card numbers never appear in a response, an error message or a log line. Every command runs
// on the service's executor (RunAsync) and answers through the async Responder; no io thread
// waits for the PSP.
//
// Thread-safety: the handlers are safe to run concurrently; `service` must outlive the router.
#pragma once

#include <string>

#include "payments/service.h"
#include "platform/http/router.h"

namespace emporium::payments {

struct ApiOptions {
  std::string admin_api_key;  // empty: every staff route answers 401
};

void AddPaymentsRoutes(http::Router& router, PaymentsService& service, ApiOptions options);

}  // namespace emporium::payments
