#include "payments/cli.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/time/clock.h"
#include "common/format.h"
#include "common/json.h"
#include "fmt/format.h"
#include "platform/http/client.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::payments {
namespace {

constexpr int kExitViolations = 2;
constexpr absl::Duration kPspTimeout = absl::Seconds(10);
constexpr size_t kViolationsShownMax = 50;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "emporium payments: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<std::unique_ptr<sql::Database>> OpenPayments(const std::string& data_dir) {
  sql::SqliteOptions options;
  options.path = fmt::format("{}/payments.db", data_dir);
  options.name = "payments";
  if (!std::filesystem::exists(options.path)) {
    return absl::NotFoundError(fmt::format("no payments database at {}", options.path));
  }
  return sql::OpenSqlite(options);
}

// Writes `text` to `path` through a 0600 temporary file and a rename, so a crash leaves the old
// or the new keyring, never half of one.
absl::Status ReplaceKeyFile(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(fmt::format("cannot write {}", temporary));
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  const bool ok = written == text.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(temporary.c_str(), path.c_str()) != 0) {
    ::unlink(temporary.c_str());
    return absl::UnavailableError(fmt::format("cannot replace {}", path));
  }
  return absl::OkStatus();
}

// Puts a new key at the head of the key file the module would read.
absl::Status PrependNewKey(const PaymentsModuleOptions& options) {
  if (!options.vault_key.empty()) {
    return absl::FailedPreconditionError(
        "the keyring comes from payments.vault_key (EMPORIUM_PAYMENTS_VAULT_KEY): put a new "
        "entry first there yourself; --new-key only edits key files");
  }
  std::string path = options.vault_key_file;
  if (path.empty()) path = fmt::format("{}/{}", options.dev_key_directory, kDevKeyFileName);
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(fmt::format("cannot read vault key file {}", path));
  std::stringstream old_text;
  old_text << file.rdbuf();
  const std::string entry =
      VaultKeyring::GenerateEntry(fmt::format("k{}", absl::ToUnixSeconds(absl::Now())));
  const std::string text = fmt::format("{}\n{}", entry, old_text.str());
  absl::StatusOr<VaultKeyring> check = VaultKeyring::Parse(text);
  if (!check.ok()) return check.status();
  if (absl::Status status = ReplaceKeyFile(path, text); !status.ok()) return status;
  std::printf("added key %s at the head of %s\n", check->active_key_id().c_str(), path.c_str());
  return absl::OkStatus();
}

int RotateKey(const PaymentsCliFlags& flags, const std::string& data_dir,
              const PaymentsModuleOptions& options) {
  if (flags.new_key) {
    if (absl::Status status = PrependNewKey(options); !status.ok()) return Fail(status);
  }
  absl::StatusOr<VaultKeyring> keyring = LoadModuleKeyring(options);
  if (!keyring.ok()) return Fail(keyring.status());
  absl::StatusOr<int64_t> rotated = RotateDataDir(data_dir, *keyring);
  if (!rotated.ok()) return Fail(rotated.status());
  std::printf("payments rotate-key: %lld cards re-encrypted under key %s\n",
              static_cast<long long>(*rotated), keyring->active_key_id().c_str());
  return 0;
}

int Audit(const PaymentsCliFlags& flags, const std::string& data_dir,
          const PaymentsModuleOptions& options) {
  const std::string psp_url = flags.psp_url.empty() ? options.psp_url : flags.psp_url;
  absl::StatusOr<LedgerAudit> audit = AuditDataDir(data_dir, psp_url);
  if (!audit.ok()) return Fail(audit.status());
  std::printf("payments audit: %lld ledger transactions, %lld entries\n",
              static_cast<long long>(audit->transaction_count),
              static_cast<long long>(audit->entry_count));
  std::map<std::string, bool> currencies;
  for (const auto& [currency, amount] : audit->ledger_clearing_minor) currencies[currency] = true;
  for (const auto& [currency, amount] : audit->psp_net_minor) currencies[currency] = true;
  for (const auto& [currency, unused] : currencies) {
    auto find = [&currency](const std::map<std::string, int64_t>& map) {
      auto it = map.find(currency);
      return it == map.end() ? int64_t{0} : it->second;
    };
    std::printf("  %s: ledger psp_clearing %lld, PSP captured-refunded %lld\n", currency.c_str(),
                static_cast<long long>(find(audit->ledger_clearing_minor)),
                static_cast<long long>(find(audit->psp_net_minor)));
  }
  if (audit->violations.empty()) {
    std::printf("payments audit: OK\n");
    return 0;
  }
  std::printf("payments audit: %zu violation(s)\n", audit->violations.size());
  for (size_t i = 0; i < audit->violations.size() && i < kViolationsShownMax; ++i) {
    std::printf("  - %s\n", audit->violations[i].c_str());
  }
  if (audit->violations.size() > kViolationsShownMax) {
    std::printf("  ... and %zu more\n", audit->violations.size() - kViolationsShownMax);
  }
  return kExitViolations;
}

