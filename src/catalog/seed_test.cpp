#include "catalog/seed.h"

#include <set>

#include "catalog/model.h"
#include "gtest/gtest.h"

namespace emporium::catalog {
namespace {

TEST(Seed, DeterministicAndValid) {
  std::set<std::string> handles;
  std::set<std::string> skus;
  for (int64_t i = 0; i < 2000; ++i) {
    Json product = SeedProduct(42, i);
    EXPECT_EQ(product, SeedProduct(42, i));
    ASSERT_TRUE(ValidateProductInput(product, FieldPresence::kComplete).ok()) << product.dump();
    EXPECT_TRUE(handles.insert(product["handle"].get<std::string>()).second);
    for (const Json& variant : product["variants"]) {
      EXPECT_TRUE(skus.insert(variant["sku"].get<std::string>()).second);
    }
    for (const Json& review : SeedReviews(42, i)) {
      EXPECT_TRUE(ReviewFromInput(review, "r", "p", "c", 0).ok()) << review.dump();
    }
  }
  EXPECT_NE(SeedProduct(1, 0), SeedProduct(2, 0));
}

}  // namespace
}  // namespace emporium::catalog
