// A small bounded LRU of verified customer sessions, so authenticating a request does not read
// SQLite every time. An entry lives at most its TTL (kSessionCacheTtlMs) and never past the
// session's own expiry; logout and password change in this process evict at once. Another
// process's revocation is seen within the TTL (the price of not reading the database).
//
// A lookup that raced an eviction must not put a revoked session back: callers take
// generation() before reading the store and Put with it; a Put whose generation is older than
// the latest eviction is dropped.
//
// Thread-safety: every member function is thread-safe (one mutex; the work under it is O(1)
// except EvictCustomer, which walks the bounded entries).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace emporium::accounts {

inline constexpr int64_t kSessionCacheTtlMs = 5'000;
inline constexpr size_t kSessionCacheEntriesMax = 10'000;

class SessionCache {
 public:
  explicit SessionCache(size_t entries_max = kSessionCacheEntriesMax,
                        int64_t ttl_ms = kSessionCacheTtlMs);

  // The customer of a cached live session `token_hash` at `now_ms`, refreshing its recency.
  std::optional<std::string> Get(const std::string& token_hash, int64_t now_ms);
  // Caches `token_hash` -> `customer_id` until min(now_ms + ttl, session_expires_at_ms), unless
  // an eviction happened after `generation` was read. Evicts the least recently used entry
  // when full.
  void Put(const std::string& token_hash, const std::string& customer_id,
           int64_t session_expires_at_ms, int64_t now_ms, uint64_t generation);
  // Drops one session / every session of a customer except `keep_token_hash`.
  void Evict(const std::string& token_hash);
  void EvictCustomer(const std::string& customer_id, const std::string& keep_token_hash);

  uint64_t generation() const;
  size_t size() const;

 private:
  struct Entry {
    std::string token_hash;
    std::string customer_id;
    int64_t valid_until_ms = 0;
  };
  void EraseLocked(std::list<Entry>::iterator it);

  const size_t entries_max_;
  const int64_t ttl_ms_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  uint64_t generation_ = 0;
};

}  // namespace emporium::accounts
