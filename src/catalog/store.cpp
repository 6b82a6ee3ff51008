#include "catalog/store.h"

#include <map>
#include <set>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"

namespace emporium::catalog {
namespace {

constexpr std::string_view kProductColumns =
    "p.document, p.rating_count, p.rating_sum, p.update_seq";
constexpr std::string_view kSelectProductById =
    "SELECT p.document, p.rating_count, p.rating_sum, p.update_seq FROM catalog_products p "
    "WHERE p.id = ?";
constexpr std::string_view kSelectProductByHandle =
    "SELECT p.document, p.rating_count, p.rating_sum, p.update_seq FROM catalog_products p "
    "WHERE p.handle = ?";
constexpr std::string_view kSelectHandleOwner = "SELECT id FROM catalog_products WHERE handle = ?";
constexpr std::string_view kSelectSkuOwner = "SELECT product_id FROM catalog_skus WHERE sku = ?";
constexpr std::string_view kUpsertProduct =
    "INSERT INTO catalog_products (id, handle, status, brand, category, version, created_at_ms, "
    "updated_at_ms, update_seq, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET handle = excluded.handle, status = excluded.status, "
    "brand = excluded.brand, category = excluded.category, version = excluded.version, "
    "updated_at_ms = excluded.updated_at_ms, update_seq = excluded.update_seq, "
    "document = excluded.document";
// A new product (SaveMode::kNew) is a plain insert: the upsert's conflict path is only for
// replacing an existing row.
constexpr std::string_view kInsertProduct =
    "INSERT INTO catalog_products (id, handle, status, brand, category, version, created_at_ms, "
    "updated_at_ms, update_seq, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr std::string_view kDeletePrices = "DELETE FROM catalog_prices WHERE product_id = ?";
constexpr std::string_view kInsertPrice =
    "INSERT INTO catalog_prices (product_id, currency, amount_minor) VALUES (?, ?, ?)";
constexpr std::string_view kDeleteAttributes =
    "DELETE FROM catalog_attributes WHERE product_id = ?";
constexpr std::string_view kInsertAttribute =
    "INSERT INTO catalog_attributes (product_id, name, value) VALUES (?, ?, ?)";
constexpr std::string_view kDeleteSkus = "DELETE FROM catalog_skus WHERE product_id = ?";
constexpr std::string_view kInsertSku = "INSERT INTO catalog_skus (sku, product_id) VALUES (?, ?)";
constexpr std::string_view kCountProducts = "SELECT COUNT(*) FROM catalog_products";

// A stale versioned update (both versions known, the new one not newer) changes no row.
constexpr std::string_view kUpsertAvailability =
    "INSERT INTO catalog_sku_availability (sku, available, on_hand, source_version, updated_seq, "
    "updated_at_ms) VALUES (?, ?, ?, ?, (SELECT COALESCE(MAX(updated_seq), 0) + 1 FROM "
    "catalog_sku_availability), ?) "
    "ON CONFLICT (sku) DO UPDATE SET available = excluded.available, on_hand = excluded.on_hand, "
    "source_version = excluded.source_version, updated_seq = excluded.updated_seq, "
    "updated_at_ms = excluded.updated_at_ms "
    "WHERE excluded.source_version IS NULL OR catalog_sku_availability.source_version IS NULL "
    "OR excluded.source_version > catalog_sku_availability.source_version";
constexpr std::string_view kSelectAvailability =
    "SELECT sku, available, on_hand, source_version, updated_seq, updated_at_ms FROM "
    "catalog_sku_availability WHERE sku = ?";
constexpr std::string_view kInStockCondition =
    "EXISTS (SELECT 1 FROM catalog_skus s JOIN catalog_sku_availability av ON av.sku = s.sku "
    "WHERE s.product_id = p.id AND av.available > 0)";

constexpr std::string_view kInsertUpdate =
    "INSERT INTO catalog_updates (id, product_id, kind, base_version, target_version, payload, "
    "state, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?) RETURNING seq";
constexpr std::string_view kSelectQueued =
    "SELECT seq, id, product_id, kind, base_version, target_version, payload FROM "
    "catalog_updates WHERE state = 'queued' AND seq > ? ORDER BY seq LIMIT ?";
constexpr std::string_view kMarkApplied =
    "UPDATE catalog_updates SET state = 'applied', applied_version = ?, finished_at_ms = ? "
    "WHERE seq = ? AND state = 'queued'";
constexpr std::string_view kMarkRejected =
    "UPDATE catalog_updates SET state = 'rejected', reason = ?, message = ?, finished_at_ms = ? "
    "WHERE seq = ? AND state = 'queued'";
constexpr std::string_view kSelectUpdate =
    "SELECT seq, id, product_id, kind, base_version, target_version, payload, state, reason, "
    "message, applied_version, created_at_ms, finished_at_ms FROM catalog_updates WHERE id = ?";
constexpr std::string_view kSelectQueuedBySeq =
    "SELECT 1 FROM catalog_updates WHERE seq = ? AND state = 'queued'";
constexpr std::string_view kCountQueued =
    "SELECT COUNT(*) FROM catalog_updates WHERE state = 'queued'";
constexpr std::string_view kSelectHead =
    "SELECT queued_version FROM catalog_heads WHERE product_id = ?";
constexpr std::string_view kUpsertHead =
    "INSERT INTO catalog_heads (product_id, queued_version) VALUES (?, ?) "
    "ON CONFLICT (product_id) DO UPDATE SET queued_version = excluded.queued_version";

constexpr std::string_view kSelectIdempotency =
    "SELECT request_hash, status, body FROM catalog_idempotency WHERE key = ?";
constexpr std::string_view kInsertIdempotency =
    "INSERT INTO catalog_idempotency (key, request_hash, status, body, created_at_ms) "
    "VALUES (?, ?, ?, ?, ?)";

constexpr std::string_view kCountByCategory =
    "SELECT category, COUNT(*) FROM catalog_products WHERE status = 'active' GROUP BY category "
    "ORDER BY category";
constexpr std::string_view kSelectChangedAfter =
    "SELECT p.document, p.rating_count, p.rating_sum, p.update_seq FROM catalog_products p "
    "WHERE p.update_seq > ? ORDER BY p.update_seq LIMIT ?";
constexpr std::string_view kMaxSeq = "SELECT COALESCE(MAX(update_seq), 0) FROM catalog_products";

constexpr std::string_view kInsertReview =
    "INSERT INTO catalog_reviews (id, product_id, customer_id, author, rating, title, body, "
    "created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
constexpr std::string_view kAddRating =
    "UPDATE catalog_products SET rating_count = rating_count + 1, rating_sum = rating_sum + ?, "
    "rating_average = CAST(rating_sum + ? AS DOUBLE PRECISION) / (rating_count + 1) WHERE id = ?";
constexpr std::string_view kSelectReviews =
    "SELECT id, product_id, customer_id, author, rating, title, body, created_at_ms "
    "FROM catalog_reviews "
    "WHERE product_id = ? ORDER BY created_at_ms DESC, id DESC LIMIT ?";
constexpr std::string_view kSelectReviewsAfter =
    "SELECT id, product_id, customer_id, author, rating, title, body, created_at_ms "
    "FROM catalog_reviews "
    "WHERE product_id = ? AND (created_at_ms < ? OR (created_at_ms = ? AND id < ?)) "
    "ORDER BY created_at_ms DESC, id DESC LIMIT ?";

absl::StatusOr<StoredProduct> ProductFromRow(const sql::Row& row) {
  absl::StatusOr<Json> document = ParseJson(row.Text(0));
  if (!document.ok()) return absl::DataLossError("stored product document is not JSON");
  absl::StatusOr<Product> product = ProductFromJson(*document);
  if (!product.ok()) return product.status();
  StoredProduct stored;
  stored.product = std::move(*product);
  stored.rating.count = row.Int(1);
  stored.rating.sum = row.Int(2);
  stored.update_seq = row.Int(3);
  return stored;
}

absl::StatusOr<std::optional<StoredProduct>> LoadOne(sql::Transaction& tx, std::string_view sql,
                                                     const std::string& key) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(sql, {key});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<StoredProduct>();
  absl::StatusOr<StoredProduct> product = ProductFromRow(result->rows[0]);
  if (!product.ok()) return product.status();
  return std::optional<StoredProduct>(std::move(*product));
}

absl::StatusOr<std::optional<std::string>> LoadText(sql::Transaction& tx, std::string_view sql,
                                                    const std::string& key) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(sql, {key});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<std::string>();
  return std::optional<std::string>(result->rows[0].Text(0));
}

