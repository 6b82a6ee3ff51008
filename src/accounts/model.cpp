#include "accounts/model.h"

#include <algorithm>
#include <cmath>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"

namespace emporium::accounts {
namespace {

bool IsControl(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte < 0x20 || byte == 0x7f;
}

bool HasControl(std::string_view text) { return std::any_of(text.begin(), text.end(), IsControl); }

absl::Status InvalidEmail(std::string_view why) {
  return InvalidParam("email", fmt::format("email {}", why), "invalid_email");
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

absl::StatusOr<std::string> NormalizeEmail(std::string_view email) {
  while (!email.empty() && (email.front() == ' ' || email.front() == '\t')) email.remove_prefix(1);
  while (!email.empty() && (email.back() == ' ' || email.back() == '\t')) email.remove_suffix(1);
  if (email.empty()) return InvalidEmail("is required");
  if (email.size() > kEmailBytesMax) return InvalidEmail("is too long");
  std::string normalized;
  normalized.reserve(email.size());
  for (char c : email) normalized.push_back(Lower(c));
  const size_t at = normalized.find('@');
  if (at == std::string::npos || normalized.find('@', at + 1) != std::string::npos) {
    return InvalidEmail("must contain exactly one @");
  }
  std::string_view local(normalized.data(), at);
  std::string_view domain(normalized.data() + at + 1, normalized.size() - at - 1);
  if (local.empty() || local.size() > kEmailLocalBytesMax) return InvalidEmail("has a bad name");
  for (char c : local) {
    if (IsControl(c) || c == ' ' || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' ||
        c == ';' || c == '<' || c == '>' || c == '[' || c == ']' || c == '\\') {
      return InvalidEmail("has a character that is not allowed");
    }
  }
  if (domain.empty() || domain.find('.') == std::string_view::npos || domain.front() == '.' ||
      domain.back() == '.' || domain.find("..") != std::string_view::npos) {
    return InvalidEmail("has a bad domain");
  }
  for (char c : domain) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                    static_cast<unsigned char>(c) >= 0x80;  // internationalized domains
    if (!ok) return InvalidEmail("has a bad domain");
  }
  return normalized;
}

absl::Status ValidatePassword(std::string_view password, std::string_view normalized_email,
                              std::string_view param) {
  if (password.size() < kPasswordBytesMin) {
    return InvalidParam(param,
                        fmt::format("password must be at least {} characters", kPasswordBytesMin),
                        "weak_password");
  }
  if (password.size() > kPasswordBytesMax) {
    return InvalidParam(param, fmt::format("password must be at most {} bytes", kPasswordBytesMax),
                        "weak_password");
  }
  if (password.find('\0') != std::string_view::npos) {
    return InvalidParam(param, "password must not contain NUL", "weak_password");
  }
  std::string lowered;
  for (char c : password) lowered.push_back(Lower(c));
  if (!normalized_email.empty() && lowered == normalized_email) {
    return InvalidParam(param, "password must not be the email address", "weak_password");
  }
  return absl::OkStatus();
}

absl::Status ValidateName(std::string_view name, std::string_view param) {
  if (name.size() > kNameBytesMax) {
    return InvalidParam(param, fmt::format("must be at most {} bytes", kNameBytesMax));
  }
  if (HasControl(name)) return InvalidParam(param, "must not contain control characters");
  return absl::OkStatus();
}

absl::StatusOr<AddressFields> ParseAddress(const Json& body, AddressInput input,
                                           const AddressFields& base) {
  if (!body.is_object()) return InvalidParam("", "body must be a JSON object");
  AddressFields fields = base;
  struct Field {
    const char* name;
    std::string AddressFields::*member;
    bool required;
  };
  static constexpr Field kFields[] = {
      {"label", &AddressFields::label, false},
      {"name", &AddressFields::name, true},
      {"line1", &AddressFields::line1, true},
      {"line2", &AddressFields::line2, false},
      {"city", &AddressFields::city, true},
      {"region", &AddressFields::region, false},
      {"postal_code", &AddressFields::postal_code, true},
      {"country", &AddressFields::country, true},
      {"phone", &AddressFields::phone, false},
  };
  for (const auto& [key, value] : body.items()) {
    bool known = false;
    for (const Field& field : kFields) known = known || key == field.name;
    if (!known) return InvalidParam(key, "is not an address field", "unknown_field");
  }
  for (const Field& field : kFields) {
    absl::StatusOr<std::optional<std::string>> value =
        OptionalString(body, field.name, kAddressFieldBytesMax);
    if (!value.ok()) return value.status();
    if (value->has_value()) {
      if (HasControl(**value)) {
        return InvalidParam(field.name, "must not contain control characters");
      }
      fields.*field.member = **value;
    } else if (input == AddressInput::kFull && field.required) {
      return InvalidParam(field.name, "is required", "missing_param");
    }
    if (field.required && (fields.*field.member).empty()) {
      return InvalidParam(field.name, "must not be empty");
    }
  }
  std::string& country = fields.country;
  for (char& c : country) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  if (country.size() != 2 ||
      !std::all_of(country.begin(), country.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return InvalidParam("country", "must be an ISO 3166-1 alpha-2 code");
  }
  return fields;
}

Json AddressFieldsJson(const AddressFields& fields) {
  return Json{{"label", fields.label},
              {"name", fields.name},
              {"line1", fields.line1},
              {"line2", fields.line2},
              {"city", fields.city},
              {"region", fields.region},
              {"postal_code", fields.postal_code},
              {"country", fields.country},
              {"phone", fields.phone}};
}

std::string Base64UrlEncode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t chunk = (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16) |
                           (static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8) |
                           static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
    out.push_back(kAlphabet[(chunk >> 18) & 63]);
    out.push_back(kAlphabet[(chunk >> 12) & 63]);
    out.push_back(kAlphabet[(chunk >> 6) & 63]);
    out.push_back(kAlphabet[chunk & 63]);
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t chunk = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) chunk |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out.push_back(kAlphabet[(chunk >> 18) & 63]);
    out.push_back(kAlphabet[(chunk >> 12) & 63]);
    if (rest == 2) out.push_back(kAlphabet[(chunk >> 6) & 63]);
  }
  return out;
}

