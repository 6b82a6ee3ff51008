#include "inventory/api.h"

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/errors.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "inventory/messages.h"
#include "platform/context/principal.h"
#include "platform/context/staff_auth.h"

namespace emporium::inventory {
namespace {

using http::Request;
using http::Responder;
using http::Response;

constexpr std::string_view kIdempotencyHeader = "Idempotency-Key";

Response Error(int status, std::string_view code, std::string_view message,
               std::string_view param = "") {
  return http::ErrorResponse(status, http::ErrorTypeFor(status), code, message, param);
}

std::string JoinSkus(const std::vector<Sku>& skus) {
  std::string joined;
  for (const Sku& sku : skus) {
    if (!joined.empty()) joined += ", ";
    joined += sku.value();
  }
  return joined;
}

// "lines[i].sku" of the first line whose SKU is in `skus`.
std::string LineParam(const std::vector<LineRequest>& lines, const std::vector<Sku>& skus) {
  for (size_t i = 0; i < lines.size(); ++i) {
    for (const Sku& sku : skus) {
      if (lines[i].sku == sku) return fmt::format("lines[{}].sku", i);
    }
  }
  return "lines";
}

Json StockJson(const StockLevel& level) {
  return Json{{"location_id", level.location.value()},
              {"on_hand", level.on_hand},
              {"reserved", level.reserved},
              {"allocated", level.allocated},
              {"available", level.available()}};
}

// One SKU's availability: total and per location (`levels` all belong to `sku`).
Json SkuJson(const std::string& sku, const std::vector<StockLevel>& levels) {
  int64_t on_hand = 0;
  int64_t reserved = 0;
  int64_t allocated = 0;
  Json locations = Json::array();
  for (const StockLevel& level : levels) {
    on_hand += level.on_hand;
    reserved += level.reserved;
    allocated += level.allocated;
    locations.push_back(StockJson(level));
  }
  return Json{{"sku", sku},
              {"known", !levels.empty()},
              {"on_hand", on_hand},
              {"reserved", reserved},
              {"allocated", allocated},
              {"available", on_hand - reserved - allocated},
              {"locations", locations}};
}

// The reservation and the `expires_at` as RFC 3339 for people.
Json ReservationBody(const Reservation& reservation) {
  Json body = messages::ReservationJson(reservation);
  body["expires_at"] = absl::FormatTime(
      absl::RFC3339_full, absl::FromUnixMillis(reservation.expires_at_ms), absl::UTCTimeZone());
  return body;
}

Response ReserveResponse(const cmd::Reserve& reserve, const CommandResult& result) {
  if (!result.status.ok()) return CommandErrorResponse(result.status);
  const ReserveOutcome outcome = std::get<ReserveOutcome>(result.outcome);
  switch (outcome) {
    case ReserveOutcome::kReserved:
      return Response::Json(201, ReservationBody(*result.reservation));
    case ReserveOutcome::kAlreadyReserved: {
      Response response = Response::Json(201, ReservationBody(*result.reservation));
      response.headers.Set("Idempotent-Replayed", "true");
      return response;
    }
    case ReserveOutcome::kInsufficientStock:
      return Error(409, "insufficient_stock",
                   fmt::format("insufficient stock for: {}", JoinSkus(result.short_skus)),
                   LineParam(reserve.lines, result.short_skus));
    case ReserveOutcome::kUnknownSku:
      return Error(422, "unknown_sku",
                   fmt::format("unknown SKU: {}", JoinSkus(result.unknown_skus)),
                   LineParam(reserve.lines, result.unknown_skus));
    case ReserveOutcome::kConflict:
      return Error(409, "conflict",
                   fmt::format("reservation {} exists for a different request", reserve.id.value()),
                   "reservation_id");
    case ReserveOutcome::kInvalidRequest:
      return Error(400, "invalid_request", "the reservation request is invalid", "lines");
  }
  return Error(500, "internal", "unexpected outcome");
}

Response ReservationOpResponse(const CommandResult& result) {
  if (!result.status.ok()) return CommandErrorResponse(result.status);
  const std::string outcome = messages::OutcomeName(result.outcome);
  if (messages::OutcomeSucceeded(result.outcome) && result.reservation.has_value()) {
    Json body = ReservationBody(*result.reservation);
    body["outcome"] = outcome;
    return Response::Json(200, body);
  }
  if (outcome == "not_found") return Error(404, "reservation_not_found", "no such reservation");
  if (outcome == "invalid_request") {
    return Error(400, "invalid_param", "ttl_seconds is out of range", "ttl_seconds");
  }
  return Error(409, fmt::format("reservation_{}", outcome),
               fmt::format("the reservation cannot change: {}", outcome));
}

Response StockResponse(const CommandResult& result, const Json& request_echo) {
  if (!result.status.ok()) return CommandErrorResponse(result.status);
  const StockOutcome outcome = std::get<StockOutcome>(result.outcome);
  switch (outcome) {
    case StockOutcome::kApplied: {
      std::optional<std::string> answer =
          messages::StaffStockAnswer(DumpJson(request_echo), result);
      if (!answer.has_value()) return Error(500, "internal", "unexpected outcome");
      return Response::Text(200, *std::move(answer), "application/json");
    }
    case StockOutcome::kUnknownLocation:
      return Error(404, "unknown_location", "no such location", "location_id");
    case StockOutcome::kInvalidRequest:
      return Error(400, "invalid_request", "quantity or reference out of range");
    case StockOutcome::kBelowCommitted:
      return Error(409, "below_committed",
                   "the adjustment would take stock below what is reserved and allocated", "delta");
  }
  return Error(500, "internal", "unexpected outcome");
}

// Validates the Idempotency-Key header; nullopt with `error` filled when bad.
std::optional<std::string> IdempotencyKey(const Request& request, bool required, Response& error) {
  std::optional<std::string_view> key = request.Header(kIdempotencyHeader);
  if (!key.has_value()) {
    if (required) {
      error = Error(400, "missing_idempotency_key", "the Idempotency-Key header is required",
                    kIdempotencyHeader);
    }
    return std::nullopt;
  }
  if (!messages::ValidIdentifier(*key)) {
    error = Error(
        400, "invalid_param",
        fmt::format("Idempotency-Key must be 1..{} printable characters", messages::kIdLengthMax),
        kIdempotencyHeader);
    return std::nullopt;
  }
  return std::string(*key);
}

// Parses an optional body: "" means {}.
absl::StatusOr<Json> BodyObject(const Request& request) {
  if (request.body.empty()) return Json::object();
  return messages::ParseBoundedObject(request.body);
}

std::optional<ReservationId> PathReservation(const Request& request, Response& error) {
  std::string id = request.PathParam("id");
  if (!messages::ValidIdentifier(id)) {
    error = Error(400, "invalid_param", "bad reservation id", "id");
    return std::nullopt;
  }
  return ReservationId(std::move(id));
}

struct Shared {
  InventoryService& service;
  ApiOptions options;

