// Inventory's HTTP routes: parse, call one service function, map the outcome.
//
// Public:
//   GET  /api/v1/inventory/{sku}                         stock per location and total
//   GET  /api/v1/inventory?skus=a,b,c                    bulk availability, 1..100 SKUs
// Staff with role ops (or admin). Shoppers reserve through their carts (ordering, over the
// bus); a public reserve would let anyone hold stock hostage for days, and reservation ids may
// be caller-chosen, so extend/release by id must not be open either:
//   POST /api/v1/inventory/reservations                  reserve (Idempotency-Key required)
//   GET  /api/v1/inventory/reservations/{id}
//   POST /api/v1/inventory/reservations/{id}/extend      {ttl_seconds?}
//   POST /api/v1/inventory/reservations/{id}/release
// Staff with role ops (Authorization: Bearer <key>, else 401/403):
//   POST /api/v1/admin/inventory/locations               {id, region, address?}
//   GET  /api/v1/admin/inventory/locations
//   POST /api/v1/admin/inventory/receive                 {sku, location_id, quantity, reference?}
//   POST /api/v1/admin/inventory/adjust                  {sku, location_id, delta, reference?}
//
// Commands answer through the async Responder from the engine's callback, after the commit;
// no io thread waits for a batch. Reads are short snapshot reads on a pooled reader.
//
// Thread-safety: the handlers are safe to run concurrently; `service` must outlive the router.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "inventory/service.h"
#include "platform/http/router.h"

namespace emporium::inventory {

struct ApiOptions {
  std::string admin_api_key;  // empty: every staff route answers 401
};

void AddInventoryRoutes(http::Router& router, InventoryService& service, ApiOptions options);

// The answer to a command that had no effect (CommandResult::status not OK): the canonical
// error mapping (http::ErrorResponse), and for a full shard queue (IsQueueFull) 503 with
// Retry-After: kQueueFullRetryAfterSeconds, so clients come back instead of giving up.
http::Response CommandErrorResponse(const absl::Status& status);

}  // namespace emporium::inventory
