#include "accounts/service.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>

#include "argon2.h"
#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/bus/envelope.h"
#include "platform/bus/outbox.h"
#include "platform/context/staff_auth.h"
#include "platform/http/message.h"

namespace emporium::accounts {
namespace {

constexpr const char* kRetryAfterPayload = "emporium.dev/retry_after_ms";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kEncodedHashBytesMax = 256;

absl::Status InvalidCredentials() {
  return WithErrorCode(absl::UnauthenticatedError("invalid email or password"),
                       "invalid_credentials");
}

absl::Status InvalidToken() {
  return WithErrorCode(absl::UnauthenticatedError("the bearer token is not valid"),
                       "invalid_token");
}

absl::Status CustomerNotFound() {
  return WithErrorCode(absl::NotFoundError("customer not found"), "customer_not_found");
}

absl::Status AddressNotFound() {
  return WithErrorCode(absl::NotFoundError("address not found"), "address_not_found");
}

absl::Status Publish(sql::Transaction& tx, IdGenerator& ids, std::string_view type,
                     const std::string& key, const Json& payload, int64_t now_ms) {
  bus::Envelope envelope;
  envelope.id = ids.Next();
  envelope.type = std::string(type);
  envelope.source = "accounts";
  envelope.key = key;
  envelope.correlation_id = envelope.id;
  envelope.occurred_at_ms = now_ms;
  envelope.payload = DumpJson(payload);
  return bus::Publish(tx, envelope);
}

absl::Status IdempotencyKeyReused() {
  return http::WithHttpStatus(
      WithErrorCode(absl::FailedPreconditionError(
                        "Idempotency-Key was already used with a different request"),
                    "idempotency_key_reused"),
      422);
}

absl::Status IdempotencyKeyInFlight() {
  return WithErrorCode(
      absl::AbortedError("a request with this Idempotency-Key is being processed; retry"),
      "idempotency_key_in_use");
}

absl::Status CheckIdempotencyKey(std::string_view key) {
  if (key.size() > kIdempotencyKeyBytesMax) {
    return InvalidParam("Idempotency-Key",
                        fmt::format("must be 1 to {} bytes", kIdempotencyKeyBytesMax));
  }
  return absl::OkStatus();
}

// Hex SHA-256 of a request's secret-free fields, for idempotency fingerprints.
std::string Fingerprint(std::string_view text) {
  const std::string digest = Sha256(text);
  std::string hex;
  for (unsigned char c : digest) hex += fmt::format("{:02x}", c);
  return hex;
}

Json AddressRecordJson(const AddressRecord& address) {
  return Json{{"id", address.id},
              {"fields", AddressFieldsJson(address.fields)},
              {"created_at_ms", address.created_at_ms},
              {"updated_at_ms", address.updated_at_ms}};
}

absl::StatusOr<AddressRecord> AddressRecordFromJson(const std::string& customer_id,
                                                    const std::string& text) {
  absl::StatusOr<Json> json = ParseJson(text);
  if (!json.ok() || !json->is_object() || !json->contains("fields")) {
    return absl::DataLossError("stored idempotent address response is malformed");
  }
  absl::StatusOr<AddressFields> fields = ParseAddress(json->at("fields"), AddressInput::kFull);
  if (!fields.ok()) return absl::DataLossError("stored idempotent address fields are malformed");
  return AddressRecord{json->value("id", ""), customer_id, std::move(*fields),
                       json->value("created_at_ms", int64_t{0}),
                       json->value("updated_at_ms", int64_t{0})};
}

}  // namespace

std::string Sha256(std::string_view text) {
  std::string digest(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

std::string RandomBytes(size_t count) {
  std::string bytes(count, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(count)) != 1) {
    std::abort();  // no CSPRNG: issuing guessable credentials would be worse than stopping
  }
  return bytes;
}

absl::StatusOr<std::string> HashPassword(std::string_view password, const PasswordHashing& params) {
  const std::string salt = RandomBytes(kSaltBytes);
  const size_t encoded_length =
      argon2_encodedlen(params.time_cost, params.memory_cost_kib, params.parallelism, kSaltBytes,
                        kHashBytes, Argon2_id);
  if (encoded_length > kEncodedHashBytesMax) return absl::InternalError("argon2 encoding too long");
  std::string encoded(encoded_length, '\0');
  const int result = argon2id_hash_encoded(
      params.time_cost, params.memory_cost_kib, params.parallelism, password.data(),
      password.size(), salt.data(), salt.size(), kHashBytes, encoded.data(), encoded.size());
  if (result != ARGON2_OK) {
    return absl::InternalError(fmt::format("argon2id failed: {}", argon2_error_message(result)));
  }
  encoded.resize(encoded.find('\0'));
  return encoded;
}

bool VerifyPassword(const std::string& encoded_hash, std::string_view password) {
  return argon2id_verify(encoded_hash.c_str(), password.data(), password.size()) == ARGON2_OK;
}

std::optional<int64_t> RetryAfterMs(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryAfterPayload);
  if (!payload.has_value()) return std::nullopt;
  return std::strtoll(std::string(*payload).c_str(), nullptr, 10);
}

AccountsService::AccountsService(sql::Database& database, const Clock& clock, IdGenerator& ids,
                                 AccountsOptions options)
    : database_(database),
      clock_(clock),
      ids_(ids),
      options_(std::move(options)),
      sessions_(options_.session_cache_entries_max, options_.session_cache_ttl_ms) {
  absl::StatusOr<std::string> dummy = HashPassword(RandomBytes(16), options_.hashing);
  dummy_hash_ = dummy.ok() ? *dummy : "";
}

absl::StatusOr<Session> AccountsService::IssueSession(const std::string& customer_id) {
  std::optional<Session> issued;
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<Session> session = NewSession(tx, customer_id);
    if (!session.ok()) return session.status();
    issued = *std::move(session);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return *std::move(issued);
}

absl::StatusOr<Session> AccountsService::NewSession(sql::Transaction& tx,
                                                    const std::string& customer_id) {
  Session session;
  session.token = FormatCredential(kSessionTokenPrefix, RandomBytes(kCredentialRandomBytes));
  const int64_t now_ms = clock_.NowMs();
  session.expires_at_ms = now_ms + options_.session_ttl_ms;
  absl::Status status =
      InsertSession(tx, Sha256(session.token), customer_id, now_ms, session.expires_at_ms);
  if (!status.ok()) return status;
  return session;
}

absl::StatusOr<SignUpResult> AccountsService::SignUp(std::string_view email,
                                                     std::string_view password,
                                                     std::string_view name,
                                                     std::string_view idempotency_key) {
  if (absl::Status status = CheckIdempotencyKey(idempotency_key); !status.ok()) return status;
  absl::StatusOr<std::string> normalized = NormalizeEmail(email);
  if (!normalized.ok()) return normalized.status();
  if (absl::Status status = ValidatePassword(password, *normalized); !status.ok()) return status;
  if (absl::Status status = ValidateName(name); !status.ok()) return status;
  const std::string scoped_key =
      idempotency_key.empty() ? "" : fmt::format("signup:{}", idempotency_key);
  // No secret in the fingerprint: a replay proves the password against the stored hash.
  const std::string request_hash = Fingerprint(fmt::format("signup\n{}\n{}", *normalized, name));
  if (!scoped_key.empty()) {
    std::optional<IdempotencyRecord> stored;
    absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
      absl::StatusOr<std::optional<IdempotencyRecord>> found = FindIdempotency(tx, scoped_key);
      if (!found.ok()) return found.status();
      stored = std::move(*found);
      return absl::OkStatus();
    });
    if (!read.ok()) return read;
    if (stored.has_value()) return ReplaySignUp(*stored, request_hash, *normalized, password);
  }
  absl::StatusOr<std::string> hash = HashPassword(password, options_.hashing);
  if (!hash.ok()) return hash.status();

  SignUpResult result;
  const int64_t now_ms = clock_.NowMs();
  result.customer =
      CustomerRecord{ids_.Next(), *normalized, *hash, std::string(name), false, now_ms, now_ms, 1};
  result.verification_token =
      FormatCredential(kVerificationTokenPrefix, RandomBytes(kCredentialRandomBytes));
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::Status inserted = InsertCustomer(tx, result.customer);
    if (absl::IsAlreadyExists(inserted)) {
      return WithErrorParam(
          WithErrorCode(absl::AlreadyExistsError("an account with this email exists"),
                        "email_taken"),
          "email");
    }
    if (!inserted.ok()) return inserted;
    absl::StatusOr<Session> session = NewSession(tx, result.customer.id);
    if (!session.ok()) return session.status();
    result.session = *session;
    if (!scoped_key.empty()) {
      absl::Status recorded = InsertIdempotency(
          tx, scoped_key,
          IdempotencyRecord{request_hash, 201, DumpJson(Json{{"customer_id", result.customer.id}})},
          now_ms);
      if (absl::IsAlreadyExists(recorded)) return IdempotencyKeyInFlight();
      if (!recorded.ok()) return recorded;
    }
    VerificationRecord verification{result.customer.id, result.customer.email,
                                    now_ms + options_.verification_ttl_ms, false};
    if (absl::Status s = InsertVerification(tx, Sha256(result.verification_token), verification);
        !s.ok()) {
      return s;
    }
    return Publish(tx, ids_, kVerificationRequestedEvent, result.customer.id,
                   Json{{"customer_id", result.customer.id},
                        {"email", result.customer.email},
                        {"token", result.verification_token},
                        {"expires_at_ms", verification.expires_at_ms}},
                   now_ms);
  });
  if (!status.ok()) return status;
  return result;
}

