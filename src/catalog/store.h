// The catalog's store: SQL over the Database port (named constants in store.cpp, schema in
// src/catalog/migrations/). Products are kept as JSON documents plus the columns reads filter
// and sort on; the update queue, its per-product heads, idempotency keys and reviews live
// beside them.
//
// Thread-safety: free functions that run inside the caller's transaction, on its thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "catalog/model.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::catalog {

// The numbered migrations of component "catalog" (embedded from src/catalog/migrations).
std::vector<sql::Migration> CatalogMigrations();

struct StoredProduct {
  Product product;
  RatingSummary rating;
  int64_t update_seq = 0;  // seq of the queue entry that produced this version
};

absl::StatusOr<std::optional<StoredProduct>> LoadProduct(sql::Transaction& tx,
                                                         const std::string& id);
absl::StatusOr<std::optional<StoredProduct>> LoadProductByHandle(sql::Transaction& tx,
                                                                 const std::string& handle);
// The id of the product that owns `handle` / `sku`, if any.
absl::StatusOr<std::optional<std::string>> HandleOwner(sql::Transaction& tx,
                                                       const std::string& handle);
absl::StatusOr<std::optional<std::string>> SkuOwner(sql::Transaction& tx, const std::string& sku);
// Whether the product already has rows: a new product has no price, attribute or SKU rows to
// delete first (skipping those three deletes is most of a create's statements).
enum class SaveMode { kNew, kReplace };
// Inserts or replaces `product` with its price, attribute and SKU rows. `document` is
// DumpJson(ProductToJson(product)) when the caller already has it (serialized once, reused);
// empty: serialized here.
absl::Status SaveProduct(sql::Transaction& tx, const Product& product, int64_t update_seq,
                         SaveMode mode = SaveMode::kReplace, std::string document = {});
absl::StatusOr<int64_t> CountProducts(sql::Transaction& tx);

// ---- Update queue ----

enum class UpdateState { kQueued, kApplied, kRejected };
std::string_view UpdateStateName(UpdateState state);

struct QueuedUpdate {
  int64_t seq = 0;
  std::string id;
  std::string product_id;
  UpdateKind kind = UpdateKind::kCreate;
  std::optional<int64_t> base_version;
  int64_t target_version = 0;
  std::string payload;  // JSON document or merge patch
};

struct UpdateRecord {
  QueuedUpdate update;
  UpdateState state = UpdateState::kQueued;
  std::string reason;   // RejectReasonName, when rejected
  std::string message;  // detail, when rejected
  std::optional<int64_t> applied_version;
  int64_t created_at_ms = 0;
  std::optional<int64_t> finished_at_ms;
};

// Appends an update to the queue; returns its seq.
absl::StatusOr<int64_t> InsertUpdate(sql::Transaction& tx, const QueuedUpdate& update,
                                     int64_t now_ms);
// Queued updates with seq > after_seq, in seq order, at most `limit`.
absl::StatusOr<std::vector<QueuedUpdate>> LoadQueuedUpdates(sql::Transaction& tx, int64_t after_seq,
                                                            int64_t limit);
// Moves a queued update to applied / rejected. Returns false (and changes nothing) when the
// update is no longer queued: a redelivery.
absl::StatusOr<bool> MarkUpdateApplied(sql::Transaction& tx, int64_t seq, int64_t version,
                                       int64_t now_ms);
absl::StatusOr<bool> MarkUpdateRejected(sql::Transaction& tx, int64_t seq, RejectReason reason,
                                        const std::string& message, int64_t now_ms);
absl::StatusOr<std::optional<UpdateRecord>> LoadUpdate(sql::Transaction& tx, const std::string& id);
// True while the update with this seq is still queued (false once settled or when absent).
absl::StatusOr<bool> IsUpdateQueued(sql::Transaction& tx, int64_t seq);
absl::StatusOr<int64_t> CountQueuedUpdates(sql::Transaction& tx);

