// The accounts service: customers (sign-up, login, logout, password change, profile, e-mail
// verification), address books, staff API keys, and authentication of bearer credentials for
// the gateway.
//
// Credentials. Customer sessions are opaque random tokens ("emp_s_" + 32 bytes from the OS
// CSPRNG, base64url), stored only as SHA-256(token) with an absolute expiry and a revoked flag.
// We chose these over signed tokens (JWT-style with key rotation) because:
//  - logout and "password change revokes other sessions" must take effect at once; a signed
//    token stays valid until it expires unless every check consults a revocation list, which
//    is a database lookup anyway — and then the signature buys nothing;
//  - there is no signing key to protect, rotate or leak; a stolen database yields only hashes
//    of 256-bit random values, which cannot be reversed or brute-forced, so a fast hash
//    (SHA-256) is the right one here (argon2 is for low-entropy passwords);
//  - the lookup is one primary-key read on the accounts database, cheap next to the request.
// Staff API keys ("emp_k_...") work the same way (shown once, stored hashed, revocable).
// Passwords are hashed with argon2id (libargon2), parameters in PasswordHashing.
//
// Login throttling: failed logins per account are a token bucket (login_failures_per_account);
// while it is empty, Login answers ResourceExhausted with a retry-after without checking the
// password, so guessing is throttled and costs us no hashing. Unknown e-mails are throttled and
// hashed the same way, so timing does not reveal whether an account exists.
//
// Guest orders: sign-up records an e-mail verification and publishes
// accounts.email_verification_requested {customer_id, email, token} (notifications mails the
// token); VerifyEmail marks the e-mail verified and publishes accounts.customer_verified
// {customer_id, email} in the same transaction — ordering attaches that e-mail's guest orders
// to the customer when it consumes it.
//
// Session cache: Authenticate keeps verified sessions in a bounded in-process LRU
// (SessionCache) for session_cache_ttl_ms, so most requests do not read SQLite. Logout and
// ChangePassword evict this process's entries at once; another process (distributed mode)
// sees a revocation within the TTL.
//
// Idempotency: SignUp and CreateAddress take the client's Idempotency-Key. The record (key
// scoped to the operation and customer, a fingerprint of the request, the stored response) is
// written in the effect's transaction. The same key with the same request answers the stored
// outcome; with another request, 422 ("idempotency_key_reused"). Session tokens are never
// stored, so a sign-up replay re-checks the password (the fingerprint holds no secret) and
// answers the stored customer with a fresh session.
//
// Thread-safety: all methods are thread-safe. SignUp, Login, ChangePassword hash passwords
// (tens of milliseconds of CPU) and Write* methods wait for a durable commit: call them off the
// I/O threads. Authenticate is one indexed read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "accounts/model.h"
#include "accounts/session_cache.h"
#include "accounts/store.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/context/principal.h"
#include "platform/sql/database.h"

namespace emporium::accounts {

inline constexpr std::string_view kCustomerVerifiedEvent = "accounts.customer_verified";
inline constexpr std::string_view kVerificationRequestedEvent =
    "accounts.email_verification_requested";
inline constexpr int64_t kAddressListLimit = static_cast<int64_t>(kAddressesPerCustomerMax);
inline constexpr int64_t kStaffKeyListLimit = 1000;
// The key id the legacy admin.api_key authenticates as.
inline constexpr std::string_view kConfigAdminKeyId = "admin-config";
inline constexpr size_t kIdempotencyKeyBytesMax = 255;

struct PasswordHashing {
  // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
  uint32_t time_cost = 2;
  uint32_t memory_cost_kib = 19 * 1024;
  uint32_t parallelism = 1;
};

struct AccountsOptions {
  int64_t session_ttl_ms = int64_t{14} * 24 * 3600 * 1000;
  int64_t verification_ttl_ms = int64_t{24} * 3600 * 1000;
  PasswordHashing hashing;
  // Failed logins per account: 5 at once, then one per minute.
  TokenBucketPolicy login_failures_per_account{5, 1.0 / 60.0};
  // `Authorization: Bearer <admin_api_key>` authenticates as role admin (the pre-accounts
  // key, kept so operators and existing tooling keep working). Empty disables it.
  std::string admin_api_key;
  // Verified sessions cached in process (0 disables the cache).
  int64_t session_cache_ttl_ms = kSessionCacheTtlMs;
  size_t session_cache_entries_max = kSessionCacheEntriesMax;
};

// SHA-256 of `text` as 32 raw bytes.
std::string Sha256(std::string_view text);
// `count` bytes from the OS CSPRNG. Aborts if the CSPRNG fails (nothing safe to do then).
std::string RandomBytes(size_t count);

// argon2id encode / verify. Hash fails only on resource exhaustion (Internal).
absl::StatusOr<std::string> HashPassword(std::string_view password, const PasswordHashing& params);
bool VerifyPassword(const std::string& encoded_hash, std::string_view password);

// The retry-after (ms) a ResourceExhausted status from this service carries, if any.
std::optional<int64_t> RetryAfterMs(const absl::Status& status);

struct Session {
  std::string token;  // shown to the client once; never stored or logged
  int64_t expires_at_ms = 0;
};

struct SignUpResult {
  CustomerRecord customer;
  Session session;
  std::string verification_token;  // also in the verification-requested event
};

struct LoginResult {
  CustomerRecord customer;
  Session session;
};

struct CreatedStaffKey {
  StaffKeyRecord record;
  std::string key;  // shown once
};

class AccountsService {
 public:
  AccountsService(sql::Database& database, const Clock& clock, IdGenerator& ids,
                  AccountsOptions options);

