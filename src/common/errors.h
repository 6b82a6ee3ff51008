// Structured details on absl::Status, so an HTTP layer can render the one error shape
// {"error":{"type","code","message","param"}} without knowing who produced the error.
//
// `code` is a stable, machine-readable snake_case reason ("insufficient_stock"); `param` names
// the request field at fault ("lines[0].quantity"). Both ride as Status payloads.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace emporium {

// Attaches a machine-readable code / offending parameter to `status` and returns it.
absl::Status WithErrorCode(absl::Status status, std::string_view code);
absl::Status WithErrorParam(absl::Status status, std::string_view param);

std::optional<std::string> ErrorCode(const absl::Status& status);
std::optional<std::string> ErrorParam(const absl::Status& status);

// InvalidArgument naming the field at fault; `code` defaults to "invalid_param".
absl::Status InvalidParam(std::string_view param, std::string_view message,
                          std::string_view code = "invalid_param");

}  // namespace emporium
