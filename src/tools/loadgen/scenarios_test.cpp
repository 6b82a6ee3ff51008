#include "tools/loadgen/scenarios.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::loadgen {
namespace {

TEST(ZipfSamplerTest, RankOneIsMostPopularAndFrequenciesFollowThePowerLaw) {
  ZipfSampler zipf(100, 1.0);
  std::mt19937_64 random(11);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<int> counts(100, 0);
  constexpr int kSamples = 200'000;
  for (int i = 0; i < kSamples; ++i) ++counts[zipf.Sample(uniform(random))];
  // P(rank 1) = 1 / H(100) ~ 0.1928; P(rank 2) is half of that.
  EXPECT_NEAR(counts[0] / static_cast<double>(kSamples), 0.1928, 0.01);
  EXPECT_NEAR(counts[1] / static_cast<double>(counts[0]), 0.5, 0.05);
  EXPECT_GT(counts[0], counts[50]);
}

TEST(ZipfSamplerTest, EdgesStayInRange) {
  ZipfSampler zipf(5, 1.2);
  EXPECT_EQ(zipf.Sample(0.0), 0u);
  EXPECT_EQ(zipf.Sample(0.9999999), 4u);
  EXPECT_EQ(zipf.Sample(1.0), 4u);
  ZipfSampler single(0, 1.0);  // clamps to one rank
  EXPECT_EQ(single.Sample(0.5), 0u);
}

TEST(MakeScenarioTest, KnowsItsNamesAndRejectsTheRest) {
  ScenarioOptions options;
  EXPECT_TRUE(MakeScenario("get", options).ok());
  EXPECT_TRUE(MakeScenario("browse", options).ok());
  EXPECT_TRUE(MakeScenario("flash-sale", options).ok());
  EXPECT_TRUE(MakeScenario("checkout", options).ok());
  EXPECT_EQ(MakeScenario("cart", options).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(MakeScenario("nope", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.path = "no-slash";
  EXPECT_EQ(MakeScenario("get", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.stock = 0;
  EXPECT_EQ(MakeScenario("flash-sale", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CheckoutScenarioTest, RejectsBadOptionsAndNeedsAnAdminKey) {
  ScenarioOptions options;
  options.products = 0;
  EXPECT_EQ(MakeScenario("checkout", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.products = 5;
  options.decline_share = 1.5;
  EXPECT_EQ(MakeScenario("checkout", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.decline_share = -0.1;
  EXPECT_EQ(MakeScenario("checkout", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.decline_share = 0.25;
  auto scenario = MakeScenario("checkout", options);
  ASSERT_TRUE(scenario.ok());
  EXPECT_EQ((*scenario)->Prepare().code(), absl::StatusCode::kInvalidArgument);  // no admin key
}

TEST(CheckoutScriptTest, CartLinesCheckoutCycleAndClassification) {
  ScenarioOptions options;
  options.run_id = "r1";
  auto scenario = MakeScenario("checkout", options);
  ASSERT_TRUE(scenario.ok());
  auto script = (*scenario)->NewConnection(0);
  RequestSpec request;
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");
  EXPECT_EQ(script->OnResponse(500, "{}"), ResponseClass::kError);  // stays on create
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");
  EXPECT_EQ(script->OnResponse(201, "not json"), ResponseClass::kError);
  EXPECT_EQ(script->OnResponse(201, R"({"id":"c1"})"), ResponseClass::kOk);
  // Lines until the checkout (1-3 of them); the SKU list is empty without Prepare, so only the
  // target is checked before the answers move the script on.
  std::string checkout_key;
  std::string checkout_body;
  for (int i = 0; i < 8 && checkout_key.empty(); ++i) {
    RequestSpec probe;
    script->Next(probe);
    if (probe.target == "/api/v1/carts/c1/lines") {
      EXPECT_EQ(script->OnResponse(200, "{}"), ResponseClass::kOk);
    } else if (probe.target == "/api/v1/payment-methods") {  // a fresh shopper per order
      EXPECT_EQ(script->OnResponse(201, R"({"token":"pm_fresh"})"), ResponseClass::kOk);
    } else {
      ASSERT_EQ(probe.target, "/api/v1/carts/c1/checkout");
      checkout_body = probe.body;
      bool prefer = false;
      for (const auto& [name, value] : probe.headers) {
        if (name == "Idempotency-Key") checkout_key = value;
        prefer |= name == "Prefer" && value == "wait=10";
      }
      EXPECT_TRUE(prefer);
    }
  }
  EXPECT_NE(checkout_body.find("pm_fresh"), std::string::npos);
  ASSERT_FALSE(checkout_key.empty());
  EXPECT_EQ(script->OnResponse(200, R"({"state":"CANCELLED"})"), ResponseClass::kRejected);
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");
  auto lines = (*scenario)->SummaryLines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ((*scenario)->SummaryJson()["cancelled"], 1);
}

TEST(FlashSaleScriptTest, UniqueIdempotencyKeysAndClassification) {
  ScenarioOptions options;
  options.run_id = "r1";
  auto scenario = MakeScenario("flash-sale", options);
  ASSERT_TRUE(scenario.ok());
  auto first = (*scenario)->NewConnection(0);
  auto second = (*scenario)->NewConnection(1);
  RequestSpec a, b, c;
  first->Next(a);
  first->Next(b);
  second->Next(c);
  auto key = [](const RequestSpec& spec) {
    for (const auto& [name, value] : spec.headers) {
      if (name == "Idempotency-Key") return value;
    }
    return std::string();
  };
  EXPECT_EQ(a.method, "POST");
  EXPECT_EQ(a.target, "/api/v1/inventory/reservations");
  EXPECT_NE(key(a), key(b));
  EXPECT_NE(key(a), key(c));
  EXPECT_NE(a.body.find("\"quantity\":1"), std::string::npos);
  EXPECT_EQ(first->OnResponse(201, ""), ResponseClass::kOk);
  EXPECT_EQ(first->OnResponse(409, ""), ResponseClass::kRejected);
  EXPECT_EQ(first->OnResponse(500, ""), ResponseClass::kError);
  EXPECT_TRUE((*scenario)->Verdict().ok());  // no stock set up: nothing to compare
}

}  // namespace
}  // namespace emporium::loadgen
