#include "tools/audit/audit.h"

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "inventory/store.h"
#include "ordering/store.h"
#include "payments/schema.h"
#include "payments/store.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium::audit {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

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

// ---- ordering and payments -------------------------------------------------------------------

constexpr int64_t kNowMs = 100'000'000;
constexpr int64_t kGraceMs = 60'000;
constexpr int64_t kLongAgoMs = kNowMs - 10 * kGraceMs;

std::unique_ptr<sql::Database> OpenMigrated(const std::string& path, const std::string& component,
                                            const std::vector<sql::Migration>& migrations) {
  sql::SqliteOptions options;
  options.path = path;
  options.name = component;
  auto opened = sql::OpenSqlite(options);
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return nullptr;
  absl::Status migrated = sql::ApplyMigrations(**opened, component, migrations);
  EXPECT_TRUE(migrated.ok()) << migrated;
  return std::move(*opened);
}

payments::LedgerTransaction Movement(payments::MoneyMovement movement, int64_t amount_minor) {
  return payments::BuildLedgerTransaction(movement, Money::FromMinor(amount_minor, "USD").value())
      .value();
}

// An ordering and a payments database, both migrated through their own migrations, seeded with a
// clean world: a confirmed and captured order, a confirmed and refunded one, a cancelled one
// whose authorization was voided, and one waiting for its authorization within its deadline.
// Each test adds exactly one kind of damage.
class CrossContextAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    orders_db_ =
        OpenMigrated(dir_.path() + "/ordering.db", "ordering", ordering::OrderingMigrations());
    payments_db_ =
        OpenMigrated(dir_.path() + "/payments.db", "payments", payments::PaymentsMigrations());
    ASSERT_NE(orders_db_, nullptr);
    ASSERT_NE(payments_db_, nullptr);

    AddOrder("o-captured", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
    AddIntent("pi_captured", "o-captured", payments::IntentState::kCaptured, 1000, 1000, 0);
    AddAttempt("pi_captured", payments::PspOperation::kAuthorize, 1, 1000);
    AddAttempt("pi_captured", payments::PspOperation::kCapture, 1, 1000);
    AddLedger("pi_captured", "capture-1", payments::MoneyMovement::kCapture, 1000);

    AddOrder("o-refunded", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
    AddIntent("pi_refunded", "o-refunded", payments::IntentState::kRefunded, 1000, 1000, 1000);
    AddAttempt("pi_refunded", payments::PspOperation::kAuthorize, 1, 1000);
    AddAttempt("pi_refunded", payments::PspOperation::kCapture, 1, 1000);
    AddAttempt("pi_refunded", payments::PspOperation::kRefund, 1, 400);
    AddAttempt("pi_refunded", payments::PspOperation::kRefund, 2, 600);
    AddLedger("pi_refunded", "capture-2", payments::MoneyMovement::kCapture, 1000);
    AddLedger("pi_refunded", "refund-2a", payments::MoneyMovement::kRefund, 400);
    AddLedger("pi_refunded", "refund-2b", payments::MoneyMovement::kRefund, 600);

    AddOrder("o-cancelled", ordering::OrderState::kCancelled, ordering::SagaStep::kDone, 0);
    AddIntent("pi_voided", "o-cancelled", payments::IntentState::kVoided, 1000, 0, 0);
    AddAttempt("pi_voided", payments::PspOperation::kAuthorize, 1, 1000);
    AddAttempt("pi_voided", payments::PspOperation::kVoid, 1, 0);

    AddOrder("o-waiting", ordering::OrderState::kReserved, ordering::SagaStep::kAuthorize,
             kNowMs + 5'000);
    AddIntent("pi_waiting", "o-waiting", payments::IntentState::kRequiresAuthorization, 0, 0, 0);
  }

  void AddOrder(const std::string& id, ordering::OrderState state, ordering::SagaStep step,
                int64_t deadline_ms, int64_t total_minor = 1000) {
    ordering::Order order;
    order.id = id;
    order.cart_id = "cart-" + id;
    order.customer_id = "c-1";
    order.email = "shopper@example.com";
    order.currency = "USD";
    order.region = "us";
    order.payment_method = "pm_1";
    order.subtotal_minor = total_minor;
    order.total_minor = total_minor;
    order.saga.order_state = state;
    order.saga.step = step;
    order.saga.deadline_ms = deadline_ms;
    order.created_at_ms = kLongAgoMs;
    order.updated_at_ms = kLongAgoMs;
    absl::Status status =
        orders_db_->Write([&](sql::Transaction& tx) { return ordering::InsertOrder(tx, order); });
    ASSERT_TRUE(status.ok()) << status;
  }

  void AddIntent(const std::string& id, const std::string& order_id, payments::IntentState state,
                 int64_t authorized_minor, int64_t captured_minor, int64_t refunded_minor,
                 int64_t amount_minor = 1000, int64_t updated_at_ms = kLongAgoMs) {
    payments::IntentRecord intent;
    intent.id = id;
    intent.order_id = order_id;
    intent.customer_id = "c-1";
    intent.payment_method = "pm_1";
    intent.state = state;
    intent.amounts = payments::IntentAmounts{.amount_minor = amount_minor,
                                             .authorized_minor = authorized_minor,
                                             .captured_minor = captured_minor,
                                             .refunded_minor = refunded_minor,
                                             .currency = "USD"};
    intent.created_at_ms = kLongAgoMs;
    intent.updated_at_ms = updated_at_ms;
    absl::Status status = payments_db_->Write(
        [&](sql::Transaction& tx) { return payments::InsertIntent(tx, intent); });
    ASSERT_TRUE(status.ok()) << status;
  }

  // A successful PSP call.
  void AddAttempt(const std::string& intent_id, payments::PspOperation operation, int64_t group,
                  int64_t amount_minor) {
    payments::AttemptRecord attempt;
    attempt.idempotency_key = payments::PspIdempotencyKey(intent_id, operation, group);
    attempt.intent_id = intent_id;
    attempt.operation = operation;
    attempt.attempt_group = group;
    attempt.amount_minor = amount_minor;
    attempt.status = payments::AttemptStatus::kSucceeded;
    attempt.psp_object_id = "psp-" + attempt.idempotency_key;
    attempt.try_count = 1;
    attempt.created_at_ms = kLongAgoMs;
    attempt.updated_at_ms = kLongAgoMs;
    absl::Status status = payments_db_->Write(
        [&](sql::Transaction& tx) { return payments::InsertAttempt(tx, attempt); });
    ASSERT_TRUE(status.ok()) << status;
  }

  void AddLedger(const std::string& intent_id, const std::string& transaction_id,
                 payments::MoneyMovement movement, int64_t amount_minor) {
    absl::Status status = payments_db_->Write([&](sql::Transaction& tx) {
      return payments::InsertLedgerTransaction(tx, transaction_id, intent_id,
                                               Movement(movement, amount_minor), kLongAgoMs);
    });
    ASSERT_TRUE(status.ok()) << status;
  }

  static void Execute(sql::Database& db, const std::string& statement) {
    absl::Status status = db.Write(
        [&](sql::Transaction& tx) -> absl::Status { return tx.Execute(statement).status(); });
    ASSERT_TRUE(status.ok()) << status;
  }

  AuditOptions Options() const {
    AuditOptions options;
    options.data_dir = dir_.path();
    options.now_ms = kNowMs;
    options.stuck_grace_ms = kGraceMs;
    return options;
  }

  AuditReport Audit(const AuditOptions& options) {
    absl::StatusOr<AuditReport> report = RunAudit(options);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : AuditReport{};
  }
  AuditReport Audit() { return Audit(Options()); }

  // The violations of `invariant` whose detail contains `needle`.
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
  // Every violation belongs to `invariant`.
  static void ExpectOnly(const AuditReport& report, const std::string& invariant) {
    for (const Violation& violation : report.violations) {
      EXPECT_EQ(violation.invariant, invariant) << FormatAuditReport(report);
    }
  }

  TempDir dir_;
  std::unique_ptr<sql::Database> orders_db_;
  std::unique_ptr<sql::Database> payments_db_;
};

TEST_F(CrossContextAuditTest, CleanDatabasesPass) {
  AuditReport report = Audit();
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  for (const std::string check :
       {"ordering/settled: 4 orders (2 confirmed, 1 rejected or cancelled, 1 progressing",
        "ordering/confirmed-has-authorization: 2 confirmed",
        "ordering/no-live-auth-on-cancelled: 1 rejected or cancelled",
        "payments/amounts: 4 intents", "payments/ledger-balanced: 4 ledger transactions",
        "payments/no-double-charge: 4 intents"}) {
    EXPECT_THAT(report.checks, Contains(StartsWith(check))) << FormatAuditReport(report);
  }
  EXPECT_THAT(report.notes, Contains(HasSubstr("psp/balance-matches: skipped")));
  EXPECT_EQ(RunAuditCommand(Options()), 0);
}

TEST_F(CrossContextAuditTest, FindsOrderStuckPastItsDeadline) {
  AddOrder("o-stuck", ordering::OrderState::kReserved, ordering::SagaStep::kAuthorize,
           kNowMs - kGraceMs - 1);
  AddOrder("o-late-in-grace", ordering::OrderState::kPending, ordering::SagaStep::kReserve,
           kNowMs - kGraceMs + 1);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "settled", "order o-stuck is stuck: RESERVED"), 1)
      << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "settled", "o-late-in-grace"), 0);
  EXPECT_EQ(report.violations.size(), 1u) << FormatAuditReport(report);
  EXPECT_EQ(report.violations[0].context, "ordering");
  EXPECT_EQ(RunAuditCommand(Options()), 1);

  // A larger grace forgives it.
  AuditOptions lenient = Options();
  lenient.stuck_grace_ms = 2 * kGraceMs;
  EXPECT_TRUE(Audit(lenient).ok());
}

