#include "catalog/cli.h"

#include <filesystem>

#include "common/format.h"
#include "fmt/format.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::catalog {

absl::StatusOr<std::unique_ptr<sql::Database>> OpenCatalogDatabase(const std::string& data_dir) {
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) return absl::UnavailableError(fmt::format("cannot create {}", data_dir));
  sql::SqliteOptions options;
  options.path = fmt::format("{}/catalog.db", data_dir);
  options.name = "catalog";
  absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
  if (!database.ok()) return database.status();
  if (absl::Status status = bus::InstallBusSchema(**database); !status.ok()) return status;
  if (absl::Status status = sql::ApplyMigrations(**database, "catalog", CatalogMigrations());
      !status.ok()) {
    return status;
  }
  return database;
}

absl::StatusOr<int64_t> SeedDataDir(const std::string& data_dir, int64_t count, uint64_t seed,
                                    SeedMode mode) {
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenCatalogDatabase(data_dir);
  if (!database.ok()) return database.status();
  CatalogOptions options;
  options.search_directory = fmt::format("{}/catalog_search", data_dir);
  CatalogModule module(options);
  http::Router unused_router;
  ContextDeps deps;
  deps.database = database->get();
  if (absl::Status status = module.Wire(deps, unused_router); !status.ok()) return status;
  absl::StatusOr<int64_t> seeded =
      SeedCatalog(**database, module.service(), module.processor(), count, seed, mode);
  (*database)->Close();
  return seeded;
}

absl::StatusOr<int64_t> ReindexDataDir(const std::string& data_dir) {
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenCatalogDatabase(data_dir);
  if (!database.ok()) return database.status();
  SearchIndex index(fmt::format("{}/catalog_search", data_dir));
  if (absl::Status status = index.Open(); !status.ok()) {
    return absl::UnavailableError(fmt::format(
        "{} (is the server running? then POST /api/v1/admin/catalog/reindex)", status.message()));
  }
  ProductCache cache(1 << 20);
  UuidV7Generator ids(SystemClock::Instance());
  CatalogService service(**database, SystemClock::Instance(), ids, cache);
  Processor processor(**database, SystemClock::Instance(), ids, service, &index);
  absl::Status status = processor.RebuildSearch();
  (*database)->Close();
  if (!status.ok()) return status;
  return index.document_count();
}

}  // namespace emporium::catalog
