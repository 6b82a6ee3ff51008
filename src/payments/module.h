// PaymentsModule: the payments context as the composition root sees it (ContextModule).
//
// Wire() loads the vault keyring, builds the HTTP client for the PSP and the PaymentsService on
// the context's database, subscribes the bus consumer "payments.commands" to every `payments.`
// command (authorize, capture, void, refund; see HandleBusCommand) and adds the HTTP routes.
// Start() starts the service's workers and its recovery sweep (which first re-drives every open
// PSP attempt); Stop() stops them (after the HTTP server has drained, before the bus stops).
//
// The PSP being unreachable never stops the server: commands answer with the breaker's and
// the client's Unavailable outcomes ("circuit_open", "psp_unavailable") and nothing is charged.
// Readiness therefore does not depend on the PSP.
//
// Vault keyring, in order: `vault_key` (keyring text; config payments.vault_key, i.e.
// EMPORIUM_PAYMENTS_VAULT_KEY), `vault_key_file` (payments.vault_key_file, i.e.
// EMPORIUM_PAYMENTS_VAULT_KEY_FILE). When neither is set and `dev_key_directory` is non-empty
// (embedded mode), a development key file `payments_vault.key` is created there once with
// permissions 0600 (and reused afterwards), with a warning in the log: fine on a laptop, but a
// production deployment supplies its own key.
//
// Thread-safety: as ContextModule (Wire/Start/Stop from the owner thread); ReadinessProblem
// from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "payments/psp_client.h"
#include "payments/service.h"
#include "payments/vault.h"
#include "platform/context/context_module.h"

namespace emporium::payments {

inline constexpr std::string_view kCommandConsumer = "payments.commands";
inline constexpr std::string_view kCommandPrefix = "payments.";
inline constexpr char kDevKeyFileName[] = "payments_vault.key";

struct PaymentsModuleOptions {
  // The PSP's base URL, "http://host:port" (no TLS: the sandbox, or a local TLS proxy).
  std::string psp_url = "http://127.0.0.1:8090";
  absl::Duration psp_timeout = absl::Seconds(5);
  // Secret of the PSP's signed notifications; empty: every notification is refused (401).
  std::string webhook_secret;
  std::string vault_key;       // keyring text; wins over vault_key_file
  std::string vault_key_file;  // a file holding keyring text
  // Where the development key file goes when no key is configured; empty: a missing key is an
  // error (FailedPrecondition from Wire).
  std::string dev_key_directory;
  // Service tuning (its clock and notification secret are replaced by the fields here).
  PaymentsOptions service;
  // Optional PSP client (tests); must outlive the module. Null: an HTTP client to psp_url.
  PspClient* psp = nullptr;
  const Clock* clock = &SystemClock::Instance();  // must outlive the module
};

struct PspEndpoint {
  std::string host;
  uint16_t port = 0;
};
// Parses "http://host:port[/]" (port defaults to 80). InvalidArgument otherwise.
absl::StatusOr<PspEndpoint> ParsePspUrl(std::string_view url);

// The keyring as the module would load it (see above), creating the development key file when
// needed. Used by Wire() and by `emporium payments rotate-key`.
absl::StatusOr<VaultKeyring> LoadModuleKeyring(const PaymentsModuleOptions& options);

class PaymentsModule final : public ContextModule {
 public:
  explicit PaymentsModule(PaymentsModuleOptions options);
  ~PaymentsModule() override;

  std::string_view name() const override { return "payments"; }
  std::vector<sql::Migration> Migrations() const override;
  absl::Status Wire(const ContextDeps& deps, http::Router& router) override;
  absl::Status Start() override;
  void Stop() override;
  std::string ReadinessProblem() const override;

  // The service after Wire() (tests, tools); nullptr before.
  PaymentsService* service() { return service_.get(); }

 private:
  PaymentsModuleOptions options_;
  std::unique_ptr<PspClient> owned_psp_;
  std::unique_ptr<PaymentsService> service_;
};

}  // namespace emporium::payments