  // Staff Idempotency-Keys with a request in flight in this process.
  std::mutex keys_mutex;
  std::set<std::string> keys_in_flight;  // guarded by keys_mutex
  bool ClaimKey(const std::string& key) {
    std::lock_guard lock(keys_mutex);
    return keys_in_flight.insert(key).second;
  }
  void ReleaseKey(const std::string& key) {
    std::lock_guard lock(keys_mutex);
    keys_in_flight.erase(key);
  }
};

// Runs `handler` only for staff with role ops (or admin); everyone else gets 401/403.
template <typename F>
http::Handler Staff(std::shared_ptr<Shared> shared, F handler) {
  return [shared, handler](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, shared->options.admin_api_key, {Role::kOps}, denied)) {
      return respond(std::move(denied));
    }
    handler(request, std::move(respond));
  };
}

void AddPublicRoutes(http::Router& router, std::shared_ptr<Shared> shared) {
  router.AddSync("GET", "/api/v1/inventory/{sku}", [shared](const Request& request) {
    const std::string sku = request.PathParam("sku");
    if (!messages::ValidIdentifier(sku)) return Error(400, "invalid_param", "bad SKU", "sku");
    absl::StatusOr<std::vector<StockLevel>> levels = shared->service.Availability({Sku(sku)});
    if (!levels.ok()) return http::ErrorResponse(levels.status());
    if (levels->empty()) return Error(404, "unknown_sku", "this SKU was never stocked", "sku");
    return Response::Json(200, SkuJson(sku, *levels));
  });

  router.AddSync("GET", "/api/v1/inventory", [shared](const Request& request) {
    std::optional<std::string> list = request.QueryParam("skus");
    if (!list.has_value() || list->empty()) {
      return Error(400, "missing_param", "skus is required: ?skus=a,b,c", "skus");
    }
    std::vector<std::string> skus;
    absl::flat_hash_set<std::string> seen;
    size_t start = 0;
    while (start <= list->size()) {
      size_t comma = list->find(',', start);
      if (comma == std::string::npos) comma = list->size();
      std::string sku = list->substr(start, comma - start);
      if (!messages::ValidIdentifier(sku)) {
        return Error(400, "invalid_param", "skus holds an empty or malformed SKU", "skus");
      }
      if (seen.insert(sku).second) skus.push_back(std::move(sku));
      if (skus.size() > kAvailabilitySkusMax) {
        return Error(400, "too_many_skus",
                     fmt::format("at most {} SKUs per request", kAvailabilitySkusMax), "skus");
      }
      start = comma + 1;
    }
    std::vector<Sku> keys;
    for (const std::string& sku : skus) keys.emplace_back(sku);
    absl::StatusOr<std::vector<StockLevel>> levels = shared->service.Availability(keys);
    if (!levels.ok()) return http::ErrorResponse(levels.status());
    Json items = Json::array();
    for (const std::string& sku : skus) {
      std::vector<StockLevel> mine;
      for (const StockLevel& level : *levels) {
        if (level.sku.value() == sku) mine.push_back(level);
      }
      items.push_back(SkuJson(sku, mine));
    }
    return Response::Json(200, Json{{"items", items}});
  });

  router.Add(
      "POST", "/api/v1/inventory/reservations",
      Staff(shared, [shared](Request& request, Responder respond) {
        Response error;
        std::optional<std::string> key = IdempotencyKey(request, /*required=*/true, error);
        if (!key.has_value()) return respond(std::move(error));
        absl::StatusOr<Json> body = messages::ParseBoundedObject(request.body);
        if (!body.ok()) return respond(http::ErrorResponse(body.status()));
        absl::StatusOr<cmd::Reserve> reserve =
            messages::ParseReserve(*body, shared->service.default_reservation_ttl_ms(), *key);
        if (!reserve.ok()) return respond(http::ErrorResponse(reserve.status()));
        cmd::Reserve command = *reserve;
        shared->service.Submit(std::move(*reserve),
                               [respond, command = std::move(command)](CommandResult result) {
                                 respond(ReserveResponse(command, result));
                               });
      }));

  router.Add("GET", "/api/v1/inventory/reservations/{id}",
             Staff(shared, [shared](Request& request, Responder respond) {
               Response error;
               std::optional<ReservationId> id = PathReservation(request, error);
               if (!id.has_value()) return respond(std::move(error));
               absl::StatusOr<std::optional<Reservation>> found =
                   shared->service.FindReservation(*id);
               if (!found.ok()) return respond(http::ErrorResponse(found.status()));
               if (!found->has_value()) {
                 return respond(Error(404, "reservation_not_found", "no such reservation", "id"));
               }
               respond(Response::Json(200, ReservationBody(**found)));
             }));

  router.Add("POST", "/api/v1/inventory/reservations/{id}/extend",
             Staff(shared, [shared](Request& request, Responder respond) {
               Response error;
               std::optional<ReservationId> id = PathReservation(request, error);
               if (!id.has_value()) return respond(std::move(error));
               if (request.Header(kIdempotencyHeader).has_value() &&
                   !IdempotencyKey(request, false, error).has_value()) {
                 return respond(std::move(error));
               }
               absl::StatusOr<Json> body = BodyObject(request);
               if (!body.ok()) return respond(http::ErrorResponse(body.status()));
               absl::StatusOr<std::optional<int64_t>> ttl_seconds =
                   OptionalInt(*body, "ttl_seconds", 1, messages::kTtlSecondsMax);
               if (!ttl_seconds.ok()) return respond(http::ErrorResponse(ttl_seconds.status()));
               const int64_t ttl_ms = ttl_seconds->has_value()
                                          ? **ttl_seconds * 1000
                                          : shared->service.default_reservation_ttl_ms();
               shared->service.Submit(cmd::Extend{*id, ttl_ms}, [respond](CommandResult result) {
                 respond(ReservationOpResponse(result));
               });
             }));

  router.Add("POST", "/api/v1/inventory/reservations/{id}/release",
             Staff(shared, [shared](Request& request, Responder respond) {
               Response error;
               std::optional<ReservationId> id = PathReservation(request, error);
               if (!id.has_value()) return respond(std::move(error));
               if (request.Header(kIdempotencyHeader).has_value() &&
                   !IdempotencyKey(request, false, error).has_value()) {
                 return respond(std::move(error));
               }
               shared->service.Submit(cmd::Release{*id}, [respond](CommandResult result) {
                 respond(ReservationOpResponse(result));
               });
             }));
}