absl::StatusOr<int64_t> LoadCount(sql::Transaction& tx, std::string_view sql) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(sql);
  if (!result.ok()) return result.status();
  return result->rows.at(0).Int(0);
}

sql::Value OptionalValue(const std::optional<int64_t>& value) {
  if (!value) return std::monostate{};
  return *value;
}

}  // namespace

std::string_view UpdateStateName(UpdateState state) {
  switch (state) {
    case UpdateState::kQueued:
      return "queued";
    case UpdateState::kApplied:
      return "applied";
    case UpdateState::kRejected:
      return "rejected";
  }
  return "queued";
}

absl::StatusOr<std::optional<StoredProduct>> LoadProduct(sql::Transaction& tx,
                                                         const std::string& id) {
  return LoadOne(tx, kSelectProductById, id);
}

absl::StatusOr<std::optional<StoredProduct>> LoadProductByHandle(sql::Transaction& tx,
                                                                 const std::string& handle) {
  return LoadOne(tx, kSelectProductByHandle, handle);
}

absl::StatusOr<std::optional<std::string>> HandleOwner(sql::Transaction& tx,
                                                       const std::string& handle) {
  return LoadText(tx, kSelectHandleOwner, handle);
}

absl::StatusOr<std::optional<std::string>> SkuOwner(sql::Transaction& tx, const std::string& sku) {
  return LoadText(tx, kSelectSkuOwner, sku);
}

