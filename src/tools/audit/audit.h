// The invariant auditor behind `emporium audit` and POST /api/v1/admin/audit: reads every
// context's database under a data directory (read transactions only; it never writes and never
// creates a missing database) and checks the global invariants, within and across contexts.
// Contexts whose database does not exist (or was never migrated) are skipped with a note.
//
// Checked (context / invariant, as they appear in violations):
//  - inventory / no-oversell: every stock row has on_hand, reserved, allocated >= 0 and
//    reserved + allocated <= on_hand.
//  - inventory / ledger-projection, ledger-consistency: the stock table equals the projection
//    of the ledger (InventoryStore::Rebuild in check-only mode), and the ledger replays.
//  - ordering / settled: every order is CONFIRMED, terminal (REJECTED / CANCELLED) or still
//    progressing: its saga has a step outstanding whose deadline has not passed by more than
//    the grace ("stuck" otherwise). An unknown state or step is a violation too.
//  - ordering / confirmed-has-authorization: every CONFIRMED order has a payment intent that
//    was authorized for it (authorized, captured, partially_refunded or refunded).
//  - ordering / no-live-auth-on-cancelled: no REJECTED / CANCELLED order leaves an intent in
//    `authorized`. The saga moves the order to CANCELLED before its void is answered (and a late
//    authorization on a closed order is voided when it arrives), so an authorization is only a
//    violation once nothing is left to release it: the saga is done or its deadline passed by
//    more than the grace, and the intent has not changed within the grace either.
//  - payments / amounts: refunded <= captured <= authorized <= the intent's amount, and
//    authorized <= the order's total in the order's currency (intents joined to orders by order
//    id across the two databases; intents naming no known order are counted in a note).
//  - payments / ledger-balanced: every ledger transaction balances (payments::AuditLedger).
//  - psp / balance-matches: the ledger's psp_clearing equals, per currency, what the PSP's
//    GET /v1/balance reports (payments::AuditDataDir); only with a PSP URL, else a note.
//  - payments / no-double-charge: per intent at most one successful PSP authorization and one
//    successful capture (the capture idempotency key is the psp_attempts primary key, so one
//    row per key holds by construction); the successful captures add up to captured_minor and
//    the refunds to refunded_minor; the ledger's psp_clearing debits (captures) and credits
//    (refunds) of the intent equal those amounts.
//
// Orders are read before payments: an intent is authorized before its order confirms, so the
// later payments snapshot can only be ahead of the orders snapshot, never behind it.
//
// Thread-safety: RunAudit is reentrant; it opens and closes its own database handles.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"

namespace emporium::audit {

inline constexpr size_t kViolationsPerCheckMax = 1000;  // the rest are counted, not listed
// How long past its saga deadline an unsettled order may be before it counts as stuck.
inline constexpr int64_t kStuckGraceDefaultMs = 60'000;
// Orders and payment intents read per audit; beyond that a note says the audit was partial.
inline constexpr int64_t kRowsPerContextMax = 5'000'000;

struct Violation {
  std::string context;    // "inventory", "ordering", "payments", "psp"
  std::string invariant;  // "no-oversell", "settled", "amounts", ...
  std::string detail;     // which ids and what is wrong, for a person
};

struct AuditReport {
  std::vector<Violation> violations;
  std::vector<std::string> checks;  // "inventory/no-oversell: 12 stock rows ..."
  std::vector<std::string> notes;   // skipped contexts and checks
  int64_t violations_unlisted = 0;  // beyond kViolationsPerCheckMax per check
  bool ok() const { return violations.empty() && violations_unlisted == 0; }
};

struct AuditOptions {
  std::string data_dir;
  // The PSP's base URL ("http://127.0.0.1:8090"); empty skips psp/balance-matches with a note.
  std::string psp_url;
  // "Now" for saga deadlines, Unix milliseconds; nullopt reads the system clock.
  std::optional<int64_t> now_ms;
  int64_t stuck_grace_ms = kStuckGraceDefaultMs;
};

// NotFound when `options.data_dir` does not exist; Unavailable/Internal when a database that
// exists cannot be read. Violations are data in the report, not errors; so is a PSP that cannot
// be reached (a note says the balance was not checked).
absl::StatusOr<AuditReport> RunAudit(const AuditOptions& options);
// The same with no PSP, the system clock and the default grace.
absl::StatusOr<AuditReport> RunAudit(const std::string& data_dir);

// The readable report: one line per violation, the checks run and the notes, and a verdict.
std::string FormatAuditReport(const AuditReport& report);

// The report as the admin route answers it:
// {"ok":bool,"violations":[{"context","invariant","detail"}],"violations_unlisted":n,
//  "checks":[string],"notes":[string]}.
Json AuditReportJson(const AuditReport& report);

// For the CLI: runs the audit, prints the report to stdout; returns the exit code (0 clean,
// 1 violations, 2 the audit could not run).
int RunAuditCommand(const AuditOptions& options);
int RunAuditCommand(const std::string& data_dir);

}  // namespace emporium::audit
