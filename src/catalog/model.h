// The catalog's pure domain core: products, variants, images and reviews; validation of staff
// and customer input with errors naming the offending field ("variants[2].prices.USD"); the
// JSON wire form; and the version rules of the update queue.
//
// No I/O, no clock, no randomness: timestamps and ids come in as arguments. Every function is
// a pure function over values and safe to call from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json.h"
#include "common/money.h"

namespace emporium::catalog {

// Limits on what one product may hold, so hostile input cannot cost much.
inline constexpr size_t kHandleBytesMax = 200;
inline constexpr size_t kTitleBytesMax = 300;
inline constexpr size_t kDescriptionBytesMax = 20'000;
inline constexpr size_t kBrandBytesMax = 100;
inline constexpr size_t kCategoryDepthMax = 8;
inline constexpr size_t kCategorySegmentBytesMax = 64;
inline constexpr size_t kAttributesMax = 50;
inline constexpr size_t kAttributeKeyBytesMax = 64;
inline constexpr size_t kAttributeStringBytesMax = 500;
inline constexpr size_t kAttributeListMax = 50;
inline constexpr size_t kImagesMax = 20;
inline constexpr size_t kImageUrlBytesMax = 2048;
inline constexpr size_t kAltBytesMax = 300;
inline constexpr size_t kVariantsMax = 100;
inline constexpr size_t kSkuBytesMax = 64;
inline constexpr size_t kOptionsMax = 10;
inline constexpr size_t kOptionBytesMax = 100;
inline constexpr int64_t kWeightGramsMax = 100'000'000;
inline constexpr size_t kReviewTitleBytesMax = 200;
inline constexpr size_t kReviewBodyBytesMax = 5'000;
inline constexpr size_t kReviewAuthorBytesMax = 100;

enum class ProductStatus { kDraft, kActive, kArchived };
std::string_view ProductStatusName(ProductStatus status);
std::optional<ProductStatus> ParseProductStatus(std::string_view name);

struct Image {
  std::string url;
  std::string alt;
  friend bool operator==(const Image&, const Image&) = default;
};

struct Variant {
  std::string sku;                             // unique across the catalog
  std::map<std::string, std::string> options;  // "size" -> "M", "colour" -> "red"
  std::vector<Money> prices;                   // at most one per currency, sorted by code
  int64_t weight_grams = 0;
  friend bool operator==(const Variant&, const Variant&) = default;
};

struct Product {
  std::string id;
  std::string handle;  // URL slug, unique: [a-z0-9]+(-[a-z0-9]+)*
  std::string title;
  std::string description;
  std::string brand;
  std::string category;  // a path in the category tree: "apparel/shoes/running"
  // key -> string, number, bool or list of strings.
  std::map<std::string, Json> attributes;
  ProductStatus status = ProductStatus::kDraft;
  std::vector<Image> images;
  std::vector<Variant> variants;
  int64_t version = 0;  // 1 after creation; +1 for every applied change
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  friend bool operator==(const Product&, const Product&) = default;
};

// The lowest price of any variant in `currency_code`, if any variant has one.
std::optional<Money> LowestPrice(const Product& product, std::string_view currency_code);

// The category path and every ancestor: "a/b/c" -> {"a", "a/b", "a/b/c"}.
std::vector<std::string> CategoryAncestors(std::string_view category);

// ---- Input: staff writes ----

// Read-only fields a client may send back unchanged (they are ignored).
bool IsReadOnlyField(std::string_view field);

// Which fields a write must carry.
enum class FieldPresence {
  kComplete,  // create / replace: handle, title and at least one variant are required
  kPartial,   // patch: only the fields present are checked
};

// Checks a product document field by field. Unknown fields, wrong types and out-of-range
// values are InvalidParam naming the field path. `prefix` prefixes every param (batch items:
// "products[3]").
absl::Status ValidateProductInput(const Json& input, FieldPresence presence,
                                  std::string_view prefix = "");

// Builds a product from a complete, validated-or-not document (validates it first), keeping
// `id`, `version` and the timestamps given.
absl::StatusOr<Product> ProductFromInput(const Json& input, std::string id, int64_t version,
                                         int64_t created_at_ms, int64_t updated_at_ms);

// What a queued update does to a product.
enum class UpdateKind { kCreate, kReplace, kPatch, kArchive };
std::string_view UpdateKindName(UpdateKind kind);
std::optional<UpdateKind> ParseUpdateKind(std::string_view name);

// Why the processor refused an update.
enum class RejectReason {
  kNone,
  kStaleVersion,      // the update's base version is not the product's current version
  kNotFound,          // replace / patch / archive of a product that does not exist
  kAlreadyExists,     // create of an id that exists
  kHandleTaken,       // another product has this handle
  kSkuTaken,          // another product has one of these SKUs
  kInvalidProduct,    // the patched document is not a valid product
  kProcessingFailed,  // applying it failed permanently kUpdateAttemptsMax times (poison)
};
std::string_view RejectReasonName(RejectReason reason);

struct UpdateOutcome {
  RejectReason reject = RejectReason::kNone;
  std::string message;  // human-readable detail of a rejection
  Product product;      // the product after the update (when accepted)
};

// Applies one update to `current` (nullopt when the product does not exist) at `now_ms`. The
// version rule: when `base_version` is set it must equal the current version (0 for a missing
// product); an accepted update yields version current + 1. Uniqueness of handles and SKUs is
// checked by the store, not here.
UpdateOutcome ApplyUpdate(const std::optional<Product>& current, UpdateKind kind,
                          const std::string& product_id, const Json& payload,
                          std::optional<int64_t> base_version, int64_t now_ms);

// ApplyUpdate for a create or replace whose payload was already built into `built` (by
// ProductFromInput with version and times 0, e.g. ahead of time on another thread): the same
// checks in the same order, the same outcome and messages.
UpdateOutcome ApplyBuiltUpdate(const std::optional<Product>& current, UpdateKind kind,
                               const std::string& product_id, absl::StatusOr<Product> built,
                               std::optional<int64_t> base_version, int64_t now_ms);

// ---- Wire form ----

Json ProductToJson(const Product& product);
// Parses ProductToJson's output (the store's rows).
absl::StatusOr<Product> ProductFromJson(const Json& json);

// ---- Reviews ----

struct Review {
  std::string id;
  std::string product_id;
  std::string customer_id;  // the signed-in author; one review per (product, customer)
  std::string author;       // display name, not unique
  int64_t rating = 0;       // 1..5
  std::string title;
  std::string body;
  int64_t created_at_ms = 0;
};

// The display name of a review whose request names no "author".
inline constexpr std::string_view kReviewDefaultAuthor = "Verified customer";

// Validates a review request {"rating", optional "author" (display name), "title","body"} and
// builds the review written by `customer_id` (the caller's principal, never the body).
absl::StatusOr<Review> ReviewFromInput(const Json& input, std::string id, std::string product_id,
                                       std::string customer_id, int64_t created_at_ms);
// The public form: the customer id is not shown.
Json ReviewToJson(const Review& review);

struct RatingSummary {
  int64_t count = 0;
  int64_t sum = 0;
  double average() const { return count == 0 ? 0.0 : static_cast<double>(sum) / count; }
};

// The public read form: the product plus its rating summary.
Json ProductReadJson(const Product& product, const RatingSummary& rating);
// The same from ProductToJson's output, for a caller that serialized that already.
Json ProductReadJsonFrom(Json product_json, const RatingSummary& rating);

// The stored document written without a DOM (the processor's hot path): `text` is byte for
// byte DumpJson(ProductToJson(product)); `rating_offset` is where ProductReadJsonFrom's
// "rating" member goes in it (before "status": the DOM's keys are sorted).
struct ProductJsonText {
  std::string text;
  size_t rating_offset = 0;
};
ProductJsonText ProductToJsonText(const Product& product);
// DumpJson(ProductReadJsonFrom(ProductToJson(product), rating)) from ProductToJsonText's output.
std::string ProductReadJsonText(const ProductJsonText& document, const RatingSummary& rating);

}  // namespace emporium::catalog
