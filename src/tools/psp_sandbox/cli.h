// `emporium psp-sandbox` as a CLI11 subcommand: runs the PSP sandbox (sandbox.h) in the
// foreground until SIGINT or SIGTERM, printing the URL it listens on.
//
// Thread-safety: call from the main thread, before any other thread starts (it blocks the
// shutdown signals for the whole process).
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace emporium::psp_sandbox {

struct PspSandboxFlags {
  std::string host = "127.0.0.1";
  int port = 8090;  // 0 picks a free one
  int64_t latency_ms = 0;
  int64_t latency_jitter_ms = 0;
  double failure_rate = 0.0;
  int64_t auth_expiry_s = 7 * 24 * 3600;
  std::string notify_url;  // e.g. http://127.0.0.1:8080/api/v1/payments/psp-notifications
  std::string webhook_secret;
  std::string data_dir = "./data/psp";
};

// Adds the `psp-sandbox` subcommand to `parent`; `flags` must outlive parsing.
CLI::App* AddPspSandboxCommand(CLI::App& parent, PspSandboxFlags& flags);
// Runs until a shutdown signal; 0 on a clean stop, 1 when it could not start.
int RunPspSandbox(const PspSandboxFlags& flags);

}  // namespace emporium::psp_sandbox
