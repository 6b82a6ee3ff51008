// The `emporium` binary: serve, migrate, config, version.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "CLI/CLI.hpp"
#include "accounts/cli.h"
#include "app/config.h"
#include "app/server_app.h"
#include "catalog/cli.h"
#include "common/format.h"
#include "fmt/format.h"
#include "inventory/store.h"
#include "payments/cli.h"
#include "platform/obs/log.h"
#include "platform/sql/sqlite_database.h"
#include "tools/audit/audit.h"
#include "tools/loadgen/cli.h"
#include "tools/psp_sandbox/cli.h"

namespace emporium::app {
namespace {

constexpr std::string_view kVersion = "0.1.0";

// Flags shared by every command that needs a configuration.
struct ConfigFlags {
  std::string config_path;
  std::string host;
  int port = -1;
  std::string data_dir;
  std::vector<std::string> overrides;

  void AddTo(CLI::App& command) {
    command.add_option("--config", config_path, "TOML configuration file (or EMPORIUM_CONFIG)");
    command.add_option("--host", host, "listen address (server.host)");
    command.add_option("--port", port, "listen port, 0 for any free one (server.port)");
    command.add_option("--data-dir", data_dir, "directory for the databases (storage.data_dir)");
    command.add_option("--set", overrides, "override any setting: --set section.key=value");
  }

