// The load engine against a real HttpServer on port 0, in process: closed loop and open loop
// with the `get` scenario, a flash sale against a fake inventory route, and a dead target. Then
// the shopping scenarios (cart, mixed) for about a second each against the whole app (with the
// PSP sandbox) on port 0, each closed by the target's invariant audit.
#include <atomic>
#include <string>

#include "app/server_app.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/http/router.h"
#include "platform/http/server.h"
#include "test_support.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/scenarios.h"
#include "tools/loadgen/target_audit.h"
#include "tools/psp_sandbox/sandbox.h"

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

// ---- the shopping scenarios against the whole app ----

constexpr char kAdminKey[] = "loadgen-smoke-admin-key";

class LoadgenAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    psp_sandbox::SandboxOptions sandbox_options;
    sandbox_options.db_path = dir_.path() + "/psp.db";
    sandbox_ = std::make_unique<psp_sandbox::PspSandbox>(sandbox_options);
    ASSERT_TRUE(sandbox_->Start().ok());
    app::Config config;
    config.server.port = 0;
    config.server.io_threads = 2;
    config.data_dir = dir_.path() + "/data";
    config.admin_api_key = kAdminKey;
    config.log_level = "error";
    config.payments.psp_url = fmt::format("http://127.0.0.1:{}", sandbox_->port());
    // The load comes from one address: the gateway's per-client limits would answer 429.
    config.gateway.read_per_minute = 0;
    config.gateway.write_per_minute = 0;
    config.gateway.checkout_per_minute = 0;
    absl::StatusOr<std::unique_ptr<app::ServerApp>> opened = app::ServerApp::Open(config);
    ASSERT_TRUE(opened.ok()) << opened.status();
    app_ = *std::move(opened);
    ASSERT_TRUE(app_->Start().ok());
  }
  void TearDown() override {
    if (app_) app_->Shutdown();
    if (sandbox_) sandbox_->Shutdown();
  }

  ScenarioOptions ShopOptions() const {
    ScenarioOptions options;
    options.port = app_->port();
    options.admin_key = kAdminKey;
    options.run_id = "smoke";
    options.connections = 4;
    options.products = 4;
    options.warmup = absl::Milliseconds(200);
    options.duration = absl::Seconds(1);
    return options;
  }

  // Prepare, run and audit `scenario`, as `emporium loadgen` does.
  void Run(LoadScenario& scenario, const ScenarioOptions& options) {
    ASSERT_TRUE(scenario.Prepare().ok());
    EngineOptions engine;
    engine.port = options.port;
    engine.connections = options.connections;
    engine.threads = 2;
    engine.warmup = options.warmup;
    engine.duration = options.duration;
    engine.request_timeout = absl::Seconds(15);
    absl::StatusOr<EngineResult> result = RunLoad(engine, scenario);
    ASSERT_TRUE(result.ok()) << result.status();
    result_ = *std::move(result);
    TargetAuditOptions audit_options;
    audit_options.port = options.port;
    audit_options.admin_key = kAdminKey;
    audit_options.settle_wait = scenario.CreatesOrders() ? SettleWait::kOrders : SettleWait::kNone;
    audit_options.settle_timeout = absl::Seconds(20);
    audit_ = RunTargetAudit(audit_options);
  }

  void ExpectNoErrors(const LoadScenario& scenario) const {
    std::string report;
    for (const std::string& line : scenario.SummaryLines()) report += line + "\n";
    EXPECT_GT(result_.requests, 0) << report;
    EXPECT_EQ(result_.errors, 0) << report;
    EXPECT_TRUE(result_.transport_errors.empty()) << report;
  }

  // The audit ran and found nothing.
  void ExpectCleanAudit() const {
    std::string lines;
    for (const std::string& line : AuditReportLines(audit_)) lines += line + "\n";
    EXPECT_EQ(audit_.verdict, AuditVerdict::kClean) << lines;
    if (std::getenv("LOADGEN_SMOKE_VERBOSE") != nullptr) std::fprintf(stderr, "%s", lines.c_str());
  }

  testing::TempDir dir_;
  std::unique_ptr<psp_sandbox::PspSandbox> sandbox_;
  std::unique_ptr<app::ServerApp> app_;
  EngineResult result_;
  TargetAudit audit_;
};

TEST_F(LoadgenAppTest, CartScenarioRunsCleanAndAudits) {
  const ScenarioOptions options = ShopOptions();
  auto scenario = MakeScenario("cart", options);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_NO_FATAL_FAILURE(Run(**scenario, options));
  ExpectNoErrors(**scenario);
  const Json summary = (*scenario)->SummaryJson();
  EXPECT_GT(summary["carts_abandoned"].get<int64_t>(), 0) << summary.dump();
  EXPECT_EQ(summary["errors"], 0) << summary.dump();
  EXPECT_GT(summary["steps"]["read"]["count"].get<int64_t>(), 0) << summary.dump();
  EXPECT_FALSE(summary["reservations_read"].empty()) << summary.dump();
  ExpectCleanAudit();
}

TEST_F(LoadgenAppTest, MixedScenarioRunsEveryKindCleanAndAudits) {
  ScenarioOptions options = ShopOptions();
  // Heavier on carts and checkouts than the default, so a one-second run sees every kind.
  options.mix = "browse=50,cart=30,checkout=20";
  auto scenario = MakeScenario("mixed", options);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_NO_FATAL_FAILURE(Run(**scenario, options));
  ExpectNoErrors(**scenario);
  const Json summary = (*scenario)->SummaryJson();
  for (const char* kind : {"browse", "cart", "checkout"}) {
    EXPECT_GT(summary["kinds"][kind]["loops"].get<int64_t>(), 0) << kind << summary.dump();
    EXPECT_EQ(summary["kinds"][kind]["errors"], 0) << kind << summary.dump();
  }
  EXPECT_EQ(summary["checkout"]["errors"], 0) << summary.dump();
  ExpectCleanAudit();
}

TEST_F(LoadgenAppTest, CheckoutScenarioConfirmsOrdersAndAudits) {
  const ScenarioOptions options = ShopOptions();
  auto scenario = MakeScenario("checkout", options);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_NO_FATAL_FAILURE(Run(**scenario, options));
  ExpectNoErrors(**scenario);
  ExpectCleanAudit();
}

// Against the real inventory API: the reservation route is ops-only, so this also proves the
// scenario authenticates; never more sold than stocked, and the stock is gone.
TEST_F(LoadgenAppTest, FlashSaleAgainstTheAppSellsExactlyTheStock) {
  ScenarioOptions options = ShopOptions();
  options.connections = 16;
  options.sku = "SMOKE-FLASH-1";
  options.stock = 25;
  auto scenario = MakeScenario("flash-sale", options);
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  ASSERT_NO_FATAL_FAILURE(Run(**scenario, options));
  EXPECT_TRUE((*scenario)->Verdict().ok()) << (*scenario)->Verdict();
  const Json summary = (*scenario)->SummaryJson();
  EXPECT_EQ(summary["sold"], 25) << summary.dump();
  EXPECT_EQ(summary["other"], 0) << summary.dump();
  ExpectCleanAudit();
}

}  // namespace
}  // namespace emporium::loadgen
