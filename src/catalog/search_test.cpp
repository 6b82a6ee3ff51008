// Search facet counting through the in-memory facet column: counts agree with the matches on
// every revision (apply, delete, rebuild), with damaged values and under concurrent commits,
// and the column the writer derives commit by commit equals one built from the index.
#include "catalog/search.h"

#include <xapian.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "catalog/search_test_util.h"
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

// Rebuilds the index from `products`, served as one page.
absl::Status RebuildFrom(SearchIndex& index, const std::map<int64_t, StoredProduct>& products) {
  bool served = false;
  return index.Rebuild([&](int64_t) -> absl::StatusOr<std::vector<StoredProduct>> {
    if (served) return std::vector<StoredProduct>();
    served = true;
    std::vector<StoredProduct> page;
    for (const auto& [n, stored] : products) page.push_back(stored);
    return page;
  });
}

std::map<std::string, int64_t> AsMap(const std::vector<FacetCount>& facets) {
  std::map<std::string, int64_t> out;
  for (const FacetCount& facet : facets) out[facet.value] = facet.count;
  return out;
}

// The facets a query over `products` must report, counted by brute force.
struct Expected {
  std::map<std::string, int64_t> brands, categories, price_buckets;
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
    ++expected.price_buckets[PriceBucket(
        stored.product.variants.front().prices.front().amount_minor())];
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
  EXPECT_EQ(AsMap(result->price_buckets), expected.price_buckets) << word;
}

// Searches `index` and a fresh SearchIndex over the same directory (whose first search builds
// its column from the index): the results must be identical.
void ExpectSameAsFreshBuild(SearchIndex& index, const std::string& directory) {
  SearchIndex fresh(directory);
  fresh.SetStateForTest(SearchIndex::State::kReady);        // searches only; the writer is `index`
  for (const char* text : {"lamp", "desk", "floor", ""}) {  // 4 searches
    absl::StatusOr<SearchResult> got = index.Search(TextQuery(text));
    absl::StatusOr<SearchResult> want = fresh.Search(TextQuery(text));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(got->total, want->total) << text;
    std::vector<std::string> got_ids, want_ids;
    for (const SearchHit& hit : got->hits) got_ids.push_back(hit.product_id);
    for (const SearchHit& hit : want->hits) want_ids.push_back(hit.product_id);
    EXPECT_EQ(got_ids, want_ids) << text;
    for (auto facets :
         {&SearchResult::brands, &SearchResult::categories, &SearchResult::price_buckets}) {
      EXPECT_EQ(AsMap((*got).*facets), AsMap((*want).*facets)) << text;
    }
  }
  // `fresh` keeps no column (it has no writer): each of its searches built one from the index.
  EXPECT_EQ(fresh.facet_column_builds(), 4);
}

