// Ordering's HTTP routes: parse, call one service function, map the outcome.
//
// Public (guest carts: the unguessable UUIDv7 cart/order id is the capability until accounts
// land; then carts and orders get bound to the authenticated customer and the list route uses
// that identity):
//   POST   /api/v1/carts                        {currency, region?, email?, shipping_address?}
//   GET    /api/v1/carts/{id}
//   PATCH  /api/v1/carts/{id}                   {currency?, region?, email?, shipping_address?}
//   DELETE /api/v1/carts/{id}                   abandon (releases the reservation)
//   POST   /api/v1/carts/{id}/lines             {sku, quantity}  (adds; grows an existing line)
//   PUT    /api/v1/carts/{id}/lines/{sku}       {quantity}       (0 removes)
//   DELETE /api/v1/carts/{id}/lines/{sku}
//   POST   /api/v1/carts/{id}/checkout          {payment_method}; Idempotency-Key;
//                                               Prefer: wait=N (N <= 10 s) -> 200 once settled
//   GET    /api/v1/orders                       the caller's orders (request attribute
//                                               customer_id, set by the gateway; else 401)
//   GET    /api/v1/orders/{id}
//   POST   /api/v1/orders/{id}/cancel
//   GET    /api/v1/orders/{id}/events           the saga timeline (?after=&limit=)
//   GET    /api/v1/orders/{id}/stream           text/event-stream of status changes until the
//                                               order settles or ?timeout=s passes
// Staff (Authorization: Bearer <admin api key>):
//   GET    /api/v1/admin/orders                 ?state=&limit=&cursor=
//   GET    /api/v1/admin/orders/stuck           ?older_than_s= (default 30)
//   POST   /api/v1/admin/orders/{id}/retry      re-send the current step's command
//   POST   /api/v1/admin/orders/{id}/compensate cancel and compensate by hand
//
// Thread-safety: handlers are safe to run concurrently; `service` must outlive the router.
#pragma once

#include <string>

#include "ordering/service.h"
#include "platform/http/router.h"

namespace emporium::ordering {

struct ApiOptions {
  std::string admin_api_key;
};

void AddOrderingRoutes(http::Router& router, OrderingService& service, ApiOptions options);

// The JSON shapes of the API (also used by tests and tools).
Json CartJson(const CartView& view);
Json OrderJson(const Order& order);

}  // namespace emporium::ordering
