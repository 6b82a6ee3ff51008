#include "payments/vault.h"

#include <sodium.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>
#include <vector>

#include "common/format.h"
#include "fmt/format.h"

namespace emporium::payments {
namespace {

constexpr size_t kKeyIdCharsMax = 64;
constexpr size_t kNumberCharsMax = 19;

// libsodium must be initialized once before use; sodium_init is thread-safe and idempotent,
// but calling it per operation costs a check, so do it once.
void EnsureSodium() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (sodium_init() < 0) std::abort();
  });
}

std::string Trim(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && (text[begin] == ' ' || text[begin] == '\t' || text[begin] == '\r')) {
    ++begin;
  }
  while (end > begin && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r')) {
    --end;
  }
  return std::string(text.substr(begin, end - begin));
}

// Decodes 64 hex digits or base64 (standard or URL-safe, padded or not) into 32 bytes.
std::optional<std::string> DecodeKey(const std::string& text) {
  std::string bytes(kVaultKeyBytes, '\0');
  size_t length = 0;
  if (text.size() == kVaultKeyBytes * 2 &&
      sodium_hex2bin(reinterpret_cast<unsigned char*>(bytes.data()), bytes.size(), text.data(),
                     text.size(), nullptr, &length, nullptr) == 0 &&
      length == kVaultKeyBytes) {
    return bytes;
  }
  for (int variant : {sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                      sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING}) {
    std::string decoded(kVaultKeyBytes + 8, '\0');
    if (sodium_base642bin(reinterpret_cast<unsigned char*>(decoded.data()), decoded.size(),
                          text.data(), text.size(), nullptr, &length, nullptr, variant) == 0 &&
        length == kVaultKeyBytes) {
      decoded.resize(length);
      return decoded;
    }
  }
  return std::nullopt;
}

std::string AssociatedData(std::string_view token, std::string_view key_id) {
  return fmt::format("emporium.vault.v1|{}|{}", token, key_id);
}

const unsigned char* Bytes(std::string_view text) {
  return reinterpret_cast<const unsigned char*>(text.data());
}

constexpr char kInsertCard[] =
    "INSERT INTO payment_methods (token, customer_id, brand, last4, expiry_month, expiry_year, "
    "key_id, nonce, ciphertext, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
constexpr char kSelectCard[] =
    "SELECT token, customer_id, brand, last4, expiry_month, expiry_year, created_at_ms "
    "FROM payment_methods WHERE token = ?";
constexpr char kSelectSealed[] =
    "SELECT key_id, nonce, ciphertext FROM payment_methods WHERE token = ?";
constexpr char kSelectStale[] =
    "SELECT token, key_id, nonce, ciphertext FROM payment_methods WHERE key_id <> ?";
constexpr char kUpdateSealed[] =
    "UPDATE payment_methods SET key_id = ?, nonce = ?, ciphertext = ? WHERE token = ?";

}  // namespace

absl::StatusOr<VaultKeyring> VaultKeyring::Parse(std::string_view text) {
  EnsureSodium();
  VaultKeyring ring;
  size_t start = 0;
  size_t index = 0;
  while (start <= text.size()) {
    size_t end = text.find_first_of(",\n", start);
    if (end == std::string_view::npos) end = text.size();
    const std::string entry = Trim(text.substr(start, end - start));
    start = end + 1;
    if (entry.empty()) continue;
    if (++index > kVaultKeyringEntriesMax) {
      return absl::InvalidArgumentError("vault keyring: too many keys");
    }
    const size_t colon = entry.find(':');
    if (colon == std::string::npos || colon == 0 || colon > kKeyIdCharsMax) {
      return absl::InvalidArgumentError(
          fmt::format("vault keyring: entry {} must look like <key id>:<key>", index));
    }
    std::string key_id = entry.substr(0, colon);
    for (char c : key_id) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
      if (!ok) {
        return absl::InvalidArgumentError(
            fmt::format("vault keyring: entry {} has an invalid key id", index));
      }
    }
    std::optional<std::string> key = DecodeKey(Trim(entry.substr(colon + 1)));
    if (!key.has_value()) {
      return absl::InvalidArgumentError(fmt::format(
          "vault keyring: key '{}' must be 32 bytes as 64 hex digits or base64", key_id));
    }
    if (ring.keys_.count(key_id) != 0) {
      return absl::InvalidArgumentError(
          fmt::format("vault keyring: key id '{}' appears twice", key_id));
    }
    if (ring.active_key_id_.empty()) ring.active_key_id_ = key_id;
    ring.keys_.emplace(std::move(key_id), std::move(*key));
  }
  if (ring.keys_.empty()) return absl::InvalidArgumentError("vault keyring: no keys");
  return ring;
}

absl::StatusOr<VaultKeyring> VaultKeyring::Load(const std::string& key_file) {
  std::string path = key_file;
  if (path.empty()) {
    if (const char* text = std::getenv(kVaultKeyEnvironment); text != nullptr && *text != '\0') {
      return Parse(text);
    }
    if (const char* file = std::getenv(kVaultKeyFileEnvironment); file != nullptr) path = file;
  }
  if (path.empty()) {
    return absl::NotFoundError(
        fmt::format("no vault key: set {} or {}", kVaultKeyEnvironment, kVaultKeyFileEnvironment));
  }
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(fmt::format("cannot read vault key file {}", path));
  std::stringstream text;
  text << file.rdbuf();
  return Parse(text.str());
}

