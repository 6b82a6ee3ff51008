#include "accounts/cli.h"

#include <filesystem>
#include <functional>

#include "common/format.h"
#include "fmt/format.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::accounts {
namespace {

// Runs `action` on a service over data_dir/accounts.db, closing the database afterwards.
absl::Status WithService(const std::string& data_dir,
                         const std::function<absl::Status(AccountsService&)>& action) {
  std::error_code error;
  std::filesystem::create_directories(data_dir, error);
  if (error) {
    return absl::UnavailableError(fmt::format("cannot create {}: {}", data_dir, error.message()));
  }
  sql::SqliteOptions options;
  options.path = fmt::format("{}/accounts.db", data_dir);
  options.name = "accounts";
  absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
  if (!database.ok()) return database.status();
  absl::Status status = bus::InstallBusSchema(**database);
  if (status.ok()) status = sql::ApplyMigrations(**database, "accounts", AccountsMigrations());
  if (status.ok()) {
    UuidV7Generator ids(SystemClock::Instance());
    AccountsOptions accounts;
    accounts.hashing.memory_cost_kib = 1024;  // no passwords are hashed here
    accounts.hashing.time_cost = 1;
    AccountsService service(**database, SystemClock::Instance(), ids, accounts);
    status = action(service);
  }
  (*database)->Close();
  return status;
}

}  // namespace

absl::StatusOr<CreatedStaffKey> CreateStaffKeyInDataDir(const std::string& data_dir, Role role,
                                                        const std::string& label) {
  CreatedStaffKey created;
  absl::Status status = WithService(data_dir, [&](AccountsService& service) -> absl::Status {
    absl::StatusOr<CreatedStaffKey> key = service.CreateStaffKey(role, label);
    if (!key.ok()) return key.status();
    created = std::move(*key);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return created;
}

absl::Status RevokeStaffKeyInDataDir(const std::string& data_dir, const std::string& key_id) {
  return WithService(data_dir,
                     [&](AccountsService& service) { return service.RevokeStaffKey(key_id); });
}

}  // namespace emporium::accounts
