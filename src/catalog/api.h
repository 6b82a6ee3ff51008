// The catalog's HTTP routes: staff writes (queued, answered 202), update status, product
// reads through the cache with ETags and CDN cache headers, listing with filters and cursor
// pagination, search with facets, the category tree, reviews and content-hashed static files.
// Handlers parse, call one service function and map the outcome; nothing else.
//
// Thread-safety: the handlers are safe to run concurrently on any number of io threads.
#pragma once

#include <string>

#include "catalog/processor.h"
#include "catalog/search.h"
#include "catalog/service.h"
#include "platform/http/router.h"

namespace emporium::catalog {

inline constexpr int64_t kProductMaxAgeSeconds = 60;
inline constexpr int64_t kProductStaleWhileRevalidateSeconds = 300;
inline constexpr int64_t kSearchRetryAfterSeconds = 5;
inline constexpr int64_t kSearchOffsetMax = 10'000;
inline constexpr size_t kStaticFileBytesMax = 16 << 20;

struct ApiDeps {
  CatalogService* service = nullptr;
  SearchIndex* search = nullptr;   // null: /search answers 503
  Processor* processor = nullptr;  // for reindex requests; may be null
  std::string admin_api_key;
  std::string static_directory;  // empty: no static files
};

void AddCatalogRoutes(http::Router& router, ApiDeps deps);

// Resolves `relative` inside `root` or returns nullopt for anything that could leave it
// (.., absolute paths, backslashes, NUL, symlinks pointing out). Exposed for tests.
std::optional<std::string> ResolveStaticPath(const std::string& root, const std::string& relative);

}  // namespace emporium::catalog