std::string VaultKeyring::GenerateEntry(std::string_view key_id) {
  EnsureSodium();
  unsigned char key[kVaultKeyBytes];
  crypto_aead_xchacha20poly1305_ietf_keygen(key);
  char hex[kVaultKeyBytes * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
  sodium_memzero(key, sizeof(key));
  return fmt::format("{}:{}", key_id, hex);
}

const std::string* VaultKeyring::Find(std::string_view key_id) const {
  auto it = keys_.find(key_id);
  return it == keys_.end() ? nullptr : &it->second;
}

Vault::Vault(VaultKeyring keyring) : keyring_(std::move(keyring)) { EnsureSodium(); }

std::string Vault::NewToken() {
  EnsureSodium();
  unsigned char random[16];
  randombytes_buf(random, sizeof(random));
  char hex[sizeof(random) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), random, sizeof(random));
  return fmt::format("pm_{}", hex);
}

absl::StatusOr<SealedCard> Vault::Seal(std::string_view token, std::string_view pan) const {
  const std::string* key = keyring_.Find(keyring_.active_key_id());
  if (key == nullptr) return absl::InternalError("vault: the active key is missing");
  SealedCard sealed;
  sealed.key_id = keyring_.active_key_id();
  sealed.nonce.resize(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  randombytes_buf(sealed.nonce.data(), sealed.nonce.size());
  sealed.ciphertext.resize(pan.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  const std::string associated = AssociatedData(token, sealed.key_id);
  unsigned long long ciphertext_length = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      reinterpret_cast<unsigned char*>(sealed.ciphertext.data()), &ciphertext_length, Bytes(pan),
      pan.size(), Bytes(associated), associated.size(), nullptr, Bytes(sealed.nonce), Bytes(*key));
  sealed.ciphertext.resize(static_cast<size_t>(ciphertext_length));
  return sealed;
}

absl::StatusOr<std::string> Vault::Open(std::string_view token, const SealedCard& sealed) const {
  const std::string* key = keyring_.Find(sealed.key_id);
  if (key == nullptr) {
    return absl::NotFoundError(fmt::format("vault: key '{}' is not in the keyring", sealed.key_id));
  }
  if (sealed.nonce.size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ||
      sealed.ciphertext.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES ||
      sealed.ciphertext.size() > kNumberCharsMax + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return absl::DataLossError("vault: malformed ciphertext");
  }
  std::string pan(sealed.ciphertext.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  const std::string associated = AssociatedData(token, sealed.key_id);
  unsigned long long pan_length = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(pan.data()), &pan_length, nullptr,
          Bytes(sealed.ciphertext), sealed.ciphertext.size(), Bytes(associated), associated.size(),
          Bytes(sealed.nonce), Bytes(*key)) != 0) {
    return absl::DataLossError("vault: ciphertext failed authentication");
  }
  pan.resize(static_cast<size_t>(pan_length));
  return pan;
}

absl::StatusOr<PaymentMethod> Vault::Store(sql::Transaction& tx, std::string_view customer_id,
                                           const CardDetails& card, int64_t now_ms) const {
  PaymentMethod method;
  method.token = NewToken();
  method.customer_id = std::string(customer_id);
  method.brand = card.brand;
  method.last4 = card.last4;
  method.expiry_month = card.expiry_month;
  method.expiry_year = card.expiry_year;
  method.created_at_ms = now_ms;
  absl::StatusOr<SealedCard> sealed = Seal(method.token, card.number);
  if (!sealed.ok()) return sealed.status();
  absl::StatusOr<int64_t> inserted =
      tx.Execute(kInsertCard,
                 {method.token, method.customer_id, std::string(CardBrandName(card.brand)),
                  card.last4, int64_t{card.expiry_month}, int64_t{card.expiry_year}, sealed->key_id,
                  sql::Blob{sealed->nonce}, sql::Blob{sealed->ciphertext}, now_ms});
  if (!inserted.ok()) return inserted.status();
  return method;
}

absl::StatusOr<PaymentMethod> Vault::Find(sql::Transaction& tx, std::string_view token) const {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kSelectCard, {std::string(token)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::NotFoundError("payment method not found");
  const sql::Row& row = rows->rows.front();
  PaymentMethod method;
  method.token = row.Text(0);
  method.customer_id = row.Text(1);
  const std::optional<CardBrand> brand = ParseCardBrand(row.Text(2));
  if (!brand.has_value()) return absl::DataLossError("payment method has an unknown brand");
  method.brand = *brand;
  method.last4 = row.Text(3);
  method.expiry_month = static_cast<int>(row.Int(4));
  method.expiry_year = static_cast<int>(row.Int(5));
  method.created_at_ms = row.Int(6);
  return method;
}

absl::StatusOr<std::string> Vault::RevealNumber(sql::Transaction& tx,
                                                std::string_view token) const {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kSelectSealed, {std::string(token)});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::NotFoundError("payment method not found");
  const sql::Row& row = rows->rows.front();
  return Open(token, SealedCard{row.Text(0), row.Text(1), row.Text(2)});
}

absl::StatusOr<int64_t> Vault::Rotate(sql::Transaction& tx) const {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kSelectStale, {keyring_.active_key_id()});
  if (!rows.ok()) return rows.status();
  int64_t changed = 0;
  for (const sql::Row& row : rows->rows) {
    const std::string token = row.Text(0);
    absl::StatusOr<std::string> pan =
        Open(token, SealedCard{row.Text(1), row.Text(2), row.Text(3)});
    if (!pan.ok()) return pan.status();
    absl::StatusOr<SealedCard> sealed = Seal(token, *pan);
    sodium_memzero(pan->data(), pan->size());
    if (!sealed.ok()) return sealed.status();
    absl::StatusOr<int64_t> updated = tx.Execute(
        kUpdateSealed,
        {sealed->key_id, sql::Blob{sealed->nonce}, sql::Blob{sealed->ciphertext}, token});
    if (!updated.ok()) return updated.status();
    changed += *updated;
  }
  return changed;
}

}  // namespace emporium::payments
