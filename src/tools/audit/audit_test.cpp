#include "tools/audit/audit.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "inventory/store.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::audit {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "emporium-audit-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inventory::LedgerEntry Entry(const std::string& sku, int64_t sequence, inventory::LedgerKind kind,
                             int64_t quantity) {
  return inventory::LedgerEntry{.sku = inventory::Sku(sku),
                                .location = inventory::LocationId("main"),
                                .sequence = sequence,
                                .kind = kind,
                                .quantity = quantity,
                                .reference = "test",
                                .time_ms = 1000};
}

// A migrated inventory database with one healthy SKU: A@main received 10, reserved 3.
class AuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sql::SqliteOptions options;
    options.path = dir_.path() + "/inventory.db";
    options.name = "inventory";
    auto opened = sql::OpenSqlite(options);
    ASSERT_TRUE(opened.ok()) << opened.status();
    db_ = std::move(*opened);
    inventory::InventoryStore store(*db_);
    ASSERT_TRUE(store.Migrate().ok());
    inventory::BatchRecord batch;
    batch.entries = {Entry("A", 1, inventory::LedgerKind::kReceived, 10),
                     Entry("A", 2, inventory::LedgerKind::kReserved, 3)};
    batch.stock = {inventory::StockLevel{.sku = inventory::Sku("A"),
                                         .location = inventory::LocationId("main"),
                                         .on_hand = 10,
                                         .reserved = 3,
                                         .allocated = 0,
                                         .version = 2}};
    ASSERT_TRUE(db_->Write([&](sql::Transaction& transaction) {
                     return inventory::InventoryStore::WriteBatch(transaction, batch);
                   })
                    .ok());
  }

  // Runs raw SQL on the writer connection, with the stock table's CHECK constraint off so the
  // test can plant rows the application never could.
  void Tamper(const std::string& statement) {
    absl::Status status = db_->Write([&](sql::Transaction& transaction) -> absl::Status {
      auto off = transaction.Execute("PRAGMA ignore_check_constraints = ON");
      if (!off.ok()) return off.status();
      auto done = transaction.Execute(statement);
      if (!done.ok()) return done.status();
      return transaction.Execute("PRAGMA ignore_check_constraints = OFF").status();
    });
    ASSERT_TRUE(status.ok()) << status;
  }

  AuditReport Audit() {
    absl::StatusOr<AuditReport> report = RunAudit(dir_.path());
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : AuditReport{};
  }

  static int Count(const AuditReport& report, const std::string& invariant,
                   const std::string& needle) {
    int found = 0;
    for (const Violation& violation : report.violations) {
      if (violation.invariant == invariant && violation.detail.find(needle) != std::string::npos) {
        ++found;
      }
    }
    return found;
  }

  TempDir dir_;
  std::unique_ptr<sql::Database> db_;
};

TEST_F(AuditTest, HealthyDatabasePasses) {
  AuditReport report = Audit();
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  EXPECT_EQ(report.checks.size(), 2u);
  EXPECT_THAT(FormatAuditReport(report), HasSubstr("audit: OK"));
  EXPECT_EQ(RunAuditCommand(dir_.path()), 0);
}

TEST_F(AuditTest, FindsOversoldRow) {
  Tamper("INSERT INTO stock VALUES ('B', 'main', 5, 4, 3, 0)");
  AuditReport report = Audit();
  EXPECT_FALSE(report.ok());
  EXPECT_EQ(Count(report, "no-oversell", "B@main"), 1) << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "no-oversell", "oversold by 2"), 1);
  EXPECT_EQ(Count(report, "no-oversell", "A@main"), 0);
  EXPECT_THAT(FormatAuditReport(report), HasSubstr("audit: FAILED"));
  EXPECT_EQ(RunAuditCommand(dir_.path()), 1);
}

TEST_F(AuditTest, FindsNegativeQuantities) {
  Tamper("INSERT INTO stock VALUES ('C', 'main', -1, 0, 0, 0)");
  Tamper("INSERT INTO stock VALUES ('D', 'main', 4, -2, 0, 0)");
  Tamper("INSERT INTO stock VALUES ('E', 'main', 4, 0, -1, 0)");
  AuditReport report = Audit();
  for (const std::string sku : {"C@main", "D@main", "E@main"}) {
    EXPECT_EQ(Count(report, "no-oversell", sku + ": "), 1) << sku << FormatAuditReport(report);
  }
  EXPECT_EQ(Count(report, "no-oversell", "negative quantity"), 3);
}

TEST_F(AuditTest, FindsLedgerProjectionMismatch) {
  // Valid on its own (9 >= 3) but not what the ledger says.
  Tamper("UPDATE stock SET on_hand = 9 WHERE sku = 'A'");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "ledger-projection", "A@main"), 1) << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "no-oversell", ""), 0);
}

TEST_F(AuditTest, FindsStockRowMissingFromProjection) {
  Tamper("DELETE FROM stock WHERE sku = 'A'");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "ledger-projection", "A@main: missing from stock"), 1)
      << FormatAuditReport(report);
}

TEST_F(AuditTest, FindsLedgerThatCannotBeReplayed) {
  Tamper("INSERT INTO ledger VALUES ('A', 'main', 5, 'received', 1, 'x', 1000)");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "ledger-consistency", "A@main"), 1) << FormatAuditReport(report);
}

TEST_F(AuditTest, FindsEveryViolationAtOnce) {
  Tamper("INSERT INTO stock VALUES ('B', 'main', 5, 4, 3, 0)");
  Tamper("INSERT INTO stock VALUES ('C', 'main', -1, 0, 0, 0)");
  Tamper("UPDATE stock SET reserved = 2 WHERE sku = 'A'");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-oversell", "B@main"), 1);
  EXPECT_EQ(Count(report, "no-oversell", "C@main"), 1);
  EXPECT_EQ(Count(report, "ledger-projection", "A@main"), 1) << FormatAuditReport(report);
  // B and C have no ledger history either.
  EXPECT_EQ(Count(report, "ledger-projection", "without ledger entries"), 2);
}

TEST(AuditMissingTest, MissingDataDirectoryIsAnError) {
  EXPECT_EQ(RunAudit("/nonexistent/emporium-audit").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RunAuditCommand("/nonexistent/emporium-audit"), 2);
}

TEST(AuditMissingTest, MissingDatabasesAreSkippedWithANote) {
  TempDir empty;
  absl::StatusOr<AuditReport> report = RunAudit(empty.path());
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
  EXPECT_THAT(FormatAuditReport(*report), HasSubstr("inventory: no database"));
  // The audit must not create the database it skipped.
  EXPECT_FALSE(std::filesystem::exists(empty.path() + "/inventory.db"));
}

TEST(AuditMissingTest, UnmigratedDatabaseIsSkippedWithANote) {
  TempDir dir;
  {
    sql::SqliteOptions options;
    options.path = dir.path() + "/inventory.db";
    auto db = sql::OpenSqlite(options);
    ASSERT_TRUE(db.ok());
    (*db)->Close();
  }
  absl::StatusOr<AuditReport> report = RunAudit(dir.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(FormatAuditReport(*report), HasSubstr("no inventory schema"));
}

}  // namespace
}  // namespace emporium::audit
