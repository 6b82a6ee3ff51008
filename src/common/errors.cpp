#include "common/errors.h"

#include "absl/strings/cord.h"

namespace emporium {
namespace {

// Debian builds Abseil with its own string_view type, distinct from std::string_view.
absl::string_view ToAbsl(std::string_view text) { return {text.data(), text.size()}; }

constexpr std::string_view kCodeUrl = "type.emporium.dev/error-code";
constexpr std::string_view kParamUrl = "type.emporium.dev/error-param";

std::optional<std::string> Payload(const absl::Status& status, std::string_view url) {
  absl::optional<absl::Cord> payload = status.GetPayload(ToAbsl(url));
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

}  // namespace

absl::Status WithErrorCode(absl::Status status, std::string_view code) {
  if (!status.ok()) status.SetPayload(ToAbsl(kCodeUrl), absl::Cord(ToAbsl(code)));
  return status;
}

absl::Status WithErrorParam(absl::Status status, std::string_view param) {
  if (!status.ok()) status.SetPayload(ToAbsl(kParamUrl), absl::Cord(ToAbsl(param)));
  return status;
}

std::optional<std::string> ErrorCode(const absl::Status& status) {
  return Payload(status, kCodeUrl);
}

std::optional<std::string> ErrorParam(const absl::Status& status) {
  return Payload(status, kParamUrl);
}

absl::Status InvalidParam(std::string_view param, std::string_view message, std::string_view code) {
  return WithErrorParam(WithErrorCode(absl::InvalidArgumentError(ToAbsl(message)), code), param);
}

}  // namespace emporium
