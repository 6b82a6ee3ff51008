// Who is calling: the principal the gateway authenticates from `Authorization: Bearer` and
// attaches to every request it routes, and the checks handlers use to authorize on it.
//
// The rules every handler follows:
//  - a customer route calls RequireCustomer() and then reads or changes only objects whose
//    owner is that customer. An object owned by someone else answers 404 exactly like a
//    missing one (OwnedOrNotFound), so ids leak nothing.
//  - a staff route calls AuthorizeStaff()/RequireRole() with the roles it allows; admin is
//    always allowed. Anonymous callers get 401, others 403.
// The principal lives in Request::attributes ("principal", "customer_id", "role",
// "staff_key_id"); only the gateway
// writes them (clients cannot: attributes are not headers). A request dispatched in process
// without the gateway carries no principal at all; AuthorizeStaff then falls back to the
// admin bearer key so in-process tests and tools keep working.
//
// Thread-safety: free functions on values; thread-safe.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/context/role.h"
#include "platform/http/message.h"

namespace emporium {

enum class PrincipalKind { kAnonymous, kCustomer, kStaff };

struct Principal {
  PrincipalKind kind = PrincipalKind::kAnonymous;
  std::string customer_id;   // kCustomer only
  Role role = Role::kAdmin;  // kStaff only
  std::string key_id;        // kStaff: the staff key id ("admin-config" for admin.api_key)

  static Principal Anonymous() { return Principal{}; }
  static Principal Customer(std::string id) {
    return Principal{PrincipalKind::kCustomer, std::move(id), Role::kAdmin, ""};
  }
  static Principal Staff(Role staff_role, std::string staff_key_id) {
    return Principal{PrincipalKind::kStaff, "", staff_role, std::move(staff_key_id)};
  }
};

std::string_view PrincipalKindName(PrincipalKind kind);

// Attribute keys (stable: logs and other layers read them).
inline constexpr std::string_view kPrincipalKindAttribute = "principal";
inline constexpr std::string_view kPrincipalCustomerAttribute = "customer_id";
inline constexpr std::string_view kPrincipalRoleAttribute = "role";
inline constexpr std::string_view kPrincipalKeyAttribute = "staff_key_id";

// Writes `principal` into request.attributes, replacing any earlier one.
void AttachPrincipal(http::Request& request, const Principal& principal);
// The attached principal; nullopt when no gateway ran (in-process dispatch).
std::optional<Principal> PrincipalOf(const http::Request& request);

// The calling customer's id. Unauthenticated (401, code "authentication_required") for an
// anonymous caller or no principal; PermissionDenied (403, "customer_only") for staff.
absl::StatusOr<std::string> RequireCustomer(const http::Request& request);

// OK when the caller is staff with one of `roles` (admin always passes). Unauthenticated for
// anonymous / no principal, PermissionDenied ("insufficient_role") for customers and other
// roles.
absl::Status RequireRole(const http::Request& request, std::initializer_list<Role> roles);

// How staff may reach customer-owned objects on a customer route.
enum class StaffAccess { kDenied, kSupportAndAdmin };

// OK when the caller owns the object (owner_customer_id) or, with kSupportAndAdmin, is staff
// with role support or admin. Everyone else gets NotFound ("<what>_not_found") — the same
// answer as for an id that does not exist.
absl::Status OwnedOrNotFound(const http::Request& request, std::string_view owner_customer_id,
                             std::string_view what, StaffAccess staff = StaffAccess::kDenied);

// Staff-route guard for handlers: true when allowed; otherwise fills `denied` (401/403 in the
// error shape). With a principal attached (the gateway ran) it is RequireRole(roles); without
// one it falls back to AuthorizeAdmin(admin_api_key).
bool AuthorizeStaff(const http::Request& request, const std::string& admin_api_key,
                    std::initializer_list<Role> roles, http::Response& denied);

}  // namespace emporium
