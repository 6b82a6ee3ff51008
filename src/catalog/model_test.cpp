#include "catalog/model.h"

#include "catalog/seed.h"
#include "common/errors.h"
#include "common/money.h"
#include "fmt/format.h"
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

// The writer-built document must be byte for byte the DOM's dump: stored rows, events and
// their consumers compare bytes.
void ExpectTextMatchesDom(const Product& product, const RatingSummary& rating) {
  const ProductJsonText text = ProductToJsonText(product);
  EXPECT_EQ(text.text, DumpJson(ProductToJson(product)));
  EXPECT_EQ(ProductReadJsonText(text, rating), DumpJson(ProductReadJson(product, rating)));
}

TEST(ProductToJsonText, MatchesTheDomForSeedProducts) {
  for (int64_t index = 0; index < 300; ++index) {
    absl::StatusOr<Product> product =
        ProductFromInput(SeedProduct(42, index), fmt::format("p{}", index), 3, 1000, 2000);
    ASSERT_TRUE(product.ok()) << product.status();
    ExpectTextMatchesDom(*product, RatingSummary{index % 7, (index % 7) * 4 + index % 3});
  }
}

TEST(ProductToJsonText, MatchesTheDomForHostileText) {
  absl::StatusOr<Product> product = ProductFromInput(ValidProduct(), "p\"1\\", 1, -5, 0);
  ASSERT_TRUE(product.ok()) << product.status();
  product->title = std::string("quote \" backslash \\ controls \b\f\n\r\t \x01\x1f\x7f end");
  product->description = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  product->brand = "bad utf8 \xff\xfe tail";  // replaced by the DOM's rule
  product->category = "overlong \xc0\xaf and \xed\xa0\x80";
  product->attributes["status"] = "nested key named like a top-level one";
  product->attributes["z\"key\n"] = Json::array({"x", "y\x02"});
  product->attributes["null"] = nullptr;
  product->attributes["ratio"] = 0.1;
  product->attributes["big"] = int64_t{-9'000'000'000'000};
  product->images.push_back(Image{"https://img/\x05", ""});
  product->variants[0].options["status"] = "\"";
  // Two prices in one currency: the DOM keeps the last one.
  product->variants[1].prices.push_back(*Money::Parse("1.05", "USD"));
  product->variants[1].prices.push_back(*Money::Parse("7", "AUD"));
  product->status = ProductStatus::kArchived;
  ExpectTextMatchesDom(*product, RatingSummary{3, 11});
  ExpectTextMatchesDom(*product, RatingSummary{});
  Product empty;
  ExpectTextMatchesDom(empty, RatingSummary{1, 5});
}

}  // namespace
}  // namespace emporium::catalog
