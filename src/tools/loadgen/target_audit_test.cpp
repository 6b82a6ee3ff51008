// The closing audit's answer parsing and report lines, plus RunTargetAudit against a fake
// target on port 0: the settle wait, retries while violations clear, persistent violations, a
// missing route and a refused key.
#include "tools/loadgen/target_audit.h"

#include <atomic>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "platform/http/router.h"
#include "platform/http/server.h"

namespace emporium::loadgen {
namespace {

using Json = nlohmann::json;

bool HasLineWith(const std::vector<std::string>& lines, const std::string& text) {
  for (const std::string& line : lines) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

TEST(ParseAuditAnswerTest, CleanAnswer) {
  TargetAudit audit = ParseAuditAnswer(200, R"({"ok":true,"violations":[],"violations_unlisted":0,
               "checks":["inventory/no-oversell: 3 rows"],"notes":["payments: skipped"]})");
  EXPECT_EQ(audit.verdict, AuditVerdict::kClean);
  EXPECT_EQ(audit.checks.size(), 1u);
  EXPECT_EQ(audit.notes.size(), 1u);
  const std::vector<std::string> lines = AuditReportLines(audit);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front().rfind("audit: clean", 0), 0u);
  const Json json = AuditReportJson(audit);
  EXPECT_EQ(json["verdict"], "clean");
  EXPECT_EQ(json["ok"], true);
}

TEST(ParseAuditAnswerTest, ViolationsFailTheVerdict) {
  TargetAudit audit = ParseAuditAnswer(
      200, R"({"ok":false,"violations":[{"context":"inventory","invariant":"no-oversell",
               "detail":"SKU A at wh: reserved 5 > on_hand 3"}, 7],"violations_unlisted":2,
               "checks":[1,"x"],"notes":null})");
  EXPECT_EQ(audit.verdict, AuditVerdict::kViolations);
  ASSERT_EQ(audit.violations.size(), 1u);  // the non-object entry is skipped
  EXPECT_EQ(audit.violations[0].invariant, "no-oversell");
  EXPECT_EQ(audit.violations_unlisted, 2);
  EXPECT_EQ(audit.checks, std::vector<std::string>{"x"});
  const std::vector<std::string> lines = AuditReportLines(audit);
  EXPECT_EQ(lines.front().rfind("audit: FAILED", 0), 0u);
  EXPECT_TRUE(HasLineWith(lines, "inventory/no-oversell"));
  EXPECT_EQ(AuditReportJson(audit)["ok"], false);
}

TEST(ParseAuditAnswerTest, OkWithListedViolationsIsNotClean) {
  TargetAudit audit = ParseAuditAnswer(
      200, R"({"ok":true,"violations":[{"context":"c","invariant":"i","detail":"d"}]})");
  EXPECT_EQ(audit.verdict, AuditVerdict::kViolations);
}

TEST(ParseAuditAnswerTest, MissingRouteAndHostileAnswers) {
  EXPECT_EQ(ParseAuditAnswer(404, "").verdict, AuditVerdict::kNotAvailable);
  EXPECT_EQ(AuditReportLines(ParseAuditAnswer(404, "")).front(),
            "audit: not available on target (POST /api/v1/admin/audit answered 404)");
  EXPECT_EQ(AuditReportJson(ParseAuditAnswer(404, ""))["ok"], nullptr);
  for (const auto& [status, body] :
       std::vector<std::pair<int, std::string>>{{401, R"({"error":{}})"},
                                                {500, "boom"},
                                                {200, "not json"},
                                                {200, "[]"},
                                                {200, R"({"ok":"yes"})"},
                                                {200, R"({"violations":[]})"}}) {
    TargetAudit audit = ParseAuditAnswer(status, body);
    EXPECT_EQ(audit.verdict, AuditVerdict::kFailed) << status << " " << body;
    EXPECT_FALSE(audit.error.empty());
    EXPECT_EQ(AuditReportLines(audit).front().rfind("audit: could not run", 0), 0u);
  }
  // A huge detail is clipped in the text report.
  Json big = {
      {"ok", false},
      {"violations",
       Json::array({{{"context", "c"}, {"invariant", "i"}, {"detail", std::string(10000, 'x')}}})}};
  for (const std::string& line : AuditReportLines(ParseAuditAnswer(200, big.dump()))) {
    EXPECT_LT(line.size(), 1000u);
  }
}

