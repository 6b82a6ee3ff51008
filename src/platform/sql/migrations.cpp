#include "platform/sql/migrations.h"

#include <algorithm>
#include <set>

#include "common/status_macros.h"
#include "fmt/format.h"

namespace emporium::sql {
namespace {

constexpr std::string_view kCreateMigrationsTable =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "component TEXT NOT NULL, version BIGINT NOT NULL, name TEXT NOT NULL, "
    "applied_at_ms BIGINT NOT NULL, PRIMARY KEY (component, version))";
constexpr std::string_view kSelectAppliedVersions =
    "SELECT version FROM schema_migrations WHERE component = ? ORDER BY version";
constexpr std::string_view kSelectApplied =
    "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?";
constexpr std::string_view kInsertApplied =
    "INSERT INTO schema_migrations (component, version, name, applied_at_ms) VALUES (?, ?, ?, ?)";
constexpr std::string_view kSqliteTableExists =
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'";
constexpr std::string_view kPostgresTableExists =
    "SELECT 1 FROM information_schema.tables WHERE table_name = 'schema_migrations' "
    "AND table_schema = current_schema()";

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kBlank = " \t\r\n\f\v";
  size_t begin = text.find_first_not_of(kBlank);
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(kBlank);
  return text.substr(begin, end - begin + 1);
}

bool IsComment(std::string_view line) { return Trim(line).starts_with("--"); }

// The line without a trailing "--" comment; quotes opened and closed on the line are honoured,
// so "-- inside 'a -- string'" is not a comment.
std::string_view WithoutTrailingComment(std::string_view line) {
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '-' && i + 1 < line.size() && line[i + 1] == '-') {
      return line.substr(0, i);
    }
  }
  return line;
}

// Only blank lines and "--" comment lines.
bool HasNoStatement(std::string_view piece) {
  while (!piece.empty()) {
    size_t newline = piece.find('\n');
    std::string_view line = piece.substr(0, newline);
    if (!Trim(line).empty() && !IsComment(line)) return false;
    if (newline == std::string_view::npos) break;
    piece.remove_prefix(newline + 1);
  }
  return true;
}

absl::Status Validate(std::string_view component, const std::vector<Migration>& migrations) {
  if (component.empty()) return absl::InvalidArgumentError("migrations: empty component name");
  std::set<int> versions;
  for (const Migration& migration : migrations) {
    if (migration.version <= 0) {
      return absl::InvalidArgumentError(
          fmt::format("migrations: {} migration \"{}\" has version {}; versions start at 1",
                      component, migration.name, migration.version));
    }
    if (!versions.insert(migration.version).second) {
      return absl::InvalidArgumentError(fmt::format("migrations: {} has two migrations numbered {}",
                                                    component, migration.version));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::set<int64_t>> AppliedVersions(Transaction& transaction,
                                                  std::string_view component) {
  ASSIGN_OR_RETURN(ResultSet result,
                   transaction.Query(kSelectAppliedVersions, {std::string(component)}));
  std::set<int64_t> versions;
  for (const Row& row : result.rows) versions.insert(row.Int(0));
  return versions;
}

absl::Status CheckNotNewer(std::string_view component, const std::set<int64_t>& applied,
                           const std::set<int64_t>& known) {
  for (int64_t version : applied) {
    if (known.contains(version)) continue;
    int64_t newest_known = known.empty() ? 0 : *known.rbegin();
    if (version > newest_known) {
      return absl::FailedPreconditionError(fmt::format(
          "migrations: database is newer than this binary: {} has migration {} applied, this "
          "binary knows up to {}",
          component, version, newest_known));
    }
    return absl::FailedPreconditionError(fmt::format(
        "migrations: database has {} migration {} applied, which this binary does not know",
        component, version));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<std::string> SplitMigrationStatements(std::string_view sql) {
  std::vector<std::string> statements;
  std::string current;
  auto flush = [&] {
    if (!HasNoStatement(current)) statements.emplace_back(Trim(current));
    current.clear();
  };
  while (!sql.empty()) {
    size_t newline = sql.find('\n');
    std::string_view line = sql.substr(0, newline);
    current.append(line);
    current.push_back('\n');
    if (Trim(WithoutTrailingComment(line)).ends_with(';')) flush();
    if (newline == std::string_view::npos) break;
    sql.remove_prefix(newline + 1);
  }
  flush();
  return statements;
}

absl::Status ApplyMigrations(Database& db, std::string_view component,
                             const std::vector<Migration>& migrations, const Clock& clock) {
  RETURN_IF_ERROR(Validate(component, migrations));
  std::vector<const Migration*> ordered;
  std::set<int64_t> known;
  for (const Migration& migration : migrations) {
    ordered.push_back(&migration);
    known.insert(migration.version);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const Migration* a, const Migration* b) { return a->version < b->version; });

  RETURN_IF_ERROR(db.Write([](Transaction& transaction) -> absl::Status {
    return transaction.Execute(kCreateMigrationsTable).status();
  }));
  std::set<int64_t> applied;
  RETURN_IF_ERROR(db.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(applied, AppliedVersions(transaction, component));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(CheckNotNewer(component, applied, known));

  for (const Migration* migration : ordered) {
    if (applied.contains(migration->version)) continue;
    std::vector<std::string> statements = SplitMigrationStatements(migration->sql);
    absl::Status status = db.Write([&](Transaction& transaction) -> absl::Status {
      // Another process may have applied it since we looked.
      ASSIGN_OR_RETURN(
          ResultSet existing,
          transaction.Query(kSelectApplied, {std::string(component), int64_t{migration->version}}));
      if (!existing.empty()) return absl::OkStatus();
      for (const std::string& statement : statements) {
        RETURN_IF_ERROR(transaction.Execute(statement).status());
      }
      return transaction
          .Execute(kInsertApplied, {std::string(component), int64_t{migration->version},
                                    migration->name, clock.NowMs()})
          .status();
    });
    if (!status.ok()) {
      return absl::Status(status.code(), fmt::format("migrations: {} {:04d}_{} failed: {}",
                                                     component, migration->version, migration->name,
                                                     std::string(status.message())));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> MigrationsCurrent(Database& db, std::string_view component,
                                       const std::vector<Migration>& migrations) {
  RETURN_IF_ERROR(Validate(component, migrations));
  std::set<int64_t> known;
  for (const Migration& migration : migrations) known.insert(migration.version);
  std::string_view table_exists =
      db.dialect() == "postgres" ? kPostgresTableExists : kSqliteTableExists;
  std::set<int64_t> applied;
  RETURN_IF_ERROR(db.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(ResultSet exists, transaction.Query(table_exists));
    if (exists.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(applied, AppliedVersions(transaction, component));
    return absl::OkStatus();
  }));
  return applied == known;
}

}  // namespace emporium::sql
