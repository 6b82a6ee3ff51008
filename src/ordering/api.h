// Ordering's HTTP routes: parse, authorize, call one service function, map the outcome.
//
// Who may call what (the gateway attaches the caller; see platform/context/principal.h):
//  - Carts. A cart created by a signed-in customer belongs to that customer: every cart route
//    answers 404 ("cart_not_found", exactly as for a missing id) to anyone else — another
//    customer, an anonymous caller, staff. A guest cart (created anonymously) has no owner: its
//    unguessable UUIDv7 id is the capability, and whoever holds it may use it, so guest
//    checkout keeps working. The check runs before the body is validated.
//  - Orders follow their cart. An order placed from a customer's cart belongs to that customer:
//    GET, /events, /stream and /cancel answer 404 ("order_not_found") to everyone else, staff
//    included (staff use the admin routes). An order placed from a guest cart is, like the
//    cart, a capability of its id: whoever holds the order id may read and cancel it.
//    GET /api/v1/orders lists the signed-in customer's orders: 401 anonymous, 403 staff. A guest
//    order whose e-mail the customer later verifies (accounts.customer_verified) is attached to
//    them: it is listed for them and readable by them, and stays a capability of its id.
//  - Checkout bills the signed-in customer; a guest may name the payment method's owner only as
//    "guest" or "guest-..." (400 otherwise), so a guest cannot bill or list under a customer.
//  - Staff routes need role support or ops (admin always); without the gateway (in-process
//    dispatch) they fall back to the admin API key.
//
// Public:
//   POST   /api/v1/carts                        {currency, region?, email?, shipping_address?}
//   GET    /api/v1/carts/{id}
//   PATCH  /api/v1/carts/{id}                   {currency?, region?, email?, shipping_address?};
//                                               Idempotency-Key (as the line routes)
//   DELETE /api/v1/carts/{id}                   abandon (releases the reservation)
//   POST   /api/v1/carts/{id}/lines             {sku, quantity}  (adds; grows an existing line)
//   PUT    /api/v1/carts/{id}/lines/{sku}       {quantity}       (0 removes)
//   DELETE /api/v1/carts/{id}/lines/{sku}
//          The line routes and PATCH take an optional Idempotency-Key (per cart): the same key
//          and request replay the stored response (header Idempotent-Replayed: true), the same
//          key with another request is 422 idempotency_key_reused, a concurrent one 409.
//   POST   /api/v1/carts/{id}/checkout          {payment_method}; Idempotency-Key;
//                                               Prefer: wait=N (N <= 10 s) -> 200 once settled
//   GET    /api/v1/orders                       the signed-in customer's orders
//   GET    /api/v1/orders/{id}
//   POST   /api/v1/orders/{id}/cancel
//   GET    /api/v1/orders/{id}/events           the saga timeline (?after=&limit=)
//   GET    /api/v1/orders/{id}/stream           Server-Sent Events, streamed (chunked):
//          `event: status` now and on every state change, a ": keep-alive" comment every
//          stream_heartbeat_ms (15 s), `event: end` and the end of the response once the order
//          settles or ?timeout=s (default and max stream_duration_max_ms, 5 min) passes.
//          503 too_many_watchers when the order (watchers_per_order_max) or the service
//          (waiters_max) has too many.
// Staff (role support or ops; admin):
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
// The bytes DumpJson(CartJson(view)) / DumpJson(OrderJson(order)) write, without the DOM: the
// cart edit and checkout answers are rendered once per request (on the writer thread for a
// cart edit), so they skip building and freeing a tree of ~60 nodes. api_test compares them.
std::string CartJsonText(const CartView& view);
std::string OrderJsonText(const Order& order);

}  // namespace emporium::ordering