absl::Status SaveProduct(sql::Transaction& tx, const Product& product, int64_t update_seq,
                         SaveMode mode, std::string document) {
  if (document.empty()) document = ProductToJsonText(product).text;
  const bool replacing = mode == SaveMode::kReplace;
  absl::StatusOr<int64_t> changed =
      tx.Execute(replacing ? kUpsertProduct : kInsertProduct,
                 {product.id, product.handle, std::string(ProductStatusName(product.status)),
                  product.brand, product.category, product.version, product.created_at_ms,
                  product.updated_at_ms, update_seq, std::move(document)});
  if (!changed.ok()) return changed.status();
  if (replacing) {
    if (auto status = tx.Execute(kDeletePrices, {product.id}); !status.ok()) {
      return status.status();
    }
  }
  std::map<std::string, int64_t> lowest;
  for (const Variant& variant : product.variants) {
    for (const Money& price : variant.prices) {
      auto [it, inserted] =
          lowest.emplace(std::string(price.currency_code()), price.amount_minor());
      if (!inserted && price.amount_minor() < it->second) it->second = price.amount_minor();
    }
  }
  for (const auto& [currency, amount] : lowest) {
    if (auto status = tx.Execute(kInsertPrice, {product.id, currency, amount}); !status.ok()) {
      return status.status();
    }
  }
  if (replacing) {
    if (auto status = tx.Execute(kDeleteAttributes, {product.id}); !status.ok()) {
      return status.status();
    }
  }
  for (const auto& [name, value] : product.attributes) {
    // One row per distinct text: (product_id, name, value) is the table's key.
    std::set<std::string> texts;
    if (value.is_array()) {
      for (const Json& item : value) texts.insert(item.get<std::string>());
    } else if (value.is_string()) {
      texts.insert(value.get<std::string>());
    } else {
      texts.insert(value.dump());
    }
    for (const std::string& text : texts) {
      if (auto status = tx.Execute(kInsertAttribute, {product.id, name, text}); !status.ok()) {
        return status.status();
      }
    }
  }
  if (replacing) {
    if (auto status = tx.Execute(kDeleteSkus, {product.id}); !status.ok()) return status.status();
  }
  for (const Variant& variant : product.variants) {
    if (auto status = tx.Execute(kInsertSku, {variant.sku, product.id}); !status.ok()) {
      return status.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CountProducts(sql::Transaction& tx) {
  return LoadCount(tx, kCountProducts);
}

absl::StatusOr<int64_t> InsertUpdate(sql::Transaction& tx, const QueuedUpdate& update,
                                     int64_t now_ms) {
  // One statement: the seq comes back from the insert (RETURNING, SQLite 3.35+ / PostgreSQL).
  absl::StatusOr<sql::ResultSet> seq =
      tx.Query(kInsertUpdate,
               {update.id, update.product_id, std::string(UpdateKindName(update.kind)),
                OptionalValue(update.base_version), update.target_version, update.payload, now_ms});
  if (!seq.ok()) return seq.status();
  if (seq->rows.size() != 1) return absl::InternalError("queue insert returned no seq");
  return seq->rows[0].Int(0);
}

absl::StatusOr<std::vector<QueuedUpdate>> LoadQueuedUpdates(sql::Transaction& tx, int64_t after_seq,
                                                            int64_t limit) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectQueued, {after_seq, limit});
  if (!result.ok()) return result.status();
  std::vector<QueuedUpdate> updates;
  updates.reserve(result->rows.size());
  for (const sql::Row& row : result->rows) {
    QueuedUpdate update;
    update.seq = row.Int(0);
    update.id = row.Text(1);
    update.product_id = row.Text(2);
    std::optional<UpdateKind> kind = ParseUpdateKind(row.Text(3));
    if (!kind) return absl::DataLossError(fmt::format("update {}: unknown kind", update.id));
    update.kind = *kind;
    update.base_version = row.OptionalInt(4);
    update.target_version = row.Int(5);
    update.payload = row.Text(6);
    updates.push_back(std::move(update));
  }
  return updates;
}

absl::StatusOr<bool> MarkUpdateApplied(sql::Transaction& tx, int64_t seq, int64_t version,
                                       int64_t now_ms) {
  absl::StatusOr<int64_t> changed = tx.Execute(kMarkApplied, {version, now_ms, seq});
  if (!changed.ok()) return changed.status();
  return *changed == 1;
}

absl::StatusOr<bool> MarkUpdateRejected(sql::Transaction& tx, int64_t seq, RejectReason reason,
                                        const std::string& message, int64_t now_ms) {
  absl::StatusOr<int64_t> changed =
      tx.Execute(kMarkRejected, {std::string(RejectReasonName(reason)), message, now_ms, seq});
  if (!changed.ok()) return changed.status();
  return *changed == 1;
}

absl::StatusOr<std::optional<UpdateRecord>> LoadUpdate(sql::Transaction& tx,
                                                       const std::string& id) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectUpdate, {id});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<UpdateRecord>();
  const sql::Row& row = result->rows[0];
  UpdateRecord record;
  record.update.seq = row.Int(0);
  record.update.id = row.Text(1);
  record.update.product_id = row.Text(2);
  record.update.kind = ParseUpdateKind(row.Text(3)).value_or(UpdateKind::kCreate);
  record.update.base_version = row.OptionalInt(4);
  record.update.target_version = row.Int(5);
  record.update.payload = row.Text(6);
  const std::string state = row.Text(7);
  record.state = state == "applied"    ? UpdateState::kApplied
                 : state == "rejected" ? UpdateState::kRejected
                                       : UpdateState::kQueued;
  record.reason = row.OptionalText(8).value_or("");
  record.message = row.OptionalText(9).value_or("");
  record.applied_version = row.OptionalInt(10);
  record.created_at_ms = row.Int(11);
  record.finished_at_ms = row.OptionalInt(12);
  return std::optional<UpdateRecord>(std::move(record));
}

