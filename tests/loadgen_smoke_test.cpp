// The load engine against a real HttpServer on port 0, in process: closed loop and open loop
// with the `get` scenario, a flash sale against a fake inventory route, and a dead target.
#include <atomic>
#include <string>

#include "gtest/gtest.h"
#include "platform/http/router.h"
#include "platform/http/server.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/scenarios.h"

namespace emporium::loadgen {
namespace {

class LoadgenSmokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.AddSync("GET", "/ping", [](const http::Request&) {
      http::Response response;
      response.headers.Set("Content-Type", "application/json");
      response.body = R"({"ok":true})";
      return response;
    });
    // A stand-in for the inventory reservation route: sells kStock units, then 409.
    router_.AddSync("POST", "/api/v1/inventory/reservations", [this](const http::Request&) {
      if (sold_.fetch_add(1) < kStock) return http::Response::Json(201, {{"id", "r"}});
      return http::ErrorResponse(409, "invalid_request_error", "insufficient_stock", "sold out");
    });
    http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.io_threads = 1;
    server_ = std::make_unique<http::HttpServer>(options, router_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override { server_->Shutdown(absl::Seconds(2)); }

  EngineOptions Options() const {
    EngineOptions options;
    options.host = "127.0.0.1";
    options.port = server_->port();
    options.connections = 8;
    options.threads = 2;
    options.warmup = absl::Milliseconds(200);
    options.duration = absl::Seconds(1);
    return options;
  }

  static void ExpectClean(const EngineResult& result) {
    EXPECT_GT(result.requests, 0);
    EXPECT_EQ(result.errors, 0);
    EXPECT_TRUE(result.transport_errors.empty());
    EXPECT_EQ(result.latency_us.count(), result.requests);
    EXPECT_EQ(result.ok, result.requests);
    int64_t by_status = 0;
    for (const auto& [status, count] : result.by_status) by_status += count;
    EXPECT_EQ(by_status, result.requests);
    EXPECT_EQ(result.by_status.count(200), 1u);
    int64_t timeline = 0;
    for (const SecondSample& sample : result.timeline) timeline += sample.count;
    EXPECT_EQ(timeline, result.requests);
    EXPECT_EQ(result.timeline.size(), 1u);
    EXPECT_LE(result.connects, 16);  // keep-alive: about one connection each
  }

  static constexpr int kStock = 50;
  http::Router router_;
  std::unique_ptr<http::HttpServer> server_;
  std::atomic<int> sold_{0};
};

TEST_F(LoadgenSmokeTest, ClosedLoopGet) {
  ScenarioOptions scenario_options;
  scenario_options.path = "/ping";
  auto scenario = MakeScenario("get", scenario_options);
  ASSERT_TRUE(scenario.ok());
  int ticks = 0;
  EngineOptions options = Options();
  options.on_second = [&ticks](const SecondSample&) { ++ticks; };
  absl::StatusOr<EngineResult> result = RunLoad(options, **scenario);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectClean(*result);
  EXPECT_EQ(ticks, 2);  // one warm-up second, one measured
  EXPECT_GT(result->latency_us.max(), 0);
}

TEST_F(LoadgenSmokeTest, OpenLoopGetHoldsTheRate) {
  ScenarioOptions scenario_options;
  scenario_options.path = "/ping";
  auto scenario = MakeScenario("get", scenario_options);
  ASSERT_TRUE(scenario.ok());
  EngineOptions options = Options();
  options.rate_per_second = 400;
  absl::StatusOr<EngineResult> result = RunLoad(options, **scenario);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectClean(*result);
  // 400/s for 1 s; generous bounds for a loaded 2-core machine under sanitizers.
  EXPECT_GE(result->requests, 300);
  EXPECT_LE(result->requests, 420);
}

TEST_F(LoadgenSmokeTest, UnknownPathCountsErrorsByStatus) {
  ScenarioOptions scenario_options;
  scenario_options.path = "/missing";
  auto scenario = MakeScenario("get", scenario_options);
  ASSERT_TRUE(scenario.ok());
  absl::StatusOr<EngineResult> result = RunLoad(Options(), **scenario);
  ASSERT_TRUE(result.ok());
  EXPECT_GT(result->errors, 0);
  EXPECT_EQ(result->errors, result->by_status[404]);
}

TEST_F(LoadgenSmokeTest, FlashSaleSellsExactlyTheStock) {
  ScenarioOptions scenario_options;
  scenario_options.run_id = "smoke";
  auto scenario = MakeScenario("flash-sale", scenario_options);
  ASSERT_TRUE(scenario.ok());
  EngineOptions options = Options();
  options.warmup = absl::ZeroDuration();
  absl::StatusOr<EngineResult> result = RunLoad(options, **scenario);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->ok, kStock);
  EXPECT_GT(result->rejected, 0);  // 409 sold out: expected, not an error
  EXPECT_EQ(result->errors, 0);
  EXPECT_EQ((*scenario)->SummaryJson()["sold"], kStock);
}

TEST_F(LoadgenSmokeTest, DeadTargetReportsConnectErrors) {
  const uint16_t port = server_->port();
  server_->Shutdown(absl::Seconds(1));
  ScenarioOptions scenario_options;
  auto scenario = MakeScenario("get", scenario_options);
  ASSERT_TRUE(scenario.ok());
  EngineOptions options = Options();
  options.port = port;
  options.warmup = absl::ZeroDuration();
  options.duration = absl::Milliseconds(300);
  absl::StatusOr<EngineResult> result = RunLoad(options, **scenario);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->requests, 0);
  EXPECT_FALSE(result->transport_errors.empty());
}

TEST_F(LoadgenSmokeTest, BrowseSkipsWithoutACatalog) {
  ScenarioOptions scenario_options;
  scenario_options.port = server_->port();
  auto scenario = MakeScenario("browse", scenario_options);
  ASSERT_TRUE(scenario.ok());
  absl::Status prepared = (*scenario)->Prepare();
  EXPECT_EQ(prepared.code(), absl::StatusCode::kFailedPrecondition) << prepared;
  EXPECT_NE(std::string(prepared.message()).find("catalog"), std::string::npos);
}

TEST_F(LoadgenSmokeTest, RejectsBadOptions) {
  ScenarioOptions scenario_options;
  auto scenario = MakeScenario("get", scenario_options);
  ASSERT_TRUE(scenario.ok());
  EngineOptions options = Options();
  options.connections = 0;
  EXPECT_EQ(RunLoad(options, **scenario).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.rate_per_second = -1;
  EXPECT_EQ(RunLoad(options, **scenario).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.duration = absl::ZeroDuration();
  EXPECT_EQ(RunLoad(options, **scenario).status().code(), absl::StatusCode::kInvalidArgument);
  options = Options();
  options.host = "no-such-host.invalid";
  EXPECT_EQ(RunLoad(options, **scenario).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace emporium::loadgen
