#include "catalog/api.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/context/principal.h"
#include "platform/context/staff_auth.h"

namespace emporium::catalog {
namespace {

using http::Request;
using http::Responder;
using http::Response;

const std::string& CacheControl() {
  // Formatted once: every product read sends it.
  static const std::string value =
      fmt::format("public, max-age={}, stale-while-revalidate={}", kProductMaxAgeSeconds,
                  kProductStaleWhileRevalidateSeconds);
  return value;
}

Response FromStored(const absl::StatusOr<StoredResponse>& result) {
  if (!result.ok()) return http::ErrorResponse(result.status());
  Response response;
  response.status = result->status;
  response.headers.Set("Content-Type", "application/json");
  response.body = result->body;
  return response;
}

std::map<std::string, std::string> QueryParams(const Request& request) {
  std::map<std::string, std::string> params;
  std::string_view query = request.query;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::optional<std::string> name =
        http::PercentDecode(pair.substr(0, eq), http::PlusSign::kSpace);
    std::optional<std::string> value =
        eq == std::string_view::npos
            ? std::optional<std::string>("")
            : http::PercentDecode(pair.substr(eq + 1), http::PlusSign::kSpace);
    if (name && value) params.emplace(std::move(*name), std::move(*value));
  }
  return params;
}

absl::StatusOr<int64_t> IntParam(const std::map<std::string, std::string>& params,
                                 const std::string& name, int64_t fallback, int64_t min,
                                 int64_t max) {
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  try {
    size_t used = 0;
    const int64_t value = std::stoll(it->second, &used);
    if (used != it->second.size() || value < min || value > max) throw std::out_of_range("");
    return value;
  } catch (const std::exception&) {
    return InvalidParam(name, fmt::format("must be an integer between {} and {}", min, max));
  }
}

// Binds a cursor to the sort order it was made for.
std::string SortTag(const std::map<std::string, std::string>& params) {
  auto it = params.find("sort");
  return it == params.end() ? "newest" : it->second;
}

std::string Hex(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::optional<std::string> Unhex(std::string_view text) {
  if (text.size() % 2 != 0 || text.size() > 2048) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < text.size(); i += 2) {
    int value = 0;
    for (size_t j = 0; j < 2; ++j) {
      const char c = text[i + j];
      int digit = 0;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else {
        return std::nullopt;
      }
      value = value * 16 + digit;
    }
    out.push_back(static_cast<char>(value));
  }
  return out;
}

// "3", "\"3\"", "W/\"3.7\"" -> 3.
absl::StatusOr<std::optional<int64_t>> IfMatchVersion(const Request& request) {
  std::optional<std::string_view> header = request.Header("If-Match");
  if (!header) return std::optional<int64_t>();
  std::string_view text = *header;
  if (text.rfind("W/", 0) == 0) text.remove_prefix(2);
  if (!text.empty() && text.front() == '"') text.remove_prefix(1);
  int64_t version = 0;
  size_t digits = 0;
  for (char c : text) {
    if (c < '0' || c > '9') break;
    if (++digits > 15) break;
    version = version * 10 + (c - '0');
  }
  if (digits == 0 || digits > 15) {
    return InvalidParam("If-Match", "must carry the product version, e.g. \"3\"");
  }
  return std::optional<int64_t>(version);
}

// One item of a batch: a product document without "id" is a create; with "id" (an existing
// product) it is a merge patch of that product, optionally guarded by "expected_version" (the
// batch's per-item If-Match). "id" and "expected_version" are stripped from the payload.
absl::StatusOr<WriteCommand> BatchItem(Json item, const std::string& prefix) {
  if (!item.is_object()) return InvalidParam(prefix, "must be a JSON object");
  WriteCommand command;
  absl::StatusOr<std::optional<std::string>> id =
      OptionalString(item, "id", kProductIdBytesMax, prefix);
  if (!id.ok()) return id.status();
  absl::StatusOr<std::optional<int64_t>> expected_version =
      OptionalInt(item, "expected_version", 0, kVersionMax, prefix);
  if (!expected_version.ok()) return expected_version.status();
  if (id->has_value()) {
    if ((*id)->empty()) return InvalidParam(prefix + ".id", "must not be empty");
    command.kind = UpdateKind::kPatch;
    command.product_id = std::move(**id);
    command.if_match = *expected_version;
  } else {
    if (expected_version->has_value()) {
      return InvalidParam(prefix + ".expected_version", "is only allowed with an id (an update)");
    }
    command.kind = UpdateKind::kCreate;
  }
  item.erase("id");
  item.erase("expected_version");
  command.payload = std::move(item);
  return command;
}

absl::StatusOr<IdempotencyRequest> Idempotency(const Request& request) {
  IdempotencyRequest idempotency;
  if (std::optional<std::string_view> key = request.Header("Idempotency-Key")) {
    if (key->empty() || key->size() > kIdempotencyKeyBytesMax) {
      return InvalidParam("Idempotency-Key",
                          fmt::format("must be 1 to {} bytes", kIdempotencyKeyBytesMax));
    }
    idempotency.key = std::string(*key);
  }
  idempotency.request_hash =
      Fingerprint(fmt::format("{} {}\n{}\n{}", request.method, request.path,
                              request.Header("If-Match").value_or(""), request.body));
  return idempotency;
}

Json UpdateJson(const UpdateRecord& record) {
  Json json = {{"update_id", record.update.id},
               {"product_id", record.update.product_id},
               {"kind", UpdateKindName(record.update.kind)},
               {"status", UpdateStateName(record.state)},
               {"target_version", record.update.target_version},
               {"created_at_ms", record.created_at_ms}};
  if (record.applied_version) json["applied_version"] = *record.applied_version;
  if (record.finished_at_ms) json["finished_at_ms"] = *record.finished_at_ms;
  if (record.state == UpdateState::kRejected) {
    json["reason"] = record.reason;
    json["message"] = record.message;
  }
  return json;
}

std::string ContentTypeFor(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  if (extension == ".html") return "text/html; charset=utf-8";
  if (extension == ".css") return "text/css; charset=utf-8";
  if (extension == ".js") return "text/javascript; charset=utf-8";
  if (extension == ".json") return "application/json";
  if (extension == ".svg") return "image/svg+xml";
  if (extension == ".png") return "image/png";
  if (extension == ".jpg" || extension == ".jpeg") return "image/jpeg";
  if (extension == ".webp") return "image/webp";
  if (extension == ".avif") return "image/avif";
  if (extension == ".woff2") return "font/woff2";
  return "application/octet-stream";
}

class Api {
 public:
  explicit Api(ApiDeps deps) : deps_(std::move(deps)) {}