absl::StatusOr<bool> IsUpdateQueued(sql::Transaction& tx, int64_t seq) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectQueuedBySeq, {seq});
  if (!result.ok()) return result.status();
  return !result->empty();
}

absl::StatusOr<int64_t> CountQueuedUpdates(sql::Transaction& tx) {
  return LoadCount(tx, kCountQueued);
}

absl::StatusOr<std::optional<int64_t>> LoadHead(sql::Transaction& tx,
                                                const std::string& product_id) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectHead, {product_id});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<int64_t>();
  return std::optional<int64_t>(result->rows[0].Int(0));
}

absl::Status SaveHead(sql::Transaction& tx, const std::string& product_id, int64_t version) {
  return tx.Execute(kUpsertHead, {product_id, version}).status();
}

absl::StatusOr<std::optional<IdempotencyRecord>> LoadIdempotency(sql::Transaction& tx,
                                                                 const std::string& key) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectIdempotency, {key});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<IdempotencyRecord>();
  const sql::Row& row = result->rows[0];
  return std::optional<IdempotencyRecord>(
      IdempotencyRecord{row.Text(0), StoredResponse{static_cast<int>(row.Int(1)), row.Text(2)}});
}

absl::Status SaveIdempotency(sql::Transaction& tx, const std::string& key,
                             const IdempotencyRecord& record, int64_t now_ms) {
  return tx
      .Execute(kInsertIdempotency,
               {key, record.request_hash, static_cast<int64_t>(record.response.status),
                record.response.body, now_ms})
      .status();
}

