#include "common/json.h"

#include <algorithm>
#include <cstdint>
#include <string>

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

bool IsValidUtf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint32_t min = 0;
    uint32_t code = 0;
    if ((lead & 0xE0) == 0xC0) {
      length = 2;
      min = 0x80;
      code = lead & 0x1Fu;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      min = 0x800;
      code = lead & 0x0Fu;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      min = 0x10000;
      code = lead & 0x07u;
    } else {
      return false;
    }
    if (size - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char next = bytes[i + k];
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3Fu);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += length;
  }
  return true;
}

void AppendJsonString(std::string& out, std::string_view text) {
  if (!IsValidUtf8(text)) {
    out += DumpJson(Json(std::string(text)));
    return;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t run_start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + run_start, i - run_start);
    run_start = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(escaped, sizeof(escaped));
        break;
      }
    }
  }
  out.append(text.data() + run_start, text.size() - run_start);
  out += '"';
}

void AppendJsonStringArray(std::string& out, const std::vector<std::string>& items) {
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(out, items[i]);
  }
  out += ']';
}

}  // namespace emporium
