// Test helper shared by the catalog's search tests: a product for the search index alone.
#ifndef EMPORIUM_CATALOG_SEARCH_TEST_UTIL_H_
#define EMPORIUM_CATALOG_SEARCH_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <utility>

#include "catalog/search.h"
#include "common/money.h"
#include "fmt/format.h"

namespace emporium::catalog {

// A product for the search index alone (no store), priced in USD, with one variant.
inline StoredProduct IndexedProduct(int64_t n, std::string title, std::string brand,
                                    std::string category, int64_t usd_minor,
                                    ProductStatus status = ProductStatus::kActive) {
  StoredProduct stored;
  stored.product.id = fmt::format("p{}", n);
  stored.product.handle = fmt::format("h{}", n);
  stored.product.title = std::move(title);
  stored.product.brand = std::move(brand);
  stored.product.category = std::move(category);
  stored.product.status = status;
  stored.product.version = 1;
  Variant variant;
  variant.sku = fmt::format("s{}", n);
  variant.prices.push_back(*Money::FromMinor(usd_minor, "USD"));
  stored.product.variants.push_back(variant);
  stored.update_seq = n;
  return stored;
}

}  // namespace emporium::catalog

#endif  // EMPORIUM_CATALOG_SEARCH_TEST_UTIL_H_
