#include "app/platform_routes.h"

#include <cstdint>
#include <memory>

#include "app/openapi.h"
#include "common/errors.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/consumer.h"
#include "platform/context/principal.h"
#include "platform/context/staff_auth.h"
#include "platform/obs/metrics.h"

namespace emporium::app {
namespace {

constexpr int64_t kDeadLetterListLimitMax = 100;

http::Response Readiness(const std::vector<ReadinessCheck>& checks) {
  Json body = {{"status", "ok"}, {"checks", Json::object()}};
  bool ready = true;
  for (const auto& [name, check] : checks) {
    std::string problem = check();
    body["checks"][name] = problem.empty() ? "ok" : problem;
    if (!problem.empty()) ready = false;
  }
  if (!ready) body["status"] = "unavailable";
  return http::Response::Json(ready ? 200 : 503, body);
}

Json DeadLetterJson(const bus::DeadLetter& letter) {
  Json json = {{"id", letter.id},
               {"consumer", letter.consumer},
               {"message_id", letter.message_id},
               {"type", letter.type},
               {"error", letter.error},
               {"attempts", letter.attempts},
               {"failed_at_ms", letter.failed_at_ms},
               {"replayed_at_ms", nullptr}};
  if (letter.replayed_at_ms.has_value()) json["replayed_at_ms"] = *letter.replayed_at_ms;
  return json;
}

}  // namespace

void AddPlatformRoutes(http::Router& router, PlatformRouteDeps deps) {
  auto shared = std::make_shared<const PlatformRouteDeps>(std::move(deps));

  router.AddSync("GET", "/healthz", [](const http::Request&) {
    return http::Response::Json(200, {{"status", "ok"}});
  });
  router.AddSync("GET", "/readyz",
                 [shared](const http::Request&) { return Readiness(shared->readiness_checks); });
  router.AddSync("GET", "/metrics", [shared](const http::Request&) {
    return http::Response::Text(200, shared->metrics->RenderPrometheus(),
                                "text/plain; version=0.0.4; charset=utf-8");
  });
  router.AddSync("GET", "/api/v1/openapi.json", [](const http::Request&) {
    // Serialized once: the document never changes while the binary runs.
    static const absl::StatusOr<std::string> body = []() -> absl::StatusOr<std::string> {
      absl::StatusOr<Json> document = OpenApiJson();
      if (!document.ok()) return document.status();
      return DumpJson(*document);
    }();
    if (!body.ok()) return http::ErrorResponse(body.status());
    http::Response response = http::Response::Text(200, *body, "application/json");
    response.headers.Set("Cache-Control", "public, max-age=300");
    return response;
  });

  // Each database lists its own dead letters; the admin view merges them, per consumer.
  router.AddSync("GET", "/api/v1/admin/dead-letters", [shared](const http::Request& request) {
    http::Response denied;
    if (!AuthorizeStaff(request, shared->admin_api_key, {Role::kOps}, denied)) return denied;
    int64_t limit = 50;
    if (std::optional<std::string> text = request.QueryParam("limit"); text.has_value()) {
      char* end = nullptr;
      limit = std::strtoll(text->c_str(), &end, 10);
      if (text->empty() || *end != '\0' || limit < 1 || limit > kDeadLetterListLimitMax) {
        return http::ErrorResponse(
            InvalidParam("limit", "limit must be an integer between 1 and 100"));
      }
    }
    Json data = Json::array();
    for (const std::string& consumer : shared->bus->ConsumerNames()) {
      sql::Database* database = shared->bus->ConsumerDatabase(consumer);
      if (database == nullptr) continue;
      bus::DeadLetterQuery query;
      query.consumer = consumer;
      query.state = bus::DeadLetterState::kAny;
      query.limit = limit;
      absl::StatusOr<std::vector<bus::DeadLetter>> letters = bus::ListDeadLetters(*database, query);
      if (!letters.ok()) return http::ErrorResponse(letters.status());
      for (const bus::DeadLetter& letter : *letters) {
        data.push_back(DeadLetterJson(letter));
      }
    }
    return http::Response::Json(200, {{"data", data}});
  });

  router.AddSync(
      "POST", "/api/v1/admin/dead-letters/{consumer}/{id}/replay",
      [shared](const http::Request& request) {
        http::Response denied;
        if (!AuthorizeStaff(request, shared->admin_api_key, {Role::kOps}, denied)) return denied;
        const std::string consumer = request.PathParam("consumer");
        const std::string id_text = request.PathParam("id");
        char* end = nullptr;
        const int64_t id = std::strtoll(id_text.c_str(), &end, 10);
        if (id_text.empty() || *end != '\0' || id <= 0) {
          return http::ErrorResponse(InvalidParam("id", "id must be a positive integer"));
        }
        if (shared->bus->ConsumerDatabase(consumer) == nullptr) {
          return http::ErrorResponse(
              WithErrorCode(absl::NotFoundError("no such consumer"), "consumer_not_found"));
        }
        absl::Status status = shared->bus->ReplayDeadLetter(consumer, id);
        if (!status.ok()) return http::ErrorResponse(status);
        return http::Response::Json(200, {{"replayed", true}, {"id", id}});
      });
}

}  // namespace emporium::app
