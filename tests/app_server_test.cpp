// The composition root, in process: the router agrees with docs/openapi.yaml, and the platform
// routes (health, readiness, metrics, OpenAPI, dead letters) answer as documented.
#include <algorithm>
#include <set>
#include <string>

#include "app/openapi.h"
#include "app/server_app.h"
#include "gtest/gtest.h"
#include "platform/http/client.h"
#include "test_support.h"

namespace emporium {
namespace {

using testing::TempDir;

app::Config TestConfig(const TempDir& dir) {
  app::Config config;
  config.server.port = 0;
  config.server.io_threads = 2;
  config.data_dir = dir.path() + "/data";
  config.admin_api_key = "test-admin-key";
  config.log_level = "error";
  return config;
}

// "/static/{path...}" in the router is "/static/{path}" in OpenAPI.
std::string SpecPattern(std::string pattern) {
  const std::string wildcard = "...}";
  if (size_t at = pattern.find(wildcard); at != std::string::npos) pattern.erase(at, 3);
  return pattern;
}

TEST(AppServerTest, RouterAndOpenApiDocumentDeclareTheSameRoutes) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<app::ServerApp>> server = app::ServerApp::Open(TestConfig(dir));
  ASSERT_TRUE(server.ok()) << server.status();
  std::set<std::pair<std::string, std::string>> routed;
  for (const auto& [method, pattern] : (*server)->router().routes()) {
    routed.emplace(method, SpecPattern(pattern));
  }
  absl::StatusOr<Json> document = app::OpenApiJson();
  ASSERT_TRUE(document.ok()) << document.status();
  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& route : app::OpenApiRoutes(*document)) documented.insert(route);

  for (const auto& route : routed) {
    EXPECT_TRUE(documented.count(route))
        << route.first << " " << route.second << " is routed but missing from docs/openapi.yaml";
  }
  for (const auto& route : documented) {
    EXPECT_TRUE(routed.count(route))
        << route.first << " " << route.second << " is in docs/openapi.yaml but not routed";
  }
}

TEST(AppServerTest, EveryDocumentedOperationHasAnIdAndResponses) {
  absl::StatusOr<Json> document = app::OpenApiJson();
  ASSERT_TRUE(document.ok());
  std::set<std::string> operation_ids;
  for (const auto& [path, operations] : (*document)["paths"].items()) {
    for (const auto& [method, operation] : operations.items()) {
      if (!operation.is_object() || !operation.contains("responses")) continue;
      ASSERT_TRUE(operation.contains("operationId")) << method << " " << path;
      EXPECT_TRUE(operation_ids.insert(operation["operationId"].get<std::string>()).second)
          << "duplicate operationId " << operation["operationId"];
    }
  }
}

class RunningAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<app::ServerApp>> server = app::ServerApp::Open(TestConfig(dir_));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_TRUE(server_->Start().ok());
    http::ClientOptions options;
    options.port = server_->port();
    client_ = std::make_unique<http::HttpClient>(options);
  }
  void TearDown() override {
    client_.reset();
    if (server_) server_->Shutdown();
  }

  http::ClientResponse Get(const std::string& target, const std::string& bearer = "") {
    http::ClientRequest request;
    request.target = target;
    if (!bearer.empty()) request.headers.Add("Authorization", "Bearer " + bearer);
    absl::StatusOr<http::ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : http::ClientResponse{};
  }

  TempDir dir_;
  std::unique_ptr<app::ServerApp> server_;
  std::unique_ptr<http::HttpClient> client_;
};

TEST_F(RunningAppTest, HealthAndReadiness) {
  http::ClientResponse health = Get("/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(Json::parse(health.body)["status"], "ok");

  http::ClientResponse ready = Get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  Json body = Json::parse(ready.body);
  EXPECT_EQ(body["status"], "ok");
  EXPECT_EQ(body["checks"]["bus.relay"], "ok");
}

TEST_F(RunningAppTest, MetricsAreInThePrometheusFormatAndCountRequests) {
  Get("/healthz");
  http::ClientResponse metrics = Get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.headers.Get("Content-Type")->find("text/plain"), std::string::npos);
  EXPECT_NE(metrics.body.find("# TYPE emporium_http_requests_total counter"), std::string::npos);
  EXPECT_NE(metrics.body.find("emporium_http_requests_total{method=\"GET\",route=\"/healthz\","
                              "status=\"200\"}"),
            std::string::npos)
      << metrics.body;  // The inventory engine's memory and eviction figures, read at scrape time.
  for (const char* gauge :
       {"emporium_inventory_reservations_resident", "emporium_inventory_reservations_evicted",
        "emporium_inventory_evicted_record_entries", "emporium_inventory_fault_in_reads",
        "emporium_inventory_batches_committed", "emporium_inventory_queue_full_rejections"}) {
    EXPECT_NE(metrics.body.find(std::string("# TYPE ") + gauge + " gauge"), std::string::npos)
        << gauge;
  }
}

TEST_F(RunningAppTest, ServesTheOpenApiDocumentAsJson) {
  http::ClientResponse response = Get("/api/v1/openapi.json");
  EXPECT_EQ(response.status, 200);
  Json document = Json::parse(response.body);
  EXPECT_EQ(document["openapi"], "3.1.0");
  EXPECT_TRUE(document["paths"].contains("/healthz"));
}

TEST_F(RunningAppTest, AdminRoutesNeedTheKeyAndAnswerInTheErrorShape) {
  http::ClientResponse anonymous = Get("/api/v1/admin/dead-letters");
  EXPECT_EQ(anonymous.status, 401);
  Json error = Json::parse(anonymous.body)["error"];
  EXPECT_EQ(error["type"], "authentication_error");
  EXPECT_TRUE(error.contains("code") && error.contains("message") && error.contains("param"));

  EXPECT_EQ(Get("/api/v1/admin/dead-letters", "wrong-key").status, 401);
  http::ClientResponse listed = Get("/api/v1/admin/dead-letters", "test-admin-key");
  EXPECT_EQ(listed.status, 200);
  EXPECT_TRUE(Json::parse(listed.body)["data"].is_array());

  http::ClientResponse bad_limit = Get("/api/v1/admin/dead-letters?limit=0", "test-admin-key");
  EXPECT_EQ(bad_limit.status, 400);
  EXPECT_EQ(Json::parse(bad_limit.body)["error"]["param"], "limit");

  http::ClientRequest replay;
  replay.method = "POST";
  replay.target = "/api/v1/admin/dead-letters/nobody/1/replay";
  replay.headers.Add("Authorization", "Bearer test-admin-key");
  absl::StatusOr<http::ClientResponse> missing = client_->Send(replay);
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(RunningAppTest, UnknownRoutesAndMethodsAnswerInTheErrorShape) {
  http::ClientResponse missing = Get("/api/v1/no-such-thing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(Json::parse(missing.body)["error"]["type"], "not_found_error");

  http::ClientRequest wrong_method;
  wrong_method.method = "DELETE";
  wrong_method.target = "/healthz";
  absl::StatusOr<http::ClientResponse> response = client_->Send(wrong_method);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->status, 405);
  EXPECT_TRUE(response->headers.Get("Allow").has_value());
}

TEST(AppServerOpenTest, RefusesADataDirectoryItCannotCreate) {
  app::Config config;
  config.data_dir = "/proc/emporium-cannot-create-this";
  absl::StatusOr<std::unique_ptr<app::ServerApp>> server = app::ServerApp::Open(config);
  EXPECT_FALSE(server.ok());
}

}  // namespace
}  // namespace emporium
