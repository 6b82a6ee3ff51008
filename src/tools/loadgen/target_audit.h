// The closing invariant audit of a load run: once the run's in-flight requests are done, asks
// the target to check its global invariants (POST /api/v1/admin/audit with the staff key, which
// answers 200 {"ok", "violations": [{"context", "invariant", "detail"}], "violations_unlisted",
// "checks", "notes"}).
//
// Work a run leaves behind settles asynchronously (sagas finishing, reservations released
// through the bus), so a cross-context check can see a state that is only in flight. Two bounded
// waits keep the verdict honest without hiding real breakage:
//  - for runs that place orders, the target's unfinished sagas are polled first
//    (GET /api/v1/admin/orders/stuck?older_than_s=0) until there are none or `settle_timeout`
//    passes; what was found goes into the report;
//  - an audit that finds violations is asked again, up to `attempts_max` times `attempt_gap`
//    apart. A violation that persists is the verdict; violations that cleared on a later attempt
//    are reported as transient (counted and named), never dropped silently. A 409 (another audit
//    is running on the target) is asked again the same way.
// A 404 from the audit route means the target has no auditor: "not available", not a failure.
//
// Thread-safety: RunTargetAudit blocks the calling thread; the rest are pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace emporium::loadgen {

enum class AuditVerdict {
  kClean,         // ok=true
  kViolations,    // ok=false: the run fails
  kNotAvailable,  // the target has no audit route (404)
  kFailed,        // no verdict: transport error, refused key, server error, unreadable answer
};

struct AuditViolation {
  std::string context;    // "inventory"
  std::string invariant;  // "no-oversell"
  std::string detail;
};

struct TargetAudit {
  AuditVerdict verdict = AuditVerdict::kFailed;
  std::vector<AuditViolation> violations;
  int64_t violations_unlisted = 0;
  std::vector<std::string> checks;
  std::vector<std::string> notes;
  std::string error;  // kFailed: why there is no verdict
  int attempts = 0;   // audit calls made
  // Violations seen by earlier attempts that a later attempt no longer found, and their
  // "context/invariant" names (distinct).
  int64_t transient_violations = 0;
  std::vector<std::string> transient_invariants;
  std::string settle;  // what the wait for unfinished orders found; empty when not waited
};

enum class SettleWait { kNone, kOrders };

struct TargetAuditOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string admin_key;
  SettleWait settle_wait = SettleWait::kNone;
  absl::Duration settle_timeout = absl::Seconds(30);
  absl::Duration settle_poll = absl::Milliseconds(250);
  int attempts_max = 5;
  absl::Duration attempt_gap = absl::Seconds(1);
  absl::Duration request_timeout = absl::Seconds(60);  // one audit call (it reads every store)
};

inline constexpr int kAuditAttemptsMax = 20;
inline constexpr size_t kAuditAnswerBytesMax = 16 << 20;

// Pure: the verdict of one answer of the audit route (status and body).
TargetAudit ParseAuditAnswer(int status, std::string_view body);

// The settle wait (when asked) and the audit with its retries, against options.host:port.
TargetAudit RunTargetAudit(const TargetAuditOptions& options);

// For the text report: a verdict line first ("audit: clean ...", "audit: FAILED ...",
// "audit: not available on target"), then violations, transient ones, the settle finding, the
// checks and the notes.
std::vector<std::string> AuditReportLines(const TargetAudit& audit);
// For the JSON report: {"verdict": "clean"|"violations"|"not_available"|"failed", "ok",
// "violations", "violations_unlisted", "checks", "notes", "attempts", "transient_violations",
// "transient_invariants", "settle", "error"}.
nlohmann::json AuditReportJson(const TargetAudit& audit);

std::string_view AuditVerdictName(AuditVerdict verdict);

}  // namespace emporium::loadgen
