#include "accounts/service.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "platform/bus/schema.h"
#include "platform/http/message.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::accounts {
namespace {

constexpr char kPassword[] = "correct horse battery staple";

class AccountsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sql::SqliteOptions options;
    options.path = dir_.File("accounts.db");
    options.name = "accounts";
    absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
    ASSERT_TRUE(database.ok()) << database.status();
    database_ = std::move(*database);
    ASSERT_TRUE(bus::InstallBusSchema(*database_).ok());
    ASSERT_TRUE(sql::ApplyMigrations(*database_, "accounts", AccountsMigrations()).ok());
    AccountsOptions options_accounts;
    options_accounts.hashing = PasswordHashing{1, 1024, 1};  // cheap for tests
    options_accounts.session_ttl_ms = 3'600'000;
    options_accounts.admin_api_key = "legacy-admin-key";
    service_ = std::make_unique<AccountsService>(*database_, clock_, ids_, options_accounts);
  }
  void TearDown() override {
    service_.reset();
    if (database_) database_->Close();
  }

  SignUpResult MustSignUp(const std::string& email) {
    absl::StatusOr<SignUpResult> result = service_->SignUp(email, kPassword, "Ada");
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : SignUpResult{};
  }

  sql::TempDir dir_;
  ManualClock clock_;
  SequentialIdGenerator ids_{"acc_"};
  std::unique_ptr<sql::Database> database_;
  std::unique_ptr<AccountsService> service_;
};

TEST_F(AccountsServiceTest, SignUpLogsInAndAuthenticates) {
  SignUpResult signed_up = MustSignUp(" Ada@Example.com ");
  EXPECT_EQ(signed_up.customer.email, "ada@example.com");
  EXPECT_TRUE(signed_up.customer.password_hash.rfind("$argon2id$", 0) == 0);
  absl::StatusOr<Principal> principal = service_->Authenticate(signed_up.session.token);
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->kind, PrincipalKind::kCustomer);
  EXPECT_EQ(principal->customer_id, signed_up.customer.id);

  absl::StatusOr<LoginResult> login = service_->Login("ADA@example.com", kPassword);
  ASSERT_TRUE(login.ok()) << login.status();
  EXPECT_NE(login->session.token, signed_up.session.token);
  EXPECT_TRUE(service_->Authenticate(login->session.token).ok());
}

