#include "catalog/service.h"

#include <future>
#include <limits>
#include <map>
#include <set>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/http/message.h"

namespace emporium::catalog {
namespace {

constexpr int kAccepted = 202;
constexpr int kCreated = 201;

absl::Status PreconditionFailed(std::string message) {
  return http::WithHttpStatus(
      WithErrorCode(absl::FailedPreconditionError(std::move(message)), "version_mismatch"), 412);
}

// An accepted update's answer, appended as DumpJson of its DOM would write it (keys sorted);
// a batch item also carries its index and kind.
void AppendAcceptedJson(std::string& out, const QueuedUpdate& update,
                        std::optional<size_t> batch_index) {
  out += '{';
  if (batch_index) {
    out += fmt::format("\"index\":{},\"kind\":", *batch_index);
    AppendJsonString(out, UpdateKindName(update.kind));
    out += ',';
  }
  out += "\"product_id\":";
  AppendJsonString(out, update.product_id);
  out += fmt::format(",\"status\":\"queued\",\"target_version\":{},\"update_id\":",
                     update.target_version);
  AppendJsonString(out, update.id);
  out += '}';
}

// A batch item refused at enqueue time: its index, the product it named and the error in the
// API's error shape plus the HTTP status a single write would have answered.
Json RefusedJson(size_t index, UpdateKind kind, const std::string& product_id,
                 const absl::Status& refused) {
  const http::Response error = http::ErrorResponse(refused);
  absl::StatusOr<Json> body = ParseJson(error.body);
  Json json = {{"index", index},
               {"kind", UpdateKindName(kind)},
               {"status", "rejected"},
               {"http_status", error.status},
               {"error", body.ok() ? body->value("error", Json::object()) : Json::object()}};
  json["product_id"] = kind == UpdateKind::kCreate ? Json(nullptr) : Json(product_id);
  return json;
}

std::string EtagFor(const StoredProduct& stored) {
  return fmt::format("\"{}.{}\"", stored.product.version, stored.rating.count);
}

}  // namespace

std::string Fingerprint(std::string_view text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return fmt::format("{:016x}", hash);
}

absl::StatusOr<SkuAvailability> ParseAvailabilityChanged(std::string_view payload) {
  if (payload.size() > kAvailabilityPayloadBytesMax) {
    return InvalidParam("payload", fmt::format("exceeds {} bytes", kAvailabilityPayloadBytesMax));
  }
  absl::StatusOr<Json> object = ParseJsonObject(payload);
  if (!object.ok()) return object.status();
  SkuAvailability availability;
  absl::StatusOr<std::string> sku = RequireString(*object, "sku", kAvailabilitySkuBytesMax);
  if (!sku.ok()) return sku.status();
  if (sku->empty()) return InvalidParam("sku", "must not be empty");
  availability.sku = std::move(*sku);
  absl::StatusOr<int64_t> available =
      RequireInt(*object, "available", -kAvailabilityQuantityMax, kAvailabilityQuantityMax);
  if (!available.ok()) return available.status();
  availability.available = *available;
  absl::StatusOr<int64_t> on_hand = RequireInt(*object, "on_hand", 0, kAvailabilityQuantityMax);
  if (!on_hand.ok()) return on_hand.status();
  availability.on_hand = *on_hand;
  absl::StatusOr<std::optional<int64_t>> version =
      OptionalInt(*object, "version", 0, std::numeric_limits<int64_t>::max());
  if (!version.ok()) return version.status();
  availability.source_version = *version;
  return availability;
}

absl::Status HandleAvailabilityChanged(sql::Transaction& tx, const bus::Envelope& envelope,
                                       int64_t now_ms) {
  absl::StatusOr<SkuAvailability> availability = ParseAvailabilityChanged(envelope.payload);
  if (!availability.ok()) return availability.status();
  // kStale (an older versioned update) is a success too: the message is settled, no effect.
  absl::StatusOr<AvailabilityOutcome> outcome = UpsertAvailability(tx, *availability, now_ms);
  return outcome.status();
}

CatalogService::CatalogService(sql::Database& database, const Clock& clock, IdGenerator& ids,
                               ProductCache& cache)
    : database_(database), clock_(clock), ids_(ids), cache_(cache) {}

absl::Status CatalogService::Validate(const WriteCommand& command, std::string_view prefix) {
  switch (command.kind) {
    case UpdateKind::kCreate:
    case UpdateKind::kReplace:
      return ValidateProductInput(command.payload, FieldPresence::kComplete, prefix);
    case UpdateKind::kPatch:
      return ValidateProductInput(command.payload, FieldPresence::kPartial, prefix);
    case UpdateKind::kArchive:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

void CatalogService::RunIdempotent(IdempotencyRequest idempotency, Body body, Done done,
                                   std::function<void()> after_commit) {
  auto result = std::make_shared<absl::StatusOr<StoredResponse>>(absl::UnknownError("not run"));
  auto replayed = std::make_shared<bool>(false);
  const int64_t now_ms = clock_.NowMs();
  database_.SubmitWrite(
      [idempotency, body = std::move(body), result, replayed, now_ms](sql::Transaction& tx) {
        if (!idempotency.key.empty()) {
          absl::StatusOr<std::optional<IdempotencyRecord>> existing =
              LoadIdempotency(tx, idempotency.key);
          if (!existing.ok()) return existing.status();
          if (existing->has_value()) {
            if ((*existing)->request_hash != idempotency.request_hash) {
              *result = http::WithHttpStatus(
                  WithErrorCode(absl::FailedPreconditionError(
                                    "Idempotency-Key was already used with a different request"),
                                "idempotency_key_reused"),
                  422);
            } else {
              *result = (*existing)->response;
              *replayed = true;
            }
            return absl::OkStatus();
          }
        }
        absl::StatusOr<StoredResponse> response = body(tx);
        if (!response.ok()) {
          *result = response.status();
          // Roll back this job's savepoint so nothing half-done commits.
          return response.status();
        }
        if (!idempotency.key.empty()) {
          if (absl::Status status =
                  SaveIdempotency(tx, idempotency.key,
                                  IdempotencyRecord{idempotency.request_hash, *response}, now_ms);
              !status.ok()) {
            return status;
          }
        }
        *result = std::move(*response);
        return absl::OkStatus();
      },
      [result, replayed, done = std::move(done),
       after_commit = std::move(after_commit)](absl::Status status) {
        if (!status.ok() && result->ok()) {
          done(status);
          return;
        }
        if (status.ok() && result->ok() && !*replayed && after_commit) after_commit();
        done(std::move(*result));
      });
}

void CatalogService::Enqueue(std::vector<WriteCommand> commands, Shape shape,
                             IdempotencyRequest idempotency, Done done) {
  // What the job needs of each command, taken here on the caller's thread: ids are drawn
  // outside the job so a retried job body keeps the same ids, and the payload is serialized
  // (and its DOM freed) here rather than on the single writer thread every write shares.
  struct Queued {
    UpdateKind kind = UpdateKind::kCreate;
    std::string update_id;
    std::string product_id;
    std::optional<int64_t> if_match;
    std::optional<std::string> handle;  // when the payload names one
    std::string payload;
  };
  std::vector<Queued> queued;
  queued.reserve(commands.size());
  for (WriteCommand& command : commands) {
    Queued item;
    item.kind = command.kind;
    item.update_id = ids_.Next();
    item.product_id =
        command.kind == UpdateKind::kCreate ? ids_.Next() : std::move(command.product_id);
    item.if_match = command.if_match;
    if (command.payload.is_object()) {
      if (auto it = command.payload.find("handle");
          it != command.payload.end() && it->is_string()) {
        item.handle = it->get<std::string>();
      }
    }
    item.payload = command.kind == UpdateKind::kArchive ? "null" : DumpJson(command.payload);
    queued.push_back(std::move(item));
  }
  commands.clear();
  const int64_t now_ms = clock_.NowMs();
  Body body = [queued = std::move(queued), shape,
               now_ms](sql::Transaction& tx) -> absl::StatusOr<StoredResponse> {
    // The answer is written as text in the DOM's key order (the bytes DumpJson of the DOM
    // gave): per item, a refusal (rare) still goes through its DOM.
    std::string items;
    items.reserve(queued.size() * 160);
    std::map<std::string, int64_t> heads;  // product -> queued version, within this request
    for (size_t i = 0; i < queued.size(); ++i) {
      const Queued& command = queued[i];
      const std::string prefix = shape == Shape::kBatch ? fmt::format("products[{}]", i) : "";
      QueuedUpdate update;
      update.id = command.update_id;
      update.product_id = command.product_id;
      update.kind = command.kind;
      update.base_version = command.if_match;
      int64_t head = 0;
      absl::Status refused;  // a business refusal of this command; nothing written for it yet
      if (auto it = heads.find(command.product_id); it != heads.end()) {
        head = it->second;
      } else {
        absl::StatusOr<std::optional<int64_t>> stored = LoadHead(tx, command.product_id);
        if (!stored.ok()) return stored.status();
        if (command.kind != UpdateKind::kCreate && !stored->has_value()) {
          refused = WithErrorCode(
              absl::NotFoundError(fmt::format("product {} not found", command.product_id)),
              "product_not_found");
          if (shape == Shape::kBatch) refused = WithErrorParam(refused, ParamPath(prefix, "id"));
        }
        head = stored->value_or(0);
      }
      if (refused.ok() && command.if_match && *command.if_match != head) {
        refused = WithErrorParam(
            PreconditionFailed(fmt::format("expected version {} is stale: the product is at "
                                           "version {}",
                                           *command.if_match, head)),
            shape == Shape::kBatch ? ParamPath(prefix, "expected_version") : "If-Match");
      }
      if (refused.ok() && command.handle) {
        absl::StatusOr<std::optional<std::string>> owner = HandleOwner(tx, *command.handle);
        if (!owner.ok()) return owner.status();
        if (owner->has_value() && **owner != command.product_id) {
          refused = http::WithHttpStatus(
              WithErrorParam(
                  WithErrorCode(absl::AlreadyExistsError("another product already has this handle"),
                                "handle_taken"),
                  ParamPath(prefix, "handle")),
              409);
        }
      }
      if (!items.empty()) items += ',';
      if (!refused.ok()) {
        // A single write fails whole; a batch answers per item and queues the others.
        if (shape == Shape::kSingle) return refused;
        items += DumpJson(RefusedJson(i, command.kind, command.product_id, refused));
        continue;
      }
      update.target_version = head + 1;
      update.payload = command.payload;
      absl::StatusOr<int64_t> seq = InsertUpdate(tx, update, now_ms);
      if (!seq.ok()) return seq.status();
      if (absl::Status status = SaveHead(tx, update.product_id, update.target_version);
          !status.ok()) {
        return status;
      }
      heads[update.product_id] = update.target_version;
      AppendAcceptedJson(items, update,
                         shape == Shape::kBatch ? std::optional<size_t>(i) : std::nullopt);
    }
    return StoredResponse{kAccepted,
                          shape == Shape::kBatch ? "{\"updates\":[" + items + "]}" : items};
  };
  RunIdempotent(std::move(idempotency), std::move(body), std::move(done), [this] {
    if (enqueued_) enqueued_();
  });
}

absl::StatusOr<StoredResponse> CatalogService::EnqueueAndWait(std::vector<WriteCommand> commands,
                                                              Shape shape,
                                                              IdempotencyRequest idempotency) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<StoredResponse>>>();
  std::future<absl::StatusOr<StoredResponse>> future = promise->get_future();
  Enqueue(
      std::move(commands), shape, std::move(idempotency),
      [promise](absl::StatusOr<StoredResponse> result) { promise->set_value(std::move(result)); });
  return future.get();
}

absl::StatusOr<std::optional<UpdateRecord>> CatalogService::GetUpdate(const std::string& id) {
  std::optional<UpdateRecord> record;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::optional<UpdateRecord>> loaded = LoadUpdate(tx, id);
    if (!loaded.ok()) return loaded.status();
    record = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return record;
}

absl::StatusOr<std::shared_ptr<const CachedProduct>> CatalogService::GetProduct(
    const std::string& key) {
  if (std::shared_ptr<const CachedProduct> cached = cache_.Get(key)) return cached;
  const uint64_t generation = cache_.generation();
  std::optional<StoredProduct> stored;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::optional<StoredProduct>> loaded = LoadProduct(tx, key);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->has_value()) {
      loaded = LoadProductByHandle(tx, key);
      if (!loaded.ok()) return loaded.status();
    }
    stored = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!stored || stored->product.status != ProductStatus::kActive) {
    return WithErrorCode(absl::NotFoundError(fmt::format("product {} not found", key)),
                         "product_not_found");
  }
  auto entry = std::make_shared<CachedProduct>();
  entry->id = stored->product.id;
  entry->handle = stored->product.handle;
  entry->etag = EtagFor(*stored);
  entry->body = DumpJson(ProductReadJson(stored->product, stored->rating));
  cache_.PutIfUnchanged(entry->id, entry, generation);
  cache_.PutIfUnchanged(entry->handle, entry, generation);
  return std::shared_ptr<const CachedProduct>(std::move(entry));
}

