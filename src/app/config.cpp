#include "app/config.h"

#include <cctype>
#include <charconv>
#include <functional>
#include <sstream>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "toml++/toml.h"

extern char** environ;

namespace emporium::app {
namespace {

// One setting: how to read it from text into the Config.
struct Binding {
  SettingInfo info;
  std::function<absl::Status(Config&, const std::string&)> assign;
};

absl::StatusOr<int64_t> ParseInt(const std::string& key, const std::string& text, int64_t min,
                                 int64_t max) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (error != std::errc() || ptr != end) {
    return InvalidParam(key, fmt::format("{} must be an integer, got '{}'", key, text));
  }
  if (value < min || value > max) {
    return InvalidParam(key, fmt::format("{} must be between {} and {}", key, min, max));
  }
  return value;
}

template <typename Field>
Binding IntSetting(std::string key, std::string description, int64_t min, int64_t max,
                   Field Config::*section_or_field) {
  Config defaults;
  return Binding{
      SettingInfo{key, "int", std::to_string(defaults.*section_or_field), std::move(description)},
      [key, min, max, section_or_field](Config& config, const std::string& text) -> absl::Status {
        absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
        if (!value.ok()) return value.status();
        config.*section_or_field = static_cast<Field>(*value);
        return absl::OkStatus();
      }};
}

template <typename Field>
Binding ServerIntSetting(std::string key, std::string description, int64_t min, int64_t max,
                         Field ServerConfig::*field) {
  ServerConfig defaults;
  return Binding{SettingInfo{key, "int", std::to_string(defaults.*field), std::move(description)},
                 [key, min, max, field](Config& config, const std::string& text) -> absl::Status {
                   absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
                   if (!value.ok()) return value.status();
                   config.server.*field = static_cast<Field>(*value);
                   return absl::OkStatus();
                 }};
}

template <typename Field>
Binding GatewayIntSetting(std::string key, std::string description, int64_t min, int64_t max,
                          Field GatewayConfig::*field) {
  GatewayConfig defaults;
  return Binding{SettingInfo{key, "int", std::to_string(defaults.*field), std::move(description)},
                 [key, min, max, field](Config& config, const std::string& text) -> absl::Status {
                   absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
                   if (!value.ok()) return value.status();
                   config.gateway.*field = static_cast<Field>(*value);
                   return absl::OkStatus();
                 }};
}

template <typename Field>
Binding OrderingIntSetting(std::string key, std::string description, int64_t min, int64_t max,
                           Field OrderingConfig::*field) {
  OrderingConfig defaults;
  return Binding{SettingInfo{key, "int", std::to_string(defaults.*field), std::move(description)},
                 [key, min, max, field](Config& config, const std::string& text) -> absl::Status {
                   absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
                   if (!value.ok()) return value.status();
                   config.ordering.*field = static_cast<Field>(*value);
                   return absl::OkStatus();
                 }};
}

template <typename Field>
Binding InventoryIntSetting(std::string key, std::string description, int64_t min, int64_t max,
                            Field InventoryConfig::*field) {
  InventoryConfig defaults;
  return Binding{SettingInfo{key, "int", std::to_string(defaults.*field), std::move(description)},
                 [key, min, max, field](Config& config, const std::string& text) -> absl::Status {
                   absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
                   if (!value.ok()) return value.status();
                   config.inventory.*field = static_cast<Field>(*value);
                   return absl::OkStatus();
                 }};
}

template <typename Field>
Binding PaymentsIntSetting(std::string key, std::string description, int64_t min, int64_t max,
                           Field PaymentsConfig::*field) {
  PaymentsConfig defaults;
  return Binding{SettingInfo{key, "int", std::to_string(defaults.*field), std::move(description)},
                 [key, min, max, field](Config& config, const std::string& text) -> absl::Status {
                   absl::StatusOr<int64_t> value = ParseInt(key, text, min, max);
                   if (!value.ok()) return value.status();
                   config.payments.*field = static_cast<Field>(*value);
                   return absl::OkStatus();
                 }};
}

Binding StringSetting(std::string key, std::string description,
                      std::function<std::string&(Config&)> field,
                      std::function<absl::Status(const std::string&)> validate = nullptr) {
  Config defaults;
  return Binding{SettingInfo{key, "string", field(defaults), std::move(description)},
                 [key, field, validate](Config& config, const std::string& text) -> absl::Status {
                   if (validate) {
                     if (absl::Status status = validate(text); !status.ok()) {
                       return InvalidParam(key, fmt::format("{}: {}", key, status.message()));
                     }
                   }
                   field(config) = text;
                   return absl::OkStatus();
                 }};
}

const std::vector<Binding>& Bindings() {
  static const std::vector<Binding> bindings = {
      StringSetting(
          "server.host", "address the HTTP server listens on",
          [](Config& c) -> std::string& { return c.server.host; },
          [](const std::string& v) {
            return v.empty() ? absl::InvalidArgumentError("must not be empty") : absl::OkStatus();
          }),
      ServerIntSetting("server.port", "TCP port (0 picks a free one)", 0, 65535,
                       &ServerConfig::port),
      ServerIntSetting("server.io_threads", "I/O threads (0 = one per core)", 0, 256,
                       &ServerConfig::io_threads),
      ServerIntSetting("server.body_limit_bytes", "largest request body accepted", 1024, 64 << 20,
                       &ServerConfig::body_limit_bytes),
      ServerIntSetting("server.header_timeout_ms", "time allowed to send request headers", 100,
                       600'000, &ServerConfig::header_timeout_ms),
      ServerIntSetting("server.request_timeout_ms", "deadline for one request", 100, 600'000,
                       &ServerConfig::request_timeout_ms),
      ServerIntSetting("server.drain_timeout_ms", "graceful shutdown bound", 0, 600'000,
                       &ServerConfig::drain_timeout_ms),
      StringSetting("storage.data_dir", "directory for the embedded databases",
                    [](Config& c) -> std::string& { return c.data_dir; }),
      IntSetting("storage.write_queue_capacity", "bounded write queue per database", 1, 1'000'000,
                 &Config::database_write_queue_capacity),
      IntSetting("storage.batch_jobs_max", "most writes per group commit (1 disables batching)", 1,
                 65'536, &Config::database_batch_jobs_max),
      IntSetting("storage.writer_cache_mib", "page cache of each database's writer connection", 1,
                 4096, &Config::database_writer_cache_mib),
      IntSetting("storage.deferred_sync",
                 "1: inventory fsyncs its WAL on a sync thread behind the writer (acknowledged "
                 "once durable); 0: at every commit",
                 0, 1, &Config::database_deferred_sync),
      IntSetting("bus.handler_attempts_max", "attempts before a message is dead-lettered", 1, 100,
                 &Config::bus_handler_attempts_max),
      StringSetting(
          "log.level", "debug, info, warn, error or off",
          [](Config& c) -> std::string& { return c.log_level; },
          [](const std::string& v) {
            for (const char* level : {"debug", "info", "warn", "error", "off"}) {
              if (v == level) return absl::OkStatus();
            }
            return absl::InvalidArgumentError("must be debug, info, warn, error or off");
          }),
      StringSetting("log.path", "log file (empty = standard error)",
                    [](Config& c) -> std::string& { return c.log_path; }),
      StringSetting("admin.api_key", "bearer key for /api/v1/admin routes (empty disables them)",
                    [](Config& c) -> std::string& { return c.admin_api_key; }),
      StringSetting("gateway.cors_origin", "storefront origin allowed by CORS (empty: none)",
                    [](Config& c) -> std::string& { return c.gateway.cors_origin; }),
      StringSetting("gateway.content_security_policy",
                    "Content-Security-Policy header (empty: the built-in storefront policy)",
                    [](Config& c) -> std::string& { return c.gateway.content_security_policy; }),
      GatewayIntSetting("gateway.read_per_minute", "reads per minute per caller (0: unlimited)", 0,
                        100'000'000, &GatewayConfig::read_per_minute),
      GatewayIntSetting("gateway.read_burst", "read burst per caller", 1, 100'000'000,
                        &GatewayConfig::read_burst),
      GatewayIntSetting("gateway.write_per_minute", "writes per minute per caller (0: unlimited)",
                        0, 100'000'000, &GatewayConfig::write_per_minute),
      GatewayIntSetting("gateway.write_burst", "write burst per caller", 1, 100'000'000,
                        &GatewayConfig::write_burst),
      GatewayIntSetting("gateway.checkout_per_minute",
                        "checkouts per minute per caller (0: unlimited)", 0, 100'000'000,
                        &GatewayConfig::checkout_per_minute),
      GatewayIntSetting("gateway.checkout_burst", "checkout burst per caller", 1, 100'000'000,
                        &GatewayConfig::checkout_burst),
      GatewayIntSetting("gateway.login_per_minute",
                        "logins/sign-ups per minute per address (0: unlimited)", 0, 100'000'000,
                        &GatewayConfig::login_per_minute),
      GatewayIntSetting("gateway.login_burst", "login burst per caller", 1, 100'000'000,
                        &GatewayConfig::login_burst),
      GatewayIntSetting("gateway.address_factor",
                        "a client address may use this many callers' worth of each limit", 1,
                        10'000, &GatewayConfig::address_factor),
      StringSetting(
          "payments.psp_url", "base URL of the payment service provider (http://host:port)",
          [](Config& c) -> std::string& { return c.payments.psp_url; },
          [](const std::string& v) {
            return v.rfind("http://", 0) == 0 && v.size() > 7
                       ? absl::OkStatus()
                       : absl::InvalidArgumentError("must be http://host:port");
          }),
      StringSetting("payments.webhook_secret",
                    "HMAC secret of the PSP's notifications (empty refuses them)",
                    [](Config& c) -> std::string& { return c.payments.webhook_secret; }),
      StringSetting("payments.vault_key",
                    "card vault keyring text 'id:hex,...' (prefer EMPORIUM_PAYMENTS_VAULT_KEY)",
                    [](Config& c) -> std::string& { return c.payments.vault_key; }),
      StringSetting("payments.vault_key_file",
                    "file holding the vault keyring (empty with no vault_key: a dev key file "
                    "is generated under the data directory)",
                    [](Config& c) -> std::string& { return c.payments.vault_key_file; }),
      PaymentsIntSetting("payments.authorization_ttl_seconds",
                         "uncaptured authorizations older than this are voided and expire "
                         "(0: never)",
                         0, 365LL * 24 * 3600, &PaymentsConfig::authorization_ttl_seconds),
      InventoryIntSetting("inventory.shard_queue_capacity",
                          "commands waiting per inventory shard before 503 inventory_busy", 16,
                          10'000'000, &InventoryConfig::shard_queue_capacity),
      InventoryIntSetting("inventory.batch_linger_us",
                          "microseconds a shard waits to gather as many commands as its last "
                          "batch before committing fewer (0: never waits)",
                          0, 100'000, &InventoryConfig::batch_linger_us),
      InventoryIntSetting("inventory.settled_retention_s",
                          "seconds a settled reservation (released, expired, cancelled, shipped, "
                          "delivered) stays in a shard's memory before it is evicted (a command "
                          "naming it later reads it back; 0: evicted at once)",
                          0, 7LL * 24 * 3600, &InventoryConfig::settled_retention_s),
      StringSetting("ordering.shipping",
                    "flat shipping per region and currency, 'us:USD=499,CAD=999;*:USD=999' "
                    "(minor units; '*' = other regions; empty: the built-in rates)",
                    [](Config& c) -> std::string& { return c.ordering.shipping; }),
      StringSetting("ordering.tax_bp",
                    "tax per region in basis points, 'us=800,eu=2000,*=0' (empty: built-in)",
                    [](Config& c) -> std::string& { return c.ordering.tax_bp; }),
      OrderingIntSetting("ordering.line_quantity_max", "most units of one SKU in a cart", 1,
                         1'000'000, &OrderingConfig::line_quantity_max),
      OrderingIntSetting("ordering.cart_lines_max", "most distinct SKUs in a cart", 1, 1'000,
                         &OrderingConfig::cart_lines_max),
      OrderingIntSetting("ordering.cart_reservation_ttl_seconds", "how long a cart holds its stock",
                         1, 7 * 24 * 3600, &OrderingConfig::cart_reservation_ttl_seconds),
      OrderingIntSetting("ordering.order_reservation_ttl_seconds",
                         "how long a checkout holds its stock until allocation", 1, 7 * 24 * 3600,
                         &OrderingConfig::order_reservation_ttl_seconds),
  };
  return bindings;
}

bool IsKnownSection(std::string_view section) {
  for (const Binding& binding : Bindings()) {
    const std::string& key = binding.info.key;
    if (key.size() > section.size() && key.compare(0, section.size(), section) == 0 &&
        key[section.size()] == '.') {
      return true;
    }
  }
  return false;
}

absl::Status Assign(Config& config, const std::string& key, const std::string& value,
                    std::string_view origin) {
  for (const Binding& binding : Bindings()) {
    if (binding.info.key == key) {
      absl::Status status = binding.assign(config, value);
      if (!status.ok()) {
        return InvalidParam(key, fmt::format("{} (from {})", status.message(), origin));
      }
      return absl::OkStatus();
    }
  }
  return InvalidParam(key, fmt::format("unknown setting '{}' (from {})", key, origin),
                      "unknown_setting");
}

// Flattens a TOML table into dotted keys with textual values.
absl::Status FlattenToml(const toml::table& table, const std::string& prefix,
                         std::vector<std::pair<std::string, std::string>>& out) {
  for (const auto& [name, node] : table) {
    std::string key =
        prefix.empty() ? std::string(name.str()) : fmt::format("{}.{}", prefix, name.str());
    if (const toml::table* inner = node.as_table()) {
      absl::Status status = FlattenToml(*inner, key, out);
      if (!status.ok()) return status;
    } else if (const auto* text = node.as_string()) {
      out.emplace_back(key, text->get());
    } else if (const auto* integer = node.as_integer()) {
      out.emplace_back(key, std::to_string(integer->get()));
    } else if (const auto* boolean = node.as_boolean()) {
      out.emplace_back(key, boolean->get() ? "true" : "false");
    } else {
      return InvalidParam(key, fmt::format("{} has an unsupported TOML type", key));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<SettingInfo>& Settings() {
  static const std::vector<SettingInfo> settings = [] {
    std::vector<SettingInfo> all;
    for (const Binding& binding : Bindings()) all.push_back(binding.info);
    return all;
  }();
  return settings;
}

absl::StatusOr<Config> LoadConfig(const ConfigSources& sources) {
  Config config;
  if (!sources.toml_text.empty()) {
    toml::table table;
    try {
      table = toml::parse(sources.toml_text);
    } catch (const toml::parse_error& error) {
      return WithErrorCode(
          absl::InvalidArgumentError(fmt::format("{}: {} (line {})", sources.toml_origin,
                                                 error.description(), error.source().begin.line)),
          "invalid_config");
    }
    std::vector<std::pair<std::string, std::string>> values;
    absl::Status status = FlattenToml(table, "", values);
    if (!status.ok()) return status;
    for (const auto& [key, value] : values) {
      status = Assign(config, key, value, sources.toml_origin);
      if (!status.ok()) return status;
    }
  }
  for (const auto& [name, value] : sources.environment) {
    constexpr std::string_view kPrefix = "EMPORIUM_";
    if (name.rfind(kPrefix, 0) != 0 || name == "EMPORIUM_CONFIG") continue;
    // EMPORIUM_SERVER_PORT -> server.port: the first underscore separates section and key.
    std::string rest = name.substr(kPrefix.size());
    for (char& c : rest) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t split = rest.find('_');
    if (split == std::string::npos) continue;
    // Variables outside Emporium's sections (EMPORIUM_HOME in a user's shell, the test
    // harness's EMPORIUM_BINARY_DIR) are not settings; inside a known section a typo is an error.
    if (!IsKnownSection(rest.substr(0, split))) continue;
    rest[split] = '.';
    absl::Status status = Assign(config, rest, value, fmt::format("environment {}", name));
    if (!status.ok()) return status;
  }
  for (const std::string& override_text : sources.overrides) {
    const size_t equals = override_text.find('=');
    if (equals == std::string::npos) {
      return InvalidParam(override_text,
                          fmt::format("--set expects key=value, got '{}'", override_text));
    }
    absl::Status status = Assign(config, override_text.substr(0, equals),
                                 override_text.substr(equals + 1), "command line");
    if (!status.ok()) return status;
  }
  return config;
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> variables;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (text.rfind("EMPORIUM_", 0) != 0) continue;
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    variables.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return variables;
}

}  // namespace emporium::app
