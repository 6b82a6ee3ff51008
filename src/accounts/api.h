// The accounts context's HTTP routes (see docs/openapi.yaml, tag "accounts"):
//   POST   /api/v1/accounts/signup             anyone        -> 201 customer + session token
//   POST   /api/v1/accounts/login              anyone        -> 200 session token (throttled)
//   POST   /api/v1/accounts/logout             customer      -> 204, revokes this session
//   POST   /api/v1/accounts/verify-email       anyone        -> 200 customer
//   GET    /api/v1/accounts/me                 customer      -> 200 customer
//   PATCH  /api/v1/accounts/me                 customer      -> 200 customer
//   POST   /api/v1/accounts/me/password        customer      -> 204, revokes other sessions
//   GET    /api/v1/accounts/me/addresses       customer      -> 200 {data}
//   POST   /api/v1/accounts/me/addresses       customer      -> 201 address
//   GET    /api/v1/accounts/me/addresses/{id}  owner         -> 200 (others: 404)
//   PATCH  /api/v1/accounts/me/addresses/{id}  owner         -> 200 (others: 404)
//   DELETE /api/v1/accounts/me/addresses/{id}  owner         -> 204 (others: 404)
//   GET    /api/v1/admin/customers/{id}        support/admin -> 200 customer
//   GET    /api/v1/admin/staff-keys            admin         -> 200 {data}
//   POST   /api/v1/admin/staff-keys            admin         -> 201, the key shown once
//   DELETE /api/v1/admin/staff-keys/{id}       admin         -> 204 revoked
// Handlers parse, hand the blocking call (hashing, durable writes) to the worker pool and map
// the outcome. Responses carrying credentials are Cache-Control: no-store.
//
// Thread-safety: handlers are safe on any number of io threads.
#pragma once

#include <optional>
#include <string>

#include "accounts/service.h"
#include "accounts/workers.h"
#include "platform/http/router.h"

namespace emporium::accounts {

struct ApiDeps {
  AccountsService* service = nullptr;
  BlockingWorkers* workers = nullptr;
  std::string admin_api_key;  // in-process dispatch without the gateway (see AuthorizeStaff)
};

void AddAccountsRoutes(http::Router& router, ApiDeps deps);

// The credential of `Authorization: Bearer <credential>`, if the header has that form.
std::optional<std::string> BearerCredential(const http::Request& request);

// ErrorResponse plus Retry-After (whole seconds, rounded up) for a throttled status.
http::Response AccountsErrorResponse(const absl::Status& status);

}  // namespace emporium::accounts