absl::StatusOr<ProductPage> ListProducts(sql::Transaction& tx, const ProductQuery& query) {
  const bool by_price =
      query.sort == ProductSort::kPriceAscending || query.sort == ProductSort::kPriceDescending;
  const bool join_price = by_price || query.price_min_minor || query.price_max_minor;
  std::string sort_column;
  bool descending = false;
  switch (query.sort) {
    case ProductSort::kNewest:
      sort_column = "p.created_at_ms";
      descending = true;
      break;
    case ProductSort::kPriceAscending:
      sort_column = "pr.amount_minor";
      break;
    case ProductSort::kPriceDescending:
      sort_column = "pr.amount_minor";
      descending = true;
      break;
    case ProductSort::kRating:
      sort_column = "p.rating_average";
      descending = true;
      break;
  }
  std::string sql =
      fmt::format("SELECT {}, {} FROM catalog_products p", kProductColumns, sort_column);
  std::vector<sql::Value> params;
  if (join_price) {
    sql += " JOIN catalog_prices pr ON pr.product_id = p.id AND pr.currency = ?";
    params.emplace_back(query.currency);
  }
  sql += " WHERE p.status = 'active'";
  if (query.category) {
    sql += " AND (p.category = ? OR p.category LIKE ?)";
    params.emplace_back(*query.category);
    params.emplace_back(*query.category + "/%");
  }
  if (query.brand) {
    sql += " AND p.brand = ?";
    params.emplace_back(*query.brand);
  }
  if (query.price_min_minor) {
    sql += " AND pr.amount_minor >= ?";
    params.emplace_back(*query.price_min_minor);
  }
  if (query.price_max_minor) {
    sql += " AND pr.amount_minor <= ?";
    params.emplace_back(*query.price_max_minor);
  }
  for (const auto& [name, value] : query.attributes) {
    sql +=
        " AND EXISTS (SELECT 1 FROM catalog_attributes a WHERE a.product_id = p.id AND "
        "a.name = ? AND a.value = ?)";
    params.emplace_back(name);
    params.emplace_back(value);
  }
  switch (query.stock) {
    case StockFilter::kAny:
      break;
    case StockFilter::kInStock:
      sql += fmt::format(" AND {}", kInStockCondition);
      break;
    case StockFilter::kOutOfStock:
      sql += fmt::format(" AND NOT {}", kInStockCondition);
      break;
  }
  const char* direction = descending ? "DESC" : "ASC";
  if (query.after) {
    sql += fmt::format(" AND ({0} {1} ? OR ({0} = ? AND p.id {1} ?))", sort_column,
                       descending ? "<" : ">");
    params.push_back(query.after->first);
    params.push_back(query.after->first);
    params.emplace_back(query.after->second);
  }
  sql += fmt::format(" ORDER BY {0} {1}, p.id {1} LIMIT ?", sort_column, direction);
  params.emplace_back(query.limit + 1);
  absl::StatusOr<sql::ResultSet> result = tx.Query(sql, params);
  if (!result.ok()) return result.status();
  ProductPage page;
  for (size_t i = 0; i < result->rows.size() && static_cast<int64_t>(i) < query.limit; ++i) {
    absl::StatusOr<StoredProduct> product = ProductFromRow(result->rows[i]);
    if (!product.ok()) return product.status();
    page.items.push_back(std::move(*product));
  }
  if (static_cast<int64_t>(result->rows.size()) > query.limit && !page.items.empty()) {
    page.next.emplace(result->rows[page.items.size() - 1].value(4), page.items.back().product.id);
  }
  return page;
}

