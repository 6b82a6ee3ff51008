#include "platform/context/staff_auth.h"

namespace emporium {

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Length is not secret; the contents are compared without an early exit.
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

bool AuthorizeAdmin(const http::Request& request, const std::string& admin_api_key,
                    http::Response& denied) {
  std::optional<std::string_view> header = request.Header("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (!header.has_value() || header->substr(0, kBearer.size()) != kBearer) {
    denied = http::ErrorResponse(401, "authentication_error", "missing_credentials",
                                 "send Authorization: Bearer <admin api key>");
    denied.headers.Set("WWW-Authenticate", "Bearer");
    return false;
  }
  if (admin_api_key.empty() || !ConstantTimeEquals(header->substr(kBearer.size()), admin_api_key)) {
    denied = http::ErrorResponse(401, "authentication_error", "invalid_credentials",
                                 "the API key is not valid");
    denied.headers.Set("WWW-Authenticate", "Bearer");
    return false;
  }
  return true;
}

}  // namespace emporium
