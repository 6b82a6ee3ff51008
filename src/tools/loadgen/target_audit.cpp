#include "tools/loadgen/target_audit.h"

#include <algorithm>
#include <set>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "platform/http/client.h"

namespace emporium::loadgen {
namespace {

using Json = nlohmann::json;

constexpr size_t kDetailShownMax = 300;  // characters of one violation's detail in the text
constexpr size_t kViolationsShownMax = 20;

std::vector<std::string> StringArray(const Json& value) {
  std::vector<std::string> out;
  if (!value.is_array()) return out;
  for (const Json& item : value) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

std::string Clip(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  return fmt::format("{}...", text.substr(0, max));
}

std::string ViolationName(const AuditViolation& violation) {
  return fmt::format("{}/{}", violation.context, violation.invariant);
}

TargetAudit Failed(std::string error) {
  TargetAudit audit;
  audit.verdict = AuditVerdict::kFailed;
  audit.error = std::move(error);
  return audit;
}

// Polls the unfinished sagas until none is left or the timeout passes; returns the finding.
std::string WaitForOrders(http::HttpClient& client, const TargetAuditOptions& options) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options.settle_timeout;
  size_t unfinished = 0;
  while (true) {
    http::ClientRequest request;
    request.target = "/api/v1/admin/orders/stuck?older_than_s=0&limit=100";
    request.headers.Set("Authorization", "Bearer " + options.admin_key);
    absl::StatusOr<http::ClientResponse> response = client.Send(request);
    if (!response.ok()) {
      return fmt::format("could not tell whether orders settled: {}",
                         std::string(response.status().message()));
    }
    if (response->status != 200) {
      return fmt::format(
          "could not tell whether orders settled: the stuck-orders route answered "
          "{}",
          response->status);
    }
    Json body = Json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      return "could not tell whether orders settled: unreadable stuck-orders answer";
    }
    unfinished = body["items"].size();
    if (unfinished == 0) {
      return fmt::format("every order settled ({:.1f} s after the run)",
                         absl::ToDoubleSeconds(absl::Now() - start));
    }
    if (absl::Now() + options.settle_poll > deadline) break;
    absl::SleepFor(options.settle_poll);
  }
  return fmt::format("{}{} orders still unfinished after {} (audited anyway)",
                     unfinished >= 100 ? "at least " : "", unfinished,
                     absl::FormatDuration(options.settle_timeout));
}

}  // namespace

std::string_view AuditVerdictName(AuditVerdict verdict) {
  switch (verdict) {
    case AuditVerdict::kClean:
      return "clean";
    case AuditVerdict::kViolations:
      return "violations";
    case AuditVerdict::kNotAvailable:
      return "not_available";
    case AuditVerdict::kFailed:
      return "failed";
  }
  return "failed";
}

TargetAudit ParseAuditAnswer(int status, std::string_view body) {
  if (status == 404) {
    TargetAudit audit;
    audit.verdict = AuditVerdict::kNotAvailable;
    return audit;
  }
  if (status != 200) {
    return Failed(fmt::format("POST /api/v1/admin/audit answered {}: {}", status, Clip(body, 300)));
  }
  Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed.contains("ok") || !parsed["ok"].is_boolean()) {
    return Failed(fmt::format("POST /api/v1/admin/audit answered 200 without a boolean \"ok\": {}",
                              Clip(body, 300)));
  }
  TargetAudit audit;
  if (parsed.contains("violations") && parsed["violations"].is_array()) {
    for (const Json& item : parsed["violations"]) {
      if (!item.is_object()) continue;
      audit.violations.push_back(AuditViolation{item.value("context", std::string("?")),
                                                item.value("invariant", std::string("?")),
                                                item.value("detail", std::string())});
    }
  }
  if (parsed.contains("violations_unlisted") && parsed["violations_unlisted"].is_number_integer()) {
    audit.violations_unlisted = std::max<int64_t>(0, parsed["violations_unlisted"].get<int64_t>());
  }
  audit.checks = StringArray(parsed.value("checks", Json()));
  audit.notes = StringArray(parsed.value("notes", Json()));
  const bool ok = parsed["ok"].get<bool>();
  if (ok && (!audit.violations.empty() || audit.violations_unlisted > 0)) {
    // Contradictory: trust the listed violations, not the flag.
    audit.notes.push_back("the target said ok=true but listed violations");
    audit.verdict = AuditVerdict::kViolations;
  } else {
    audit.verdict = ok ? AuditVerdict::kClean : AuditVerdict::kViolations;
  }
  return audit;
}

