// The catalog's application layer: the write side appends validated staff writes to the
// durable update queue (one transaction each, with the Idempotency-Key record); the read side
// serves products from the byte-bounded cache, falling back to the store.
//
// Thread-safety: every member function is thread-safe. Enqueue and AddReview complete through
// a callback that may run on the database's writer thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "catalog/cache.h"
#include "catalog/model.h"
#include "catalog/store.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::catalog {

inline constexpr size_t kBatchProductsMax = 1000;
inline constexpr int64_t kListLimitMax = 100;
inline constexpr size_t kIdempotencyKeyBytesMax = 255;
// A batch item's "id" and "expected_version" bounds.
inline constexpr size_t kProductIdBytesMax = 128;
inline constexpr int64_t kVersionMax = 999'999'999'999'999;

// The availability read model's consumer and the event it keeps (inventory's wire contract,
// src/inventory/messages.h: [key sku] {sku, available, on_hand}, optionally "version").
inline constexpr std::string_view kAvailabilityConsumer = "catalog.availability";
inline constexpr std::string_view kAvailabilityChangedType = "inventory.availability_changed";
inline constexpr size_t kAvailabilityPayloadBytesMax = 4096;
inline constexpr size_t kAvailabilitySkuBytesMax = 200;  // inventory's reference bound
inline constexpr int64_t kAvailabilityQuantityMax = int64_t{1} << 50;

// Parses an inventory.availability_changed payload: sku (1..kAvailabilitySkuBytesMax bytes),
// available (may be negative), on_hand (>= 0), optional version (>= 0). InvalidArgument naming
// the field otherwise; never throws.
absl::StatusOr<SkuAvailability> ParseAvailabilityChanged(std::string_view payload);

// The consumer's handler: upserts the SKU's availability row inside the consumer's write job
// (the inbox insert's transaction), so a redelivered message has one effect. A payload that
// does not parse fails (retried, then dead-lettered where it can be inspected and replayed).
absl::Status HandleAvailabilityChanged(sql::Transaction& tx, const bus::Envelope& envelope,
                                       int64_t now_ms);

struct WriteCommand {
  UpdateKind kind = UpdateKind::kCreate;
  std::string product_id;  // empty for a create: the service assigns one
  Json payload;            // document (create/replace), merge patch (patch), null (archive)
  std::optional<int64_t> if_match;
};

// A client's Idempotency-Key and a fingerprint of its request (method, path, body).
struct IdempotencyRequest {
  std::string key;  // empty: no key given
  std::string request_hash;
};

// Stable 64-bit FNV-1a fingerprint, hex; used for idempotency request hashes.
std::string Fingerprint(std::string_view text);

class CatalogService {
 public:
  using Done = std::function<void(absl::StatusOr<StoredResponse>)>;

  CatalogService(sql::Database& database, const Clock& clock, IdGenerator& ids,
                 ProductCache& cache);

  // Called after an enqueue commits (the processor's wake-up). Set before serving.
  void set_enqueued_listener(std::function<void()> listener) { enqueued_ = std::move(listener); }

  // Checks a command's fields at once; InvalidParam naming the field (prefixed by `prefix`).
  static absl::Status Validate(const WriteCommand& command, std::string_view prefix = "");

  // Appends `commands` (already validated) to the queue in one transaction. The response is
  // 202 with {"update_id","product_id","target_version","status"} for one command: NotFound
  // for a product never written, 412 when if_match is not the product's latest queued
  // version, 409 for a handle already taken. For kBatch it is 202 with {"updates":[...]}, one
  // entry per command in order, each with "index" and "kind": the queued ones as above, the
  // refused ones (those same three cases) {"status":"rejected","http_status",
  // "error":{...}} while the others are still queued. 422 for an Idempotency-Key reused with
  // another request.
  enum class Shape { kSingle, kBatch };
  void Enqueue(std::vector<WriteCommand> commands, Shape shape, IdempotencyRequest idempotency,
               Done done);
  // The same, blocking (seeding, tests).
  absl::StatusOr<StoredResponse> EnqueueAndWait(std::vector<WriteCommand> commands, Shape shape,
                                                IdempotencyRequest idempotency = {});

  absl::StatusOr<std::optional<UpdateRecord>> GetUpdate(const std::string& id);

  // The public (active) product by id or handle, serialized, through the cache. NotFound for
  // unknown, draft and archived products.
  absl::StatusOr<std::shared_ptr<const CachedProduct>> GetProduct(const std::string& key);
  // Any product by id, straight from the store (staff view).
  absl::StatusOr<std::optional<StoredProduct>> GetStoredProduct(const std::string& id);
  // Drops a product's cache entries (by id and handle).
  void InvalidateProduct(const std::string& id, const std::string& handle);

  absl::StatusOr<ProductPage> ListProducts(const ProductQuery& query);
  // {"categories":[{"path","name","count"(subtree),"children":[...]}]}
  absl::StatusOr<Json> CategoryTree();

  // Adds a review (validated here) by the signed-in `customer_id` to an active product; 409
  // ("review_exists") when that customer already reviewed it. Responds 201 with the review.
  void AddReview(const std::string& product_id, const std::string& customer_id, const Json& input,
                 IdempotencyRequest idempotency, Done done);
  absl::StatusOr<std::vector<Review>> ListReviews(
      const std::string& product_id, std::optional<std::pair<int64_t, std::string>> after,
      int64_t limit);

  absl::StatusOr<int64_t> QueuedCount();

 private:
  using Body = std::function<absl::StatusOr<StoredResponse>(sql::Transaction&)>;
  // Runs `body` in a write job guarded by the idempotency record; `after_commit` runs once the
  // job committed with a fresh (not replayed) response.
  void RunIdempotent(IdempotencyRequest idempotency, Body body, Done done,
                     std::function<void()> after_commit);

  sql::Database& database_;
  const Clock& clock_;
  IdGenerator& ids_;
  ProductCache& cache_;
  std::function<void()> enqueued_;
};

}  // namespace emporium::catalog
