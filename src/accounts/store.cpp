#include "accounts/store.h"

#include "common/format.h"
#include "common/json.h"
#include "fmt/format.h"

namespace emporium::accounts {
namespace {

using sql::Blob;
using sql::Row;
using sql::Value;

constexpr std::string_view kInsertCustomer =
    "INSERT INTO customers (id, email, password_hash, name, email_verified, created_at_ms, "
    "updated_at_ms, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
constexpr std::string_view kCustomerColumns =
    "SELECT id, email, password_hash, name, email_verified, created_at_ms, updated_at_ms, "
    "version FROM customers";
constexpr std::string_view kUpdateCustomerName =
    "UPDATE customers SET name = ?, updated_at_ms = ?, version = version + 1 WHERE id = ?";
constexpr std::string_view kUpdatePasswordHash =
    "UPDATE customers SET password_hash = ?, updated_at_ms = ?, version = version + 1 "
    "WHERE id = ?";
constexpr std::string_view kMarkEmailVerified =
    "UPDATE customers SET email_verified = 1, updated_at_ms = ?, version = version + 1 "
    "WHERE id = ?";

constexpr std::string_view kInsertSession =
    "INSERT INTO sessions (token_hash, customer_id, created_at_ms, expires_at_ms) "
    "VALUES (?, ?, ?, ?)";
constexpr std::string_view kFindIdempotency =
    "SELECT request_hash, status, body FROM accounts_idempotency WHERE key = ?";
constexpr std::string_view kInsertIdempotency =
    "INSERT INTO accounts_idempotency (key, request_hash, status, body, created_at_ms) "
    "VALUES (?, ?, ?, ?, ?)";
constexpr std::string_view kFindSession =
    "SELECT customer_id, expires_at_ms, revoked FROM sessions WHERE token_hash = ?";
constexpr std::string_view kRevokeSession =
    "UPDATE sessions SET revoked = 1, revoked_at_ms = ? WHERE token_hash = ? AND revoked = 0";
constexpr std::string_view kRevokeOtherSessions =
    "UPDATE sessions SET revoked = 1, revoked_at_ms = ? "
    "WHERE customer_id = ? AND revoked = 0 AND token_hash <> ?";

constexpr std::string_view kInsertAddress =
    "INSERT INTO addresses (id, customer_id, fields, created_at_ms, updated_at_ms) "
    "VALUES (?, ?, ?, ?, ?)";
constexpr std::string_view kListAddresses =
    "SELECT id, customer_id, fields, created_at_ms, updated_at_ms FROM addresses "
    "WHERE customer_id = ? ORDER BY id LIMIT ?";
constexpr std::string_view kCountAddresses = "SELECT COUNT(*) FROM addresses WHERE customer_id = ?";
constexpr std::string_view kFindAddress =
    "SELECT id, customer_id, fields, created_at_ms, updated_at_ms FROM addresses "
    "WHERE id = ? AND customer_id = ?";
constexpr std::string_view kUpdateAddress =
    "UPDATE addresses SET fields = ?, updated_at_ms = ? WHERE id = ? AND customer_id = ?";
constexpr std::string_view kDeleteAddress =
    "DELETE FROM addresses WHERE id = ? AND customer_id = ?";

constexpr std::string_view kInsertVerification =
    "INSERT INTO email_verifications (token_hash, customer_id, email, expires_at_ms) "
    "VALUES (?, ?, ?, ?)";
constexpr std::string_view kFindVerification =
    "SELECT customer_id, email, expires_at_ms, used_at_ms FROM email_verifications "
    "WHERE token_hash = ?";
constexpr std::string_view kUseVerification =
    "UPDATE email_verifications SET used_at_ms = ? WHERE token_hash = ? AND used_at_ms IS NULL";

constexpr std::string_view kInsertStaffKey =
    "INSERT INTO staff_keys (id, key_hash, role, label, created_at_ms) VALUES (?, ?, ?, ?, ?)";
constexpr std::string_view kFindStaffKey =
    "SELECT id, role, label, created_at_ms, revoked FROM staff_keys WHERE key_hash = ?";
constexpr std::string_view kListStaffKeys =
    "SELECT id, role, label, created_at_ms, revoked FROM staff_keys ORDER BY created_at_ms, id "
    "LIMIT ?";
constexpr std::string_view kRevokeStaffKey =
    "UPDATE staff_keys SET revoked = 1, revoked_at_ms = ? WHERE id = ? AND revoked = 0";

CustomerRecord CustomerFrom(const Row& row) {
  return CustomerRecord{row.Text(0),     row.Text(1), row.Text(2), row.Text(3),
                        row.Int(4) != 0, row.Int(5),  row.Int(6),  row.Int(7)};
}

absl::StatusOr<AddressRecord> AddressFrom(const Row& row) {
  absl::StatusOr<Json> json = ParseJson(row.Text(2));
  if (!json.ok()) return absl::DataLossError("stored address is not JSON");
  absl::StatusOr<AddressFields> fields = ParseAddress(*json, AddressInput::kPatch);
  if (!fields.ok()) return absl::DataLossError("stored address does not validate");
  return AddressRecord{row.Text(0), row.Text(1), std::move(*fields), row.Int(3), row.Int(4)};
}

StaffKeyRecord StaffKeyFrom(const Row& row) {
  return StaffKeyRecord{row.Text(0), row.Text(1), row.Text(2), row.Int(3), row.Int(4) != 0};
}

absl::Status ExpectOneRow(absl::StatusOr<int64_t> changed, std::string_view what) {
  if (!changed.ok()) return changed.status();
  if (*changed != 1) return absl::NotFoundError(fmt::format("{} not found", what));
  return absl::OkStatus();
}

}  // namespace

absl::Status InsertCustomer(sql::Transaction& tx, const CustomerRecord& customer) {
  return tx
      .Execute(kInsertCustomer, {customer.id, customer.email, customer.password_hash, customer.name,
                                 int64_t{customer.email_verified ? 1 : 0}, customer.created_at_ms,
                                 customer.updated_at_ms, customer.version})
      .status();
}

absl::StatusOr<std::optional<CustomerRecord>> FindCustomerById(sql::Transaction& tx,
                                                               const std::string& id) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query(fmt::format("{} WHERE id = ?", kCustomerColumns), {id});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return CustomerFrom(rows->rows[0]);
}

