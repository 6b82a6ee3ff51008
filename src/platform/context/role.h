// Staff roles and what each may do, shared by the accounts context (which issues staff keys),
// the gateway (which attaches the caller's role) and every context's staff routes.
//
// Pure values; thread-safe.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace emporium {

enum class Role {
  kAdmin,           // everything, including staff keys
  kCatalogManager,  // products, prices, categories, search index
  kSupport,         // customers' orders and payments (read, refund, fraud review)
  kOps,             // inventory, dead letters, fulfillment
};

inline constexpr std::array<Role, 4> kAllRoles = {Role::kAdmin, Role::kCatalogManager,
                                                  Role::kSupport, Role::kOps};

// "admin", "catalog_manager", "support", "ops".
constexpr std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kCatalogManager:
      return "catalog_manager";
    case Role::kSupport:
      return "support";
    case Role::kOps:
      return "ops";
  }
  return "unknown";  // unreachable: the switch is exhaustive
}

// The role named `name` (exact, lower-case), or nullopt.
constexpr std::optional<Role> ParseRole(std::string_view name) {
  for (Role role : kAllRoles) {
    if (RoleName(role) == name) return role;
  }
  return std::nullopt;
}

}  // namespace emporium
