#include "platform/context/principal.h"

#include "gtest/gtest.h"

namespace emporium {
namespace {

http::Request WithPrincipal(const Principal& principal) {
  http::Request request;
  AttachPrincipal(request, principal);
  return request;
}

TEST(PrincipalTest, RoundTripsThroughAttributes) {
  std::optional<Principal> customer = PrincipalOf(WithPrincipal(Principal::Customer("c1")));
  ASSERT_TRUE(customer.has_value());
  EXPECT_EQ(customer->kind, PrincipalKind::kCustomer);
  EXPECT_EQ(customer->customer_id, "c1");
  std::optional<Principal> staff = PrincipalOf(WithPrincipal(Principal::Staff(Role::kOps, "k")));
  ASSERT_TRUE(staff.has_value());
  EXPECT_EQ(staff->role, Role::kOps);
  EXPECT_FALSE(PrincipalOf(http::Request{}).has_value());
}

TEST(PrincipalTest, RequireCustomer) {
  EXPECT_EQ(*RequireCustomer(WithPrincipal(Principal::Customer("c1"))), "c1");
  EXPECT_TRUE(absl::IsUnauthenticated(RequireCustomer(http::Request{}).status()));
  EXPECT_TRUE(
      absl::IsUnauthenticated(RequireCustomer(WithPrincipal(Principal::Anonymous())).status()));
  EXPECT_TRUE(absl::IsPermissionDenied(
      RequireCustomer(WithPrincipal(Principal::Staff(Role::kAdmin, "k"))).status()));
}

TEST(PrincipalTest, RequireRoleAdminAlwaysPasses) {
  for (Role role : kAllRoles) {
    absl::Status status =
        RequireRole(WithPrincipal(Principal::Staff(role, "k")), {Role::kCatalogManager});
    EXPECT_EQ(status.ok(), role == Role::kAdmin || role == Role::kCatalogManager) << RoleName(role);
  }
  EXPECT_TRUE(
      absl::IsPermissionDenied(RequireRole(WithPrincipal(Principal::Customer("c")), {Role::kOps})));
  EXPECT_TRUE(absl::IsUnauthenticated(RequireRole(WithPrincipal(Principal::Anonymous()), {})));
}

TEST(PrincipalTest, OwnershipMismatchIsNotFound) {
  http::Request owner = WithPrincipal(Principal::Customer("c1"));
  http::Request other = WithPrincipal(Principal::Customer("c2"));
  EXPECT_TRUE(OwnedOrNotFound(owner, "c1", "order").ok());
  absl::Status status = OwnedOrNotFound(other, "c1", "order");
  EXPECT_TRUE(absl::IsNotFound(status));
  EXPECT_EQ(http::ErrorResponse(status).status, 404);
  EXPECT_TRUE(absl::IsNotFound(OwnedOrNotFound(owner, "", "order")));
  http::Request support = WithPrincipal(Principal::Staff(Role::kSupport, "k"));
  EXPECT_TRUE(absl::IsNotFound(OwnedOrNotFound(support, "c1", "order")));
  EXPECT_TRUE(OwnedOrNotFound(support, "c1", "order", StaffAccess::kSupportAndAdmin).ok());
  http::Request ops = WithPrincipal(Principal::Staff(Role::kOps, "k"));
  EXPECT_TRUE(absl::IsNotFound(OwnedOrNotFound(ops, "c1", "order", StaffAccess::kSupportAndAdmin)));
}

TEST(PrincipalTest, AuthorizeStaffFallsBackToAdminKeyWithoutGateway) {
  http::Request request;
  request.headers.Set("Authorization", "Bearer secret");
  http::Response denied;
  EXPECT_TRUE(AuthorizeStaff(request, "secret", {Role::kOps}, denied));
  AttachPrincipal(request, Principal::Customer("c1"));
  EXPECT_FALSE(AuthorizeStaff(request, "secret", {Role::kOps}, denied));
  EXPECT_EQ(denied.status, 403);
  AttachPrincipal(request, Principal::Anonymous());
  EXPECT_FALSE(AuthorizeStaff(request, "secret", {Role::kOps}, denied));
  EXPECT_EQ(denied.status, 401);
}

TEST(RoleTest, NamesRoundTrip) {
  for (Role role : kAllRoles) EXPECT_EQ(ParseRole(RoleName(role)), role);
  EXPECT_FALSE(ParseRole("Admin").has_value());
  EXPECT_FALSE(ParseRole("").has_value());
}

}  // namespace
}  // namespace emporium
