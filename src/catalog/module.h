// CatalogModule: the catalog context as the composition root sees it. Owns the cache, the
// search index, the service and the processor thread, and adds the catalog's routes. With a bus,
// Wire subscribes consumer "catalog.availability" to inventory.availability_changed, which keeps
// the SKU availability read model behind GET /api/v1/products?in_stock=.
//
// Thread-safety: Wire/Start/Stop from the app's owner thread (see ContextModule);
// ReadinessProblem from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "catalog/cache.h"
#include "catalog/processor.h"
#include "catalog/search.h"
#include "catalog/service.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/context/context_module.h"

namespace emporium::catalog {

struct CatalogOptions {
  std::string search_directory;  // Xapian index; empty: search disabled (503)
  std::string static_directory;  // content-hashed static files; empty: none
  size_t cache_bytes_max = size_t{256} << 20;
  ProcessorOptions processor;
  const Clock* clock = &SystemClock::Instance();
};

class CatalogModule final : public ContextModule {
 public:
  explicit CatalogModule(CatalogOptions options);
  ~CatalogModule() override;

  std::string_view name() const override { return "catalog"; }
  std::vector<sql::Migration> Migrations() const override { return CatalogMigrations(); }
  absl::Status Wire(const ContextDeps& deps, http::Router& router) override;
  absl::Status Start() override;
  void Stop() override;
  std::string ReadinessProblem() const override;

  // Available after Wire (tests, seeding).
  CatalogService& service() { return *service_; }
  Processor& processor() { return *processor_; }
  SearchIndex* search() { return search_.get(); }
  ProductCache& cache() { return *cache_; }

 private:
  CatalogOptions options_;
  std::unique_ptr<UuidV7Generator> ids_;
  std::unique_ptr<ProductCache> cache_;
  std::unique_ptr<SearchIndex> search_;
  std::unique_ptr<CatalogService> service_;
  std::unique_ptr<Processor> processor_;
};

// Seeds `count` demo products (and their reviews) through the update queue and waits until
// the processor has applied them. Skips when the catalog already has products and
// `only_if_empty`. `processor` must not be running its thread.
enum class SeedMode { kAlways, kOnlyIfEmpty };
absl::StatusOr<int64_t> SeedCatalog(sql::Database& database, CatalogService& service,
                                    Processor& processor, int64_t count, uint64_t seed,
                                    SeedMode mode);

}  // namespace emporium::catalog
