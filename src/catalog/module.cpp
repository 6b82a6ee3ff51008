#include "catalog/module.h"

#include <future>

#include "catalog/api.h"
#include "catalog/seed.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/obs/log.h"

namespace emporium::catalog {
namespace {
constexpr int64_t kSeedBatchProducts = 1000;
}  // namespace

CatalogModule::CatalogModule(CatalogOptions options) : options_(std::move(options)) {}

CatalogModule::~CatalogModule() { Stop(); }

absl::Status CatalogModule::Wire(const ContextDeps& deps, http::Router& router) {
  if (deps.database == nullptr) return absl::InvalidArgumentError("catalog needs its database");
  ids_ = std::make_unique<UuidV7Generator>(*options_.clock);
  cache_ = std::make_unique<ProductCache>(options_.cache_bytes_max);
  service_ = std::make_unique<CatalogService>(*deps.database, *options_.clock, *ids_, *cache_);
  if (!options_.search_directory.empty()) {
    search_ = std::make_unique<SearchIndex>(options_.search_directory);
    if (absl::Status status = search_->Open(); !status.ok()) {
      // Product pages keep serving; /search answers 503 until the index opens.
      obs::Logger("catalog").Warn("search index unavailable",
                                  {{"error", std::string(status.message())}});
    }
  }
  if (deps.bus != nullptr) {
    // The availability read model behind ?in_stock=; without a bus (tools, some tests) the
    // filter sees only what earlier runs stored.
    const Clock* clock = options_.clock;
    absl::Status subscribed = deps.bus->Subscribe(
        std::string(kAvailabilityConsumer), *deps.database, {std::string(kAvailabilityChangedType)},
        [clock](sql::Transaction& tx, const bus::Envelope& envelope) {
          return HandleAvailabilityChanged(tx, envelope, clock->NowMs());
        });
    if (!subscribed.ok()) return subscribed;
  }
  processor_ = std::make_unique<Processor>(*deps.database, *options_.clock, *ids_, *service_,
                                           search_.get(), options_.processor);
  Processor* processor = processor_.get();
  service_->set_enqueued_listener([processor] { processor->Notify(); });
  ApiDeps api;
  api.service = service_.get();
  api.search = search_.get();
  api.processor = processor;
  api.admin_api_key = deps.admin_api_key;
  api.static_directory = options_.static_directory;
  AddCatalogRoutes(router, std::move(api));
  return absl::OkStatus();
}

absl::Status CatalogModule::Start() {
  if (processor_) processor_->Start();
  return absl::OkStatus();
}

void CatalogModule::Stop() {
  if (processor_) processor_->Stop();
}

std::string CatalogModule::ReadinessProblem() const {
  // Search being down degrades /search only; the catalog still serves products.
  return "";
}

absl::StatusOr<int64_t> SeedCatalog(sql::Database& database, CatalogService& service,
                                    Processor& processor, int64_t count, uint64_t seed,
                                    SeedMode mode) {
  if (mode == SeedMode::kOnlyIfEmpty) {
    int64_t existing = 0;
    absl::Status read = database.Read([&](sql::Transaction& tx) {
      absl::StatusOr<int64_t> products = CountProducts(tx);
      if (!products.ok()) return products.status();
      absl::StatusOr<int64_t> queued = CountQueuedUpdates(tx);
      if (!queued.ok()) return queued.status();
      existing = *products + *queued;
      return absl::OkStatus();
    });
    if (!read.ok()) return read;
    if (existing > 0) return 0;
  }
  std::vector<std::string> product_ids;
  for (int64_t start = 0; start < count; start += kSeedBatchProducts) {
    std::vector<WriteCommand> commands;
    for (int64_t index = start; index < std::min(count, start + kSeedBatchProducts); ++index) {
      WriteCommand command;
      command.kind = UpdateKind::kCreate;
      command.payload = SeedProduct(seed, index);
      if (absl::Status status = CatalogService::Validate(command); !status.ok()) return status;
      commands.push_back(std::move(command));
    }
    absl::StatusOr<StoredResponse> response = service.EnqueueAndWait(
        std::move(commands), CatalogService::Shape::kBatch,
        IdempotencyRequest{fmt::format("seed-{}-{}-{}", seed, count, start), ""});
    if (!response.ok()) return response.status();
    absl::StatusOr<Json> body = ParseJson(response->body);
    if (!body.ok()) return body.status();
    for (const Json& update : (*body)["updates"]) {
      product_ids.push_back(update["product_id"].get<std::string>());
    }
    if (absl::Status status = processor.Drain(); !status.ok()) return status;
  }
  // Reviews go in concurrently (bounded by kSeedBatchProducts in flight), so group commit
  // puts many of them behind each fsync.
  std::vector<std::future<absl::Status>> pending;
  auto wait_all = [&pending]() -> absl::Status {
    for (std::future<absl::Status>& future : pending) {
      absl::Status status = future.get();
      if (!status.ok() && !absl::IsAlreadyExists(status)) return status;
    }
    pending.clear();
    return absl::OkStatus();
  };
  for (size_t index = 0; index < product_ids.size(); ++index) {
    for (const Json& review : SeedReviews(seed, static_cast<int64_t>(index))) {
      auto done = std::make_shared<std::promise<absl::Status>>();
      pending.push_back(done->get_future());
      // Seeded reviewers are synthetic customers named after their display name.
      service.AddReview(
          product_ids[index], fmt::format("seed-{}", review.value("author", "")), review,
          IdempotencyRequest{},
          [done](absl::StatusOr<StoredResponse> result) { done->set_value(result.status()); });
    }
    if (pending.size() >= static_cast<size_t>(kSeedBatchProducts)) {
      if (absl::Status status = wait_all(); !status.ok()) return status;
    }
  }
  if (absl::Status status = wait_all(); !status.ok()) return status;
  return static_cast<int64_t>(product_ids.size());
}

}  // namespace emporium::catalog
