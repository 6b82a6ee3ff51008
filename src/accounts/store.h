// The accounts store: SQL over the context's own database (customers, sessions, addresses,
// e-mail verifications, staff keys). Every function runs inside the caller's transaction; the
// statements are named constants in store.cpp. Credential columns hold SHA-256 hashes only.
//
// Thread-safety: functions use only the Transaction they are handed (see sql::Database).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "accounts/model.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::accounts {

// The embedded migrations (src/accounts/migrations).
std::vector<sql::Migration> AccountsMigrations();

struct CustomerRecord {
  std::string id;
  std::string email;
  std::string password_hash;  // argon2id encoded string
  std::string name;
  bool email_verified = false;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  int64_t version = 1;
};

struct SessionRecord {
  std::string customer_id;
  int64_t expires_at_ms = 0;
  bool revoked = false;
};

struct AddressRecord {
  std::string id;
  std::string customer_id;
  AddressFields fields;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

struct VerificationRecord {
  std::string customer_id;
  std::string email;
  int64_t expires_at_ms = 0;
  bool used = false;
};

struct StaffKeyRecord {
  std::string id;
  std::string role;
  std::string label;
  int64_t created_at_ms = 0;
  bool revoked = false;
};

// AlreadyExists when the e-mail is taken.
absl::Status InsertCustomer(sql::Transaction& tx, const CustomerRecord& customer);
absl::StatusOr<std::optional<CustomerRecord>> FindCustomerById(sql::Transaction& tx,
                                                               const std::string& id);
absl::StatusOr<std::optional<CustomerRecord>> FindCustomerByEmail(sql::Transaction& tx,
                                                                  const std::string& email);
absl::Status UpdateCustomerName(sql::Transaction& tx, const std::string& id,
                                const std::string& name, int64_t now_ms);
absl::Status UpdatePasswordHash(sql::Transaction& tx, const std::string& id,
                                const std::string& password_hash, int64_t now_ms);
absl::Status MarkEmailVerified(sql::Transaction& tx, const std::string& id, int64_t now_ms);

absl::Status InsertSession(sql::Transaction& tx, const std::string& token_hash,
                           const std::string& customer_id, int64_t now_ms, int64_t expires_at_ms);
absl::StatusOr<std::optional<SessionRecord>> FindSession(sql::Transaction& tx,
                                                         const std::string& token_hash);
// Returns how many sessions were revoked.
absl::StatusOr<int64_t> RevokeSession(sql::Transaction& tx, const std::string& token_hash,
                                      int64_t now_ms);
// Revokes every live session of `customer_id` except `keep_token_hash` ("" keeps none).
absl::StatusOr<int64_t> RevokeOtherSessions(sql::Transaction& tx, const std::string& customer_id,
                                            const std::string& keep_token_hash, int64_t now_ms);

absl::Status InsertAddress(sql::Transaction& tx, const AddressRecord& address);
absl::StatusOr<std::vector<AddressRecord>> ListAddresses(sql::Transaction& tx,
                                                         const std::string& customer_id,
                                                         int64_t limit);
absl::StatusOr<int64_t> CountAddresses(sql::Transaction& tx, const std::string& customer_id);
// Only an address of `customer_id`: another customer's id finds nothing.
absl::StatusOr<std::optional<AddressRecord>> FindAddress(sql::Transaction& tx,
                                                         const std::string& id,
                                                         const std::string& customer_id);
absl::StatusOr<int64_t> UpdateAddress(sql::Transaction& tx, const AddressRecord& address);
absl::StatusOr<int64_t> DeleteAddress(sql::Transaction& tx, const std::string& id,
                                      const std::string& customer_id);

absl::Status InsertVerification(sql::Transaction& tx, const std::string& token_hash,
                                const VerificationRecord& verification);
absl::StatusOr<std::optional<VerificationRecord>> FindVerification(sql::Transaction& tx,
                                                                   const std::string& token_hash);
absl::Status MarkVerificationUsed(sql::Transaction& tx, const std::string& token_hash,
                                  int64_t now_ms);

absl::Status InsertStaffKey(sql::Transaction& tx, const std::string& key_hash,
                            const StaffKeyRecord& key);
absl::StatusOr<std::optional<StaffKeyRecord>> FindStaffKeyByHash(sql::Transaction& tx,
                                                                 const std::string& key_hash);
absl::StatusOr<std::vector<StaffKeyRecord>> ListStaffKeys(sql::Transaction& tx, int64_t limit);
absl::StatusOr<int64_t> RevokeStaffKey(sql::Transaction& tx, const std::string& id, int64_t now_ms);

// A stored Idempotency-Key outcome (see migrations/0002_idempotency.sql).
struct IdempotencyRecord {
  std::string request_hash;
  int status = 0;
  std::string body;
};
absl::StatusOr<std::optional<IdempotencyRecord>> FindIdempotency(sql::Transaction& tx,
                                                                 const std::string& key);
// AlreadyExists when `key` is already recorded.
absl::Status InsertIdempotency(sql::Transaction& tx, const std::string& key,
                               const IdempotencyRecord& record, int64_t now_ms);

}  // namespace emporium::accounts
