// Numbered schema migrations per component, recorded in the database they changed.
//
// Each context keeps its schema as numbered files, src/<context>/migrations/NNNN_name.sql,
// embedded into the binary by the CMake helper emporium_embed_migrations()
// (cmake/EmporiumSql.cmake) and applied at startup with ApplyMigrations(). Applied migrations are
// recorded in
//   schema_migrations(component, version, name, applied_at_ms, PRIMARY KEY(component, version)).
//
// Statement rule: a migration's SQL may hold several statements. A statement ends at a ';' that
// is the last non-blank character of a line, not counting a trailing "--" comment ("--" inside
// a quoted string on the same line is not a comment). So keep any ';' that is inside a statement
// (a multi-line string literal, a trigger body) away from the end of its line, e.g. write a
// trigger body's statements on one line together with END.
//
// Thread-safety: functions are thread-safe (they only use the thread-safe Database). Two
// processes applying the same migrations at once are safe too: each migration is applied in
// one write transaction that first re-checks whether it is already recorded.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "platform/sql/database.h"

namespace emporium::sql {

struct Migration {
  int version = 0;   // > 0, unique within a component.
  std::string name;  // "create_products"
  std::string sql;   // One or more statements; see the statement rule above.
};

// Applies, in version order, every migration of `component` not yet recorded, each in its own
// write transaction together with its schema_migrations row. Already-applied ones are skipped.
// InvalidArgument for a bad list (version <= 0, duplicate versions, empty component);
// FailedPrecondition if the database records a version of `component` this binary does not
// know ("database is newer than this binary"); a failing migration's own error otherwise
// (earlier migrations stay applied).
absl::Status ApplyMigrations(Database& db, std::string_view component,
                             const std::vector<Migration>& migrations,
                             const Clock& clock = SystemClock::Instance());

// True iff exactly the given migrations of `component` are recorded (for /readyz).
absl::StatusOr<bool> MigrationsCurrent(Database& db, std::string_view component,
                                       const std::vector<Migration>& migrations);

// Splits a migration's SQL into statements by the rule above; blank and comment-only pieces
// are dropped. Exposed for tests.
std::vector<std::string> SplitMigrationStatements(std::string_view sql);

}  // namespace emporium::sql
