// The demo catalog: a deterministic, realistic-looking set of product write requests (category
// tree, brands, attributes, variants, prices in USD/EUR/GBP) and reviews, generated from a
// seed. Pure: the same (seed, index) always yields the same product.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json.h"

namespace emporium::catalog {

// The create-product request (the POST /api/v1/admin/products body) of product `index`.
Json SeedProduct(uint64_t seed, int64_t index);

// Up to a few review requests ({"author","rating","title","body"}) for product `index`.
std::vector<Json> SeedReviews(uint64_t seed, int64_t index);

}  // namespace emporium::catalog
