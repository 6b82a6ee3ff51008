#include "tools/psp_sandbox/cli.h"

#include <signal.h>

#include <cstdio>
#include <filesystem>

#include "CLI/CLI.hpp"
#include "common/format.h"
#include "fmt/format.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium::psp_sandbox {

CLI::App* AddPspSandboxCommand(CLI::App& parent, PspSandboxFlags& flags) {
  CLI::App* command = parent.add_subcommand(
      "psp-sandbox", "run the payment service provider sandbox (a stand-in card processor)");
  command->add_option("--host", flags.host, "listen address");
  command->add_option("--port", flags.port, "listen port, 0 for any free one")
      ->check(CLI::Range(0, 65535));
  command->add_option("--latency-ms", flags.latency_ms, "fixed latency added to every answer")
      ->check(CLI::Range(int64_t{0}, int64_t{600'000}));
  command
      ->add_option("--latency-jitter-ms", flags.latency_jitter_ms,
                   "uniform random latency in [0, this) on top")
      ->check(CLI::Range(int64_t{0}, int64_t{600'000}));
  command
      ->add_option("--failure-rate", flags.failure_rate,
                   "fraction of POSTs answered 503 before any effect")
      ->check(CLI::Range(0.0, 1.0));
  command
      ->add_option("--auth-expiry-s", flags.auth_expiry_s,
                   "seconds until an uncaptured authorization expires")
      ->check(CLI::Range(int64_t{1}, int64_t{365} * 24 * 3600));
  command->add_option("--notify-url", flags.notify_url,
                      "POST signed notifications here (http://host:port/path); empty: none");
  command->add_option("--webhook-secret", flags.webhook_secret,
                      "HMAC secret of the notifications (payments.webhook_secret)");
  command->add_option("--data-dir", flags.data_dir, "directory of the sandbox's own books");
  return command;
}

int RunPspSandbox(const PspSandboxFlags& flags) {
  if (!flags.notify_url.empty() && flags.webhook_secret.empty()) {
    std::fprintf(stderr, "emporium psp-sandbox: --notify-url needs --webhook-secret\n");
    return 1;
  }
  // Block the shutdown signals before the server's threads start, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::error_code error;
  std::filesystem::create_directories(flags.data_dir, error);
  if (error) {
    std::fprintf(stderr, "emporium psp-sandbox: cannot create %s: %s\n", flags.data_dir.c_str(),
                 error.message().c_str());
    return 1;
  }
  SandboxOptions options;
  options.host = flags.host;
  options.port = static_cast<uint16_t>(flags.port);
  options.db_path = fmt::format("{}/psp_sandbox.db", flags.data_dir);
  options.latency_fixed = absl::Milliseconds(flags.latency_ms);
  options.latency_random = absl::Milliseconds(flags.latency_jitter_ms);
  options.failure_rate = flags.failure_rate;
  options.authorization_ttl = absl::Seconds(flags.auth_expiry_s);
  options.notification_url = flags.notify_url;
  options.notification_secret = flags.webhook_secret;
  PspSandbox sandbox(options);
  if (absl::Status status = sandbox.Start(); !status.ok()) {
    std::fprintf(stderr, "emporium psp-sandbox: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::printf("psp-sandbox listening on http://%s:%u (books in %s)\n", flags.host.c_str(),
              static_cast<unsigned>(sandbox.port()), options.db_path.c_str());
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  sandbox.Shutdown();
  std::printf("psp-sandbox stopped\n");
  return 0;
}

}  // namespace emporium::psp_sandbox
