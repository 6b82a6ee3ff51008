#include "catalog/model.h"

#include "common/errors.h"
#include "gtest/gtest.h"

namespace emporium::catalog {
namespace {

Json ValidProduct() {
  return Json::parse(R"({
    "handle": "trail-shoe", "title": "Trail Shoe", "description": "Grippy.",
    "brand": "Acme", "category": "apparel/shoes", "status": "active",
    "attributes": {"material": "mesh", "waterproof": true, "drop_mm": 8, "tags": ["a", "b"]},
    "images": [{"url": "https://img.example/1.jpg", "alt": "side"}],
    "variants": [
      {"sku": "TS-1", "options": {"size": "42"}, "prices": {"USD": "99.00", "EUR": "91.50"},
       "weight_grams": 300},
      {"sku": "TS-2", "options": {"size": "43"}, "prices": {"USD": "89.00"}}
    ]})");
}

std::string ParamOf(const Json& input, FieldPresence presence = FieldPresence::kComplete) {
  absl::Status status = ValidateProductInput(input, presence);
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  return ErrorParam(status).value_or("<none>");
}

TEST(ValidateProductInput, AcceptsAValidProduct) {
  EXPECT_TRUE(ValidateProductInput(ValidProduct(), FieldPresence::kComplete).ok());
}

TEST(ValidateProductInput, EachBadFieldNamesItsParam) {
  struct Case {
    const char* pointer;
    Json value;
    const char* param;
  };
  const std::vector<Case> cases = {
      {"/handle", "Not A Slug", "handle"},
      {"/handle", "a--b", "handle"},
      {"/handle", 5, "handle"},
      {"/title", "", "title"},
      {"/title", std::string(400, 'x'), "title"},
      {"/description", Json::array(), "description"},
      {"/brand", std::string(200, 'b'), "brand"},
      {"/category", "Apparel/Shoes", "category"},
      {"/category", "a//b", "category"},
      {"/status", "deleted", "status"},
      {"/attributes", "x", "attributes"},
      {"/attributes/Bad Key", 1, "attributes.Bad Key"},
      {"/attributes/obj", Json::object(), "attributes.obj"},
      {"/attributes/tags", Json::array({1}), "attributes.tags[0]"},
      {"/images/0/url", "ftp://x", "images[0].url"},
      {"/images/0/extra", 1, "images[0].extra"},
      {"/variants", Json::array(), "variants"},
      {"/variants/1/sku", "TS-1", "variants[1].sku"},
      {"/variants/1/sku", "has space", "variants[1].sku"},
      {"/variants/1/prices/USD", "12.345", "variants[1].prices.USD"},
      {"/variants/1/prices/USD", 12, "variants[1].prices.USD"},
      {"/variants/1/prices/USD", "-1.00", "variants[1].prices.USD"},
      {"/variants/1/prices/XXX", "1.00", "variants[1].prices.XXX"},
      {"/variants/1/prices", Json::object(), "variants[1].prices"},
      {"/variants/0/weight_grams", -1, "variants[0].weight_grams"},
      {"/variants/0/options/size", "", "variants[0].options.size"},
      {"/unknown", 1, "unknown"},
  };
  for (const Case& c : cases) {
    Json input = ValidProduct();
    input[Json::json_pointer(c.pointer)] = c.value;
    EXPECT_EQ(ParamOf(input), c.param) << c.pointer;
  }
}

TEST(ValidateProductInput, MissingRequiredFields) {
  for (const char* field : {"handle", "title", "variants"}) {
    Json input = ValidProduct();
    input.erase(field);
    EXPECT_EQ(ParamOf(input), field);
    EXPECT_TRUE(ValidateProductInput(input, FieldPresence::kPartial).ok()) << field;
  }
  Json variant_without_prices = ValidProduct();
  variant_without_prices["variants"][0].erase("prices");
  EXPECT_EQ(ParamOf(variant_without_prices), "variants[0].prices");
}

TEST(ValidateProductInput, PrefixesBatchParams) {
  Json input = ValidProduct();
  input["variants"][0]["prices"]["USD"] = "x";
  absl::Status status = ValidateProductInput(input, FieldPresence::kComplete, "products[3]");
  EXPECT_EQ(ErrorParam(status), "products[3].variants[0].prices.USD");
}

TEST(ValidateProductInput, HostileInput) {
  EXPECT_FALSE(ValidateProductInput(Json::array(), FieldPresence::kComplete).ok());
  Json input = ValidProduct();
  Json variants = Json::array();
  for (int i = 0; i < 101; ++i) variants.push_back(input["variants"][0]);
  input["variants"] = variants;
  EXPECT_EQ(ParamOf(input), "variants");
}

TEST(Product, JsonRoundTrip) {
  absl::StatusOr<Product> product = ProductFromInput(ValidProduct(), "p1", 3, 10, 20);
  ASSERT_TRUE(product.ok()) << product.status();
  EXPECT_EQ(product->variants[0].prices.size(), 2u);
  absl::StatusOr<Product> again = ProductFromJson(ProductToJson(*product));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *product);
  EXPECT_EQ(LowestPrice(*product, "USD")->amount_minor(), 8900);
  EXPECT_FALSE(LowestPrice(*product, "GBP").has_value());
}