  void AdminWrite(Request& request, Responder respond, UpdateKind kind) {
    Response denied;
    if (!AuthorizeStaff(request, deps_.admin_api_key, {Role::kCatalogManager}, denied))
      return respond(denied);
    absl::StatusOr<IdempotencyRequest> idempotency = Idempotency(request);
    if (!idempotency.ok()) return respond(http::ErrorResponse(idempotency.status()));
    WriteCommand command;
    command.kind = kind;
    command.product_id = request.PathParam("id");
    if (kind != UpdateKind::kArchive) {
      absl::StatusOr<Json> body = ParseJsonObject(request.body);
      if (!body.ok()) return respond(http::ErrorResponse(body.status()));
      command.payload = std::move(*body);
    }
    if (kind != UpdateKind::kCreate) {
      absl::StatusOr<std::optional<int64_t>> if_match = IfMatchVersion(request);
      if (!if_match.ok()) return respond(http::ErrorResponse(if_match.status()));
      command.if_match = *if_match;
    }
    if (absl::Status status = CatalogService::Validate(command); !status.ok()) {
      return respond(http::ErrorResponse(status));
    }
    std::vector<WriteCommand> commands;
    commands.push_back(std::move(command));
    deps_.service->Enqueue(
        std::move(commands), CatalogService::Shape::kSingle, std::move(*idempotency),
        [respond](absl::StatusOr<StoredResponse> result) { respond(FromStored(result)); });
  }