TEST_F(AccountsServiceTest, DuplicateEmailAndBadInput) {
  MustSignUp("ada@example.com");
  EXPECT_TRUE(absl::IsAlreadyExists(service_->SignUp("ADA@example.com", kPassword, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(service_->SignUp("not-an-email", kPassword, "").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(service_->SignUp("b@example.com", "short", "").status()));
}

TEST_F(AccountsServiceTest, WrongPasswordAndUnknownEmailLookTheSame) {
  MustSignUp("ada@example.com");
  absl::Status wrong = service_->Login("ada@example.com", "wrong password!").status();
  absl::Status unknown = service_->Login("nobody@example.com", kPassword).status();
  EXPECT_TRUE(absl::IsUnauthenticated(wrong));
  EXPECT_EQ(wrong, unknown);
}

TEST_F(AccountsServiceTest, BruteForceLoginIsThrottledPerAccount) {
  MustSignUp("ada@example.com");
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(absl::IsUnauthenticated(
        service_->Login("ada@example.com", "guess-000" + std::to_string(i)).status()));
  }
  absl::Status throttled = service_->Login("ada@example.com", kPassword).status();
  EXPECT_TRUE(absl::IsResourceExhausted(throttled)) << throttled;
  ASSERT_TRUE(RetryAfterMs(throttled).has_value());
  EXPECT_GT(*RetryAfterMs(throttled), 0);
  // Even the right password waits: the throttle comes before the check.
  clock_.Advance(absl::Seconds(61));
  EXPECT_TRUE(service_->Login("ada@example.com", kPassword).ok());
  // Unknown accounts are throttled the same way.
  for (int i = 0; i < 5; ++i) static_cast<void>(service_->Login("ghost@example.com", "x"));
  EXPECT_TRUE(absl::IsResourceExhausted(service_->Login("ghost@example.com", kPassword).status()));
}

TEST_F(AccountsServiceTest, SessionsExpire) {
  SignUpResult signed_up = MustSignUp("ada@example.com");
  clock_.Advance(absl::Minutes(59));
  EXPECT_TRUE(service_->Authenticate(signed_up.session.token).ok());
  clock_.Advance(absl::Minutes(1));
  EXPECT_TRUE(absl::IsUnauthenticated(service_->Authenticate(signed_up.session.token).status()));
}

TEST_F(AccountsServiceTest, LogoutRevokes) {
  SignUpResult signed_up = MustSignUp("ada@example.com");
  ASSERT_TRUE(service_->Logout(signed_up.session.token).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(service_->Authenticate(signed_up.session.token).status()));
  EXPECT_TRUE(service_->Logout(signed_up.session.token).ok());  // idempotent
}

TEST_F(AccountsServiceTest, PasswordChangeRevokesOtherSessions) {
  SignUpResult signed_up = MustSignUp("ada@example.com");
  absl::StatusOr<LoginResult> other = service_->Login("ada@example.com", kPassword);
  ASSERT_TRUE(other.ok());
  // Both sessions are now in the session cache; the change must evict the other one.
  EXPECT_TRUE(service_->Authenticate(signed_up.session.token).ok());
  EXPECT_TRUE(service_->Authenticate(other->session.token).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(service_->ChangePassword(
      signed_up.customer.id, signed_up.session.token, "not the password", "a brand new password")));
  ASSERT_TRUE(service_
                  ->ChangePassword(signed_up.customer.id, signed_up.session.token, kPassword,
                                   "a brand new password")
                  .ok());
  EXPECT_TRUE(service_->Authenticate(signed_up.session.token).ok());
  EXPECT_FALSE(service_->Authenticate(other->session.token).ok());
  EXPECT_FALSE(service_->Login("ada@example.com", kPassword).ok());
  EXPECT_TRUE(service_->Login("ada@example.com", "a brand new password").ok());
}

TEST_F(AccountsServiceTest, AddressesBelongToTheirOwner) {
  SignUpResult ada = MustSignUp("ada@example.com");
  SignUpResult bob = MustSignUp("bob@example.com");
  AddressFields fields{"home", "Ada", "1 Main St", "", "London", "", "N1", "GB", ""};
  absl::StatusOr<AddressRecord> address = service_->CreateAddress(ada.customer.id, fields);
  ASSERT_TRUE(address.ok()) << address.status();
  EXPECT_TRUE(service_->GetAddress(ada.customer.id, address->id).ok());
  EXPECT_TRUE(absl::IsNotFound(service_->GetAddress(bob.customer.id, address->id).status()));
  EXPECT_TRUE(absl::IsNotFound(
      service_->UpdateAddress(bob.customer.id, address->id, Json{{"city", "Paris"}}).status()));
  EXPECT_TRUE(absl::IsNotFound(service_->DeleteAddress(bob.customer.id, address->id)));
  EXPECT_TRUE(service_->ListAddresses(bob.customer.id)->empty());
  absl::StatusOr<AddressRecord> updated =
      service_->UpdateAddress(ada.customer.id, address->id, Json{{"city", "Paris"}});
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->fields.city, "Paris");
  EXPECT_EQ(service_->ListAddresses(ada.customer.id)->size(), 1u);
  EXPECT_TRUE(service_->DeleteAddress(ada.customer.id, address->id).ok());
  EXPECT_TRUE(absl::IsNotFound(service_->GetAddress(ada.customer.id, address->id).status()));
}

TEST_F(AccountsServiceTest, VerifyEmailOnceAndPublishes) {
  SignUpResult ada = MustSignUp("ada@example.com");
  EXPECT_FALSE(ada.customer.email_verified);
  absl::StatusOr<CustomerRecord> verified = service_->VerifyEmail(ada.verification_token);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->email_verified);
  EXPECT_TRUE(absl::IsNotFound(service_->VerifyEmail(ada.verification_token).status()));
  EXPECT_TRUE(absl::IsNotFound(service_->VerifyEmail("emp_v_bogus").status()));
  int events = 0;
  ASSERT_TRUE(database_
                  ->Read([&](sql::Transaction& tx) -> absl::Status {
                    absl::StatusOr<sql::ResultSet> rows =
                        tx.Query("SELECT COUNT(*) FROM outbox WHERE type = ?",
                                 {std::string(kCustomerVerifiedEvent)});
                    if (!rows.ok()) return rows.status();
                    events = static_cast<int>(rows->rows[0].Int(0));
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(events, 1);
}

TEST_F(AccountsServiceTest, StaffKeysAuthenticateUntilRevoked) {
  absl::StatusOr<CreatedStaffKey> key = service_->CreateStaffKey(Role::kOps, "night shift");
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<Principal> principal = service_->Authenticate(key->key);
  ASSERT_TRUE(principal.ok());
  EXPECT_EQ(principal->kind, PrincipalKind::kStaff);
  EXPECT_EQ(principal->role, Role::kOps);
  ASSERT_TRUE(service_->RevokeStaffKey(key->record.id).ok());
  EXPECT_FALSE(service_->Authenticate(key->key).ok());
  EXPECT_TRUE(absl::IsNotFound(service_->RevokeStaffKey(key->record.id)));

  absl::StatusOr<Principal> admin = service_->Authenticate("legacy-admin-key");
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->role, Role::kAdmin);
  EXPECT_FALSE(service_->Authenticate("").ok());
  EXPECT_FALSE(service_->Authenticate("emp_s_" + std::string(43, 'A')).ok());
  EXPECT_FALSE(service_->Authenticate(std::string(10'000, 'x')).ok());
}

TEST_F(AccountsServiceTest, CachedSessionsSkipTheStoreForTheTtlAndLogoutEvictsAtOnce) {
  SignUpResult ada = MustSignUp("ada@example.com");
  ASSERT_TRUE(service_->Authenticate(ada.session.token).ok());  // now cached
  // Another process revokes the session (a direct store write): this process keeps serving it
  // from the cache for at most the TTL, then reads the store again.
  ASSERT_TRUE(database_
                  ->Write([](sql::Transaction& tx) {
                    return tx.Execute("UPDATE sessions SET revoked = 1").status();
                  })
                  .ok());
  EXPECT_TRUE(service_->Authenticate(ada.session.token).ok());
  clock_.Advance(absl::Milliseconds(kSessionCacheTtlMs));
  EXPECT_TRUE(absl::IsUnauthenticated(service_->Authenticate(ada.session.token).status()));

  // A logout in this process is seen by the very next lookup.
  absl::StatusOr<LoginResult> login = service_->Login("ada@example.com", kPassword);
  ASSERT_TRUE(login.ok()) << login.status();
  ASSERT_TRUE(service_->Authenticate(login->session.token).ok());
  ASSERT_TRUE(service_->Authenticate(login->session.token).ok());  // served from the cache
  ASSERT_TRUE(service_->Logout(login->session.token).ok());
  EXPECT_TRUE(absl::IsUnauthenticated(service_->Authenticate(login->session.token).status()));
}

TEST(SessionCache, BoundedLruWithTtlAndEvictionGeneration) {
  SessionCache cache(/*entries_max=*/2, /*ttl_ms=*/100);
  cache.Put("a", "c1", 1'000, 0, cache.generation());
  cache.Put("b", "c1", 1'000, 0, cache.generation());
  EXPECT_EQ(cache.Get("a", 1), "c1");                  // "a" is now the most recent
  cache.Put("c", "c2", 1'000, 1, cache.generation());  // evicts "b", the least recent
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_FALSE(cache.Get("b", 1).has_value());
  EXPECT_EQ(cache.Get("c", 1), "c2");
  EXPECT_FALSE(cache.Get("a", 100).has_value());  // past the TTL
  // Never past the session's own expiry.
  cache.Put("d", "c3", 50, 10, cache.generation());
  EXPECT_TRUE(cache.Get("d", 49).has_value());
  EXPECT_FALSE(cache.Get("d", 50).has_value());
  // A lookup that read the store before an eviction cannot put the session back.
  const uint64_t before = cache.generation();
  cache.Evict("e");
  cache.Put("e", "c4", 1'000, 10, before);
  EXPECT_FALSE(cache.Get("e", 11).has_value());
  // A password change drops every session of the customer but the one kept.
  cache.Put("f1", "c5", 1'000, 10, cache.generation());
  cache.Put("f2", "c5", 1'000, 10, cache.generation());
  cache.EvictCustomer("c5", "f2");
  EXPECT_FALSE(cache.Get("f1", 11).has_value());
  EXPECT_TRUE(cache.Get("f2", 11).has_value());
}

TEST_F(AccountsServiceTest, SignUpIdempotencyReplaysWithoutStoringTheToken) {
  absl::StatusOr<SignUpResult> first = service_->SignUp("ada@example.com", kPassword, "Ada", "k1");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<SignUpResult> replay = service_->SignUp("ada@example.com", kPassword, "Ada", "k1");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->customer.id, first->customer.id);
  EXPECT_NE(replay->session.token, first->session.token);  // tokens are never stored
  EXPECT_TRUE(service_->Authenticate(replay->session.token).ok());
  // Same key, another request: 422, whether the change is visible or is the password.
  for (absl::Status status :
       {service_->SignUp("ada@example.com", kPassword, "Someone", "k1").status(),
        service_->SignUp("bob@example.com", kPassword, "Ada", "k1").status(),
        service_->SignUp("ada@example.com", "another long password", "Ada", "k1").status()}) {
    EXPECT_EQ(http::HttpStatusFor(status), 422) << status;
  }
  // Without the key a repeat is the usual conflict; a key too long is refused.
  EXPECT_TRUE(
      absl::IsAlreadyExists(service_->SignUp("ada@example.com", kPassword, "Ada").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      service_->SignUp("cy@example.com", kPassword, "", std::string(300, 'k')).status()));
}

TEST_F(AccountsServiceTest, AddressIdempotencyIsPerCustomer) {
  SignUpResult ada = MustSignUp("ada@example.com");
  SignUpResult bob = MustSignUp("bob@example.com");
  AddressFields fields{"home", "Ada", "1 Main St", "", "London", "", "N1", "GB", ""};
  absl::StatusOr<AddressRecord> first = service_->CreateAddress(ada.customer.id, fields, "a1");
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<AddressRecord> replay = service_->CreateAddress(ada.customer.id, fields, "a1");
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->id, first->id);
  EXPECT_EQ(replay->fields.line1, fields.line1);
  EXPECT_EQ(service_->ListAddresses(ada.customer.id)->size(), 1u);
  AddressFields other = fields;
  other.line1 = "2 Main St";
  EXPECT_EQ(http::HttpStatusFor(service_->CreateAddress(ada.customer.id, other, "a1").status()),
            422);
  // Bob's "a1" is his own key.
  absl::StatusOr<AddressRecord> bobs = service_->CreateAddress(bob.customer.id, fields, "a1");
  ASSERT_TRUE(bobs.ok()) << bobs.status();
  EXPECT_NE(bobs->id, first->id);
}

TEST_F(AccountsServiceTest, NoPasswordOrTokenInTheDatabaseFiles) {
  SignUpResult ada = MustSignUp("ada@example.com");
  absl::StatusOr<SignUpResult> keyed =
      service_->SignUp("kay@example.com", kPassword, "Kay", "signup-key");
  ASSERT_TRUE(keyed.ok()) << keyed.status();
  absl::StatusOr<CreatedStaffKey> key = service_->CreateStaffKey(Role::kAdmin, "");
  ASSERT_TRUE(key.ok());
  database_->Close();
  std::string bytes;
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream file(dir_.File(std::string("accounts.db") + suffix), std::ios::binary);
    std::stringstream text;
    text << file.rdbuf();
    bytes += text.str();
  }
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.find(kPassword), std::string::npos);
  EXPECT_EQ(bytes.find(ada.session.token), std::string::npos);
  EXPECT_EQ(bytes.find(keyed->session.token), std::string::npos);
  EXPECT_EQ(bytes.find(key->key), std::string::npos);
}

}  // namespace
}  // namespace emporium::accounts
