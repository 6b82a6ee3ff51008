// Offline staff-key administration for `emporium admin create-key|revoke-key`: opens the
// accounts database in a data directory (applying migrations), acts, closes. Safe while the
// server runs (SQLite WAL; the server sees new and revoked keys on its next lookup).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "accounts/service.h"

namespace emporium::accounts {

absl::StatusOr<CreatedStaffKey> CreateStaffKeyInDataDir(const std::string& data_dir, Role role,
                                                        const std::string& label);
absl::Status RevokeStaffKeyInDataDir(const std::string& data_dir, const std::string& key_id);

}  // namespace emporium::accounts
