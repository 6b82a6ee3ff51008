#include "app/openapi.h"

#include "gtest/gtest.h"

namespace emporium::app {
namespace {

TEST(YamlToJsonTest, KeepsQuotedScalarsAsStringsAndTypesPlainOnes) {
  absl::StatusOr<Json> json = YamlToJson(R"(
a: 1
b: "1"
c: true
d: [x, 2.5, null]
e: {f: "null"}
)");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ((*json)["a"], 1);
  EXPECT_EQ((*json)["b"], "1");
  EXPECT_EQ((*json)["c"], true);
  EXPECT_EQ((*json)["d"][0], "x");
  EXPECT_DOUBLE_EQ((*json)["d"][1].get<double>(), 2.5);
  EXPECT_TRUE((*json)["d"][2].is_null());
  EXPECT_EQ((*json)["e"]["f"], "null");
}

TEST(YamlToJsonTest, MalformedYamlIsAnError) { EXPECT_FALSE(YamlToJson("a: [1, 2\nb: }").ok()); }

TEST(OpenApiTest, EmbeddedDocumentParsesAndDeclaresResponseCodesAsStrings) {
  absl::StatusOr<Json> document = OpenApiJson();
  ASSERT_TRUE(document.ok()) << document.status();
  EXPECT_EQ((*document)["openapi"], "3.1.0");
  const Json& health = (*document)["paths"]["/healthz"]["get"]["responses"];
  EXPECT_TRUE(health.contains("200"));
  auto routes = OpenApiRoutes(*document);
  EXPECT_NE(std::find(routes.begin(), routes.end(),
                      std::pair<std::string, std::string>("GET", "/metrics")),
            routes.end());
}

}  // namespace
}  // namespace emporium::app