absl::StatusOr<std::optional<StoredProduct>> CatalogService::GetStoredProduct(
    const std::string& id) {
  std::optional<StoredProduct> stored;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::optional<StoredProduct>> loaded = LoadProduct(tx, id);
    if (!loaded.ok()) return loaded.status();
    stored = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return stored;
}

void CatalogService::InvalidateProduct(const std::string& id, const std::string& handle) {
  cache_.Invalidate(id);
  if (!handle.empty()) cache_.Invalidate(handle);
}

absl::StatusOr<ProductPage> CatalogService::ListProducts(const ProductQuery& query) {
  ProductPage page;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<ProductPage> loaded = catalog::ListProducts(tx, query);
    if (!loaded.ok()) return loaded.status();
    page = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return page;
}

absl::StatusOr<Json> CatalogService::CategoryTree() {
  std::vector<std::pair<std::string, int64_t>> counts;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::vector<std::pair<std::string, int64_t>>> loaded = CountByCategory(tx);
    if (!loaded.ok()) return loaded.status();
    counts = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  // Subtree counts: each product counts toward its category and every ancestor.
  std::map<std::string, int64_t> subtree;
  for (const auto& [path, count] : counts) {
    for (const std::string& ancestor : CategoryAncestors(path)) subtree[ancestor] += count;
  }
  // std::map orders a parent before its children ("a" < "a/b"), so one pass builds the tree.
  std::function<Json(const std::string&)> build = [&](const std::string& parent) {
    Json children = Json::array();
    const std::string prefix = parent.empty() ? "" : parent + "/";
    for (auto it = subtree.lower_bound(prefix); it != subtree.end(); ++it) {
      if (it->first.compare(0, prefix.size(), prefix) != 0) break;
      const std::string rest = it->first.substr(prefix.size());
      if (rest.empty() || rest.find('/') != std::string::npos) continue;
      children.push_back({{"path", it->first},
                          {"name", rest},
                          {"count", it->second},
                          {"children", build(it->first)}});
    }
    return children;
  };
  return Json{{"categories", build("")}};
}

