// The OpenAPI document (docs/openapi.yaml, embedded at build time) as JSON, and the list of
// routes it declares, so the server can serve it and a test can hold router and spec together.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"

namespace emporium::app {

// docs/openapi.yaml exactly as it was when the binary was built.
std::string_view OpenApiYaml();

// Converts YAML text to JSON: quoted scalars stay strings; plain scalars become null, booleans,
// integers or numbers where they read as such. InvalidArgument on malformed YAML.
absl::StatusOr<Json> YamlToJson(std::string_view yaml);

// The embedded document as JSON (parsed once; thread-safe).
absl::StatusOr<Json> OpenApiJson();

// (METHOD, path template) for every operation under `paths`, e.g. ("GET", "/api/v1/orders/{id}").
std::vector<std::pair<std::string, std::string>> OpenApiRoutes(const Json& document);

}  // namespace emporium::app
