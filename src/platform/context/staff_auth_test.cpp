#include "platform/context/staff_auth.h"

#include "gtest/gtest.h"

namespace emporium {
namespace {

http::Request WithAuthorization(std::string value) {
  http::Request request;
  request.headers.Add("Authorization", std::move(value));
  return request;
}

TEST(StaffAuthTest, AcceptsOnlyTheExactBearerKey) {
  http::Response denied;
  EXPECT_TRUE(AuthorizeAdmin(WithAuthorization("Bearer s3cret"), "s3cret", denied));
  EXPECT_FALSE(AuthorizeAdmin(WithAuthorization("Bearer s3cre"), "s3cret", denied));
  EXPECT_EQ(denied.status, 401);
  EXPECT_FALSE(AuthorizeAdmin(WithAuthorization("Bearer s3cretX"), "s3cret", denied));
  EXPECT_FALSE(AuthorizeAdmin(WithAuthorization("Basic s3cret"), "s3cret", denied));
  EXPECT_FALSE(AuthorizeAdmin(http::Request{}, "s3cret", denied));
  EXPECT_EQ(denied.headers.Get("WWW-Authenticate"), "Bearer");
}

TEST(StaffAuthTest, AnEmptyConfiguredKeyDeniesEveryone) {
  http::Response denied;
  EXPECT_FALSE(AuthorizeAdmin(WithAuthorization("Bearer "), "", denied));
  EXPECT_EQ(denied.status, 401);
  EXPECT_NE(denied.body.find("invalid_credentials"), std::string::npos);
}

TEST(StaffAuthTest, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace emporium
