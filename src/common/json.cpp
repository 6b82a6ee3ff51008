#include "common/json.h"

#include <algorithm>

#include "common/errors.h"
#include "fmt/format.h"

namespace emporium {

std::string ParamPath(std::string_view prefix, std::string_view field) {
  if (prefix.empty()) return std::string(field);
  return fmt::format("{}.{}", prefix, field);
}

int JsonNestingDepth(std::string_view text) {
  int depth = 0;
  int depth_max = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      depth_max = std::max(depth_max, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return depth_max;
}

absl::StatusOr<Json> ParseJson(std::string_view text) {
  Json parsed = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return WithErrorCode(absl::InvalidArgumentError("request body is not valid JSON"),
                         "invalid_json");
  }
  return parsed;
}

absl::StatusOr<Json> ParseJsonObject(std::string_view text) {
  absl::StatusOr<Json> parsed = ParseJson(text);
  if (!parsed.ok()) return parsed;
  if (!parsed->is_object()) {
    return WithErrorCode(absl::InvalidArgumentError("request body must be a JSON object"),
                         "invalid_json");
  }
  return parsed;
}

absl::StatusOr<std::optional<std::string>> OptionalString(const Json& object,
                                                          std::string_view field, size_t max_length,
                                                          std::string_view param) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return InvalidParam(ParamPath(param, field), "must be a string");
  const auto& value = it->get_ref<const std::string&>();
  if (value.size() > max_length) {
    return InvalidParam(ParamPath(param, field),
                        fmt::format("must be at most {} bytes", max_length));
  }
  return std::optional<std::string>(value);
}

absl::StatusOr<std::string> RequireString(const Json& object, std::string_view field,
                                          size_t max_length, std::string_view param) {
  absl::StatusOr<std::optional<std::string>> value =
      OptionalString(object, field, max_length, param);
  if (!value.ok()) return value.status();
  if (!value->has_value() || (*value)->empty()) {
    return InvalidParam(ParamPath(param, field), "is required", "missing_param");
  }
  return std::move(**value);
}

absl::StatusOr<std::optional<int64_t>> OptionalInt(const Json& object, std::string_view field,
                                                   int64_t min, int64_t max,
                                                   std::string_view param) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) return InvalidParam(ParamPath(param, field), "must be an integer");
  int64_t value = 0;
  if (it->is_number_unsigned()) {
    const auto unsigned_value = it->get<uint64_t>();
    if (unsigned_value > static_cast<uint64_t>(max)) {
      return InvalidParam(ParamPath(param, field), fmt::format("must be at most {}", max));
    }
    value = static_cast<int64_t>(unsigned_value);
  } else {
    value = it->get<int64_t>();
  }
  if (value < min || value > max) {
    return InvalidParam(ParamPath(param, field),
                        fmt::format("must be between {} and {}", min, max));
  }
  return std::optional<int64_t>(value);
}

absl::StatusOr<int64_t> RequireInt(const Json& object, std::string_view field, int64_t min,
                                   int64_t max, std::string_view param) {
  absl::StatusOr<std::optional<int64_t>> value = OptionalInt(object, field, min, max, param);
  if (!value.ok()) return value.status();
  if (!value->has_value()) {
    return InvalidParam(ParamPath(param, field), "is required", "missing_param");
  }
  return **value;
}

absl::StatusOr<bool> OptionalBool(const Json& object, std::string_view field, bool fallback,
                                  std::string_view param) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return InvalidParam(ParamPath(param, field), "must be true or false");
  return it->get<bool>();
}

std::string DumpJson(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace emporium