TargetAudit RunTargetAudit(const TargetAuditOptions& options) {
  if (options.admin_key.empty()) return Failed("no admin key");
  if (options.attempts_max < 1 || options.attempts_max > kAuditAttemptsMax) {
    return Failed(fmt::format("attempts_max must be 1..{}", kAuditAttemptsMax));
  }
  http::ClientOptions client_options;
  client_options.host = options.host;
  client_options.port = options.port;
  client_options.connection_count_max = 1;
  client_options.request_timeout = options.request_timeout;
  client_options.response_body_bytes_max = kAuditAnswerBytesMax;
  http::HttpClient client(client_options);

  std::string settle;
  if (options.settle_wait == SettleWait::kOrders) settle = WaitForOrders(client, options);

  TargetAudit audit;
  int64_t seen_before = 0;
  std::set<std::string> names_before;
  for (int attempt = 1; attempt <= options.attempts_max; ++attempt) {
    if (attempt > 1) {
      seen_before += static_cast<int64_t>(audit.violations.size()) + audit.violations_unlisted;
      for (const AuditViolation& violation : audit.violations) {
        names_before.insert(ViolationName(violation));
      }
      absl::SleepFor(options.attempt_gap);
    }
    http::ClientRequest request;
    request.method = "POST";
    request.target = "/api/v1/admin/audit";
    request.headers.Set("Authorization", "Bearer " + options.admin_key);
    request.headers.Set("Content-Type", "application/json");
    request.body = "{}";
    absl::StatusOr<http::ClientResponse> response = client.Send(request);
    audit = response.ok() ? ParseAuditAnswer(response->status, response->body)
                          : Failed(fmt::format("POST /api/v1/admin/audit: {}",
                                               std::string(response.status().message())));
    audit.attempts = attempt;
    // 409: another audit is running on the target (one at a time); ask again after the gap.
    const bool busy = response.ok() && response->status == 409;
    if (audit.verdict != AuditVerdict::kViolations && !busy) break;
  }
  // Earlier attempts' violations count as transient only when the verdict came out clean; when
  // violations persist they are the verdict and the earlier attempts add nothing.
  if (audit.verdict == AuditVerdict::kClean) {
    audit.transient_violations = seen_before;
    audit.transient_invariants.assign(names_before.begin(), names_before.end());
  }
  audit.settle = std::move(settle);
  return audit;
}

std::vector<std::string> AuditReportLines(const TargetAudit& audit) {
  std::vector<std::string> lines;
  const std::string attempts =
      audit.attempts > 1 ? fmt::format(" (attempt {})", audit.attempts) : std::string();
  switch (audit.verdict) {
    case AuditVerdict::kClean:
      lines.push_back(fmt::format("audit: clean, {} checks{}", audit.checks.size(), attempts));
      break;
    case AuditVerdict::kViolations:
      lines.push_back(
          fmt::format("audit: FAILED, {} violations{}{}", audit.violations.size(),
                      audit.violations_unlisted > 0
                          ? fmt::format(" listed and {} more", audit.violations_unlisted)
                          : std::string(),
                      attempts));
      break;
    case AuditVerdict::kNotAvailable:
      lines.push_back("audit: not available on target (POST /api/v1/admin/audit answered 404)");
      break;
    case AuditVerdict::kFailed:
      lines.push_back(fmt::format("audit: could not run: {}", audit.error));
      break;
  }
  for (size_t i = 0; i < audit.violations.size() && i < kViolationsShownMax; ++i) {
    const AuditViolation& violation = audit.violations[i];
    lines.push_back(fmt::format("audit: violation {}: {}", ViolationName(violation),
                                Clip(violation.detail, kDetailShownMax)));
  }
  if (audit.violations.size() > kViolationsShownMax) {
    lines.push_back(fmt::format("audit: ... {} more listed in report.json",
                                audit.violations.size() - kViolationsShownMax));
  }
  if (audit.transient_violations > 0) {
    std::string names;
    for (const std::string& name : audit.transient_invariants) names += " " + name;
    lines.push_back(fmt::format(
        "audit: {} violations on earlier attempts cleared by attempt {} (work in flight):{}",
        audit.transient_violations, audit.attempts, names));
  }
  if (!audit.settle.empty()) lines.push_back(fmt::format("audit: orders: {}", audit.settle));
  for (const std::string& check : audit.checks) lines.push_back("audit: check " + check);
  for (const std::string& note : audit.notes) lines.push_back("audit: note " + note);
  return lines;
}

Json AuditReportJson(const TargetAudit& audit) {
  Json violations = Json::array();
  for (const AuditViolation& violation : audit.violations) {
    violations.push_back({{"context", violation.context},
                          {"invariant", violation.invariant},
                          {"detail", violation.detail}});
  }
  Json ok = nullptr;
  if (audit.verdict == AuditVerdict::kClean) ok = true;
  if (audit.verdict == AuditVerdict::kViolations) ok = false;
  return Json{{"verdict", std::string(AuditVerdictName(audit.verdict))},
              {"ok", ok},
              {"violations", violations},
              {"violations_unlisted", audit.violations_unlisted},
              {"checks", audit.checks},
              {"notes", audit.notes},
              {"attempts", audit.attempts},
              {"transient_violations", audit.transient_violations},
              {"transient_invariants", audit.transient_invariants},
              {"settle", audit.settle.empty() ? Json(nullptr) : Json(audit.settle)},
              {"error", audit.error.empty() ? Json(nullptr) : Json(audit.error)}};
}

}  // namespace emporium::loadgen
