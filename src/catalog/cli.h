// The catalog's command-line tasks, called by `emporium seed` and `emporium catalog reindex`.
// Both open the catalog's database and index under `data_dir` directly, so run them with the
// server stopped (a running server holds the index's write lock; ask it to rebuild with
// POST /api/v1/admin/catalog/reindex instead).
//
// Thread-safety: one call at a time per data directory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "catalog/module.h"
#include "platform/sql/database.h"

namespace emporium::catalog {

// Opens (creating the directory if needed) `data_dir`/catalog.db with the bus schema and the
// catalog's migrations applied.
absl::StatusOr<std::unique_ptr<sql::Database>> OpenCatalogDatabase(const std::string& data_dir);

// Seeds `count` demo products through the update queue; returns how many were added (0 when
// `mode` is kOnlyIfEmpty and the catalog already has products).
absl::StatusOr<int64_t> SeedDataDir(const std::string& data_dir, int64_t count, uint64_t seed,
                                    SeedMode mode);

// Rebuilds the search index from the store; returns the number of indexed documents.
absl::StatusOr<int64_t> ReindexDataDir(const std::string& data_dir);

}  // namespace emporium::catalog