absl::StatusOr<AvailabilityOutcome> UpsertAvailability(sql::Transaction& tx,
                                                       const SkuAvailability& update,
                                                       int64_t now_ms) {
  const sql::Value version =
      update.source_version ? sql::Value(*update.source_version) : sql::Value(std::monostate());
  absl::StatusOr<int64_t> changed = tx.Execute(
      kUpsertAvailability, {update.sku, update.available, update.on_hand, version, now_ms});
  if (!changed.ok()) return changed.status();
  return *changed > 0 ? AvailabilityOutcome::kApplied : AvailabilityOutcome::kStale;
}

absl::StatusOr<std::optional<SkuAvailability>> LoadAvailability(sql::Transaction& tx,
                                                                const std::string& sku) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectAvailability, {sku});
  if (!result.ok()) return result.status();
  if (result->empty()) return std::optional<SkuAvailability>();
  const sql::Row& row = result->rows.front();
  SkuAvailability availability;
  availability.sku = row.Text(0);
  availability.available = row.Int(1);
  availability.on_hand = row.Int(2);
  availability.source_version = row.OptionalInt(3);
  availability.updated_seq = row.Int(4);
  availability.updated_at_ms = row.Int(5);
  return std::optional<SkuAvailability>(std::move(availability));
}

absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> CountByCategory(sql::Transaction& tx) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kCountByCategory);
  if (!result.ok()) return result.status();
  std::vector<std::pair<std::string, int64_t>> counts;
  for (const sql::Row& row : result->rows) counts.emplace_back(row.Text(0), row.Int(1));
  return counts;
}

absl::StatusOr<std::vector<StoredProduct>> ProductsChangedAfter(sql::Transaction& tx,
                                                                int64_t after_seq, int64_t limit) {
  absl::StatusOr<sql::ResultSet> result = tx.Query(kSelectChangedAfter, {after_seq, limit});
  if (!result.ok()) return result.status();
  std::vector<StoredProduct> products;
  for (const sql::Row& row : result->rows) {
    absl::StatusOr<StoredProduct> product = ProductFromRow(row);
    if (!product.ok()) return product.status();
    products.push_back(std::move(*product));
  }
  return products;
}

absl::StatusOr<int64_t> MaxProductSeq(sql::Transaction& tx) { return LoadCount(tx, kMaxSeq); }

absl::Status InsertReview(sql::Transaction& tx, const Review& review) {
  absl::StatusOr<int64_t> inserted =
      tx.Execute(kInsertReview, {review.id, review.product_id, review.customer_id, review.author,
                                 review.rating, review.title, review.body, review.created_at_ms});
  if (!inserted.ok()) return inserted.status();
  return tx.Execute(kAddRating, {review.rating, review.rating, review.product_id}).status();
}

absl::StatusOr<std::vector<Review>> ListReviews(
    sql::Transaction& tx, const std::string& product_id,
    std::optional<std::pair<int64_t, std::string>> after, int64_t limit) {
  absl::StatusOr<sql::ResultSet> result =
      after ? tx.Query(kSelectReviewsAfter,
                       {product_id, after->first, after->first, after->second, limit})
            : tx.Query(kSelectReviews, {product_id, limit});
  if (!result.ok()) return result.status();
  std::vector<Review> reviews;
  for (const sql::Row& row : result->rows) {
    reviews.push_back(Review{row.Text(0), row.Text(1), row.Text(2), row.Text(3), row.Int(4),
                             row.Text(5), row.Text(6), row.Int(7)});
  }
  return reviews;
}

}  // namespace emporium::catalog
