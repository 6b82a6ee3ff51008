#include "tools/audit/audit.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include "common/format.h"
#include "fmt/format.h"
#include "inventory/store.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::audit {
namespace {

constexpr char kHasStockTable[] =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('stock', 'ledger')";
constexpr char kCountStock[] = "SELECT COUNT(*) FROM stock";
constexpr char kOversoldStock[] =
    "SELECT sku, location_id, on_hand, reserved, allocated FROM stock "
    "WHERE on_hand < 0 OR reserved < 0 OR allocated < 0 OR reserved + allocated > on_hand "
    "ORDER BY sku, location_id";

void AddViolation(AuditReport& report, size_t& listed, Violation violation) {
  if (listed >= kViolationsPerCheckMax) {
    ++report.violations_unlisted;
    return;
  }
  ++listed;
  report.violations.push_back(std::move(violation));
}

absl::Status AuditInventory(const std::string& data_dir, AuditReport& report) {
  const std::string path = fmt::format("{}/inventory.db", data_dir);
  if (!std::filesystem::exists(path)) {
    report.notes.push_back(fmt::format("inventory: no database at {}; skipped", path));
    return absl::OkStatus();
  }
  sql::SqliteOptions options;
  options.path = path;
  options.name = "inventory-audit";
  options.reader_count = 1;
  absl::StatusOr<std::unique_ptr<sql::Database>> database = sql::OpenSqlite(options);
  if (!database.ok()) return database.status();
  struct Closer {
    sql::Database& db;
    ~Closer() { db.Close(); }
  } closer{**database};

  bool has_schema = false;
  int64_t stock_rows = 0;
  size_t listed = 0;
  absl::Status read = (*database)->Read([&](sql::Transaction& transaction) -> absl::Status {
    absl::StatusOr<sql::ResultSet> tables = transaction.Query(kHasStockTable);
    if (!tables.ok()) return tables.status();
    has_schema = tables->rows.at(0).Int(0) == 2;
    if (!has_schema) return absl::OkStatus();
    absl::StatusOr<sql::ResultSet> count = transaction.Query(kCountStock);
    if (!count.ok()) return count.status();
    stock_rows = count->rows.at(0).Int(0);
    absl::StatusOr<sql::ResultSet> bad = transaction.Query(kOversoldStock);
    if (!bad.ok()) return bad.status();
    for (const sql::Row& row : bad->rows) {
      const int64_t on_hand = row.Int(2);
      const int64_t reserved = row.Int(3);
      const int64_t allocated = row.Int(4);
      std::string problem;
      if (on_hand < 0 || reserved < 0 || allocated < 0) problem = "negative quantity";
      if (reserved + allocated > on_hand) {
        problem += problem.empty() ? "" : "; ";
        problem += fmt::format("oversold by {}", reserved + allocated - on_hand);
      }
      AddViolation(
          report, listed,
          Violation{"inventory", "no-oversell",
                    fmt::format("{}@{}: on_hand={} reserved={} allocated={}: {}", row.Text(0),
                                row.Text(1), on_hand, reserved, allocated, problem)});
    }
    return absl::OkStatus();
  });
  if (!read.ok()) {
    return absl::Status(read.code(), fmt::format("inventory: {}", read.message()));
  }
  if (!has_schema) {
    report.notes.push_back(
        fmt::format("inventory: {} has no inventory schema (never migrated); skipped", path));
    return absl::OkStatus();
  }
  report.checks.push_back(
      fmt::format("inventory/no-oversell: {} stock rows, reserved + allocated <= on_hand, none "
                  "negative",
                  stock_rows));

  inventory::InventoryStore store(**database);
  absl::StatusOr<inventory::RebuildReport> rebuilt =
      store.Rebuild(inventory::InventoryStore::RebuildMode::kCheckOnly);
  if (!rebuilt.ok() && rebuilt.status().code() == absl::StatusCode::kFailedPrecondition) {
    // The ledger itself cannot be replayed (a sequence gap, or history that breaks the
    // invariant): a violation, not a failure of the audit.
    report.violations.push_back(
        Violation{"inventory", "ledger-consistency", std::string(rebuilt.status().message())});
    report.checks.push_back("inventory/ledger-projection: the ledger could not be replayed");
    return absl::OkStatus();
  }
  if (!rebuilt.ok()) {
    return absl::Status(rebuilt.status().code(),
                        fmt::format("inventory rebuild check: {}", rebuilt.status().message()));
  }
  listed = 0;
  for (const std::string& mismatch : rebuilt->mismatches) {
    AddViolation(report, listed, Violation{"inventory", "ledger-projection", mismatch});
  }
  report.checks.push_back(
      fmt::format("inventory/ledger-projection: {} projected rows compared with the stock table",
                  rebuilt->rows_checked));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AuditReport> RunAudit(const std::string& data_dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(data_dir, error)) {
    return absl::NotFoundError(fmt::format("no data directory at {}", data_dir));
  }
  AuditReport report;
  if (absl::Status status = AuditInventory(data_dir, report); !status.ok()) return status;
  const std::string payments = fmt::format("{}/payments.db", data_dir);
  report.notes.push_back(
      std::filesystem::exists(payments)
          ? "payments: ledger balance, captured <= authorized, refunds <= captured and PSP "
            "balance are not checked yet (no payments store to read them through)"
          : fmt::format("payments: no database at {}; skipped", payments));
  report.notes.push_back(
      "ordering: order states and deadlines not checked yet (the context does not exist)");
  return report;
}

std::string FormatAuditReport(const AuditReport& report) {
  std::string out;
  for (const Violation& violation : report.violations) {
    out += fmt::format("VIOLATION {}/{}: {}\n", violation.context, violation.invariant,
                       violation.detail);
  }
  if (report.violations_unlisted > 0) {
    out += fmt::format("... and {} more violations not listed\n", report.violations_unlisted);
  }
  for (const std::string& check : report.checks) out += fmt::format("checked {}\n", check);
  for (const std::string& note : report.notes) out += fmt::format("note: {}\n", note);
  out += report.ok() ? "audit: OK, no invariant violated\n"
                     : fmt::format("audit: FAILED, {} violations\n",
                                   static_cast<int64_t>(report.violations.size()) +
                                       report.violations_unlisted);
  return out;
}

int RunAuditCommand(const std::string& data_dir) {
  absl::StatusOr<AuditReport> report = RunAudit(data_dir);
  if (!report.ok()) {
    std::fprintf(stderr, "emporium audit: %s\n", report.status().ToString().c_str());
    return 2;
  }
  const std::string text = FormatAuditReport(*report);
  std::fputs(text.c_str(), stdout);
  return report->ok() ? 0 : 1;
}

}  // namespace emporium::audit