TEST(ApplyUpdate, VersionRules) {
  UpdateOutcome created =
      ApplyUpdate(std::nullopt, UpdateKind::kCreate, "p1", ValidProduct(), std::nullopt, 100);
  ASSERT_EQ(created.reject, RejectReason::kNone) << created.message;
  EXPECT_EQ(created.product.version, 1);
  EXPECT_EQ(created.product.created_at_ms, 100);

  UpdateOutcome patched = ApplyUpdate(created.product, UpdateKind::kPatch, "p1",
                                      Json{{"title", "New"}}, int64_t{1}, 200);
  ASSERT_EQ(patched.reject, RejectReason::kNone);
  EXPECT_EQ(patched.product.version, 2);
  EXPECT_EQ(patched.product.title, "New");
  EXPECT_EQ(patched.product.created_at_ms, 100);
  EXPECT_EQ(patched.product.variants, created.product.variants);

  UpdateOutcome stale = ApplyUpdate(patched.product, UpdateKind::kPatch, "p1",
                                    Json{{"title", "Old"}}, int64_t{1}, 300);
  EXPECT_EQ(stale.reject, RejectReason::kStaleVersion);

  UpdateOutcome archived =
      ApplyUpdate(patched.product, UpdateKind::kArchive, "p1", nullptr, std::nullopt, 300);
  EXPECT_EQ(archived.product.status, ProductStatus::kArchived);
  EXPECT_EQ(archived.product.version, 3);

  EXPECT_EQ(
      ApplyUpdate(std::nullopt, UpdateKind::kPatch, "p1", Json::object(), std::nullopt, 1).reject,
      RejectReason::kNotFound);
  EXPECT_EQ(ApplyUpdate(created.product, UpdateKind::kCreate, "p1", ValidProduct(), std::nullopt, 1)
                .reject,
            RejectReason::kAlreadyExists);
  // A patch that removes every variant leaves an invalid product.
  EXPECT_EQ(ApplyUpdate(created.product, UpdateKind::kPatch, "p1", Json{{"variants", nullptr}},
                        std::nullopt, 1)
                .reject,
            RejectReason::kInvalidProduct);
}

TEST(Review, Validation) {
  Json good = {{"author", "ann"}, {"rating", 5}, {"title", "Great"}, {"body", "Loved it"}};
  EXPECT_TRUE(ReviewFromInput(good, "r1", "p1", "c1", 1).ok());
  for (const auto& [field, value] :
       std::vector<std::pair<std::string, Json>>{{"rating", 0},
                                                 {"rating", 6},
                                                 {"rating", "5"},
                                                 {"author", ""},
                                                 {"title", std::string(300, 't')},
                                                 {"extra", 1}}) {
    Json bad = good;
    bad[field] = value;
    absl::StatusOr<Review> review = ReviewFromInput(bad, "r1", "p1", "c1", 1);
    EXPECT_EQ(ErrorParam(review.status()), field) << field;
  }
}

TEST(CategoryAncestors, ListsEveryLevel) {
  EXPECT_EQ(CategoryAncestors("a/b/c"), (std::vector<std::string>{"a", "a/b", "a/b/c"}));
  EXPECT_TRUE(CategoryAncestors("").empty());
}

}  // namespace
}  // namespace emporium::catalog
