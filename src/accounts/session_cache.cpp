#include "accounts/session_cache.h"

#include <algorithm>

namespace emporium::accounts {

SessionCache::SessionCache(size_t entries_max, int64_t ttl_ms)
    : entries_max_(std::max<size_t>(entries_max, 1)), ttl_ms_(ttl_ms) {}

std::optional<std::string> SessionCache::Get(const std::string& token_hash, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  auto found = index_.find(token_hash);
  if (found == index_.end()) return std::nullopt;
  if (found->second->valid_until_ms <= now_ms) {
    EraseLocked(found->second);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, found->second);
  return lru_.front().customer_id;
}

void SessionCache::Put(const std::string& token_hash, const std::string& customer_id,
                       int64_t session_expires_at_ms, int64_t now_ms, uint64_t generation) {
  const int64_t valid_until_ms = std::min(now_ms + ttl_ms_, session_expires_at_ms);
  if (valid_until_ms <= now_ms) return;
  std::lock_guard lock(mutex_);
  if (generation != generation_) return;  // an eviction ran since the caller's read
  if (auto found = index_.find(token_hash); found != index_.end()) EraseLocked(found->second);
  while (lru_.size() >= entries_max_) EraseLocked(std::prev(lru_.end()));
  lru_.push_front(Entry{token_hash, customer_id, valid_until_ms});
  index_[token_hash] = lru_.begin();
}

void SessionCache::Evict(const std::string& token_hash) {
  std::lock_guard lock(mutex_);
  ++generation_;
  if (auto found = index_.find(token_hash); found != index_.end()) EraseLocked(found->second);
}

void SessionCache::EvictCustomer(const std::string& customer_id,
                                 const std::string& keep_token_hash) {
  std::lock_guard lock(mutex_);
  ++generation_;
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto next = std::next(it);
    if (it->customer_id == customer_id && it->token_hash != keep_token_hash) EraseLocked(it);
    it = next;
  }
}

uint64_t SessionCache::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

size_t SessionCache::size() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

void SessionCache::EraseLocked(std::list<Entry>::iterator it) {
  index_.erase(it->token_hash);
  lru_.erase(it);
}

}  // namespace emporium::accounts
