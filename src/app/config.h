// Emporium's configuration: defaults, then a TOML file, then EMPORIUM_* environment variables,
// then command-line flags — each layer overriding the one before.
//
// Every setting has a dotted key ("server.port"), a type, a default and a description; the
// TOML table [server] port = 8080, the variable EMPORIUM_SERVER_PORT=8080 and the flag
// `--set server.port=8080` all name the same setting. Unknown keys and badly typed values are
// errors, not silently ignored. Pure: the caller passes in the file text and the environment.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace emporium::app {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  int io_threads = 0;  // 0 = one per core
  int64_t body_limit_bytes = 1 << 20;
  int64_t header_timeout_ms = 10'000;
  int64_t request_timeout_ms = 30'000;
  int64_t drain_timeout_ms = 10'000;
};

// The payments context (src/payments/module.h).
struct PaymentsConfig {
  std::string psp_url = "http://127.0.0.1:8090";  // the PSP's base URL (the sandbox by default)
  std::string webhook_secret;  // HMAC secret of the PSP's notifications; empty refuses them
  // The vault keyring (text, or a file holding it). Neither set: a development key file is
  // generated once under the data directory (0600) and the log says so.
  std::string vault_key;
  std::string vault_key_file;
  // Authorized but uncaptured intents older than this are voided at the PSP and expire.
  int64_t authorization_ttl_seconds = 7 * 24 * 3600;
};

// The gateway in front of every route (src/gateway/gateway.h): rate limits per route class,
// each a token bucket per principal (requests per minute, burst); the bucket per client address
// is address_factor times larger. A per_minute of 0 disables that class's limits.
struct GatewayConfig {
  std::string cors_origin;              // the storefront origin allowed by CORS; empty: none
  std::string content_security_policy;  // empty: the gateway's default
  int64_t read_per_minute = 6000;
  int64_t read_burst = 600;
  int64_t write_per_minute = 1200;
  int64_t write_burst = 120;
  int64_t checkout_per_minute = 30;
  int64_t checkout_burst = 10;
  int64_t login_per_minute = 12;
  int64_t login_burst = 10;
  int64_t address_factor = 4;
};

// The ordering context (src/ordering/module.h). shipping / tax_bp are the compact rate texts
// ordering::ParsePricingRules (src/ordering/model.h) reads, e.g.
//   shipping = "us:USD=499,CAD=999;eu:EUR=499;*:USD=999"   tax_bp = "us=800,eu=2000,*=0"
// Empty: the built-in rates (ordering::kDefaultShippingRates / kDefaultTaxRates). They are
// validated when the server opens (a bad value fails startup naming ordering.shipping/tax_bp).
struct InventoryConfig {
  // Commands waiting per inventory shard; beyond it a command is answered 503 inventory_busy
  // (a bus command stays queued and is dispatched again).
  int64_t shard_queue_capacity = 65536;
  // How long a shard waits to gather as many commands as its last batch held before it commits
  // fewer (group-commit gathering, like PostgreSQL's commit_delay); 0 commits at once.
  int64_t batch_linger_us = 200;
  // Settled reservations (released, expired, cancelled, shipped, delivered) unchanged this long
  // leave the shards' memory; a later command naming one reads it back from the database.
  int64_t settled_retention_s = 600;
};

struct OrderingConfig {
  std::string shipping;
  std::string tax_bp;
  int64_t line_quantity_max = 100;  // units per cart line
  int64_t cart_lines_max = 50;      // distinct SKUs per cart
  int64_t cart_reservation_ttl_seconds = 15 * 60;
  int64_t order_reservation_ttl_seconds = 15 * 60;
};

struct Config {
  ServerConfig server;
  std::string data_dir = "./data";
  std::string log_level = "info";
  std::string log_path;  // empty = standard error
  int64_t database_write_queue_capacity = 16384;
  int64_t database_batch_jobs_max = 1024;
  // Each context's database writer keeps up to this many MiB of pages, taken only as used.
  int64_t database_writer_cache_mib = 64;
  // 1: the databases of contexts that support it (inventory) commit without waiting for the
  // disk and a sync thread makes the WAL durable behind the writer before anything is
  // acknowledged (sql::SqliteOptions::deferred_sync); 0: every writer fsyncs at its commits.
  int64_t database_deferred_sync = 1;
  int64_t bus_handler_attempts_max = 5;
  // Staff routes (/api/v1/admin/...) accept `Authorization: Bearer <admin_api_key>` until
  // accounts with roles exist. Empty disables them (401).
  std::string admin_api_key;
  GatewayConfig gateway;
  PaymentsConfig payments;
  InventoryConfig inventory;
  OrderingConfig ordering;
};

struct SettingInfo {
  std::string key;
  std::string type;  // "string", "int", "bool"
  std::string default_value;
  std::string description;
};

// Every setting Emporium understands, for `emporium config --help`-style listings and docs.
const std::vector<SettingInfo>& Settings();

// The layers, lowest first. `environment` holds NAME=VALUE pairs (only EMPORIUM_* are read);
// `overrides` holds "key=value" strings from --set and the convenience flags.
struct ConfigSources {
  std::string toml_text;  // empty = no file
  std::string toml_origin = "config file";
  std::map<std::string, std::string> environment;
  std::vector<std::string> overrides;
};

// InvalidArgument naming the offending key (and its origin) on any unknown key or bad value.
absl::StatusOr<Config> LoadConfig(const ConfigSources& sources);

// The EMPORIUM_* variables of the running process.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace emporium::app
