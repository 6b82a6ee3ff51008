#include "payments/module.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <utility>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "payments/api.h"
#include "payments/schema.h"
#include "platform/obs/log.h"

namespace emporium::payments {
namespace {

constexpr char kDevKeyId[] = "dev1";

// Creates the development key file exclusively (0600), or reads it when it exists.
absl::StatusOr<VaultKeyring> LoadOrCreateDevKey(const std::string& directory) {
  const std::string path = fmt::format("{}/{}", directory, kDevKeyFileName);
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return absl::UnavailableError(
        fmt::format("cannot create {} for the vault key: {}", directory, error.message()));
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno != EEXIST) {
      return absl::UnavailableError(fmt::format("cannot create vault key file {}", path));
    }
    return VaultKeyring::Load(path);
  }
  const std::string entry = VaultKeyring::GenerateEntry(kDevKeyId) + "\n";
  size_t written = 0;
  while (written < entry.size()) {
    const ssize_t n = ::write(fd, entry.data() + written, entry.size() - written);
    if (n <= 0) {
      ::close(fd);
      ::unlink(path.c_str());
      return absl::UnavailableError(fmt::format("cannot write vault key file {}", path));
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) {
    ::unlink(path.c_str());
    return absl::UnavailableError(fmt::format("cannot sync vault key file {}", path));
  }
  obs::Logger("payments")
      .Warn(
          "no vault key configured: generated a development key file (0600); set "
          "EMPORIUM_PAYMENTS_VAULT_KEY or EMPORIUM_PAYMENTS_VAULT_KEY_FILE in production, and "
          "keep this file: cards stored under it cannot be read without it",
          {{"path", path}});
  return VaultKeyring::Load(path);
}

}  // namespace

absl::StatusOr<PspEndpoint> ParsePspUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return InvalidParam("payments.psp_url", "the PSP url must start with http://");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    if (slash + 1 != rest.size()) {
      return InvalidParam("payments.psp_url", "the PSP url must not have a path");
    }
    rest = rest.substr(0, slash);
  }
  PspEndpoint endpoint;
  endpoint.port = 80;
  const size_t colon = rest.rfind(':');
  std::string_view host = rest;
  if (colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    const std::string_view port_text = rest.substr(colon + 1);
    unsigned port = 0;
    auto [end, error] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (error != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return InvalidParam("payments.psp_url", "the PSP url has an invalid port");
    }
    endpoint.port = static_cast<uint16_t>(port);
  }
  if (host.empty()) return InvalidParam("payments.psp_url", "the PSP url has no host");
  endpoint.host = std::string(host);
  return endpoint;
}

absl::StatusOr<VaultKeyring> LoadModuleKeyring(const PaymentsModuleOptions& options) {
  if (!options.vault_key.empty()) return VaultKeyring::Parse(options.vault_key);
  if (!options.vault_key_file.empty()) return VaultKeyring::Load(options.vault_key_file);
  if (options.dev_key_directory.empty()) {
    return absl::FailedPreconditionError(fmt::format(
        "payments: no vault key; set {} or {}", kVaultKeyEnvironment, kVaultKeyFileEnvironment));
  }
  return LoadOrCreateDevKey(options.dev_key_directory);
}

PaymentsModule::PaymentsModule(PaymentsModuleOptions options) : options_(std::move(options)) {}

PaymentsModule::~PaymentsModule() { Stop(); }

std::vector<sql::Migration> PaymentsModule::Migrations() const { return PaymentsMigrations(); }

absl::Status PaymentsModule::Wire(const ContextDeps& deps, http::Router& router) {
  if (deps.database == nullptr || deps.bus == nullptr) {
    return absl::InvalidArgumentError("payments: database and bus are required");
  }
  if (service_) return absl::FailedPreconditionError("payments: already wired");
  absl::StatusOr<VaultKeyring> keyring = LoadModuleKeyring(options_);
  if (!keyring.ok()) return keyring.status();
  PspClient* psp = options_.psp;
  if (psp == nullptr) {
    absl::StatusOr<PspEndpoint> endpoint = ParsePspUrl(options_.psp_url);
    if (!endpoint.ok()) return endpoint.status();
    HttpPspOptions client;
    client.host = endpoint->host;
    client.port = endpoint->port;
    client.timeout = options_.psp_timeout;
    owned_psp_ = MakeHttpPspClient(client);
    psp = owned_psp_.get();
  }
  PaymentsOptions service_options = options_.service;
  service_options.clock = options_.clock;
  service_options.notification_secret = options_.webhook_secret;
  service_options.metrics = deps.metrics;
  service_ = std::make_unique<PaymentsService>(*deps.database, Vault(*std::move(keyring)), *psp,
                                               std::move(service_options));
  PaymentsService* raw = service_.get();
  absl::Status subscribed = deps.bus->Subscribe(
      std::string(kCommandConsumer), *deps.database, {std::string(kCommandPrefix)},
      [raw](sql::Transaction& transaction, const bus::Envelope& envelope) {
        return raw->HandleBusCommand(transaction, envelope);
      });
  if (!subscribed.ok()) return subscribed;
  AddPaymentsRoutes(router, *service_, ApiOptions{deps.admin_api_key});
  return absl::OkStatus();
}

absl::Status PaymentsModule::Start() {
  if (!service_) return absl::FailedPreconditionError("payments: Start before Wire");
  service_->Start();
  return absl::OkStatus();
}

void PaymentsModule::Stop() {
  if (service_) service_->Stop();
}

std::string PaymentsModule::ReadinessProblem() const {
  // The PSP's reachability is deliberately not a readiness condition: with the PSP down the
  // server still serves everything else and payment commands fail fast (circuit_open).
  return service_ ? "" : "payments not wired";
}

}  // namespace emporium::payments
