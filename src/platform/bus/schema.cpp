#include "platform/bus/schema.h"

#include <string>
#include <utility>

#include "fmt/format.h"

namespace emporium::bus {

std::vector<sql::Migration> BusMigrations(std::string_view dialect) {
  const bool postgres = dialect == "postgres";
  // SQLite wants exactly "INTEGER PRIMARY KEY" (a rowid alias, the clustered key); PostgreSQL's
  // INTEGER is 32 bits, too small for a long-lived outbox.
  const std::string key_type = postgres ? "BIGINT PRIMARY KEY" : "INTEGER PRIMARY KEY";
  const std::string blob_type = postgres ? "BYTEA" : "BLOB";
  // One migration, several statements (the migration runner splits at a ';' ending a line).
  std::string tables = fmt::format(
      "CREATE TABLE outbox (\n"
      "  seq {0} NOT NULL,\n"
      "  id TEXT NOT NULL UNIQUE,\n"
      "  type TEXT NOT NULL,\n"
      "  key TEXT NOT NULL,\n"
      "  envelope {1} NOT NULL,\n"
      "  created_at_ms BIGINT NOT NULL,\n"
      "  published_at_ms BIGINT NULL);\n"
      "-- Partial index: the relay's scan and the depth gauge touch only unpublished rows.\n"
      "CREATE INDEX outbox_unpublished ON outbox(seq) WHERE published_at_ms IS NULL;\n"
      "CREATE TABLE inbox (\n"
      "  consumer TEXT NOT NULL,\n"
      "  message_id TEXT NOT NULL,\n"
      "  processed_at_ms BIGINT NOT NULL,\n"
      "  PRIMARY KEY (consumer, message_id));\n"
      "CREATE INDEX inbox_processed_at ON inbox(processed_at_ms);\n"
      "CREATE TABLE dead_letters (\n"
      "  id {0} NOT NULL,\n"
      "  consumer TEXT NOT NULL,\n"
      "  message_id TEXT NOT NULL,\n"
      "  type TEXT NOT NULL,\n"
      "  envelope {1} NOT NULL,\n"
      "  error TEXT NOT NULL,\n"
      "  attempts BIGINT NOT NULL,\n"
      "  failed_at_ms BIGINT NOT NULL,\n"
      "  replayed_at_ms BIGINT NULL);\n"
      "CREATE INDEX dead_letters_consumer ON dead_letters(consumer, id);\n",
      key_type, blob_type);
  // A row of PublishAll holds a bundle of `messages` envelopes (outbox.h); 1 for every other.
  // The unpublished index carries the count (and the column of its condition, without which
  // SQLite does not take it as covering), so the depth gauge sums it from the index instead of
  // reading every unpublished row (and a bundle's overflow pages).
  std::string bundles =
      "ALTER TABLE outbox ADD COLUMN messages BIGINT NOT NULL DEFAULT 1;\n"
      "DROP INDEX outbox_unpublished;\n"
      "CREATE INDEX outbox_unpublished ON outbox(seq, messages, published_at_ms) "
      "WHERE published_at_ms IS NULL;\n";
  return {{1, "bus_tables", std::move(tables)}, {2, "outbox_bundles", std::move(bundles)}};
}

absl::Status InstallBusSchema(sql::Database& db) {
  return sql::ApplyMigrations(db, kBusComponent, BusMigrations(db.dialect()));
}

}  // namespace emporium::bus
