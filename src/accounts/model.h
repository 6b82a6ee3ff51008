// The accounts context's pure domain: e-mail normalization and validation, the password policy,
// address validation, credential formats and token-bucket arithmetic (used by the login
// throttle here and by the gateway's rate limits). No clock, no randomness, no I/O: time comes
// in as `now_ms` arguments and random bytes from the caller.
//
// Thread-safety: free functions are pure and thread-safe. RateLimiter is internally
// synchronized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json.h"

namespace emporium::accounts {

inline constexpr size_t kEmailBytesMax = 254;      // RFC 5321 path limit
inline constexpr size_t kEmailLocalBytesMax = 64;  // RFC 5321 local-part limit
inline constexpr size_t kPasswordBytesMin = 10;    // NIST SP 800-63B allows 8; we ask a bit more
inline constexpr size_t kPasswordBytesMax = 1024;  // bounds the hashing work per request
inline constexpr size_t kNameBytesMax = 200;
inline constexpr size_t kAddressFieldBytesMax = 200;
inline constexpr size_t kAddressesPerCustomerMax = 50;
inline constexpr size_t kStaffKeyLabelBytesMax = 100;

// Lower-cases and trims `email` and checks its shape (one '@', a non-empty local part of at
// most 64 bytes, a dotted domain of letters, digits, '-' and '.', no spaces or control
// characters, at most 254 bytes). InvalidArgument (param "email", code "invalid_email").
absl::StatusOr<std::string> NormalizeEmail(std::string_view email);

// The password policy (NIST SP 800-63B): 10..1024 bytes, no NUL, not the e-mail address
// itself. No composition rules. InvalidArgument (param `param`, code "weak_password").
absl::Status ValidatePassword(std::string_view password, std::string_view normalized_email,
                              std::string_view param = "password");

// A display name: 0..200 bytes of printable text (no control characters).
absl::Status ValidateName(std::string_view name, std::string_view param = "name");

struct AddressFields {
  std::string label;  // "home", "work"; optional
  std::string name;
  std::string line1;
  std::string line2;  // optional
  std::string city;
  std::string region;  // optional
  std::string postal_code;
  std::string country;  // ISO 3166-1 alpha-2, upper-case
  std::string phone;    // optional
};

// Reads an address from a JSON object: name, line1, city, postal_code and country are required
// for a full address (`partial` = false); with `partial` = true (PATCH) every field is optional
// and `base` supplies the missing ones. InvalidArgument naming the field.
enum class AddressInput { kFull, kPatch };
absl::StatusOr<AddressFields> ParseAddress(const Json& body, AddressInput input,
                                           const AddressFields& base = {});
Json AddressFieldsJson(const AddressFields& fields);

// Credentials are "<prefix><43 base64url chars of 32 random bytes>": the prefix says which
// table to look in and lets secret scanners recognize a leaked one.
inline constexpr std::string_view kSessionTokenPrefix = "emp_s_";
inline constexpr std::string_view kStaffKeyPrefix = "emp_k_";
inline constexpr std::string_view kVerificationTokenPrefix = "emp_v_";
inline constexpr size_t kCredentialRandomBytes = 32;

// Base64url without padding.
std::string Base64UrlEncode(std::string_view bytes);
// `prefix` + Base64Url(random_bytes); random_bytes must be kCredentialRandomBytes long.
std::string FormatCredential(std::string_view prefix, std::string_view random_bytes);
// True when `credential` has `prefix` and exactly the encoded length after it.
bool HasCredentialShape(std::string_view credential, std::string_view prefix);

// ---- Token buckets ----

struct TokenBucketPolicy {
  double capacity = 10;          // burst
  double refill_per_second = 1;  // sustained rate; 0 = never refills
};

struct TokenBucket {
  double tokens = 0;
  int64_t updated_ms = 0;
};

struct TakeResult {
  bool allowed = false;
  int64_t retry_after_ms = 0;  // when not allowed: until one token is back (0 if never: -1)
};

// A full bucket at `now_ms`.
TokenBucket FullBucket(const TokenBucketPolicy& policy, int64_t now_ms);
// Refills for the time since the bucket's last update (never beyond capacity; a clock that goes
// backwards refills nothing), then takes `cost` tokens if there are enough.
TakeResult Take(TokenBucket& bucket, const TokenBucketPolicy& policy, int64_t now_ms,
                double cost = 1);
// The same check without taking anything.
TakeResult Peek(const TokenBucket& bucket, const TokenBucketPolicy& policy, int64_t now_ms,
                double cost = 1);

// Many buckets by key (a principal, an address, an e-mail), bounded: when `keys_max` keys are
// held, the buckets that have refilled to full (they carry no information) are dropped, and if
// none has, the whole table is cleared — forgetting is safer than growing without bound.
class RateLimiter {
 public:
  explicit RateLimiter(size_t keys_max = 100'000) : keys_max_(keys_max) {}
  TakeResult Take(const std::string& key, const TokenBucketPolicy& policy, int64_t now_ms,
                  double cost = 1);
  TakeResult Peek(const std::string& key, const TokenBucketPolicy& policy, int64_t now_ms) const;
  // Forgets `key` (e.g. after a successful login).
  void Reset(const std::string& key);
  size_t size() const;

 private:
  const size_t keys_max_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, TokenBucket> buckets_;
};

}  // namespace emporium::accounts
