#include "app/platform_routes.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "app/openapi.h"
#include "common/errors.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/consumer.h"
#include "platform/context/principal.h"
#include "platform/context/staff_auth.h"
#include "platform/obs/metrics.h"
#include "tools/audit/audit.h"

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

// Runs POST /api/v1/admin/audit off the io threads: the audit scans whole databases and may call
// the PSP, so each run gets a thread of its own, and at most one runs at a time (a second
// request meanwhile is answered 409 audit_in_progress). The destructor waits for a running
// audit; the audit thread holds only `this`, never the owning shared_ptr, so it is never the
// one destroying its runner.
class AuditRunner {
 public:
  AuditRunner(std::string data_dir, std::string psp_url)
      : data_dir_(std::move(data_dir)), psp_url_(std::move(psp_url)) {}
  ~AuditRunner() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (thread_.joinable()) thread_.join();
  }
  AuditRunner(const AuditRunner&) = delete;
  AuditRunner& operator=(const AuditRunner&) = delete;

  // Starts an audit that answers through `respond`; false (and `respond` untouched) when one
  // is already running.
  bool Start(http::Responder respond) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_) return false;
    // A finished run's thread has cleared running_ and at most still returns from respond().
    if (thread_.joinable()) thread_.join();
    running_ = true;
    thread_ = std::thread([this, respond = std::move(respond)] {
      audit::AuditOptions options;
      options.data_dir = data_dir_;
      options.psp_url = psp_url_;
      absl::StatusOr<audit::AuditReport> report = audit::RunAudit(options);
      http::Response response = report.ok()
                                    ? http::Response::Json(200, audit::AuditReportJson(*report))
                                    : http::ErrorResponse(report.status());
      {
        std::lock_guard<std::mutex> finished(mutex_);
        running_ = false;
      }
      respond(std::move(response));
    });
    return true;
  }

 private:
  const std::string data_dir_;
  const std::string psp_url_;
  std::mutex mutex_;
  bool running_ = false;  // guarded by mutex_
  std::thread thread_;    // guarded by mutex_
};

}  // namespace

void AddPlatformRoutes(http::Router& router, PlatformRouteDeps deps) {
  auto auditor = std::make_shared<AuditRunner>(deps.data_dir, deps.psp_url);
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

  // The invariant audit of this server's own databases (and its PSP), as the load generator
  // runs it after every scenario.
  router.Add("POST", "/api/v1/admin/audit",
             [shared, auditor](http::Request& request, http::Responder respond) {
               http::Response denied;
               if (!AuthorizeStaff(request, shared->admin_api_key, {Role::kOps}, denied)) {
                 return respond(std::move(denied));
               }
               if (!auditor->Start(respond)) {
                 respond(http::ErrorResponse(
                     WithErrorCode(absl::AbortedError("an audit is already running; retry when "
                                                      "it has finished"),
                                   "audit_in_progress")));
               }
             });
}

}  // namespace emporium::app