absl::StatusOr<SignUpResult> AccountsService::ReplaySignUp(const IdempotencyRecord& record,
                                                           const std::string& request_hash,
                                                           const std::string& email,
                                                           std::string_view password) {
  if (record.request_hash != request_hash) return IdempotencyKeyReused();
  absl::StatusOr<Json> body = ParseJson(record.body);
  if (!body.ok() || !body->is_object() || !body->contains("customer_id")) {
    return absl::DataLossError("stored sign-up response is malformed");
  }
  absl::StatusOr<CustomerRecord> customer = GetCustomer(body->value("customer_id", ""));
  if (!customer.ok()) return customer.status();
  // The replay proves the password like a login does, and is throttled like one.
  if (absl::Status allowed = CheckLoginAllowed(email); !allowed.ok()) return allowed;
  if (!VerifyPassword(customer->password_hash, password)) {
    RecordLoginFailure(email);
    return IdempotencyKeyReused();
  }
  absl::StatusOr<Session> session = IssueSession(customer->id);
  if (!session.ok()) return session.status();
  SignUpResult result;
  result.customer = *customer;
  result.session = *std::move(session);
  return result;
}

absl::Status AccountsService::CheckLoginAllowed(const std::string& email_key) const {
  TakeResult peek =
      login_failures_.Peek(email_key, options_.login_failures_per_account, clock_.NowMs());
  if (peek.allowed) return absl::OkStatus();
  absl::Status status = WithErrorCode(
      absl::ResourceExhaustedError("too many failed logins for this account; try again later"),
      "login_throttled");
  const int64_t retry_after_ms = peek.retry_after_ms < 0 ? 3'600'000 : peek.retry_after_ms;
  status.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(retry_after_ms)));
  return status;
}

