// The ledger audit's pure core: balanced transactions, a seeded unbalanced one, and the PSP
// clearing account against the PSP's net balance.
#include "payments/cli.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emporium::payments {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<StoredLedgerEntry> Movement(const std::string& id, MoneyMovement movement,
                                        int64_t amount_minor, const std::string& currency) {
  std::vector<StoredLedgerEntry> out;
  absl::StatusOr<LedgerTransaction> built =
      BuildLedgerTransaction(movement, Money::FromMinor(amount_minor, currency).value());
  EXPECT_TRUE(built.ok());
  for (const LedgerEntry& entry : built->entries) out.push_back({id, entry});
  return out;
}

std::vector<StoredLedgerEntry> Ledger() {
  std::vector<StoredLedgerEntry> all;
  for (auto part : {Movement("t1", MoneyMovement::kCapture, 5000, "USD"),
                    Movement("t2", MoneyMovement::kRefund, 1500, "USD"),
                    Movement("t3", MoneyMovement::kCapture, 700, "EUR")}) {
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

TEST(LedgerAuditTest, ABalancedLedgerThatAgreesWithThePspIsClean) {
  LedgerAudit audit = AuditLedger(Ledger(), {{"USD", 3500}, {"EUR", 700}});
  EXPECT_THAT(audit.violations, IsEmpty());
  EXPECT_EQ(audit.transaction_count, 3);
  EXPECT_EQ(audit.ledger_clearing_minor["USD"], 3500);
  EXPECT_EQ(audit.ledger_clearing_minor["EUR"], 700);
}

TEST(LedgerAuditTest, AnEmptyLedgerAgreesWithAnEmptyPsp) {
  EXPECT_THAT(AuditLedger({}, {}).violations, IsEmpty());
}

TEST(LedgerAuditTest, ReportsAnUnbalancedTransaction) {
  std::vector<StoredLedgerEntry> ledger = Ledger();
  ledger[0].entry.amount_minor += 1;  // t1's first entry
  LedgerAudit audit = AuditLedger(ledger, {{"USD", 3500}, {"EUR", 700}});
  ASSERT_THAT(audit.violations, SizeIs(2));  // t1 unbalanced, so USD clearing is off too
  EXPECT_THAT(audit.violations[0], HasSubstr("t1 does not balance"));
}

TEST(LedgerAuditTest, ReportsAClearingMismatchPerCurrency) {
  LedgerAudit audit = AuditLedger(Ledger(), {{"USD", 5000}, {"GBP", 10}});
  ASSERT_THAT(audit.violations, SizeIs(3));
  EXPECT_THAT(audit.violations[0], HasSubstr("EUR: the ledger's psp_clearing is 700 but the PSP"));
  EXPECT_THAT(audit.violations[1], HasSubstr("GBP"));
  EXPECT_THAT(audit.violations[2], HasSubstr("difference -1500"));
}

}  // namespace
}  // namespace emporium::payments