absl::StatusOr<std::map<std::string, int64_t>> FetchPspBalance(const std::string& psp_url) {
  absl::StatusOr<PspEndpoint> endpoint = ParsePspUrl(psp_url);
  if (!endpoint.ok()) return endpoint.status();
  http::ClientOptions options;
  options.host = endpoint->host;
  options.port = endpoint->port;
  options.request_timeout = kPspTimeout;
  http::HttpClient client(options);
  http::ClientRequest request;
  request.method = "GET";
  request.target = "/v1/balance";
  absl::StatusOr<http::ClientResponse> response = client.Send(request);
  if (!response.ok()) {
    return absl::UnavailableError(
        fmt::format("cannot read the PSP balance at {}: {}", psp_url, response.status().message()));
  }
  if (response->status != 200) {
    return absl::UnavailableError(
        fmt::format("the PSP balance at {} answered HTTP {}", psp_url, response->status));
  }
  absl::StatusOr<Json> body = ParseJsonObject(response->body);
  if (!body.ok()) return absl::DataLossError("the PSP balance is not a JSON object");
  std::map<std::string, int64_t> net;
  const Json balances = body->value("balances", Json::array());
  if (!balances.is_array()) return absl::DataLossError("the PSP balance has no balances list");
  for (const Json& balance : balances) {
    if (!balance.is_object()) return absl::DataLossError("the PSP balance has a bad entry");
    net[balance.value("currency", std::string())] += balance.value("net_minor", int64_t{0});
  }
  return net;
}

}  // namespace

CLI::App* AddPaymentsCommand(CLI::App& parent, PaymentsCliFlags& flags) {
  flags.command = parent.add_subcommand("payments", "payments maintenance");
  flags.command->require_subcommand(1);
  flags.rotate_key = flags.command->add_subcommand(
      "rotate-key", "re-encrypt every stored card under the vault's active key (server stopped)");
  flags.rotate_key->add_flag("--new-key", flags.new_key,
                             "first put a freshly generated key at the head of the key file");
  flags.audit = flags.command->add_subcommand(
      "audit",
      "check that every ledger transaction balances and the PSP clearing account "
      "agrees with the PSP's balance; exit 2 on any violation");
  flags.audit->add_option("--psp-url", flags.psp_url, "the PSP (default: payments.psp_url)");
  return flags.command;
}

int RunPaymentsCommand(const PaymentsCliFlags& flags, const std::string& data_dir,
                       const PaymentsModuleOptions& options) {
  if (flags.command->got_subcommand(flags.rotate_key)) return RotateKey(flags, data_dir, options);
  if (flags.command->got_subcommand(flags.audit)) return Audit(flags, data_dir, options);
  return 1;
}

LedgerAudit AuditLedger(const std::vector<StoredLedgerEntry>& entries,
                        const std::map<std::string, int64_t>& psp_net_minor) {
  LedgerAudit audit;
  audit.entry_count = static_cast<int64_t>(entries.size());
  audit.psp_net_minor = psp_net_minor;
  size_t start = 0;
  while (start < entries.size()) {
    size_t end = start;
    std::vector<LedgerEntry> transaction;
    while (end < entries.size() && entries[end].transaction_id == entries[start].transaction_id) {
      transaction.push_back(entries[end].entry);
      ++end;
    }
    ++audit.transaction_count;
    if (absl::Status balanced = ValidateBalanced(transaction); !balanced.ok()) {
      audit.violations.push_back(fmt::format("ledger transaction {} does not balance: {}",
                                             entries[start].transaction_id, balanced.message()));
    } else {
      absl::StatusOr<int64_t> clearing = DebitBalance(transaction, LedgerAccount::kPspClearing);
      if (clearing.ok()) {
        audit.ledger_clearing_minor[transaction.front().currency] += *clearing;
      } else {
        audit.violations.push_back(fmt::format("ledger transaction {}: {}",
                                               entries[start].transaction_id,
                                               clearing.status().message()));
      }
    }
    start = end;
  }
  std::map<std::string, bool> currencies;
  for (const auto& [currency, amount] : audit.ledger_clearing_minor) currencies[currency] = true;
  for (const auto& [currency, amount] : psp_net_minor) currencies[currency] = true;
  for (const auto& [currency, unused] : currencies) {
    auto ledger = audit.ledger_clearing_minor.find(currency);
    auto psp = psp_net_minor.find(currency);
    const int64_t ledger_minor = ledger == audit.ledger_clearing_minor.end() ? 0 : ledger->second;
    const int64_t psp_minor = psp == psp_net_minor.end() ? 0 : psp->second;
    if (ledger_minor != psp_minor) {
      audit.violations.push_back(fmt::format(
          "{}: the ledger's psp_clearing is {} but the PSP holds {} (captured - refunded); "
          "difference {}",
          currency, ledger_minor, psp_minor, ledger_minor - psp_minor));
    }
  }
  return audit;
}

absl::StatusOr<LedgerAudit> AuditDataDir(const std::string& data_dir, const std::string& psp_url) {
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenPayments(data_dir);
  if (!database.ok()) return database.status();
  std::vector<StoredLedgerEntry> entries;
  absl::Status read = (*database)->Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<StoredLedgerEntry>> loaded = LoadLedger(tx);
    if (!loaded.ok()) return loaded.status();
    entries = std::move(*loaded);
    return absl::OkStatus();
  });
  (*database)->Close();
  if (!read.ok()) return read;
  absl::StatusOr<std::map<std::string, int64_t>> psp = FetchPspBalance(psp_url);
  if (!psp.ok()) return psp.status();
  return AuditLedger(entries, *psp);
}

absl::StatusOr<int64_t> RotateDataDir(const std::string& data_dir, const VaultKeyring& keyring) {
  absl::StatusOr<std::unique_ptr<sql::Database>> database = OpenPayments(data_dir);
  if (!database.ok()) return database.status();
  const Vault vault(keyring);
  int64_t rotated = 0;
  absl::Status status = (*database)->Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<int64_t> count = vault.Rotate(tx);
    if (!count.ok()) return count.status();
    rotated = *count;
    return absl::OkStatus();
  });
  (*database)->Close();
  if (!status.ok()) return status;
  return rotated;
}

}  // namespace emporium::payments