void AccountsService::RecordLoginFailure(const std::string& email_key) {
  login_failures_.Take(email_key, options_.login_failures_per_account, clock_.NowMs());
}

absl::StatusOr<LoginResult> AccountsService::Login(std::string_view email,
                                                   std::string_view password) {
  absl::StatusOr<std::string> normalized = NormalizeEmail(email);
  if (!normalized.ok()) return InvalidCredentials();
  if (password.size() > kPasswordBytesMax) return InvalidCredentials();
  if (absl::Status allowed = CheckLoginAllowed(*normalized); !allowed.ok()) return allowed;

  std::optional<CustomerRecord> customer;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<CustomerRecord>> found = FindCustomerByEmail(tx, *normalized);
    if (!found.ok()) return found.status();
    customer = std::move(*found);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  // Unknown e-mails cost the same hashing as known ones.
  bool verified = false;
  if (customer.has_value()) {
    verified = VerifyPassword(customer->password_hash, password);
  } else {
    static_cast<void>(VerifyPassword(dummy_hash_, password));
  }
  if (!verified) {
    RecordLoginFailure(*normalized);
    return InvalidCredentials();
  }
  login_failures_.Reset(*normalized);
  absl::StatusOr<Session> session = IssueSession(customer->id);
  if (!session.ok()) return session.status();
  LoginResult result;
  result.customer = *customer;
  result.session = *std::move(session);
  return result;
}

