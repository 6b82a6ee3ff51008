#include "app/server_app.h"

#include <filesystem>

#include "accounts/module.h"
#include "app/platform_routes.h"
#include "catalog/module.h"
#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "gateway/gateway.h"
#include "inventory/module.h"
#include "ordering/module.h"
#include "payments/module.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/schema.h"
#include "platform/http/server.h"
#include "platform/obs/log.h"
#include "platform/obs/metrics.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::app {
namespace {

// Ordering's options from [ordering]; InvalidArgument naming the key for bad rate texts.
absl::StatusOr<ordering::OrderingOptions> OrderingOptionsFrom(const OrderingConfig& config) {
  ordering::OrderingOptions options = ordering::OrderingModule::DefaultOrderingOptions();
  const std::string_view shipping =
      config.shipping.empty() ? ordering::kDefaultShippingRates : config.shipping;
  const std::string_view tax = config.tax_bp.empty() ? ordering::kDefaultTaxRates : config.tax_bp;
  // Each text is checked on its own first, so the error names the key that is wrong.
  if (absl::Status status = ordering::ParsePricingRules(shipping, "").status(); !status.ok()) {
    return InvalidParam("ordering.shipping",
                        fmt::format("ordering.shipping: {}", status.message()));
  }
  absl::StatusOr<ordering::PricingRules> rules = ordering::ParsePricingRules(shipping, tax);
  if (!rules.ok()) {
    return InvalidParam("ordering.tax_bp",
                        fmt::format("ordering.tax_bp: {}", rules.status().message()));
  }
  options.pricing = *std::move(rules);
  options.cart_limits.line_quantity_max = config.line_quantity_max;
  options.cart_limits.lines_max = static_cast<size_t>(config.cart_lines_max);
  options.cart_reservation_ttl_ms = config.cart_reservation_ttl_seconds * 1000;
  options.order_reservation_ttl_ms = config.order_reservation_ttl_seconds * 1000;
  return options;
}

// The contexts of this build, each built from its typed slice of the configuration. This is
// the one place that knows which contexts exist.
absl::StatusOr<std::vector<ContextRuntime>> BuildContexts(const Config& config) {
  absl::StatusOr<ordering::OrderingOptions> ordering_options = OrderingOptionsFrom(config.ordering);
  if (!ordering_options.ok()) return ordering_options.status();
  std::vector<ContextRuntime> contexts;
  contexts.push_back(ContextRuntime{
      std::make_unique<accounts::AccountsModule>(accounts::AccountsModuleOptions{}), nullptr});
  catalog::CatalogOptions catalog_options;
  catalog_options.search_directory = fmt::format("{}/catalog_search", config.data_dir);
  catalog_options.static_directory = fmt::format("{}/static", config.data_dir);
  contexts.push_back(ContextRuntime{
      std::make_unique<catalog::CatalogModule>(std::move(catalog_options)), nullptr});
  inventory::InventoryModuleOptions inventory_options;
  inventory_options.shard_queue_capacity =
      static_cast<size_t>(config.inventory.shard_queue_capacity);
  inventory_options.batch_linger_us = config.inventory.batch_linger_us;
  inventory_options.settled_retention_ms = config.inventory.settled_retention_s * 1000;
  contexts.push_back(
      ContextRuntime{std::make_unique<inventory::InventoryModule>(inventory_options), nullptr});
  payments::PaymentsModuleOptions payments_options;
  payments_options.psp_url = config.payments.psp_url;
  payments_options.webhook_secret = config.payments.webhook_secret;
  payments_options.vault_key = config.payments.vault_key;
  payments_options.vault_key_file = config.payments.vault_key_file;
  payments_options.dev_key_directory = config.data_dir;
  payments_options.service.authorization_ttl =
      absl::Seconds(config.payments.authorization_ttl_seconds);
  contexts.push_back(ContextRuntime{
      std::make_unique<payments::PaymentsModule>(std::move(payments_options)), nullptr});
  contexts.push_back(ContextRuntime{
      std::make_unique<ordering::OrderingModule>(*std::move(ordering_options)), nullptr});
  return contexts;
}

// The gateway's settings; authentication goes to the accounts context (sessions, staff keys,
// the legacy admin key).
gateway::GatewayOptions GatewayOptionsFrom(const Config& config,
                                           std::vector<ContextRuntime>& contexts) {
  gateway::GatewayOptions options;
  options.cors_origin = config.gateway.cors_origin;
  if (!config.gateway.content_security_policy.empty()) {
    options.content_security_policy = config.gateway.content_security_policy;
  }
  const GatewayConfig& g = config.gateway;
  const std::pair<int64_t, int64_t> limits[] = {{g.read_per_minute, g.read_burst},
                                                {g.write_per_minute, g.write_burst},
                                                {g.checkout_per_minute, g.checkout_burst},
                                                {g.login_per_minute, g.login_burst}};
  for (size_t i = 0; i < gateway::kRouteClassCount; ++i) {
    const auto [per_minute, burst] = limits[i];
    const double factor = static_cast<double>(g.address_factor);
    options.limits[i].enabled = per_minute > 0;
    options.limits[i].per_principal = {static_cast<double>(burst), per_minute / 60.0};
    options.limits[i].per_address = {static_cast<double>(burst) * factor,
                                     per_minute / 60.0 * factor};
  }
  accounts::AccountsService* service = nullptr;
  for (ContextRuntime& context : contexts) {
    if (auto* module = dynamic_cast<accounts::AccountsModule*>(context.module.get())) {
      service = module->service();
    }
  }
  options.authenticate = [service](std::string_view credential) -> absl::StatusOr<Principal> {
    if (service == nullptr) return absl::UnauthenticatedError("accounts are not running");
    return service->Authenticate(credential);
  };
  return options;
}

}  // namespace