  absl::StatusOr<Config> Load() const {
    ConfigSources sources;
    sources.environment = ProcessEnvironment();
    std::string path = config_path;
    if (path.empty()) {
      if (auto it = sources.environment.find("EMPORIUM_CONFIG"); it != sources.environment.end()) {
        path = it->second;
      }
    }
    if (!path.empty()) {
      std::ifstream file(path);
      if (!file) return absl::NotFoundError(fmt::format("cannot read config file {}", path));
      std::stringstream text;
      text << file.rdbuf();
      sources.toml_text = text.str();
      sources.toml_origin = path;
    }
    sources.overrides = overrides;
    if (!host.empty()) sources.overrides.push_back("server.host=" + host);
    if (port >= 0) sources.overrides.push_back(fmt::format("server.port={}", port));
    if (!data_dir.empty()) sources.overrides.push_back("storage.data_dir=" + data_dir);
    return LoadConfig(sources);
  }
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "emporium: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::Status InitLogs(const Config& config) {
  obs::LogOptions options;
  options.level = obs::ParseLogLevel(config.log_level).value_or(obs::LogLevel::kInfo);
  options.path = config.log_path;
  return obs::InitLogging(options);
}

int Serve(const Config& config, const std::string& port_file) {
  if (absl::Status status = InitLogs(config); !status.ok()) return Fail(status);
  // Block the shutdown signals before any thread starts, so every thread inherits the mask and
  // only sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<ServerApp>> app = ServerApp::Open(config);
  if (!app.ok()) return Fail(app.status());
  if (absl::Status status = (*app)->Start(); !status.ok()) return Fail(status);
  if (!port_file.empty()) {
    // Written to a temporary name and renamed, so a reader never sees a partial number.
    const std::string temporary = port_file + ".tmp";
    std::ofstream(temporary) << (*app)->port() << "\n";
    std::rename(temporary.c_str(), port_file.c_str());
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  (*app)->Shutdown();
  return 0;
}

int Migrate(const Config& config) {
  if (absl::Status status = InitLogs(config); !status.ok()) return Fail(status);
  // Opening applies every pending migration; nothing is served.
  absl::StatusOr<std::unique_ptr<ServerApp>> app = ServerApp::Open(config);
  if (!app.ok()) return Fail(app.status());
  (*app)->Shutdown();
  std::printf("migrations applied in %s\n", config.data_dir.c_str());
  return 0;
}

// `emporium inventory rebuild`: recomputes the stock projection from the ledger and reports
// every mismatch (exit 2 when any, unless --repair rewrote them). Run it with the server
// stopped: it must not race the inventory engine.
int InventoryRebuild(const Config& config, bool repair) {
  sql::SqliteOptions options;
  options.path = fmt::format("{}/inventory.db", config.data_dir);
  options.name = "inventory";
  if (!std::filesystem::exists(options.path)) {
    return Fail(absl::NotFoundError(fmt::format("no inventory database at {}", options.path)));
  }
  absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
  if (!database.ok()) return Fail(database.status());
  inventory::InventoryStore store(**database);
  absl::StatusOr<inventory::RebuildReport> report =
      store.Rebuild(repair ? inventory::InventoryStore::RebuildMode::kRepair
                           : inventory::InventoryStore::RebuildMode::kCheckOnly);
  (*database)->Close();
  if (!report.ok()) return Fail(report.status());
  for (const std::string& mismatch : report->mismatches) {
    std::printf("mismatch: %s\n", mismatch.c_str());
  }
  std::printf("inventory rebuild: %lld stock rows checked, %zu mismatches%s\n",
              static_cast<long long>(report->rows_checked), report->mismatches.size(),
              report->repaired ? ", repaired" : "");
  return report->mismatches.empty() || report->repaired ? 0 : 2;
}

// `emporium seed --products N`: the demo catalog through the update queue (server stopped).
int Seed(const Config& config, int64_t products, uint64_t seed, bool if_empty) {
  absl::StatusOr<int64_t> seeded =
      catalog::SeedDataDir(config.data_dir, products, seed,
                           if_empty ? catalog::SeedMode::kOnlyIfEmpty : catalog::SeedMode::kAlways);
  if (!seeded.ok()) return Fail(seeded.status());
  std::printf("seeded %lld products into %s\n", static_cast<long long>(*seeded),
              config.data_dir.c_str());
  return 0;
}

// `emporium catalog reindex`: rebuilds the search index from the store (server stopped; a
// running server rebuilds through POST /api/v1/admin/catalog/reindex while serving).
int CatalogReindex(const Config& config) {
  absl::StatusOr<int64_t> indexed = catalog::ReindexDataDir(config.data_dir);
  if (!indexed.ok()) return Fail(indexed.status());
  std::printf("catalog reindex: %lld products indexed\n", static_cast<long long>(*indexed));
  return 0;
}

// `emporium admin create-key --role R [--label L]`: a staff API key, printed once (only its
// hash is stored). Works with the server running.
int AdminCreateKey(const Config& config, const std::string& role_name, const std::string& label) {
  std::optional<Role> role = ParseRole(role_name);
  if (!role.has_value()) {
    return Fail(
        absl::InvalidArgumentError("--role must be admin, catalog_manager, support or ops"));
  }
  absl::StatusOr<accounts::CreatedStaffKey> created =
      accounts::CreateStaffKeyInDataDir(config.data_dir, *role, label);
  if (!created.ok()) return Fail(created.status());
  std::printf("key id: %s\nrole:   %s\nkey:    %s\n(shown once; store it now)\n",
              created->record.id.c_str(), created->record.role.c_str(), created->key.c_str());
  return 0;
}

// `emporium admin revoke-key --id ID`: the key stops working on its next use.
int AdminRevokeKey(const Config& config, const std::string& key_id) {
  if (absl::Status status = accounts::RevokeStaffKeyInDataDir(config.data_dir, key_id);
      !status.ok()) {
    return Fail(status);
  }
  std::printf("revoked %s\n", key_id.c_str());
  return 0;
}

int PrintConfig(const Config&) {
  for (const SettingInfo& setting : Settings()) {
    std::printf("%-30s %-7s default %-12s %s\n", setting.key.c_str(), setting.type.c_str(),
                setting.default_value.empty() ? "\"\"" : setting.default_value.c_str(),
                setting.description.c_str());
  }
  return 0;
}

int Main(int argc, char** argv) {
  CLI::App cli{"Emporium: an e-commerce platform that never oversells and never charges twice"};
  cli.require_subcommand(1);
  ConfigFlags flags;
  std::string port_file;

  CLI::App* serve = cli.add_subcommand("serve", "run the embedded server (SQLite, in-process bus)");
  flags.AddTo(*serve);
  serve->add_option("--port-file", port_file, "write the bound port to this file once listening");

  CLI::App* migrate = cli.add_subcommand("migrate", "apply pending database migrations and exit");
  flags.AddTo(*migrate);

  CLI::App* config = cli.add_subcommand("config", "list every setting with its default");
  flags.AddTo(*config);

  cli.add_subcommand("version", "print the version");

  CLI::App* inventory = cli.add_subcommand("inventory", "inventory maintenance");
  inventory->require_subcommand(1);
  CLI::App* inventory_rebuild = inventory->add_subcommand(
      "rebuild", "recompute the stock projection from the ledger; report mismatches");
  flags.AddTo(*inventory_rebuild);
  bool inventory_repair = false;
  inventory_rebuild->add_flag("--repair", inventory_repair, "rewrite the mismatching rows");

  CLI::App* seed = cli.add_subcommand("seed", "add the deterministic demo catalog");
  flags.AddTo(*seed);
  int64_t seed_products = 10000;
  uint64_t seed_value = 42;
  bool seed_if_empty = false;
  seed->add_option("--products", seed_products, "how many products")->check(CLI::Range(1, 1000000));
  seed->add_option("--seed", seed_value, "generator seed");
  seed->add_flag("--if-empty", seed_if_empty, "do nothing when the catalog has products");

  CLI::App* catalog_command = cli.add_subcommand("catalog", "catalog maintenance");
  catalog_command->require_subcommand(1);
  CLI::App* catalog_reindex =
      catalog_command->add_subcommand("reindex", "rebuild the search index from the store");
  flags.AddTo(*catalog_reindex);

  loadgen::LoadgenFlags loadgen_flags;
  CLI::App* loadgen_command = loadgen::AddLoadgenCommand(cli, loadgen_flags);
  CLI::App* audit_command = cli.add_subcommand(
      "audit",
      "check the global invariants over every context's database (server stopped or "
      "idle); exit 1 on any violation");
  flags.AddTo(*audit_command);
  std::string audit_psp_url;
  int64_t audit_stuck_grace_seconds = audit::kStuckGraceDefaultMs / 1000;
  audit_command->add_option("--psp-url", audit_psp_url,
                            "compare the payments ledger with this PSP's balance (default: "
                            "payments.psp_url)");
  audit_command
      ->add_option("--stuck-grace-seconds", audit_stuck_grace_seconds,
                   "how long past its saga deadline an unsettled order may be before it is stuck")
      ->check(CLI::Range(int64_t{0}, int64_t{30} * 24 * 3600));

  CLI::App* admin = cli.add_subcommand("admin", "staff API keys");
  admin->require_subcommand(1);
  CLI::App* admin_create_key =
      admin->add_subcommand("create-key", "create a staff API key (printed once)");
  flags.AddTo(*admin_create_key);
  std::string admin_role;
  std::string admin_label;
  admin_create_key->add_option("--role", admin_role, "admin, catalog_manager, support or ops")
      ->required();
  admin_create_key->add_option("--label", admin_label, "who or what the key is for");
  CLI::App* admin_revoke_key = admin->add_subcommand("revoke-key", "revoke a staff API key");
  flags.AddTo(*admin_revoke_key);
  std::string admin_key_id;
  admin_revoke_key->add_option("--id", admin_key_id, "the key id create-key printed")->required();

  payments::PaymentsCliFlags payments_flags;
  CLI::App* payments_command = payments::AddPaymentsCommand(cli, payments_flags);
  flags.AddTo(*payments_flags.rotate_key);
  flags.AddTo(*payments_flags.audit);
  psp_sandbox::PspSandboxFlags sandbox_flags;
  CLI::App* sandbox_command = psp_sandbox::AddPspSandboxCommand(cli, sandbox_flags);

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return cli.exit(error);
  }

  if (cli.got_subcommand("version")) {
    std::printf("emporium %s\n", std::string(kVersion).c_str());
    return 0;
  }
  if (cli.got_subcommand(loadgen_command)) return loadgen::RunLoadgen(loadgen_flags);
  if (cli.got_subcommand(sandbox_command)) return psp_sandbox::RunPspSandbox(sandbox_flags);
  absl::StatusOr<Config> loaded = flags.Load();
  if (!loaded.ok()) return Fail(loaded.status());
  if (cli.got_subcommand(payments_command)) {
    payments::PaymentsModuleOptions payments_options;
    payments_options.psp_url = loaded->payments.psp_url;
    payments_options.vault_key = loaded->payments.vault_key;
    payments_options.vault_key_file = loaded->payments.vault_key_file;
    payments_options.dev_key_directory = loaded->data_dir;
    return payments::RunPaymentsCommand(payments_flags, loaded->data_dir, payments_options);
  }
  if (cli.got_subcommand(audit_command)) {
    audit::AuditOptions audit_options;
    audit_options.data_dir = loaded->data_dir;
    audit_options.psp_url = audit_psp_url.empty() ? loaded->payments.psp_url : audit_psp_url;
    audit_options.stuck_grace_ms = audit_stuck_grace_seconds * 1000;
    return audit::RunAuditCommand(audit_options);
  }
  if (cli.got_subcommand(serve)) return Serve(*loaded, port_file);
  if (cli.got_subcommand(migrate)) return Migrate(*loaded);
  if (admin->got_subcommand(admin_create_key)) {
    return AdminCreateKey(*loaded, admin_role, admin_label);
  }
  if (admin->got_subcommand(admin_revoke_key)) return AdminRevokeKey(*loaded, admin_key_id);
  if (cli.got_subcommand(config)) return PrintConfig(*loaded);
  if (cli.got_subcommand(seed)) return Seed(*loaded, seed_products, seed_value, seed_if_empty);
  if (catalog_command->got_subcommand(catalog_reindex)) return CatalogReindex(*loaded);
  if (inventory->got_subcommand(inventory_rebuild)) {
    return InventoryRebuild(*loaded, inventory_repair);
  }
  return 0;
}

}  // namespace
}  // namespace emporium::app

int main(int argc, char** argv) { return emporium::app::Main(argc, argv); }
