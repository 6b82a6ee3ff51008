// The card vault: card numbers (PANs) encrypted at rest with XChaCha20-Poly1305 (libsodium
// AEAD) under a key from a keyring, with the key id stored beside each ciphertext so keys can
// rotate. The token and key id are bound into the ciphertext as associated data, so a
// ciphertext copied onto another row does not decrypt. The CVC is never stored anywhere.
//
// Keyring text (EMPORIUM_PAYMENTS_VAULT_KEY, or the contents of a key file): entries
// `<key id>:<32-byte key as 64 hex digits or base64>` separated by commas or newlines. The FIRST
// entry is the active key (new cards and rotation encrypt under it); the others only decrypt.
// Rotating: put a new key first, keep the old ones, run `emporium payments rotate-key`.
//
// Thread-safety: VaultKeyring and Vault are immutable after construction; safe from any thread.
// The table functions run inside the caller's transaction.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "payments/model.h"
#include "platform/sql/database.h"

namespace emporium::payments {

inline constexpr size_t kVaultKeyBytes = 32;
inline constexpr size_t kVaultKeyringEntriesMax = 16;
inline constexpr char kVaultKeyEnvironment[] = "EMPORIUM_PAYMENTS_VAULT_KEY";
inline constexpr char kVaultKeyFileEnvironment[] = "EMPORIUM_PAYMENTS_VAULT_KEY_FILE";

class VaultKeyring {
 public:
  // Parses keyring text (see above). InvalidArgument for a malformed entry, a wrong key length,
  // a duplicate id or an empty ring; the message never contains key material.
  static absl::StatusOr<VaultKeyring> Parse(std::string_view text);
  // Reads the keyring from the file named by `key_file` when non-empty, else from the
  // environment (EMPORIUM_PAYMENTS_VAULT_KEY, then the file named by
  // EMPORIUM_PAYMENTS_VAULT_KEY_FILE). NotFound when none is configured.
  static absl::StatusOr<VaultKeyring> Load(const std::string& key_file);
  // A fresh random key as keyring text "<id>:<hex>", for development and tests.
  static std::string GenerateEntry(std::string_view key_id);

  const std::string& active_key_id() const { return active_key_id_; }
  // The key for `key_id`, or nullptr.
  const std::string* Find(std::string_view key_id) const;

 private:
  std::string active_key_id_;
  std::map<std::string, std::string, std::less<>> keys_;  // id -> 32 raw bytes
};

struct SealedCard {
  std::string key_id;
  std::string nonce;       // raw bytes
  std::string ciphertext;  // raw bytes, with the authentication tag
};

// What the rest of payments sees of a stored card.
struct PaymentMethod {
  std::string token;  // "pm_" + 32 hex digits, random
  std::string customer_id;
  CardBrand brand = CardBrand::kVisa;
  std::string last4;
  int expiry_month = 0;
  int expiry_year = 0;
  int64_t created_at_ms = 0;
};

class Vault {
 public:
  explicit Vault(VaultKeyring keyring);

  // A new random token.
  static std::string NewToken();

  // Encrypts `pan` for `token` under the active key.
  absl::StatusOr<SealedCard> Seal(std::string_view token, std::string_view pan) const;
  // Decrypts; NotFound for an unknown key id, DataLoss when authentication fails.
  absl::StatusOr<std::string> Open(std::string_view token, const SealedCard& sealed) const;

  // Inserts the card (validated details) for `customer_id` under a new token; returns what
  // the outside may see. Runs in the caller's write transaction.
  absl::StatusOr<PaymentMethod> Store(sql::Transaction& tx, std::string_view customer_id,
                                      const CardDetails& card, int64_t now_ms) const;
  // The public view of a token; NotFound when unknown.
  absl::StatusOr<PaymentMethod> Find(sql::Transaction& tx, std::string_view token) const;
  // The card number of a token, for the PSP call only.
  absl::StatusOr<std::string> RevealNumber(sql::Transaction& tx, std::string_view token) const;
  // Re-encrypts every row not under the active key; returns how many changed. Run inside one
  // write transaction so a crash leaves either all or none re-encrypted.
  absl::StatusOr<int64_t> Rotate(sql::Transaction& tx) const;

  const VaultKeyring& keyring() const { return keyring_; }

 private:
  VaultKeyring keyring_;
};

}  // namespace emporium::payments