// A small random change to the catalog (the kind a store makes all day): a product's brand,
// category or price changes (its facets move), it is archived or brought back, or a new one
// appears, some without a brand.
StoredProduct RandomChange(std::mt19937& random, std::map<int64_t, StoredProduct>& products,
                           int64_t& next_n) {
  const int64_t n = 1 + static_cast<int64_t>(random() % static_cast<uint32_t>(next_n + 3));
  if (n >= next_n) {
    const int64_t added = next_n++;
    products[added] = IndexedProduct(added, added % 2 == 0 ? "Desk lamp" : "Floor lamp",
                                     added % 4 == 0 ? "" : fmt::format("New{}", random() % 50),
                                     "new", static_cast<int64_t>(random() % 40'000));
    return products[added];
  }
  Product& product = products[n].product;
  switch (random() % 5) {
    case 0:
      product.brand = random() % 6 == 0 ? "" : fmt::format("Brand{}", random() % 30);
      break;
    case 1:
      product.category = fmt::format("cat{}", random() % 8);
      break;
    case 2:
      product.variants.front().prices.front() =
          *Money::FromMinor(static_cast<int64_t>(random() % 40'000), "USD");
      break;
    case 3:
      product.status = ProductStatus::kArchived;
      break;
    default:
      product.status = ProductStatus::kActive;
      product.title = random() % 2 == 0 ? "Desk lamp" : "Floor lamp";
      break;
  }
  return products[n];
}

TEST(CatalogSearchFacets, WriterDerivesTheColumnOfEverySmallCommit) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  std::map<int64_t, StoredProduct> products;
  std::vector<StoredProduct> batch;
  int64_t next_n = 1;
  for (; next_n <= 300; ++next_n) {
    products[next_n] = IndexedProduct(next_n, next_n % 3 == 0 ? "Desk lamp" : "Floor lamp",
                                      fmt::format("Brand{}", next_n % 11),
                                      fmt::format("cat{}", next_n % 5), next_n * 97);
    batch.push_back(products[next_n]);
  }
  int64_t seq = 1;
  ASSERT_TRUE(index.Apply(batch, seq++).ok());
  ExpectFacets(index, products, "lamp");  // builds the column of this revision
  EXPECT_EQ(index.facet_column_builds(), 1);
  std::mt19937 random(42);
  constexpr int kCommits = 80;
  for (int commit = 0; commit < kCommits; ++commit) {
    // One to three changes per commit; sometimes the same product twice in one commit.
    batch.clear();
    const int changes = 1 + static_cast<int>(random() % 3);
    for (int i = 0; i < changes; ++i) batch.push_back(RandomChange(random, products, next_n));
    ASSERT_TRUE(index.Apply(batch, seq++).ok());
    ExpectFacets(index, products, commit % 2 == 0 ? "lamp" : "desk");
    ExpectFacets(index, products, "");
  }
  // Every revision after the first was counted from the column the writer derived.
  EXPECT_EQ(index.facet_column_builds(), 1);
  ExpectSameAsFreshBuild(index, dir.File("search"));

  // A larger commit that adds a few thousand docids (new chunks) and replaces many.
  batch.clear();
  for (int i = 0; i < 5'000; ++i) batch.push_back(RandomChange(random, products, next_n));
  ASSERT_TRUE(index.Apply(batch, seq++).ok());
  ExpectFacets(index, products, "lamp");
  ExpectFacets(index, products, "");
  EXPECT_EQ(index.facet_column_builds(), 1);
  ExpectSameAsFreshBuild(index, dir.File("search"));
}

TEST(CatalogSearchFacets, FailedCommitRetryRebuildAndRestartKeepCountsExact) {
  sql::TempDir dir;
  const std::string directory = dir.File("search");
  std::map<int64_t, StoredProduct> products;
  std::mt19937 random(7);
  int64_t next_n = 1;
  int64_t seq = 1;
  {
    SearchIndex index(directory);
    ASSERT_TRUE(index.Open().ok());
    std::vector<StoredProduct> batch;
    for (; next_n <= 100; ++next_n) {
      products[next_n] =
          IndexedProduct(next_n, "Desk lamp", fmt::format("B{}", next_n % 7), "home", 900);
      batch.push_back(products[next_n]);
    }
    ASSERT_TRUE(index.Apply(batch, seq++).ok());
    ExpectFacets(index, products, "lamp");
    ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
    ExpectFacets(index, products, "lamp");
    EXPECT_EQ(index.facet_column_builds(), 1);

    // A commit fails half way (a product whose id term is too long for the index) after the
    // batch's first product was replaced with new facets: the database may keep that change.
    std::map<int64_t, StoredProduct> before_failure = products;
    products[5].product.brand = "Changed";
    products[5].product.category = "elsewhere";
    StoredProduct poison = IndexedProduct(99'999, "Desk lamp", "Poison", "home", 900);
    poison.product.id = std::string(400, 'x');
    ASSERT_FALSE(index.Apply({products[5], poison, products[6]}, seq).ok());
    // Retried without the poison: the counts are the batch's, the column again the writer's
    // after one search builds it for the retried revision.
    ASSERT_TRUE(index.Apply({products[5], products[6]}, seq++).ok());
    ExpectFacets(index, products, "lamp");
    ExpectSameAsFreshBuild(index, directory);
    for (int commit = 0; commit < 10; ++commit) {
      ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
      ExpectFacets(index, products, "lamp");
      ExpectFacets(index, products, "");
    }
    EXPECT_EQ(index.facet_column_builds(), 2);
    ExpectSameAsFreshBuild(index, directory);

    // A failed commit whose changes are not retried: whatever the index holds, the column
    // agrees with it.
    ASSERT_FALSE(index.Apply({RandomChange(random, products, next_n), poison}, seq).ok());
    ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
    ExpectSameAsFreshBuild(index, directory);
    ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
    ExpectSameAsFreshBuild(index, directory);

    // Rebuild: a new index (uuid); the first search builds, then the writer follows again.
    products.clear();
    for (int64_t n = 1; n <= 50; ++n)
      products[n] = IndexedProduct(n, "Floor lamp", "Solo", "garden", 100);
    next_n = 51;
    ASSERT_TRUE(RebuildFrom(index, products).ok());
    const int64_t builds = index.facet_column_builds();
    ExpectFacets(index, products, "lamp");
    for (int commit = 0; commit < 10; ++commit) {
      ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
      ExpectFacets(index, products, "lamp");
    }
    EXPECT_EQ(index.facet_column_builds(), builds + 1);
  }
  // A restart: the column is built once from the index, then followed.
  SearchIndex index(directory);
  ASSERT_TRUE(index.Open().ok());
  ExpectFacets(index, products, "lamp");
  for (int commit = 0; commit < 10; ++commit) {
    ASSERT_TRUE(index.Apply({RandomChange(random, products, next_n)}, seq++).ok());
    ExpectFacets(index, products, "lamp");
    ExpectFacets(index, products, "");
  }
  EXPECT_EQ(index.facet_column_builds(), 1);
  ExpectSameAsFreshBuild(index, directory);
}

TEST(CatalogSearchFacets, CountsFollowEveryRevisionApplyDeleteAndRebuild) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  std::map<int64_t, StoredProduct> products;
  std::vector<StoredProduct> batch;
  for (int64_t n = 1; n <= 60; ++n) {
    // Brands repeat, some products have none; two words so queries match different subsets.
    products[n] = IndexedProduct(n, n % 3 == 0 ? "Desk lamp" : "Floor lamp",
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
  products[61] = IndexedProduct(61, "Desk lamp", "Newcomer", "office", 9'000);
  batch.push_back(products[61]);
  ASSERT_TRUE(index.Apply(batch, 61).ok());
  ExpectFacets(index, products, "lamp");
  ExpectFacets(index, products, "desk");

  // A rebuild starts a new database (new uuid, revisions from the start again).
  std::map<int64_t, StoredProduct> rebuilt;
  for (int64_t n = 100; n < 110; ++n)
    rebuilt[n] = IndexedProduct(n, "Desk lamp", "Solo", "garden", 500);
  ASSERT_TRUE(RebuildFrom(index, rebuilt).ok());
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

// Two threads search "lamp" (at most `searches_max` times each) while `commit_all` runs on
// this thread; `is_right` judges each answered result. "Changing too fast" is an allowed answer
// and is not judged. Returns how many searches were answered and how many were wrong.
struct SearchTally {
  int answered = 0;
  int wrong = 0;
};
SearchTally SearchLampWhile(SearchIndex& index, int searches_max,
                            const std::function<bool(const SearchResult&)>& is_right,
                            const std::function<void()>& commit_all) {
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0};
  std::atomic<int> answered{0};
  auto searcher = [&] {
    for (int i = 0; i < searches_max && !done.load(); ++i) {
      absl::StatusOr<SearchResult> result = index.Search(TextQuery("lamp"));
      if (!result.ok()) continue;
      ++answered;
      if (!is_right(*result)) ++wrong;
    }
  };
  std::thread first(searcher);
  std::thread second(searcher);
  commit_all();
  done.store(true);
  first.join();
  second.join();
  return {answered.load(), wrong.load()};
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
    batch.push_back(IndexedProduct(n, "Desk lamp", fmt::format("B{}", n % 4), "home", 1'000));
  }
  ASSERT_TRUE(index.Apply(batch, kProducts).ok());
  const SearchTally tally = SearchLampWhile(
      index, kSearchesPerThreadMax,
      [](const SearchResult& result) {
        int64_t brand_sum = 0;
        for (const FacetCount& facet : result.brands) brand_sum += facet.count;
        int64_t category_sum = 0;
        for (const FacetCount& facet : result.categories) category_sum += facet.count;
        // Every product has a brand and a category: the counts must add up to the total of
        // the same revision, whichever revision the search saw.
        return brand_sum == result.total && category_sum == result.total;
      },
      [&] {
        for (int commit = 0; commit < kCommits; ++commit) {
          // Each commit archives one product and brings back the one archived before, renamed.
          std::vector<StoredProduct> change;
          const int64_t archived = 1 + commit % kProducts;
          change.push_back(
              IndexedProduct(archived, "Desk lamp", "B0", "home", 1'000, ProductStatus::kArchived));
          const int64_t restored = 1 + (commit + kProducts - 1) % kProducts;
          if (commit > 0) {
            change.push_back(
                IndexedProduct(restored, "Desk lamp", fmt::format("R{}", commit), "office", 1'000));
          }
          EXPECT_TRUE(index.Apply(change, kProducts + commit + 1).ok());
        }
      });
  EXPECT_GT(tally.answered, 0);
  EXPECT_EQ(tally.wrong, 0);
  ExpectFacets(index, {}, "nothing-matches-this");
}

// Searches racing the writer (readers opened before a commit and searching after it, readers
// reopened before the column of their revision is published) report exactly the facets of
// one revision: each commit moves one product to a new brand, so every revision's counts differ.
TEST(CatalogSearchFacets, SearchesDuringCommitsCountExactlyOneRevision) {
  sql::TempDir dir;
  SearchIndex index(dir.File("search"));
  ASSERT_TRUE(index.Open().ok());
  constexpr int64_t kProducts = 60;
  constexpr int kCommits = 40;
  constexpr int kSearchesPerThreadMax = 3'000;
  std::map<int64_t, StoredProduct> products;
  std::vector<StoredProduct> batch;
  for (int64_t n = 1; n <= kProducts; ++n) {
    products[n] = IndexedProduct(n, "Desk lamp", fmt::format("B{}", n % 5), "home", 1'000);
    batch.push_back(products[n]);
  }
  ASSERT_TRUE(index.Apply(batch, 1).ok());
  ExpectFacets(index, products, "lamp");  // the column exists: the writer follows it
  std::vector<std::vector<StoredProduct>> commits;
  std::vector<std::map<std::string, int64_t>> brands_of_revision = {
      ExpectedFor(products, "lamp").brands};
  for (int commit = 0; commit < kCommits; ++commit) {
    const int64_t n = 1 + commit % kProducts;
    products[n].product.brand = fmt::format("R{}", commit);
    products[n].product.status =
        commit % 3 == 0 ? ProductStatus::kArchived : ProductStatus::kActive;
    commits.push_back({products[n]});
    brands_of_revision.push_back(ExpectedFor(products, "lamp").brands);
  }
  const SearchTally tally = SearchLampWhile(
      index, kSearchesPerThreadMax,
      [&](const SearchResult& result) {
        const std::map<std::string, int64_t> brands = AsMap(result.brands);
        return std::find(brands_of_revision.begin(), brands_of_revision.end(), brands) !=
               brands_of_revision.end();
      },
      [&] {
        for (int commit = 0; commit < kCommits; ++commit) {
          EXPECT_TRUE(index.Apply(commits[static_cast<size_t>(commit)], 2 + commit).ok());
        }
      });
  EXPECT_GT(tally.answered, 0);
  EXPECT_EQ(tally.wrong, 0);
  ExpectFacets(index, products, "lamp");
  EXPECT_EQ(index.facet_column_builds(), 1);
}

}  // namespace
}  // namespace emporium::catalog