// The version a product reaches once its queued updates apply (nullopt: never written).
absl::StatusOr<std::optional<int64_t>> LoadHead(sql::Transaction& tx,
                                                const std::string& product_id);
absl::Status SaveHead(sql::Transaction& tx, const std::string& product_id, int64_t version);

// ---- Idempotency ----

struct StoredResponse {
  int status = 0;
  std::string body;
};
struct IdempotencyRecord {
  std::string request_hash;
  StoredResponse response;
};
absl::StatusOr<std::optional<IdempotencyRecord>> LoadIdempotency(sql::Transaction& tx,
                                                                 const std::string& key);
absl::Status SaveIdempotency(sql::Transaction& tx, const std::string& key,
                             const IdempotencyRecord& record, int64_t now_ms);

// ---- Reads ----

enum class ProductSort { kNewest, kPriceAscending, kPriceDescending, kRating };

// The in-stock filter: a product is in stock when any of its variants' SKUs has available > 0
// in the availability read model (a SKU inventory never reported counts as out of stock).
enum class StockFilter { kAny, kInStock, kOutOfStock };

struct ProductQuery {
  std::optional<std::string> category;  // the subtree rooted here
  std::optional<std::string> brand;
  std::string currency = "USD";  // of the price filter and price sort
  std::optional<int64_t> price_min_minor;
  std::optional<int64_t> price_max_minor;
  std::vector<std::pair<std::string, std::string>> attributes;  // name == value, all of them
  StockFilter stock = StockFilter::kAny;
  ProductSort sort = ProductSort::kNewest;
  // Keyset position: the sort key and id of the last item of the previous page.
  std::optional<std::pair<sql::Value, std::string>> after;
  int64_t limit = 20;
};

struct ProductPage {
  std::vector<StoredProduct> items;
  // The sort key and id of the last item, when another page may follow.
  std::optional<std::pair<sql::Value, std::string>> next;
};

absl::StatusOr<ProductPage> ListProducts(sql::Transaction& tx, const ProductQuery& query);

// Active products per exact category path.
absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountByCategory(sql::Transaction& tx);

// Products with update_seq > after_seq (every status), in seq order, at most `limit`; for the
// search index to catch up or rebuild.
absl::StatusOr<std::vector<StoredProduct>> ProductsChangedAfter(sql::Transaction& tx,
                                                                int64_t after_seq, int64_t limit);
absl::StatusOr<int64_t> MaxProductSeq(sql::Transaction& tx);

// ---- Availability read model (from inventory.availability_changed) ----

struct SkuAvailability {
  std::string sku;
  int64_t available = 0;  // may be negative after an adjustment below what is committed
  int64_t on_hand = 0;
  std::optional<int64_t> source_version;  // the sender's version, when its payload has one
  int64_t updated_seq = 0;                // local order of the last applied event
  int64_t updated_at_ms = 0;
};

enum class AvailabilityOutcome { kApplied, kStale };

// Upserts the row of `update.sku` (updated_seq and updated_at_ms are assigned here). When both
// the stored row and `update` carry a source_version, an update whose version is not newer
// is ignored (kStale); otherwise the last update applied wins.
absl::StatusOr<AvailabilityOutcome> UpsertAvailability(sql::Transaction& tx,
                                                       const SkuAvailability& update,
                                                       int64_t now_ms);
absl::StatusOr<std::optional<SkuAvailability>> LoadAvailability(sql::Transaction& tx,
                                                                const std::string& sku);

// ---- Reviews ----

// AlreadyExists when the author already reviewed this product. Updates the product's rating.
absl::Status InsertReview(sql::Transaction& tx, const Review& review);
// Newest first; `after` is the (created_at_ms, id) of the last review of the previous page.
absl::StatusOr<std::vector<Review>> ListReviews(
    sql::Transaction& tx, const std::string& product_id,
    std::optional<std::pair<int64_t, std::string>> after, int64_t limit);

}  // namespace emporium::catalog
