// fmt formatters for Abseil types. Debian's Abseil has its own absl::string_view (not
// std::string_view), which fmt does not know; include this header to format it and
// absl::Status directly: fmt::format("{}", status.message()), fmt::format("{}", status).
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "fmt/format.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view text, FormatContext& context) const {
    return fmt::formatter<std::string_view>::format(std::string_view(text.data(), text.size()),
                                                    context);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<std::string_view> {
  template <typename FormatContext>
  auto format(const absl::Status& status, FormatContext& context) const {
    return fmt::formatter<std::string_view>::format(status.ToString(), context);
  }
};