void CatalogService::AddReview(const std::string& product_id, const std::string& customer_id,
                               const Json& input, IdempotencyRequest idempotency, Done done) {
  absl::StatusOr<Review> review =
      ReviewFromInput(input, ids_.Next(), product_id, customer_id, clock_.NowMs());
  if (!review.ok()) {
    done(review.status());
    return;
  }
  auto handle = std::make_shared<std::string>();
  Body body = [review = *review, handle](sql::Transaction& tx) -> absl::StatusOr<StoredResponse> {
    absl::StatusOr<std::optional<StoredProduct>> product = LoadProduct(tx, review.product_id);
    if (!product.ok()) return product.status();
    if (!product->has_value() || (*product)->product.status != ProductStatus::kActive) {
      return WithErrorCode(absl::NotFoundError("product not found"), "product_not_found");
    }
    *handle = (*product)->product.handle;
    absl::Status status = InsertReview(tx, review);
    if (absl::IsAlreadyExists(status)) {
      return WithErrorCode(absl::AlreadyExistsError("you already reviewed this product"),
                           "review_exists");
    }
    if (!status.ok()) return status;
    return StoredResponse{kCreated, DumpJson(ReviewToJson(review))};
  };
  RunIdempotent(std::move(idempotency), std::move(body), std::move(done),
                [this, product_id, handle] { InvalidateProduct(product_id, *handle); });
}

absl::StatusOr<std::vector<Review>> CatalogService::ListReviews(
    const std::string& product_id, std::optional<std::pair<int64_t, std::string>> after,
    int64_t limit) {
  std::vector<Review> reviews;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<std::vector<Review>> loaded =
        catalog::ListReviews(tx, product_id, std::move(after), limit);
    if (!loaded.ok()) return loaded.status();
    reviews = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return reviews;
}

absl::StatusOr<int64_t> CatalogService::QueuedCount() {
  int64_t count = 0;
  absl::Status status = database_.Read([&](sql::Transaction& tx) {
    absl::StatusOr<int64_t> loaded = CountQueuedUpdates(tx);
    if (!loaded.ok()) return loaded.status();
    count = *loaded;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return count;
}

}  // namespace emporium::catalog