TEST_F(CrossContextAuditTest, FindsUnsettledOrderWithNothingOutstanding) {
  AddOrder("o-abandoned", ordering::OrderState::kAuthorized, ordering::SagaStep::kDone, 0);
  AddIntent("pi_abandoned", "o-abandoned", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_abandoned", payments::PspOperation::kAuthorize, 1, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "settled", "order o-abandoned is stuck: AUTHORIZED with nothing"), 1)
      << FormatAuditReport(report);
  ExpectOnly(report, "settled");
}

TEST_F(CrossContextAuditTest, FindsOrderWithAnUnknownState) {
  Execute(*orders_db_, "UPDATE orders SET state = 'SHIPPED?' WHERE id = 'o-waiting'");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "settled", "order o-waiting has an unknown state 'SHIPPED?'"), 1)
      << FormatAuditReport(report);
}

TEST_F(CrossContextAuditTest, FindsConfirmedOrderWithoutPaymentIntent) {
  AddOrder("o-unpaid", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "confirmed-has-authorization",
                  "order o-unpaid is CONFIRMED but has no payment intent"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "confirmed-has-authorization");
}

TEST_F(CrossContextAuditTest, FindsConfirmedOrderWhoseAuthorizationWasVoided) {
  AddOrder("o-void", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddIntent("pi_void", "o-void", payments::IntentState::kVoided, 1000, 0, 0);
  AddAttempt("pi_void", payments::PspOperation::kAuthorize, 1, 1000);
  AddAttempt("pi_void", payments::PspOperation::kVoid, 1, 0);
  AddOrder("o-declined", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddIntent("pi_declined", "o-declined", payments::IntentState::kFailed, 0, 0, 0);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "confirmed-has-authorization", "payment intent pi_void is voided"), 1)
      << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "confirmed-has-authorization", "payment intent pi_declined is failed"),
            1);
  ExpectOnly(report, "confirmed-has-authorization");
}

