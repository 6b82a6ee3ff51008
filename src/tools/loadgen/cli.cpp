#include "tools/loadgen/cli.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/time/time.h"
#include "common/format.h"
#include "fmt/format.h"
#include "tools/audit/audit.h"
#include "tools/loadgen/engine.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/scenarios.h"
#include "tools/loadgen/target_audit.h"

namespace emporium::loadgen {
namespace {

constexpr int kExitSetup = 1;
constexpr int kExitVerdict = 3;
constexpr int kExitAuditUnavailable = 4;

struct Target {
  std::string host;
  uint16_t port = 80;
};

// "http://host[:port][/...]" (no TLS: the load generator talks to the server directly).
std::optional<Target> ParseUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(kScheme.size());
  rest = rest.substr(0, rest.find('/'));
  if (rest.empty()) return std::nullopt;
  Target target;
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos) {
    target.host = rest;
    return target;
  }
  target.host = rest.substr(0, colon);
  const std::string port = rest.substr(colon + 1);
  if (target.host.empty() || port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const int number = std::stoi(port);
  if (number < 1 || number > 65535) return std::nullopt;
  target.port = static_cast<uint16_t>(number);
  return target;
}

// "10s", "500ms", "2m"; a bare number means seconds.
std::optional<absl::Duration> ParseDurationFlag(std::string text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || c == '.'; })) {
    text += "s";
  }
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration)) return std::nullopt;
  return duration;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "emporium loadgen: %s\n", message.c_str());
  return kExitSetup;
}

}  // namespace

CLI::App* AddLoadgenCommand(CLI::App& parent, LoadgenFlags& flags) {
  CLI::App* command = parent.add_subcommand(
      "loadgen",
      "HTTP load generator. Scenarios: get (one URL, raw throughput), browse (Zipf product "
      "pages, lists, searches), flash-sale (N buyers racing for one SKU), checkout (cart, 1-3 "
      "lines, checkout with Prefer: wait=10 per loop; needs --admin-key and the PSP sandbox "
      "behind the server), cart (create, add 1-3 lines, update, remove, read, abandon; needs "
      "--admin-key), mixed (browse/cart/checkout loops by --mix weight). With --admin-key the "
      "run ends with the target's invariant audit (POST /api/v1/admin/audit) unless --no-audit.");
  command->add_option("--url", flags.url, "target base URL, http://host:port")
      ->capture_default_str();
  command
      ->add_option("--scenario", flags.scenario,
                   "get | browse | flash-sale | checkout | cart | mixed")
      ->capture_default_str();
  command->add_option("--path", flags.path, "get: the request target")->capture_default_str();
  command->add_option("--concurrency,-c", flags.concurrency, "connections")
      ->check(CLI::Range(1, kConnectionsMax))
      ->capture_default_str();
  command
      ->add_option("--rate", flags.rate,
                   "open loop: requests per second in total (latency from the intended send "
                   "time); 0 = closed loop")
      ->check(CLI::Range(0.0, 1e7));
  command->add_option("--threads", flags.threads, "io threads (0 = one per core)")
      ->check(CLI::Range(0, kThreadsMax));
  command->add_option("--duration,-d", flags.duration, "measured time, e.g. 10s, 1m")
      ->capture_default_str();
  command->add_option("--warmup", flags.warmup, "time run first and not recorded")
      ->capture_default_str();
  command->add_option("--timeout", flags.timeout, "per-request timeout")->capture_default_str();
  command->add_option("--out", flags.out_dir,
                      "write report.json, report.txt and latency.svg into this directory");
  command->add_option("--admin-key", flags.admin_key,
                      "staff API key: flash-sale receives --stock units first; checkout, cart "
                      "and mixed create products and stock; every scenario ends with the "
                      "target's audit");
  command->add_option("--sku", flags.sku, "flash-sale: the SKU")->capture_default_str();
  command->add_option("--stock", flags.stock, "flash-sale: units to receive")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}))
      ->capture_default_str();
  command
      ->add_option("--products", flags.products,
                   "checkout, cart, mixed: products created (one SKU each)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  command
      ->add_option("--decline-share", flags.decline_share,
                   "checkout: share of the connections paying with a declined card")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command
      ->add_option("--mix", flags.mix,
                   "mixed: loop kinds by weight, e.g. browse=90,cart=8,checkout=2 (unnamed = 0)")
      ->capture_default_str();
  command->add_flag("!--no-audit", flags.audit,
                    "skip the target's invariant audit (POST /api/v1/admin/audit) after the run");
  command->add_option("--run-id", flags.run_id, "prefix of the Idempotency-Keys (default random)");
  command->add_option("--audit-data-dir", flags.audit_data_dir,
                      "after the run, audit the server's databases in this directory (run it "
                      "when the server is idle)");
  command->add_flag("!--no-progress", flags.progress, "no live progress line");
  return command;
}

