#include "platform/context/principal.h"

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/context/staff_auth.h"

namespace emporium {
namespace {

absl::Status AuthenticationRequired() {
  return WithErrorCode(absl::UnauthenticatedError("send Authorization: Bearer <token>"),
                       "authentication_required");
}

}  // namespace

std::string_view PrincipalKindName(PrincipalKind kind) {
  switch (kind) {
    case PrincipalKind::kAnonymous:
      return "anonymous";
    case PrincipalKind::kCustomer:
      return "customer";
    case PrincipalKind::kStaff:
      return "staff";
  }
  return "anonymous";  // unreachable: the switch is exhaustive
}

void AttachPrincipal(http::Request& request, const Principal& principal) {
  request.attributes[std::string(kPrincipalKindAttribute)] =
      std::string(PrincipalKindName(principal.kind));
  request.attributes.erase(std::string(kPrincipalCustomerAttribute));
  request.attributes.erase(std::string(kPrincipalRoleAttribute));
  request.attributes.erase(std::string(kPrincipalKeyAttribute));
  switch (principal.kind) {
    case PrincipalKind::kAnonymous:
      break;
    case PrincipalKind::kCustomer:
      request.attributes[std::string(kPrincipalCustomerAttribute)] = principal.customer_id;
      break;
    case PrincipalKind::kStaff:
      request.attributes[std::string(kPrincipalRoleAttribute)] =
          std::string(RoleName(principal.role));
      request.attributes[std::string(kPrincipalKeyAttribute)] = principal.key_id;
      break;
  }
}

std::optional<Principal> PrincipalOf(const http::Request& request) {
  std::optional<std::string> kind = request.Attribute(kPrincipalKindAttribute);
  if (!kind.has_value()) return std::nullopt;
  if (*kind == "customer") {
    std::optional<std::string> id = request.Attribute(kPrincipalCustomerAttribute);
    if (!id.has_value() || id->empty()) return Principal::Anonymous();
    return Principal::Customer(*id);
  }
  if (*kind == "staff") {
    std::optional<Role> role = ParseRole(request.Attribute(kPrincipalRoleAttribute).value_or(""));
    if (!role.has_value()) return Principal::Anonymous();
    return Principal::Staff(*role, request.Attribute(kPrincipalKeyAttribute).value_or(""));
  }
  return Principal::Anonymous();
}

absl::StatusOr<std::string> RequireCustomer(const http::Request& request) {
  std::optional<Principal> principal = PrincipalOf(request);
  if (!principal.has_value()) return AuthenticationRequired();
  switch (principal->kind) {
    case PrincipalKind::kAnonymous:
      return AuthenticationRequired();
    case PrincipalKind::kCustomer:
      return principal->customer_id;
    case PrincipalKind::kStaff:
      return WithErrorCode(absl::PermissionDeniedError("this route is for customers"),
                           "customer_only");
  }
  return AuthenticationRequired();  // unreachable
}

absl::Status RequireRole(const http::Request& request, std::initializer_list<Role> roles) {
  std::optional<Principal> principal = PrincipalOf(request);
  if (!principal.has_value()) return AuthenticationRequired();
  switch (principal->kind) {
    case PrincipalKind::kAnonymous:
      return AuthenticationRequired();
    case PrincipalKind::kCustomer:
      break;
    case PrincipalKind::kStaff:
      if (principal->role == Role::kAdmin) return absl::OkStatus();
      for (Role role : roles) {
        if (role == principal->role) return absl::OkStatus();
      }
      break;
  }
  return WithErrorCode(absl::PermissionDeniedError("your role may not use this route"),
                       "insufficient_role");
}

absl::Status OwnedOrNotFound(const http::Request& request, std::string_view owner_customer_id,
                             std::string_view what, StaffAccess staff) {
  absl::Status not_found = WithErrorCode(absl::NotFoundError(fmt::format("{} not found", what)),
                                         fmt::format("{}_not_found", what));
  std::optional<Principal> principal = PrincipalOf(request);
  if (!principal.has_value()) return not_found;
  switch (principal->kind) {
    case PrincipalKind::kAnonymous:
      return not_found;
    case PrincipalKind::kCustomer:
      // Both must be non-empty: an unowned (guest) object is never "owned" by a customer.
      if (!owner_customer_id.empty() && principal->customer_id == owner_customer_id) {
        return absl::OkStatus();
      }
      return not_found;
    case PrincipalKind::kStaff:
      switch (staff) {
        case StaffAccess::kDenied:
          return not_found;
        case StaffAccess::kSupportAndAdmin:
          if (principal->role == Role::kAdmin || principal->role == Role::kSupport) {
            return absl::OkStatus();
          }
          return not_found;
      }
      return not_found;
  }
  return not_found;  // unreachable
}

bool AuthorizeStaff(const http::Request& request, const std::string& admin_api_key,
                    std::initializer_list<Role> roles, http::Response& denied) {
  if (!PrincipalOf(request).has_value()) return AuthorizeAdmin(request, admin_api_key, denied);
  absl::Status status = RequireRole(request, roles);
  if (status.ok()) return true;
  denied = http::ErrorResponse(status);
  if (absl::IsUnauthenticated(status)) denied.headers.Set("WWW-Authenticate", "Bearer");
  return false;
}

}  // namespace emporium
