#include "catalog/model.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"

namespace emporium::catalog {
namespace {

bool IsSlug(std::string_view text, size_t bytes_max) {
  if (text.empty() || text.size() > bytes_max) return false;
  if (text.front() == '-' || text.back() == '-') return false;
  char previous = 0;
  for (char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok || (c == '-' && previous == '-')) return false;
    previous = c;
  }
  return true;
}

bool IsAttributeKey(std::string_view text) {
  if (text.empty() || text.size() > kAttributeKeyBytesMax) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

bool IsSku(std::string_view text) {
  if (text.empty() || text.size() > kSkuBytesMax) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

absl::Status CheckCategory(const Json& value, const std::string& param) {
  if (!value.is_string()) return InvalidParam(param, "must be a string");
  const auto& text = value.get_ref<const std::string&>();
  if (text.empty()) return absl::OkStatus();
  size_t depth = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('/', start);
    if (end == std::string::npos) end = text.size();
    if (!IsSlug(std::string_view(text).substr(start, end - start), kCategorySegmentBytesMax)) {
      return InvalidParam(param, "must be a path of lower-case slugs like \"apparel/shoes\"");
    }
    if (++depth > kCategoryDepthMax) {
      return InvalidParam(param, fmt::format("must be at most {} levels deep", kCategoryDepthMax));
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::Status CheckString(const Json& input, std::string_view field, size_t bytes_max,
                         std::string_view prefix, bool required) {
  auto it = input.find(field);
  const std::string param = ParamPath(prefix, field);
  if (it == input.end() || it->is_null()) {
    if (required) return InvalidParam(param, "is required", "missing_param");
    return absl::OkStatus();
  }
  if (!it->is_string()) return InvalidParam(param, "must be a string");
  const auto& text = it->get_ref<const std::string&>();
  if (required && text.empty()) return InvalidParam(param, "is required", "missing_param");
  if (text.size() > bytes_max) {
    return InvalidParam(param, fmt::format("must be at most {} bytes", bytes_max));
  }
  return absl::OkStatus();
}

absl::Status CheckAttributes(const Json& value, const std::string& param) {
  if (!value.is_object()) return InvalidParam(param, "must be an object");
  if (value.size() > kAttributesMax) {
    return InvalidParam(param, fmt::format("must hold at most {} attributes", kAttributesMax));
  }
  for (const auto& [key, item] : value.items()) {
    const std::string item_param = fmt::format("{}.{}", param, key);
    if (!IsAttributeKey(key)) {
      return InvalidParam(item_param, "attribute names are lower-case letters, digits and _");
    }
    if (item.is_boolean()) continue;
    if (item.is_number()) {
      if (item.is_number_float() && !std::isfinite(item.get<double>())) {
        return InvalidParam(item_param, "must be a finite number");
      }
      continue;
    }
    if (item.is_string()) {
      if (item.get_ref<const std::string&>().size() > kAttributeStringBytesMax) {
        return InvalidParam(item_param, "is too long");
      }
      continue;
    }
    if (item.is_array()) {
      if (item.size() > kAttributeListMax) return InvalidParam(item_param, "list is too long");
      for (size_t i = 0; i < item.size(); ++i) {
        if (!item[i].is_string() ||
            item[i].get_ref<const std::string&>().size() > kAttributeStringBytesMax) {
          return InvalidParam(fmt::format("{}[{}]", item_param, i),
                              "list items must be short strings");
        }
      }
      continue;
    }
    return InvalidParam(item_param, "must be a string, number, bool or list of strings");
  }
  return absl::OkStatus();
}

absl::Status CheckImages(const Json& value, const std::string& param) {
  if (!value.is_array()) return InvalidParam(param, "must be an array");
  if (value.size() > kImagesMax) {
    return InvalidParam(param, fmt::format("must hold at most {} images", kImagesMax));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string item_param = fmt::format("{}[{}]", param, i);
    const Json& image = value[i];
    if (!image.is_object()) return InvalidParam(item_param, "must be an object");
    for (const auto& [key, unused] : image.items()) {
      if (key != "url" && key != "alt")
        return InvalidParam(ParamPath(item_param, key), "unknown field");
    }
    if (absl::Status status = CheckString(image, "url", kImageUrlBytesMax, item_param, true);
        !status.ok()) {
      return status;
    }
    const auto& url = image["url"].get_ref<const std::string&>();
    if (url.rfind("https://", 0) != 0 && url.rfind("/", 0) != 0) {
      return InvalidParam(ParamPath(item_param, "url"), "must be an https:// URL or a / path");
    }
    if (absl::Status status = CheckString(image, "alt", kAltBytesMax, item_param, false);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckVariant(const Json& variant, const std::string& param,
                          std::set<std::string>& skus) {
  if (!variant.is_object()) return InvalidParam(param, "must be an object");
  for (const auto& [key, unused] : variant.items()) {
    if (key != "sku" && key != "options" && key != "prices" && key != "weight_grams") {
      return InvalidParam(ParamPath(param, key), "unknown field");
    }
  }
  if (absl::Status status = CheckString(variant, "sku", kSkuBytesMax, param, true); !status.ok()) {
    return status;
  }
  const auto& sku = variant["sku"].get_ref<const std::string&>();
  if (!IsSku(sku)) {
    return InvalidParam(ParamPath(param, "sku"), "letters, digits, '-', '_' and '.' only");
  }
  if (!skus.insert(sku).second) {
    return InvalidParam(ParamPath(param, "sku"), "is used by another variant of this product",
                        "duplicate_sku");
  }
  if (auto it = variant.find("options"); it != variant.end() && !it->is_null()) {
    const std::string options_param = ParamPath(param, "options");
    if (!it->is_object()) return InvalidParam(options_param, "must be an object");
    if (it->size() > kOptionsMax) return InvalidParam(options_param, "too many options");
    for (const auto& [key, value] : it->items()) {
      const std::string option_param = ParamPath(options_param, key);
      if (!IsAttributeKey(key)) {
        return InvalidParam(option_param, "option names are lower-case letters, digits and _");
      }
      if (!value.is_string() || value.get_ref<const std::string&>().empty() ||
          value.get_ref<const std::string&>().size() > kOptionBytesMax) {
        return InvalidParam(option_param, "must be a non-empty short string");
      }
    }
  }
  const std::string prices_param = ParamPath(param, "prices");
  auto prices = variant.find("prices");
  if (prices == variant.end() || prices->is_null()) {
    return InvalidParam(prices_param, "is required", "missing_param");
  }
  if (!prices->is_object() || prices->empty()) {
    return InvalidParam(prices_param, "must be an object of currency -> decimal amount");
  }
  for (const auto& [code, amount] : prices->items()) {
    const std::string price_param = ParamPath(prices_param, code);
    if (!FindCurrency(code).ok()) return InvalidParam(price_param, "unknown currency");
    if (!amount.is_string())
      return InvalidParam(price_param, "must be a decimal string like \"12.34\"");
    absl::StatusOr<Money> money = Money::Parse(amount.get_ref<const std::string&>(), code);
    if (!money.ok()) return InvalidParam(price_param, std::string(money.status().message()));
    if (money->is_negative()) return InvalidParam(price_param, "must not be negative");
  }
  if (auto weight = OptionalInt(variant, "weight_grams", 0, kWeightGramsMax, param); !weight.ok()) {
    return weight.status();
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view ProductStatusName(ProductStatus status) {
  switch (status) {
    case ProductStatus::kDraft:
      return "draft";
    case ProductStatus::kActive:
      return "active";
    case ProductStatus::kArchived:
      return "archived";
  }
  return "draft";
}

std::optional<ProductStatus> ParseProductStatus(std::string_view name) {
  if (name == "draft") return ProductStatus::kDraft;
  if (name == "active") return ProductStatus::kActive;
  if (name == "archived") return ProductStatus::kArchived;
  return std::nullopt;
}

std::string_view UpdateKindName(UpdateKind kind) {
  switch (kind) {
    case UpdateKind::kCreate:
      return "create";
    case UpdateKind::kReplace:
      return "replace";
    case UpdateKind::kPatch:
      return "patch";
    case UpdateKind::kArchive:
      return "archive";
  }
  return "create";
}

std::optional<UpdateKind> ParseUpdateKind(std::string_view name) {
  if (name == "create") return UpdateKind::kCreate;
  if (name == "replace") return UpdateKind::kReplace;
  if (name == "patch") return UpdateKind::kPatch;
  if (name == "archive") return UpdateKind::kArchive;
  return std::nullopt;
}

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kStaleVersion:
      return "stale_version";
    case RejectReason::kNotFound:
      return "not_found";
    case RejectReason::kAlreadyExists:
      return "already_exists";
    case RejectReason::kHandleTaken:
      return "handle_taken";
    case RejectReason::kSkuTaken:
      return "sku_taken";
    case RejectReason::kInvalidProduct:
      return "invalid_product";
    case RejectReason::kProcessingFailed:
      return "processing_failed";
  }
  return "none";
}

std::optional<Money> LowestPrice(const Product& product, std::string_view currency_code) {
  std::optional<Money> lowest;
  for (const Variant& variant : product.variants) {
    for (const Money& price : variant.prices) {
      if (price.currency_code() != currency_code) continue;
      if (!lowest || price.amount_minor() < lowest->amount_minor()) lowest = price;
    }
  }
  return lowest;
}

std::vector<std::string> CategoryAncestors(std::string_view category) {
  std::vector<std::string> paths;
  if (category.empty()) return paths;
  size_t at = 0;
  while (true) {
    size_t slash = category.find('/', at);
    if (slash == std::string_view::npos) {
      paths.emplace_back(category);
      return paths;
    }
    paths.emplace_back(category.substr(0, slash));
    at = slash + 1;
  }
}

bool IsReadOnlyField(std::string_view field) {
  return field == "id" || field == "version" || field == "created_at_ms" ||
         field == "updated_at_ms" || field == "rating";
}

absl::Status ValidateProductInput(const Json& input, FieldPresence presence,
                                  std::string_view prefix) {
  if (!input.is_object()) {
    return InvalidParam(prefix.empty() ? "body" : prefix, "must be a JSON object");
  }
  const bool complete = presence == FieldPresence::kComplete;
  for (const auto& [key, unused] : input.items()) {
    if (IsReadOnlyField(key)) continue;
    if (key != "handle" && key != "title" && key != "description" && key != "brand" &&
        key != "category" && key != "attributes" && key != "status" && key != "images" &&
        key != "variants") {
      return InvalidParam(ParamPath(prefix, key), "unknown field", "unknown_param");
    }
  }
  if (absl::Status status = CheckString(input, "handle", kHandleBytesMax, prefix, complete);
      !status.ok()) {
    return status;
  }
  if (auto it = input.find("handle"); it != input.end() && it->is_string() &&
                                      !IsSlug(it->get_ref<const std::string&>(), kHandleBytesMax)) {
    return InvalidParam(ParamPath(prefix, "handle"),
                        "must be lower-case letters and digits separated by single '-'");
  }
  if (absl::Status status = CheckString(input, "title", kTitleBytesMax, prefix, complete);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckString(input, "description", kDescriptionBytesMax, prefix, false);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = CheckString(input, "brand", kBrandBytesMax, prefix, false);
      !status.ok()) {
    return status;
  }
  if (auto it = input.find("category"); it != input.end() && !it->is_null()) {
    if (absl::Status status = CheckCategory(*it, ParamPath(prefix, "category")); !status.ok()) {
      return status;
    }
  }
  if (auto it = input.find("attributes"); it != input.end() && !it->is_null()) {
    if (absl::Status status = CheckAttributes(*it, ParamPath(prefix, "attributes")); !status.ok()) {
      return status;
    }
  }
  if (auto it = input.find("status"); it != input.end() && !it->is_null()) {
    if (!it->is_string() || !ParseProductStatus(it->get_ref<const std::string&>())) {
      return InvalidParam(ParamPath(prefix, "status"), "must be draft, active or archived");
    }
  }
  if (auto it = input.find("images"); it != input.end() && !it->is_null()) {
    if (absl::Status status = CheckImages(*it, ParamPath(prefix, "images")); !status.ok()) {
      return status;
    }
  }
  const std::string variants_param = ParamPath(prefix, "variants");
  auto variants = input.find("variants");
  if (variants == input.end() || variants->is_null()) {
    if (complete) return InvalidParam(variants_param, "is required", "missing_param");
    return absl::OkStatus();
  }
  if (!variants->is_array()) return InvalidParam(variants_param, "must be an array");
  if (variants->empty() || variants->size() > kVariantsMax) {
    return InvalidParam(variants_param,
                        fmt::format("must hold between 1 and {} variants", kVariantsMax));
  }
  std::set<std::string> skus;
  for (size_t i = 0; i < variants->size(); ++i) {
    if (absl::Status status =
            CheckVariant((*variants)[i], fmt::format("{}[{}]", variants_param, i), skus);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Product> ProductFromInput(const Json& input, std::string id, int64_t version,
                                         int64_t created_at_ms, int64_t updated_at_ms) {
  if (absl::Status status = ValidateProductInput(input, FieldPresence::kComplete); !status.ok()) {
    return status;
  }
  Product product;
  product.id = std::move(id);
  product.version = version;
  product.created_at_ms = created_at_ms;
  product.updated_at_ms = updated_at_ms;
  product.handle = input.at("handle").get<std::string>();
  product.title = input.at("title").get<std::string>();
  product.description = input.value("description", Json("")).is_string()
                            ? input.value("description", std::string())
                            : std::string();
  if (auto it = input.find("brand"); it != input.end() && it->is_string()) product.brand = *it;
  if (auto it = input.find("category"); it != input.end() && it->is_string()) {
    product.category = *it;
  }
  if (auto it = input.find("attributes"); it != input.end() && it->is_object()) {
    for (const auto& [key, value] : it->items()) product.attributes.emplace(key, value);
  }
  if (auto it = input.find("status"); it != input.end() && it->is_string()) {
    product.status = *ParseProductStatus(it->get_ref<const std::string&>());
  }
  if (auto it = input.find("images"); it != input.end() && it->is_array()) {
    for (const Json& image : *it) {
      product.images.push_back(Image{image.at("url").get<std::string>(),
                                     image.contains("alt") && image["alt"].is_string()
                                         ? image["alt"].get<std::string>()
                                         : std::string()});
    }
  }
  for (const Json& item : input.at("variants")) {
    Variant variant;
    variant.sku = item.at("sku").get<std::string>();
    if (auto it = item.find("options"); it != item.end() && it->is_object()) {
      for (const auto& [key, value] : it->items()) variant.options.emplace(key, value);
    }
    for (const auto& [code, amount] : item.at("prices").items()) {
      variant.prices.push_back(*Money::Parse(amount.get_ref<const std::string&>(), code));
    }
    variant.weight_grams = item.value("weight_grams", int64_t{0});
    product.variants.push_back(std::move(variant));
  }
  return product;
}

Json ProductToJson(const Product& product) {
  Json attributes = Json::object();
  for (const auto& [key, value] : product.attributes) attributes[key] = value;
  Json images = Json::array();
  for (const Image& image : product.images)
    images.push_back({{"url", image.url}, {"alt", image.alt}});
  Json variants = Json::array();
  for (const Variant& variant : product.variants) {
    Json options = Json::object();
    for (const auto& [key, value] : variant.options) options[key] = value;
    Json prices = Json::object();
    for (const Money& price : variant.prices) {
      prices[std::string(price.currency_code())] = price.ToDecimalString();
    }
    variants.push_back({{"sku", variant.sku},
                        {"options", std::move(options)},
                        {"prices", std::move(prices)},
                        {"weight_grams", variant.weight_grams}});
  }
  return Json{{"id", product.id},
              {"handle", product.handle},
              {"title", product.title},
              {"description", product.description},
              {"brand", product.brand},
              {"category", product.category},
              {"attributes", std::move(attributes)},
              {"status", ProductStatusName(product.status)},
              {"images", std::move(images)},
              {"variants", std::move(variants)},
              {"version", product.version},
              {"created_at_ms", product.created_at_ms},
              {"updated_at_ms", product.updated_at_ms}};
}

absl::StatusOr<Product> ProductFromJson(const Json& json) {
  if (!json.is_object() || !json.contains("id") || !json["id"].is_string()) {
    return absl::DataLossError("stored product is malformed");
  }
  auto read_int = [&](const char* field) -> int64_t {
    auto it = json.find(field);
    return it != json.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  };
  return ProductFromInput(json, json["id"].get<std::string>(), read_int("version"),
                          read_int("created_at_ms"), read_int("updated_at_ms"));
}

namespace {

// ApplyUpdate's version and existence rules: the refusal, or nullopt when the update may apply.
std::optional<UpdateOutcome> RefuseUpdate(const std::optional<Product>& current, UpdateKind kind,
                                          const std::string& product_id,
                                          std::optional<int64_t> base_version) {
  UpdateOutcome outcome;
  const int64_t current_version = current ? current->version : 0;
  if (base_version && *base_version != current_version) {
    outcome.reject = RejectReason::kStaleVersion;
    outcome.message = fmt::format("based on version {}, but the product is at version {}",
                                  *base_version, current_version);
    return outcome;
  }
  if (kind == UpdateKind::kCreate && current) {
    outcome.reject = RejectReason::kAlreadyExists;
    outcome.message = fmt::format("product {} already exists", product_id);
    return outcome;
  }
  if (kind != UpdateKind::kCreate && !current) {
    outcome.reject = RejectReason::kNotFound;
    outcome.message = fmt::format("product {} does not exist", product_id);
    return outcome;
  }
  return std::nullopt;
}

// The outcome of an update whose product was built (or failed to build) as `product`.
UpdateOutcome BuiltOutcome(absl::StatusOr<Product> product) {
  UpdateOutcome outcome;
  if (!product.ok()) {
    outcome.reject = RejectReason::kInvalidProduct;
    outcome.message = fmt::format("{}: {}", ErrorParam(product.status()).value_or(""),
                                  product.status().message());
    return outcome;
  }
  outcome.product = std::move(*product);
  return outcome;
}

}  // namespace

UpdateOutcome ApplyUpdate(const std::optional<Product>& current, UpdateKind kind,
                          const std::string& product_id, const Json& payload,
                          std::optional<int64_t> base_version, int64_t now_ms) {
  if (std::optional<UpdateOutcome> refused =
          RefuseUpdate(current, kind, product_id, base_version)) {
    return std::move(*refused);
  }
  // A create or replace reads the payload in place (no copy of its DOM).
  Json document;
  const Json* source = &document;
  switch (kind) {
    case UpdateKind::kCreate:
    case UpdateKind::kReplace:
      source = &payload;
      break;
    case UpdateKind::kPatch:
      document = ProductToJson(*current);
      document.merge_patch(payload);
      break;
    case UpdateKind::kArchive:
      document = ProductToJson(*current);
      document["status"] = "archived";
      break;
  }
  const int64_t current_version = current ? current->version : 0;
  const int64_t created_at_ms = current ? current->created_at_ms : now_ms;
  return BuiltOutcome(
      ProductFromInput(*source, product_id, current_version + 1, created_at_ms, now_ms));
}

UpdateOutcome ApplyBuiltUpdate(const std::optional<Product>& current, UpdateKind kind,
                               const std::string& product_id, absl::StatusOr<Product> built,
                               std::optional<int64_t> base_version, int64_t now_ms) {
  if (std::optional<UpdateOutcome> refused =
          RefuseUpdate(current, kind, product_id, base_version)) {
    return std::move(*refused);
  }
  if (built.ok()) {
    built->version = (current ? current->version : 0) + 1;
    built->created_at_ms = current ? current->created_at_ms : now_ms;
    built->updated_at_ms = now_ms;
  }
  return BuiltOutcome(std::move(built));
}

absl::StatusOr<Review> ReviewFromInput(const Json& input, std::string id, std::string product_id,
                                       std::string customer_id, int64_t created_at_ms) {
  if (!input.is_object()) return InvalidParam("body", "must be a JSON object");
  for (const auto& [key, unused] : input.items()) {
    if (key != "author" && key != "rating" && key != "title" && key != "body") {
      return InvalidParam(key, "unknown field", "unknown_param");
    }
  }
  Review review;
  review.id = std::move(id);
  review.product_id = std::move(product_id);
  review.customer_id = std::move(customer_id);
  review.created_at_ms = created_at_ms;
  absl::StatusOr<std::optional<std::string>> author =
      OptionalString(input, "author", kReviewAuthorBytesMax);
  if (!author.ok()) return author.status();
  if (author->has_value() && (*author)->empty()) {
    return InvalidParam("author", "must not be empty");
  }
  review.author = author->value_or(std::string(kReviewDefaultAuthor));
  absl::StatusOr<int64_t> rating = RequireInt(input, "rating", 1, 5);
  if (!rating.ok()) return rating.status();
  review.rating = *rating;
  absl::StatusOr<std::optional<std::string>> title =
      OptionalString(input, "title", kReviewTitleBytesMax);
  if (!title.ok()) return title.status();
  review.title = title->value_or("");
  absl::StatusOr<std::optional<std::string>> body =
      OptionalString(input, "body", kReviewBodyBytesMax);
  if (!body.ok()) return body.status();
  review.body = body->value_or("");
  return review;
}

Json ReviewToJson(const Review& review) {
  return Json{{"id", review.id},
              {"product_id", review.product_id},
              {"author", review.author},
              {"rating", review.rating},
              {"title", review.title},
              {"body", review.body},
              {"created_at_ms", review.created_at_ms}};
}

Json ProductReadJson(const Product& product, const RatingSummary& rating) {
  return ProductReadJsonFrom(ProductToJson(product), rating);
}

Json ProductReadJsonFrom(Json json, const RatingSummary& rating) {
  json["rating"] = {{"average", std::round(rating.average() * 100.0) / 100.0},
                    {"count", rating.count}};
  return json;
}

namespace {

// Appends `"key":` (keys are written in the DOM's sorted order by the callers).
void AppendKey(std::string& out, std::string_view key) {
  AppendJsonString(out, key);
  out += ':';
}

void AppendInt(std::string& out, int64_t value) { out += fmt::format_int(value).str(); }

}  // namespace

ProductJsonText ProductToJsonText(const Product& product) {
  // Keys in std::map order, as ProductToJson's DOM holds them: attributes, brand, category,
  // created_at_ms, description, handle, id, images, [rating], status, title, updated_at_ms,
  // variants, version.
  ProductJsonText result;
  std::string& out = result.text;
  out.reserve(1024);
  out += "{\"attributes\":{";
  bool first = true;
  for (const auto& [key, value] : product.attributes) {
    if (!first) out += ',';
    first = false;
    AppendKey(out, key);
    if (value.is_string()) {
      AppendJsonString(out, value.get_ref<const std::string&>());
    } else {
      out += DumpJson(value);
    }
  }
  out += "},\"brand\":";
  AppendJsonString(out, product.brand);
  out += ",\"category\":";
  AppendJsonString(out, product.category);
  out += ",\"created_at_ms\":";
  AppendInt(out, product.created_at_ms);
  out += ",\"description\":";
  AppendJsonString(out, product.description);
  out += ",\"handle\":";
  AppendJsonString(out, product.handle);
  out += ",\"id\":";
  AppendJsonString(out, product.id);
  out += ",\"images\":[";
  for (size_t i = 0; i < product.images.size(); ++i) {
    if (i > 0) out += ',';
    out += "{\"alt\":";
    AppendJsonString(out, product.images[i].alt);
    out += ",\"url\":";
    AppendJsonString(out, product.images[i].url);
    out += '}';
  }
  out += "],";
  result.rating_offset = out.size();
  out += "\"status\":";
  AppendJsonString(out, ProductStatusName(product.status));
  out += ",\"title\":";
  AppendJsonString(out, product.title);
  out += ",\"updated_at_ms\":";
  AppendInt(out, product.updated_at_ms);
  out += ",\"variants\":[";
  for (size_t i = 0; i < product.variants.size(); ++i) {
    const Variant& variant = product.variants[i];
    if (i > 0) out += ',';
    out += "{\"options\":{";
    first = true;
    for (const auto& [key, value] : variant.options) {
      if (!first) out += ',';
      first = false;
      AppendKey(out, key);
      AppendJsonString(out, value);
    }
    // The DOM keeps one price per currency (the last assigned) in code order.
    std::map<std::string_view, const Money*> prices;
    for (const Money& price : variant.prices) prices[price.currency_code()] = &price;
    out += "},\"prices\":{";
    first = true;
    for (const auto& [code, price] : prices) {
      if (!first) out += ',';
      first = false;
      AppendKey(out, code);
      AppendJsonString(out, price->ToDecimalString());
    }
    out += "},\"sku\":";
    AppendJsonString(out, variant.sku);
    out += ",\"weight_grams\":";
    AppendInt(out, variant.weight_grams);
    out += '}';
  }
  out += "],\"version\":";
  AppendInt(out, product.version);
  out += '}';
  return result;
}

std::string ProductReadJsonText(const ProductJsonText& document, const RatingSummary& rating) {
  // The rating's numbers go through the DOM: its double formatting is nlohmann's.
  const std::string rating_json = DumpJson(
      Json{{"average", std::round(rating.average() * 100.0) / 100.0}, {"count", rating.count}});
  std::string out;
  out.reserve(document.text.size() + rating_json.size() + 16);
  out.append(document.text, 0, document.rating_offset);
  out += "\"rating\":";
  out += rating_json;
  out += ',';
  out.append(document.text, document.rating_offset);
  return out;
}

}  // namespace emporium::catalog