absl::StatusOr<std::optional<CustomerRecord>> FindCustomerByEmail(sql::Transaction& tx,
                                                                  const std::string& email) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query(fmt::format("{} WHERE email = ?", kCustomerColumns), {email});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return CustomerFrom(rows->rows[0]);
}

absl::Status UpdateCustomerName(sql::Transaction& tx, const std::string& id,
                                const std::string& name, int64_t now_ms) {
  return ExpectOneRow(tx.Execute(kUpdateCustomerName, {name, now_ms, id}), "customer");
}

absl::Status UpdatePasswordHash(sql::Transaction& tx, const std::string& id,
                                const std::string& password_hash, int64_t now_ms) {
  return ExpectOneRow(tx.Execute(kUpdatePasswordHash, {password_hash, now_ms, id}), "customer");
}

absl::Status MarkEmailVerified(sql::Transaction& tx, const std::string& id, int64_t now_ms) {
  return ExpectOneRow(tx.Execute(kMarkEmailVerified, {now_ms, id}), "customer");
}

absl::Status InsertSession(sql::Transaction& tx, const std::string& token_hash,
                           const std::string& customer_id, int64_t now_ms, int64_t expires_at_ms) {
  return tx.Execute(kInsertSession, {Blob{token_hash}, customer_id, now_ms, expires_at_ms})
      .status();
}

absl::StatusOr<std::optional<SessionRecord>> FindSession(sql::Transaction& tx,
                                                         const std::string& token_hash) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kFindSession, {Blob{token_hash}});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  const Row& row = rows->rows[0];
  return SessionRecord{row.Text(0), row.Int(1), row.Int(2) != 0};
}

absl::StatusOr<int64_t> RevokeSession(sql::Transaction& tx, const std::string& token_hash,
                                      int64_t now_ms) {
  return tx.Execute(kRevokeSession, {now_ms, Blob{token_hash}});
}

absl::StatusOr<int64_t> RevokeOtherSessions(sql::Transaction& tx, const std::string& customer_id,
                                            const std::string& keep_token_hash, int64_t now_ms) {
  return tx.Execute(kRevokeOtherSessions, {now_ms, customer_id, Blob{keep_token_hash}});
}

absl::Status InsertAddress(sql::Transaction& tx, const AddressRecord& address) {
  return tx
      .Execute(kInsertAddress,
               {address.id, address.customer_id, DumpJson(AddressFieldsJson(address.fields)),
                address.created_at_ms, address.updated_at_ms})
      .status();
}