std::string FormatCredential(std::string_view prefix, std::string_view random_bytes) {
  return fmt::format("{}{}", prefix, Base64UrlEncode(random_bytes));
}

bool HasCredentialShape(std::string_view credential, std::string_view prefix) {
  constexpr size_t kEncodedLength = (kCredentialRandomBytes * 4 + 2) / 3;  // 43
  if (credential.size() != prefix.size() + kEncodedLength) return false;
  if (credential.substr(0, prefix.size()) != prefix) return false;
  for (char c : credential.substr(prefix.size())) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

TokenBucket FullBucket(const TokenBucketPolicy& policy, int64_t now_ms) {
  return TokenBucket{policy.capacity, now_ms};
}

namespace {

TokenBucket Refilled(const TokenBucket& bucket, const TokenBucketPolicy& policy, int64_t now_ms) {
  TokenBucket refilled = bucket;
  if (now_ms > bucket.updated_ms) {
    const double elapsed_seconds = static_cast<double>(now_ms - bucket.updated_ms) / 1000.0;
    refilled.tokens =
        std::min(policy.capacity, bucket.tokens + elapsed_seconds * policy.refill_per_second);
    refilled.updated_ms = now_ms;
  }
  return refilled;
}

TakeResult Decide(const TokenBucket& bucket, const TokenBucketPolicy& policy, double cost) {
  if (bucket.tokens >= cost) return TakeResult{true, 0};
  if (policy.refill_per_second <= 0 || cost > policy.capacity) return TakeResult{false, -1};
  const double missing = cost - bucket.tokens;
  const auto wait_ms = static_cast<int64_t>(std::ceil(missing / policy.refill_per_second * 1000.0));
  return TakeResult{false, std::max<int64_t>(1, wait_ms)};
}

}  // namespace

TakeResult Take(TokenBucket& bucket, const TokenBucketPolicy& policy, int64_t now_ms, double cost) {
  bucket = Refilled(bucket, policy, now_ms);
  TakeResult result = Decide(bucket, policy, cost);
  if (result.allowed) bucket.tokens -= cost;
  return result;
}

TakeResult Peek(const TokenBucket& bucket, const TokenBucketPolicy& policy, int64_t now_ms,
                double cost) {
  return Decide(Refilled(bucket, policy, now_ms), policy, cost);
}

TakeResult RateLimiter::Take(const std::string& key, const TokenBucketPolicy& policy,
                             int64_t now_ms, double cost) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= keys_max_) {
      // Full buckets carry no information; drop them first, everything if none is full.
      for (auto scan = buckets_.begin(); scan != buckets_.end();) {
        if (Refilled(scan->second, policy, now_ms).tokens >= policy.capacity) {
          scan = buckets_.erase(scan);
        } else {
          ++scan;
        }
      }
      if (buckets_.size() >= keys_max_) buckets_.clear();
    }
    it = buckets_.emplace(key, FullBucket(policy, now_ms)).first;
  }
  return accounts::Take(it->second, policy, now_ms, cost);
}

TakeResult RateLimiter::Peek(const std::string& key, const TokenBucketPolicy& policy,
                             int64_t now_ms) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) return TakeResult{true, 0};
  return accounts::Peek(it->second, policy, now_ms);
}

void RateLimiter::Reset(const std::string& key) {
  std::lock_guard<std::mutex> lock(mutex_);
  buckets_.erase(key);
}

size_t RateLimiter::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return buckets_.size();
}

}  // namespace emporium::accounts
