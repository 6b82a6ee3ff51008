// A byte-bounded, sharded LRU of serialized product JSON for the read path.
//
// Entries are keyed by product id and by handle (two keys, one shared entry). Staleness rule: a
// reader that loaded a product from the store may only insert it if no invalidation happened
// since it started (PutIfUnchanged with the generation read before the load), so a slow reader
// can never re-insert a version the processor has already replaced.
//
// Thread-safety: every member function is thread-safe; each shard has its own mutex.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace emporium::catalog {

struct CachedProduct {
  std::string id;
  std::string handle;
  std::string etag;  // quoted strong validator, e.g. "\"3.12\""
  std::string body;  // the serialized public JSON
};

class ProductCache {
 public:
  static constexpr size_t kShardCount = 16;
  // Per-entry bookkeeping added to the byte count (keys, list node, map slot).
  static constexpr size_t kEntryOverheadBytes = 128;

  explicit ProductCache(size_t bytes_max);

  std::shared_ptr<const CachedProduct> Get(const std::string& key);
  // The generation to pass to PutIfUnchanged: read it before loading from the store.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Inserts `entry` under `key` unless anything was invalidated since `generation`.
  void PutIfUnchanged(const std::string& key, std::shared_ptr<const CachedProduct> entry,
                      uint64_t generation);
  // Drops `key` and advances the generation.
  void Invalidate(const std::string& key);

  size_t bytes() const;
  size_t entries() const;
  int64_t hits() const { return hits_.load(); }
  int64_t misses() const { return misses_.load(); }

 private:
  struct Shard {
    using Item = std::pair<std::string, std::shared_ptr<const CachedProduct>>;
    mutable std::mutex mutex;
    std::list<Item> order;  // most recent first
    std::unordered_map<std::string, std::list<Item>::iterator> index;
    size_t bytes = 0;
  };
  Shard& ShardFor(const std::string& key);
  static size_t Cost(const std::string& key, const CachedProduct& entry);

  const size_t shard_bytes_max_;
  std::array<Shard, kShardCount> shards_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> hits_{0};
  std::atomic<int64_t> misses_{0};
};

}  // namespace emporium::catalog