absl::StatusOr<std::vector<AddressRecord>> ListAddresses(sql::Transaction& tx,
                                                         const std::string& customer_id,
                                                         int64_t limit) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kListAddresses, {customer_id, limit});
  if (!rows.ok()) return rows.status();
  std::vector<AddressRecord> addresses;
  for (const Row& row : rows->rows) {
    absl::StatusOr<AddressRecord> address = AddressFrom(row);
    if (!address.ok()) return address.status();
    addresses.push_back(std::move(*address));
  }
  return addresses;
}

absl::StatusOr<int64_t> CountAddresses(sql::Transaction& tx, const std::string& customer_id) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kCountAddresses, {customer_id});
  if (!rows.ok()) return rows.status();
  return rows->rows.at(0).Int(0);
}

absl::StatusOr<std::optional<AddressRecord>> FindAddress(sql::Transaction& tx,
                                                         const std::string& id,
                                                         const std::string& customer_id) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kFindAddress, {id, customer_id});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  absl::StatusOr<AddressRecord> address = AddressFrom(rows->rows[0]);
  if (!address.ok()) return address.status();
  return std::optional<AddressRecord>(std::move(*address));
}

absl::StatusOr<int64_t> UpdateAddress(sql::Transaction& tx, const AddressRecord& address) {
  return tx.Execute(kUpdateAddress, {DumpJson(AddressFieldsJson(address.fields)),
                                     address.updated_at_ms, address.id, address.customer_id});
}

absl::StatusOr<int64_t> DeleteAddress(sql::Transaction& tx, const std::string& id,
                                      const std::string& customer_id) {
  return tx.Execute(kDeleteAddress, {id, customer_id});
}

absl::Status InsertVerification(sql::Transaction& tx, const std::string& token_hash,
                                const VerificationRecord& verification) {
  return tx
      .Execute(kInsertVerification, {Blob{token_hash}, verification.customer_id, verification.email,
                                     verification.expires_at_ms})
      .status();
}

absl::StatusOr<std::optional<VerificationRecord>> FindVerification(sql::Transaction& tx,
                                                                   const std::string& token_hash) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kFindVerification, {Blob{token_hash}});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  const Row& row = rows->rows[0];
  return VerificationRecord{row.Text(0), row.Text(1), row.Int(2), !row.IsNull(3)};
}

absl::Status MarkVerificationUsed(sql::Transaction& tx, const std::string& token_hash,
                                  int64_t now_ms) {
  return ExpectOneRow(tx.Execute(kUseVerification, {now_ms, Blob{token_hash}}), "verification");
}

absl::Status InsertStaffKey(sql::Transaction& tx, const std::string& key_hash,
                            const StaffKeyRecord& key) {
  return tx
      .Execute(kInsertStaffKey, {key.id, Blob{key_hash}, key.role, key.label, key.created_at_ms})
      .status();
}

absl::StatusOr<std::optional<StaffKeyRecord>> FindStaffKeyByHash(sql::Transaction& tx,
                                                                 const std::string& key_hash) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kFindStaffKey, {Blob{key_hash}});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return StaffKeyFrom(rows->rows[0]);
}

absl::StatusOr<std::vector<StaffKeyRecord>> ListStaffKeys(sql::Transaction& tx, int64_t limit) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kListStaffKeys, {limit});
  if (!rows.ok()) return rows.status();
  std::vector<StaffKeyRecord> keys;
  for (const Row& row : rows->rows) keys.push_back(StaffKeyFrom(row));
  return keys;
}

absl::StatusOr<int64_t> RevokeStaffKey(sql::Transaction& tx, const std::string& id,
                                       int64_t now_ms) {
  return tx.Execute(kRevokeStaffKey, {now_ms, id});
}

absl::StatusOr<std::optional<IdempotencyRecord>> FindIdempotency(sql::Transaction& tx,
                                                                 const std::string& key) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kFindIdempotency, {key});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  const Row& row = rows->rows[0];
  return IdempotencyRecord{row.Text(0), static_cast<int>(row.Int(1)), row.Text(2)};
}

absl::Status InsertIdempotency(sql::Transaction& tx, const std::string& key,
                               const IdempotencyRecord& record, int64_t now_ms) {
  return tx
      .Execute(kInsertIdempotency,
               {key, record.request_hash, static_cast<int64_t>(record.status), record.body, now_ms})
      .status();
}

}  // namespace emporium::accounts