ServerApp::ServerApp(const Config& config)
    : config_(config),
      metrics_(std::make_unique<obs::MetricsRegistry>()),
      logger_(std::make_unique<obs::Logger>("app")) {}

ServerApp::~ServerApp() { Shutdown(); }

absl::StatusOr<std::unique_ptr<ServerApp>> ServerApp::Open(const Config& config) {
  std::unique_ptr<ServerApp> app(new ServerApp(config));
  if (absl::Status status = app->OpenDatabases(); !status.ok()) return status;
  if (absl::Status status = app->WireBus(); !status.ok()) return status;
  if (absl::Status status = app->WireContexts(); !status.ok()) return status;
  app->AddPlatformRoutes();
  return app;
}

absl::Status ServerApp::OpenDatabases() {
  std::error_code error;
  std::filesystem::create_directories(config_.data_dir, error);
  if (error) {
    return absl::UnavailableError(
        fmt::format("cannot create data directory {}: {}", config_.data_dir, error.message()));
  }
  absl::StatusOr<std::vector<ContextRuntime>> contexts = BuildContexts(config_);
  if (!contexts.ok()) return contexts.status();
  contexts_ = *std::move(contexts);
  for (ContextRuntime& context : contexts_) {
    const std::string name(context.module->name());
    sql::SqliteOptions options;
    options.path = fmt::format("{}/{}.db", config_.data_dir, name);
    options.name = name;
    options.write_queue_capacity = static_cast<size_t>(config_.database_write_queue_capacity);
    options.batch_jobs_max = static_cast<size_t>(config_.database_batch_jobs_max);
    options.writer_cache_kib = config_.database_writer_cache_mib * 1024;
    options.deferred_sync =
        config_.database_deferred_sync != 0 && context.module->SupportsDeferredSync();
    options.metrics = metrics_.get();
    absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
    if (!database.ok()) return database.status();
    context.database = std::move(*database);
    if (absl::Status status = bus::InstallBusSchema(*context.database); !status.ok()) {
      return status;
    }
    absl::Status status =
        sql::ApplyMigrations(*context.database, name, context.module->Migrations());
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ServerApp::WireBus() {
  bus::BusOptions options;
  options.metrics = metrics_.get();
  options.retry.attempts_max = static_cast<int>(config_.bus_handler_attempts_max);
  bus_ = std::make_unique<bus::BusRuntime>(options);
  for (ContextRuntime& context : contexts_) {
    absl::Status status = bus_->AddDatabase(std::string(context.module->name()), *context.database);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ServerApp::WireContexts() {
  for (ContextRuntime& context : contexts_) {
    ContextDeps deps;
    deps.database = context.database.get();
    deps.bus = bus_.get();
    deps.metrics = metrics_.get();
    deps.admin_api_key = config_.admin_api_key;
    if (absl::Status status = context.module->Wire(deps, router_); !status.ok()) return status;
  }
  return absl::OkStatus();
}

void ServerApp::AddPlatformRoutes() {
  PlatformRouteDeps deps;
  deps.metrics = metrics_.get();
  deps.bus = bus_.get();
  deps.admin_api_key = config_.admin_api_key;
  deps.data_dir = config_.data_dir;
  deps.psp_url = config_.payments.psp_url;
  for (ContextRuntime& context : contexts_) {
    sql::Database* database = context.database.get();
    const ContextModule* module = context.module.get();
    const std::string name(module->name());
    deps.readiness_checks.emplace_back(
        fmt::format("{}.database", name),
        [database, name, migrations = module->Migrations()]() -> std::string {
          absl::StatusOr<bool> bus_current =
              sql::MigrationsCurrent(*database, "bus", bus::BusMigrations(database->dialect()));
          if (!bus_current.ok()) return std::string(bus_current.status().message());
          if (!*bus_current) return "bus migrations pending";
          absl::StatusOr<bool> current = sql::MigrationsCurrent(*database, name, migrations);
          if (!current.ok()) return std::string(current.status().message());
          return *current ? "" : "migrations pending";
        });
    deps.readiness_checks.emplace_back(fmt::format("{}.service", name),
                                       [module] { return module->ReadinessProblem(); });
  }
  deps.readiness_checks.emplace_back("bus.relay", [this]() -> std::string {
    return bus_running_.load() ? "" : "relay not running";
  });
  app::AddPlatformRoutes(router_, std::move(deps));
}

absl::Status ServerApp::Start() {
  if (absl::Status status = bus_->Start(); !status.ok()) return status;
  bus_running_.store(true);
  for (ContextRuntime& context : contexts_) {
    if (absl::Status status = context.module->Start(); !status.ok()) return status;
  }

  http::ServerOptions options;
  options.host = config_.server.host;
  options.port = static_cast<uint16_t>(config_.server.port);
  options.io_threads = config_.server.io_threads;
  options.body_bytes_max = static_cast<size_t>(config_.server.body_limit_bytes);
  options.header_timeout = absl::Milliseconds(config_.server.header_timeout_ms);
  options.request_timeout = absl::Milliseconds(config_.server.request_timeout_ms);
  options.metrics = metrics_.get();
  auto access_logger = std::make_shared<obs::Logger>("http");
  // Above info the access log is off: no hook, so no per-request entry is built at all.
  const bool access_logged =
      obs::ParseLogLevel(config_.log_level).value_or(obs::LogLevel::kInfo) <= obs::LogLevel::kInfo;
  if (access_logged) {
    options.access_log = [access_logger](const http::AccessLogEntry& entry) {
      if (!access_logger->Enabled(obs::LogLevel::kInfo)) return;
      access_logger->WithIds(entry.request_id, entry.trace_id)
          .Info("request", {{"method", entry.method},
                            {"path", entry.path},
                            {"route", entry.route},
                            {"status", entry.status},
                            {"duration_ms", absl::ToDoubleMilliseconds(entry.duration)},
                            {"bytes", entry.bytes},
                            {"remote", entry.remote_address}});
    };
  }
  gateway_ = std::make_unique<gateway::Gateway>(router_, GatewayOptionsFrom(config_, contexts_));
  gateway_router_ = gateway_->ServingRouter();
  server_ = std::make_unique<http::HttpServer>(options, gateway_router_);
  if (absl::Status status = server_->Start(); !status.ok()) return status;
  logger_->Info("listening", {{"host", config_.server.host},
                              {"port", static_cast<int64_t>(server_->port())},
                              {"data_dir", config_.data_dir}});
  return absl::OkStatus();
}

uint16_t ServerApp::port() const { return server_ ? server_->port() : 0; }

void ServerApp::Shutdown() {
  if (shut_down_.exchange(true)) return;
  if (server_) {
    logger_->Info("shutting down", {{"drain_timeout_ms", config_.server.drain_timeout_ms}});
    server_->Shutdown(absl::Milliseconds(config_.server.drain_timeout_ms));
  }
  for (ContextRuntime& context : contexts_) context.module->Stop();
  if (bus_) bus_->Stop();
  bus_running_.store(false);
  for (ContextRuntime& context : contexts_) {
    if (context.database) context.database->Close();
  }
  logger_->Info("stopped");
}

void ServerApp::Wait() {
  if (server_) server_->Wait();
}

}  // namespace emporium::app
