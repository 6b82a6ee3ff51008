// `emporium payments rotate-key` and `emporium payments audit` as CLI11 subcommands, so
// src/app/main.cpp only registers and dispatches them.
//
// rotate-key: re-encrypts every stored card under the keyring's active (first) key in one write
//   transaction. With --new-key, first puts a freshly generated key at the head of the key file
//   (payments.vault_key_file, or the development key file), keeping the old ones for reading.
//   Run it with the server stopped, then start the server with the new keyring.
// audit: reads the payments database and checks that every ledger transaction balances
//   (debits = credits, one currency, positive amounts) and that the PSP clearing account equals,
//   per currency, what the PSP's GET /v1/balance says it captured net of refunds. Exit 0 when
//   clean, 2 on any violation (with a readable report on stdout), 1 when it could not check.
//
// Thread-safety: call from the main thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "payments/module.h"
#include "payments/store.h"

namespace CLI {
class App;
}

namespace emporium::payments {

struct PaymentsCliFlags {
  bool new_key = false;  // rotate-key --new-key
  std::string psp_url;   // audit --psp-url; empty: payments.psp_url
  CLI::App* command = nullptr;
  CLI::App* rotate_key = nullptr;
  CLI::App* audit = nullptr;
};

// Adds `payments` with its subcommands to `parent`; `flags` must outlive parsing. The caller
// adds its configuration flags to flags.rotate_key and flags.audit.
CLI::App* AddPaymentsCommand(CLI::App& parent, PaymentsCliFlags& flags);
// Runs whichever subcommand was parsed; `options` carries the keyring settings and PSP url.
int RunPaymentsCommand(const PaymentsCliFlags& flags, const std::string& data_dir,
                       const PaymentsModuleOptions& options);

struct LedgerAudit {
  int64_t transaction_count = 0;
  int64_t entry_count = 0;
  std::map<std::string, int64_t> ledger_clearing_minor;  // currency -> psp_clearing debit balance
  std::map<std::string, int64_t> psp_net_minor;          // currency -> captured - refunded
  std::vector<std::string> violations;                   // empty when clean
};

// Pure: checks `entries` (grouped by transaction id) and compares the clearing balances with
// `psp_net_minor`.
LedgerAudit AuditLedger(const std::vector<StoredLedgerEntry>& entries,
                        const std::map<std::string, int64_t>& psp_net_minor);

// Reads the ledger of `data_dir`/payments.db and the PSP's balance at `psp_url`.
absl::StatusOr<LedgerAudit> AuditDataDir(const std::string& data_dir, const std::string& psp_url);

// Re-encrypts every card in `data_dir`/payments.db under the active key; returns how many.
absl::StatusOr<int64_t> RotateDataDir(const std::string& data_dir, const VaultKeyring& keyring);

}  // namespace emporium::payments
