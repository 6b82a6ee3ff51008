#include "catalog/cache.h"

#include <functional>

namespace emporium::catalog {

ProductCache::ProductCache(size_t bytes_max) : shard_bytes_max_(bytes_max / kShardCount) {}

ProductCache::Shard& ProductCache::ShardFor(const std::string& key) {
  return shards_[std::hash<std::string>{}(key) % kShardCount];
}

size_t ProductCache::Cost(const std::string& key, const CachedProduct& entry) {
  return key.size() + entry.body.size() + entry.id.size() + entry.handle.size() +
         entry.etag.size() + kEntryOverheadBytes;
}

std::shared_ptr<const CachedProduct> ProductCache::Get(const std::string& key) {
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.index.find(key);
  if (it == shard.index.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  shard.order.splice(shard.order.begin(), shard.order, it->second);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return it->second->second;
}

void ProductCache::PutIfUnchanged(const std::string& key,
                                  std::shared_ptr<const CachedProduct> entry, uint64_t generation) {
  const size_t cost = Cost(key, *entry);
  if (cost > shard_bytes_max_) return;
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mutex);
  // Checked under the shard lock: Invalidate bumps the generation after erasing under the same
  // lock, so either we see the bump or the erase comes after our insert.
  if (generation_.load(std::memory_order_acquire) != generation) return;
  if (auto it = shard.index.find(key); it != shard.index.end()) {
    shard.bytes -= Cost(key, *it->second->second);
    shard.order.erase(it->second);
    shard.index.erase(it);
  }
  shard.order.emplace_front(key, std::move(entry));
  shard.index[key] = shard.order.begin();
  shard.bytes += cost;
  while (shard.bytes > shard_bytes_max_ && !shard.order.empty()) {
    auto& last = shard.order.back();
    shard.bytes -= Cost(last.first, *last.second);
    shard.index.erase(last.first);
    shard.order.pop_back();
  }
}

void ProductCache::Invalidate(const std::string& key) {
  Shard& shard = ShardFor(key);
  std::lock_guard lock(shard.mutex);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  auto it = shard.index.find(key);
  if (it == shard.index.end()) return;
  shard.bytes -= Cost(key, *it->second->second);
  shard.order.erase(it->second);
  shard.index.erase(it);
}

size_t ProductCache::bytes() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.bytes;
  }
  return total;
}

size_t ProductCache::entries() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    total += shard.index.size();
  }
  return total;
}

}  // namespace emporium::catalog
