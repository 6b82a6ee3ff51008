#include "accounts/model.h"

#include "gtest/gtest.h"

namespace emporium::accounts {
namespace {

TEST(EmailTest, NormalizesCaseAndSpace) {
  EXPECT_EQ(*NormalizeEmail("  Ada.Lovelace@Example.COM "), "ada.lovelace@example.com");
  EXPECT_EQ(*NormalizeEmail("a+tag@b.io"), "a+tag@b.io");
}

TEST(EmailTest, RejectsHostileAndMalformed) {
  for (const char* bad :
       {"", "plain", "a@b", "@b.com", "a@.com", "a@b..com", "a@b.com.", "a@@b.com", "a b@c.com",
        "a@b c.com", "a<script>@b.com", "a@b.com\r\nBcc: x@y.com", "a\n@b.com", "a@b_c.com"}) {
    EXPECT_FALSE(NormalizeEmail(bad).ok()) << bad;
  }
  EXPECT_FALSE(NormalizeEmail(std::string(65, 'a') + "@b.com").ok());
  EXPECT_FALSE(NormalizeEmail("a@" + std::string(300, 'b') + ".com").ok());
}

TEST(PasswordTest, Policy) {
  EXPECT_TRUE(ValidatePassword("correct horse battery", "a@b.com").ok());
  EXPECT_FALSE(ValidatePassword("short", "a@b.com").ok());
  EXPECT_FALSE(ValidatePassword(std::string(kPasswordBytesMax + 1, 'x'), "a@b.com").ok());
  EXPECT_FALSE(ValidatePassword(std::string("abcdefghij\0k", 12), "a@b.com").ok());
  EXPECT_FALSE(ValidatePassword("Someone@Example.com", "someone@example.com").ok());
}

TEST(AddressTest, FullAndPatch) {
  Json body = {{"name", "Ada"},
               {"line1", "1 Main St"},
               {"city", "London"},
               {"postal_code", "N1"},
               {"country", "gb"}};
  absl::StatusOr<AddressFields> address = ParseAddress(body, AddressInput::kFull);
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_EQ(address->country, "GB");
  Json missing = body;
  missing.erase("city");
  EXPECT_FALSE(ParseAddress(missing, AddressInput::kFull).ok());
  absl::StatusOr<AddressFields> patched =
      ParseAddress(Json{{"city", "Paris"}, {"country", "FR"}}, AddressInput::kPatch, *address);
  ASSERT_TRUE(patched.ok());
  EXPECT_EQ(patched->city, "Paris");
  EXPECT_EQ(patched->line1, "1 Main St");
  EXPECT_FALSE(ParseAddress(Json{{"evil", 1}}, AddressInput::kPatch, *address).ok());
  EXPECT_FALSE(ParseAddress(Json{{"city", ""}}, AddressInput::kPatch, *address).ok());
  EXPECT_FALSE(ParseAddress(Json{{"city", 5}}, AddressInput::kPatch, *address).ok());
  EXPECT_FALSE(ParseAddress(Json{{"country", "GBR"}}, AddressInput::kPatch, *address).ok());
  EXPECT_FALSE(ParseAddress(Json::array(), AddressInput::kPatch, *address).ok());
}

TEST(CredentialTest, ShapeAndEncoding) {
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_EQ(Base64UrlEncode("foobar"), "Zm9vYmFy");
  const std::string token = FormatCredential(kSessionTokenPrefix, std::string(32, '\x01'));
  EXPECT_EQ(token.size(), kSessionTokenPrefix.size() + 43);
  EXPECT_TRUE(HasCredentialShape(token, kSessionTokenPrefix));
  EXPECT_FALSE(HasCredentialShape(token, kStaffKeyPrefix));
  EXPECT_FALSE(HasCredentialShape(token + "A", kSessionTokenPrefix));
  std::string bad = token;
  bad.back() = '=';
  EXPECT_FALSE(HasCredentialShape(bad, kSessionTokenPrefix));
}

TEST(TokenBucketTest, BurstThenSustainedRate) {
  TokenBucketPolicy policy{3, 1};  // burst 3, 1 per second
  TokenBucket bucket = FullBucket(policy, 0);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Take(bucket, policy, 0).allowed);
  TakeResult denied = Take(bucket, policy, 0);
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after_ms, 1000);
  EXPECT_FALSE(Take(bucket, policy, 400).allowed);
  EXPECT_EQ(Take(bucket, policy, 400).retry_after_ms, 600);
  EXPECT_TRUE(Take(bucket, policy, 1000).allowed);
  // Never beyond capacity, however long the pause.
  EXPECT_TRUE(Take(bucket, policy, 1'000'000).allowed);
  EXPECT_NEAR(bucket.tokens, 2, 1e-9);
  // A clock that goes backwards refills nothing.
  TokenBucket empty{0, 5000};
  EXPECT_FALSE(Take(empty, policy, 1000).allowed);
}

TEST(TokenBucketTest, NoRefillMeansNever) {
  TokenBucketPolicy policy{1, 0};
  TokenBucket bucket = FullBucket(policy, 0);
  EXPECT_TRUE(Take(bucket, policy, 0).allowed);
  EXPECT_EQ(Take(bucket, policy, 10'000).retry_after_ms, -1);
}

TEST(RateLimiterTest, KeysAreIndependentAndBounded) {
  RateLimiter limiter(4);
  TokenBucketPolicy policy{1, 1};
  EXPECT_TRUE(limiter.Take("a", policy, 0).allowed);
  EXPECT_FALSE(limiter.Take("a", policy, 0).allowed);
  EXPECT_FALSE(limiter.Peek("a", policy, 0).allowed);
  EXPECT_TRUE(limiter.Take("b", policy, 0).allowed);
  for (int i = 0; i < 100; ++i) limiter.Take("k" + std::to_string(i), policy, 0);
  EXPECT_LE(limiter.size(), 4u);
  limiter.Reset("a");
  EXPECT_TRUE(limiter.Peek("a", policy, 0).allowed);
}

}  // namespace
}  // namespace emporium::accounts
