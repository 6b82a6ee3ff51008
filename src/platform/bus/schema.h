// The bus tables, applied into EVERY context's database (component "bus"):
//   outbox       messages a context committed and the relay has yet to publish (or published
//                within the retention window);
//   inbox        (consumer, message_id) pairs already handled, so a redelivery has no effect;
//   dead_letters messages a consumer's handler kept failing on, for an operator to replay.
//
// Sequence numbers: outbox.seq and dead_letters.id are assigned by the INSERT itself as
// COALESCE(MAX(seq), 0) + 1 (see outbox.cpp). That is portable SQL (SQLite and PostgreSQL
// alike), needs no sequence object, and is race-free because every database has exactly one
// writer (the group-commit Database port). It also makes seq order equal commit order, which
// is what the relay relies on. The relay's retention never deletes the newest row, so a seq is
// never reused.
//
// Thread-safety: pure data.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "platform/sql/database.h"
#include "platform/sql/migrations.h"

namespace emporium::bus {

inline constexpr std::string_view kBusComponent = "bus";

// The bus migrations for `dialect` ("sqlite" or "postgres", as Database::dialect() reports):
// the only differences are the 64-bit key type and the binary column type.
std::vector<sql::Migration> BusMigrations(std::string_view dialect = "sqlite");

// ApplyMigrations(db, "bus", BusMigrations(db.dialect())).
absl::Status InstallBusSchema(sql::Database& db);

}  // namespace emporium::bus