absl::Status AccountsService::Logout(std::string_view token) {
  const std::string token_hash = Sha256(token);
  const int64_t now_ms = clock_.NowMs();
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    return RevokeSession(tx, token_hash, now_ms).status();
  });
  // After the commit: a lookup that read the live row before it cannot cache it again (the
  // eviction bumps the cache's generation).
  sessions_.Evict(token_hash);
  return status;
}

absl::StatusOr<Principal> AccountsService::Authenticate(std::string_view credential) const {
  if (!options_.admin_api_key.empty() && ConstantTimeEquals(credential, options_.admin_api_key)) {
    return Principal::Staff(Role::kAdmin, std::string(kConfigAdminKeyId));
  }
  const bool session = HasCredentialShape(credential, kSessionTokenPrefix);
  const bool staff = HasCredentialShape(credential, kStaffKeyPrefix);
  if (!session && !staff) return InvalidToken();
  // The lookup is by hash: equality on a hash of a 256-bit secret leaks nothing useful by
  // timing.
  const std::string hash = Sha256(credential);
  const int64_t now_ms = clock_.NowMs();
  if (session) {
    if (std::optional<std::string> customer_id = sessions_.Get(hash, now_ms)) {
      return Principal::Customer(std::move(*customer_id));
    }
  }
  const uint64_t cache_generation = sessions_.generation();
  std::optional<Principal> principal;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    if (session) {
      absl::StatusOr<std::optional<SessionRecord>> found = FindSession(tx, hash);
      if (!found.ok()) return found.status();
      if (found->has_value() && !(*found)->revoked && (*found)->expires_at_ms > now_ms) {
        principal = Principal::Customer((*found)->customer_id);
        sessions_.Put(hash, (*found)->customer_id, (*found)->expires_at_ms, now_ms,
                      cache_generation);
      }
      return absl::OkStatus();
    }
    absl::StatusOr<std::optional<StaffKeyRecord>> found = FindStaffKeyByHash(tx, hash);
    if (!found.ok()) return found.status();
    if (found->has_value() && !(*found)->revoked) {
      std::optional<Role> role = ParseRole((*found)->role);
      if (role.has_value()) principal = Principal::Staff(*role, (*found)->id);
    }
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  if (!principal.has_value()) return InvalidToken();
  return *principal;
}

absl::StatusOr<CustomerRecord> AccountsService::GetCustomer(const std::string& customer_id) const {
  std::optional<CustomerRecord> customer;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<CustomerRecord>> found = FindCustomerById(tx, customer_id);
    if (!found.ok()) return found.status();
    customer = std::move(*found);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  if (!customer.has_value()) return CustomerNotFound();
  return *customer;
}

absl::StatusOr<CustomerRecord> AccountsService::UpdateName(const std::string& customer_id,
                                                           std::string_view name) {
  if (absl::Status status = ValidateName(name); !status.ok()) return status;
  const int64_t now_ms = clock_.NowMs();
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    return UpdateCustomerName(tx, customer_id, std::string(name), now_ms);
  });
  if (absl::IsNotFound(status)) return CustomerNotFound();
  if (!status.ok()) return status;
  return GetCustomer(customer_id);
}

