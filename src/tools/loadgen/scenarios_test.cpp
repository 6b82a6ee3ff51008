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
  EXPECT_TRUE(MakeScenario("cart", options).ok());
  EXPECT_TRUE(MakeScenario("mixed", options).ok());
  EXPECT_EQ(ScenarioNames().size(), 6u);
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

TEST(ParseMixTest, ReadsWeightsAndRejectsHostileText) {
  absl::StatusOr<Mix> mix = ParseMix("browse=90,cart=8,checkout=2");
  ASSERT_TRUE(mix.ok()) << mix.status();
  EXPECT_EQ(mix->browse, 90);
  EXPECT_EQ(mix->cart, 8);
  EXPECT_EQ(mix->checkout, 2);
  mix = ParseMix("cart=1");  // unnamed kinds weigh 0
  ASSERT_TRUE(mix.ok());
  EXPECT_EQ(mix->browse, 0);
  EXPECT_EQ(mix->cart, 1);
  EXPECT_EQ(mix->checkout, 0);
  for (const char* bad : {"", "browse", "browse=", "browse=-1", "browse=1.5", "browse=x", "shop=5",
                          "browse=1,browse=2", "browse=0,cart=0", "browse=99999999", "browse=1,",
                          ",browse=1", "browse=1;cart=2", "=5"}) {
    EXPECT_EQ(ParseMix(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  ScenarioOptions options;
  options.mix = "browse=1,nope=2";
  EXPECT_EQ(MakeScenario("mixed", options).status().code(), absl::StatusCode::kInvalidArgument);
  options.mix = "cart=1";
  options.products = 0;
  EXPECT_EQ(MakeScenario("mixed", options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeScenario("cart", options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CartScenarioTest, NeedsAnAdminKey) {
  ScenarioOptions options;
  auto cart = MakeScenario("cart", options);
  ASSERT_TRUE(cart.ok());
  EXPECT_EQ((*cart)->Prepare().code(), absl::StatusCode::kInvalidArgument);
  options.mix = "checkout=1";
  auto mixed = MakeScenario("mixed", options);
  ASSERT_TRUE(mixed.ok());
  EXPECT_EQ((*mixed)->Prepare().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*mixed)->CreatesOrders());
  options.mix = "cart=1";
  EXPECT_FALSE((*MakeScenario("mixed", options))->CreatesOrders());
  EXPECT_TRUE((*MakeScenario("checkout", options))->CreatesOrders());
  EXPECT_FALSE((*cart)->CreatesOrders());
}

// One cart's life without Prepare (one placeholder SKU, so one line): create, add, update,
// remove, read, abandon, and around again.
TEST(CartScriptTest, WalksACartsLifeAndClassifiesAnswers) {
  ScenarioOptions options;
  options.warmup = absl::ZeroDuration();
  auto scenario = MakeScenario("cart", options);
  ASSERT_TRUE(scenario.ok());
  auto script = (*scenario)->NewConnection(0);
  RequestSpec request;
  auto step = [&](int status, std::string_view body) { return script->OnResponse(status, body); };
  script->Next(request);
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/api/v1/carts");
  EXPECT_EQ(step(503, "{}"), ResponseClass::kError);  // stays on create
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");
  EXPECT_EQ(step(201, "not json"), ResponseClass::kError);
  script->Next(request);
  EXPECT_EQ(step(201, R"({"id":"c1"})"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.method, "POST");
  EXPECT_EQ(request.target, "/api/v1/carts/c1/lines");
  EXPECT_NE(request.body.find("LOADGEN-NO-SKU"), std::string::npos);
  EXPECT_EQ(step(200, "{}"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.method, "PUT");
  EXPECT_EQ(request.target, "/api/v1/carts/c1/lines/LOADGEN-NO-SKU");
  EXPECT_NE(request.body.find("\"quantity\":2"), std::string::npos);
  EXPECT_EQ(step(409, R"({"error":{"code":"insufficient_stock"}})"), ResponseClass::kRejected);
  script->Next(request);
  EXPECT_EQ(request.method, "DELETE");
  EXPECT_EQ(request.target, "/api/v1/carts/c1/lines/LOADGEN-NO-SKU");
  EXPECT_TRUE(request.body.empty());
  EXPECT_EQ(step(200, "{}"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.target, "/api/v1/carts/c1");
  EXPECT_EQ(step(200, R"({"reservation":{"status":"reserved"}})"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.method, "DELETE");
  EXPECT_EQ(request.target, "/api/v1/carts/c1");
  EXPECT_EQ(step(200, "{}"), ResponseClass::kOk);
  // Around again; a server error mid-cart gives the cart up (abandon), then starts over.
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");
  EXPECT_EQ(step(201, R"({"id":"c2"})"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts/c2/lines");
  EXPECT_EQ(step(500, "{}"), ResponseClass::kError);
  script->Next(request);
  EXPECT_EQ(request.method, "DELETE");
  EXPECT_EQ(request.target, "/api/v1/carts/c2");
  EXPECT_EQ(step(500, "{}"), ResponseClass::kError);
  script->Next(request);
  EXPECT_EQ(request.target, "/api/v1/carts");

  const nlohmann::json summary = (*scenario)->SummaryJson();
  EXPECT_EQ(summary["carts_created"], 2);
  EXPECT_EQ(summary["carts_abandoned"], 1);
  EXPECT_EQ(summary["rejected"], 1);
  EXPECT_EQ(summary["errors"], 4);
  EXPECT_EQ(summary["reservations_read"]["reserved"], 1);
  EXPECT_EQ(summary["steps"].size(), 6u);
  EXPECT_EQ((*scenario)->SummaryLines().size(), 3u);
}

// A refused add leaves the cart without lines: it is read and abandoned, never updated.
TEST(CartScriptTest, ARefusedOnlyLineSkipsUpdateAndRemove) {
  ScenarioOptions options;
  auto scenario = MakeScenario("cart", options);
  ASSERT_TRUE(scenario.ok());
  auto script = (*scenario)->NewConnection(0);
  RequestSpec request;
  script->Next(request);
  ASSERT_EQ(script->OnResponse(201, R"({"id":"c1"})"), ResponseClass::kOk);
  script->Next(request);
  ASSERT_EQ(request.target, "/api/v1/carts/c1/lines");
  EXPECT_EQ(script->OnResponse(422, "{}"), ResponseClass::kRejected);
  script->Next(request);
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(script->OnResponse(200, "garbage"), ResponseClass::kOk);
  script->Next(request);
  EXPECT_EQ(request.method, "DELETE");
  EXPECT_EQ((*scenario)->SummaryJson()["reservations_read"]["unreadable"], 1);
}

// The mixed script picks a kind only at a loop start: a cart's life is never interrupted.
TEST(MixedScriptTest, SwitchesKindOnlyBetweenLoops) {
  ScenarioOptions options;
  options.mix = "cart=1,checkout=1";
  auto scenario = MakeScenario("mixed", options);
  ASSERT_TRUE(scenario.ok());
  auto script = (*scenario)->NewConnection(0);
  RequestSpec request;
  for (int loop = 0; loop < 20; ++loop) {
    script->Next(request);
    ASSERT_EQ(request.target, "/api/v1/carts");
    ASSERT_EQ(script->OnResponse(201, R"({"id":"c"})"), ResponseClass::kOk);
    // Either a cart life (add, PUT, DELETE line, GET, DELETE cart) or a checkout (add lines,
    // payment method, checkout); both stay on /api/v1/carts/c... until the loop ends.
    for (int i = 0; i < 10; ++i) {
      script->Next(request);
      ASSERT_NE(request.target, "/api/v1/carts") << loop << " " << i;
      if (request.target == "/api/v1/payment-methods") {
        script->OnResponse(201, R"({"token":"pm"})");
      } else if (request.target == "/api/v1/carts/c/checkout") {
        script->OnResponse(200, R"({"state":"CONFIRMED"})");
        break;
      } else if (request.method == "DELETE" && request.target == "/api/v1/carts/c") {
        script->OnResponse(200, "{}");
        break;
      } else {
        script->OnResponse(200, "{}");
      }
    }
  }
  const nlohmann::json summary = (*scenario)->SummaryJson();
  const int64_t cart_loops = summary["kinds"]["cart"]["loops"];
  const int64_t checkout_loops = summary["kinds"]["checkout"]["loops"];
  EXPECT_EQ(cart_loops + checkout_loops, 20);
  EXPECT_GT(cart_loops, 0);
  EXPECT_GT(checkout_loops, 0);
  EXPECT_EQ(summary["kinds"]["browse"]["loops"], 0);
  EXPECT_EQ(summary["kinds"]["cart"]["errors"], 0);
  EXPECT_EQ(summary["checkout"]["confirmed"], checkout_loops);
  EXPECT_EQ(summary["cart"]["carts_abandoned"], cart_loops);
}

}  // namespace
}  // namespace emporium::loadgen