int RunLoadgen(const LoadgenFlags& flags) {
  std::optional<Target> target = ParseUrl(flags.url);
  if (!target.has_value())
    return Fail(fmt::format("bad --url '{}' (want http://host:port)", flags.url));
  std::optional<absl::Duration> duration = ParseDurationFlag(flags.duration);
  std::optional<absl::Duration> warmup = ParseDurationFlag(flags.warmup);
  std::optional<absl::Duration> timeout = ParseDurationFlag(flags.timeout);
  if (!duration || !warmup || !timeout) {
    return Fail("bad --duration, --warmup or --timeout (use e.g. 10s, 500ms, 2m)");
  }

  ScenarioOptions scenario_options;
  scenario_options.host = target->host;
  scenario_options.port = target->port;
  scenario_options.path = flags.path;
  scenario_options.admin_key = flags.admin_key;
  scenario_options.sku = flags.sku;
  scenario_options.stock = flags.stock;
  scenario_options.run_id = flags.run_id;
  scenario_options.connections = flags.concurrency;
  scenario_options.products = flags.products;
  scenario_options.decline_share = flags.decline_share;
  scenario_options.mix = flags.mix;
  scenario_options.warmup = *warmup;
  scenario_options.duration = *duration;
  absl::StatusOr<std::unique_ptr<LoadScenario>> scenario =
      MakeScenario(flags.scenario, scenario_options);
  if (!scenario.ok()) return Fail(std::string(scenario.status().message()));
  if (absl::Status prepared = (*scenario)->Prepare(); !prepared.ok()) {
    if (prepared.code() == absl::StatusCode::kFailedPrecondition) {
      std::fprintf(stderr, "emporium loadgen: %s\n", std::string(prepared.message()).c_str());
      return 0;  // the scenario does not apply to this target: skipped, not failed
    }
    return Fail(std::string(prepared.message()));
  }

  EngineOptions options;
  options.host = target->host;
  options.port = target->port;
  options.connections = flags.concurrency;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.threads = std::min(flags.threads > 0 ? flags.threads : cores, flags.concurrency);
  if (flags.rate > 0) options.rate_per_second = flags.rate;
  options.duration = *duration;
  options.warmup = *warmup;
  options.request_timeout = *timeout;
  const bool live = flags.progress && isatty(STDOUT_FILENO) == 1;
  if (live) {
    options.on_second = [](const SecondSample& sample) {
      std::printf("\r%s", ProgressLine(sample).c_str());
      std::fflush(stdout);
    };
  }
  absl::StatusOr<EngineResult> result = RunLoad(options, **scenario);
  if (live) std::printf("\n");
  if (!result.ok()) return Fail(std::string(result.status().message()));

  RunDescription run;
  run.scenario = flags.scenario;
  run.url = flags.url;
  run.connections = options.connections;
  run.threads = options.threads;
  run.rate_per_second = flags.rate;
  run.warmup_seconds = absl::ToDoubleSeconds(*warmup);
  run.duration_seconds = absl::ToDoubleSeconds(*duration);
  run.scenario_lines = (*scenario)->SummaryLines();
  run.scenario_json = (*scenario)->SummaryJson();

  // The target's audit, after the engine has let the in-flight requests finish.
  int exit_code = 0;
  if (!flags.audit) {
    run.audit_lines.push_back("audit: skipped (--no-audit)");
  } else if (flags.admin_key.empty()) {
    run.audit_lines.push_back("audit: skipped (no --admin-key)");
  } else {
    TargetAuditOptions audit_options;
    audit_options.host = target->host;
    audit_options.port = target->port;
    audit_options.admin_key = flags.admin_key;
    audit_options.settle_wait =
        (*scenario)->CreatesOrders() ? SettleWait::kOrders : SettleWait::kNone;
    if (live) {
      std::printf("auditing the target%s...\n",
                  (*scenario)->CreatesOrders() ? " (after its orders settle)" : "");
      std::fflush(stdout);
    }
    const TargetAudit audit = RunTargetAudit(audit_options);
    run.audit_lines = AuditReportLines(audit);
    run.audit_json = AuditReportJson(audit);
    switch (audit.verdict) {
      case AuditVerdict::kClean:
      case AuditVerdict::kNotAvailable:
        break;
      case AuditVerdict::kViolations:
        exit_code = kExitVerdict;
        break;
      case AuditVerdict::kFailed:
        exit_code = kExitAuditUnavailable;
        break;
    }
  }
  std::fputs(TextReport(run, *result).c_str(), stdout);
  if (!flags.out_dir.empty()) {
    if (absl::Status written = WriteReportFiles(flags.out_dir, run, *result); !written.ok()) {
      return Fail(std::string(written.message()));
    }
    std::printf("report written to %s/{report.json,report.txt,latency.svg}\n",
                flags.out_dir.c_str());
  }

  if (absl::Status verdict = (*scenario)->Verdict(); !verdict.ok()) {
    std::printf("VERDICT FAILED: %s\n", std::string(verdict.message()).c_str());
    exit_code = kExitVerdict;
  }
  if (!flags.audit_data_dir.empty()) {
    std::printf("--- audit of %s\n", flags.audit_data_dir.c_str());
    std::fflush(stdout);
    if (audit::RunAuditCommand(flags.audit_data_dir) != 0) exit_code = kExitVerdict;
  }
  return exit_code;
}

}  // namespace emporium::loadgen