TEST_F(CrossContextAuditTest, FindsLiveAuthorizationLeftOnCancelledOrder) {
  AddOrder("o-leak", ordering::OrderState::kCancelled, ordering::SagaStep::kDone, 0);
  AddIntent("pi_leak", "o-leak", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_leak", payments::PspOperation::kAuthorize, 1, 1000);
  AddOrder("o-rejected-leak", ordering::OrderState::kRejected, ordering::SagaStep::kVoid,
           kNowMs - kGraceMs - 1);
  AddIntent("pi_rejected_leak", "o-rejected-leak", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_rejected_leak", payments::PspOperation::kAuthorize, 1, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-live-auth-on-cancelled",
                  "order o-leak is CANCELLED but its payment intent pi_leak still holds"),
            1)
      << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "no-live-auth-on-cancelled", "order o-rejected-leak is REJECTED"), 1);
  ExpectOnly(report, "no-live-auth-on-cancelled");
}

TEST_F(CrossContextAuditTest, VoidInFlightOnCancelledOrderIsNotAViolation) {
  // The saga cancelled and is waiting for the void's reply within its deadline.
  AddOrder("o-voiding", ordering::OrderState::kCancelled, ordering::SagaStep::kVoid,
           kNowMs + 1'000);
  AddIntent("pi_voiding", "o-voiding", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_voiding", payments::PspOperation::kAuthorize, 1, 1000);
  // A late authorization ordering has not heard of yet (its saga is done).
  AddOrder("o-late-auth", ordering::OrderState::kCancelled, ordering::SagaStep::kDone, 0);
  AddIntent("pi_late_auth", "o-late-auth", payments::IntentState::kAuthorized, 1000, 0, 0, 1000,
            kNowMs - 1'000);
  AddAttempt("pi_late_auth", payments::PspOperation::kAuthorize, 1, 1000);
  AuditReport report = Audit();
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  EXPECT_THAT(report.checks,
              Contains(StartsWith("ordering/no-live-auth-on-cancelled: 3 rejected or cancelled "
                                  "orders, 2 with a void still in flight")));
}

TEST_F(CrossContextAuditTest, FindsAuthorizationAboveOrderTotal) {
  AddOrder("o-small", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0, 900);
  AddIntent("pi_big", "o-small", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_big", payments::PspOperation::kAuthorize, 1, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "amounts",
                  "intent pi_big (order o-small, USD): authorized 1000 > "
                  "order o-small total 900"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "amounts");
}

TEST_F(CrossContextAuditTest, FindsRefundAboveCapture) {
  AddOrder("o-overrefund", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddIntent("pi_overrefund", "o-overrefund", payments::IntentState::kRefunded, 1000, 800, 900);
  AddAttempt("pi_overrefund", payments::PspOperation::kAuthorize, 1, 1000);
  AddAttempt("pi_overrefund", payments::PspOperation::kCapture, 1, 800);
  AddAttempt("pi_overrefund", payments::PspOperation::kRefund, 1, 900);
  AddLedger("pi_overrefund", "capture-o", payments::MoneyMovement::kCapture, 800);
  AddLedger("pi_overrefund", "refund-o", payments::MoneyMovement::kRefund, 900);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "amounts",
                  "pi_overrefund (order o-overrefund, USD): refunded 900 > "
                  "captured 800"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "amounts");
}

TEST_F(CrossContextAuditTest, FindsCaptureAboveAuthorization) {
  AddOrder("o-overcapture", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddIntent("pi_overcapture", "o-overcapture", payments::IntentState::kCaptured, 700, 800, 0);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "amounts",
                  "pi_overcapture (order o-overcapture, USD): captured 800 > "
                  "authorized 700"),
            1)
      << FormatAuditReport(report);
}

TEST_F(CrossContextAuditTest, IntentsWithoutAnOrderAreCheckedAgainstThemselves) {
  AddIntent("pi_api", "order-made-up-by-staff", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_api", payments::PspOperation::kAuthorize, 1, 1000);
  AuditReport report = Audit();
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  EXPECT_THAT(report.notes, Contains(HasSubstr("1 intents name an order the ordering database "
                                               "does not have")));
}

TEST_F(CrossContextAuditTest, FindsUnbalancedLedgerTransaction) {
  // The store refuses an unbalanced transaction, so plant one by hand (not touching
  // psp_clearing, so the per-intent postings still agree).
  Execute(*payments_db_,
          "INSERT INTO ledger_entries VALUES ('t-bad', 0, 'pi_captured', 'capture', "
          "'customer_receivable', 'debit', 100, 'USD', 1)");
  Execute(*payments_db_,
          "INSERT INTO ledger_entries VALUES ('t-bad', 1, 'pi_captured', 'capture', "
          "'merchant_revenue', 'credit', 90, 'USD', 1)");
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "ledger-balanced", "ledger transaction t-bad does not balance"), 1)
      << FormatAuditReport(report);
  ExpectOnly(report, "ledger-balanced");
}

TEST_F(CrossContextAuditTest, FindsTwoSuccessfulCapturesOfOneIntent) {
  AddAttempt("pi_captured", payments::PspOperation::kCapture, 2, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-double-charge",
                  "intent pi_captured (order o-captured, USD): 2 "
                  "successful PSP captures (one allowed)"),
            1)
      << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "no-double-charge", "the PSP captured 2000 of an authorization of 1000"),
            1);
  EXPECT_EQ(report.violations.size(), 1u) << FormatAuditReport(report);
  EXPECT_EQ(report.violations[0].context, "payments");
}

