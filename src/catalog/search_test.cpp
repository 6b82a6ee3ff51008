// Search facet counting through the in-memory facet column: counts agree with the matches on
// every revision (apply, delete, rebuild), with damaged values and under concurrent commits.
#include "catalog/search.h"

#include <xapian.h>

#include <atomic>
#include <cctype>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::catalog {
namespace {

SearchQuery TextQuery(std::string text) {
  SearchQuery query;
  query.text = std::move(text);
  return query;
}

StoredProduct Lamp(int64_t n, std::string title, std::string brand, std::string category,
                   int64_t usd_minor, ProductStatus status = ProductStatus::kActive) {
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

std::map<std::string, int64_t> AsMap(const std::vector<FacetCount>& facets) {
  std::map<std::string, int64_t> out;
  for (const FacetCount& facet : facets) out[facet.value] = facet.count;
  return out;
}

// The facets a query over `products` must report, counted by brute force.
struct Expected {
  std::map<std::string, int64_t> brands, categories;
  int64_t total = 0;
};
Expected ExpectedFor(const std::map<int64_t, StoredProduct>& products, const std::string& word) {
  Expected expected;
  for (const auto& [n, stored] : products) {
    if (stored.product.status != ProductStatus::kActive) continue;
    std::string title = stored.product.title;
    for (char& c : title) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (title.find(word) == std::string::npos) continue;
    ++expected.total;
    if (!stored.product.brand.empty()) ++expected.brands[stored.product.brand];
    ++expected.categories[stored.product.category];
  }
  return expected;
}

void ExpectFacets(SearchIndex& index, const std::map<int64_t, StoredProduct>& products,
                  const std::string& word) {
  absl::StatusOr<SearchResult> result = index.Search(TextQuery(word));
  ASSERT_TRUE(result.ok()) << result.status();
  const Expected expected = ExpectedFor(products, word);
  ASSERT_TRUE(result->exact);
  EXPECT_EQ(result->total, expected.total) << word;
  EXPECT_EQ(AsMap(result->brands), expected.brands) << word;
  EXPECT_EQ(AsMap(result->categories), expected.categories) << word;
}

TEST(CatalogSearchFacets, CountsFollowEveryRevisionApplyDeleteAndRebuild) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  std::map<int64_t, StoredProduct> products;
  std::vector<StoredProduct> batch;
  for (int64_t n = 1; n <= 60; ++n) {
    // Brands repeat, some products have none; two words so queries match different subsets.
    products[n] = Lamp(n, n % 3 == 0 ? "Desk lamp" : "Floor lamp",
                       n % 7 == 0 ? "" : fmt::format("Brand{}", n % 5),
                       n % 2 == 0 ? "home" : "home/lighting", 1'000 * n);
    batch.push_back(products[n]);
  }
  ASSERT_TRUE(index.Apply(batch, 60).ok());
  ExpectFacets(index, products, "lamp");
  ExpectFacets(index, products, "desk");

  // A new revision: brands change, products are archived, new ones (and a new brand) appear.
  batch.clear();
  for (int64_t n : {3, 6, 10}) {
    products[n].product.brand = "Renamed";
    batch.push_back(products[n]);
  }
  for (int64_t n : {9, 12, 20}) {
    products[n].product.status = ProductStatus::kArchived;
    batch.push_back(products[n]);
  }
  products[61] = Lamp(61, "Desk lamp", "Newcomer", "office", 9'000);
  batch.push_back(products[61]);
  ASSERT_TRUE(index.Apply(batch, 61).ok());
  ExpectFacets(index, products, "lamp");
  ExpectFacets(index, products, "desk");

  // A rebuild starts a new database (new uuid, revisions from the start again).
  std::map<int64_t, StoredProduct> rebuilt;
  for (int64_t n = 100; n < 110; ++n) rebuilt[n] = Lamp(n, "Desk lamp", "Solo", "garden", 500);
  bool served = false;
  ASSERT_TRUE(index
                  .Rebuild([&](int64_t) -> absl::StatusOr<std::vector<StoredProduct>> {
                    if (served) return std::vector<StoredProduct>();
                    served = true;
                    std::vector<StoredProduct> page;
                    for (const auto& [n, stored] : rebuilt) page.push_back(stored);
                    return page;
                  })
                  .ok());
  ExpectFacets(index, rebuilt, "lamp");
  ExpectFacets(index, rebuilt, "desk");
}

TEST(CatalogSearchFacets, DamagedFacetValueFallsBackToTheDocument) {
  sql::TempDir dir;
  {
    // Every document has the one-slot value (so the column is built), one of them damaged;
    // that one still carries the older per-slot values, which are counted instead.
    Xapian::WritableDatabase database(dir.File("search"), Xapian::DB_CREATE_OR_OPEN);
    const std::vector<std::string> values = {"4:Acme4:home4:0-25", "4:Acme4:home4:0-25", "99:Acme",
                                             "5:Orbit4:home0:"};
    for (size_t i = 0; i < values.size(); ++i) {
      Xapian::Document document;
      Xapian::TermGenerator generator;
      generator.set_document(document);
      generator.index_text("lamp");
      document.add_boolean_term(fmt::format("Qd{}", i));
      document.add_value(3, values[i]);
      if (i == 2) {
        document.add_value(0, "Kestrel");
        document.add_value(1, "garden");
        document.add_value(2, "250+");
      }
      document.add_value(4, fmt::format(R"({{"id":"d{}"}})", i));
      database.replace_document(fmt::format("Qd{}", i), document);
    }
    database.commit();
  }
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  for (int round = 0; round < 2; ++round) {  // the first builds the column, the second reuses it
    absl::StatusOr<SearchResult> result = index.Search(TextQuery("lamp"));
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->total, 4);
    EXPECT_EQ(AsMap(result->brands),
              (std::map<std::string, int64_t>{{"Acme", 2}, {"Kestrel", 1}, {"Orbit", 1}}));
    EXPECT_EQ(AsMap(result->categories),
              (std::map<std::string, int64_t>{{"garden", 1}, {"home", 3}}));
    EXPECT_EQ(AsMap(result->price_buckets),
              (std::map<std::string, int64_t>{{"0-25", 2}, {"250+", 1}}));
  }
}

TEST(CatalogSearchFacets, CountsAgreeWithMatchesWhileTheWriterCommits) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  constexpr int64_t kProducts = 40;
  constexpr int kCommits = 30;
  constexpr int kSearchesPerThreadMax = 2'000;
  std::vector<StoredProduct> batch;
  for (int64_t n = 1; n <= kProducts; ++n) {
    batch.push_back(Lamp(n, "Desk lamp", fmt::format("B{}", n % 4), "home", 1'000));
  }
  ASSERT_TRUE(index.Apply(batch, kProducts).ok());
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0};
  std::atomic<int> answered{0};
  auto searcher = [&] {
    for (int i = 0; i < kSearchesPerThreadMax && !done.load(); ++i) {
      absl::StatusOr<SearchResult> result = index.Search(TextQuery("lamp"));
      if (!result.ok()) continue;  // "changing too fast" is an allowed answer
      ++answered;
      int64_t brand_sum = 0;
      for (const FacetCount& facet : result->brands) brand_sum += facet.count;
      int64_t category_sum = 0;
      for (const FacetCount& facet : result->categories) category_sum += facet.count;
      // Every product has a brand and a category: the counts must add up to the total of
      // the same revision, whichever revision the search saw.
      if (brand_sum != result->total || category_sum != result->total) ++mismatches;
    }
  };
  std::thread first(searcher);
  std::thread second(searcher);
  for (int commit = 0; commit < kCommits; ++commit) {
    // Each commit archives one product and brings back the one archived before, renamed.
    std::vector<StoredProduct> change;
    const int64_t archived = 1 + commit % kProducts;
    change.push_back(Lamp(archived, "Desk lamp", "B0", "home", 1'000, ProductStatus::kArchived));
    const int64_t restored = 1 + (commit + kProducts - 1) % kProducts;
    if (commit > 0) {
      change.push_back(Lamp(restored, "Desk lamp", fmt::format("R{}", commit), "office", 1'000));
    }
    ASSERT_TRUE(index.Apply(change, kProducts + commit + 1).ok());
  }
  done.store(true);
  first.join();
  second.join();
  EXPECT_GT(answered.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
  ExpectFacets(index, {}, "nothing-matches-this");
}

}  // namespace
}  // namespace emporium::catalog