// A fake target: the audit route answers violations for the first `transient_` calls, then
// clean (or violations forever when `persistent_`); the stuck-orders route lists an unfinished
// order for the first `unsettled_polls_` polls.
class TargetAuditTest : public ::testing::Test {
 protected:
  void Start(bool with_audit_route) {
    if (with_audit_route) {
      router_.AddSync("POST", "/api/v1/admin/audit", [this](const http::Request& request) {
        if (request.headers.Get("Authorization").value_or("") != "Bearer key") {
          return http::Response::Json(401, Json{{"error", {{"code", "unauthorized"}}}});
        }
        const int call = audit_calls_.fetch_add(1);
        if (call < busy_) {
          return http::Response::Json(409, Json{{"error", {{"code", "audit_in_progress"}}}});
        }
        if (persistent_ || call < busy_.load() + transient_) {
          return http::Response::Json(
              200, Json{{"ok", false},
                        {"violations", Json::array({{{"context", "ordering"},
                                                     {"invariant", "saga-in-flight"},
                                                     {"detail", "order o1"}}})},
                        {"violations_unlisted", 0},
                        {"checks", Json::array({"ordering/sagas"})},
                        {"notes", Json::array()}});
        }
        return http::Response::Json(200, Json{{"ok", true},
                                              {"violations", Json::array()},
                                              {"violations_unlisted", 0},
                                              {"checks", Json::array({"ordering/sagas"})},
                                              {"notes", Json::array()}});
      });
    }
    router_.AddSync("GET", "/api/v1/admin/orders/stuck", [this](const http::Request&) {
      const int poll = stuck_polls_.fetch_add(1);
      Json items = Json::array();
      if (poll < unsettled_polls_) items.push_back({{"id", "o1"}});
      return http::Response::Json(200, Json{{"items", items}});
    });
    http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.io_threads = 1;
    server_ = std::make_unique<http::HttpServer>(options, router_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(2));
  }
  TargetAuditOptions Options() const {
    TargetAuditOptions options;
    options.port = server_->port();
    options.admin_key = "key";
    options.settle_poll = absl::Milliseconds(5);
    options.attempt_gap = absl::Milliseconds(5);
    options.attempts_max = 4;
    return options;
  }

  http::Router router_;
  std::unique_ptr<http::HttpServer> server_;
  std::atomic<int> audit_calls_{0};
  std::atomic<int> stuck_polls_{0};
  std::atomic<int> busy_{0};  // answers 409 audit_in_progress first
  int transient_ = 0;
  bool persistent_ = false;
  int unsettled_polls_ = 0;
};

TEST_F(TargetAuditTest, WaitsForOrdersThenReportsTransientViolations) {
  transient_ = 2;
  unsettled_polls_ = 3;
  Start(true);
  TargetAuditOptions options = Options();
  options.settle_wait = SettleWait::kOrders;
  TargetAudit audit = RunTargetAudit(options);
  EXPECT_EQ(audit.verdict, AuditVerdict::kClean) << audit.error;
  EXPECT_EQ(audit.attempts, 3);
  EXPECT_EQ(stuck_polls_.load(), 4);
  EXPECT_NE(audit.settle.find("every order settled"), std::string::npos) << audit.settle;
  EXPECT_EQ(audit.transient_violations, 2);
  EXPECT_EQ(audit.transient_invariants, std::vector<std::string>{"ordering/saga-in-flight"});
  const std::vector<std::string> lines = AuditReportLines(audit);
  EXPECT_TRUE(HasLineWith(lines, "cleared by attempt 3")) << lines.size();
  EXPECT_EQ(AuditReportJson(audit)["transient_violations"], 2);
}

TEST_F(TargetAuditTest, PersistentViolationsAreTheVerdict) {
  persistent_ = true;
  unsettled_polls_ = 1000;  // never settles: the wait is bounded
  Start(true);
  TargetAuditOptions options = Options();
  options.settle_wait = SettleWait::kOrders;
  options.settle_timeout = absl::Milliseconds(50);
  TargetAudit audit = RunTargetAudit(options);
  EXPECT_EQ(audit.verdict, AuditVerdict::kViolations);
  EXPECT_EQ(audit.attempts, 4);
  EXPECT_EQ(audit.transient_violations, 0);
  EXPECT_NE(audit.settle.find("still unfinished"), std::string::npos) << audit.settle;
}

TEST_F(TargetAuditTest, AnAuditAlreadyRunningIsAskedAgain) {
  busy_ = 2;
  Start(true);
  TargetAudit audit = RunTargetAudit(Options());
  EXPECT_EQ(audit.verdict, AuditVerdict::kClean) << audit.error;
  EXPECT_EQ(audit.attempts, 3);
  EXPECT_EQ(audit.transient_violations, 0);
  busy_ = 1000;
  audit_calls_ = 0;
  audit = RunTargetAudit(Options());
  EXPECT_EQ(audit.verdict, AuditVerdict::kFailed);
  EXPECT_EQ(audit.attempts, 4);
  EXPECT_NE(audit.error.find("409"), std::string::npos) << audit.error;
}

TEST_F(TargetAuditTest, NoRouteIsNotAvailable) {
  Start(false);
  TargetAudit audit = RunTargetAudit(Options());
  EXPECT_EQ(audit.verdict, AuditVerdict::kNotAvailable);
  EXPECT_EQ(audit.attempts, 1);
}

TEST_F(TargetAuditTest, RefusedKeyAndDeadTargetGiveNoVerdict) {
  Start(true);
  TargetAuditOptions options = Options();
  options.admin_key = "wrong";
  TargetAudit refused = RunTargetAudit(options);
  EXPECT_EQ(refused.verdict, AuditVerdict::kFailed);
  EXPECT_EQ(refused.attempts, 1);  // only violations are retried
  options.admin_key = "";
  EXPECT_EQ(RunTargetAudit(options).verdict, AuditVerdict::kFailed);
  const uint16_t port = server_->port();
  server_->Shutdown(absl::Seconds(1));
  options = Options();
  options.port = port;
  options.request_timeout = absl::Seconds(2);
  EXPECT_EQ(RunTargetAudit(options).verdict, AuditVerdict::kFailed);
}

}  // namespace
}  // namespace emporium::loadgen
