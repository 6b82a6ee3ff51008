// Payments' HTTP routes: parse, call one service function, map the outcome.
//
// Customers and guests:
//   POST /api/v1/payment-methods                        store a card in the vault → 201
//        A signed-in customer's card is theirs (customer_id comes from the session; a body
//        customer_id naming someone else is a 400). Anonymous callers and staff may vault only
//        for a guest owner: "guest" (the default) or "guest-...", as guest checkout names it.
//   GET  /api/v1/payment-methods/{token}
//        A customer's card: its owner only; anyone else (staff included) gets the 404 of a
//        missing token. A guest's card: whoever holds the token (a guest has no identity).
// Signed by the PSP (HMAC, else 401):
//   POST /api/v1/payments/psp-notifications
// Support staff (AuthorizeStaff with Role::kSupport; admin always passes; anonymous 401, other
// callers 403). Ordering moves intents over the bus, never over HTTP:
//   POST /api/v1/payment-intents                        authorize (Idempotency-Key required)
//   GET  /api/v1/payment-intents/{id}
//   POST /api/v1/payment-intents/{id}/capture|void|refund   (Idempotency-Key required)
//   GET  /api/v1/admin/payments/reviews
//   POST /api/v1/admin/payments/reviews/{id}/approve|reject
// Dispatched in process without the gateway (no principal), staff routes need the admin key
// and a payment method's owner is the body's customer_id.
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
  std::string admin_api_key;  // without a gateway and empty: every staff route answers 401
};

void AddPaymentsRoutes(http::Router& router, PaymentsService& service, ApiOptions options);

}  // namespace emporium::payments
