#include "catalog/cache.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::catalog {
namespace {

std::shared_ptr<const CachedProduct> Entry(const std::string& id, size_t body_bytes) {
  auto entry = std::make_shared<CachedProduct>();
  entry->id = id;
  entry->etag = "\"1.0\"";
  entry->body = std::string(body_bytes, 'x');
  return entry;
}

TEST(ProductCache, HitMissAndInvalidate) {
  ProductCache cache(1 << 20);
  EXPECT_EQ(cache.Get("a"), nullptr);
  cache.PutIfUnchanged("a", Entry("a", 10), cache.generation());
  ASSERT_NE(cache.Get("a"), nullptr);
  cache.Invalidate("a");
  EXPECT_EQ(cache.Get("a"), nullptr);
}

TEST(ProductCache, StaysWithinItsByteBound) {
  const size_t bound = ProductCache::kShardCount * 4096;
  ProductCache cache(bound);
  for (int i = 0; i < 1000; ++i) {
    cache.PutIfUnchanged("k" + std::to_string(i), Entry("k", 500), cache.generation());
    EXPECT_LE(cache.bytes(), bound);
  }
  EXPECT_GT(cache.entries(), 0u);
  EXPECT_LT(cache.entries(), 1000u);
}

TEST(ProductCache, RefusesAPutThatRacedAnInvalidation) {
  ProductCache cache(1 << 20);
  const uint64_t seen = cache.generation();  // a reader starts loading v1 from the store
  cache.Invalidate("p");                     // the processor applies v2 meanwhile
  cache.PutIfUnchanged("p", Entry("p", 10), seen);
  EXPECT_EQ(cache.Get("p"), nullptr);  // the stale v1 never lands in the cache
}

TEST(ProductCache, ConcurrentUse) {
  ProductCache cache(1 << 16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string key = "k" + std::to_string((i * 7 + t) % 100);
        if (i % 5 == 0) {
          cache.Invalidate(key);
        } else if (!cache.Get(key)) {
          cache.PutIfUnchanged(key, Entry(key, 100), cache.generation());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_LE(cache.bytes(), size_t{1} << 16);
}

}  // namespace
}  // namespace emporium::catalog
