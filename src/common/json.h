// JSON helpers over nlohmann::json that turn malformed or missing fields into
// InvalidParam errors naming the field, so every API reports bad input the same way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace emporium {

using Json = nlohmann::json;

// Parses `text`; InvalidArgument (code "invalid_json") with the parser's position on failure.
// Never throws.
absl::StatusOr<Json> ParseJson(std::string_view text);

// Parses a request body that must be a JSON object.
absl::StatusOr<Json> ParseJsonObject(std::string_view text);

// Required / optional typed fields of an object. `param` prefixes the field name in errors
// ("lines[2]" + "sku" -> "lines[2].sku").
absl::StatusOr<std::string> RequireString(const Json& object, std::string_view field,
                                          size_t max_length = 1024, std::string_view param = "");
absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object,
                                                          std::string_view field,
                                                          size_t max_length = 1024,
                                                          std::string_view param = "");
absl::StatusOr<int64_t> RequireInt(const Json& object, std::string_view field, int64_t min,
                                   int64_t max, std::string_view param = "");
absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, std::string_view field,
                                                   int64_t min, int64_t max,
                                                   std::string_view param = "");
absl::StatusOr<bool> OptionalBool(const Json& object, std::string_view field, bool fallback,
                                  std::string_view param = "");

// Deepest nesting of arrays/objects in JSON `text`, ignoring brackets inside strings. Cheap, and
// meant to run before parsing hostile input: nlohmann's parser is iterative, but destroying and
// dumping deeply nested values recurse.
int JsonNestingDepth(std::string_view text);

// "prefix.field" or "field" when prefix is empty.
std::string ParamPath(std::string_view prefix, std::string_view field);

// Serializes compactly; invalid UTF-8 is replaced rather than thrown on.
std::string DumpJson(const Json& value);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past
// U+10FFFF): the input DumpJson writes through unchanged.
bool IsValidUtf8(std::string_view text);

// Appends `text` as a JSON string, the bytes DumpJson writes for it (nlohmann's escaping, UTF-8
// passed through; invalid UTF-8 goes through the DOM, whose replacement rules stay the one
// definition of how such input is repaired). For hot paths that format JSON without a DOM.
void AppendJsonString(std::string& out, std::string_view text);
// Appends `items` as a JSON array of strings, each as AppendJsonString writes it.
void AppendJsonStringArray(std::string& out, const std::vector<std::string>& items);

}  // namespace emporium