  void AdminBatch(Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, deps_.admin_api_key, {Role::kCatalogManager}, denied))
      return respond(denied);
    absl::StatusOr<IdempotencyRequest> idempotency = Idempotency(request);
    if (!idempotency.ok()) return respond(http::ErrorResponse(idempotency.status()));
    absl::StatusOr<Json> body = ParseJsonObject(request.body);
    if (!body.ok()) return respond(http::ErrorResponse(body.status()));
    auto products = body->find("products");
    if (products == body->end() || !products->is_array() || products->empty() ||
        products->size() > kBatchProductsMax) {
      return respond(http::ErrorResponse(InvalidParam(
          "products", fmt::format("must be an array of 1 to {} products", kBatchProductsMax))));
    }
    std::vector<WriteCommand> commands;
    std::set<std::string> handles;
    for (size_t i = 0; i < products->size(); ++i) {
      const std::string prefix = fmt::format("products[{}]", i);
      absl::StatusOr<WriteCommand> command = BatchItem(std::move((*products)[i]), prefix);
      if (!command.ok()) return respond(http::ErrorResponse(command.status()));
      if (absl::Status status = CatalogService::Validate(*command, prefix); !status.ok()) {
        return respond(http::ErrorResponse(status));
      }
      if (command->payload.contains("handle") &&
          !handles.insert(command->payload.at("handle").get<std::string>()).second) {
        return respond(http::ErrorResponse(
            InvalidParam(prefix + ".handle", "is used twice in this batch", "duplicate_handle")));
      }
      commands.push_back(std::move(*command));
    }
    deps_.service->Enqueue(
        std::move(commands), CatalogService::Shape::kBatch, std::move(*idempotency),
        [respond](absl::StatusOr<StoredResponse> result) { respond(FromStored(result)); });
  }

  Response AdminGetProduct(const Request& request) {
    Response denied;
    if (!AuthorizeStaff(request, deps_.admin_api_key, {Role::kCatalogManager}, denied))
      return denied;
    absl::StatusOr<std::optional<StoredProduct>> stored =
        deps_.service->GetStoredProduct(request.PathParam("id"));
    if (!stored.ok()) return http::ErrorResponse(stored.status());
    if (!stored->has_value()) {
      return http::ErrorResponse(
          WithErrorCode(absl::NotFoundError("product not found"), "product_not_found"));
    }
    Response response = Response::Json(200, ProductReadJson((*stored)->product, (*stored)->rating));
    response.headers.Set("ETag", fmt::format("\"{}\"", (*stored)->product.version));
    response.headers.Set("Cache-Control", "no-store");
    return response;
  }

  Response AdminGetUpdate(const Request& request) {
    Response denied;
    if (!AuthorizeStaff(request, deps_.admin_api_key, {Role::kCatalogManager}, denied))
      return denied;
    absl::StatusOr<std::optional<UpdateRecord>> record =
        deps_.service->GetUpdate(request.PathParam("id"));
    if (!record.ok()) return http::ErrorResponse(record.status());
    if (!record->has_value()) {
      return http::ErrorResponse(
          WithErrorCode(absl::NotFoundError("update not found"), "update_not_found"));
    }
    Response response = Response::Json(200, UpdateJson(**record));
    response.headers.Set("Cache-Control", "no-store");
    return response;
  }

  Response AdminReindex(const Request& request) {
    Response denied;
    if (!AuthorizeStaff(request, deps_.admin_api_key, {Role::kCatalogManager}, denied))
      return denied;
    if (deps_.processor == nullptr) {
      return http::ErrorResponse(absl::UnavailableError("no processor"));
    }
    deps_.processor->RequestReindex();
    return Response::Json(202, {{"status", "rebuilding"}});
  }

  Response GetProduct(const Request& request) {
    absl::StatusOr<std::shared_ptr<const CachedProduct>> product =
        deps_.service->GetProduct(request.PathParam("key"));
    if (!product.ok()) return http::ErrorResponse(product.status());
    Response response;  // no headers yet: Add is Set without the scan
    response.headers.Add("ETag", (*product)->etag);
    response.headers.Add("Cache-Control", CacheControl());
    std::optional<std::string_view> if_none_match = request.Header("If-None-Match");
    if (if_none_match && (*if_none_match == "*" ||
                          if_none_match->find((*product)->etag) != std::string_view::npos)) {
      response.status = 304;
      return response;
    }
    response.status = 200;
    response.headers.Add("Content-Type", "application/json");
    // The cached JSON is sent as is, not copied: the response shares the cache entry (aliasing
    // shared_ptr), which stays alive until the bytes are written even if it is evicted.
    response.shared_body = std::shared_ptr<const std::string>(*product, &(*product)->body);
    return response;
  }

  Response ListProducts(const Request& request) {
    const std::map<std::string, std::string> params = QueryParams(request);
    ProductQuery query;
    absl::StatusOr<int64_t> limit = IntParam(params, "limit", 20, 1, kListLimitMax);
    if (!limit.ok()) return http::ErrorResponse(limit.status());
    query.limit = *limit;
    if (auto it = params.find("category"); it != params.end()) query.category = it->second;
    if (auto it = params.find("brand"); it != params.end()) query.brand = it->second;
    if (auto it = params.find("currency"); it != params.end()) {
      if (!FindCurrency(it->second).ok()) {
        return http::ErrorResponse(InvalidParam("currency", "unknown currency"));
      }
      query.currency = it->second;
    }
    for (const char* bound : {"price_min", "price_max"}) {
      auto it = params.find(bound);
      if (it == params.end()) continue;
      absl::StatusOr<Money> amount = Money::Parse(it->second, query.currency);
      if (!amount.ok()) {
        return http::ErrorResponse(InvalidParam(bound, "must be a decimal amount like 12.50"));
      }
      (std::string_view(bound) == "price_min" ? query.price_min_minor : query.price_max_minor) =
          amount->amount_minor();
    }
    for (const auto& [name, value] : params) {
      if (name.rfind("attr.", 0) == 0 && name.size() > 5) {
        query.attributes.emplace_back(name.substr(5), value);
      }
    }
    if (auto it = params.find("in_stock"); it != params.end()) {
      if (it->second == "true") {
        query.stock = StockFilter::kInStock;
      } else if (it->second == "false") {
        query.stock = StockFilter::kOutOfStock;
      } else {
        return http::ErrorResponse(InvalidParam("in_stock", "must be true or false"));
      }
    }
    if (auto it = params.find("sort"); it != params.end()) {
      if (it->second == "newest") {
        query.sort = ProductSort::kNewest;
      } else if (it->second == "price") {
        query.sort = ProductSort::kPriceAscending;
      } else if (it->second == "-price") {
        query.sort = ProductSort::kPriceDescending;
      } else if (it->second == "rating") {
        query.sort = ProductSort::kRating;
      } else {
        return http::ErrorResponse(InvalidParam("sort", "must be newest, price, -price or rating"));
      }
    }
    if (auto it = params.find("cursor"); it != params.end()) {
      std::optional<std::string> raw = Unhex(it->second);
      absl::StatusOr<Json> cursor = raw ? ParseJson(*raw) : absl::InvalidArgumentError("");
      if (!cursor.ok() || !cursor->is_array() || cursor->size() != 3 || !(*cursor)[1].is_string() ||
          !(*cursor)[2].is_string() || (*cursor)[2].get<std::string>() != SortTag(params)) {
        return http::ErrorResponse(InvalidParam("cursor", "is not a cursor of this listing"));
      }
      sql::Value key;
      const Json& value = (*cursor)[0];
      if (value.is_number_integer()) {
        key = value.get<int64_t>();
      } else if (value.is_number()) {
        key = value.get<double>();
      } else {
        return http::ErrorResponse(InvalidParam("cursor", "is malformed"));
      }
      query.after.emplace(std::move(key), (*cursor)[1].get<std::string>());
    }
    absl::StatusOr<ProductPage> page = deps_.service->ListProducts(query);
    if (!page.ok()) return http::ErrorResponse(page.status());
    Json items = Json::array();
    for (const StoredProduct& stored : page->items) {
      items.push_back(ProductReadJson(stored.product, stored.rating));
    }
    Json body = {{"items", std::move(items)}, {"next_cursor", nullptr}};
    if (page->next) {
      Json key = std::holds_alternative<double>(page->next->first)
                     ? Json(std::get<double>(page->next->first))
                     : Json(std::get<int64_t>(page->next->first));
      body["next_cursor"] = Hex(DumpJson(Json::array({key, page->next->second, SortTag(params)})));
    }
    Response response = Response::Json(200, body);
    response.headers.Set("Cache-Control", CacheControl());
    return response;
  }

  Response Search(const Request& request) {
    const std::map<std::string, std::string> params = QueryParams(request);
    if (deps_.search == nullptr) return Unavailable("search is not configured");
    SearchQuery query;
    if (auto it = params.find("q"); it != params.end()) {
      if (it->second.size() > kSearchQueryBytesMax) {
        return http::ErrorResponse(InvalidParam("q", "is too long"));
      }
      query.text = it->second;
    }
    if (auto it = params.find("brand"); it != params.end()) query.brand = it->second;
    if (auto it = params.find("category"); it != params.end()) query.category = it->second;
    absl::StatusOr<int64_t> limit = IntParam(params, "limit", 20, 1, kSearchLimitMax);
    if (!limit.ok()) return http::ErrorResponse(limit.status());
    absl::StatusOr<int64_t> offset = IntParam(params, "offset", 0, 0, kSearchOffsetMax);
    if (!offset.ok()) return http::ErrorResponse(offset.status());
    query.limit = *limit;
    query.offset = *offset;
    absl::StatusOr<SearchResult> result = deps_.search->Search(query);
    if (absl::IsUnavailable(result.status())) return Unavailable(result.status().message());
    if (!result.ok()) {
      return http::ErrorResponse(WithErrorParam(result.status(), "q"));
    }
    auto facets = [](const std::vector<FacetCount>& counts) {
      Json out = Json::array();
      for (const FacetCount& count : counts) {
        out.push_back({{"value", count.value}, {"count", count.count}});
      }
      return out;
    };
    Json hits = Json::array();
    for (const SearchHit& hit : result->hits) {
      Json item = hit.summary;
      item["score"] = hit.score;
      hits.push_back(std::move(item));
    }
    Response response = Response::Json(200, {{"total", result->total},
                                             {"exact", result->exact},
                                             {"hits", std::move(hits)},
                                             {"facets",
                                              {{"brand", facets(result->brands)},
                                               {"category", facets(result->categories)},
                                               {"price", facets(result->price_buckets)}}}});
    response.headers.Set("Cache-Control", "public, max-age=30, stale-while-revalidate=60");
    return response;
  }

  Response Categories(const Request&) {
    absl::StatusOr<Json> tree = deps_.service->CategoryTree();
    if (!tree.ok()) return http::ErrorResponse(tree.status());
    Response response = Response::Json(200, *tree);
    response.headers.Set("Cache-Control", CacheControl());
    return response;
  }

  // Customers only: the review's author is the signed-in customer, never a body field, so one
  // customer cannot post as another or flood a product's rating.
  void AddReview(Request& request, Responder respond) {
    absl::StatusOr<std::string> customer_id = RequireCustomer(request);
    if (!customer_id.ok()) {
      Response denied = http::ErrorResponse(customer_id.status());
      if (denied.status == 401) denied.headers.Set("WWW-Authenticate", "Bearer");
      return respond(denied);
    }
    absl::StatusOr<IdempotencyRequest> idempotency = Idempotency(request);
    if (!idempotency.ok()) return respond(http::ErrorResponse(idempotency.status()));
    // Keys are scoped to the customer: another customer's key never replays this one's review.
    if (!idempotency->key.empty()) {
      idempotency->key = fmt::format("review:{}:{}", *customer_id, idempotency->key);
    }
    absl::StatusOr<Json> body = ParseJsonObject(request.body);
    if (!body.ok()) return respond(http::ErrorResponse(body.status()));
    deps_.service->AddReview(
        request.PathParam("key"), *customer_id, *body, std::move(*idempotency),
        [respond](absl::StatusOr<StoredResponse> result) { respond(FromStored(result)); });
  }

  Response ListReviews(const Request& request) {
    const std::map<std::string, std::string> params = QueryParams(request);
    absl::StatusOr<int64_t> limit = IntParam(params, "limit", 20, 1, kListLimitMax);
    if (!limit.ok()) return http::ErrorResponse(limit.status());
    std::optional<std::pair<int64_t, std::string>> after;
    if (auto it = params.find("cursor"); it != params.end()) {
      std::optional<std::string> raw = Unhex(it->second);
      absl::StatusOr<Json> cursor = raw ? ParseJson(*raw) : absl::InvalidArgumentError("");
      if (!cursor.ok() || !cursor->is_array() || cursor->size() != 2 ||
          !(*cursor)[0].is_number_integer() || !(*cursor)[1].is_string()) {
        return http::ErrorResponse(InvalidParam("cursor", "is malformed"));
      }
      after.emplace((*cursor)[0].get<int64_t>(), (*cursor)[1].get<std::string>());
    }
    absl::StatusOr<std::vector<Review>> reviews =
        deps_.service->ListReviews(request.PathParam("key"), after, *limit + 1);
    if (!reviews.ok()) return http::ErrorResponse(reviews.status());
    Json items = Json::array();
    for (size_t i = 0; i < reviews->size() && static_cast<int64_t>(i) < *limit; ++i) {
      items.push_back(ReviewToJson((*reviews)[i]));
    }
    Json body = {{"items", items}, {"next_cursor", nullptr}};
    if (static_cast<int64_t>(reviews->size()) > *limit) {
      const Review& last = (*reviews)[static_cast<size_t>(*limit) - 1];
      body["next_cursor"] = Hex(DumpJson(Json::array({last.created_at_ms, last.id})));
    }
    return Response::Json(200, body);
  }

  Response StaticFile(const Request& request) {
    if (deps_.static_directory.empty()) {
      return http::ErrorResponse(absl::NotFoundError("no static files"));
    }
    std::optional<std::string> path =
        ResolveStaticPath(deps_.static_directory, request.PathParam("path"));
    if (!path) return http::ErrorResponse(absl::NotFoundError("file not found"));
    std::error_code error;
    const uintmax_t size = std::filesystem::file_size(*path, error);
    if (error || size > kStaticFileBytesMax) {
      return http::ErrorResponse(absl::NotFoundError("file not found"));
    }
    std::ifstream file(*path, std::ios::binary);
    std::stringstream bytes;
    bytes << file.rdbuf();
    Response response;
    response.status = 200;
    response.headers.Set("Content-Type", ContentTypeFor(*path));
    // Names are content-hashed, so a name's bytes never change.
    response.headers.Set("Cache-Control", "public, max-age=31536000, immutable");
    response.body = bytes.str();
    return response;
  }

 private:
  static Response Unavailable(absl::string_view message) {
    Response response = http::ErrorResponse(
        WithErrorCode(absl::UnavailableError(std::string(message)), "search_unavailable"));
    response.headers.Set("Retry-After", std::to_string(kSearchRetryAfterSeconds));
    return response;
  }

  ApiDeps deps_;
};

}  // namespace

