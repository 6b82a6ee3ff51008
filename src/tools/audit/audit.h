// The invariant auditor behind `emporium audit`: reads every context's database under a data
// directory (read transactions only; run it with the server stopped or idle) and checks the
// global invariants. Contexts whose database does not exist yet are skipped with a note.
//
// Checked now:
//  - inventory / no-oversell: every stock row has on_hand, reserved, allocated >= 0 and
//    reserved + allocated <= on_hand.
//  - inventory / ledger-projection: the stock table equals the projection of the ledger
//    (InventoryStore::Rebuild in check-only mode).
// Not yet (their contexts or stores do not exist): orders within deadlines, captured <=
// authorized <= order total, refunds <= captured, payments ledger balanced, PSP balance = our
// ledger. Each shows up as a note in the report.
//
// Thread-safety: RunAudit is reentrant; it opens and closes its own database handles.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace emporium::audit {

inline constexpr size_t kViolationsPerCheckMax = 1000;  // the rest are counted, not listed

struct Violation {
  std::string context;    // "inventory"
  std::string invariant;  // "no-oversell", "ledger-projection"
  std::string detail;     // which row and what is wrong, for a person
};

struct AuditReport {
  std::vector<Violation> violations;
  std::vector<std::string> checks;  // "inventory/no-oversell: 12 stock rows"
  std::vector<std::string> notes;   // skipped contexts, checks not implemented yet
  int64_t violations_unlisted = 0;  // beyond kViolationsPerCheckMax per check
  bool ok() const { return violations.empty() && violations_unlisted == 0; }
};

// NotFound when `data_dir` does not exist; Unavailable/Internal when a database that exists
// cannot be read. Violations are data in the report, not errors.
absl::StatusOr<AuditReport> RunAudit(const std::string& data_dir);

// The readable report: one line per violation, the checks run and the notes, and a verdict.
std::string FormatAuditReport(const AuditReport& report);

// For the CLI: runs the audit, prints the report to stdout; returns the exit code (0 clean,
// 1 violations, 2 the audit could not run).
int RunAuditCommand(const std::string& data_dir);

}  // namespace emporium::audit