TEST_F(CrossContextAuditTest, FindsTwoSuccessfulAuthorizationsOfOneIntent) {
  AddAttempt("pi_voided", payments::PspOperation::kAuthorize, 2, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-double-charge",
                  "pi_voided (order o-cancelled, USD): 2 successful "
                  "PSP authorizations"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "no-double-charge");
}

TEST_F(CrossContextAuditTest, FindsCapturePostedTwiceInTheLedger) {
  AddLedger("pi_captured", "capture-1-again", payments::MoneyMovement::kCapture, 1000);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-double-charge",
                  "the ledger posts 2000 captured to psp_clearing, the intent 1000"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "no-double-charge");
}

TEST_F(CrossContextAuditTest, FindsPspCaptureTheIntentDoesNotRecord) {
  AddOrder("o-silent", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddIntent("pi_silent", "o-silent", payments::IntentState::kAuthorized, 1000, 0, 0);
  AddAttempt("pi_silent", payments::PspOperation::kAuthorize, 1, 1000);
  AddAttempt("pi_silent", payments::PspOperation::kCapture, 1, 1000);
  // psp_attempts has a foreign key to its intent; the ledger does not.
  AddLedger("pi_ghost", "refund-ghost", payments::MoneyMovement::kRefund, 5);
  AuditReport report = Audit();
  EXPECT_EQ(Count(report, "no-double-charge",
                  "successful PSP captures total 1000 but the intent records 0"),
            1)
      << FormatAuditReport(report);
  EXPECT_EQ(Count(report, "no-double-charge",
                  "ledger postings for intent pi_ghost, which does not exist"),
            1);
  ExpectOnly(report, "no-double-charge");
}

TEST_F(CrossContextAuditTest, ComparesTheLedgerWithThePspBalance) {
  psp_sandbox::SandboxOptions sandbox_options;
  sandbox_options.db_path = dir_.path() + "/psp-sandbox.db";
  psp_sandbox::PspSandbox sandbox(sandbox_options);
  ASSERT_TRUE(sandbox.Start().ok());
  AuditOptions options = Options();
  options.psp_url = fmt::format("http://127.0.0.1:{}", sandbox.port());

  // The PSP never saw our captures: psp_clearing holds 1000 + 1000 - 1000 = 1000 USD, it 0.
  AuditReport report = Audit(options);
  EXPECT_EQ(Count(report, "balance-matches",
                  "USD: the ledger's psp_clearing is 1000 but the PSP "
                  "holds 0"),
            1)
      << FormatAuditReport(report);
  ExpectOnly(report, "balance-matches");
  EXPECT_EQ(report.violations.at(0).context, "psp");
  EXPECT_THAT(report.checks, Contains(StartsWith("psp/balance-matches: psp_clearing in 1 "
                                                 "currencies")));

  // With no ledger at all the two agree.
  Execute(*payments_db_, "DELETE FROM ledger_entries");
  Execute(*payments_db_, "UPDATE payment_intents SET captured_minor = 0, refunded_minor = 0");
  Execute(*payments_db_, "DELETE FROM psp_attempts WHERE operation IN ('capture', 'refund')");
  Execute(*payments_db_,
          "UPDATE payment_intents SET state = 'authorized' WHERE authorized_minor > 0 "
          "AND state <> 'voided'");
  report = Audit(options);
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  EXPECT_THAT(report.checks, Contains(StartsWith("psp/balance-matches")));
}

TEST_F(CrossContextAuditTest, UnreachablePspIsANoteNotAFailure) {
  AuditOptions options = Options();
  options.psp_url = "http://127.0.0.1:1";
  AuditReport report = Audit(options);
  EXPECT_TRUE(report.ok()) << FormatAuditReport(report);
  EXPECT_THAT(report.notes, Contains(StartsWith("psp/balance-matches: NOT checked")));
}

TEST_F(CrossContextAuditTest, FindsEveryKindAtOnceAndReportsThemAsJson) {
  AddOrder("o-stuck", ordering::OrderState::kPending, ordering::SagaStep::kReserve, 1);
  AddOrder("o-unpaid", ordering::OrderState::kConfirmed, ordering::SagaStep::kDone, 0);
  AddAttempt("pi_captured", payments::PspOperation::kCapture, 2, 1000);
  AuditReport report = Audit();
  const Json json = AuditReportJson(report);
  EXPECT_EQ(json.at("ok"), false);
  EXPECT_EQ(json.at("violations_unlisted"), 0);
  ASSERT_EQ(json.at("violations").size(), 3u) << json.dump(2);
  for (const Json& violation : json.at("violations")) {
    EXPECT_TRUE(violation.at("context").is_string());
    EXPECT_TRUE(violation.at("invariant").is_string());
    EXPECT_TRUE(violation.at("detail").is_string());
  }
  EXPECT_EQ(json.at("checks").size(), report.checks.size());
  EXPECT_TRUE(json.at("notes").is_array());
}

TEST(CrossContextAuditMissingTest, PaymentsWithoutOrderingAndOrderingWithoutPayments) {
  TempDir payments_only;
  OpenMigrated(payments_only.path() + "/payments.db", "payments", payments::PaymentsMigrations())
      ->Close();
  absl::StatusOr<AuditReport> report = RunAudit(payments_only.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_THAT(report->notes, Contains(HasSubstr("ordering: no database")));
  EXPECT_THAT(report->notes, Contains(HasSubstr("no ordering database; authorizations not")));
  EXPECT_FALSE(std::filesystem::exists(payments_only.path() + "/ordering.db"));

  TempDir ordering_only;
  OpenMigrated(ordering_only.path() + "/ordering.db", "ordering", ordering::OrderingMigrations())
      ->Close();
  report = RunAudit(ordering_only.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok());
  EXPECT_THAT(report->notes, Contains(HasSubstr("skipped (no payments database)")));
  EXPECT_THAT(report->checks, Contains(StartsWith("ordering/settled: 0 orders")));
}

}  // namespace
}  // namespace emporium::audit