  // InvalidArgument for a bad e-mail/password/name; AlreadyExists ("email_taken"). With an
  // `idempotency_key` (<= kIdempotencyKeyBytesMax bytes, "" for none) see the header comment.
  absl::StatusOr<SignUpResult> SignUp(std::string_view email, std::string_view password,
                                      std::string_view name, std::string_view idempotency_key = "");
  // Unauthenticated ("invalid_credentials") for any wrong e-mail/password combination;
  // ResourceExhausted ("login_throttled", with RetryAfterMs) while the account's bucket is
  // empty.
  absl::StatusOr<LoginResult> Login(std::string_view email, std::string_view password);
  // Revokes the session `token` belongs to (idempotent).
  absl::Status Logout(std::string_view token);
  // Resolves a bearer credential: a live session -> customer, a live staff key or the admin key
  // -> staff. Unauthenticated ("invalid_token") for anything else, including expired and
  // revoked credentials.
  absl::StatusOr<Principal> Authenticate(std::string_view credential) const;

  absl::StatusOr<CustomerRecord> GetCustomer(const std::string& customer_id) const;
  absl::StatusOr<CustomerRecord> UpdateName(const std::string& customer_id, std::string_view name);
  // Checks `current_password`, stores the new hash and revokes every other session of the
  // customer (the one holding `current_token` survives). Unauthenticated ("invalid_password")
  // for a wrong current password (counted by the login throttle).
  absl::Status ChangePassword(const std::string& customer_id, std::string_view current_token,
                              std::string_view current_password, std::string_view new_password);
  // Marks the e-mail verified; NotFound ("verification_not_found") for an unknown, used or
  // expired token.
  absl::StatusOr<CustomerRecord> VerifyEmail(std::string_view token);

  // Address book. Another customer's address id is NotFound ("address_not_found").
  absl::StatusOr<std::vector<AddressRecord>> ListAddresses(const std::string& customer_id) const;
  // FailedPrecondition ("address_book_full"); with an `idempotency_key` (scoped to the
  // customer) the same request answers the same address, another one 422.
  absl::StatusOr<AddressRecord> CreateAddress(const std::string& customer_id,
                                              const AddressFields& fields,
                                              std::string_view idempotency_key = "");
  absl::StatusOr<AddressRecord> GetAddress(const std::string& customer_id,
                                           const std::string& address_id) const;
  absl::StatusOr<AddressRecord> UpdateAddress(const std::string& customer_id,
                                              const std::string& address_id, const Json& patch);
  absl::Status DeleteAddress(const std::string& customer_id, const std::string& address_id);

  // Staff keys (the CLI and the admin routes).
  absl::StatusOr<CreatedStaffKey> CreateStaffKey(Role role, std::string_view label);
  absl::Status RevokeStaffKey(const std::string& key_id);
  absl::StatusOr<std::vector<StaffKeyRecord>> ListStaffKeys() const;

 private:
  absl::StatusOr<Session> NewSession(sql::Transaction& tx, const std::string& customer_id);
  // A new session for `customer_id` in its own write transaction.
  absl::StatusOr<Session> IssueSession(const std::string& customer_id);
  // Takes one failure token for `email_key`; the status to answer when the bucket is empty.
  absl::Status CheckLoginAllowed(const std::string& email_key) const;
  void RecordLoginFailure(const std::string& email_key);
  // The sign-up replay for a stored `record`: same fingerprint and password -> the stored
  // customer with a new session; otherwise 422.
  absl::StatusOr<SignUpResult> ReplaySignUp(const IdempotencyRecord& record,
                                            const std::string& request_hash,
                                            const std::string& email, std::string_view password);

  sql::Database& database_;
  const Clock& clock_;
  IdGenerator& ids_;
  const AccountsOptions options_;
  std::string dummy_hash_;  // verified against for unknown e-mails, to equalize timing
  mutable RateLimiter login_failures_;
  mutable SessionCache sessions_;
};

}  // namespace emporium::accounts