std::optional<std::string> ResolveStaticPath(const std::string& root, const std::string& relative) {
  if (relative.empty() || relative.size() > 1024 || relative.front() == '/') return std::nullopt;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t end = relative.find('/', start);
    if (end == std::string::npos) end = relative.size();
    std::string_view segment = std::string_view(relative).substr(start, end - start);
    if (segment.empty() || segment == "." || segment == ".." || segment.front() == '.') {
      return std::nullopt;
    }
    for (char c : segment) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
      if (!ok) return std::nullopt;
    }
    start = end + 1;
  }
  std::error_code error;
  const std::filesystem::path base = std::filesystem::canonical(root, error);
  if (error) return std::nullopt;
  const std::filesystem::path resolved = std::filesystem::canonical(base / relative, error);
  if (error) return std::nullopt;
  // Symlinks must not lead out of the root.
  const std::string base_text = base.string() + "/";
  if (resolved.string().rfind(base_text, 0) != 0) return std::nullopt;
  if (!std::filesystem::is_regular_file(resolved, error)) return std::nullopt;
  return resolved.string();
}

void AddCatalogRoutes(http::Router& router, ApiDeps deps) {
  // shared_ptr: every route's handler shares the one Api for the router's lifetime.
  auto api = std::make_shared<Api>(std::move(deps));
  http::RouteOptions patch_options;
  patch_options.accepted_content_types = {"application/json", "application/merge-patch+json"};
  router.Add("POST", "/api/v1/admin/products", [api](Request& request, Responder respond) {
    api->AdminWrite(request, std::move(respond), UpdateKind::kCreate);
  });
  router.Add("POST", "/api/v1/admin/products/batch", [api](Request& request, Responder respond) {
    api->AdminBatch(request, std::move(respond));
  });
  router.AddSync("GET", "/api/v1/admin/products/{id}",
                 [api](const Request& request) { return api->AdminGetProduct(request); });
  router.Add("PUT", "/api/v1/admin/products/{id}", [api](Request& request, Responder respond) {
    api->AdminWrite(request, std::move(respond), UpdateKind::kReplace);
  });
  router.Add(
      "PATCH", "/api/v1/admin/products/{id}",
      [api](Request& request, Responder respond) {
        api->AdminWrite(request, std::move(respond), UpdateKind::kPatch);
      },
      patch_options);
  router.Add("DELETE", "/api/v1/admin/products/{id}", [api](Request& request, Responder respond) {
    api->AdminWrite(request, std::move(respond), UpdateKind::kArchive);
  });
  router.AddSync("GET", "/api/v1/admin/catalog/updates/{id}",
                 [api](const Request& request) { return api->AdminGetUpdate(request); });
  router.AddSync("POST", "/api/v1/admin/catalog/reindex",
                 [api](const Request& request) { return api->AdminReindex(request); });
  router.AddSync("GET", "/api/v1/products",
                 [api](const Request& request) { return api->ListProducts(request); });
  router.AddSync("GET", "/api/v1/products/{key}",
                 [api](const Request& request) { return api->GetProduct(request); });
  router.Add("POST", "/api/v1/products/{key}/reviews", [api](Request& request, Responder respond) {
    api->AddReview(request, std::move(respond));
  });
  router.AddSync("GET", "/api/v1/products/{key}/reviews",
                 [api](const Request& request) { return api->ListReviews(request); });
  router.AddSync("GET", "/api/v1/search",
                 [api](const Request& request) { return api->Search(request); });
  router.AddSync("GET", "/api/v1/categories",
                 [api](const Request& request) { return api->Categories(request); });
  router.AddSync("GET", "/static/{path...}",
                 [api](const Request& request) { return api->StaticFile(request); });
}

}  // namespace emporium::catalog