void AddStaffRoutes(http::Router& router, std::shared_ptr<Shared> shared) {
  router.Add(
      "POST", "/api/v1/admin/inventory/locations",
      Staff(shared, [shared](Request& request, Responder respond) {
        absl::StatusOr<Json> body = messages::ParseBoundedObject(request.body);
        if (!body.ok()) return respond(http::ErrorResponse(body.status()));
        absl::StatusOr<std::string> id = messages::RequireIdentifier(*body, "id");
        if (!id.ok()) return respond(http::ErrorResponse(id.status()));
        absl::StatusOr<std::string> region = RequireString(*body, "region", messages::kIdLengthMax);
        if (!region.ok()) return respond(http::ErrorResponse(region.status()));
        absl::StatusOr<std::optional<std::string>> address = OptionalString(*body, "address", 1000);
        if (!address.ok()) return respond(http::ErrorResponse(address.status()));
        Location location{LocationId(*id), *region, address->value_or("")};
        if (absl::Status status = shared->service.AddLocation(location); !status.ok()) {
          return respond(http::ErrorResponse(status));
        }
        respond(
            Response::Json(201, {{"id", *id}, {"region", *region}, {"address", location.address}}));
      }));

  router.Add("GET", "/api/v1/admin/inventory/locations",
             Staff(shared, [shared](Request&, Responder respond) {
               absl::StatusOr<std::vector<Location>> locations = shared->service.Locations();
               if (!locations.ok()) return respond(http::ErrorResponse(locations.status()));
               Json items = Json::array();
               for (const Location& location : *locations) {
                 items.push_back({{"id", location.id.value()},
                                  {"region", location.region},
                                  {"address", location.address}});
               }
               respond(Response::Json(200, {{"items", items}}));
             }));

  // receive: quantity > 0; adjust: a signed non-zero delta.
  for (const bool receive : {true, false}) {
    const std::string path =
        receive ? "/api/v1/admin/inventory/receive" : "/api/v1/admin/inventory/adjust";
    router.Add(
        "POST", path, Staff(shared, [shared, receive](Request& request, Responder respond) {
          absl::StatusOr<Json> body = messages::ParseBoundedObject(request.body);
          if (!body.ok()) return respond(http::ErrorResponse(body.status()));
          absl::StatusOr<std::string> sku = messages::RequireIdentifier(*body, "sku");
          if (!sku.ok()) return respond(http::ErrorResponse(sku.status()));
          absl::StatusOr<std::string> location = messages::RequireIdentifier(*body, "location_id");
          if (!location.ok()) return respond(http::ErrorResponse(location.status()));
          absl::StatusOr<int64_t> quantity =
              receive ? RequireInt(*body, "quantity", 1, kStockQuantityMax)
                      : RequireInt(*body, "delta", -kStockQuantityMax, kStockQuantityMax);
          if (!quantity.ok()) return respond(http::ErrorResponse(quantity.status()));
          if (!receive && *quantity == 0) {
            return respond(Error(400, "invalid_param", "delta must not be 0", "delta"));
          }
          absl::StatusOr<std::optional<std::string>> reference =
              OptionalString(*body, "reference", kReferenceLengthMax);
          if (!reference.ok()) return respond(http::ErrorResponse(reference.status()));
          Json echo{{"sku", *sku},
                    {"location_id", *location},
                    {receive ? "quantity" : "delta", *quantity},
                    {"reference", reference->value_or("")}};
          Command command = receive ? Command(cmd::Receive{Sku(*sku), LocationId(*location),
                                                           *quantity, reference->value_or("staff")})
                                    : Command(cmd::Adjust{Sku(*sku), LocationId(*location),
                                                          *quantity, reference->value_or("staff")});
          // Optional Idempotency-Key: the record commits with the stock change (batch hook),
          // so a retry after a lost answer replays it instead of receiving twice.
          CommandOrigin origin;
          if (request.Header(kIdempotencyHeader).has_value()) {
            Response error;
            std::optional<std::string> key = IdempotencyKey(request, false, error);
            if (!key.has_value()) return respond(std::move(error));
            origin.idempotency_key = fmt::format("{}:{}", receive ? "receive" : "adjust", *key);
            origin.request_json = DumpJson(echo);
            // Claimed before the lookup: a same-key request that commits after our lookup
            // still holds the claim until its answer (and its record) is visible.
            if (!shared->ClaimKey(origin.idempotency_key)) {
              return respond(Error(409, "request_in_progress",
                                   "a request with this Idempotency-Key is in progress"));
            }
            absl::StatusOr<std::optional<InventoryService::StaffRecord>> found =
                shared->service.FindStaffRequest(origin.idempotency_key);
            if (!found.ok() || found->has_value()) {
              shared->ReleaseKey(origin.idempotency_key);
              if (!found.ok()) return respond(http::ErrorResponse(found.status()));
              if ((*found)->request_json != origin.request_json) {
                return respond(Error(422, "idempotency_key_reused",
                                     "this Idempotency-Key was used with another request"));
              }
              Response replay = Response::Text(200, (*found)->response_json, "application/json");
              replay.headers.Set("Idempotent-Replayed", "true");
              return respond(std::move(replay));
            }
          }
          const std::string claimed = origin.idempotency_key;
          shared->service.Submit(
              std::move(command),
              [respond, echo = std::move(echo), shared, claimed](CommandResult result) {
                Response response = StockResponse(result, echo);
                if (!claimed.empty()) shared->ReleaseKey(claimed);
                respond(std::move(response));
              },
              std::move(origin));
        }));
  }
}

}  // namespace

// A command that had no effect: the canonical error mapping, plus Retry-After when the shard's
// queue was full (503: the client should come back, the command was not applied).
http::Response CommandErrorResponse(const absl::Status& status) {
  http::Response response = http::ErrorResponse(status);
  if (IsQueueFull(status)) {
    response.headers.Set("Retry-After", std::to_string(kQueueFullRetryAfterSeconds));
  }
  return response;
}

void AddInventoryRoutes(http::Router& router, InventoryService& service, ApiOptions options) {
  auto shared = std::make_shared<Shared>(service, std::move(options));
  AddPublicRoutes(router, shared);
  AddStaffRoutes(router, shared);
}

}  // namespace emporium::inventory