absl::Status AccountsService::ChangePassword(const std::string& customer_id,
                                             std::string_view current_token,
                                             std::string_view current_password,
                                             std::string_view new_password) {
  absl::StatusOr<CustomerRecord> customer = GetCustomer(customer_id);
  if (!customer.ok()) return customer.status();
  if (absl::Status allowed = CheckLoginAllowed(customer->email); !allowed.ok()) return allowed;
  if (current_password.size() > kPasswordBytesMax ||
      !VerifyPassword(customer->password_hash, current_password)) {
    RecordLoginFailure(customer->email);
    return WithErrorParam(
        WithErrorCode(absl::UnauthenticatedError("current password is wrong"), "invalid_password"),
        "current_password");
  }
  if (absl::Status status = ValidatePassword(new_password, customer->email, "new_password");
      !status.ok()) {
    return status;
  }
  absl::StatusOr<std::string> hash = HashPassword(new_password, options_.hashing);
  if (!hash.ok()) return hash.status();
  const std::string keep = Sha256(current_token);
  const int64_t now_ms = clock_.NowMs();
  absl::Status written = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    if (absl::Status status = UpdatePasswordHash(tx, customer_id, *hash, now_ms); !status.ok()) {
      return status;
    }
    return RevokeOtherSessions(tx, customer_id, keep, now_ms).status();
  });
  // After the commit: see Logout.
  sessions_.EvictCustomer(customer_id, keep);
  return written;
}

absl::StatusOr<CustomerRecord> AccountsService::VerifyEmail(std::string_view token) {
  absl::Status not_found = WithErrorCode(
      absl::NotFoundError("verification token not found or expired"), "verification_not_found");
  if (!HasCredentialShape(token, kVerificationTokenPrefix)) return not_found;
  const std::string hash = Sha256(token);
  const int64_t now_ms = clock_.NowMs();
  std::string customer_id;
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<VerificationRecord>> found = FindVerification(tx, hash);
    if (!found.ok()) return found.status();
    if (!found->has_value() || (*found)->used || (*found)->expires_at_ms <= now_ms) {
      return not_found;
    }
    customer_id = (*found)->customer_id;
    if (absl::Status s = MarkVerificationUsed(tx, hash, now_ms); !s.ok()) return s;
    if (absl::Status s = MarkEmailVerified(tx, customer_id, now_ms); !s.ok()) return s;
    return Publish(tx, ids_, kCustomerVerifiedEvent, customer_id,
                   Json{{"customer_id", customer_id}, {"email", (*found)->email}}, now_ms);
  });
  if (!status.ok()) return status;
  return GetCustomer(customer_id);
}

absl::StatusOr<std::vector<AddressRecord>> AccountsService::ListAddresses(
    const std::string& customer_id) const {
  std::vector<AddressRecord> addresses;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<AddressRecord>> found =
        accounts::ListAddresses(tx, customer_id, kAddressListLimit);
    if (!found.ok()) return found.status();
    addresses = std::move(*found);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return addresses;
}

absl::StatusOr<AddressRecord> AccountsService::CreateAddress(const std::string& customer_id,
                                                             const AddressFields& fields,
                                                             std::string_view idempotency_key) {
  if (absl::Status status = CheckIdempotencyKey(idempotency_key); !status.ok()) return status;
  const int64_t now_ms = clock_.NowMs();
  AddressRecord address{ids_.Next(), customer_id, fields, now_ms, now_ms};
  const std::string scoped_key =
      idempotency_key.empty() ? "" : fmt::format("address:{}:{}", customer_id, idempotency_key);
  const std::string request_hash = Fingerprint(DumpJson(AddressFieldsJson(fields)));
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    if (!scoped_key.empty()) {
      absl::StatusOr<std::optional<IdempotencyRecord>> stored = FindIdempotency(tx, scoped_key);
      if (!stored.ok()) return stored.status();
      if (stored->has_value()) {
        if ((*stored)->request_hash != request_hash) return IdempotencyKeyReused();
        absl::StatusOr<AddressRecord> replayed =
            AddressRecordFromJson(customer_id, (*stored)->body);
        if (!replayed.ok()) return replayed.status();
        address = std::move(*replayed);
        return absl::OkStatus();
      }
      if (absl::Status recorded = InsertIdempotency(
              tx, scoped_key,
              IdempotencyRecord{request_hash, 201, DumpJson(AddressRecordJson(address))}, now_ms);
          !recorded.ok()) {
        return recorded;
      }
    }
    absl::StatusOr<int64_t> count = CountAddresses(tx, customer_id);
    if (!count.ok()) return count.status();
    if (*count >= kAddressListLimit) {
      return WithErrorCode(absl::FailedPreconditionError(fmt::format(
                               "an address book holds at most {} addresses", kAddressListLimit)),
                           "address_book_full");
    }
    return InsertAddress(tx, address);
  });
  if (!status.ok()) return status;
  return address;
}

absl::StatusOr<AddressRecord> AccountsService::GetAddress(const std::string& customer_id,
                                                          const std::string& address_id) const {
  std::optional<AddressRecord> address;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<AddressRecord>> found = FindAddress(tx, address_id, customer_id);
    if (!found.ok()) return found.status();
    address = std::move(*found);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  if (!address.has_value()) return AddressNotFound();
  return *address;
}

absl::StatusOr<AddressRecord> AccountsService::UpdateAddress(const std::string& customer_id,
                                                             const std::string& address_id,
                                                             const Json& patch) {
  const int64_t now_ms = clock_.NowMs();
  AddressRecord updated;
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<AddressRecord>> found = FindAddress(tx, address_id, customer_id);
    if (!found.ok()) return found.status();
    if (!found->has_value()) return AddressNotFound();
    absl::StatusOr<AddressFields> fields =
        ParseAddress(patch, AddressInput::kPatch, (*found)->fields);
    if (!fields.ok()) return fields.status();
    updated = **found;
    updated.fields = std::move(*fields);
    updated.updated_at_ms = now_ms;
    absl::StatusOr<int64_t> changed = accounts::UpdateAddress(tx, updated);
    if (!changed.ok()) return changed.status();
    return *changed == 1 ? absl::OkStatus() : AddressNotFound();
  });
  if (!status.ok()) return status;
  return updated;
}

absl::Status AccountsService::DeleteAddress(const std::string& customer_id,
                                            const std::string& address_id) {
  return database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<int64_t> deleted = accounts::DeleteAddress(tx, address_id, customer_id);
    if (!deleted.ok()) return deleted.status();
    return *deleted == 1 ? absl::OkStatus() : AddressNotFound();
  });
}

absl::StatusOr<CreatedStaffKey> AccountsService::CreateStaffKey(Role role, std::string_view label) {
  if (label.size() > kStaffKeyLabelBytesMax) {
    return InvalidParam("label", fmt::format("must be at most {} bytes", kStaffKeyLabelBytesMax));
  }
  if (absl::Status status = ValidateName(label, "label"); !status.ok()) return status;
  CreatedStaffKey created;
  created.key = FormatCredential(kStaffKeyPrefix, RandomBytes(kCredentialRandomBytes));
  created.record = StaffKeyRecord{ids_.Next(), std::string(RoleName(role)), std::string(label),
                                  clock_.NowMs(), false};
  absl::Status status = database_.Write([&](sql::Transaction& tx) -> absl::Status {
    return InsertStaffKey(tx, Sha256(created.key), created.record);
  });
  if (!status.ok()) return status;
  return created;
}

absl::Status AccountsService::RevokeStaffKey(const std::string& key_id) {
  const int64_t now_ms = clock_.NowMs();
  return database_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<int64_t> revoked = accounts::RevokeStaffKey(tx, key_id, now_ms);
    if (!revoked.ok()) return revoked.status();
    if (*revoked == 0) {
      return WithErrorCode(absl::NotFoundError("no live staff key with this id"),
                           "staff_key_not_found");
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::vector<StaffKeyRecord>> AccountsService::ListStaffKeys() const {
  std::vector<StaffKeyRecord> keys;
  absl::Status read = database_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<StaffKeyRecord>> found =
        accounts::ListStaffKeys(tx, kStaffKeyListLimit);
    if (!found.ok()) return found.status();
    keys = std::move(*found);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return keys;
}

}  // namespace emporium::accounts
